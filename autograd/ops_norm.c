/* BatchNorm over dim 1 of x (B, C, ...), as torch.nn.BatchNorm{1,2,3}d, and BatchNorm
 * followed by SiLU in one pass (the ConvBlock's tail).
 *
 * With N = B x (pixels per channel) values per channel c:
 *   training: mean_c, var_c = biased batch variance (sum (x - mean)^2 / N);
 *             running_mean = (1 - momentum) running_mean + momentum mean_c,
 *             running_var  = (1 - momentum) running_var  + momentum var_c N / (N - 1);
 *   eval:     mean_c, var_c = running statistics.
 *   xhat = (x - mean_c) invstd_c, invstd_c = 1 / sqrt(var_c + eps),  z = weight_c xhat + bias_c,
 *   y = z (bl_batchnorm) or y = silu(z) = z sigmoid(z) (bl_batchnorm_silu).
 * Backward, with g = dL/dz (= dL/dy, or dL/dy silu'(z), silu'(z) = s (1 + z (1 - s)), s = sigmoid(z)):
 *   dbias_c += sum g,  dweight_c += sum g xhat,
 *   training: dx = weight_c invstd_c (g - sum(g)/N - xhat sum(g xhat)/N)  (mean and variance
 *             depend on x), eval: dx = weight_c invstd_c g.
 * The fused op keeps no z: backward recomputes it from x and the saved statistics, so a
 * ConvBlock stores one activation instead of two and makes two passes over memory fewer.
 * Per-channel sums are taken in double, each channel by one thread in a fixed order, so
 * results do not depend on the thread count. */
#include "autograd/ops.h"

#include <math.h>
#include <omp.h>

#define BL_NORM_OMP_MIN 32768
/* Partial sums per channel: BL_NORM_LANES independent accumulators in a fixed order, so
 * the double-precision sums vectorize and still do not depend on the thread count. */
#define BL_NORM_LANES 8

typedef struct bl_bn_saved {
    double *mean, *invstd; /* (C), the statistics the forward used */
    int64_t C, B, S;       /* x viewed as (B, C, S) */
    int training, silu;
    double n;              /* values per channel behind the statistics (all processes) */
    int sync;              /* statistics over all processes (bl_batchnorm_set_reducer) */
} bl_bn_saved;

static bl_batchnorm_reducer bn_reducer;
static void *bn_reducer_user;
static int bn_reducer_first;

void bl_batchnorm_set_reducer(bl_batchnorm_reducer fn, void *user, int first)
{
    bn_reducer = fn;
    bn_reducer_user = user;
    bn_reducer_first = first;
}


/* SiLU over one row of z = (x - mean) scale + shift:
 *   g == NULL: out = silu(z) = z sigmoid(z);   else: out = g silu'(z) = g s (1 + z (1 - s)).
 * In the float build on x86-64 this runs 4 lanes at a time with SSE2 (part of the x86-64
 * baseline) and an e^t without libm calls (Cephes expf: t = n ln2 + r, n = round(t / ln2),
 * ln2 split in two so r is exact, e^r by a degree-7 polynomial, relative error ~1e-7 on
 * |r| <= ln2/2, 2^n written into the exponent bits; t clamped to [-87, 89] so that 2^n is
 * a normal float or +inf, NaN propagates). Elsewhere (the double build of the gradient checks, other
 * CPUs) it uses libm's exp. */
#if !defined(BL_REAL_DOUBLE) && defined(__SSE2__)
#include <emmintrin.h>

static inline __m128 bn_exp4(__m128 t)
{
    t = _mm_max_ps(_mm_set1_ps(-87.0f), t); /* t second: a NaN t is returned as is */
    t = _mm_min_ps(_mm_set1_ps(89.0f), t); /* above ~88.4, 2^n = 2^128 is +inf, as e^t should be */
    const __m128i ni = _mm_cvtps_epi32(_mm_mul_ps(t, _mm_set1_ps(1.44269504088896341f)));
    const __m128 n = _mm_cvtepi32_ps(ni);
    const __m128 r = _mm_add_ps(_mm_sub_ps(t, _mm_mul_ps(n, _mm_set1_ps(0.693359375f))),
                                _mm_mul_ps(n, _mm_set1_ps(2.12194440e-4f)));
    __m128 p = _mm_set1_ps(1.9875691500e-4f);
    p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.3981999507e-3f));
    p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(8.3334519073e-3f));
    p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(4.1665795894e-2f));
    p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(1.6666665459e-1f));
    p = _mm_add_ps(_mm_mul_ps(p, r), _mm_set1_ps(5.0000001201e-1f));
    p = _mm_add_ps(_mm_add_ps(_mm_mul_ps(p, _mm_mul_ps(r, r)), r), _mm_set1_ps(1.0f));
    const __m128 scale = _mm_castsi128_ps(_mm_slli_epi32(_mm_add_epi32(ni, _mm_set1_epi32(127)), 23));
    return _mm_mul_ps(p, scale);
}

static inline __m128 bn_silu4(__m128 x, __m128 mean, __m128 scale, __m128 shift, const float *g)
{
    const __m128 one = _mm_set1_ps(1.0f);
    const __m128 z = _mm_add_ps(_mm_mul_ps(_mm_sub_ps(x, mean), scale), shift);
    const __m128 s = _mm_div_ps(one, _mm_add_ps(one, bn_exp4(_mm_sub_ps(_mm_setzero_ps(), z))));
    if (!g) return _mm_mul_ps(z, s);
    const __m128 d = _mm_mul_ps(s, _mm_add_ps(one, _mm_mul_ps(z, _mm_sub_ps(one, s))));
    return _mm_mul_ps(_mm_loadu_ps(g), d);
}

static void bn_silu_row(const bl_real *x, int64_t n, bl_real mean, bl_real scale, bl_real shift,
                        const bl_real *g, bl_real *out)
{
    const __m128 m4 = _mm_set1_ps(mean), sc4 = _mm_set1_ps(scale), sh4 = _mm_set1_ps(shift);
    int64_t k = 0;
    for (; k + 4 <= n; k += 4)
        _mm_storeu_ps(out + k, bn_silu4(_mm_loadu_ps(x + k), m4, sc4, sh4, g ? g + k : NULL));
    if (k < n) { /* the tail through the same 4-lane code, so every element gets one formula */
        float xt[4] = {0}, gt[4] = {0}, ot[4];
        for (int64_t i = k; i < n; i++) {
            xt[i - k] = x[i];
            if (g) gt[i - k] = g[i];
        }
        _mm_storeu_ps(ot, bn_silu4(_mm_loadu_ps(xt), m4, sc4, sh4, g ? gt : NULL));
        for (int64_t i = k; i < n; i++) out[i] = ot[i - k];
    }
}
#else
static inline bl_real bn_sigmoid(bl_real z)
{
    if (z >= 0) return 1 / (1 + exp(-z));
    const bl_real e = exp(z);
    return e / (1 + e);
}

static void bn_silu_row(const bl_real *x, int64_t n, bl_real mean, bl_real scale, bl_real shift,
                        const bl_real *g, bl_real *out)
{
    for (int64_t k = 0; k < n; k++) {
        const bl_real z = (x[k] - mean) * scale + shift, s = bn_sigmoid(z);
        out[k] = g ? g[k] * (s * (1 + z * (1 - s))) : z * s;
    }
}
#endif

/* bn_silu_row for n pixels of a channel-blocked row: x[k v + l] is channel l of pixel k, with
 * that channel's mean, scale and shift (v a multiple of 4). Same formula per element as
 * bn_silu_row. */
#if !defined(BL_REAL_DOUBLE) && defined(__SSE2__)
static void bn_silu_block(const bl_real *x, int64_t n, int64_t v, const bl_real *mean,
                          const bl_real *scale, const bl_real *shift, const bl_real *g, bl_real *out)
{
    for (int64_t k = 0; k < n; k++)
        for (int64_t l = 0; l < v; l += 4) {
            const int64_t i = k * v + l;
            _mm_storeu_ps(out + i, bn_silu4(_mm_loadu_ps(x + i), _mm_loadu_ps(mean + l),
                                            _mm_loadu_ps(scale + l), _mm_loadu_ps(shift + l),
                                            g ? g + i : NULL));
        }
}
#else
static void bn_silu_block(const bl_real *x, int64_t n, int64_t v, const bl_real *mean,
                          const bl_real *scale, const bl_real *shift, const bl_real *g, bl_real *out)
{
    for (int64_t k = 0; k < n; k++)
        for (int64_t l = 0; l < v; l++)
            bn_silu_row(x + k * v + l, 1, mean[l], scale[l], shift[l], g ? g + k * v + l : NULL,
                        out + k * v + l);
}
#endif

/* sum_k (x[k] - shift) and sum_k (x[k] - shift)^2 over one row, added into acc1/acc2 lanes */
static inline void bn_row_moments(const bl_real *x, int64_t n, bl_real shift, double *acc1,
                                  double *acc2)
{
    int64_t k = 0;
    for (; k + BL_NORM_LANES <= n; k += BL_NORM_LANES)
        for (int l = 0; l < BL_NORM_LANES; l++) {
            const double d = (double)(x[k + l] - shift);
            acc1[l] += d;
            acc2[l] += d * d;
        }
    for (; k < n; k++) {
        const double d = (double)(x[k] - shift);
        acc1[0] += d;
        acc2[0] += d * d;
    }
}

static inline double bn_lanes_sum(const double *acc)
{
    double s = 0;
    for (int l = 0; l < BL_NORM_LANES; l++) s += acc[l];
    return s;
}

/* g of channel c, image b: dL/dy, or dL/dy silu'(z) recomputed into gz */
static inline const bl_real *bn_row_g(const bl_bn_saved *sv, const bl_tensor *x, const bl_real *dy,
                                      const bl_real *w, const bl_real *bi, int64_t b, int64_t c,
                                      bl_real *gz)
{
    const int64_t C = sv->C, S = sv->S;
    const bl_real *gp = dy + (b * C + c) * S;
    if (!sv->silu) return gp;
    bn_silu_row(x->data + (b * C + c) * S, S, (bl_real)sv->mean[c],
                (bl_real)sv->invstd[c] * (w ? w[c] : 1), bi ? bi[c] : 0, gp, gz);
    return gz;
}

/* Training-mode backward with statistics over all processes: the per-channel sums of g and
 * g xhat of every process (reducer) enter dx; weight and bias get the local sums. */
static void batchnorm_backward_sync(bl_ctx *ctx, bl_node *node)
{
    const bl_bn_saved *sv = node->saved;
    bl_tensor *x = node->in[0], *weight = node->in[1], *bias = node->in[2];
    const int64_t C = sv->C, B = sv->B, S = sv->S;
    const bl_real *dy = node->out->grad;
    const bl_real *w = weight ? weight->data : NULL, *bi = bias ? bias->data : NULL;
    int dx_fresh = 0;
    bl_real *dx = x->requires_grad ? bl_grad_for_write(ctx, x, &dx_fresh) : NULL;
    bl_real *dw = weight && weight->requires_grad ? bl_grad(ctx, weight) : NULL;
    bl_real *db = bias && bias->requires_grad ? bl_grad(ctx, bias) : NULL;
    bl_arena *arena = bl_ctx_arena(ctx);
    const size_t mark = bl_arena_used(arena);
    const int par = x->numel > BL_NORM_OMP_MIN, nt = par ? omp_get_max_threads() : 1;
    double *sums = bl_scratch(ctx, (size_t)(2 * C) * sizeof *sums); /* sum g, then sum g xhat */
    bl_real *gz_all = sv->silu ? bl_scratch(ctx, (size_t)nt * (size_t)S * sizeof(bl_real)) : NULL;
#pragma omp parallel for schedule(static) if (par)
    for (int64_t c = 0; c < C; c++) {
        bl_real *gz = gz_all ? gz_all + (size_t)omp_get_thread_num() * (size_t)S : NULL;
        const bl_real mean = (bl_real)sv->mean[c], invstd = (bl_real)sv->invstd[c];
        double acc_g[BL_NORM_LANES] = {0}, acc_gx[BL_NORM_LANES] = {0};
        for (int64_t b = 0; b < B; b++) {
            const bl_real *xp = x->data + (b * C + c) * S, *gp = bn_row_g(sv, x, dy, w, bi, b, c, gz);
            for (int64_t k = 0; k < S; k++) {
                acc_g[k % BL_NORM_LANES] += (double)gp[k];
                acc_gx[k % BL_NORM_LANES] += (double)(gp[k] * ((xp[k] - mean) * invstd));
            }
        }
        sums[c] = bn_lanes_sum(acc_g);
        sums[C + c] = bn_lanes_sum(acc_gx);
        if (db) db[c] += (bl_real)sums[c];
        if (dw) dw[c] += (bl_real)sums[C + c];
    }
    if (dx) {
        bn_reducer(bn_reducer_user, sums, 2 * C);
#pragma omp parallel for schedule(static) if (par)
        for (int64_t c = 0; c < C; c++) {
            bl_real *gz = gz_all ? gz_all + (size_t)omp_get_thread_num() * (size_t)S : NULL;
            const bl_real mean = (bl_real)sv->mean[c], invstd = (bl_real)sv->invstd[c];
            const bl_real scale = (w ? w[c] : 1) * invstd;
            const bl_real a = (bl_real)(sums[c] / sv->n), bcoef = (bl_real)(sums[C + c] / sv->n);
            for (int64_t b = 0; b < B; b++) {
                const bl_real *xp = x->data + (b * C + c) * S, *gp = bn_row_g(sv, x, dy, w, bi, b, c, gz);
                bl_real *dp = dx + (b * C + c) * S;
                for (int64_t k = 0; k < S; k++) {
                    const bl_real v = scale * (gp[k] - a - (xp[k] - mean) * invstd * bcoef);
                    dp[k] = dx_fresh ? v : dp[k] + v;
                }
            }
        }
    }
    bl_arena_release(arena, mark);
}

/* The end of a synchronised statistics computation: buf holds this process's per-channel
 * sums of d and d^2 (2 C) and room for the count; reduce them with the count over the
 * processes, then mu (holding the shifts) += mean of d, var = mean of d^2 - (mean of d)^2. */
static void bn_sync_finish(double *buf, int64_t C, double count, double *mu, double *var,
                           double *n_out)
{
    buf[2 * C] = count;
    bn_reducer(bn_reducer_user, buf, 2 * C + 1);
    const double n = buf[2 * C];
    for (int64_t c = 0; c < C; c++) {
        const double s1 = buf[c] / n, s2 = buf[C + c] / n;
        mu[c] += s1;
        var[c] = s2 - s1 * s1 < 0 ? 0 : s2 - s1 * s1;
    }
    *n_out = n;
}

/* Training statistics of channel c over the values of all processes, computed as one process
 * computes them over the whole batch (batchnorm_apply): sums of d = x - shift and d^2 about
 * the channel's first value in the global batch, which the process holding the batch's first
 * image contributes to a reduced buffer (the others add 0, so the sum is that value exactly);
 * then the sums and the count are reduced. Every d is the same float on both paths; only the
 * double sums are added in another order. */
static void bn_stats_sync(bl_ctx *ctx, const bl_tensor *x, int64_t B, int64_t C, int64_t S,
                          double *mu, double *var, double *n_out)
{
    double *buf = bl_scratch(ctx, (size_t)(2 * C + 1) * sizeof *buf);
    for (int64_t c = 0; c < C; c++) buf[c] = bn_reducer_first ? (double)x->data[c * S] : 0;
    bn_reducer(bn_reducer_user, buf, C);
    for (int64_t c = 0; c < C; c++) mu[c] = buf[c]; /* the shift, a bl_real value */
#pragma omp parallel for schedule(static) if (x->numel > BL_NORM_OMP_MIN)
    for (int64_t c = 0; c < C; c++) {
        double acc1[BL_NORM_LANES] = {0}, acc2[BL_NORM_LANES] = {0};
        for (int64_t b = 0; b < B; b++)
            bn_row_moments(x->data + (b * C + c) * S, S, (bl_real)mu[c], acc1, acc2);
        buf[c] = bn_lanes_sum(acc1);
        buf[C + c] = bn_lanes_sum(acc2);
    }
    bn_sync_finish(buf, C, (double)(B * S), mu, var, n_out);
}

/* ---- the channel-blocked layout: x (B, C/v, S, v), one thread per block of v channels,
 * the v channels of a pixel side by side (lib/tensor.h) ---- */

#define BN_MAX_BLOCK 16

/* Per lane l of channel block cb of a blocked x: acc1[l] += sum of d = x - shift[l] over the
 * images and pixels (in that order), acc2[l] += sum of d^2, in double precision. */
static void bn_block_moments(const bl_tensor *x, int64_t cb, const bl_real *shift, double *acc1,
                             double *acc2)
{
    const int64_t v = x->layout, B = x->shape[0], C = x->shape[1], CB = C / v, S = x->numel / (B * C);
    for (int64_t b = 0; b < B; b++) {
        const bl_real *xp = x->data + (b * CB + cb) * S * v;
        for (int64_t k = 0; k < S; k++)
            for (int64_t l = 0; l < v; l++) {
                const double d = (double)(xp[k * v + l] - shift[l]);
                acc1[l] += d;
                acc2[l] += d * d;
            }
    }
}

/* Training statistics over all processes for a blocked x, computed as bn_forward_blocked
 * computes them over the whole batch in one process: per lane, sums of d = x - shift and d^2
 * about the channel's first value in the global batch (contributed by the process holding the
 * batch's first image, as in bn_stats_sync), then the sums and the count are reduced. */
static void bn_stats_sync_blocked(bl_ctx *ctx, const bl_tensor *x, double *mu, double *var,
                                  double *n_out)
{
    const int64_t v = x->layout, B = x->shape[0], C = x->shape[1], CB = C / v, S = x->numel / (B * C);
    double *buf = bl_scratch(ctx, (size_t)(2 * C + 1) * sizeof *buf);
    for (int64_t c = 0; c < C; c++)
        buf[c] = bn_reducer_first ? (double)x->data[(c / v) * S * v + c % v] : 0;
    bn_reducer(bn_reducer_user, buf, C);
    for (int64_t c = 0; c < C; c++) mu[c] = buf[c]; /* the shift, a bl_real value */
#pragma omp parallel for schedule(static) if (x->numel > BL_NORM_OMP_MIN)
    for (int64_t cb = 0; cb < CB; cb++) {
        bl_real sh[BN_MAX_BLOCK];
        double acc1[BN_MAX_BLOCK] = {0}, acc2[BN_MAX_BLOCK] = {0};
        for (int64_t l = 0; l < v; l++) sh[l] = (bl_real)mu[cb * v + l];
        bn_block_moments(x, cb, sh, acc1, acc2);
        for (int64_t l = 0; l < v; l++) {
            buf[cb * v + l] = acc1[l];
            buf[C + cb * v + l] = acc2[l];
        }
    }
    bn_sync_finish(buf, C, (double)(B * S), mu, var, n_out);
}

/* sync_var: the variances of bn_stats_sync_blocked (mean holds the means), or NULL for the
 * statistics of this x (training) or the running ones (eval); n: the values per channel behind
 * the statistics */
static void bn_forward_blocked(const bl_tensor *x, const bl_tensor *weight, const bl_tensor *bias,
                               bl_tensor *running_mean, bl_tensor *running_var, double momentum,
                               double eps, int training, int silu, const double *sync_var,
                               double n, double *mean, double *invstd, bl_tensor *y)
{
    const int64_t v = x->layout, B = x->shape[0], C = x->shape[1], CB = C / v, S = x->numel / (B * C);
    BL_ASSERT(v <= BN_MAX_BLOCK && v % 4 == 0 && C % v == 0, "batchnorm: block %lld of %lld channels",
              (long long)v, (long long)C);
#pragma omp parallel for schedule(static) if (x->numel > BL_NORM_OMP_MIN)
    for (int64_t cb = 0; cb < CB; cb++) {
        bl_real m[BN_MAX_BLOCK], sc[BN_MAX_BLOCK], sh[BN_MAX_BLOCK];
        for (int64_t l = 0; l < v; l++) {
            const int64_t c = cb * v + l;
            double mu = 0, var = 0;
            if (sync_var) {
                mu = mean[c];
                var = sync_var[c];
                if (running_mean)
                    running_mean->data[c] =
                        (bl_real)((1 - momentum) * running_mean->data[c] + momentum * mu);
                if (running_var)
                    running_var->data[c] =
                        (bl_real)((1 - momentum) * running_var->data[c] + momentum * var * n / (n - 1));
            } else if (!training) {
                mu = running_mean->data[c];
                var = running_var->data[c];
            }
            mean[c] = mu;
            invstd[c] = var;
        }
        if (training && !sync_var) {
            /* sums shifted by each channel's first value: no cancellation when |mean| >> std */
            const bl_real *x0 = x->data + cb * S * v;
            double acc1[BN_MAX_BLOCK] = {0}, acc2[BN_MAX_BLOCK] = {0};
            bn_block_moments(x, cb, x0, acc1, acc2);
            for (int64_t l = 0; l < v; l++) {
                const int64_t c = cb * v + l;
                const double s1 = acc1[l] / n, s2 = acc2[l] / n;
                const double var = s2 - s1 * s1 < 0 ? 0 : s2 - s1 * s1;
                mean[c] = x0[l] + s1;
                invstd[c] = var;
                if (running_mean)
                    running_mean->data[c] =
                        (bl_real)((1 - momentum) * running_mean->data[c] + momentum * mean[c]);
                if (running_var)
                    running_var->data[c] =
                        (bl_real)((1 - momentum) * running_var->data[c] + momentum * var * n / (n - 1));
            }
        }
        for (int64_t l = 0; l < v; l++) {
            const int64_t c = cb * v + l;
            invstd[c] = 1 / sqrt(invstd[c] + eps);
            m[l] = (bl_real)mean[c];
            sc[l] = (bl_real)invstd[c] * (weight ? weight->data[c] : 1);
            sh[l] = bias ? bias->data[c] : 0;
        }
        for (int64_t b = 0; b < B; b++) {
            const size_t off = (size_t)((b * CB + cb) * S * v);
            const bl_real *xp = x->data + off;
            bl_real *yp = y->data + off;
            if (silu)
                bn_silu_block(xp, S, v, m, sc, sh, NULL, yp);
            else
                for (int64_t k = 0; k < S; k++)
                    for (int64_t l = 0; l < v; l++) yp[k * v + l] = (xp[k * v + l] - m[l]) * sc[l] + sh[l];
        }
    }
}

/* The forward's mean m, 1/std is, scale sc = is weight and shift sh = bias of the v channels
 * of block cb, as bl_real */
static void bn_block_coefs(const bl_bn_saved *sv, const bl_tensor *weight, const bl_tensor *bias,
                           int64_t cb, int64_t v, bl_real *m, bl_real *is, bl_real *sc, bl_real *sh)
{
    for (int64_t l = 0; l < v; l++) {
        const int64_t c = cb * v + l;
        m[l] = (bl_real)sv->mean[c];
        is[l] = (bl_real)sv->invstd[c];
        sc[l] = is[l] * (weight ? weight->data[c] : 1);
        sh[l] = bias ? bias->data[c] : 0;
    }
}

/* dx of channel block cb: dx = (or += unless dx_fresh) sc (g - a - (x - m) is bcoef), g = dy,
 * or with SiLU the block's dL/dz in gz (B, S, v) */
static void bn_backward_blocked_dx(const bl_tensor *x, const bl_real *dy, const bl_real *gz,
                                   int silu, int64_t cb, int64_t v, int64_t CB, int64_t B,
                                   int64_t S, const bl_real *m, const bl_real *is,
                                   const bl_real *sc, const bl_real *a, const bl_real *bcoef,
                                   bl_real *dx, int dx_fresh)
{
    for (int64_t b = 0; b < B; b++) {
        const size_t off = (size_t)((b * CB + cb) * S * v);
        const bl_real *xp = x->data + off;
        const bl_real *gp = silu ? gz + (size_t)(b * S * v) : dy + off;
        bl_real *dp = dx + off;
        for (int64_t k = 0; k < S; k++)
            for (int64_t l = 0; l < v; l++) {
                const int64_t i = k * v + l;
                const bl_real val = sc[l] * (gp[i] - a[l] - (xp[i] - m[l]) * is[l] * bcoef[l]);
                dp[i] = dx_fresh ? val : dp[i] + val;
            }
    }
}

static void batchnorm_backward_blocked(bl_ctx *ctx, bl_node *node)
{
    const bl_bn_saved *sv = node->saved;
    bl_tensor *x = node->in[0], *weight = node->in[1], *bias = node->in[2];
    const int64_t v = x->layout, C = sv->C, CB = C / v, B = sv->B, S = sv->S;
    const double n = sv->n; /* all processes' values when synchronised */
    const bl_real *dy = node->out->grad;
    int dx_fresh = 0;
    bl_real *dx = x->requires_grad ? bl_grad_for_write(ctx, x, &dx_fresh) : NULL;
    bl_real *dw = weight && weight->requires_grad ? bl_grad(ctx, weight) : NULL;
    bl_real *db = bias && bias->requires_grad ? bl_grad(ctx, bias) : NULL;
    bl_arena *arena = bl_ctx_arena(ctx);
    const size_t mark = bl_arena_used(arena);
    const int par = x->numel > BL_NORM_OMP_MIN;
    /* with SiLU: dL/dz of one channel block, (B, S, v), per thread */
    const size_t per = (size_t)(B * S * v);
    bl_real *gz_all = sv->silu ? bl_scratch(ctx, (size_t)(par ? omp_get_max_threads() : 1) * per *
                                                     sizeof(bl_real))
                               : NULL;
    /* synchronised statistics: this process's sums of g and g xhat per channel, reduced over
     * the processes before dx (weight and bias keep the local sums, as batchnorm_backward_sync) */
    double *sums = sv->sync && dx ? bl_scratch(ctx, (size_t)(2 * C) * sizeof *sums) : NULL;
#pragma omp parallel if (par)
    {
        bl_real *gz = gz_all ? gz_all + (size_t)omp_get_thread_num() * per : NULL;
#pragma omp for schedule(static)
        for (int64_t cb = 0; cb < CB; cb++) {
            bl_real m[BN_MAX_BLOCK], is[BN_MAX_BLOCK], sc[BN_MAX_BLOCK], sh[BN_MAX_BLOCK];
            bn_block_coefs(sv, weight, bias, cb, v, m, is, sc, sh);
            double acc_g[BN_MAX_BLOCK] = {0}, acc_gx[BN_MAX_BLOCK] = {0};
            for (int64_t b = 0; b < B; b++) {
                const size_t off = (size_t)((b * CB + cb) * S * v);
                const bl_real *xp = x->data + off, *gp = dy + off;
                if (gz) { /* g = dL/dy silu'(z), z recomputed */
                    bn_silu_block(xp, S, v, m, sc, sh, gp, gz + (size_t)(b * S * v));
                    gp = gz + (size_t)(b * S * v);
                }
                for (int64_t k = 0; k < S; k++)
                    for (int64_t l = 0; l < v; l++) {
                        const bl_real xhat = (xp[k * v + l] - m[l]) * is[l];
                        acc_g[l] += (double)gp[k * v + l];
                        acc_gx[l] += (double)(gp[k * v + l] * xhat);
                    }
            }
            bl_real a[BN_MAX_BLOCK], bcoef[BN_MAX_BLOCK];
            for (int64_t l = 0; l < v; l++) {
                const int64_t c = cb * v + l;
                if (db) db[c] += (bl_real)acc_g[l];
                if (dw) dw[c] += (bl_real)acc_gx[l];
                a[l] = sv->training ? (bl_real)(acc_g[l] / n) : 0;
                bcoef[l] = sv->training ? (bl_real)(acc_gx[l] / n) : 0;
                if (sums) sums[c] = acc_g[l], sums[C + c] = acc_gx[l];
            }
            if (!dx || sums) continue; /* synchronised: dx after the sums are reduced */
            bn_backward_blocked_dx(x, dy, gz, sv->silu, cb, v, CB, B, S, m, is, sc, a, bcoef, dx,
                                   dx_fresh);
        }
    }
    if (sums) {
        bn_reducer(bn_reducer_user, sums, 2 * C);
#pragma omp parallel if (par)
        {
            bl_real *gz = gz_all ? gz_all + (size_t)omp_get_thread_num() * per : NULL;
#pragma omp for schedule(static)
            for (int64_t cb = 0; cb < CB; cb++) {
                bl_real m[BN_MAX_BLOCK], is[BN_MAX_BLOCK], sc[BN_MAX_BLOCK], sh[BN_MAX_BLOCK];
                bl_real a[BN_MAX_BLOCK], bcoef[BN_MAX_BLOCK];
                bn_block_coefs(sv, weight, bias, cb, v, m, is, sc, sh);
                for (int64_t l = 0; l < v; l++) {
                    a[l] = (bl_real)(sums[cb * v + l] / n);
                    bcoef[l] = (bl_real)(sums[C + cb * v + l] / n);
                }
                if (gz) /* g = dL/dy silu'(z) of this block again (the first pass's is gone) */
                    for (int64_t b = 0; b < B; b++)
                        bn_silu_block(x->data + (size_t)((b * CB + cb) * S * v), S, v, m, sc, sh,
                                      dy + (size_t)((b * CB + cb) * S * v), gz + (size_t)(b * S * v));
                bn_backward_blocked_dx(x, dy, gz, sv->silu, cb, v, CB, B, S, m, is, sc, a, bcoef,
                                       dx, dx_fresh);
            }
        }
    }
    bl_arena_release(arena, mark);
}

static void batchnorm_backward(bl_ctx *ctx, bl_node *node)
{
    const bl_bn_saved *sv = node->saved;
    if (node->in[0]->layout != BL_LAYOUT_PLAIN) { /* synchronised or not */
        batchnorm_backward_blocked(ctx, node);
        return;
    }
    if (sv->sync) {
        batchnorm_backward_sync(ctx, node);
        return;
    }
    bl_tensor *x = node->in[0], *weight = node->in[1], *bias = node->in[2];
    const int64_t C = sv->C, B = sv->B, S = sv->S;
    const double n = (double)(B * S);
    const bl_real *dy = node->out->grad;
    int dx_fresh = 0; /* a fresh dx is stored, not accumulated: every element is written below */
    bl_real *dx = x->requires_grad ? bl_grad_for_write(ctx, x, &dx_fresh) : NULL;
    bl_real *dw = weight && weight->requires_grad ? bl_grad(ctx, weight) : NULL;
    bl_real *db = bias && bias->requires_grad ? bl_grad(ctx, bias) : NULL;
    bl_arena *arena = bl_ctx_arena(ctx);
    const size_t mark = bl_arena_used(arena);
    const int par = x->numel > BL_NORM_OMP_MIN;
    /* with SiLU: dL/dz of one channel, (B, S), per thread */
    bl_real *gz_all = sv->silu ? bl_scratch(ctx, (size_t)(par ? omp_get_max_threads() : 1) *
                                                     (size_t)(B * S) * sizeof(bl_real))
                               : NULL;
#pragma omp parallel if (par)
    {
        bl_real *gz = gz_all ? gz_all + (size_t)omp_get_thread_num() * (size_t)(B * S) : NULL;
#pragma omp for schedule(static)
        for (int64_t c = 0; c < C; c++) {
            const bl_real mean = (bl_real)sv->mean[c], invstd = (bl_real)sv->invstd[c];
            const bl_real wc = weight ? weight->data[c] : 1, bc = bias ? bias->data[c] : 0;
            double acc_g[BL_NORM_LANES] = {0}, acc_gx[BL_NORM_LANES] = {0};
            for (int64_t b = 0; b < B; b++) {
                const bl_real *xp = x->data + (b * C + c) * S, *gp = dy + (b * C + c) * S;
                if (gz) { /* g = dL/dy silu'(z), z recomputed */
                    bn_silu_row(xp, S, mean, invstd * wc, bc, gp, gz + b * S);
                    gp = gz + b * S;
                }
                int64_t k = 0;
                for (; k + BL_NORM_LANES <= S; k += BL_NORM_LANES)
                    for (int l = 0; l < BL_NORM_LANES; l++) {
                        const bl_real xhat = (xp[k + l] - mean) * invstd;
                        acc_g[l] += (double)gp[k + l];
                        acc_gx[l] += (double)(gp[k + l] * xhat);
                    }
                for (; k < S; k++) {
                    acc_g[0] += (double)gp[k];
                    acc_gx[0] += (double)(gp[k] * ((xp[k] - mean) * invstd));
                }
            }
            const double sum_g = bn_lanes_sum(acc_g), sum_gx = bn_lanes_sum(acc_gx);
            if (db) db[c] += (bl_real)sum_g;
            if (dw) dw[c] += (bl_real)sum_gx;
            if (!dx) continue;
            /* dx = scale (g - a - xhat bcoef) in the training case, scale g in eval */
            const bl_real scale = wc * invstd;
            const bl_real a = sv->training ? (bl_real)(sum_g / n) : 0;
            const bl_real bcoef = sv->training ? (bl_real)(sum_gx / n) : 0;
            for (int64_t b = 0; b < B; b++) {
                const bl_real *xp = x->data + (b * C + c) * S;
                const bl_real *gp = gz ? gz + b * S : dy + (b * C + c) * S;
                bl_real *dp = dx + (b * C + c) * S;
                if (dx_fresh)
                    for (int64_t k = 0; k < S; k++)
                        dp[k] = scale * (gp[k] - a - (xp[k] - mean) * invstd * bcoef);
                else
                    for (int64_t k = 0; k < S; k++)
                        dp[k] += scale * (gp[k] - a - (xp[k] - mean) * invstd * bcoef);
            }
        }
    }
    bl_arena_release(arena, mark);
}

static bl_tensor *batchnorm_apply(bl_ctx *ctx, const char *op, bl_tensor *x, bl_tensor *weight,
                                  bl_tensor *bias, bl_tensor *running_mean, bl_tensor *running_var,
                                  double momentum, double eps, int training, int silu)
{
    char sx[96], sp[96];
    BL_ASSERT(x->ndim >= 2, "%s: x %s must be (B, C, ...)", op, bl_shape_str(x, sx, 96));
    const int64_t B = x->shape[0], C = x->shape[1], S = B * C != 0 ? x->numel / (B * C) : 0;
    const bl_tensor *per_channel[4] = {weight, bias, running_mean, running_var};
    for (int i = 0; i < 4; i++)
        BL_ASSERT(!per_channel[i] || per_channel[i]->numel == C,
                  "%s: weight, bias and running statistics must have C = %lld elements (x %s), "
                  "got %s", op, (long long)C, bl_shape_str(x, sx, 96),
                  bl_shape_str(per_channel[i], sp, 96));
    BL_ASSERT(training || (running_mean && running_var),
              "%s: eval mode needs running_mean and running_var", op);
    BL_ASSERT(!training || B * S > 1,
              "%s: training needs more than one value per channel, x is %s", op,
              bl_shape_str(x, sx, 96));

    bl_tensor *y = bl_new_like(ctx, x);
    bl_arena *arena = bl_ctx_arena(ctx);
    const size_t mark = bl_arena_used(arena);
    double *mean = bl_scratch(ctx, (size_t)C * sizeof *mean);
    double *invstd = bl_scratch(ctx, (size_t)C * sizeof *invstd);
    double n = (double)(B * S);
    const int sync = training && bn_reducer != NULL;
    double *sync_var = sync ? bl_scratch(ctx, (size_t)C * sizeof *sync_var) : NULL;
    y->layout = x->layout;
    if (x->layout != BL_LAYOUT_PLAIN) {
        if (sync) bn_stats_sync_blocked(ctx, x, mean, sync_var, &n);
        bn_forward_blocked(x, weight, bias, running_mean, running_var, momentum, eps, training,
                           silu, sync_var, n, mean, invstd, y);
    } else {
    if (sync) bn_stats_sync(ctx, x, B, C, S, mean, sync_var, &n);
#pragma omp parallel for schedule(static) if (x->numel > BL_NORM_OMP_MIN)
    for (int64_t c = 0; c < C; c++) {
        double mu, var;
        if (sync) {
            mu = mean[c];
            var = sync_var[c];
            if (running_mean)
                running_mean->data[c] = (bl_real)((1 - momentum) * running_mean->data[c] + momentum * mu);
            if (running_var)
                running_var->data[c] =
                    (bl_real)((1 - momentum) * running_var->data[c] + momentum * var * n / (n - 1));
        } else if (training) {
            /* sums shifted by the channel's first value: no cancellation when |mean| >> std */
            const bl_real shift = x->data[c * S];
            double acc1[BL_NORM_LANES] = {0}, acc2[BL_NORM_LANES] = {0};
            for (int64_t b = 0; b < B; b++) bn_row_moments(x->data + (b * C + c) * S, S, shift, acc1, acc2);
            const double s1 = bn_lanes_sum(acc1) / n, s2 = bn_lanes_sum(acc2) / n;
            mu = shift + s1;
            var = s2 - s1 * s1;
            if (var < 0) var = 0;
            if (running_mean)
                running_mean->data[c] = (bl_real)((1 - momentum) * running_mean->data[c] + momentum * mu);
            if (running_var)
                running_var->data[c] =
                    (bl_real)((1 - momentum) * running_var->data[c] + momentum * var * n / (n - 1));
        } else {
            mu = running_mean->data[c];
            var = running_var->data[c];
        }
        mean[c] = mu;
        invstd[c] = 1 / sqrt(var + eps);
        /* z = (x - mean) invstd weight + bias, in bl_real: x - mean is exact enough there */
        const bl_real m = (bl_real)mu, is = (bl_real)invstd[c];
        const bl_real wc = weight ? weight->data[c] : 1, bc = bias ? bias->data[c] : 0;
        for (int64_t b = 0; b < B; b++) {
            const bl_real *xp = x->data + (b * C + c) * S;
            bl_real *yp = y->data + (b * C + c) * S;
            if (silu)
                bn_silu_row(xp, S, m, is * wc, bc, NULL, yp);
            else
                for (int64_t k = 0; k < S; k++) yp[k] = (xp[k] - m) * (is * wc) + bc;
        }
    }
    }

    bl_tensor *in[3] = {x, weight, bias};
    bl_node *node = bl_tape_push_any_layout(ctx, op, batchnorm_backward, y, 3, in,
                                            sizeof(bl_bn_saved));
    if (!node) {
        bl_arena_release(arena, mark);
        return y;
    }
    bl_bn_saved *sv = node->saved;
    *sv = (bl_bn_saved){.mean = mean, .invstd = invstd, .C = C, .B = B, .S = S,
                        .training = training, .silu = silu, .n = n, .sync = sync};
    return y;
}

bl_tensor *bl_batchnorm(bl_ctx *ctx, bl_tensor *x, bl_tensor *weight, bl_tensor *bias,
                        bl_tensor *running_mean, bl_tensor *running_var, double momentum,
                        double eps, int training)
{
    return batchnorm_apply(ctx, "bl_batchnorm", x, weight, bias, running_mean, running_var,
                           momentum, eps, training, 0);
}

bl_tensor *bl_batchnorm_silu(bl_ctx *ctx, bl_tensor *x, bl_tensor *weight, bl_tensor *bias,
                             bl_tensor *running_mean, bl_tensor *running_var, double momentum,
                             double eps, int training)
{
    return batchnorm_apply(ctx, "bl_batchnorm_silu", x, weight, bias, running_mean, running_var,
                           momentum, eps, training, 1);
}
