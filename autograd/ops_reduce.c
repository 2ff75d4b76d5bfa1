/* Reductions, forward and backward, on the broadcast-reduction kernel of the kernel layer
 * (bl_reduce_acc in ops_kernels.c): every sum runs in double over fixed blocks, so results do
 * not depend on the thread count. */
#include <math.h>
#include <string.h>

#include "autograd/ops.h"
#include "autograd/ops_internal.h"

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
