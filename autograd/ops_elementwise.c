/* Elementwise ops with numpy/PyTorch broadcasting, forward and backward side by side, on the
 * broadcasting engine of the kernel layer (ops_kernels.c, ops_internal.h).
 *
 * Backward of a broadcast input: the output-shaped contribution is summed over the dims the
 * input was broadcast along (bl_reduce_acc). When the input already has the output's layout
 * the contribution is accumulated in place, without a temporary. */
#include <string.h>
#include <tgmath.h>

#include "autograd/ops.h"
#include "autograd/ops_internal.h"

static const double bl_sqrt1_2 = 0.70710678118654752440;   /* 1/sqrt(2) */
static const double bl_2_sqrtpi = 1.12837916709551257390;  /* 2/sqrt(pi) */
static const double bl_log_sqrt_2pi = 0.91893853320467274178; /* log(sqrt(2 pi)) */

/* ------------------------------------------------------------------------------------------ */
/* row kernels: STMT uses o[i] and x (, y, z) = the sources' elements at i */

#define BL_ROW2(NAME, STMT)                                                                    \
    static void NAME(bl_real *restrict o, const bl_real *const *s, const int64_t *st,         \
                     int64_t n, const double *p)                                               \
    {                                                                                          \
        const bl_real *restrict A = s[0], *restrict B = s[1];                                  \
        const int64_t sa = st[0], sb = st[1];                                                  \
        (void)p;                                                                               \
        if (sa == 1 && sb == 1) {                                                              \
            for (int64_t i = 0; i < n; i++) { const bl_real x = A[i], y = B[i]; STMT; }       \
        } else if (sa == 1 && sb == 0) {                                                       \
            const bl_real y = B[0];                                                            \
            for (int64_t i = 0; i < n; i++) { const bl_real x = A[i]; STMT; }                 \
        } else if (sa == 0 && sb == 1) {                                                       \
            const bl_real x = A[0];                                                            \
            for (int64_t i = 0; i < n; i++) { const bl_real y = B[i]; STMT; }                 \
        } else {                                                                               \
            for (int64_t i = 0; i < n; i++) {                                                  \
                const bl_real x = A[i * sa], y = B[i * sb];                                    \
                STMT;                                                                          \
            }                                                                                  \
        }                                                                                      \
    }

#define BL_ROW3(NAME, STMT)                                                                    \
    static void NAME(bl_real *restrict o, const bl_real *const *s, const int64_t *st,         \
                     int64_t n, const double *p)                                               \
    {                                                                                          \
        const bl_real *restrict A = s[0], *restrict B = s[1], *restrict C = s[2];             \
        const int64_t sa = st[0], sb = st[1], sc = st[2];                                      \
        (void)p;                                                                               \
        if (sa == 1 && sb == 1 && sc == 1) {                                                   \
            for (int64_t i = 0; i < n; i++) {                                                  \
                const bl_real x = A[i], y = B[i], z = C[i];                                    \
                STMT;                                                                          \
            }                                                                                  \
        } else {                                                                               \
            for (int64_t i = 0; i < n; i++) {                                                  \
                const bl_real x = A[i * sa], y = B[i * sb], z = C[i * sc];                     \
                STMT;                                                                          \
            }                                                                                  \
        }                                                                                      \
    }

BL_ROW2(bl_row_add, o[i] = x + y)
BL_ROW2(bl_row_sub, o[i] = x - y)
BL_ROW2(bl_row_mul, o[i] = x * y)
BL_ROW2(bl_row_mul_acc, o[i] += x * y)
BL_ROW2(bl_row_div, o[i] = x / y)
BL_ROW2(bl_row_div_acc, o[i] += x / y)
/* d(a/b)/db = -a/b^2; sources (g, a, b) */
BL_ROW3(bl_row_div_db, o[i] = -(x * y) / (z * z))
BL_ROW3(bl_row_div_db_acc, o[i] -= (x * y) / (z * z))
/* where: sources (cond, a, b) forward, (cond, g) backward */
BL_ROW3(bl_row_where, o[i] = x != 0 ? y : z)
BL_ROW2(bl_row_where_a, o[i] = x != 0 ? y : 0)
BL_ROW2(bl_row_where_a_acc, if (x != 0) o[i] += y)
BL_ROW2(bl_row_where_b, o[i] = x != 0 ? 0 : y)
BL_ROW2(bl_row_where_b_acc, if (x == 0) o[i] += y)

/* grad(in) += reduce_to_in(row(src...)) with row evaluated over out's shape. When `in` has
 * out's layout (equal numel) row_acc accumulates directly, otherwise row_set fills a
 * temporary that is reduced over the broadcast dims. */
static void bl_grad_rows(bl_ctx *ctx, const char *op, bl_tensor *in, const bl_tensor *out,
                         int n_src, const bl_tensor *const *src, bl_row_fn *row_set,
                         bl_row_fn *row_acc)
{
    if (!in->requires_grad) return;
    if (in->numel == out->numel) {
        bl_bcast_apply(op, bl_grad(ctx, in), out->ndim, out->shape, n_src, src, row_acc, NULL);
    } else {
        bl_real *tmp = bl_scratch(ctx, (size_t)out->numel * sizeof(bl_real));
        bl_bcast_apply(op, tmp, out->ndim, out->shape, n_src, src, row_set, NULL);
        bl_reduce_acc(ctx, bl_grad(ctx, in), in, tmp, out->ndim, out->shape, 1.0);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* binary ops */

static bl_tensor *bl_binary(bl_ctx *ctx, const char *op, bl_tensor *a, bl_tensor *b,
                            bl_row_fn *row, bl_backward_fn *backward)
{
    BL_ASSERT(a && b, "%s: NULL input", op);
    const bl_tensor *cin[2] = {a, b};
    bl_tensor *in[2] = {a, b};
    int nd;
    int64_t shape[BL_MAX_DIMS];
    bl_bcast_shape(op, 2, cin, &nd, shape);
    bl_tensor *out = bl_new(ctx, nd, shape);
    bl_bcast_apply(op, out->data, nd, shape, 2, cin, row, NULL);
    bl_tape_push(ctx, op, backward, out, 2, in, 0);
    return out;
}

/* a + b for a and b of equal shapes in the same channel-blocked layout: the plain loop on the
 * raw data (elementwise, no broadcasting) with the layout kept */
static bl_tensor *bl_add_blocked(bl_ctx *ctx, bl_tensor *a, bl_tensor *b, bl_backward_fn *backward)
{
    bl_tensor *out = bl_new_like(ctx, a);
    out->layout = a->layout;
    const bl_real *pa = a->data, *pb = b->data;
    bl_real *po = out->data;
#pragma omp parallel for schedule(static) if (a->numel > BL_OMP_MIN)
    for (int64_t i = 0; i < a->numel; i++) po[i] = pa[i] + pb[i];
    bl_tensor *in[2] = {a, b};
    bl_tape_push_any_layout(ctx, "bl_add", backward, out, 2, in, 0);
    return out;
}

static void bl_add_backward(bl_ctx *ctx, bl_node *node)
{
    bl_grad_acc(ctx, node->in[0], node->out->grad, node->out, 1.0);
    bl_grad_acc(ctx, node->in[1], node->out->grad, node->out, 1.0);
}

static void bl_sub_backward(bl_ctx *ctx, bl_node *node)
{
    bl_grad_acc(ctx, node->in[0], node->out->grad, node->out, 1.0);
    bl_grad_acc(ctx, node->in[1], node->out->grad, node->out, -1.0);
}

static void bl_mul_backward(bl_ctx *ctx, bl_node *node)
{
    bl_tensor *a = node->in[0], *b = node->in[1], g = bl_ops_grad_view(node->out);
    const bl_tensor *sa[2] = {&g, b}, *sb[2] = {&g, a};
    bl_grad_rows(ctx, node->op, a, node->out, 2, sa, bl_row_mul, bl_row_mul_acc);
    bl_grad_rows(ctx, node->op, b, node->out, 2, sb, bl_row_mul, bl_row_mul_acc);
}

static void bl_div_backward(bl_ctx *ctx, bl_node *node)
{
    bl_tensor *a = node->in[0], *b = node->in[1], g = bl_ops_grad_view(node->out);
    const bl_tensor *sa[2] = {&g, b}, *sb[3] = {&g, a, b};
    bl_grad_rows(ctx, node->op, a, node->out, 2, sa, bl_row_div, bl_row_div_acc);
    bl_grad_rows(ctx, node->op, b, node->out, 3, sb, bl_row_div_db, bl_row_div_db_acc);
}

bl_tensor *bl_add(bl_ctx *ctx, bl_tensor *a, bl_tensor *b)
{
    BL_ASSERT(a && b, "bl_add: NULL input");
    if (a->layout != BL_LAYOUT_PLAIN && a->layout == b->layout && bl_tensor_same_shape(a, b))
        return bl_add_blocked(ctx, a, b, bl_add_backward);
    /* mixed layouts or broadcasting: in the plain layout */
    a = bl_to_plain(ctx, a);
    b = bl_to_plain(ctx, b);
    return bl_binary(ctx, "bl_add", a, b, bl_row_add, bl_add_backward);
}

bl_tensor *bl_sub(bl_ctx *ctx, bl_tensor *a, bl_tensor *b)
{
    return bl_binary(ctx, "bl_sub", a, b, bl_row_sub, bl_sub_backward);
}

bl_tensor *bl_mul(bl_ctx *ctx, bl_tensor *a, bl_tensor *b)
{
    return bl_binary(ctx, "bl_mul", a, b, bl_row_mul, bl_mul_backward);
}

bl_tensor *bl_div(bl_ctx *ctx, bl_tensor *a, bl_tensor *b)
{
    return bl_binary(ctx, "bl_div", a, b, bl_row_div, bl_div_backward);
}

/* ------------------------------------------------------------------------------------------ */
/* unary ops: y = FWD(x), grad_x += BWD(x, y, g); p = the op's scalar parameters */

typedef void bl_unary_kernel(bl_real *restrict y, const bl_real *restrict x, int64_t n,
                             const double *p);

#define BL_UNARY(NAME, FWD, BWD)                                                               \
    static void bl_##NAME##_kernel(bl_real *restrict ys, const bl_real *restrict xs,          \
                                   int64_t n, const double *p)                                 \
    {                                                                                          \
        (void)p;                                                                               \
        _Pragma("omp parallel for if (n > BL_OMP_MIN) schedule(static)")                      \
        for (int64_t i = 0; i < n; i++) {                                                      \
            const bl_real x = xs[i];                                                           \
            ys[i] = (FWD);                                                                     \
        }                                                                                      \
    }                                                                                          \
    static void bl_##NAME##_backward(bl_ctx *ctx, bl_node *node)                               \
    {                                                                                          \
        bl_tensor *a = node->in[0];                                                            \
        const bl_real *restrict xs = a->data, *restrict ys = node->out->data;                  \
        const bl_real *restrict gs = node->out->grad;                                          \
        const double *p = node->saved;                                                         \
        bl_real *restrict ga = bl_grad(ctx, a);                                                \
        int64_t n = a->numel;                                                                  \
        (void)p;                                                                               \
        _Pragma("omp parallel for if (n > BL_OMP_MIN) schedule(static)")                      \
        for (int64_t i = 0; i < n; i++) {                                                      \
            const bl_real x = xs[i], y = ys[i], g = gs[i];                                     \
            (void)x;                                                                           \
            (void)y;                                                                           \
            ga[i] += (BWD);                                                                    \
        }                                                                                      \
    }

static bl_tensor *bl_unary(bl_ctx *ctx, const char *op, bl_tensor *a, bl_unary_kernel *kernel,
                           bl_backward_fn *backward, const double *p, int n_p)
{
    BL_ASSERT(a, "%s: NULL input", op);
    bl_tensor *out = bl_new_like(ctx, a);
    kernel(out->data, a->data, a->numel, p);
    bl_node *node = bl_tape_push(ctx, op, backward, out, 1, &a, (size_t)n_p * sizeof(double));
    if (node && n_p) memcpy(node->saved, p, (size_t)n_p * sizeof(double));
    return out;
}

/* Stable logistic: never exponentiates a positive number. */
static inline bl_real bl_sigmoid1(bl_real x)
{
    if (x >= 0) return 1 / (1 + exp(-x));
    bl_real e = exp(x);
    return e / (1 + e);
}

/* log Phi(x) in double. For x > 0, Phi = 1 - Q(x) with Q = erfc(x/sqrt2)/2 tiny: log1p keeps
 * the digits. For -20 <= x <= 0, erfc is accurate to a few ulp. Below -20 (erfc underflows
 * near -37) the asymptotic series of the Mills ratio,
 *   Phi(x) = phi(x)/(-x) * sum_k (-1)^k (2k-1)!! / x^(2k),
 * whose 13 terms are below 1e-19 relative at x = -20. */
static double bl_log_ndtr1(double x)
{
    if (x > 0) return log1p(-0.5 * erfc(x * bl_sqrt1_2));
    if (x >= -20) return log(0.5 * erfc(-x * bl_sqrt1_2));
    double x2 = x * x, term = 1, sum = 1;
    for (int k = 1; k <= 12; k++) {
        term *= -(2.0 * k - 1) / x2;
        sum += term;
    }
    return -0.5 * x2 - log(-x) - bl_log_sqrt_2pi + log(sum);
}

/* d/dx log Phi(x) = phi(x) / Phi(x), formed in log space so it stays finite for x << 0
 * (where it tends to -x). */
static double bl_log_ndtr_grad1(double x)
{
    return exp(-0.5 * x * x - bl_log_sqrt_2pi - bl_log_ndtr1(x));
}

#define BL_R(v) ((bl_real)(v))

BL_UNARY(neg, -x, -g)
BL_UNARY(add_scalar, x + BL_R(p[0]), g)
BL_UNARY(mul_scalar, x * BL_R(p[0]), g * BL_R(p[0]))
BL_UNARY(rsub_scalar, BL_R(p[0]) - x, -g)
BL_UNARY(exp, exp(x), g * y)
BL_UNARY(log, log(x), g / x)
BL_UNARY(log1p, log1p(x), g / (1 + x))
BL_UNARY(sqrt, sqrt(x), g / (2 * y))
BL_UNARY(square, x * x, 2 * x * g)
BL_UNARY(sigmoid, bl_sigmoid1(x), g * y * (1 - y))
/* torch.nn.functional.softplus (beta 1, threshold 20): x itself above 20 */
BL_UNARY(softplus, x > 20 ? x : log1p(exp(x)), x > 20 ? g : g * bl_sigmoid1(x))
BL_UNARY(silu, x * bl_sigmoid1(x), g * bl_sigmoid1(x) * (1 + x * (1 - bl_sigmoid1(x))))
/* NaN passes through (both comparisons false), as in torch.clamp */
BL_UNARY(clamp, x < BL_R(p[0]) ? BL_R(p[0]) : (x > BL_R(p[1]) ? BL_R(p[1]) : x),
         (x >= BL_R(p[0]) && x <= BL_R(p[1])) ? g : 0)
BL_UNARY(erf, erf(x), g * BL_R(bl_2_sqrtpi) * exp(-x * x))
BL_UNARY(log_ndtr, BL_R(bl_log_ndtr1((double)x)), g * BL_R(bl_log_ndtr_grad1((double)x)))

#define BL_UNARY_PUBLIC(NAME)                                                                  \
    bl_tensor *bl_##NAME(bl_ctx *ctx, bl_tensor *a)                                            \
    {                                                                                          \
        return bl_unary(ctx, "bl_" #NAME, a, bl_##NAME##_kernel, bl_##NAME##_backward, NULL, 0); \
    }

BL_UNARY_PUBLIC(neg)
BL_UNARY_PUBLIC(exp)
BL_UNARY_PUBLIC(log)
BL_UNARY_PUBLIC(log1p)
BL_UNARY_PUBLIC(sqrt)
BL_UNARY_PUBLIC(square)
BL_UNARY_PUBLIC(sigmoid)
BL_UNARY_PUBLIC(softplus)
BL_UNARY_PUBLIC(silu)
BL_UNARY_PUBLIC(erf)
BL_UNARY_PUBLIC(log_ndtr)

bl_tensor *bl_add_scalar(bl_ctx *ctx, bl_tensor *a, double s)
{
    return bl_unary(ctx, "bl_add_scalar", a, bl_add_scalar_kernel, bl_add_scalar_backward, &s, 1);
}

bl_tensor *bl_mul_scalar(bl_ctx *ctx, bl_tensor *a, double s)
{
    return bl_unary(ctx, "bl_mul_scalar", a, bl_mul_scalar_kernel, bl_mul_scalar_backward, &s, 1);
}

bl_tensor *bl_rsub_scalar(bl_ctx *ctx, double s, bl_tensor *a)
{
    return bl_unary(ctx, "bl_rsub_scalar", a, bl_rsub_scalar_kernel, bl_rsub_scalar_backward, &s,
                    1);
}

bl_tensor *bl_clamp(bl_ctx *ctx, bl_tensor *a, double lo, double hi)
{
    BL_ASSERT(lo <= hi, "bl_clamp: lo %g > hi %g", lo, hi);
    double p[2] = {lo, hi};
    return bl_unary(ctx, "bl_clamp", a, bl_clamp_kernel, bl_clamp_backward, p, 2);
}

/* ------------------------------------------------------------------------------------------ */
/* selection */

typedef struct bl_where_saved {
    const bl_tensor *cond;
} bl_where_saved;

static void bl_where_backward(bl_ctx *ctx, bl_node *node)
{
    const bl_where_saved *sv = node->saved;
    bl_tensor g = bl_ops_grad_view(node->out);
    const bl_tensor *src[2] = {sv->cond, &g};
    bl_grad_rows(ctx, node->op, node->in[0], node->out, 2, src, bl_row_where_a, bl_row_where_a_acc);
    bl_grad_rows(ctx, node->op, node->in[1], node->out, 2, src, bl_row_where_b, bl_row_where_b_acc);
}

bl_tensor *bl_where(bl_ctx *ctx, const bl_tensor *cond, bl_tensor *a, bl_tensor *b)
{
    BL_ASSERT(cond && a && b, "bl_where: NULL input");
    const bl_tensor *cin[3] = {cond, a, b};
    bl_tensor *in[2] = {a, b};
    int nd;
    int64_t shape[BL_MAX_DIMS];
    bl_bcast_shape("bl_where", 3, cin, &nd, shape);
    bl_tensor *out = bl_new(ctx, nd, shape);
    bl_bcast_apply("bl_where", out->data, nd, shape, 3, cin, bl_row_where, NULL);
    bl_node *node = bl_tape_push(ctx, "bl_where", bl_where_backward, out, 2, in, sizeof(bl_where_saved));
    if (node) ((bl_where_saved *)node->saved)->cond = cond;
    return out;
}

typedef struct bl_masked_select_saved {
    int64_t *index; /* (count) flat indices into a */
} bl_masked_select_saved;

static void bl_masked_select_backward(bl_ctx *ctx, bl_node *node)
{
    const bl_masked_select_saved *sv = node->saved;
    bl_real *ga = bl_grad(ctx, node->in[0]);
    const bl_real *g = node->out->grad;
    for (int64_t k = 0; k < node->out->numel; k++) ga[sv->index[k]] += g[k];
}

bl_tensor *bl_masked_select(bl_ctx *ctx, bl_tensor *a, const bl_tensor *mask)
{
    BL_ASSERT(a && mask, "bl_masked_select: NULL input");
    /* the mask is expanded to a's shape; bl_bcast_apply aborts when it does not broadcast */
    bl_real *m = bl_scratch(ctx, (size_t)a->numel * sizeof(bl_real));
    bl_bcast_apply("bl_masked_select", m, a->ndim, a->shape, 1, &mask, bl_row_copy, NULL);
    int64_t count = 0;
    for (int64_t i = 0; i < a->numel; i++) count += m[i] != 0;
    int64_t *index = bl_scratch(ctx, (size_t)count * sizeof(int64_t));
    bl_tensor *out = bl_new(ctx, 1, &count);
    for (int64_t i = 0, k = 0; i < a->numel; i++) {
        if (m[i] != 0) {
            index[k] = i;
            out->data[k++] = a->data[i];
        }
    }
    bl_node *node = bl_tape_push(ctx, "bl_masked_select", bl_masked_select_backward, out, 1, &a,
                                 sizeof(bl_masked_select_saved));
    if (node) ((bl_masked_select_saved *)node->saved)->index = index;
    return out;
}
