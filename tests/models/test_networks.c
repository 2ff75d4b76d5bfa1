/* models: layer and network structure (state_dict names/shapes, counts, initialisation) and
 * the output shape of every block. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/ops.h"
#include "models/layers.h"
#include "models/networks.h"
#include "tests/bl_check.h"

#ifndef BL_TEST_DATA_DIR
#error "BL_TEST_DATA_DIR must name tests/data"
#endif

typedef struct sd_entry {
    char name[160];
    int ndim;
    int64_t shape[5];
    char dtype[16];
} sd_entry;

/* Reads "name (d0, d1, ...) dtype" lines of a state_dict listing; returns the count. */
static int read_listing(const char *path, sd_entry *e, int max)
{
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        ck_assert_int_lt(n, max);
        sd_entry *x = &e[n++];
        char *open = strchr(line, '('), *close = strchr(line, ')');
        ck_assert(open && close && open > line);
        size_t len = (size_t)(open - line - 1);
        memcpy(x->name, line, len);
        x->name[len] = 0;
        x->ndim = 0;
        for (char *p = open + 1; p < close;) {
            char *end;
            long long v = strtoll(p, &end, 10);
            if (end == p) break;
            x->shape[x->ndim++] = v;
            p = end;
            while (*p == ',' || *p == ' ') p++;
        }
        ck_assert_int_eq(sscanf(close + 1, "%15s", x->dtype), 1);
    }
    fclose(f);
    return n;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int64_t count_prefix(const bl_params *p, const char *prefix, int trainable)
{
    int64_t n = 0;
    for (int i = 0; i < p->n; i++)
        if (strncmp(p->t[i]->name, prefix, strlen(prefix)) == 0 && p->t[i]->requires_grad == trainable)
            n += p->t[i]->numel;
    return n;
}

START_TEST(test_state_dict_listing_p38)
{
    static sd_entry ref[600];
    int n = read_listing(BL_TEST_DATA_DIR "/state_dict_38.txt", ref, 600);
    ck_assert_int_eq(n, 527);

    bl_params *p = bl_params_alloc();
    bl_builder b = {p, 42};
    bl_net_arch arch = bl_net_arch_default(38);
    bl_encoder_nets nets;
    bl_encoder_nets_init(&nets, &b, &arch, 0);
    ck_assert_int_eq(p->n, 527);
    for (int i = 0; i < n; i++) {
        const bl_tensor *t = p->t[i];
        ck_assert_msg(strcmp(t->name, ref[i].name) == 0, "entry %d: '%s', expected '%s'", i,
                      t->name, ref[i].name);
        ck_assert_msg(t->ndim == ref[i].ndim, "%s: %d dims, expected %d", t->name, t->ndim,
                      ref[i].ndim);
        for (int d = 0; d < t->ndim; d++) ck_assert_int_eq(t->shape[d], ref[i].shape[d]);
        /* our storage keeps the int64 counter as a 0-dim bl_real without gradient */
        const int is_counter = strcmp(ref[i].dtype, "int64") == 0;
        ck_assert_int_eq(is_counter, ends_with(t->name, ".num_batches_tracked"));
        const int is_buffer = is_counter || ends_with(t->name, ".running_mean") ||
                              ends_with(t->name, ".running_var");
        ck_assert_int_eq(t->requires_grad, !is_buffer);
    }
    ck_assert_int_eq(bl_params_count_trainable(p), 13865740);
    ck_assert_int_eq(count_prefix(p, "", 0), 30423);
    ck_assert_int_eq(count_prefix(p, "features_net.", 1), 1668800);
    ck_assert_int_eq(count_prefix(p, "marginal_net.", 1), 5691942);
    ck_assert_int_eq(count_prefix(p, "checkerboard_net.", 1), 6504998);
    bl_params_free(p);
}
END_TEST

START_TEST(test_state_dict_p40_and_double_detect)
{
    bl_params *p = bl_params_alloc();
    bl_builder b = {p, 1};
    bl_net_arch arch = bl_net_arch_default(40);
    bl_encoder_nets nets;
    bl_encoder_nets_init(&nets, &b, &arch, 0);
    ck_assert_int_eq(p->n, 527);
    ck_assert_int_eq(bl_params_count_trainable(p), 13866768);
    /* only the four Detect tensors depend on P */
    ck_assert_int_eq(bl_params_find(p, "marginal_net.net_ml.6.conv.weight")->shape[0], 40);
    ck_assert_int_eq(bl_params_find(p, "checkerboard_net.catalog_net.net_ml.6.conv.bias")->shape[0], 40);
    bl_params_free(p);

    /* double detection adds a second CatalogNet: marginal_net's count again */
    p = bl_params_alloc();
    b.params = p;
    arch = bl_net_arch_default(38);
    bl_encoder_nets_init(&nets, &b, &arch, 1);
    ck_assert_int_eq(p->n, 527 + 212);
    ck_assert_int_eq(bl_params_count_trainable(p), 13865740 + 5691942);
    ck_assert_ptr_nonnull(bl_params_find(p, "second_net.net_ml.6.conv.bias"));
    bl_params_free(p);
}
END_TEST

START_TEST(test_initialisation_pytorch_defaults)
{
    bl_params *p = bl_params_alloc(), *q = bl_params_alloc(), *r = bl_params_alloc();
    bl_builder b = {p, 7}, c = {q, 7}, d = {r, 8};
    bl_net_arch arch = bl_net_arch_default(38);
    bl_features_net f1, f2, f3;
    bl_features_net_init(&f1, &b, "features_net", &arch);
    bl_features_net_init(&f2, &c, "features_net", &arch);
    bl_features_net_init(&f3, &d, "features_net", &arch);

    /* same seed: identical; other seed: different */
    for (int i = 0; i < p->n; i++)
        ck_assert(memcmp(p->t[i]->data, q->t[i]->data, (size_t)p->t[i]->numel * sizeof(bl_real)) == 0);
    ck_assert(f1.b3[0].weight->data[0] != f3.b3[0].weight->data[0]);

    /* conv weight (128, 128, 3, 3): U(-1/sqrt(1152), 1/sqrt(1152)); mean 0, variance bound^2/3 */
    const bl_tensor *w = f1.b3[0].weight;
    const double bound = 1 / sqrt(128.0 * 9);
    double s = 0, s2 = 0, mx = 0;
    for (int64_t i = 0; i < w->numel; i++) {
        s += w->data[i];
        s2 += (double)w->data[i] * w->data[i];
        mx = fmax(mx, fabs(w->data[i]));
    }
    const double n = (double)w->numel, var = s2 / n, v0 = bound * bound / 3;
    ck_assert(mx <= bound && mx > 0.999 * bound);
    ck_assert_msg(fabs(s / n) < 4 * sqrt(v0 / n), "mean %g", s / n);
    /* sd of the sample variance of a uniform: sqrt((E x^4 - v0^2)/n) = v0 sqrt(0.8/n) */
    ck_assert_msg(fabs(var - v0) < 5 * v0 * sqrt(0.8 / n), "var %g vs %g", var, v0);

    /* Conv3d weight and bias: fan_in = 5 * 6 * 5 * 5 = 750 */
    const double b3 = 1 / sqrt(750.0);
    double mb = 0;
    for (int i = 0; i < 64; i++) mb = fmax(mb, fabs(f1.conv3d_bias->data[i]));
    ck_assert(mb <= b3 && mb > 0.8 * b3);
    for (int64_t i = 0; i < f1.conv3d_weight->numel; i++)
        ck_assert(fabs(f1.conv3d_weight->data[i]) <= b3);

    /* BatchNorm: weight 1, bias 0, running_mean 0, running_var 1, counter 0 */
    const bl_bn *bn = &f1.b2.bn;
    for (int i = 0; i < 128; i++) {
        ck_assert(bn->weight->data[i] == 1 && bn->bias->data[i] == 0);
        ck_assert(bn->running_mean->data[i] == 0 && bn->running_var->data[i] == 1);
    }
    ck_assert(bn->num_batches_tracked->data[0] == 0 && bn->num_batches_tracked->numel == 1);
    ck_assert(bn->eps == 1e-3 && bn->momentum == 0.03);
    ck_assert(f1.bn3d.eps == 1e-5 && f1.bn3d.momentum == 0.1);
    bl_params_free(p);
    bl_params_free(q);
    bl_params_free(r);
}
END_TEST

static bl_tensor *randn(bl_ctx *ctx, int ndim, const int64_t *shape, unsigned seed)
{
    bl_tensor *t = bl_new(ctx, ndim, shape);
    srand(seed);
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = (bl_real)(2.0 * rand() / RAND_MAX - 1);
    return t;
}

static void assert_shape(const bl_tensor *t, int ndim, const int64_t *shape)
{
    char s[96];
    ck_assert_msg(t->ndim == ndim, "got %s", bl_shape_str(t, s, sizeof s));
    for (int i = 0; i < ndim; i++)
        ck_assert_msg(t->shape[i] == shape[i], "got %s (dim %d should be %lld)",
                      bl_shape_str(t, s, sizeof s), i, (long long)shape[i]);
}

START_TEST(test_block_output_shapes)
{
    bl_params *p = bl_params_alloc();
    bl_builder b = {p, 3};
    bl_ctx *ctx = bl_ctx_alloc(0);
    bl_conv_block cb;
    bl_bottleneck bt, bt2;
    bl_c3 c3;
    bl_detect det;
    bl_conv_block_init(&cb, &b, "cb", 3, 6, 3, 2, 1);
    bl_bottleneck_init(&bt, &b, "bt", 6, 6, 1, 1.0);
    bl_bottleneck_init(&bt2, &b, "bt2", 6, 4, 1, 0.5);
    bl_c3_init(&c3, &b, "c3", 6, 8, 2, 1);
    bl_detect_init(&det, &b, "det", 8, 5);
    ck_assert(bt.add && !bt2.add);
    ck_assert_int_eq(bt2.cv1.cout, 2); /* int(4 * 0.5) */
    ck_assert_int_eq(c3.cv3.cin, 8);   /* 2 * int(8 * 0.5) */

    bl_tensor *x = randn(ctx, 4, BL_SHAPE(2, 3, 9, 7), 1);
    bl_tensor *y = bl_conv_block_forward(ctx, &cb, x, 1);
    assert_shape(y, 4, BL_SHAPE(2, 6, 5, 4));
    /* SiLU output is >= min(x sigmoid(x)) = -0.2785 */
    for (int64_t i = 0; i < y->numel; i++) ck_assert(y->data[i] > -0.2785);
    assert_shape(bl_bottleneck_forward(ctx, &bt, y, 1), 4, BL_SHAPE(2, 6, 5, 4));
    assert_shape(bl_bottleneck_forward(ctx, &bt2, y, 1), 4, BL_SHAPE(2, 4, 5, 4));
    bl_tensor *z = bl_c3_forward(ctx, &c3, y, 1);
    assert_shape(z, 4, BL_SHAPE(2, 8, 5, 4));
    assert_shape(bl_detect_forward(ctx, &det, z), 4, BL_SHAPE(2, 5, 4, 5));
    /* training mode counted one batch per call */
    ck_assert(cb.bn.num_batches_tracked->data[0] == 1);
    bl_conv_block_forward(ctx, &cb, x, 0);
    ck_assert(cb.bn.num_batches_tracked->data[0] == 1);
    bl_ctx_free(ctx);
    bl_params_free(p);
}
END_TEST

/* The first layer's BatchNorm3d + SiLU runs fused (bl_bn_silu_forward): same output,
 * running statistics, batch counter and gradients as silu(bl_bn_forward(x)), in training
 * and eval mode. */
START_TEST(test_bn_silu_forward_matches_unfused)
{
    bl_params *p = bl_params_alloc();
    bl_builder b = {p, 5};
    bl_bn bn[2];
    bl_bn_init(&bn[0], &b, "fused", 3, 1e-5, 0.1);
    bl_bn_init(&bn[1], &b, "unfused", 3, 1e-5, 0.1);
    for (int i = 0; i < 2; i++)
        for (int c = 0; c < 3; c++) {
            bn[i].weight->data[c] = (bl_real)(0.5 + 0.75 * c);
            bn[i].bias->data[c] = (bl_real)(0.3 * c - 0.2);
        }
    for (int training = 1; training >= 0; training--) {
        bl_ctx *ctx = bl_ctx_alloc(0);
        bl_params_zero_grad(p);
        bl_tensor *y[2], *x[2];
        bl_tensor *r = randn(ctx, 5, BL_SHAPE(2, 3, 1, 5, 4), 11);
        for (int i = 0; i < 2; i++) {
            x[i] = randn(ctx, 5, BL_SHAPE(2, 3, 1, 5, 4), 7); /* (B, C, D, H, W) */
            for (int64_t k = 0; k < x[i]->numel; k++) x[i]->data[k] = 3 * x[i]->data[k] + 1;
            x[i]->requires_grad = 1;
            y[i] = i == 0 ? bl_bn_silu_forward(ctx, &bn[0], x[0], training)
                          : bl_silu(ctx, bl_bn_forward(ctx, &bn[1], x[1], training));
            bl_backward(ctx, bl_sum(ctx, bl_mul(ctx, y[i], r)));
        }
        for (int64_t k = 0; k < y[0]->numel; k++) {
            ck_assert_double_eq_tol(y[0]->data[k], y[1]->data[k], 1e-5);
            ck_assert_double_eq_tol(x[0]->grad[k], x[1]->grad[k], 1e-5);
        }
        for (int c = 0; c < 3; c++) {
            ck_assert_double_eq_tol(bn[0].weight->grad[c], bn[1].weight->grad[c], 1e-4);
            ck_assert_double_eq_tol(bn[0].bias->grad[c], bn[1].bias->grad[c], 1e-4);
            ck_assert_double_eq_tol(bn[0].running_mean->data[c], bn[1].running_mean->data[c], 1e-6);
            ck_assert_double_eq_tol(bn[0].running_var->data[c], bn[1].running_var->data[c], 1e-6);
        }
        /* the inputs have mean 1 and variance 3: one training step moved the statistics */
        ck_assert(fabs(bn[0].running_mean->data[0]) > 0.01);
        ck_assert(bn[0].bias->grad[1] != 0 && x[0]->grad[0] != 0);
        ck_assert(bn[0].num_batches_tracked->data[0] == 1);
        ck_assert(bn[1].num_batches_tracked->data[0] == 1);
        bl_ctx_free(ctx);
    }
    bl_params_free(p);
}
END_TEST

START_TEST(test_network_output_shapes_tiny)
{
    bl_params *p = bl_params_alloc();
    bl_builder b = {p, 4};
    bl_ctx *ctx = bl_ctx_alloc(0);
    bl_net_arch a = {.n_bands = 2, .ch_per_band = 3, .tile_slen = 4, .n_out = 7,
                     .features_width = 4, .num_features = 8, .catalog_width = 6, .context_width = 4};
    bl_encoder_nets nets;
    bl_encoder_nets_init(&nets, &b, &a, 1);
    bl_tensor *x = randn(ctx, 5, BL_SHAPE(2, 2, 3, 16, 24), 2);
    bl_tensor *f = bl_features_net_forward(ctx, &nets.features, x, 1);
    assert_shape(f, 4, BL_SHAPE(2, 8, 4, 6));
    assert_shape(bl_catalog_net_forward(ctx, &nets.marginal, f, 1), 4, BL_SHAPE(2, 4, 6, 7));
    bl_tensor *context = randn(ctx, 4, BL_SHAPE(2, 2, 4, 6), 3);
    assert_shape(bl_context_net_forward(ctx, &nets.context, f, context, 1), 4, BL_SHAPE(2, 4, 6, 7));
    assert_shape(bl_catalog_net_forward(ctx, &nets.second, f, 0), 4, BL_SHAPE(2, 4, 6, 7));
    bl_params_free(p);

    /* tile_slen 2: a single stride-2 convolution */
    p = bl_params_alloc();
    b.params = p;
    a.tile_slen = 2;
    bl_features_net fn;
    bl_features_net_init(&fn, &b, "", &a);
    assert_shape(bl_features_net_forward(ctx, &fn, x, 0), 4, BL_SHAPE(2, 8, 8, 12));
    bl_params_free(p);
    bl_ctx_free(ctx);
}
END_TEST

START_TEST(test_default_encoder_forward_shapes)
{
    /* the real widths on a 16 x 16 image in eval mode without a tape */
    bl_params *p = bl_params_alloc();
    bl_builder b = {p, 5};
    bl_ctx *ctx = bl_ctx_alloc(0);
    bl_set_grad_enabled(ctx, 0);
    bl_net_arch a = bl_net_arch_default(38);
    bl_encoder_nets nets;
    bl_encoder_nets_init(&nets, &b, &a, 0);
    bl_tensor *x = randn(ctx, 5, BL_SHAPE(1, 5, 6, 16, 16), 4);
    bl_tensor *f = bl_features_net_forward(ctx, &nets.features, x, 0);
    assert_shape(f, 4, BL_SHAPE(1, 256, 4, 4));
    bl_tensor *xm = bl_catalog_net_forward(ctx, &nets.marginal, f, 0);
    assert_shape(xm, 4, BL_SHAPE(1, 4, 4, 38));
    ck_assert(bl_tensor_all_finite(xm));
    bl_tensor *context = bl_zeros(ctx, 4, BL_SHAPE(1, 2, 4, 4));
    assert_shape(bl_context_net_forward(ctx, &nets.context, f, context, 0), 4, BL_SHAPE(1, 4, 4, 38));
    ck_assert_int_eq(bl_tape_length(ctx), 0);
    bl_ctx_free(ctx);
    bl_params_free(p);
}
END_TEST

static Suite *networks_suite(void)
{
    Suite *s = suite_create("models_networks");
    TCase *tc = tcase_create("structure");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_state_dict_listing_p38);
    tcase_add_test(tc, test_state_dict_p40_and_double_detect);
    tcase_add_test(tc, test_initialisation_pytorch_defaults);
    suite_add_tcase(s, tc);
    TCase *tf = tcase_create("forward");
    tcase_set_timeout(tf, 120);
    tcase_add_test(tf, test_block_output_shapes);
    tcase_add_test(tf, test_bn_silu_forward_matches_unfused);
    tcase_add_test(tf, test_network_output_shapes_tiny);
    tcase_add_test(tf, test_default_encoder_forward_shapes);
    suite_add_tcase(s, tf);
    return s;
}

int main(void) { return bl_check_run(networks_suite()); }
