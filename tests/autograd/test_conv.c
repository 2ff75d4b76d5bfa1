/* Convolution, BatchNorm and upsampling ops (float build) against
 *  - naive loops written here from the definitions (double precision), at many shapes and with
 *    the GEMM chunking forced into each of its layouts;
 *  - running statistics computed by hand;
 *  - PyTorch 1.13 reference values in tests/data/torch_refs.txt (tests/data/gen_torch_refs.py).
 * Gradients are those of L = sum(y * g) for a fixed g, seeded through a small op defined here. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/conv_engine.h"
#include "autograd/conv_kernels.h"
#include "autograd/conv_onednn.h"
#include "autograd/ops.h"

#include <omp.h>
#include "tests/bl_check.h"

#ifndef BL_TEST_DATA_DIR
#error "BL_TEST_DATA_DIR must name tests/data"
#endif

/* ---- L = sum(y * g): the loss whose gradient w.r.t. y is g ---- */

static void dot_loss_backward(bl_ctx *ctx, bl_node *node)
{
    bl_tensor *y = node->in[0];
    const bl_real *g = node->saved;
    const bl_real dl = node->out->grad[0];
    bl_real *dy = bl_grad(ctx, y);
    for (int64_t i = 0; i < y->numel; i++) dy[i] += dl * g[i];
}

static bl_tensor *dot_loss(bl_ctx *ctx, bl_tensor *y, const bl_real *g)
{
    double s = 0;
    for (int64_t i = 0; i < y->numel; i++) s += (double)y->data[i] * g[i];
    bl_tensor *l = bl_full(ctx, 0, NULL, (bl_real)s);
    bl_tensor *in[1] = {y};
    bl_node *node = bl_tape_push(ctx, "dot_loss", dot_loss_backward, l, 1, in,
                                 (size_t)y->numel * sizeof(bl_real));
    if (node) memcpy(node->saved, g, (size_t)y->numel * sizeof(bl_real));
    return l;
}

/* ---- helpers ---- */

#include "rand_tensor.h"

static double *to_double(const bl_real *p, int64_t n)
{
    double *d = bl_malloc((size_t)(n ? n : 1) * sizeof *d);
    for (int64_t i = 0; i < n; i++) d[i] = p[i];
    return d;
}

/* Fills the next 16 MB of the arena with 7s and gives them back, so later allocations (a
 * fresh gradient buffer, bl_grad_for_write) are not zero by luck. */
static void dirty_arena(bl_ctx *ctx)
{
    const size_t n = (size_t)4 << 20;
    bl_real *p = bl_scratch(ctx, n * sizeof *p);
    for (size_t i = 0; i < n; i++) p[i] = 7;
    bl_arena_release(bl_ctx_arena(ctx), 0);
}

/* max over i of |a_i - b_i| / (|b_i| + max_j |b_j|) must be <= rtol */
static void assert_close(const char *what, const bl_real *a, const double *b, int64_t n, double rtol)
{
    double scale = 0, worst = 0;
    int64_t iw = 0;
    for (int64_t i = 0; i < n; i++) scale = fmax(scale, fabs(b[i]));
    for (int64_t i = 0; i < n; i++) {
        const double e = fabs((double)a[i] - b[i]) / (fabs(b[i]) + scale + 1e-30);
        if (!(e <= worst)) { /* catches NaN too */
            worst = isnan(e) ? INFINITY : e;
            iw = i;
        }
    }
    ck_assert_msg(worst <= rtol, "%s: element %lld is %.9g, expected %.9g (rel err %.3g > %.3g)",
                  what, (long long)iw, n ? (double)a[iw] : 0.0, n ? b[iw] : 0.0, worst, rtol);
}

/* ---- naive references (definitions, double precision) ---- */

/* y (B, M, Ho, Wo) = sum_{c,i,j} x[b][c][oh s - p + i][ow s - p + j] w[m][c][i][j] + bias[m] */
static void naive_conv2d(const double *x, const double *w, const double *bias, int B, int C, int H,
                         int W, int M, int kh, int kw, int s, int p, double *y)
{
    const int Ho = (H + 2 * p - kh) / s + 1, Wo = (W + 2 * p - kw) / s + 1;
    for (int b = 0; b < B; b++)
        for (int m = 0; m < M; m++)
            for (int oh = 0; oh < Ho; oh++)
                for (int ow = 0; ow < Wo; ow++) {
                    double acc = bias ? bias[m] : 0;
                    for (int c = 0; c < C; c++)
                        for (int i = 0; i < kh; i++)
                            for (int j = 0; j < kw; j++) {
                                const int ih = oh * s - p + i, iw = ow * s - p + j;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                acc += x[((b * C + c) * H + ih) * W + iw] * w[((m * C + c) * kh + i) * kw + j];
                            }
                    y[((b * M + m) * Ho + oh) * Wo + ow] = acc;
                }
}

/* gradients of sum(y * g) for naive_conv2d, accumulated into dx, dw, db */
static void naive_conv2d_backward(const double *x, const double *w, const double *g, int B, int C,
                                  int H, int W, int M, int kh, int kw, int s, int p, double *dx,
                                  double *dw, double *db)
{
    const int Ho = (H + 2 * p - kh) / s + 1, Wo = (W + 2 * p - kw) / s + 1;
    for (int b = 0; b < B; b++)
        for (int m = 0; m < M; m++)
            for (int oh = 0; oh < Ho; oh++)
                for (int ow = 0; ow < Wo; ow++) {
                    const double gv = g[((b * M + m) * Ho + oh) * Wo + ow];
                    db[m] += gv;
                    for (int c = 0; c < C; c++)
                        for (int i = 0; i < kh; i++)
                            for (int j = 0; j < kw; j++) {
                                const int ih = oh * s - p + i, iw = ow * s - p + j;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                const int xi = ((b * C + c) * H + ih) * W + iw;
                                const int wi = ((m * C + c) * kh + i) * kw + j;
                                dx[xi] += gv * w[wi];
                                dw[wi] += gv * x[xi];
                            }
                }
}

/* ---- conv2d: fast paths vs naive loops ---- */

typedef struct conv_case {
    int B, C, H, W, M, k, s, p, bias;
} conv_case;

static const conv_case conv_cases[] = {
    {1, 3, 7, 9, 5, 1, 1, 0, 1},  /* 1x1: GEMM on the input, no im2col */
    {3, 5, 7, 9, 6, 1, 1, 0, 0},
    {2, 3, 8, 8, 5, 1, 2, 0, 1},  /* 1x1 stride 2: im2col */
    {3, 5, 7, 9, 6, 3, 1, 1, 1},
    {1, 5, 7, 9, 6, 3, 2, 1, 1},
    {3, 6, 9, 7, 7, 3, 2, 0, 0},
    {3, 3, 9, 7, 5, 5, 1, 2, 0},
    {2, 3, 9, 7, 5, 5, 2, 2, 1},
    {1, 2, 5, 6, 3, 5, 1, 0, 1},
    {3, 7, 5, 5, 3, 3, 1, 2, 1},  /* pad > k - 1: the transposed convolution has negative padding */
    {2, 2, 6, 6, 3, 2, 1, 0, 1},  /* even kernel */
    {2, 3, 10, 10, 9, 3, 2, 1, 1},
    {2, 5, 16, 17, 3, 1, 1, 0, 1}, /* 1x1 with >= 256 pixels: one image per chunk, in place */
    /* channel counts that are multiples of 16: oneDNN's blocked layouts (nChw16c, OIhw16i16o)
     * and reorders on both sides, Winograd where it applies (3x3 stride 1) */
    {2, 16, 12, 10, 32, 3, 1, 1, 1},
    {1, 32, 20, 20, 16, 3, 1, 1, 0},
    {2, 32, 9, 9, 48, 5, 1, 2, 1},
    {2, 32, 11, 10, 64, 3, 2, 1, 1},
    {3, 48, 6, 7, 32, 1, 1, 0, 1},
};

/* chunk layouts of the im2col engine: 0 default (the whole batch in one chunk at these sizes),
 * 1 one output row per chunk (bands of an image), 2 two images per chunk (a multi-image chunk,
 * then a single-image one), 3 and 4: like 0 and 1 with the stride-1 forward and dW GEMMs split
 * by vertical taps. Then, when the build has it, the oneDNN engine: 5 direct convolutions,
 * 6 Winograd wherever oneDNN implements it (else direct). */
#define N_IM2COL_LAYOUTS 5
#ifdef BL_CONV_HAVE_ONEDNN
#define N_LAYOUTS 7
#else
#define N_LAYOUTS 5
#endif

/* selects the engine of `layout` (and oneDNN's Winograd policy) */
static void engine_for(int layout)
{
    const bl_conv_engine e = layout < N_IM2COL_LAYOUTS ? BL_CONV_ENGINE_IM2COL : BL_CONV_ENGINE_ONEDNN;
    ck_assert_int_eq(bl_conv_set_engine(e), BL_OK);
#ifdef BL_CONV_HAVE_ONEDNN
    bl_conv_onednn_set_winograd(layout == 6 ? BL_CONV_WINO_ALL : BL_CONV_WINO_OFF);
#endif
}

/* 1 when the oneDNN engine ran g with Winograd (after the op was called) */
static int ran_winograd(int layout, const bl_conv_geom *g, int has_bias)
{
#ifdef BL_CONV_HAVE_ONEDNN
    int wino = 0;
    if (layout >= N_IM2COL_LAYOUTS) bl_conv_onednn_describe(g, has_bias, &wino);
    return wino;
#else
    (void)layout, (void)g, (void)has_bias;
    return 0;
#endif
}

/* oneDNN 2.6 implements f32 Winograd (F(4x4, 3x3)) on AVX-512 CPUs (and, on this version, also
 * accepts small odd channel counts); for 3x3 stride-1 cases with channel counts that are
 * multiples of 16, like the encoder's layers, the test insists that it ran */
static int expect_winograd(int layout, const conv_case *cc)
{
    __builtin_cpu_init();
    return layout == 6 && cc->k == 3 && cc->s == 1 && cc->C % 16 == 0 && cc->M % 16 == 0 &&
           __builtin_cpu_supports("avx512f");
}

static bl_conv_tuning tuning_for(int layout, const conv_case *cc)
{
    const int Ho = (cc->H + 2 * cc->p - cc->k) / cc->s + 1, Wo = (cc->W + 2 * cc->p - cc->k) / cc->s + 1;
    /* the transposed convolution of the stride-1 dX path has H x W outputs per image */
    const int hw = Ho * Wo > cc->H * cc->W ? Ho * Wo : cc->H * cc->W;
    const bl_conv_tuning def = bl_conv_get_tuning();
    switch (layout) {
    case 1: return (bl_conv_tuning){.col_bytes = 1, .min_cols = 1, .taps_min_k = 0};
    case 2: return (bl_conv_tuning){.col_bytes = 1, .min_cols = 2 * hw, .taps_min_k = 0};
    case 3: return (bl_conv_tuning){.col_bytes = def.col_bytes, .min_cols = def.min_cols, .taps_min_k = 1};
    case 4: return (bl_conv_tuning){.col_bytes = 1, .min_cols = 1, .taps_min_k = 1};
    default: return def;
    }
}

/* fresh = 0: every gradient starts at 1 (accumulation); fresh = 1: x has no gradient buffer
 * before backward, so dX is stored into an unfilled buffer (bl_grad_for_write). */
static void run_conv_case(const conv_case *cc, int layout, int fresh)
{
    const bl_conv_tuning saved = bl_conv_get_tuning();
    bl_conv_set_tuning(tuning_for(layout, cc));
    engine_for(layout);
    bl_ctx *ctx = bl_ctx_alloc(0);
    dirty_arena(ctx);
    const int Ho = (cc->H + 2 * cc->p - cc->k) / cc->s + 1, Wo = (cc->W + 2 * cc->p - cc->k) / cc->s + 1;
    bl_tensor *x = rand_tensor(ctx, 4, BL_SHAPE(cc->B, cc->C, cc->H, cc->W), 1, 0, 1);
    bl_tensor *w = rand_tensor(ctx, 4, BL_SHAPE(cc->M, cc->C, cc->k, cc->k), 0.5, 0, 1);
    bl_tensor *bias = cc->bias ? rand_tensor(ctx, 1, BL_SHAPE(cc->M), 1, 0, 1) : NULL;
    /* gradients accumulate: start them at 1 and expect 1 + dL/d. */
    bl_tensor *params[3] = {x, w, bias};
    for (int k = fresh ? 1 : 0; k < 3 && params[k]; k++) {
        bl_real *gr = bl_grad(ctx, params[k]);
        for (int64_t i = 0; i < params[k]->numel; i++) gr[i] = 1;
    }
    bl_tensor *y = bl_conv2d(ctx, x, w, bias, cc->s, cc->p);
    ck_assert_int_eq(y->ndim, 4);
    ck_assert_int_eq(y->shape[0], cc->B);
    ck_assert_int_eq(y->shape[1], cc->M);
    ck_assert_int_eq(y->shape[2], Ho);
    ck_assert_int_eq(y->shape[3], Wo);
    bl_tensor *g = rand_tensor(ctx, 4, y->shape, 1, 0, 0);
    bl_backward(ctx, dot_loss(ctx, y, g->data));

    double *xd = to_double(x->data, x->numel), *wd = to_double(w->data, w->numel);
    double *bd = bias ? to_double(bias->data, cc->M) : NULL, *gd = to_double(g->data, g->numel);
    double *yr = bl_malloc((size_t)y->numel * sizeof *yr);
    double *dx = bl_malloc((size_t)x->numel * sizeof *dx), *dw = bl_malloc((size_t)w->numel * sizeof *dw);
    double *db = bl_malloc((size_t)cc->M * sizeof *db);
    for (int64_t i = 0; i < x->numel; i++) dx[i] = fresh ? 0 : 1;
    for (int64_t i = 0; i < w->numel; i++) dw[i] = 1;
    for (int i = 0; i < cc->M; i++) db[i] = 1;
    naive_conv2d(xd, wd, bd, cc->B, cc->C, cc->H, cc->W, cc->M, cc->k, cc->k, cc->s, cc->p, yr);
    naive_conv2d_backward(xd, wd, gd, cc->B, cc->C, cc->H, cc->W, cc->M, cc->k, cc->k, cc->s, cc->p,
                          dx, dw, db);
    const bl_conv_geom geom = {.B = cc->B, .C = cc->C, .H = cc->H, .W = cc->W, .M = cc->M,
                               .kh = cc->k, .kw = cc->k, .stride = cc->s, .pad_h = cc->p,
                               .pad_w = cc->p, .Ho = Ho, .Wo = Wo};
    const int wino = ran_winograd(layout, &geom, cc->bias);
    if (expect_winograd(layout, cc))
        ck_assert_msg(wino, "conv C%d M%d 3x3: oneDNN did not run Winograd", cc->C, cc->M);
    /* the same tolerance holds with Winograd: its transforms cost a few more roundings than a
     * direct sum, measured worst 9e-7 relative to the tensor's scale on these cases */
    const double rtol = 1e-5;
    char what[160];
#define WHAT(t) (snprintf(what, sizeof what, "conv B%d C%d %dx%d M%d k%d s%d p%d bias%d layout%d%s fresh%d: %s", \
                          cc->B, cc->C, cc->H, cc->W, cc->M, cc->k, cc->s, cc->p, cc->bias, layout, \
                          wino ? " (winograd)" : "", fresh, t), what)
    assert_close(WHAT("y"), y->data, yr, y->numel, rtol);
    assert_close(WHAT("dx"), x->grad, dx, x->numel, rtol);
    assert_close(WHAT("dw"), w->grad, dw, w->numel, rtol);
    if (bias) assert_close(WHAT("db"), bias->grad, db, cc->M, rtol);
#undef WHAT
    free(xd), free(wd), free(bd), free(gd), free(yr), free(dx), free(dw), free(db);
    bl_ctx_free(ctx);
    bl_conv_set_tuning(saved);
}

START_TEST(test_conv2d_vs_naive)
{
    lcg_state = 1000 + (uint64_t)_i;
    for (int layout = 0; layout < N_LAYOUTS; layout++)
        for (int fresh = 0; fresh < 2; fresh++) run_conv_case(&conv_cases[_i], layout, fresh);
}
END_TEST

START_TEST(test_conv2d_data_input_gets_no_gradient)
{
    bl_ctx *ctx = bl_ctx_alloc(0);
    lcg_state = 7;
    bl_tensor *x = rand_tensor(ctx, 4, BL_SHAPE(2, 3, 6, 5), 1, 0, 0);
    bl_tensor *w = rand_tensor(ctx, 4, BL_SHAPE(4, 3, 3, 3), 1, 0, 1);
    bl_tensor *y = bl_conv2d(ctx, x, w, NULL, 1, 1);
    bl_tensor *g = rand_tensor(ctx, 4, y->shape, 1, 0, 0);
    bl_backward(ctx, dot_loss(ctx, y, g->data));
    ck_assert_ptr_null(x->grad);
    ck_assert_ptr_nonnull(w->grad);
    /* with gradients disabled nothing is recorded */
    bl_ctx_reset(ctx);
    x = rand_tensor(ctx, 4, BL_SHAPE(2, 3, 6, 5), 1, 0, 1);
    int old = bl_set_grad_enabled(ctx, 0);
    y = bl_conv2d(ctx, x, w, NULL, 1, 1);
    ck_assert_int_eq(bl_tape_length(ctx), 0);
    ck_assert_int_eq(y->requires_grad, 0);
    bl_set_grad_enabled(ctx, old);
    bl_ctx_free(ctx);
}
END_TEST

/* ---- conv3d_depth vs a naive 3-D loop ---- */

START_TEST(test_conv3d_depth_vs_naive)
{
    const int B = 2, C = 3, D = 4, H = 7, W = 6, M = 5, k = 3, p = 1;
    const int Ho = H + 2 * p - k + 1, Wo = W + 2 * p - k + 1;
    /* layouts 0-2: im2col chunkings; 3: the oneDNN engine */
    for (int layout = 0; layout < (bl_conv_engine_available(BL_CONV_ENGINE_ONEDNN) ? 4 : 3); layout++) {
        const bl_conv_tuning saved = bl_conv_get_tuning();
        if (layout == 1) bl_conv_set_tuning((bl_conv_tuning){.col_bytes = 1, .min_cols = 1});
        if (layout == 2) bl_conv_set_tuning((bl_conv_tuning){.col_bytes = 1, .min_cols = 1, .taps_min_k = 1});
        ck_assert_int_eq(bl_conv_set_engine(layout == 3 ? BL_CONV_ENGINE_ONEDNN : BL_CONV_ENGINE_IM2COL), BL_OK);
        bl_ctx *ctx = bl_ctx_alloc(0);
        lcg_state = 33 + (uint64_t)layout;
        bl_tensor *x = rand_tensor(ctx, 5, BL_SHAPE(B, C, D, H, W), 1, 0, 1);
        bl_tensor *w = rand_tensor(ctx, 5, BL_SHAPE(M, C, D, k, k), 0.5, 0, 1);
        bl_tensor *bias = rand_tensor(ctx, 1, BL_SHAPE(M), 1, 0, 1);
        bl_tensor *y = bl_conv3d_depth(ctx, x, w, bias, p);
        ck_assert_int_eq(y->ndim, 5);
        ck_assert(y->shape[0] == B && y->shape[1] == M && y->shape[2] == 1 && y->shape[3] == Ho &&
                  y->shape[4] == Wo);
        bl_tensor *g = rand_tensor(ctx, 5, y->shape, 1, 0, 0);
        bl_backward(ctx, dot_loss(ctx, y, g->data));
        /* Conv3d with kernel (D, k, k), padding (0, p, p): the depth sum has one position */
        double *yr = bl_calloc((size_t)y->numel, sizeof *yr), *dx = bl_calloc((size_t)x->numel, sizeof *dx);
        double *dw = bl_calloc((size_t)w->numel, sizeof *dw), *db = bl_calloc(M, sizeof *db);
        for (int b = 0; b < B; b++)
            for (int m = 0; m < M; m++)
                for (int oh = 0; oh < Ho; oh++)
                    for (int ow = 0; ow < Wo; ow++) {
                        const int yi = ((b * M + m) * Ho + oh) * Wo + ow;
                        double acc = bias->data[m];
                        db[m] += g->data[yi];
                        for (int c = 0; c < C; c++)
                            for (int d = 0; d < D; d++)
                                for (int i = 0; i < k; i++)
                                    for (int j = 0; j < k; j++) {
                                        const int ih = oh - p + i, iw = ow - p + j;
                                        if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                                        const int xi = (((b * C + c) * D + d) * H + ih) * W + iw;
                                        const int wi = (((m * C + c) * D + d) * k + i) * k + j;
                                        acc += (double)x->data[xi] * w->data[wi];
                                        dx[xi] += (double)g->data[yi] * w->data[wi];
                                        dw[wi] += (double)g->data[yi] * x->data[xi];
                                    }
                        yr[yi] = acc;
                    }
        assert_close("conv3d y", y->data, yr, y->numel, 1e-5);
        assert_close("conv3d dx", x->grad, dx, x->numel, 1e-5);
        assert_close("conv3d dw", w->grad, dw, w->numel, 1e-5);
        assert_close("conv3d db", bias->grad, db, M, 1e-5);
        free(yr), free(dx), free(dw), free(db);
        bl_ctx_free(ctx);
        bl_conv_set_tuning(saved);
    }
}
END_TEST

/* ---- engines ---- */

START_TEST(test_conv_engine_selection)
{
    bl_conv_engine e = BL_CONV_ENGINE_ONEDNN;
    ck_assert_int_eq(bl_conv_engine_parse("im2col", &e), BL_OK);
    ck_assert_int_eq(e, BL_CONV_ENGINE_IM2COL);
    ck_assert_int_eq(bl_conv_engine_parse("cudnn", &e), BL_ERR_ARG);
    ck_assert_msg(strstr(bl_error_message(), "cudnn") && strstr(bl_error_message(), "im2col"),
                  "message should name the value and the choices: %s", bl_error_message());
    ck_assert_str_eq(bl_conv_engine_name(BL_CONV_ENGINE_ONEDNN), "onednn");
    ck_assert(bl_conv_engine_available(BL_CONV_ENGINE_IM2COL));
#ifdef BL_CONV_HAVE_ONEDNN
    ck_assert(bl_conv_engine_available(BL_CONV_ENGINE_ONEDNN));
    /* the default is the fastest engine the build has, unless the environment says otherwise */
    const char *env = getenv("BL_CONV_ENGINE");
    ck_assert_int_eq(bl_conv_get_engine(),
                     env && !strcmp(env, "im2col") ? BL_CONV_ENGINE_IM2COL : BL_CONV_ENGINE_ONEDNN);
    ck_assert_int_eq(bl_conv_engine_parse("onednn", &e), BL_OK);
    ck_assert_int_eq(e, BL_CONV_ENGINE_ONEDNN);
#else
    ck_assert_int_eq(bl_conv_get_engine(), BL_CONV_ENGINE_IM2COL);
    ck_assert_int_eq(bl_conv_set_engine(BL_CONV_ENGINE_ONEDNN), BL_ERR_ARG);
    ck_assert_int_eq(bl_conv_engine_parse("onednn", &e), BL_ERR_ARG);
#endif
    ck_assert_int_eq(bl_conv_set_engine(BL_CONV_ENGINE_IM2COL), BL_OK);
    ck_assert_int_eq(bl_conv_get_engine(), BL_CONV_ENGINE_IM2COL);
}
END_TEST

#ifdef BL_CONV_HAVE_ONEDNN
typedef struct conv_result {
    bl_real *y, *dx, *dw, *db;
    int64_t ny, nx, nw, nb;
} conv_result;

static void conv_result_free(conv_result *r) { free(r->y), free(r->dx), free(r->dw), free(r->db); }

static bl_real *copy_of(const bl_real *p, int64_t n)
{
    bl_real *c = bl_malloc((size_t)n * sizeof *c);
    memcpy(c, p, (size_t)n * sizeof *c);
    return c;
}

/* forward + backward of one conv2d (seeded inputs, gradients accumulated onto 1s) on the
 * current engine */
static conv_result conv_once(const conv_case *cc, uint64_t seed)
{
    bl_ctx *ctx = bl_ctx_alloc(0);
    lcg_state = seed;
    bl_tensor *x = rand_tensor(ctx, 4, BL_SHAPE(cc->B, cc->C, cc->H, cc->W), 1, 0, 1);
    bl_tensor *w = rand_tensor(ctx, 4, BL_SHAPE(cc->M, cc->C, cc->k, cc->k), 0.2, 0, 1);
    bl_tensor *bias = rand_tensor(ctx, 1, BL_SHAPE(cc->M), 1, 0, 1);
    bl_tensor *params[3] = {x, w, bias};
    for (int k = 0; k < 3; k++) {
        bl_real *gr = bl_grad(ctx, params[k]);
        for (int64_t i = 0; i < params[k]->numel; i++) gr[i] = 1;
    }
    bl_tensor *y = bl_conv2d(ctx, x, w, bias, cc->s, cc->p);
    bl_tensor *g = rand_tensor(ctx, 4, y->shape, 1, 0, 0);
    bl_backward(ctx, dot_loss(ctx, y, g->data));
    conv_result r = {copy_of(y->data, y->numel), copy_of(x->grad, x->numel),
                     copy_of(w->grad, w->numel), copy_of(bias->grad, cc->M),
                     y->numel, x->numel, w->numel, cc->M};
    bl_ctx_free(ctx);
    return r;
}

/* encoder-like shapes, too large for the naive loops: 5x5 on 64 channels, a stride-2 layer,
 * a 3x3 layer run with Winograd by the default policy, a 1x1 */
static const conv_case big_cases[] = {
    {2, 64, 24, 24, 64, 5, 1, 2, 1},
    {2, 64, 24, 24, 128, 3, 2, 1, 1},
    {2, 128, 20, 20, 128, 3, 1, 1, 1},
    {2, 192, 10, 10, 64, 1, 1, 0, 1},
};

/* the oneDNN engine (default Winograd policy) against the im2col engine */
START_TEST(test_conv_onednn_matches_im2col)
{
    const conv_case *cc = &big_cases[_i];
    ck_assert_int_eq(bl_conv_set_engine(BL_CONV_ENGINE_IM2COL), BL_OK);
    conv_result a = conv_once(cc, 77);
    ck_assert_int_eq(bl_conv_set_engine(BL_CONV_ENGINE_ONEDNN), BL_OK);
    bl_conv_onednn_set_winograd(BL_CONV_WINO_AUTO);
    conv_result b = conv_once(cc, 77);
    const conv_result *rs[2] = {&a, &b};
    double *ref[4];
    for (int t = 0; t < 4; t++) {
        const bl_real *p = t == 0 ? rs[0]->y : t == 1 ? rs[0]->dx : t == 2 ? rs[0]->dw : rs[0]->db;
        const int64_t n = t == 0 ? a.ny : t == 1 ? a.nx : t == 2 ? a.nw : a.nb;
        ref[t] = to_double(p, n);
    }
    char what[96];
    snprintf(what, sizeof what, "case %d y", _i);
    assert_close(what, b.y, ref[0], a.ny, 1e-5);
    snprintf(what, sizeof what, "case %d dx", _i);
    assert_close(what, b.dx, ref[1], a.nx, 1e-5);
    snprintf(what, sizeof what, "case %d dw", _i);
    assert_close(what, b.dw, ref[2], a.nw, 1e-5);
    snprintf(what, sizeof what, "case %d db", _i);
    assert_close(what, b.db, ref[3], a.nb, 1e-5);
    for (int t = 0; t < 4; t++) free(ref[t]);
    conv_result_free(&a);
    conv_result_free(&b);
}
END_TEST

static int same_bits(const bl_real *a, const bl_real *b, int64_t n)
{
    return !memcmp(a, b, (size_t)n * sizeof *a);
}

/* same thread count, same inputs: bit-identical outputs and gradients (direct and Winograd) */
START_TEST(test_conv_onednn_reproducible)
{
    const conv_case *cc = &big_cases[_i];
    ck_assert_int_eq(bl_conv_set_engine(BL_CONV_ENGINE_ONEDNN), BL_OK);
    for (int wino = 0; wino < 2; wino++) {
        bl_conv_onednn_set_winograd(wino ? BL_CONV_WINO_ALL : BL_CONV_WINO_OFF);
        conv_result a = conv_once(cc, 5), b = conv_once(cc, 5);
        ck_assert_msg(same_bits(a.y, b.y, a.ny) && same_bits(a.dx, b.dx, a.nx) &&
                          same_bits(a.dw, b.dw, a.nw) && same_bits(a.db, b.db, a.nb),
                      "case %d wino %d: two identical runs differ", _i, wino);
        conv_result_free(&a);
        conv_result_free(&b);
    }
}
END_TEST

/* primitives are cached per thread count: changing it between calls stays correct */
START_TEST(test_conv_onednn_thread_count_change)
{
    const conv_case *cc = &big_cases[0];
    const int threads = omp_get_max_threads();
    ck_assert_int_eq(bl_conv_set_engine(BL_CONV_ENGINE_ONEDNN), BL_OK);
    conv_result a = conv_once(cc, 9);
    omp_set_num_threads(threads > 1 ? 1 : 2);
    conv_result b = conv_once(cc, 9);
    omp_set_num_threads(threads);
    double *ry = to_double(a.y, a.ny), *rw = to_double(a.dw, a.nw);
    assert_close("y at another thread count", b.y, ry, a.ny, 1e-5);
    assert_close("dw at another thread count", b.dw, rw, a.nw, 1e-5);
    free(ry), free(rw);
    conv_result_free(&a);
    conv_result_free(&b);
}
END_TEST
#endif

/* ---- batchnorm vs naive ---- */

/* x (B, C, S); training: batch statistics (two-pass biased variance), else rm/rv. Writes y and,
 * for sum(y * g), dx, dw, db (assigned). */
static void naive_batchnorm(const bl_real *x, const bl_real *w, const bl_real *bias, const double *rm,
                            const double *rv, const bl_real *g, int B, int C, int S, double eps,
                            int training, double *y, double *dx, double *dw, double *db,
                            double *batch_mean, double *batch_var_unbiased)
{
    const double n = (double)B * S;
    for (int c = 0; c < C; c++) {
        double mean = 0, var = 0;
        for (int b = 0; b < B; b++)
            for (int s = 0; s < S; s++) mean += x[(b * C + c) * S + s];
        mean /= n;
        for (int b = 0; b < B; b++)
            for (int s = 0; s < S; s++) var += pow(x[(b * C + c) * S + s] - mean, 2);
        if (batch_mean) batch_mean[c] = mean;
        if (batch_var_unbiased) batch_var_unbiased[c] = var / (n - 1);
        var /= n;
        if (!training) {
            mean = rm[c];
            var = rv[c];
        }
        const double inv = 1 / sqrt(var + eps), wc = w ? w[c] : 1, bc = bias ? bias[c] : 0;
        double sg = 0, sgx = 0;
        for (int b = 0; b < B; b++)
            for (int s = 0; s < S; s++) {
                const int i = (b * C + c) * S + s;
                const double xh = (x[i] - mean) * inv;
                y[i] = wc * xh + bc;
                sg += g[i];
                sgx += g[i] * xh;
            }
        dw[c] = sgx;
        db[c] = sg;
        for (int b = 0; b < B; b++)
            for (int s = 0; s < S; s++) {
                const int i = (b * C + c) * S + s;
                const double xh = (x[i] - mean) * inv;
                dx[i] = training ? wc * inv * (g[i] - sg / n - xh * sgx / n) : wc * inv * g[i];
            }
    }
}

static void run_bn_case(int ndim, const int64_t *shape, int training, int affine)
{
    bl_ctx *ctx = bl_ctx_alloc(0);
    bl_tensor *x = rand_tensor(ctx, ndim, shape, 3, 2, 1);
    const int B = (int)shape[0], C = (int)shape[1], S = (int)(x->numel / (B * C));
    bl_tensor *w = affine ? rand_tensor(ctx, 1, BL_SHAPE(C), 0.5, 1, 1) : NULL;
    bl_tensor *bias = affine ? rand_tensor(ctx, 1, BL_SHAPE(C), 1, 0, 1) : NULL;
    bl_tensor *rm = bl_tensor_alloc("running_mean", 1, BL_SHAPE(C), 0);
    bl_tensor *rv = bl_tensor_alloc("running_var", 1, BL_SHAPE(C), 0);
    for (int c = 0; c < C; c++) {
        rm->data[c] = (bl_real)(0.3 * urand());
        rv->data[c] = (bl_real)(1 + 0.5 * urand());
    }
    double *rm0 = to_double(rm->data, C), *rv0 = to_double(rv->data, C);
    const double momentum = 0.1, eps = 1e-5;
    bl_tensor *y = bl_batchnorm(ctx, x, w, bias, rm, rv, momentum, eps, training);
    bl_tensor *g = rand_tensor(ctx, ndim, shape, 1, 0, 0);
    bl_backward(ctx, dot_loss(ctx, y, g->data));
    double *yr = bl_malloc((size_t)x->numel * sizeof *yr), *dx = bl_malloc((size_t)x->numel * sizeof *dx);
    double *dw = bl_malloc((size_t)C * sizeof *dw), *db = bl_malloc((size_t)C * sizeof *db);
    double *bm = bl_malloc((size_t)C * sizeof *bm), *bv = bl_malloc((size_t)C * sizeof *bv);
    naive_batchnorm(x->data, w ? w->data : NULL, bias ? bias->data : NULL, rm0, rv0, g->data, B, C, S,
                    eps, training, yr, dx, dw, db, bm, bv);
    assert_close("bn y", y->data, yr, x->numel, 1e-5);
    assert_close("bn dx", x->grad, dx, x->numel, 2e-5);
    if (affine) {
        assert_close("bn dw", w->grad, dw, C, 1e-5);
        assert_close("bn db", bias->grad, db, C, 1e-5);
    }
    for (int c = 0; c < C; c++) {
        const double em = training ? 0.9 * rm0[c] + 0.1 * bm[c] : rm0[c];
        const double ev = training ? 0.9 * rv0[c] + 0.1 * bv[c] : rv0[c];
        ck_assert_double_eq_tol(rm->data[c], em, 1e-5 * (1 + fabs(em)));
        ck_assert_double_eq_tol(rv->data[c], ev, 1e-5 * (1 + fabs(ev)));
    }
    free(rm0), free(rv0), free(yr), free(dx), free(dw), free(db), free(bm), free(bv);
    bl_tensor_free(rm);
    bl_tensor_free(rv);
    bl_ctx_free(ctx);
}

START_TEST(test_batchnorm_vs_naive)
{
    lcg_state = 99;
    for (int training = 0; training < 2; training++)
        for (int affine = 0; affine < 2; affine++) {
            run_bn_case(4, BL_SHAPE(3, 5, 7, 9), training, affine);
            run_bn_case(5, BL_SHAPE(2, 4, 1, 6, 5), training, affine); /* BatchNorm3d after conv3d */
            run_bn_case(2, BL_SHAPE(6, 3), training, affine);          /* BatchNorm1d */
            run_bn_case(4, BL_SHAPE(4, 70, 16, 16), training, affine); /* multi-threaded path */
        }
}
END_TEST

START_TEST(test_batchnorm_running_stats_by_hand)
{
    /* x (4, 2): channel 0 = {1, 2, 3, 4} then {2, 4, 6, 8}; channel 1 = {-1, 1, -1, 1} then
     * {0, 0, 0, 3}. Batch means 2.5 / 5 and 0 / 0.75, unbiased variances 5/3 / 20/3 and 4/3 / 2.25.
     * Starting from running_mean 0, running_var 1:
     * momentum 0.1:  rm0 = 0.25 -> 0.9 * 0.25 + 0.5 = 0.725
     *                rv0 = 0.9 + 1/6 = 1.0666667 -> 0.96 + 2/3 = 1.6266667
     *                rm1 = 0 -> 0.075;  rv1 = 0.9 + 0.4/3 = 1.0333333 -> 0.93 + 0.225 = 1.155
     * momentum 0.03: rm0 = 0.075 -> 0.07275 + 0.15 = 0.22275
     *                rv0 = 0.97 + 0.05 = 1.02 -> 0.9894 + 0.2 = 1.1894
     *                rm1 = 0 -> 0.0225;  rv1 = 0.97 + 0.04 = 1.01 -> 0.9797 + 0.0675 = 1.0472 */
    static const bl_real steps[2][8] = {{1, -1, 2, 1, 3, -1, 4, 1}, {2, 0, 4, 0, 6, 0, 8, 3}};
    static const double momenta[2] = {0.1, 0.03};
    static const double expect[2][4] = {{0.725, 1.6266666666666667, 0.075, 1.155},
                                        {0.22275, 1.1894, 0.0225, 1.0472}};
    for (int mi = 0; mi < 2; mi++) {
        bl_ctx *ctx = bl_ctx_alloc(0);
        bl_tensor *rm = bl_tensor_alloc("rm", 1, BL_SHAPE(2), 0);
        bl_tensor *rv = bl_tensor_alloc("rv", 1, BL_SHAPE(2), 0);
        bl_tensor_fill(rv, 1);
        for (int s = 0; s < 2; s++) {
            bl_tensor *x = bl_from_data(ctx, 2, BL_SHAPE(4, 2), steps[s]);
            bl_tensor *y = bl_batchnorm(ctx, x, NULL, NULL, rm, rv, momenta[mi], 1e-5, 1);
            if (s == 0) {
                /* channel 0: (x - 2.5) / sqrt(1.25 + 1e-5) */
                for (int b = 0; b < 4; b++)
                    ck_assert_double_eq_tol(y->data[2 * b], (b + 1 - 2.5) / sqrt(1.25 + 1e-5), 1e-6);
                /* channel 1: +-1 / sqrt(1 + 1e-5) */
                ck_assert_double_eq_tol(y->data[1], -1 / sqrt(1 + 1e-5), 1e-6);
            }
        }
        ck_assert_double_eq_tol(rm->data[0], expect[mi][0], 1e-6);
        ck_assert_double_eq_tol(rv->data[0], expect[mi][1], 1e-6);
        ck_assert_double_eq_tol(rm->data[1], expect[mi][2], 1e-6);
        ck_assert_double_eq_tol(rv->data[1], expect[mi][3], 1e-6);
        /* eval uses the running statistics and leaves them alone */
        bl_tensor *x = bl_from_data(ctx, 2, BL_SHAPE(4, 2), steps[0]);
        bl_tensor *y = bl_batchnorm(ctx, x, NULL, NULL, rm, rv, momenta[mi], 1e-5, 0);
        ck_assert_double_eq_tol(y->data[0], (1 - expect[mi][0]) / sqrt(expect[mi][1] + 1e-5), 1e-6);
        ck_assert_double_eq_tol(rm->data[0], expect[mi][0], 1e-6);
        bl_tensor_free(rm);
        bl_tensor_free(rv);
        bl_ctx_free(ctx);
    }
}
END_TEST

/* dX of bl_batchnorm / bl_batchnorm_silu is stored when x has no gradient yet and added
 * otherwise: with x's gradient preset to 1 the result is 1 + the fresh one. */
START_TEST(test_batchnorm_dx_fresh_and_accumulated)
{
    lcg_state = 321;
    for (int silu = 0; silu < 2; silu++) {
        bl_ctx *ctx = bl_ctx_alloc(0);
        dirty_arena(ctx);
        const int64_t *shape = BL_SHAPE(3, 40, 17, 19); /* > 32768 elements: threaded */
        bl_tensor *x0 = rand_tensor(ctx, 4, shape, 3, 0.5, 0);
        bl_tensor *g = rand_tensor(ctx, 4, shape, 1, 0, 0);
        bl_tensor *x[2];
        for (int k = 0; k < 2; k++) {
            x[k] = bl_from_data(ctx, 4, shape, x0->data);
            x[k]->requires_grad = 1;
        }
        bl_real *pre = bl_grad(ctx, x[1]);
        for (int64_t i = 0; i < x[1]->numel; i++) pre[i] = 1;
        bl_tensor *y[2];
        for (int k = 0; k < 2; k++)
            y[k] = silu ? bl_batchnorm_silu(ctx, x[k], NULL, NULL, NULL, NULL, 0.1, 1e-5, 1)
                        : bl_batchnorm(ctx, x[k], NULL, NULL, NULL, NULL, 0.1, 1e-5, 1);
        bl_backward(ctx, bl_add(ctx, dot_loss(ctx, y[0], g->data), dot_loss(ctx, y[1], g->data)));
        double *expect = bl_malloc((size_t)x[0]->numel * sizeof *expect);
        double norm = 0;
        for (int64_t i = 0; i < x[0]->numel; i++) {
            expect[i] = 1 + (double)x[0]->grad[i];
            norm += fabs((double)x[0]->grad[i]);
        }
        ck_assert(norm > 1); /* the fresh gradient is not all zero */
        assert_close(silu ? "silu dx accumulated" : "bn dx accumulated", x[1]->grad, expect,
                     x[0]->numel, 1e-6);
        free(expect);
        bl_ctx_free(ctx);
    }
}
END_TEST

/* bl_batchnorm_silu against bl_silu(bl_batchnorm(...)): values, gradients, running stats */
START_TEST(test_batchnorm_silu_matches_unfused)
{
    lcg_state = 123;
    for (int training = 0; training < 2; training++) {
        bl_ctx *ctx = bl_ctx_alloc(0);
        const int64_t *shape = BL_SHAPE(3, 40, 17, 19); /* > 32768 elements: threaded */
        bl_tensor *x[2], *w[2], *b[2], *y[2], *rm[2], *rv[2];
        bl_tensor *x0 = rand_tensor(ctx, 4, shape, 3, 0.5, 1);
        bl_tensor *w0 = rand_tensor(ctx, 1, BL_SHAPE(40), 0.5, 1, 1);
        bl_tensor *b0 = rand_tensor(ctx, 1, BL_SHAPE(40), 1, 0, 1);
        bl_tensor *g = rand_tensor(ctx, 4, shape, 1, 0, 0);
        for (int k = 0; k < 2; k++) {
            x[k] = bl_from_data(ctx, 4, shape, x0->data);
            w[k] = bl_from_data(ctx, 1, BL_SHAPE(40), w0->data);
            b[k] = bl_from_data(ctx, 1, BL_SHAPE(40), b0->data);
            x[k]->requires_grad = w[k]->requires_grad = b[k]->requires_grad = 1;
            rm[k] = bl_tensor_alloc("rm", 1, BL_SHAPE(40), 0);
            rv[k] = bl_tensor_alloc("rv", 1, BL_SHAPE(40), 0);
            bl_tensor_fill(rm[k], 0.25);
            bl_tensor_fill(rv[k], 2);
        }
        y[0] = bl_silu(ctx, bl_batchnorm(ctx, x[0], w[0], b[0], rm[0], rv[0], 0.03, 1e-3, training));
        y[1] = bl_batchnorm_silu(ctx, x[1], w[1], b[1], rm[1], rv[1], 0.03, 1e-3, training);
        bl_backward(ctx, bl_add(ctx, dot_loss(ctx, y[0], g->data), dot_loss(ctx, y[1], g->data)));
        double *ref;
#define SAME(what, a, bb, n) \
    (ref = to_double((bb), (n)), assert_close(what, (a), ref, (n), 1e-5), free(ref))
        SAME("fused y", y[1]->data, y[0]->data, y[0]->numel);
        SAME("fused dx", x[1]->grad, x[0]->grad, x[0]->numel);
        SAME("fused dw", w[1]->grad, w[0]->grad, 40);
        SAME("fused db", b[1]->grad, b[0]->grad, 40);
        SAME("fused running_mean", rm[1]->data, rm[0]->data, 40);
        SAME("fused running_var", rv[1]->data, rv[0]->data, 40);
#undef SAME
        for (int k = 0; k < 2; k++) {
            bl_tensor_free(rm[k]);
            bl_tensor_free(rv[k]);
        }
        bl_ctx_free(ctx);
    }
}
END_TEST

/* The fused op's SiLU far out in both tails and at 0 (eval mode, running stats (0, 1), so
 * z = x up to invstd = 1/sqrt(1 + eps)): silu(z) = z / (1 + e^-z) and its derivative */
START_TEST(test_batchnorm_silu_tails)
{
    static const bl_real xs[] = {-1e30f, -1e4f, -100, -88.5f, -87.5f, -30, -20.25f, -3, -1, -1e-3f, 0,
                                 1e-3f, 0.5f, 1, 3, 15, 20.25f, 30, 87.5f, 88.5f, 100, 1e4f, 1e30f};
    const int n = (int)(sizeof xs / sizeof xs[0]);
    bl_ctx *ctx = bl_ctx_alloc(0);
    bl_tensor *x = bl_from_data(ctx, 2, BL_SHAPE(n, 1), xs);
    x->requires_grad = 1;
    bl_tensor *rm = bl_tensor_alloc("rm", 1, BL_SHAPE(1), 0), *rv = bl_tensor_alloc("rv", 1, BL_SHAPE(1), 0);
    bl_tensor_fill(rv, 1);
    bl_tensor *y = bl_batchnorm_silu(ctx, x, NULL, NULL, rm, rv, 0.1, 1e-5, 0);
    bl_tensor *g = bl_full(ctx, 2, BL_SHAPE(n, 1), 1);
    bl_backward(ctx, dot_loss(ctx, y, g->data));
    const double inv = 1 / sqrt(1 + 1e-5);
    for (int i = 0; i < n; i++) {
        const double z = xs[i] * inv, s = 1 / (1 + exp(-z));
        const double ey = z * s, ed = inv * s * (1 + z * (1 - s));
        ck_assert_msg(fabs(y->data[i] - ey) <= 1e-6 * fabs(ey) + 1e-30, "silu(%g) = %.9g, expected %.9g",
                      z, (double)y->data[i], ey);
        ck_assert_msg(fabs(x->grad[i] - ed) <= 1e-6 * fabs(ed) + 1e-6 * fabs(z) * s * (1 - s) + 1e-30,
                      "silu'(%g) = %.9g, expected %.9g", z, (double)x->grad[i], ed);
    }
    bl_tensor_free(rm);
    bl_tensor_free(rv);
    bl_ctx_free(ctx);
}
END_TEST

/* ---- upsample ---- */

START_TEST(test_upsample2x)
{
    bl_ctx *ctx = bl_ctx_alloc(0);
    lcg_state = 5;
    const int P = 6, H = 3, W = 5; /* x (2, 3, H, W) */
    bl_tensor *x = rand_tensor(ctx, 4, BL_SHAPE(2, 3, H, W), 1, 0, 1);
    bl_tensor *y = bl_upsample2x(ctx, x);
    ck_assert(y->ndim == 4 && y->shape[0] == 2 && y->shape[1] == 3 && y->shape[2] == 2 * H &&
              y->shape[3] == 2 * W);
    bl_tensor *g = rand_tensor(ctx, 4, y->shape, 1, 0, 0);
    bl_backward(ctx, dot_loss(ctx, y, g->data));
    for (int p = 0; p < P; p++)
        for (int i = 0; i < 2 * H; i++)
            for (int j = 0; j < 2 * W; j++)
                ck_assert(y->data[(p * 2 * H + i) * 2 * W + j] == x->data[(p * H + i / 2) * W + j / 2]);
    double *dx = bl_calloc((size_t)x->numel, sizeof *dx);
    for (int p = 0; p < P; p++)
        for (int i = 0; i < 2 * H; i++)
            for (int j = 0; j < 2 * W; j++)
                dx[(p * H + i / 2) * W + j / 2] += g->data[(p * 2 * H + i) * 2 * W + j];
    assert_close("upsample dx", x->grad, dx, x->numel, 1e-6);
    free(dx);
    bl_ctx_free(ctx);
}
END_TEST

/* ---- PyTorch references ---- */

typedef struct ref_tensor {
    char name[64];
    int ndim;
    int64_t shape[BL_MAX_DIMS];
    int64_t numel;
    double *v;
} ref_tensor;

static ref_tensor *refs;
static int n_refs;

static void refs_load(void)
{
    if (refs) return;
    const char *path = BL_TEST_DATA_DIR "/torch_refs.txt";
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    int cap = 0;
    char name[64];
    int c;
    while ((c = fgetc(f)) != EOF) {
        if (c == '#') {
            while ((c = fgetc(f)) != EOF && c != '\n') {}
            continue;
        }
        if (c == '\n') continue;
        ungetc(c, f);
        ref_tensor r = {0};
        ck_assert_int_eq(fscanf(f, "%63s %d", name, &r.ndim), 2);
        ck_assert(r.ndim >= 0 && r.ndim <= BL_MAX_DIMS);
        snprintf(r.name, sizeof r.name, "%s", name);
        r.numel = 1;
        for (int i = 0; i < r.ndim; i++) {
            long long d;
            ck_assert_int_eq(fscanf(f, "%lld", &d), 1);
            r.shape[i] = d;
            r.numel *= d;
        }
        r.v = bl_malloc((size_t)r.numel * sizeof *r.v);
        for (int64_t i = 0; i < r.numel; i++) ck_assert_int_eq(fscanf(f, "%lf", &r.v[i]), 1);
        if (n_refs == cap) {
            cap = cap ? 2 * cap : 64;
            refs = bl_realloc(refs, (size_t)cap * sizeof *refs);
        }
        refs[n_refs++] = r;
    }
    fclose(f);
}

static void refs_free(void)
{
    for (int i = 0; i < n_refs; i++) free(refs[i].v);
    free(refs);
    refs = NULL;
    n_refs = 0;
}

static const ref_tensor *ref(const char *name)
{
    refs_load();
    for (int i = 0; i < n_refs; i++)
        if (!strcmp(refs[i].name, name)) return &refs[i];
    ck_abort_msg("no reference tensor %s in torch_refs.txt", name);
    return NULL;
}

/* per-step tensor holding a reference tensor's values */
static bl_tensor *ref_tensor_new(bl_ctx *ctx, const char *name, int requires_grad)
{
    const ref_tensor *r = ref(name);
    bl_tensor *t = bl_new(ctx, r->ndim, r->shape);
    for (int64_t i = 0; i < r->numel; i++) t->data[i] = (bl_real)r->v[i];
    t->requires_grad = requires_grad;
    return t;
}

static void assert_ref(const char *name, const bl_real *a, int64_t n)
{
    const ref_tensor *r = ref(name);
    ck_assert_msg(r->numel == n, "%s: %lld values, reference has %lld", name, (long long)n,
                  (long long)r->numel);
    assert_close(name, a, r->v, n, 1e-4);
}

static void check_torch_conv(const char *prefix, int stride, int pad, int has_bias, int is3d)
{
    char nm[96];
    bl_ctx *ctx = bl_ctx_alloc(0);
#define NM(s) (snprintf(nm, sizeof nm, "%s.%s", prefix, s), nm)
    bl_tensor *x = ref_tensor_new(ctx, NM("x"), 1);
    bl_tensor *w = ref_tensor_new(ctx, NM("w"), 1);
    bl_tensor *b = has_bias ? ref_tensor_new(ctx, NM("b"), 1) : NULL;
    bl_tensor *g = ref_tensor_new(ctx, NM("g"), 0);
    bl_tensor *y = is3d ? bl_conv3d_depth(ctx, x, w, b, pad) : bl_conv2d(ctx, x, w, b, stride, pad);
    ck_assert_int_eq(y->numel, g->numel);
    bl_backward(ctx, dot_loss(ctx, y, g->data));
    assert_ref(NM("y"), y->data, y->numel);
    assert_ref(NM("dx"), x->grad, x->numel);
    assert_ref(NM("dw"), w->grad, w->numel);
    if (b) assert_ref(NM("db"), b->grad, b->numel);
#undef NM
    bl_ctx_free(ctx);
}

START_TEST(test_torch_conv)
{
    check_torch_conv("conv_s2p1", 2, 1, 1, 0);
    check_torch_conv("conv_k5p2", 1, 2, 0, 0);
    check_torch_conv("conv_k5p2b", 1, 2, 1, 0);
    check_torch_conv("conv3d", 1, 2, 1, 1);
}
END_TEST

START_TEST(test_torch_batchnorm)
{
    bl_ctx *ctx = bl_ctx_alloc(0);
    bl_tensor *w = ref_tensor_new(ctx, "bn.w", 1), *b = ref_tensor_new(ctx, "bn.b", 1);
    bl_tensor *rm = bl_tensor_alloc("running_mean", 1, BL_SHAPE(4), 0);
    bl_tensor *rv = bl_tensor_alloc("running_var", 1, BL_SHAPE(4), 0);
    for (int c = 0; c < 4; c++) {
        rm->data[c] = (bl_real)ref("bn.rm0")->v[c];
        rv->data[c] = (bl_real)ref("bn.rv0")->v[c];
    }
    bl_tensor *x = ref_tensor_new(ctx, "bn.train.x", 1), *g = ref_tensor_new(ctx, "bn.train.g", 0);
    bl_tensor *y = bl_batchnorm(ctx, x, w, b, rm, rv, 0.1, 1e-5, 1);
    bl_backward(ctx, dot_loss(ctx, y, g->data));
    assert_ref("bn.train.y", y->data, y->numel);
    assert_ref("bn.train.dx", x->grad, x->numel);
    assert_ref("bn.train.dw", w->grad, 4);
    assert_ref("bn.train.db", b->grad, 4);
    assert_ref("bn.train.rm1", rm->data, 4);
    assert_ref("bn.train.rv1", rv->data, 4);
    /* a new step: the tape of the training step must not run again */
    bl_ctx_reset(ctx);
    w = ref_tensor_new(ctx, "bn.w", 1);
    b = ref_tensor_new(ctx, "bn.b", 1);
    x = ref_tensor_new(ctx, "bn.eval.x", 1);
    g = ref_tensor_new(ctx, "bn.eval.g", 0);
    y = bl_batchnorm(ctx, x, w, b, rm, rv, 0.1, 1e-5, 0);
    bl_backward(ctx, dot_loss(ctx, y, g->data));
    assert_ref("bn.eval.y", y->data, y->numel);
    assert_ref("bn.eval.dx", x->grad, x->numel);
    assert_ref("bn.eval.dw", w->grad, 4);
    assert_ref("bn.eval.db", b->grad, 4);
    assert_ref("bn.train.rm1", rm->data, 4); /* eval leaves the running statistics alone */
    bl_tensor_free(rm);
    bl_tensor_free(rv);
    bl_ctx_free(ctx);
}
END_TEST

START_TEST(test_torch_silu)
{
    bl_ctx *ctx = bl_ctx_alloc(0);
    bl_tensor *x = ref_tensor_new(ctx, "silu.x", 1), *g = ref_tensor_new(ctx, "silu.g", 0);
    bl_tensor *y = bl_silu(ctx, x);
    bl_backward(ctx, dot_loss(ctx, y, g->data));
    assert_ref("silu.y", y->data, y->numel);
    assert_ref("silu.dx", x->grad, x->numel);
    bl_ctx_free(ctx);
}
END_TEST

START_TEST(test_torch_conv_block)
{
    /* ConvBlock = Conv2d(3, 5, k3, s1, p1, no bias) -> BatchNorm2d(eps 1e-3, momentum 0.03)
     * -> SiLU, training mode, running statistics starting at (0, 1); _i = 1: the fused
     * bl_batchnorm_silu */
    bl_ctx *ctx = bl_ctx_alloc(0);
    bl_tensor *x = ref_tensor_new(ctx, "block.x", 1), *w = ref_tensor_new(ctx, "block.w", 1);
    bl_tensor *bnw = ref_tensor_new(ctx, "block.bnw", 1), *bnb = ref_tensor_new(ctx, "block.bnb", 1);
    bl_tensor *g = ref_tensor_new(ctx, "block.g", 0);
    bl_tensor *rm = bl_tensor_alloc("running_mean", 1, BL_SHAPE(5), 0);
    bl_tensor *rv = bl_tensor_alloc("running_var", 1, BL_SHAPE(5), 0);
    bl_tensor_fill(rv, 1);
    bl_tensor *h = bl_conv2d(ctx, x, w, NULL, 1, 1);
    bl_tensor *y = _i ? bl_batchnorm_silu(ctx, h, bnw, bnb, rm, rv, 0.03, 1e-3, 1)
                      : bl_silu(ctx, bl_batchnorm(ctx, h, bnw, bnb, rm, rv, 0.03, 1e-3, 1));
    bl_backward(ctx, dot_loss(ctx, y, g->data));
    assert_ref("block.y", y->data, y->numel);
    assert_ref("block.dx", x->grad, x->numel);
    assert_ref("block.dw", w->grad, w->numel);
    assert_ref("block.dbnw", bnw->grad, 5);
    assert_ref("block.dbnb", bnb->grad, 5);
    assert_ref("block.rm", rm->data, 5);
    assert_ref("block.rv", rv->data, 5);
    bl_tensor_free(rm);
    bl_tensor_free(rv);
    bl_ctx_free(ctx);
}
END_TEST

static Suite *conv_suite(void)
{
    Suite *s = suite_create("conv");
    TCase *tc = tcase_create("naive");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_conv2d_vs_naive, 0, (int)(sizeof conv_cases / sizeof conv_cases[0]));
    tcase_add_test(tc, test_conv2d_data_input_gets_no_gradient);
    tcase_add_test(tc, test_conv3d_depth_vs_naive);
    tcase_add_test(tc, test_conv_engine_selection);
#ifdef BL_CONV_HAVE_ONEDNN
    const int n_big = (int)(sizeof big_cases / sizeof big_cases[0]);
    tcase_add_loop_test(tc, test_conv_onednn_matches_im2col, 0, n_big);
    tcase_add_loop_test(tc, test_conv_onednn_reproducible, 0, n_big);
    tcase_add_test(tc, test_conv_onednn_thread_count_change);
#endif
    tcase_add_test(tc, test_batchnorm_vs_naive);
    tcase_add_test(tc, test_batchnorm_running_stats_by_hand);
    tcase_add_test(tc, test_batchnorm_silu_matches_unfused);
    tcase_add_test(tc, test_batchnorm_dx_fresh_and_accumulated);
    tcase_add_test(tc, test_batchnorm_silu_tails);
    tcase_add_test(tc, test_upsample2x);
    suite_add_tcase(s, tc);
    TCase *tt = tcase_create("torch");
    tcase_add_test(tt, test_torch_conv);
    tcase_add_test(tt, test_torch_batchnorm);
    tcase_add_test(tt, test_torch_silu);
    tcase_add_loop_test(tt, test_torch_conv_block, 0, 2);
    tcase_add_unchecked_fixture(tt, NULL, refs_free);
    suite_add_tcase(s, tt);
    return s;
}

int main(void) { return bl_check_run(conv_suite()); }
