/* Shape ops, forward and backward side by side. Results are contiguous copies, except reshape,
 * which is a view sharing its input's data (with a gradient buffer of its own). Dims may be
 * given negative, counted from the end, as in PyTorch. */
#include <string.h>

#include "autograd/ops.h"
#include "autograd/ops_internal.h"

/* ------------------------------------------------------------------------------------------ */
/* reshape: a view */

static void bl_reshape_backward(bl_ctx *ctx, bl_node *node)
{
    bl_real *ga = bl_grad(ctx, node->in[0]);
    const bl_real *g = node->out->grad;
    const int64_t n = node->out->numel;
#pragma omp parallel for if (n > BL_OMP_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) ga[i] += g[i];
}

bl_tensor *bl_reshape(bl_ctx *ctx, bl_tensor *a, int ndim, const int64_t *shape)
{
    BL_ASSERT(a, "bl_reshape: NULL input");
    BL_ASSERT(ndim >= 0 && ndim <= BL_MAX_DIMS, "bl_reshape: %d dims requested, at most %d", ndim,
              BL_MAX_DIMS);
    int64_t sh[BL_MAX_DIMS], known = 1;
    int infer = -1, ok = 1;
    for (int d = 0; d < ndim; d++) {
        sh[d] = shape[d];
        if (shape[d] == -1 && infer < 0)
            infer = d;
        else if (shape[d] < 0)
            ok = 0;
        else
            known *= shape[d];
    }
    if (ok && infer >= 0) {
        if (known > 0 && a->numel % known == 0)
            sh[infer] = a->numel / known;
        else
            ok = 0;
    }
    if (!ok || bl_shape_numel(ndim, sh) != a->numel) {
        char sa[96], sb[96] = "(";
        size_t k = 1;
        for (int d = 0; d < ndim; d++)
            k += (size_t)snprintf(sb + k, sizeof sb - k, d ? ", %lld" : "%lld", (long long)shape[d]);
        snprintf(sb + k, sizeof sb - k, ")");
        bl_abort(__FILE__, __LINE__, "bl_reshape: cannot reshape %s (%lld elements) to %s", 
                 bl_shape_str(a, sa, sizeof sa), (long long)a->numel, sb);
    }
    if (a->layout != BL_LAYOUT_PLAIN) {
        /* (B, C, S) with the same B and C is the same blocked memory */
        char sa[96];
        BL_ASSERT(ndim >= 2 && sh[0] == a->shape[0] && sh[1] == a->shape[1],
                  "bl_reshape: x %s is channel-blocked (block %d); only reshapes keeping dims 0 "
                  "and 1 keep that layout, convert with bl_to_plain first",
                  bl_shape_str(a, sa, sizeof sa), a->layout);
    }
    bl_tensor *out = bl_arena_push_zero(bl_ctx_arena(ctx), sizeof *out);
    bl_tensor_set_shape(out, ndim, sh);
    out->data = a->data;
    out->layout = a->layout;
    bl_tape_push_any_layout(ctx, "bl_reshape", bl_reshape_backward, out, 1, &a, 0);
    return out;
}

/* ------------------------------------------------------------------------------------------ */
/* permute */

static void bl_permute_backward(bl_ctx *ctx, bl_node *node)
{
    bl_tensor *a = node->in[0], *out = node->out;
    const int *perm = node->saved;
    int64_t gst[BL_MAX_DIMS], st[1][BL_MAX_DIMS];
    bl_contiguous_strides(out->ndim, out->shape, gst);
    /* a's dim perm[i] is out's dim i */
    for (int i = 0; i < out->ndim; i++) st[0][perm[i]] = gst[i];
    const bl_real *src = out->grad;
    bl_strided_apply(bl_grad(ctx, a), a->ndim, a->shape, 1, &src,
                     (const int64_t(*)[BL_MAX_DIMS])st, bl_row_copy_acc, NULL);
}

bl_tensor *bl_permute(bl_ctx *ctx, bl_tensor *a, const int *perm)
{
    BL_ASSERT(a && perm, "bl_permute: NULL input");
    int seen[BL_MAX_DIMS] = {0}, ok = 1;
    for (int i = 0; i < a->ndim; i++) {
        if (perm[i] < 0 || perm[i] >= a->ndim || seen[perm[i]])
            ok = 0;
        else
            seen[perm[i]] = 1;
    }
    if (!ok) {
        char sa[96], sp[96] = "(";
        size_t k = 1;
        for (int i = 0; i < a->ndim; i++)
            k += (size_t)snprintf(sp + k, sizeof sp - k, i ? ", %d" : "%d", perm[i]);
        snprintf(sp + k, sizeof sp - k, ")");
        bl_abort(__FILE__, __LINE__, "bl_permute: %s is not a permutation of the dims of %s", sp,
                 bl_shape_str(a, sa, sizeof sa));
    }
    int64_t ast[BL_MAX_DIMS], shape[BL_MAX_DIMS], st[1][BL_MAX_DIMS];
    bl_contiguous_strides(a->ndim, a->shape, ast);
    for (int i = 0; i < a->ndim; i++) {
        shape[i] = a->shape[perm[i]];
        st[0][i] = ast[perm[i]];
    }
    bl_tensor *out = bl_new(ctx, a->ndim, shape);
    const bl_real *src = a->data;
    bl_strided_apply(out->data, a->ndim, shape, 1, &src, (const int64_t(*)[BL_MAX_DIMS])st,
                     bl_row_copy, NULL);
    bl_node *node = bl_tape_push(ctx, "bl_permute", bl_permute_backward, out, 1, &a,
                                 BL_MAX_DIMS * sizeof(int));
    if (node) memcpy(node->saved, perm, (size_t)a->ndim * sizeof(int));
    return out;
}

/* ------------------------------------------------------------------------------------------ */
/* slice / split / concat: blocks along one dim of (outer, n, inner) views */

/* dst rows (outer, dn, inner) at [dst_at, dst_at + len) (+)= src rows (outer, sn, inner) at
 * [src_at, src_at + len) */
static void bl_copy_block(bl_real *dst, int64_t dn, int64_t dst_at, const bl_real *src,
                          int64_t sn, int64_t src_at, int64_t len, int64_t outer, int64_t inner,
                          int acc)
{
    const int64_t run = len * inner;
#pragma omp parallel for if (outer * run > BL_OMP_MIN) schedule(static)
    for (int64_t o = 0; o < outer; o++) {
        bl_real *d = dst + (o * dn + dst_at) * inner;
        const bl_real *s = src + (o * sn + src_at) * inner;
        if (acc)
            for (int64_t j = 0; j < run; j++) d[j] += s[j];
        else
            memcpy(d, s, (size_t)run * sizeof(bl_real));
    }
}

typedef struct bl_slice_saved {
    int dim;
    int64_t start;
} bl_slice_saved;

static void bl_slice_backward(bl_ctx *ctx, bl_node *node)
{
    const bl_slice_saved *sv = node->saved;
    bl_tensor *a = node->in[0];
    int64_t outer, inner, len = node->out->shape[sv->dim];
    bl_ops_split_dims(a, sv->dim, &outer, &inner);
    bl_copy_block(bl_grad(ctx, a), a->shape[sv->dim], sv->start, node->out->grad, len, 0, len,
                  outer, inner, 1);
}

bl_tensor *bl_slice(bl_ctx *ctx, bl_tensor *a, int dim, int64_t start, int64_t end)
{
    BL_ASSERT(a, "bl_slice: NULL input");
    dim = bl_ops_dim("bl_slice", a, dim);
    char s[96];
    BL_ASSERT(0 <= start && start <= end && end <= a->shape[dim],
              "bl_slice: range [%lld, %lld) out of bounds for dim %d of shape %s", (long long)start,
              (long long)end, dim, bl_shape_str(a, s, sizeof s));
    int64_t shape[BL_MAX_DIMS], outer, inner;
    memcpy(shape, a->shape, sizeof shape);
    shape[dim] = end - start;
    bl_tensor *out = bl_new(ctx, a->ndim, shape);
    bl_ops_split_dims(a, dim, &outer, &inner);
    bl_copy_block(out->data, end - start, 0, a->data, a->shape[dim], start, end - start, outer,
                  inner, 0);
    bl_node *node = bl_tape_push(ctx, "bl_slice", bl_slice_backward, out, 1, &a,
                                 sizeof(bl_slice_saved));
    if (node) *(bl_slice_saved *)node->saved = (bl_slice_saved){dim, start};
    return out;
}

void bl_split(bl_ctx *ctx, bl_tensor *a, int dim, int n, const int64_t *sizes, bl_tensor **out)
{
    BL_ASSERT(a && sizes && out, "bl_split: NULL input");
    dim = bl_ops_dim("bl_split", a, dim);
    int64_t total = 0;
    for (int k = 0; k < n; k++) {
        BL_ASSERT(sizes[k] >= 0, "bl_split: negative size %lld for piece %d", (long long)sizes[k], k);
        total += sizes[k];
    }
    char s[96];
    BL_ASSERT(total == a->shape[dim], "bl_split: sizes sum to %lld, dim %d of %s has %lld",
              (long long)total, dim, bl_shape_str(a, s, sizeof s), (long long)a->shape[dim]);
    int64_t at = 0;
    for (int k = 0; k < n; k++) {
        out[k] = bl_slice(ctx, a, dim, at, at + sizes[k]);
        at += sizes[k];
    }
}

static void bl_concat_backward(bl_ctx *ctx, bl_node *node)
{
    const int dim = *(const int *)node->saved;
    bl_tensor *out = node->out;
    int64_t outer, inner, at = 0;
    bl_ops_split_dims(out, dim, &outer, &inner);
    for (int k = 0; k < node->n_in; k++) {
        bl_tensor *t = node->in[k];
        int64_t len = t->shape[dim];
        if (t->requires_grad)
            bl_copy_block(bl_grad(ctx, t), len, 0, out->grad, out->shape[dim], at, len, outer,
                          inner, 1);
        at += len;
    }
}

bl_tensor *bl_concat(bl_ctx *ctx, int n, bl_tensor *const *ts, int dim)
{
    BL_ASSERT(n >= 1 && ts, "bl_concat: needs at least one input (got %d)", n);
    for (int k = 0; k < n; k++) BL_ASSERT(ts[k], "bl_concat: input %d is NULL", k);
    dim = bl_ops_dim("bl_concat", ts[0], dim);
    int64_t shape[BL_MAX_DIMS], total = 0;
    memcpy(shape, ts[0]->shape, sizeof shape);
    for (int k = 0; k < n; k++) {
        const bl_tensor *t = ts[k];
        int ok = t->ndim == ts[0]->ndim;
        for (int d = 0; ok && d < t->ndim; d++)
            if (d != dim && t->shape[d] != ts[0]->shape[d]) ok = 0;
        if (!ok) {
            char s0[96], sk[96];
            bl_abort(__FILE__, __LINE__,
                     "bl_concat: input %d has shape %s, input 0 has %s; they may differ only in dim %d",
                     k, bl_shape_str(t, sk, sizeof sk), bl_shape_str(ts[0], s0, sizeof s0), dim);
        }
        total += t->shape[dim];
    }
    shape[dim] = total;
    /* blocked parts stay blocked when every part is, with the same block, along dim 1: a
     * part's channels [at, at + C_k) of one image are then one contiguous piece of C_k S
     * values and the plain copy works as is. Otherwise (mixed layouts, e.g. small widths that
     * are no multiple of the block) every part is brought to plain first. */
    int layout = ts[0]->layout, mixed = 0;
    for (int k = 0; k < n; k++)
        if (ts[k]->layout != layout || (layout != BL_LAYOUT_PLAIN && dim != 1)) mixed = 1;
    if (mixed) {
        bl_tensor **parts = bl_scratch(ctx, (size_t)n * sizeof *parts);
        for (int k = 0; k < n; k++) parts[k] = bl_to_plain(ctx, ts[k]);
        ts = parts;
        layout = BL_LAYOUT_PLAIN;
    }
    bl_tensor *out = bl_new(ctx, ts[0]->ndim, shape);
    out->layout = layout;
    int64_t outer, inner, at = 0;
    bl_ops_split_dims(out, dim, &outer, &inner);
    for (int k = 0; k < n; k++) {
        bl_copy_block(out->data, total, at, ts[k]->data, ts[k]->shape[dim], 0, ts[k]->shape[dim],
                      outer, inner, 0);
        at += ts[k]->shape[dim];
    }
    bl_node *node = bl_tape_push_any_layout(ctx, "bl_concat", bl_concat_backward, out, n, ts,
                                            sizeof(int));
    if (node) *(int *)node->saved = dim;
    return out;
}

/* ------------------------------------------------------------------------------------------ */
/* pad2d / crop2d on the last two dims */

/* dst (nb, dh, dw) (+)= src (nb, sh, sw) shifted: dst[i][j] takes src[i + dy][j + dx] where
 * that exists; in set mode the rest of dst is zeroed. Pad is dy = -top, crop is dy = +top; the
 * backward of each is the other's shift in accumulate mode. */
static void bl_window2d(bl_real *dst, int64_t dh, int64_t dw, const bl_real *src, int64_t sh,
                        int64_t sw, int64_t nb, int64_t dy, int64_t dx, int acc)
{
    const int64_t j0 = dx < 0 ? -dx : 0, j1 = sw - dx < dw ? sw - dx : dw;
#pragma omp parallel for if (nb * dh * dw > BL_OMP_MIN) schedule(static)
    for (int64_t r = 0; r < nb * dh; r++) {
        int64_t b = r / dh, i = r % dh, si = i + dy;
        bl_real *d = dst + r * dw;
        const int inside = si >= 0 && si < sh && j1 > j0;
        if (!acc) {
            if (!inside) {
                memset(d, 0, (size_t)dw * sizeof(bl_real));
                continue;
            }
            memset(d, 0, (size_t)j0 * sizeof(bl_real));
            if (j1 < dw) memset(d + j1, 0, (size_t)(dw - j1) * sizeof(bl_real));
        }
        if (!inside) continue;
        const bl_real *s = src + (b * sh + si) * sw + dx;
        if (acc)
            for (int64_t j = j0; j < j1; j++) d[j] += s[j];
        else
            memcpy(d + j0, s + j0, (size_t)(j1 - j0) * sizeof(bl_real));
    }
}

typedef struct bl_pad_saved {
    int top, left;
} bl_pad_saved;

static void bl_pad2d_backward(bl_ctx *ctx, bl_node *node)
{
    const bl_pad_saved *sv = node->saved;
    bl_tensor *a = node->in[0], *out = node->out;
    int nd = a->ndim;
    bl_window2d(bl_grad(ctx, a), a->shape[nd - 2], a->shape[nd - 1], out->grad,
                out->shape[nd - 2], out->shape[nd - 1], bl_shape_numel(nd - 2, a->shape), sv->top,
                sv->left, 1);
}

static void bl_crop2d_backward(bl_ctx *ctx, bl_node *node)
{
    const bl_pad_saved *sv = node->saved;
    bl_tensor *a = node->in[0], *out = node->out;
    int nd = a->ndim;
    bl_window2d(bl_grad(ctx, a), a->shape[nd - 2], a->shape[nd - 1], out->grad,
                out->shape[nd - 2], out->shape[nd - 1], bl_shape_numel(nd - 2, a->shape), -sv->top,
                -sv->left, 1);
}

/* sign +1: pad, -1: crop */
static bl_tensor *bl_border2d(bl_ctx *ctx, const char *op, bl_tensor *a, int top, int bottom,
                              int left, int right, int sign, bl_backward_fn *backward)
{
    char s[96];
    BL_ASSERT(a, "%s: NULL input", op);
    BL_ASSERT(a->ndim >= 2, "%s: needs at least 2 dims, got shape %s", op,
              bl_shape_str(a, s, sizeof s));
    BL_ASSERT(top >= 0 && bottom >= 0 && left >= 0 && right >= 0,
              "%s: negative border (%d, %d, %d, %d) for shape %s", op, top, bottom, left, right,
              bl_shape_str(a, s, sizeof s));
    int nd = a->ndim;
    int64_t shape[BL_MAX_DIMS];
    memcpy(shape, a->shape, sizeof shape);
    shape[nd - 2] += sign * (top + bottom);
    shape[nd - 1] += sign * (left + right);
    BL_ASSERT(shape[nd - 2] >= 0 && shape[nd - 1] >= 0,
              "%s: removing (%d, %d, %d, %d) rows/cols leaves nothing of shape %s", op, top,
              bottom, left, right, bl_shape_str(a, s, sizeof s));
    bl_tensor *out = bl_new(ctx, nd, shape);
    bl_window2d(out->data, shape[nd - 2], shape[nd - 1], a->data, a->shape[nd - 2],
                a->shape[nd - 1], bl_shape_numel(nd - 2, a->shape), -sign * top, -sign * left, 0);
    bl_node *node = bl_tape_push(ctx, op, backward, out, 1, &a, sizeof(bl_pad_saved));
    if (node) *(bl_pad_saved *)node->saved = (bl_pad_saved){top, left};
    return out;
}

bl_tensor *bl_pad2d(bl_ctx *ctx, bl_tensor *a, int top, int bottom, int left, int right)
{
    return bl_border2d(ctx, "bl_pad2d", a, top, bottom, left, right, 1, bl_pad2d_backward);
}

bl_tensor *bl_crop2d(bl_ctx *ctx, bl_tensor *a, int top, int bottom, int left, int right)
{
    return bl_border2d(ctx, "bl_crop2d", a, top, bottom, left, right, -1, bl_crop2d_backward);
}

/* ------------------------------------------------------------------------------------------ */
/* nearest upsampling x2 */

/* x seen as (planes, H, W, v): v = 1 plain, v = the block in a channel-blocked layout (the
 * block's channels of one pixel are neighbours), so one loop serves both. */
static void upsample2x_backward(bl_ctx *ctx, bl_node *node)
{
    bl_tensor *x = node->in[0];
    const int64_t v = x->layout != BL_LAYOUT_PLAIN ? x->layout : 1;
    const int64_t H = x->shape[x->ndim - 2], W = x->shape[x->ndim - 1];
    const int64_t rows = W ? x->numel / (W * v) : 0, Wv = W * v;
    const bl_real *dy = node->out->grad;
    bl_real *dx = bl_grad(ctx, x);
    /* each input pixel receives the sum of its 4 children */
#pragma omp parallel for schedule(static) if (x->numel > BL_OMP_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const int64_t plane = r / H, i = r % H;
        const bl_real *d0 = dy + (plane * 2 * H + 2 * i) * 2 * Wv, *d1 = d0 + 2 * Wv;
        bl_real *d = dx + r * Wv;
        for (int64_t j = 0; j < W; j++)
            for (int64_t l = 0; l < v; l++)
                d[j * v + l] += d0[2 * j * v + l] + d0[(2 * j + 1) * v + l] +
                                d1[2 * j * v + l] + d1[(2 * j + 1) * v + l];
    }
}

bl_tensor *bl_upsample2x(bl_ctx *ctx, bl_tensor *x)
{
    char sx[96];
    BL_ASSERT(x->ndim >= 2, "bl_upsample2x: x %s needs at least 2 dims (..., H, W)",
              bl_shape_str(x, sx, 96));
    BL_ASSERT(x->layout == BL_LAYOUT_PLAIN || x->ndim >= 4,
              "bl_upsample2x: channel-blocked x %s needs (B, C, ..., H, W)", bl_shape_str(x, sx, 96));
    int64_t shape[BL_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    const int64_t v = x->layout != BL_LAYOUT_PLAIN ? x->layout : 1;
    const int64_t H = shape[x->ndim - 2], W = shape[x->ndim - 1], Wv = W * v;
    const int64_t rows = x->numel / (Wv ? Wv : 1);
    shape[x->ndim - 2] = 2 * H;
    shape[x->ndim - 1] = 2 * W;
    bl_tensor *y = bl_new(ctx, x->ndim, shape);
    y->layout = x->layout;
#pragma omp parallel for schedule(static) if (x->numel > BL_OMP_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const int64_t plane = r / H, i = r % H;
        const bl_real *s = x->data + r * Wv;
        bl_real *y0 = y->data + (plane * 2 * H + 2 * i) * 2 * Wv, *y1 = y0 + 2 * Wv;
        for (int64_t j = 0; j < W; j++)
            for (int64_t l = 0; l < v; l++) y0[2 * j * v + l] = y0[(2 * j + 1) * v + l] = s[j * v + l];
        memcpy(y1, y0, (size_t)(2 * Wv) * sizeof *y1);
    }
    bl_tensor *in[1] = {x};
    bl_tape_push_any_layout(ctx, "bl_upsample2x", upsample2x_backward, y, 1, in, 0);
    return y;
}

/* ------------------------------------------------------------------------------------------ */
/* layouts */

/* plain (B, C, S) <-> blocked (B, C/v, S, v): to_plain = 1 writes plain from blocked,
 * to_plain = 0 adds plain into blocked (the backward) */
static void layout_reorder(bl_real *plain, bl_real *blocked, int64_t B, int64_t C, int64_t S,
                           int64_t v, int to_plain)
{
    const int64_t CB = C / v;
#pragma omp parallel for schedule(static) if (B * C * S > BL_OMP_MIN)
    for (int64_t bc = 0; bc < B * CB; bc++) {
        const int64_t b = bc / CB, cb = bc % CB;
        bl_real *blk = blocked + bc * S * v, *pl = plain + (b * C + cb * v) * S;
        for (int64_t l = 0; l < v; l++)
            if (to_plain)
                for (int64_t k = 0; k < S; k++) pl[l * S + k] = blk[k * v + l];
            else
                for (int64_t k = 0; k < S; k++) blk[k * v + l] += pl[l * S + k];
    }
}

static void to_plain_backward(bl_ctx *ctx, bl_node *node)
{
    bl_tensor *a = node->in[0];
    const int64_t B = a->shape[0], C = a->shape[1];
    layout_reorder(node->out->grad, bl_grad(ctx, a), B, C, a->numel / (B * C), a->layout, 0);
}

bl_tensor *bl_to_plain(bl_ctx *ctx, bl_tensor *a)
{
    BL_ASSERT(a, "bl_to_plain: NULL input");
    if (a->layout == BL_LAYOUT_PLAIN) return a;
    char sa[96];
    BL_ASSERT(a->ndim >= 2 && a->shape[1] % a->layout == 0,
              "bl_to_plain: blocked tensor %s (block %d) must be (B, C, ...) with C a multiple "
              "of the block", bl_shape_str(a, sa, sizeof sa), a->layout);
    bl_tensor *out = bl_new_like(ctx, a);
    const int64_t B = a->shape[0], C = a->shape[1];
    if (a->numel) layout_reorder(out->data, a->data, B, C, a->numel / (B * C), a->layout, 1);
    bl_tape_push_any_layout(ctx, "bl_to_plain", to_plain_backward, out, 1, &a, 0);
    return out;
}
