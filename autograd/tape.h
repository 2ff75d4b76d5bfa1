/* The eager reverse-mode tape (docs/architecture.md, The tape).
 *
 * A bl_ctx owns an arena for per-step tensors and the tape. An op computes its output at
 * once; when gradients are enabled in the ctx and some input requires a gradient, the op
 * pushes a node {backward, inputs, output, saved values}. bl_backward(ctx, loss) seeds
 * dloss = 1 and walks the nodes in reverse.
 *
 * THE RULE: backward functions ACCUMULATE into input gradients (grad += ...), never assign.
 * A tensor used twice thus receives both contributions, and parameter gradients accumulate
 * over several backward passes until bl_params_zero_grad. bl_backward also sets has_grad on
 * every parameter that is an input of a node it reached (torch: its .grad is no longer None);
 * zero_grad clears it, and Adam leaves parameters without it untouched.
 *
 * Passing a ctx with gradients disabled (bl_set_grad_enabled(ctx, 0), the no-grad scope)
 * records nothing: inference costs no tape memory. */
#ifndef BL_TAPE_H
#define BL_TAPE_H

#include "lib/arena.h"
#include "lib/tensor.h"

typedef struct bl_ctx bl_ctx;
typedef struct bl_node bl_node;

typedef void bl_backward_fn(bl_ctx *ctx, bl_node *node);

struct bl_node {
    const char *op;          /* op name, for messages */
    bl_backward_fn *backward;
    bl_tensor *out;
    bl_tensor **in;          /* n_in inputs (arena array) */
    int n_in;
    void *saved;             /* op-specific saved values (arena memory) */
    bl_node *prev;
};

bl_ctx *bl_ctx_alloc(size_t arena_bytes);
void bl_ctx_free(bl_ctx *ctx);
/* Drop the tape and every per-step tensor (call after each optimiser step). */
void bl_ctx_reset(bl_ctx *ctx);
bl_arena *bl_ctx_arena(bl_ctx *ctx);
/* Memory of the per-step allocations, in bytes (for benchmarks and tests). */
typedef struct bl_ctx_mem {
    size_t forward_bytes;  /* arena in use when bl_backward last started: activations, saved
                              values, tape nodes */
    size_t arena_peak;     /* largest arena use (forward + the scratch of backward functions) */
    size_t arena_reserved; /* the arena's blocks */
    size_t grad_peak;      /* largest memory of gradient buffers (live + free for reuse) */
    size_t grad_reserved;  /* the gradient arena's blocks */
    size_t grad_live_peak; /* largest sum of the gradients alive at once */
    size_t grad_total;     /* largest sum of every gradient one step made (the need without
                              recycling) */
} bl_ctx_mem;
void bl_ctx_memory(const bl_ctx *ctx, bl_ctx_mem *mem);
/* Enable/disable recording; returns the previous state. No-grad scope:
 *   int g = bl_set_grad_enabled(ctx, 0); ...; bl_set_grad_enabled(ctx, g); */
int bl_set_grad_enabled(bl_ctx *ctx, int enabled);
int bl_grad_enabled(const bl_ctx *ctx);
int bl_tape_length(const bl_ctx *ctx);

/* Per-step tensors (arena memory, gone at bl_ctx_reset). bl_new is uninitialised. */
bl_tensor *bl_new(bl_ctx *ctx, int ndim, const int64_t *shape);
bl_tensor *bl_zeros(bl_ctx *ctx, int ndim, const int64_t *shape);
bl_tensor *bl_full(bl_ctx *ctx, int ndim, const int64_t *shape, bl_real value);
bl_tensor *bl_new_like(bl_ctx *ctx, const bl_tensor *t);
/* Per-step copy of arbitrary data (e.g. a batch read from disk). */
bl_tensor *bl_from_data(bl_ctx *ctx, int ndim, const int64_t *shape, const bl_real *data);
/* A view sharing t's data that requires no gradient: gradients stop here. */
bl_tensor *bl_detach(bl_ctx *ctx, bl_tensor *t);
/* Scratch memory in the ctx arena. */
void *bl_scratch(bl_ctx *ctx, size_t bytes);

/* d loss / d t, allocated zeroed on first use (persistent tensors own theirs). The gradient of
 * a per-step tensor made by a recorded op is recycled by bl_backward as soon as that op's node
 * has run (t->grad is NULL again after bl_backward) unless bl_retain_grad asked to keep it; the
 * gradients of leaves (no recording op) stay until bl_ctx_reset. */
bl_real *bl_grad(bl_ctx *ctx, bl_tensor *t);
/* t's gradient buffer for a backward function that writes every element of it. When t has
 * none yet, it is taken from the arena without zero-filling and *fresh = 1: the caller must
 * then store (=) into every element, which equals accumulating into zeros. Otherwise *fresh = 0
 * and the caller accumulates (+=) as with bl_grad. Saves a pass over memory per activation. */
bl_real *bl_grad_for_write(bl_ctx *ctx, bl_tensor *t, int *fresh);
/* Keep t's gradient readable after bl_backward (torch's retain_grad), until bl_ctx_reset. */
void bl_retain_grad(bl_ctx *ctx, bl_tensor *t);
/* Seed d loss = 1 (loss must have one element) and run every node's backward in reverse.
 * The tape is consumed: nodes recorded before this call are not replayed by a later one. */
void bl_backward(bl_ctx *ctx, bl_tensor *loss);

/* Backward hook: bl_backward calls fn(user, node) after each node's backward function (node->in
 * are its inputs; the tape is intact during the walk, node->prev leads to the earlier nodes).
 * Data-parallel training uses it to start summing gradients that are final while backward goes
 * on (tools/ddp.h). NULL (the default): none. */
typedef void bl_backward_hook(void *user, const bl_node *node);
void bl_ctx_set_backward_hook(bl_ctx *ctx, bl_backward_hook *fn, void *user);

/* For op implementers: 1 if an op on these inputs must be recorded. */
int bl_tape_needs(const bl_ctx *ctx, int n_in, bl_tensor *const *in);
/* Record a node for `out` (marks out->requires_grad) when bl_tape_needs; returns the node
 * (saved = zeroed arena block of saved_bytes) or NULL when nothing is recorded. Every op calls
 * it (recording or not), so it is also where inputs in a channel-blocked layout are refused:
 * it aborts naming the op unless every input is BL_LAYOUT_PLAIN. */
bl_node *bl_tape_push(bl_ctx *ctx, const char *op, bl_backward_fn *backward, bl_tensor *out,
                      int n_in, bl_tensor *const *in, size_t saved_bytes);
/* The same without the layout check, for the layout-aware ops (docs/conv.md, Layouts). */
bl_node *bl_tape_push_any_layout(bl_ctx *ctx, const char *op, bl_backward_fn *backward,
                                 bl_tensor *out, int n_in, bl_tensor *const *in, size_t saved_bytes);

#endif
