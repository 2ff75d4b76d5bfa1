/* Finite-difference gradients of every kind's log_prob w.r.t. its raw parameters, and of the
 * whole nll w.r.t. the network output x_cat (double build). */
#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/gradcheck.h"
#include "autograd/ops.h"
#include "dists/vardist.h"
#include "tests/bl_check.h"

#ifndef BL_REAL_DOUBLE
#error "gradchecks need the double build (link bliss_f64_dep)"
#endif

typedef struct {
    const bl_dist_kind *kind;
    const double *opts;
    bl_tensor *value;
} kind_case;

static bl_tensor *lp_fn(bl_ctx *ctx, bl_tensor *const *in, void *user)
{
    kind_case *k = user;
    return k->kind->log_prob(ctx, k->opts, in[0], k->value);
}

/* (2, 3, dim) raw values spread over the interior of the clamps; values inside the support */
static void check_kind(const bl_dist_kind *kind, const double *opts, double raw_scale, double raw_shift,
                       double (*value_of)(int i, int c))
{
    bl_ctx *ctx = bl_ctx_alloc(1 << 20);
    bl_tensor *raw = bl_tensor_alloc("raw", 3, BL_SHAPE(2, 3, kind->dim), 1);
    for (int64_t i = 0; i < raw->numel; i++) raw->data[i] = raw_shift + raw_scale * sin(2.385 * (double)i + 0.7);
    kind_case k = {kind, opts, bl_tensor_alloc("value", 3, BL_SHAPE(2, 3, kind->value_dim), 0)};
    for (int i = 0; i < 6; i++)
        for (int c = 0; c < kind->value_dim; c++) k.value->data[i * kind->value_dim + c] = value_of(i, c);
    bl_gradcheck_opts o = bl_gradcheck_defaults();
    bl_gradcheck_result r;
    int ok = bl_gradcheck(kind->name, lp_fn, 1, (bl_tensor *[]){raw}, &k, &o, &r);
    ck_assert_msg(ok, "%s: %d of %d failed (max abs err %g)", kind->name, r.failed, r.checked, r.max_abs_err);
    ck_assert_int_ge(r.checked, (int)raw->numel - 2);
    bl_tensor_free(raw);
    bl_tensor_free(k.value);
    bl_ctx_free(ctx);
}

static double v_bit(int i, int c) { (void)c; return i % 2; }
static double v_real(int i, int c) { (void)c; return 0.3 + 0.77 * i - 1.9; }
static double v_pos(int i, int c) { (void)c; return 0.05 + 0.61 * i; }
static double v_unit(int i, int c) { return 0.05 + 0.15 * i + 0.02 * c; }
static double v_pi(int i, int c) { (void)c; return 0.1 + 0.55 * i; }

START_TEST(test_kinds_gradcheck)
{
    check_kind(bl_dist_bernoulli, (const double[]){0, 0}, 2.5, 0.1, v_bit);
    check_kind(bl_dist_normal, (const double[]){0, 0}, 1.8, 0.2, v_real);
    check_kind(bl_dist_lognormal, (const double[]){0, 0}, 1.6, 0.0, v_pos);
    check_kind(bl_dist_logitnormal, (const double[]){0, 1}, 1.9, -0.2, v_unit);
    check_kind(bl_dist_logitnormal, (const double[]){0, M_PI}, 1.9, 0.3, v_pi);
    check_kind(bl_dist_tdbn, (const double[]){0, 0}, 1.7, -0.3, v_unit);
}
END_TEST

typedef struct {
    const bl_vardist_spec *spec;
    const bl_tile_catalog *cat;
} nll_case;

static bl_tensor *nll_fn(bl_ctx *ctx, bl_tensor *const *in, void *user)
{
    nll_case *c = user;
    bl_tensor *out;
    bl_status st = bl_vardist_nll(ctx, bl_vardist_spec_make_dist(ctx, c->spec, in[0]), c->cat, &out);
    ck_assert_int_eq(st, BL_OK);
    return out;
}

START_TEST(test_nll_gradcheck)
{
    /* 2 x 2 tiles: a star, a galaxy, an empty tile with stale values, a galaxy; redshift on */
    bl_vardist_spec *spec = bl_vardist_spec_alloc_sdss(5, 4);
    ck_assert_int_eq(bl_vardist_spec_add(spec, &(bl_factor){.name = "redshift", .kind = bl_dist_normal,
                                                             .field = "redshifts", .mask = BL_MASK_ON}),
                     BL_OK);
    bl_tile_catalog *cat = bl_tile_catalog_alloc(1, 2, 2, 1, 4, 5);
    bl_tensor *locs = bl_tile_catalog_add(cat, "locs"), *st = bl_tile_catalog_add(cat, "source_type");
    bl_tensor *sf = bl_tile_catalog_add(cat, "star_fluxes"), *gf = bl_tile_catalog_add(cat, "galaxy_fluxes");
    bl_tensor *gp = bl_tile_catalog_add(cat, "galaxy_params"), *z = bl_tile_catalog_add(cat, "redshifts");
    int n[4] = {1, 1, 0, 1}, type[4] = {0, 1, 0, 1};
    for (int t = 0; t < 4; t++) {
        cat->n_sources[t] = n[t];
        st->data[t] = type[t];
        locs->data[2 * t] = 0.2 + 0.17 * t;
        locs->data[2 * t + 1] = 0.7 - 0.13 * t;
        z->data[t] = n[t] ? 0.3 + 0.4 * t : NAN;
        for (int b = 0; b < 5; b++) {
            sf->data[t * 5 + b] = n[t] && !type[t] ? 1.5 + b : -1;
            gf->data[t * 5 + b] = n[t] && type[t] ? 3.0 + 0.5 * b : -1;
        }
        for (int k = 0; k < 6; k++) gp->data[t * 6 + k] = type[t] ? 0.15 + 0.1 * k : NAN;
    }
    bl_tensor *x = bl_tensor_alloc("x_cat", 4, BL_SHAPE(1, 2, 2, 40), 1);
    for (int64_t i = 0; i < x->numel; i++) x->data[i] = 1.3 * sin(0.917 * (double)i + 0.2);
    nll_case c = {spec, cat};
    bl_ctx *ctx = bl_ctx_alloc(1 << 22);
    bl_gradcheck_opts o = bl_gradcheck_defaults();
    bl_gradcheck_result r;
    int ok = bl_gradcheck("nll", nll_fn, 1, (bl_tensor *[]){x}, &c, &o, &r);
    ck_assert_msg(ok, "nll: %d of %d failed (max abs err %g)", r.failed, r.checked, r.max_abs_err);
    ck_assert_int_ge(r.checked, 150);
    /* masked-out raw parameters get exactly zero gradient: the empty tile (t = 2) only
     * touches on_prob (raw 0) */
    bl_ctx_reset(ctx);
    bl_tensor *loss = bl_sum(ctx, nll_fn(ctx, (bl_tensor *[]){x}, &c));
    bl_tensor_zero_grad(x);
    bl_backward(ctx, loss);
    ck_assert(x->grad[2 * 40 + 0] != 0);
    for (int p = 1; p < 40; p++) ck_assert_msg(x->grad[2 * 40 + p] == 0, "raw %d of the empty tile", p);
    /* the star tile (t = 0) has no galaxy-shape or galaxy-flux gradient */
    for (int p = 6; p < 18; p++) ck_assert(x->grad[p] == 0);
    for (int p = 28; p < 38; p++) ck_assert(x->grad[p] == 0);
    ck_assert(x->grad[18] != 0 && x->grad[38] != 0);
    bl_ctx_free(ctx);
    bl_tensor_free(x);
    bl_tile_catalog_free(cat);
    bl_vardist_spec_free(spec);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("dists_gradcheck");
    TCase *tc = tcase_create("gradcheck");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_kinds_gradcheck);
    tcase_add_test(tc, test_nll_gradcheck);
    suite_add_tcase(s, tc);
    return bl_check_run(s);
}
