/* Reductions, forward and backward, and the broadcast-reduction kernel (ops_internal.h) that is
 * also the backward of every broadcasting op.
 *
 * Determinism: every sum runs in double over fixed blocks of BL_BLOCK reduced elements; the
 * blocks' partial sums are added in block order. Neither depends on the thread count. */
#include <math.h>
#include <string.h>

#include "autograd/ops.h"
#include "autograd/ops_internal.h"

#define BL_BLOCK 8192

/* Offsets of target t (row-major over the kept dims kd[0..nk)) in src and dst. */
static inline void bl_reduce_target(int64_t t, int nk, const int *kd, const int64_t *csh,
                                    const int64_t (*cst)[BL_MAX_DIMS], int64_t *src_off,
                                    int64_t *dst_off)
{
    int64_t s = 0, d = 0;
    for (int q = nk - 1; q >= 0; q--) {
        int64_t i = t % csh[kd[q]];
        t /= csh[kd[q]];
        s += i * cst[0][kd[q]];
        d += i * cst[1][kd[q]];
    }
    *src_off = s;
    *dst_off = d;
}

/* The innermost dim is kept (e.g. sum over dim 1 of (B, C, H, W), or (N, k) -> (k)): rather
 * than walking each target's elements with a large stride, add whole contiguous rows of up to
 * BL_COLUMNS targets into a vector of accumulators, one reduced index at a time. Work items are
 * (outer target, column chunk, block of BL_BLOCK reduced indices); partial sums of the blocks
 * are combined in block order. */
#define BL_COLUMNS 256
#define BL_COLUMNS_MIN 16

static void bl_reduce_columns(bl_ctx *ctx, bl_real *dst, const bl_real *src, int nd,
                              const int64_t *csh, const int64_t (*cst)[BL_MAX_DIMS], int nk,
                              const int *kd, int nr, const int *rd, int64_t T, int64_t R,
                              double scale)
{
    const int64_t L = csh[nd - 1], To = T / L; /* kept dims: (To outer targets, L columns) */
    const int64_t nch = (L + BL_COLUMNS - 1) / BL_COLUMNS, nb = (R + BL_BLOCK - 1) / BL_BLOCK;
    const int64_t nwork = To * nch * nb;
    double *part = nb > 1 ? bl_scratch(ctx, (size_t)nwork * BL_COLUMNS * sizeof(double)) : NULL;
    const int64_t numel = T * R;

#pragma omp parallel for if (numel > BL_OMP_MIN) schedule(static)
    for (int64_t w = 0; w < nwork; w++) {
        const int64_t b = w % nb, tc = w / nb, c = tc % nch, to = tc / nch;
        const int64_t i0 = c * BL_COLUMNS, cw = L - i0 < BL_COLUMNS ? L - i0 : BL_COLUMNS;
        int64_t base, doff;
        bl_reduce_target(to, nk - 1, kd, csh, cst, &base, &doff);
        int64_t r = b * BL_BLOCK, r1 = r + BL_BLOCK < R ? r + BL_BLOCK : R;
        int64_t idx[BL_MAX_DIMS], off = 0, rem = r;
        for (int q = nr - 1; q >= 0; q--) {
            idx[q] = rem % csh[rd[q]];
            rem /= csh[rd[q]];
            off += idx[q] * cst[0][rd[q]];
        }
        double acc[BL_COLUMNS] = {0};
        for (; r < r1; r++) {
            const bl_real *p = src + base + off + i0;
            for (int64_t i = 0; i < cw; i++) acc[i] += p[i];
            off += cst[0][rd[nr - 1]];
            idx[nr - 1]++;
            for (int q = nr - 1; q > 0 && idx[q] == csh[rd[q]]; q--) { /* odometer carry */
                off -= idx[q] * cst[0][rd[q]];
                idx[q] = 0;
                idx[q - 1]++;
                off += cst[0][rd[q - 1]];
            }
        }
        if (nb == 1)
            for (int64_t i = 0; i < cw; i++) dst[doff + i0 + i] += (bl_real)(scale * acc[i]);
        else
            memcpy(part + w * BL_COLUMNS, acc, (size_t)cw * sizeof(double));
    }
    if (nb > 1) {
#pragma omp parallel for if (To * nch > 1 && numel > BL_OMP_MIN) schedule(static)
        for (int64_t tc = 0; tc < To * nch; tc++) {
            const int64_t c = tc % nch, to = tc / nch, i0 = c * BL_COLUMNS;
            const int64_t cw = L - i0 < BL_COLUMNS ? L - i0 : BL_COLUMNS;
            int64_t base, doff;
            bl_reduce_target(to, nk - 1, kd, csh, cst, &base, &doff);
            for (int64_t i = 0; i < cw; i++) {
                double s = 0;
                for (int64_t b = 0; b < nb; b++) s += part[(tc * nb + b) * BL_COLUMNS + i];
                dst[doff + i0 + i] += (bl_real)(scale * s);
            }
        }
    }
}

void bl_reduce_acc(bl_ctx *ctx, bl_real *dst, const bl_tensor *like, const bl_real *src,
                   int ndim, const int64_t *shape, double scale)
{
    int64_t numel = bl_shape_numel(ndim, shape);
    if (numel == 0) return;
    int64_t st[2][BL_MAX_DIMS], csh[BL_MAX_DIMS], cst[2][BL_MAX_DIMS];
    bl_contiguous_strides(ndim, shape, st[0]);
    bl_bcast_strides("bl_reduce_acc", like, ndim, shape, st[1]);
    int nd = bl_iter_coalesce(ndim, shape, 2, (const int64_t(*)[BL_MAX_DIMS])st, csh, cst);

    /* kept dims (dst stride != 0) and reduced dims (dst broadcast along them) */
    int kd[BL_MAX_DIMS], rd[BL_MAX_DIMS], nk = 0, nr = 0;
    int64_t T = 1, R = 1;
    for (int d = 0; d < nd; d++) {
        if (cst[1][d] != 0) {
            kd[nk++] = d;
            T *= csh[d];
        } else if (csh[d] > 1) {
            rd[nr++] = d;
            R *= csh[d];
        }
    }
    if (nr == 0) { /* same layout: nothing to reduce */
#pragma omp parallel for if (numel > BL_OMP_MIN) schedule(static)
        for (int64_t i = 0; i < numel; i++) dst[i] += (bl_real)(scale * src[i]);
        return;
    }

    if (csh[nd - 1] >= BL_COLUMNS_MIN && cst[1][nd - 1] != 0) {
        bl_reduce_columns(ctx, dst, src, nd, csh, (const int64_t(*)[BL_MAX_DIMS])cst, nk, kd, nr,
                          rd, T, R, scale);
        return;
    }

    const int64_t nb = (R + BL_BLOCK - 1) / BL_BLOCK, nwork = T * nb;
    double *part = nb > 1 ? bl_scratch(ctx, (size_t)nwork * sizeof(double)) : NULL;
    const int inner = rd[nr - 1];
    const int64_t rlen = csh[inner], rst = cst[0][inner];

#pragma omp parallel for if (numel > BL_OMP_MIN) schedule(static)
    for (int64_t w = 0; w < nwork; w++) {
        int64_t t = w / nb, b = w % nb, base, doff;
        bl_reduce_target(t, nk, kd, csh, (const int64_t(*)[BL_MAX_DIMS])cst, &base, &doff);
        int64_t r = b * BL_BLOCK, r1 = r + BL_BLOCK < R ? r + BL_BLOCK : R;
        int64_t idx[BL_MAX_DIMS], off = 0, rem = r;
        for (int q = nr - 1; q >= 0; q--) {
            idx[q] = rem % csh[rd[q]];
            rem /= csh[rd[q]];
            off += idx[q] * cst[0][rd[q]];
        }
        double acc = 0;
        while (r < r1) {
            int64_t run = rlen - idx[nr - 1] < r1 - r ? rlen - idx[nr - 1] : r1 - r;
            const bl_real *p = src + base + off;
            if (rst == 1) { /* four independent sums: not latency-bound, still a fixed order */
                double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
                int64_t j = 0;
                for (; j + 4 <= run; j += 4) {
                    a0 += p[j];
                    a1 += p[j + 1];
                    a2 += p[j + 2];
                    a3 += p[j + 3];
                }
                for (; j < run; j++) a0 += p[j];
                acc += (a0 + a1) + (a2 + a3);
            } else {
                for (int64_t j = 0; j < run; j++) acc += p[j * rst];
            }
            r += run;
            off += run * rst;
            idx[nr - 1] += run;
            for (int q = nr - 1; q > 0 && idx[q] == csh[rd[q]]; q--) { /* odometer carry */
                off -= idx[q] * cst[0][rd[q]];
                idx[q] = 0;
                idx[q - 1]++;
                off += cst[0][rd[q - 1]];
            }
        }
        if (nb == 1)
            dst[doff] += (bl_real)(scale * acc);
        else
            part[w] = acc;
    }
    if (nb > 1) {
#pragma omp parallel for if (T > 64) schedule(static)
        for (int64_t t = 0; t < T; t++) {
            int64_t base, doff;
            bl_reduce_target(t, nk, kd, csh, (const int64_t(*)[BL_MAX_DIMS])cst, &base, &doff);
            double s = 0;
            for (int64_t b = 0; b < nb; b++) s += part[t * nb + b];
            dst[doff] += (bl_real)(scale * s);
        }
    }
}

void bl_grad_acc(bl_ctx *ctx, bl_tensor *in, const bl_real *contrib, const bl_tensor *out,
                 double scale)
{
    if (!in->requires_grad) return;
    bl_reduce_acc(ctx, bl_grad(ctx, in), in, contrib, out->ndim, out->shape, scale);
}

/* ------------------------------------------------------------------------------------------ */
/* sum / mean over everything */

static void bl_sum_backward(bl_ctx *ctx, bl_node *node)
{
    bl_tensor *a = node->in[0];
    const double scale = *(const double *)node->saved;
    const bl_real g = (bl_real)(scale * node->out->grad[0]);
    bl_real *ga = bl_grad(ctx, a);
    const int64_t n = a->numel;
#pragma omp parallel for if (n > BL_OMP_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) ga[i] += g;
}

static bl_tensor *bl_sum_scaled(bl_ctx *ctx, const char *op, bl_tensor *a, int mean)
{
    BL_ASSERT(a, "%s: NULL input", op);
    double scale = mean ? 1.0 / (double)a->numel : 1.0;
    bl_tensor *out = bl_zeros(ctx, 0, NULL);
    if (a->numel == 0)
        out->data[0] = (bl_real)(mean ? NAN : 0.0);
    else
        bl_reduce_acc(ctx, out->data, out, a->data, a->ndim, a->shape, scale);
    bl_node *node = bl_tape_push(ctx, op, bl_sum_backward, out, 1, &a, sizeof(double));
    if (node) *(double *)node->saved = scale;
    return out;
}

bl_tensor *bl_sum(bl_ctx *ctx, bl_tensor *a) { return bl_sum_scaled(ctx, "bl_sum", a, 0); }
bl_tensor *bl_mean(bl_ctx *ctx, bl_tensor *a) { return bl_sum_scaled(ctx, "bl_mean", a, 1); }

/* ------------------------------------------------------------------------------------------ */
/* sum / mean along one dim */

typedef struct bl_dim_saved {
    double scale;
    int dim;
} bl_dim_saved;

/* a's shape with size 1 at dim (keepdim=1) or without dim (keepdim=0) */
static int bl_reduced_shape(const bl_tensor *a, int dim, int keepdim, int64_t *shape)
{
    int nd = 0;
    for (int d = 0; d < a->ndim; d++) {
        if (d != dim)
            shape[nd++] = a->shape[d];
        else if (keepdim)
            shape[nd++] = 1;
    }
    return nd;
}

static void bl_sum_dim_backward(bl_ctx *ctx, bl_node *node)
{
    const bl_dim_saved *sv = node->saved;
    bl_tensor *a = node->in[0];
    /* out's gradient read with the keepdim shape broadcasts back over the reduced dim */
    bl_tensor g;
    memset(&g, 0, sizeof g);
    int64_t ks[BL_MAX_DIMS];
    bl_tensor_set_shape(&g, bl_reduced_shape(a, sv->dim, 1, ks), ks);
    g.data = node->out->grad;
    if (sv->scale != 1.0) { /* mean: scale the (small) reduced gradient once */
        bl_real *tmp = bl_scratch(ctx, (size_t)g.numel * sizeof(bl_real));
        for (int64_t i = 0; i < g.numel; i++) tmp[i] = (bl_real)(sv->scale * g.data[i]);
        g.data = tmp;
    }
    const bl_tensor *src = &g;
    bl_bcast_apply(node->op, bl_grad(ctx, a), a->ndim, a->shape, 1, &src, bl_row_copy_acc, NULL);
}

static bl_tensor *bl_sum_dim_scaled(bl_ctx *ctx, const char *op, bl_tensor *a, int dim,
                                    int keepdim, int mean)
{
    BL_ASSERT(a, "%s: NULL input", op);
    dim = bl_ops_dim(op, a, dim);
    int64_t ks[BL_MAX_DIMS], os[BL_MAX_DIMS];
    int knd = bl_reduced_shape(a, dim, 1, ks), ond = bl_reduced_shape(a, dim, keepdim, os);
    double scale = mean ? 1.0 / (double)a->shape[dim] : 1.0;
    bl_tensor *out = bl_zeros(ctx, ond, os);
    if (a->shape[dim] == 0) {
        if (mean) bl_tensor_fill(out, (bl_real)NAN);
    } else {
        bl_tensor like;
        memset(&like, 0, sizeof like);
        bl_tensor_set_shape(&like, knd, ks);
        bl_reduce_acc(ctx, out->data, &like, a->data, a->ndim, a->shape, scale);
    }
    bl_node *node = bl_tape_push(ctx, op, bl_sum_dim_backward, out, 1, &a, sizeof(bl_dim_saved));
    if (node) *(bl_dim_saved *)node->saved = (bl_dim_saved){scale, dim};
    return out;
}

bl_tensor *bl_sum_dim(bl_ctx *ctx, bl_tensor *a, int dim, int keepdim)
{
    return bl_sum_dim_scaled(ctx, "bl_sum_dim", a, dim, keepdim, 0);
}

bl_tensor *bl_mean_dim(bl_ctx *ctx, bl_tensor *a, int dim, int keepdim)
{
    return bl_sum_dim_scaled(ctx, "bl_mean_dim", a, dim, keepdim, 1);
}

/* ------------------------------------------------------------------------------------------ */
/* logsumexp along one dim: m + log sum exp(x - m), m the row maximum (0 when it is infinite, as
 * torch: a row of -inf gives -inf, a row holding +inf gives +inf). Gradient softmax(x); where
 * x = -inf the gradient is 0, also in an all -inf row (torch gives NaN there). */

static void bl_logsumexp_dim_backward(bl_ctx *ctx, bl_node *node)
{
    bl_tensor *a = node->in[0];
    const int dim = *(const int *)node->saved;
    int64_t outer, inner, n = a->shape[dim];
    bl_ops_split_dims(a, dim, &outer, &inner);
    const bl_real *x = a->data, *y = node->out->data, *g = node->out->grad;
    bl_real *ga = bl_grad(ctx, a);
    const int64_t nt = outer * inner;
#pragma omp parallel for if (a->numel > BL_OMP_MIN) schedule(static)
    for (int64_t t = 0; t < nt; t++) {
        int64_t o = t / inner, i = t % inner;
        const bl_real *xr = x + o * n * inner + i;
        bl_real *gr = ga + o * n * inner + i;
        for (int64_t k = 0; k < n; k++) {
            bl_real xv = xr[k * inner];
            if (xv != -INFINITY) gr[k * inner] += (bl_real)(g[t] * exp((double)xv - (double)y[t]));
        }
    }
}

bl_tensor *bl_logsumexp_dim(bl_ctx *ctx, bl_tensor *a, int dim, int keepdim)
{
    BL_ASSERT(a, "bl_logsumexp_dim: NULL input");
    dim = bl_ops_dim("bl_logsumexp_dim", a, dim);
    int64_t os[BL_MAX_DIMS], outer, inner, n = a->shape[dim];
    bl_tensor *out = bl_new(ctx, bl_reduced_shape(a, dim, keepdim, os), os);
    bl_ops_split_dims(a, dim, &outer, &inner);
    const bl_real *x = a->data;
    bl_real *y = out->data;
    const int64_t nt = outer * inner;
#pragma omp parallel for if (a->numel > BL_OMP_MIN) schedule(static)
    for (int64_t t = 0; t < nt; t++) {
        int64_t o = t / inner, i = t % inner;
        const bl_real *xr = x + o * n * inner + i;
        double m = -INFINITY;
        for (int64_t k = 0; k < n; k++)
            if (xr[k * inner] > m) m = xr[k * inner];
        if (isinf(m)) m = 0;
        double s = 0;
        for (int64_t k = 0; k < n; k++) s += exp((double)xr[k * inner] - m);
        y[t] = (bl_real)(m + log(s));
    }
    int d = dim;
    bl_node *node = bl_tape_push(ctx, "bl_logsumexp_dim", bl_logsumexp_dim_backward, out, 1, &a,
                                 sizeof(int));
    if (node) *(int *)node->saved = d;
    return out;
}
