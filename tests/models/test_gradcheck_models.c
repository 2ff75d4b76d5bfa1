/* models: finite-difference gradient checks of the blocks and networks at tiny sizes, in
 * training mode (batch statistics in BatchNorm) and eval mode. Built with bl_real = double. */
#include <check.h>
#include <stdlib.h>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "models/layers.h"
#include "models/networks.h"
#include "tests/bl_check.h"

#ifndef BL_REAL_DOUBLE
#error "gradient checks need the double build (link bliss_f64_dep)"
#endif

typedef struct gc_case {
    int kind; /* 0 ConvBlock, 1 C3, 2 CatalogNet, 3 FeaturesNet, 4 ContextNet, 5 Bottleneck */
    int training;
    bl_conv_block cb;
    bl_bottleneck bt;
    bl_c3 c3;
    bl_catalog_net cat;
    bl_features_net feat;
    bl_context_net context;
} gc_case;

/* inputs[0] is the network input (inputs[1] the context for ContextNet); parameters are
 * reached through the layer structs, which point at the same tensors as the other inputs. */
static bl_tensor *gc_forward(bl_ctx *ctx, bl_tensor *const *in, void *user)
{
    gc_case *c = user;
    switch (c->kind) {
    case 0: return bl_conv_block_forward(ctx, &c->cb, in[0], c->training);
    case 1: return bl_c3_forward(ctx, &c->c3, in[0], c->training);
    case 2: return bl_catalog_net_forward(ctx, &c->cat, in[0], c->training);
    case 3: return bl_features_net_forward(ctx, &c->feat, in[0], c->training);
    case 4: return bl_context_net_forward(ctx, &c->context, in[0], in[1], c->training);
    default: return bl_bottleneck_forward(ctx, &c->bt, in[0], c->training);
    }
}

static bl_tensor *input(const char *name, int ndim, const int64_t *shape, unsigned seed)
{
    bl_tensor *t = bl_tensor_alloc(name, ndim, shape, 1);
    srand(seed);
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = 2.0 * rand() / RAND_MAX - 1;
    return t;
}

/* Perturb BatchNorm affine parameters and running statistics so that every term matters. */
static void perturb_bn(bl_params *p, unsigned seed)
{
    srand(seed);
    for (int i = 0; i < p->n; i++) {
        bl_tensor *t = p->t[i];
        if (t->ndim != 1) continue;
        for (int64_t k = 0; k < t->numel; k++) t->data[k] += 0.3 * (2.0 * rand() / RAND_MAX - 1) + (t->requires_grad ? 0 : 0.1);
    }
}

/* Check the input(s) and every trainable parameter; returns the number of checked elements. */
static int run_check(const char *name, gc_case *c, bl_params *p, int n_x, bl_tensor **x,
                     int max_elements, double atol, double rtol)
{
    bl_tensor *ins[1024];
    int n = 0;
    for (int i = 0; i < n_x; i++) ins[n++] = x[i];
    for (int i = 0; i < p->n; i++)
        if (p->t[i]->requires_grad) ins[n++] = p->t[i];
    ck_assert_int_lt(n, 1024);
    bl_gradcheck_opts o = bl_gradcheck_defaults();
    o.max_elements = max_elements;
    o.atol = atol;
    o.rtol = rtol;
    bl_gradcheck_result r;
    int ok = bl_gradcheck(name, gc_forward, n, ins, c, &o, &r);
    ck_assert_msg(ok, "%s: %d of %d elements failed (max abs err %g, max rel err %g)", name,
                  r.failed, r.checked, r.max_abs_err, r.max_rel_err);
    ck_assert_int_lt(r.skipped, r.checked / 10 + 1);
    return r.checked;
}

START_TEST(test_gradcheck_conv_block_bottleneck)
{
    for (int training = 0; training <= 1; training++) {
        bl_params *p = bl_params_alloc();
        bl_builder b = {p, 11};
        gc_case c = {.kind = 0, .training = training};
        bl_conv_block_init(&c.cb, &b, "cb", 3, 4, 3, 2, 1);
        perturb_bn(p, 1);
        bl_tensor *x = input("x", 4, BL_SHAPE(2, 3, 5, 6), 2);
        ck_assert_int_gt(run_check(training ? "ConvBlock/train" : "ConvBlock/eval", &c, p, 1, &x,
                                   0, 1e-6, 1e-5), 100);
        bl_tensor_free(x);
        bl_params_free(p);

        p = bl_params_alloc();
        b.params = p;
        c.kind = 5;
        bl_bottleneck_init(&c.bt, &b, "bt", 3, 3, 1, 1.0);
        ck_assert(c.bt.add);
        perturb_bn(p, 2);
        x = input("x", 4, BL_SHAPE(2, 3, 4, 4), 3);
        run_check("Bottleneck", &c, p, 1, &x, 0, 1e-6, 1e-5);
        bl_tensor_free(x);
        bl_params_free(p);
    }
}
END_TEST

START_TEST(test_gradcheck_c3)
{
    for (int training = 0; training <= 1; training++) {
        bl_params *p = bl_params_alloc();
        bl_builder b = {p, 12};
        gc_case c = {.kind = 1, .training = training};
        bl_c3_init(&c.c3, &b, "c3", 4, 4, 2, 1);
        perturb_bn(p, 3);
        bl_tensor *x = input("x", 4, BL_SHAPE(2, 4, 4, 3), 4);
        run_check(training ? "C3/train" : "C3/eval", &c, p, 1, &x, 0, 1e-6, 1e-5);
        bl_tensor_free(x);
        bl_params_free(p);
    }
}
END_TEST

static const bl_net_arch tiny = {.n_bands = 2, .ch_per_band = 2, .tile_slen = 4, .n_out = 3,
                                 .features_width = 2, .num_features = 4, .catalog_width = 4,
                                 .context_width = 2};

START_TEST(test_gradcheck_catalog_net)
{
    bl_params *p = bl_params_alloc();
    bl_builder b = {p, 13};
    gc_case c = {.kind = 2, .training = 1};
    bl_catalog_net_init(&c.cat, &b, "cat", 4, &tiny);
    perturb_bn(p, 4);
    bl_tensor *x = input("x", 4, BL_SHAPE(2, 4, 4, 4), 5);
    run_check("CatalogNet/train", &c, p, 1, &x, 6, 1e-6, 1e-4);
    c.training = 0;
    run_check("CatalogNet/eval", &c, p, 1, &x, 6, 1e-6, 1e-4);
    bl_tensor_free(x);
    bl_params_free(p);
}
END_TEST

START_TEST(test_gradcheck_features_and_context_net)
{
    bl_params *p = bl_params_alloc();
    bl_builder b = {p, 14};
    gc_case c = {.kind = 3, .training = 1};
    bl_features_net_init(&c.feat, &b, "f", &tiny);
    perturb_bn(p, 5);
    bl_tensor *x = input("x", 5, BL_SHAPE(2, 2, 2, 8, 8), 6);
    run_check("FeaturesNet/train", &c, p, 1, &x, 6, 1e-6, 1e-4);
    bl_tensor_free(x);
    bl_params_free(p);

    p = bl_params_alloc();
    b.params = p;
    c.kind = 4;
    bl_context_net_init(&c.context, &b, "ctx", &tiny);
    perturb_bn(p, 6);
    bl_tensor *xs[2] = {input("f", 4, BL_SHAPE(2, 4, 2, 4), 7), input("c", 4, BL_SHAPE(2, 2, 2, 4), 8)};
    run_check("ContextNet/train", &c, p, 2, xs, 6, 1e-6, 1e-4);
    bl_tensor_free(xs[0]);
    bl_tensor_free(xs[1]);
    bl_params_free(p);
}
END_TEST

static Suite *gradcheck_suite(void)
{
    Suite *s = suite_create("models_gradcheck");
    TCase *tc = tcase_create("gradcheck");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_gradcheck_conv_block_bottleneck);
    tcase_add_test(tc, test_gradcheck_c3);
    tcase_add_test(tc, test_gradcheck_catalog_net);
    tcase_add_test(tc, test_gradcheck_features_and_context_net);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bl_check_run(gradcheck_suite()); }
