/* models: the encoder at tiny widths — loss structure (detached features for the
 * conditionals), checkerboard sampling, input errors, the redshift factor, double detection,
 * and the loss decreasing on a fixed batch. */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/ops.h"
#include "autograd/optim.h"
#include "models/encoder.h"
#include "test_models_util.h"
#include "tests/bl_check.h"

START_TEST(test_conditionals_do_not_train_features)
{
    /* L = (nll_m + (1 - cb) nll_w + cb nll_b) / 2 with the features detached for the
     * conditionals: features_net's gradient is exactly half of the marginal-only one, and
     * the checkerboard net gets none without the checkerboard. */
    bl_vardist_spec *spec = bl_vardist_spec_alloc_sdss(5, 4);
    bl_net_arch arch = tm_tiny_arch();
    bl_encoder_opts on = bl_encoder_opts_default(), off = on;
    off.use_checkerboard = 0;
    bl_encoder *e1 = bl_encoder_alloc(spec, &arch, &on, 3), *e0 = bl_encoder_alloc(spec, &arch, &off, 3);
    bl_ctx *ctx = bl_ctx_alloc(0), *ctx0 = bl_ctx_alloc(0);
    bl_tensor *x = tm_random_input(ctx, 2, 32, 32, 1);
    bl_tile_catalog *truth = tm_random_truth(2, 8, 8, 4, 2, 0);
    bl_tensor *l1, *l0;
    bl_encoder_loss_parts parts;
    ck_assert_int_eq(bl_encoder_loss(e1, ctx, x, truth, &l1, &parts), BL_OK);
    ck_assert_ptr_nonnull(parts.pred.white);
    ck_assert_ptr_nonnull(parts.nll_black);
    bl_backward(ctx, l1);
    /* a ctx of its own: a backward walks every node of its tape */
    ck_assert_int_eq(bl_encoder_loss(e0, ctx0, x, truth, &l0, NULL), BL_OK);
    bl_backward(ctx0, l0);
    ck_assert(isfinite(l1->data[0]) && isfinite(l0->data[0]));

    /* loss = mean over the cropped 6 x 6 tiles of the per-tile loss */
    double s = 0;
    for (int b = 0; b < 2; b++)
        for (int i = 1; i < 7; i++)
            for (int j = 1; j < 7; j++) {
                const int64_t t = (b * 8 + i) * 8 + j;
                const double cb = (i + j) % 2;
                const double lt = (parts.nll_marginal->data[t] + (1 - cb) * parts.nll_white->data[t] +
                                   cb * parts.nll_black->data[t]) / 2;
                ck_assert(fabs(lt - parts.loss_tiles->data[t]) <= 1e-5 * fabs(lt));
                s += lt;
            }
    ck_assert_msg(fabs(s / 72 - l1->data[0]) <= 1e-5 * fabs(l1->data[0]), "%g vs %g", s / 72,
                  l1->data[0]);

    int n_feat = 0, n_ctx = 0;
    for (int i = 0; i < e1->params->n; i++) {
        bl_tensor *p1 = e1->params->t[i], *p0 = e0->params->t[i];
        if (!p1->requires_grad) continue;
        if (strncmp(p1->name, "features_net.", 13) == 0) {
            for (int64_t k = 0; k < p1->numel; k++)
                ck_assert_msg(fabs(p1->grad[k] - 0.5 * p0->grad[k]) <= 1e-5 * fabs(p0->grad[k]) + 1e-9,
                              "%s[%lld]: %g vs half of %g", p1->name, (long long)k, p1->grad[k],
                              p0->grad[k]);
            n_feat++;
        } else if (strncmp(p1->name, "checkerboard_net.", 17) == 0) {
            double g1 = 0, g0 = 0;
            for (int64_t k = 0; k < p1->numel; k++) {
                g1 += fabs(p1->grad[k]);
                g0 += fabs(p0->grad[k]);
            }
            ck_assert(g0 == 0);
            if (g1 > 0) n_ctx++;
        }
    }
    ck_assert_int_eq(n_feat, 12 * 3 + 4); /* 12 ConvBlocks + Conv3d weight, bias + BN3d */
    ck_assert_int_gt(n_ctx, 100);
    bl_tile_catalog_free(truth);
    bl_ctx_free(ctx);
    bl_ctx_free(ctx0);
    bl_encoder_free(e0);
    bl_encoder_free(e1);
    bl_vardist_spec_free(spec);
}
END_TEST

START_TEST(test_sample_checkerboard_interleave)
{
    bl_vardist_spec *spec = bl_vardist_spec_alloc_sdss(5, 4);
    bl_net_arch arch = tm_tiny_arch();
    bl_encoder *enc = bl_encoder_alloc(spec, &arch, NULL, 5);
    bl_encoder_set_training(enc, 0);
    tm_perturb_bn(enc->params, 9);
    bl_ctx *ctx = bl_ctx_alloc(0);
    bl_tensor *x = tm_random_input(ctx, 2, 32, 48, 2);
    bl_tile_catalog *est;
    ck_assert_int_eq(bl_encoder_sample(enc, ctx, x, 1, 1, 0, &est), BL_OK);
    ck_assert_int_eq(est->B, 2);
    ck_assert_int_eq(est->ht, 6);
    ck_assert_int_eq(est->wt, 10);
    ck_assert_int_eq(est->S, 1);

    /* rebuild by hand: marginal mode as history, white conditional's mode on cb = 0 tiles */
    bl_encoder_pred pred;
    bl_set_grad_enabled(ctx, 0);
    ck_assert_int_eq(bl_encoder_infer(enc, ctx, x, NULL, &pred), BL_OK);
    bl_tile_catalog *hist = bl_vardist_sample(pred.marginal, 0, 0, 1);
    bl_encoder_infer_conditionals(enc, ctx, hist, &pred);
    bl_tile_catalog *white = bl_vardist_sample(pred.white, 0, 0, 1);
    const bl_tensor *fe = bl_tile_catalog_require(est, "galaxy_fluxes");
    const bl_tensor *fh = bl_tile_catalog_require(hist, "galaxy_fluxes");
    const bl_tensor *fw = bl_tile_catalog_require(white, "galaxy_fluxes");
    int differ = 0;
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < 6; i++)
            for (int j = 0; j < 10; j++) {
                const int I = i + 1, J = j + 1; /* uncropped tile */
                const bl_tile_catalog *src = (I + J) % 2 ? hist : white;
                ck_assert_int_eq(est->n_sources[bl_tile_index(est, b, i, j)],
                                 src->n_sources[bl_tile_index(src, b, I, J)]);
                for (int k = 0; k < 5; k++) {
                    const bl_real v = fe->data[bl_tile_offset(est, b, i, j, 0, 5, k)];
                    const bl_real vh = fh->data[bl_tile_offset(hist, b, I, J, 0, 5, k)];
                    const bl_real vw = fw->data[bl_tile_offset(white, b, I, J, 0, 5, k)];
                    ck_assert(v == ((I + J) % 2 ? vh : vw));
                    differ += vh != vw;
                }
            }
    ck_assert_int_gt(differ, 0); /* the two nets really differ */

    /* draws: same seed same catalog, another seed another one */
    bl_tile_catalog *d1, *d2, *d3;
    ck_assert_int_eq(bl_encoder_sample(enc, ctx, x, 0, 11, 4, &d1), BL_OK);
    ck_assert_int_eq(bl_encoder_sample(enc, ctx, x, 0, 11, 4, &d2), BL_OK);
    ck_assert_int_eq(bl_encoder_sample(enc, ctx, x, 0, 12, 4, &d3), BL_OK);
    const bl_tensor *l1 = bl_tile_catalog_require(d1, "locs"), *l2 = bl_tile_catalog_require(d2, "locs"),
                    *l3 = bl_tile_catalog_require(d3, "locs");
    ck_assert(memcmp(l1->data, l2->data, (size_t)l1->numel * sizeof(bl_real)) == 0);
    ck_assert(memcmp(l1->data, l3->data, (size_t)l1->numel * sizeof(bl_real)) != 0);
    for (int64_t k = 0; k < l1->numel; k++) ck_assert(l1->data[k] >= 0 && l1->data[k] <= 1);
    ck_assert_int_eq(bl_tape_length(ctx), 0);
    bl_tile_catalog_free(d1);
    bl_tile_catalog_free(d2);
    bl_tile_catalog_free(d3);
    bl_tile_catalog_free(hist);
    bl_tile_catalog_free(white);
    bl_tile_catalog_free(est);
    bl_ctx_free(ctx);
    bl_encoder_free(enc);
    bl_vardist_spec_free(spec);
}
END_TEST

START_TEST(test_bad_input_is_reported)
{
    bl_vardist_spec *spec = bl_vardist_spec_alloc_sdss(5, 4);
    bl_net_arch arch = tm_tiny_arch();
    bl_encoder *enc = bl_encoder_alloc(spec, &arch, NULL, 5);
    bl_ctx *ctx = bl_ctx_alloc(0);
    bl_tensor *loss = (bl_tensor *)1;
    bl_tile_catalog *truth = tm_random_truth(1, 6, 8, 4, 1, 0);
    bl_tensor *x = tm_random_input(ctx, 1, 24, 32, 3);
    ck_assert_int_eq(bl_encoder_loss(enc, ctx, x, truth, &loss, NULL), BL_ERR_ARG);
    ck_assert_ptr_null(loss);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "(1, 5, 6, 24, 32)"));
    bl_tile_catalog_free(truth);

    truth = tm_random_truth(1, 8, 8, 4, 1, 0);
    x = tm_random_input(ctx, 1, 32, 32, 3);
    x->data[1234] = NAN;
    ck_assert_int_eq(bl_encoder_loss(enc, ctx, x, truth, &loss, NULL), BL_ERR_NAN);
    /* a catalog of the wrong geometry */
    bl_tile_catalog *small = tm_random_truth(1, 4, 4, 4, 1, 0);
    x->data[1234] = 0;
    ck_assert_int_eq(bl_encoder_loss(enc, ctx, x, small, &loss, NULL), BL_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "(1, 4, 4)"));
    bl_tile_catalog_free(small);
    bl_tile_catalog_free(truth);
    bl_ctx_free(ctx);
    bl_encoder_free(enc);
    bl_vardist_spec_free(spec);
}
END_TEST

START_TEST(test_redshift_factor_needs_no_encoder_change)
{
    bl_vardist_spec *spec = bl_vardist_spec_alloc_sdss(5, 4);
    ck_assert_int_eq(bl_vardist_spec_add(spec, &(bl_factor){.name = "redshift", .kind = bl_dist_normal,
                                                            .field = "redshifts", .mask = BL_MASK_ON}),
                     BL_OK);
    ck_assert_int_eq(spec->dim, 40);
    bl_net_arch arch = tm_tiny_arch();
    bl_encoder_opts o = bl_encoder_opts_default();
    o.use_checkerboard = 0;
    bl_encoder *enc = bl_encoder_alloc(spec, &arch, &o, 5);
    ck_assert_int_eq(bl_params_find(enc->params, "marginal_net.net_ml.6.conv.bias")->shape[0], 40);
    bl_ctx *ctx = bl_ctx_alloc(0);
    bl_tensor *x = tm_random_input(ctx, 2, 32, 32, 4);
    bl_tile_catalog *truth = tm_random_truth(2, 8, 8, 4, 3, 1);
    bl_tensor *loss;
    bl_encoder_loss_parts parts;
    ck_assert_int_eq(bl_encoder_loss(enc, ctx, x, truth, &loss, &parts), BL_OK);
    ck_assert_ptr_null(parts.nll_white);

    /* the redshift term: n * -log N(z; x38, exp(x39 / 2)) per tile (docs/behaviour.md §3.5) */
    bl_tensor *base;
    bl_vardist_spec *spec38 = bl_vardist_spec_alloc_sdss(5, 4);
    bl_tensor *x38 = bl_slice(ctx, parts.pred.marginal->x_cat, 3, 0, 38);
    bl_vardist *d38 = bl_vardist_spec_make_dist(ctx, spec38, x38);
    ck_assert_int_eq(bl_vardist_nll(ctx, d38, truth, &base), BL_OK);
    const bl_tensor *z = bl_tile_catalog_require(truth, "redshifts");
    int on = 0;
    for (int64_t t = 0; t < base->numel; t++) {
        const bl_real *xc = parts.pred.marginal->x_cat->data + t * 40;
        double lv = fmin(fmax(xc[39], -20), 20), sd = exp(lv / 2);
        double nll_z = 0.5 * pow((z->data[t] - xc[38]) / sd, 2) + log(sd) + 0.5 * log(2 * M_PI);
        double want = base->data[t] + (truth->n_sources[t] > 0 ? nll_z : 0);
        on += truth->n_sources[t] > 0;
        ck_assert_msg(fabs(parts.nll_marginal->data[t] - want) <= 1e-4 * fabs(want) + 1e-4,
                      "tile %lld: %g vs %g", (long long)t, parts.nll_marginal->data[t], want);
    }
    ck_assert_int_gt(on, 10);
    bl_tile_catalog *est;
    ck_assert_int_eq(bl_encoder_sample(enc, ctx, x, 1, 0, 0, &est), BL_OK);
    ck_assert(bl_tile_catalog_has(est, "redshifts"));
    bl_tile_catalog_free(est);
    bl_tile_catalog_free(truth);
    bl_ctx_free(ctx);
    bl_encoder_free(enc);
    bl_vardist_spec_free(spec);
    bl_vardist_spec_free(spec38);
}
END_TEST

START_TEST(test_double_detection)
{
    bl_vardist_spec *spec = bl_vardist_spec_alloc_sdss(5, 4);
    bl_net_arch arch = tm_tiny_arch();
    bl_encoder_opts o = bl_encoder_opts_default(), o1 = o;
    o.double_detect = 1;
    bl_encoder *e2 = bl_encoder_alloc(spec, &arch, &o, 5), *e1 = bl_encoder_alloc(spec, &arch, &o1, 5);
    ck_assert_ptr_nonnull(bl_params_find(e2->params, "second_net.net_ml.6.conv.weight"));
    bl_ctx *ctx = bl_ctx_alloc(0);
    bl_tensor *x = tm_random_input(ctx, 2, 32, 32, 5);
    bl_tile_catalog *truth = tm_random_truth(2, 8, 8, 4, 4, 0);
    bl_tensor *l2, *l1;
    bl_encoder_loss_parts p2, p1;
    ck_assert_int_eq(bl_encoder_loss(e2, ctx, x, truth, &l2, &p2), BL_OK);
    ck_assert_int_eq(bl_encoder_loss(e1, ctx, x, truth, &l1, &p1), BL_OK);
    ck_assert_ptr_nonnull(p2.pred.second);
    /* S = 1: empty tiles keep the single-detection loss; tiles with one source add the second
     * net's nll of an empty catalog, -log(1 - p_on2) > 0 */
    int n0 = 0, n1 = 0;
    for (int64_t t = 0; t < p1.loss_tiles->numel; t++) {
        const double a = p2.loss_tiles->data[t], b = p1.loss_tiles->data[t];
        if (truth->n_sources[t] == 0) {
            ck_assert(fabs(a - b) <= 1e-6 * fabs(b));
            n0++;
        } else {
            const double logit = p2.pred.second->x_cat->data[t * 38];
            double p = 1 / (1 + exp(-logit));
            p = fmin(fmax(p, 1e-4), 1 - 1e-4);
            ck_assert_msg(fabs(a - (b - log(1 - p))) <= 1e-4 * fabs(a), "%g vs %g", a, b - log(1 - p));
            n1++;
        }
    }
    ck_assert(n0 > 10 && n1 > 10);
    bl_tile_catalog *est;
    ck_assert_int_eq(bl_encoder_sample(e2, ctx, x, 1, 0, 0, &est), BL_OK);
    ck_assert_int_eq(est->S, 2);
    bl_tile_catalog_free(est);
    bl_tile_catalog_free(truth);
    bl_ctx_free(ctx);
    bl_encoder_free(e1);
    bl_encoder_free(e2);
    bl_vardist_spec_free(spec);
}
END_TEST

START_TEST(test_loss_decreases_on_fixed_batch)
{
    bl_vardist_spec *spec = bl_vardist_spec_alloc_sdss(5, 4);
    bl_net_arch arch = tm_tiny_arch();
    bl_encoder *enc = bl_encoder_alloc(spec, &arch, NULL, 8);
    bl_adam_opts ao = bl_adam_defaults();
    ao.lr = 3e-3;
    bl_adam *adam = bl_adam_alloc(enc->params, ao);
    bl_ctx *ctx = bl_ctx_alloc(0);
    bl_tile_catalog *truth = tm_random_truth(4, 8, 8, 4, 6, 0);
    double first = 0, last = 0;
    for (int step = 0; step < 40; step++) {
        bl_tensor *x = tm_random_input(ctx, 4, 32, 32, 6); /* the same batch every step */
        bl_tensor *loss;
        bl_params_zero_grad(enc->params);
        ck_assert_int_eq(bl_encoder_loss(enc, ctx, x, truth, &loss, NULL), BL_OK);
        bl_backward(ctx, loss);
        bl_adam_step(adam);
        if (step == 0) first = loss->data[0];
        last = loss->data[0];
        bl_ctx_reset(ctx);
    }
    ck_assert_msg(last < 0.8 * first, "loss %g -> %g", first, last);
    bl_tile_catalog_free(truth);
    bl_ctx_free(ctx);
    bl_adam_free(adam);
    bl_encoder_free(enc);
    bl_vardist_spec_free(spec);
}
END_TEST

int main(void)
{
    /* Check's test handles are not constant expressions: the table lives in main */
    const bl_check_case cases[] = {
        {"detach", test_conditionals_do_not_train_features},
        {"sample", test_sample_checkerboard_interleave},
        {"bad_input", test_bad_input_is_reported},
        {"redshift", test_redshift_factor_needs_no_encoder_change},
        {"double_detect", test_double_detection},
        {"fixed_batch", test_loss_decreases_on_fixed_batch},
    };
    return bl_check_run(bl_check_suite("models_encoder", cases, sizeof cases / sizeof cases[0], 300));
}
