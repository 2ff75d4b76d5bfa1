#include "autograd/tape.h"

#include <stdlib.h>
#include <string.h>

#include <sanitizer/asan_interface.h> /* no-op macros unless built with AddressSanitizer */

/* Gradient buffers of per-step tensors come from their own arena, `grads`, and are recycled
 * within a step: when bl_backward has run the node that produced a tensor, nothing reads or
 * accumulates into that tensor's gradient any more, so the buffer goes to the free list of its
 * size (a bin) and the next gradient of the same size takes it. The memory of a backward pass
 * is then the gradients alive at once, not the sum of every intermediate's gradient. Free
 * buffers are poisoned under AddressSanitizer, so a read through a stale pointer is reported. */
typedef struct bl_grad_bin {
    size_t bytes;
    void **free;
    int n, cap;
} bl_grad_bin;

struct bl_ctx {
    bl_arena *arena;
    bl_arena *grads; /* gradient buffers of per-step tensors */
    bl_grad_bin *bins;
    int n_bins, cap_bins;
    bl_tensor **retained; /* bl_retain_grad: gradients kept after their node ran */
    int n_retained, cap_retained;
    bl_ctx_mem mem;
    size_t grad_live, grad_step; /* bytes handed out and not released; handed out this step */
    bl_node *last;
    int n_nodes;
    int grad_enabled;
    bl_backward_hook *hook;
    void *hook_user;
};

static size_t bl_grad_bytes(const bl_tensor *t)
{
    size_t b = (size_t)t->numel * sizeof(bl_real);
    return b ? (b + 63) / 64 * 64 : 64;
}

static bl_grad_bin *bl_grad_bin_find(bl_ctx *ctx, size_t bytes)
{
    for (int i = 0; i < ctx->n_bins; i++)
        if (ctx->bins[i].bytes == bytes) return &ctx->bins[i];
    if (ctx->n_bins == ctx->cap_bins) {
        ctx->cap_bins = ctx->cap_bins ? 2 * ctx->cap_bins : 16;
        ctx->bins = bl_realloc(ctx->bins, (size_t)ctx->cap_bins * sizeof *ctx->bins);
    }
    bl_grad_bin *b = &ctx->bins[ctx->n_bins++];
    *b = (bl_grad_bin){.bytes = bytes};
    return b;
}

/* An uninitialised gradient buffer for t: a free one of its size, else new arena memory. */
static bl_real *bl_grad_take(bl_ctx *ctx, const bl_tensor *t)
{
    const size_t bytes = bl_grad_bytes(t);
    bl_grad_bin *b = bl_grad_bin_find(ctx, bytes);
    void *p;
    if (b->n > 0) {
        p = b->free[--b->n];
        ASAN_UNPOISON_MEMORY_REGION(p, bytes);
    } else {
        p = bl_arena_push(ctx->grads, bytes);
    }
    ctx->grad_live += bytes;
    ctx->grad_step += bytes;
    if (ctx->grad_step > ctx->mem.grad_total) ctx->mem.grad_total = ctx->grad_step;
    if (ctx->grad_live > ctx->mem.grad_live_peak) ctx->mem.grad_live_peak = ctx->grad_live;
    return p;
}

/* t's producer has run its backward: its gradient buffer goes back to its bin, unless t keeps
 * it (persistent, bl_retain_grad, or a buffer the caller installed). */
static void bl_grad_release(bl_ctx *ctx, bl_tensor *t)
{
    if (!t->grad || t->persistent || !bl_arena_owns(ctx->grads, t->grad)) return;
    for (int i = 0; i < ctx->n_retained; i++)
        if (ctx->retained[i] == t) return;
    const size_t bytes = bl_grad_bytes(t);
    bl_grad_bin *b = bl_grad_bin_find(ctx, bytes);
    if (b->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 4;
        b->free = bl_realloc(b->free, (size_t)b->cap * sizeof *b->free);
    }
    b->free[b->n++] = t->grad;
    ASAN_POISON_MEMORY_REGION(t->grad, bytes);
    ctx->grad_live -= bytes;
    t->grad = NULL;
}

/* Empty the free lists, unpoisoning their buffers (before the arena hands the memory out again
 * or gives it back). */
static void bl_grad_unpoison_free(bl_ctx *ctx)
{
    for (int i = 0; i < ctx->n_bins; i++) {
        bl_grad_bin *b = &ctx->bins[i];
        for (int k = 0; k < b->n; k++) ASAN_UNPOISON_MEMORY_REGION(b->free[k], b->bytes);
        b->n = 0;
    }
}

/* Forget every gradient buffer (the step ends). */
static void bl_grad_reset(bl_ctx *ctx)
{
    bl_grad_unpoison_free(ctx);
    bl_arena_reset(ctx->grads);
    ctx->grad_live = ctx->grad_step = 0;
    ctx->n_retained = 0;
}

bl_ctx *bl_ctx_alloc(size_t arena_bytes)
{
    bl_ctx *ctx = bl_calloc(1, sizeof *ctx);
    ctx->arena = bl_arena_alloc(arena_bytes ? arena_bytes : (size_t)1 << 20);
    ctx->grads = bl_arena_alloc((size_t)64 << 10);
    ctx->grad_enabled = 1;
    return ctx;
}

void bl_ctx_free(bl_ctx *ctx)
{
    if (!ctx) return;
    bl_grad_unpoison_free(ctx);
    for (int i = 0; i < ctx->n_bins; i++) free(ctx->bins[i].free);
    free(ctx->bins);
    free(ctx->retained);
    bl_arena_free(ctx->grads);
    bl_arena_free(ctx->arena);
    free(ctx);
}

void bl_ctx_reset(bl_ctx *ctx)
{
    bl_arena_reset(ctx->arena);
    bl_grad_reset(ctx);
    ctx->last = NULL;
    ctx->n_nodes = 0;
}

bl_arena *bl_ctx_arena(bl_ctx *ctx) { return ctx->arena; }

void bl_ctx_memory(const bl_ctx *ctx, bl_ctx_mem *mem)
{
    *mem = ctx->mem;
    mem->arena_peak = bl_arena_peak(ctx->arena);
    mem->arena_reserved = bl_arena_reserved(ctx->arena);
    mem->grad_peak = bl_arena_peak(ctx->grads);
    mem->grad_reserved = bl_arena_reserved(ctx->grads);
}

void bl_retain_grad(bl_ctx *ctx, bl_tensor *t)
{
    if (t->persistent) return;
    if (ctx->n_retained == ctx->cap_retained) {
        ctx->cap_retained = ctx->cap_retained ? 2 * ctx->cap_retained : 8;
        ctx->retained = bl_realloc(ctx->retained, (size_t)ctx->cap_retained * sizeof *ctx->retained);
    }
    ctx->retained[ctx->n_retained++] = t;
}

int bl_set_grad_enabled(bl_ctx *ctx, int enabled)
{
    int old = ctx->grad_enabled;
    ctx->grad_enabled = enabled;
    return old;
}

int bl_grad_enabled(const bl_ctx *ctx) { return ctx->grad_enabled; }

void bl_ctx_set_backward_hook(bl_ctx *ctx, bl_backward_hook *fn, void *user)
{
    ctx->hook = fn;
    ctx->hook_user = user;
}
int bl_tape_length(const bl_ctx *ctx) { return ctx->n_nodes; }

void *bl_scratch(bl_ctx *ctx, size_t bytes) { return bl_arena_push(ctx->arena, bytes); }

bl_tensor *bl_new(bl_ctx *ctx, int ndim, const int64_t *shape)
{
    return bl_tensor_push(ctx->arena, ndim, shape);
}

bl_tensor *bl_zeros(bl_ctx *ctx, int ndim, const int64_t *shape)
{
    bl_tensor *t = bl_new(ctx, ndim, shape);
    memset(t->data, 0, (size_t)t->numel * sizeof(bl_real));
    return t;
}

bl_tensor *bl_full(bl_ctx *ctx, int ndim, const int64_t *shape, bl_real value)
{
    bl_tensor *t = bl_new(ctx, ndim, shape);
    bl_tensor_fill(t, value);
    return t;
}

bl_tensor *bl_new_like(bl_ctx *ctx, const bl_tensor *t) { return bl_new(ctx, t->ndim, t->shape); }

bl_tensor *bl_from_data(bl_ctx *ctx, int ndim, const int64_t *shape, const bl_real *data)
{
    bl_tensor *t = bl_new(ctx, ndim, shape);
    memcpy(t->data, data, (size_t)t->numel * sizeof(bl_real));
    return t;
}

bl_tensor *bl_detach(bl_ctx *ctx, bl_tensor *t)
{
    bl_tensor *v = bl_arena_push_zero(ctx->arena, sizeof *v);
    bl_tensor_set_shape(v, t->ndim, t->shape);
    v->data = t->data;
    v->layout = t->layout;
    return v;
}

bl_real *bl_grad(bl_ctx *ctx, bl_tensor *t)
{
    if (!t->grad) {
        t->grad = bl_grad_take(ctx, t);
        memset(t->grad, 0, (size_t)t->numel * sizeof(bl_real));
    }
    return t->grad;
}

bl_real *bl_grad_for_write(bl_ctx *ctx, bl_tensor *t, int *fresh)
{
    *fresh = t->grad == NULL;
    if (!t->grad) t->grad = bl_grad_take(ctx, t);
    return t->grad;
}

int bl_tape_needs(const bl_ctx *ctx, int n_in, bl_tensor *const *in)
{
    if (!ctx->grad_enabled) return 0;
    for (int i = 0; i < n_in; i++)
        if (in[i] && in[i]->requires_grad) return 1;
    return 0;
}

bl_node *bl_tape_push(bl_ctx *ctx, const char *op, bl_backward_fn *backward, bl_tensor *out,
                      int n_in, bl_tensor *const *in, size_t saved_bytes)
{
    for (int i = 0; i < n_in; i++)
        if (in[i] && in[i]->layout != BL_LAYOUT_PLAIN) {
            char s[96];
            bl_abort(__FILE__, __LINE__,
                     "%s: input %d %s is in the channel-blocked layout (block %d), which this op "
                     "does not read; convert it with bl_to_plain first (docs/conv.md, Layouts)",
                     op, i, bl_shape_str(in[i], s, sizeof s), in[i]->layout);
        }
    return bl_tape_push_any_layout(ctx, op, backward, out, n_in, in, saved_bytes);
}

bl_node *bl_tape_push_any_layout(bl_ctx *ctx, const char *op, bl_backward_fn *backward,
                                 bl_tensor *out, int n_in, bl_tensor *const *in, size_t saved_bytes)
{
    if (!bl_tape_needs(ctx, n_in, in)) return NULL;
    BL_ASSERT(!out->persistent, "%s: the output of a recorded op must be a per-step tensor", op);
    /* one node per output: bl_backward releases out's gradient once its node has run */
    BL_ASSERT(!out->requires_grad, "%s: the output is already recorded (or a leaf requiring a gradient)",
              op);
    bl_node *n = bl_arena_push_zero(ctx->arena, sizeof *n);
    n->op = op;
    n->backward = backward;
    n->out = out;
    n->n_in = n_in;
    n->in = bl_arena_push(ctx->arena, (size_t)(n_in ? n_in : 1) * sizeof *n->in);
    for (int i = 0; i < n_in; i++) n->in[i] = in[i];
    n->saved = saved_bytes ? bl_arena_push_zero(ctx->arena, saved_bytes) : NULL;
    n->prev = ctx->last;
    ctx->last = n;
    ctx->n_nodes++;
    out->requires_grad = 1;
    return n;
}

void bl_backward(bl_ctx *ctx, bl_tensor *loss)
{
    char s[96];
    BL_ASSERT(loss->numel == 1, "bl_backward: loss must have one element, got shape %s",
              bl_shape_str(loss, s, sizeof s));
    BL_ASSERT(loss->requires_grad,
              "bl_backward: loss does not require a gradient (no parameter reached it, or it was "
              "computed with gradients disabled)");
    ctx->mem.forward_bytes = bl_arena_used(ctx->arena);
    bl_grad(ctx, loss)[0] += 1;
    int old = bl_set_grad_enabled(ctx, 0); /* backward functions use ops without recording */
    if (loss->persistent) loss->has_grad = 1;
    for (bl_node *n = ctx->last; n; n = n->prev) {
        if (!n->out->grad) continue; /* not reached from the loss */
        n->backward(ctx, n);
        /* a parameter fed into a reached node has a gradient this step (torch: grad not None) */
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i] && n->in[i]->persistent && n->in[i]->requires_grad) n->in[i]->has_grad = 1;
        if (ctx->hook) ctx->hook(ctx->hook_user, n);
        /* nothing accumulates into n->out any more: its nodes of use ran before this one */
        bl_grad_release(ctx, n->out);
    }
    bl_set_grad_enabled(ctx, old);
    /* the tape is consumed (as torch without retain_graph): a second bl_backward on a later
     * loss must not replay these nodes and count their contributions twice */
    ctx->last = NULL;
    ctx->n_nodes = 0;
}
