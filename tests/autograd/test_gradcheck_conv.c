/* Finite-difference gradient checks of the network ops (double build): conv2d with and
 * without bias over strides, paddings, kernel sizes and odd spatial sizes, also with the GEMM
 * chunking forced to one output row per chunk and to multi-image chunks; conv3d_depth;
 * batchnorm and batchnorm_silu in training and eval mode w.r.t. x, weight and bias (2-D, 4-D
 * and 5-D inputs); upsample2x; and a chain conv -> batchnorm_silu -> upsample -> conv. */
#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "autograd/conv_kernels.h"
#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "lib/rng.h"
#include "tests/bl_check.h"

#ifndef BL_REAL_DOUBLE
#error "gradient checks need the double build (link bliss_f64_dep)"
#endif

static bl_tensor *input(int ndim, const int64_t *shape, double lo, double hi, uint64_t stream)
{
    bl_tensor *t = bl_tensor_alloc(NULL, ndim, shape, 1);
    bl_rng *rng = bl_rng_alloc(4242, stream);
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = lo + (hi - lo) * bl_rng_uniform(rng);
    bl_rng_free(rng);
    return t;
}

static void check(const char *name, bl_gradcheck_fn *fn, int n, bl_tensor **in, void *user)
{
    bl_gradcheck_result res;
    const int ok = bl_gradcheck(name, fn, n, in, user, NULL, &res);
    ck_assert_msg(ok && res.skipped == 0 && res.checked > 0,
                  "%s: checked %d, failed %d, skipped %d, max abs err %g", name, res.checked,
                  res.failed, res.skipped, res.max_abs_err);
}

/* ---- conv2d ---- */

typedef struct conv_args {
    int stride, pad;
} conv_args;

static bl_tensor *f_conv2d(bl_ctx *ctx, bl_tensor *const *in, void *user)
{
    const conv_args *a = user;
    return bl_conv2d(ctx, in[0], in[1], NULL, a->stride, a->pad);
}

static bl_tensor *f_conv2d_bias(bl_ctx *ctx, bl_tensor *const *in, void *user)
{
    const conv_args *a = user;
    return bl_conv2d(ctx, in[0], in[1], in[2], a->stride, a->pad);
}

typedef struct conv_case {
    int B, C, H, W, M, kh, kw, stride, pad, bias;
} conv_case;

static const conv_case conv_cases[] = {
    {2, 3, 5, 7, 4, 3, 3, 1, 1, 1},
    {2, 3, 5, 7, 4, 3, 3, 1, 1, 0},
    {1, 2, 7, 6, 3, 3, 3, 2, 1, 1},
    {2, 2, 6, 5, 3, 5, 5, 1, 2, 0},
    {1, 2, 7, 7, 2, 5, 5, 2, 2, 1},
    {2, 4, 3, 5, 3, 1, 1, 1, 0, 1}, /* 1x1: no im2col */
    {1, 3, 6, 7, 2, 1, 1, 2, 0, 0}, /* 1x1 stride 2 */
    {1, 2, 4, 5, 3, 3, 3, 1, 0, 1}, /* no padding */
    {2, 2, 4, 4, 2, 3, 3, 1, 2, 0}, /* pad > k - 1 */
    {1, 2, 5, 6, 2, 2, 3, 1, 1, 1}, /* rectangular kernel */
    {3, 2, 5, 5, 3, 3, 3, 3, 1, 1}, /* stride 3 */
};

/* layout 0: default chunks; 1: one output row per chunk; 2: two images per chunk; 3: one row
 * per chunk with the stride-1 forward and dW GEMMs split by vertical taps */
static void run_conv_case(const conv_case *cc, int layout, uint64_t stream)
{
    const bl_conv_tuning saved = bl_conv_get_tuning();
    if (layout == 1) bl_conv_set_tuning((bl_conv_tuning){.col_bytes = 1, .min_cols = 1});
    if (layout == 2) bl_conv_set_tuning((bl_conv_tuning){.col_bytes = 1, .min_cols = 2 * cc->H * cc->W});
    if (layout == 3) bl_conv_set_tuning((bl_conv_tuning){.col_bytes = 1, .min_cols = 1, .taps_min_k = 1});
    bl_tensor *in[3] = {
        input(4, BL_SHAPE(cc->B, cc->C, cc->H, cc->W), -1, 1, stream),
        input(4, BL_SHAPE(cc->M, cc->C, cc->kh, cc->kw), -1, 1, stream + 1),
        input(1, BL_SHAPE(cc->M), -1, 1, stream + 2),
    };
    conv_args a = {cc->stride, cc->pad};
    char name[96];
    snprintf(name, sizeof name, "conv2d B%d C%d %dx%d M%d k%dx%d s%d p%d bias%d layout%d", cc->B,
             cc->C, cc->H, cc->W, cc->M, cc->kh, cc->kw, cc->stride, cc->pad, cc->bias, layout);
    check(name, cc->bias ? f_conv2d_bias : f_conv2d, cc->bias ? 3 : 2, in, &a);
    for (int k = 0; k < 3; k++) bl_tensor_free(in[k]);
    bl_conv_set_tuning(saved);
}

START_TEST(test_gradcheck_conv2d)
{
    for (int layout = 0; layout < 4; layout++) run_conv_case(&conv_cases[_i], layout, 10 * (uint64_t)_i);
}
END_TEST

START_TEST(test_gradcheck_conv2d_data_input)
{
    /* x requires no gradient (the first layer's data): only w and bias are checked */
    bl_tensor *in[3] = {input(4, BL_SHAPE(2, 2, 5, 4), -1, 1, 1), input(4, BL_SHAPE(3, 2, 3, 3), -1, 1, 2),
                        input(1, BL_SHAPE(3), -1, 1, 3)};
    in[0]->requires_grad = 0;
    conv_args a = {1, 1};
    check("conv2d data input", f_conv2d_bias, 3, in, &a);
    for (int k = 0; k < 3; k++) bl_tensor_free(in[k]);
}
END_TEST

/* ---- conv3d_depth ---- */

static bl_tensor *f_conv3d(bl_ctx *ctx, bl_tensor *const *in, void *user)
{
    return bl_conv3d_depth(ctx, in[0], in[1], in[2], *(const int *)user);
}

START_TEST(test_gradcheck_conv3d_depth)
{
    for (int pad = 0; pad <= 2; pad++) {
        bl_tensor *in[3] = {input(5, BL_SHAPE(2, 2, 3, 5, 4), -1, 1, 20),
                            input(5, BL_SHAPE(3, 2, 3, 3, 3), -1, 1, 21), input(1, BL_SHAPE(3), -1, 1, 22)};
        check("conv3d_depth", f_conv3d, 3, in, &pad);
        for (int k = 0; k < 3; k++) bl_tensor_free(in[k]);
    }
}
END_TEST

/* ---- batchnorm ---- */

typedef struct bn_args {
    bl_tensor *running_mean, *running_var;
    double momentum, eps;
    int training, affine, silu;
} bn_args;

static bl_tensor *f_batchnorm(bl_ctx *ctx, bl_tensor *const *in, void *user)
{
    const bn_args *a = user;
    return (a->silu ? bl_batchnorm_silu : bl_batchnorm)(ctx, in[0], a->affine ? in[1] : NULL,
                                                       a->affine ? in[2] : NULL, a->running_mean,
                                                       a->running_var, a->momentum, a->eps,
                                                       a->training);
}

static void run_bn_case(int ndim, const int64_t *shape, int training, int affine, int silu,
                        uint64_t stream)
{
    const int64_t C = shape[1];
    bl_tensor *in[3] = {input(ndim, shape, -2, 3, stream), input(1, BL_SHAPE(C), 0.5, 1.5, stream + 1),
                        input(1, BL_SHAPE(C), -1, 1, stream + 2)};
    /* training mode updates the running statistics on every evaluation; the output does not
     * depend on them, so the finite differences are unaffected */
    bn_args a = {input(1, BL_SHAPE(C), -0.5, 0.5, stream + 3), input(1, BL_SHAPE(C), 0.5, 2, stream + 4),
                 0.1, 1e-5, training, affine, silu};
    a.running_mean->requires_grad = a.running_var->requires_grad = 0;
    char name[64];
    snprintf(name, sizeof name, "batchnorm%s %dD training%d affine%d", silu ? "_silu" : "", ndim,
             training, affine);
    check(name, f_batchnorm, affine ? 3 : 1, in, &a);
    for (int k = 0; k < 3; k++) bl_tensor_free(in[k]);
    bl_tensor_free(a.running_mean);
    bl_tensor_free(a.running_var);
}

START_TEST(test_gradcheck_batchnorm)
{
    uint64_t stream = 100;
    for (int silu = 0; silu < 2; silu++)
        for (int training = 0; training < 2; training++)
            for (int affine = 0; affine < 2; affine++) {
                run_bn_case(4, BL_SHAPE(3, 2, 3, 4), training, affine, silu, stream += 10);
                run_bn_case(5, BL_SHAPE(2, 3, 1, 2, 3), training, affine, silu, stream += 10);
                run_bn_case(2, BL_SHAPE(5, 3), training, affine, silu, stream += 10);
            }
}
END_TEST

/* ---- upsample and a chain ---- */

static bl_tensor *f_upsample(bl_ctx *ctx, bl_tensor *const *in, void *user)
{
    return bl_upsample2x(ctx, in[0]);
}

START_TEST(test_gradcheck_upsample2x)
{
    bl_tensor *x = input(4, BL_SHAPE(2, 3, 3, 5), -1, 1, 300);
    check("upsample2x", f_upsample, 1, &x, NULL);
    bl_tensor_free(x);
    x = input(3, BL_SHAPE(2, 1, 4), -1, 1, 301);
    check("upsample2x 3-D", f_upsample, 1, &x, NULL);
    bl_tensor_free(x);
}
END_TEST

/* conv (stride 2) -> batchnorm_silu (training) -> upsample -> conv: gradients flow through
 * every op's backward into the next */
static bl_tensor *f_chain(bl_ctx *ctx, bl_tensor *const *in, void *user)
{
    bn_args *a = user;
    bl_tensor *h = bl_conv2d(ctx, in[0], in[1], NULL, 2, 1);
    h = bl_batchnorm_silu(ctx, h, in[2], in[3], a->running_mean, a->running_var, 0.03, 1e-3, 1);
    h = bl_upsample2x(ctx, h);
    return bl_conv2d(ctx, h, in[4], NULL, 1, 1);
}

START_TEST(test_gradcheck_chain)
{
    bl_tensor *in[5] = {input(4, BL_SHAPE(2, 2, 6, 5), -1, 1, 400), input(4, BL_SHAPE(3, 2, 3, 3), -1, 1, 401),
                        input(1, BL_SHAPE(3), 0.5, 1.5, 402), input(1, BL_SHAPE(3), -1, 1, 403),
                        input(4, BL_SHAPE(2, 3, 3, 3), -1, 1, 404)};
    bn_args a = {bl_tensor_alloc(NULL, 1, BL_SHAPE(3), 0), bl_tensor_alloc(NULL, 1, BL_SHAPE(3), 0),
                 0.03, 1e-3, 1, 1, 0};
    bl_tensor_fill(a.running_var, 1);
    check("conv -> batchnorm_silu -> upsample -> conv", f_chain, 5, in, &a);
    for (int k = 0; k < 5; k++) bl_tensor_free(in[k]);
    bl_tensor_free(a.running_mean);
    bl_tensor_free(a.running_var);
}
END_TEST

static Suite *gradcheck_conv_suite(void)
{
    Suite *s = suite_create("gradcheck_conv");
    TCase *tc = tcase_create("ops");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, test_gradcheck_conv2d, 0, (int)(sizeof conv_cases / sizeof conv_cases[0]));
    tcase_add_test(tc, test_gradcheck_conv2d_data_input);
    tcase_add_test(tc, test_gradcheck_conv3d_depth);
    tcase_add_test(tc, test_gradcheck_batchnorm);
    tcase_add_test(tc, test_gradcheck_upsample2x);
    tcase_add_test(tc, test_gradcheck_chain);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bl_check_run(gradcheck_conv_suite()); }
