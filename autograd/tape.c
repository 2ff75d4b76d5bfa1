#include "autograd/tape.h"

#include <stdlib.h>
#include <string.h>

struct bl_ctx {
    bl_arena *arena;
    bl_node *last;
    int n_nodes;
    int grad_enabled;
};

bl_ctx *bl_ctx_alloc(size_t arena_bytes)
{
    bl_ctx *ctx = bl_calloc(1, sizeof *ctx);
    ctx->arena = bl_arena_alloc(arena_bytes ? arena_bytes : (size_t)1 << 20);
    ctx->grad_enabled = 1;
    return ctx;
}

void bl_ctx_free(bl_ctx *ctx)
{
    if (!ctx) return;
    bl_arena_free(ctx->arena);
    free(ctx);
}

void bl_ctx_reset(bl_ctx *ctx)
{
    bl_arena_reset(ctx->arena);
    ctx->last = NULL;
    ctx->n_nodes = 0;
}

bl_arena *bl_ctx_arena(bl_ctx *ctx) { return ctx->arena; }

int bl_set_grad_enabled(bl_ctx *ctx, int enabled)
{
    int old = ctx->grad_enabled;
    ctx->grad_enabled = enabled;
    return old;
}

int bl_grad_enabled(const bl_ctx *ctx) { return ctx->grad_enabled; }
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
    if (!t->grad) t->grad = bl_arena_push_zero(ctx->arena, (size_t)t->numel * sizeof(bl_real));
    return t->grad;
}

bl_real *bl_grad_for_write(bl_ctx *ctx, bl_tensor *t, int *fresh)
{
    *fresh = t->grad == NULL;
    if (!t->grad) t->grad = bl_arena_push(ctx->arena, (size_t)t->numel * sizeof(bl_real));
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
    bl_grad(ctx, loss)[0] += 1;
    int old = bl_set_grad_enabled(ctx, 0); /* backward functions use ops without recording */
    if (loss->persistent) loss->has_grad = 1;
    for (bl_node *n = ctx->last; n; n = n->prev) {
        if (!n->out->grad) continue; /* not reached from the loss */
        n->backward(ctx, n);
        /* a parameter fed into a reached node has a gradient this step (torch: grad not None) */
        for (int i = 0; i < n->n_in; i++)
            if (n->in[i] && n->in[i]->persistent && n->in[i]->requires_grad) n->in[i]->has_grad = 1;
    }
    bl_set_grad_enabled(ctx, old);
    /* the tape is consumed (as torch without retain_graph): a second bl_backward on a later
     * loss must not replay these nodes and count their contributions twice */
    ctx->last = NULL;
    ctx->n_nodes = 0;
}
