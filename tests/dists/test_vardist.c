/* The variational-distribution spec: the SDSS factor table, nll with its masks against a
 * reference written here from the formulas of docs/behaviour.md §3.2–3.5 (math.h only, none of the
 * library's kinds), sample/mode, the redshift factor as one call, a factor on a brand-new
 * field, thread-count independence, and config entries good and bad. */
#include <check.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/ops.h"
#include "dists/vardist.h"
#include "lib/eval/metrics.h"
#include "tests/bl_check.h"

#ifndef BL_DISTS_TEST_DIR
#define BL_DISTS_TEST_DIR "tests/dists"
#endif

#define NB 5
static bl_ctx *ctx;
static void setup(void) { ctx = bl_ctx_alloc(1 << 22); }
static void teardown(void) { bl_ctx_free(ctx); }

/* ---- independent scalar references (docs/behaviour.md §3.2–3.3) ---- */
static double sig(double x) { return 1 / (1 + exp(-x)); }
static double clampd(double x, double lo, double hi) { return fmin(fmax(x, lo), hi); }
static double ref_phi(double v, double mu, double s) { return -(v - mu) * (v - mu) / (2 * s * s) - log(s) - 0.5 * log(2 * M_PI); }
static double ref_Phi(double x) { return 0.5 * (1 + erf(x / sqrt(2))); }
static double ref_bern(double x, int v)
{
    double p = clampd(sig(x), 1e-4, 1 - 1e-4);
    return v ? log(p) : log(1 - p);
}
static double ref_normal(const double *r, double v) { return ref_phi(v, r[0], exp(0.5 * clampd(r[1], -20, 20))); }
static double ref_lognormal(const double *r, double y)
{
    return ref_phi(log(y), r[0], exp(0.5 * clampd(r[1], -6, 10))) - log(y);
}
static double ref_logitnormal(const double *r, double y, double high)
{
    double u = y / high, z = log(u / (1 - u));
    return ref_phi(z, r[0], exp(0.5 * clampd(r[1], -10, 10))) - log(high) - log(u) - log(1 - u);
}
static double ref_tdbn(const double *r, const double *v)
{
    double lp = 0;
    for (int d = 0; d < 2; d++) {
        double m = sig(r[d]), s = exp(0.5 * clampd(r[2 + d], -6, 3));
        lp += ref_phi(v[d], m, s) - log(ref_Phi((1 - m) / s) - ref_Phi(-m / s));
    }
    return lp;
}

/* raw outputs of tile t: deterministic values in (-1.5, 1.5) */
static double raw_value(int t, int p) { return 1.5 * sin(1.7 * p + 2.3 * t + 0.4); }

static bl_tensor *make_x(int64_t B, int64_t ht, int64_t wt, int P)
{
    bl_tensor *x = bl_new(ctx, 4, BL_SHAPE(B, ht, wt, P));
    for (int64_t t = 0; t < B * ht * wt; t++)
        for (int p = 0; p < P; p++) x->data[t * P + p] = (bl_real)raw_value((int)t, p);
    return x;
}

static const double star_fl[NB] = {1.5, 2.0, 2.5, 3.0, 3.5};
static const double gal_fl[NB] = {4.1, 0.7, 12.5, 9.0, 6.2};
static const double gal_par[6] = {0.3, 1.2, 0.6, 1.8, 0.4, 0.9};

/* 1 x 3 tiles: a star, a galaxy, an empty tile; stale/garbage values where masks say the
 * field does not matter (negative fluxes would give NaN if they reached log_prob) */
static bl_tile_catalog *three_tiles(void)
{
    bl_tile_catalog *c = bl_tile_catalog_alloc(1, 1, 3, 1, 4, NB);
    bl_tensor *locs = bl_tile_catalog_add(c, "locs"), *st = bl_tile_catalog_add(c, "source_type");
    bl_tensor *sf = bl_tile_catalog_add(c, "star_fluxes"), *gf = bl_tile_catalog_add(c, "galaxy_fluxes");
    bl_tensor *gp = bl_tile_catalog_add(c, "galaxy_params");
    c->n_sources[0] = 1;
    c->n_sources[1] = 1;
    c->n_sources[2] = 0;
    locs->data[0] = 0.3f, locs->data[1] = 0.6f;
    locs->data[2] = 0.45f, locs->data[3] = 0.2f;
    locs->data[4] = NAN, locs->data[5] = 7;
    st->data[0] = 0, st->data[1] = 1, st->data[2] = NAN;
    for (int b = 0; b < NB; b++) {
        sf->data[0 * NB + b] = (bl_real)star_fl[b];
        gf->data[0 * NB + b] = -7;
        sf->data[1 * NB + b] = -3;
        gf->data[1 * NB + b] = (bl_real)gal_fl[b];
        sf->data[2 * NB + b] = NAN;
        gf->data[2 * NB + b] = -1;
    }
    for (int k = 0; k < 6; k++) {
        gp->data[0 * 6 + k] = -1;
        gp->data[1 * 6 + k] = (bl_real)gal_par[k];
        gp->data[2 * 6 + k] = NAN;
    }
    return c;
}

/* reference nll of tile t of three_tiles() for the SDSS spec order (docs/behaviour.md §3.1) */
static double ref_nll(int t)
{
    double r[40];
    for (int p = 0; p < 40; p++) r[p] = (double)(bl_real)raw_value(t, p);
    if (t == 2) return -ref_bern(r[0], 0);
    int gal = t == 1;
    double locs[2][2] = {{0.3, 0.6}, {0.45, 0.2}};
    double v[2] = {(bl_real)locs[t][0], (bl_real)locs[t][1]};
    double nll = -ref_bern(r[0], 1) - ref_tdbn(r + 1, v) - ref_bern(r[5], gal);
    for (int b = 0; b < NB; b++) {
        if (!gal) nll -= ref_lognormal(r + 18 + 2 * b, (bl_real)star_fl[b] + 1e-9);
        if (gal) nll -= ref_lognormal(r + 28 + 2 * b, (bl_real)gal_fl[b] + 1e-9);
    }
    if (gal) {
        static const double high[6] = {1, M_PI, 1, 0, 1, 0};
        for (int k = 0; k < 6; k++) {
            double y = (bl_real)gal_par[k] + 1e-9;
            nll -= high[k] > 0 ? ref_logitnormal(r + 6 + 2 * k, y, high[k]) : ref_lognormal(r + 6 + 2 * k, y);
        }
    }
    return nll;
}

START_TEST(test_sdss_table)
{
    bl_vardist_spec *s = bl_vardist_spec_alloc_sdss(NB, 4);
    ck_assert_int_eq(bl_vardist_spec_dim(s), 38);
    ck_assert_int_eq(s->n_factors, 3 + 6 + 2 * NB);
    /* docs/behaviour.md §3.1 raw index map */
    struct { const char *name; int offset; const char *kind; } rows[] = {
        {"on_prob", 0, "bernoulli"}, {"loc", 1, "tdbn"}, {"galaxy_prob", 5, "bernoulli"},
        {"galsim_disk_frac", 6, "logitnormal"}, {"galsim_beta_radians", 8, "logitnormal"},
        {"galsim_disk_q", 10, "logitnormal"}, {"galsim_a_d", 12, "lognormal"},
        {"galsim_bulge_q", 14, "logitnormal"}, {"galsim_a_b", 16, "lognormal"},
        {"star_flux_u", 18, "lognormal"}, {"star_flux_z", 26, "lognormal"},
        {"galaxy_flux_u", 28, "lognormal"}, {"galaxy_flux_r", 32, "lognormal"},
        {"galaxy_flux_z", 36, "lognormal"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        int k = bl_vardist_spec_index(s, rows[i].name);
        ck_assert_msg(k >= 0, "%s missing", rows[i].name);
        ck_assert_int_eq(s->raw_offset[k], rows[i].offset);
        ck_assert_str_eq(s->factors[k].kind->name, rows[i].kind);
    }
    ck_assert_double_eq(bl_vardist_spec_find(s, "galsim_beta_radians")->opts[1], M_PI);
    ck_assert_int_eq(bl_vardist_spec_find(s, "star_flux_r")->column, 2);
    ck_assert_int_eq(bl_vardist_spec_find(s, "star_flux_r")->point, BL_POINT_MODE);
    ck_assert_int_eq(bl_vardist_spec_find(s, "galaxy_flux_r")->point, BL_POINT_MEDIAN);
    ck_assert_ptr_eq(bl_vardist_spec_find(s, "galsim_a_b")->mask, BL_MASK_GALAXY);
    ck_assert_ptr_eq(bl_vardist_spec_find(s, "star_flux_i")->mask, BL_MASK_STAR);

    /* redshift: one call, P = 40, raw 38-39 */
    ck_assert_int_eq(bl_vardist_spec_add(s, &(bl_factor){.name = "redshift", .kind = bl_dist_normal,
                                                          .field = "redshifts", .mask = BL_MASK_ON}),
                     BL_OK);
    ck_assert_int_eq(bl_vardist_spec_dim(s), 40);
    ck_assert_int_eq(s->raw_offset[bl_vardist_spec_index(s, "redshift")], 38);

    /* refusals: duplicate name, unknown field, columns outside the field, bad descriptor,
     * options on a kind without them */
    ck_assert_int_eq(bl_vardist_spec_add(s, &(bl_factor){.name = "redshift", .kind = bl_dist_normal,
                                                          .field = "redshifts"}),
                     BL_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "'redshift': a factor of that name"));
    ck_assert_int_eq(bl_vardist_spec_add(s, &(bl_factor){.name = "z2", .kind = bl_dist_normal,
                                                          .field = "redshift"}),
                     BL_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "unknown catalog field 'redshift'"));
    ck_assert_int_eq(bl_vardist_spec_add(s, &(bl_factor){.name = "z3", .kind = bl_dist_normal,
                                                          .field = "redshifts", .column = 1}),
                     BL_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "do not fit"));
    ck_assert_int_eq(bl_vardist_spec_add(s, &(bl_factor){.name = "shear_loc", .kind = bl_dist_tdbn,
                                                          .field = "redshifts"}),
                     BL_ERR_ARG);
    static const bl_dist_kind broken = {.name = "broken", .dim = 2, .value_dim = 1};
    ck_assert_int_eq(bl_vardist_spec_add(s, &(bl_factor){.name = "z4", .kind = &broken,
                                                          .field = "redshifts"}),
                     BL_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "no log_prob"));
    ck_assert_int_eq(bl_vardist_spec_add(s, &(bl_factor){.name = "z5", .kind = bl_dist_normal,
                                                          .opts = {0, 1}, .field = "redshifts"}),
                     BL_ERR_ARG);
    ck_assert_int_eq(bl_vardist_spec_add(s, &(bl_factor){.name = "q", .kind = bl_dist_logitnormal,
                                                          .field = "redshifts"}),
                     BL_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "low < high"));
    ck_assert_int_eq(bl_vardist_spec_dim(s), 40);
    bl_vardist_spec_free(s);
}
END_TEST

START_TEST(test_nll_masks)
{
    bl_vardist_spec *s = bl_vardist_spec_alloc_sdss(NB, 4);
    bl_tile_catalog *c = three_tiles();
    bl_tensor *x = make_x(1, 1, 3, 38);
    bl_vardist *d = bl_vardist_spec_make_dist(ctx, s, x);
    bl_tensor *nll;
    ck_assert_int_eq(bl_vardist_nll(ctx, d, c, &nll), BL_OK);
    ck_assert_int_eq(nll->ndim, 3);
    ck_assert_int_eq(nll->shape[0], 1);
    ck_assert_int_eq(nll->shape[1], 1);
    ck_assert_int_eq(nll->shape[2], 3);
    for (int t = 0; t < 3; t++) {
        double ref = ref_nll(t);
        ck_assert_msg(isfinite(nll->data[t]), "tile %d: nll %g", t, (double)nll->data[t]);
        ck_assert_msg(fabs(nll->data[t] - ref) < 2e-5 * (1 + fabs(ref)), "tile %d: nll %.8g vs ref %.8g", t,
                      (double)nll->data[t], ref);
    }
    /* the empty tile is only the count term: -log(1 - p_on) */
    ck_assert_double_eq_tol(nll->data[2], -log(1 - clampd(sig((bl_real)raw_value(2, 0)), 1e-4, 1 - 1e-4)), 1e-5);

    /* masks, directly: changing what a mask hides changes nothing; changing what it shows does */
    bl_tensor *gf = bl_tile_catalog_require(c, "galaxy_fluxes");
    for (int b = 0; b < NB; b++) gf->data[b] = 1e6f; /* star tile's galaxy fluxes */
    bl_tile_catalog_require(c, "locs")->data[4] = 0.5f; /* empty tile's locs */
    bl_tensor *nll2;
    ck_assert_int_eq(bl_vardist_nll(ctx, d, c, &nll2), BL_OK);
    for (int t = 0; t < 3; t++) ck_assert(nll2->data[t] == nll->data[t]);
    bl_tile_catalog_require(c, "star_fluxes")->data[2] = 1e6f; /* star tile, band r */
    ck_assert_int_eq(bl_vardist_nll(ctx, d, c, &nll2), BL_OK);
    ck_assert(nll2->data[0] > nll->data[0] + 1);
    ck_assert(nll2->data[1] == nll->data[1]);

    /* wrong S or a missing field: errors, not crashes */
    bl_tile_catalog *two = bl_tile_catalog_alloc(1, 1, 3, 2, 4, NB);
    ck_assert_int_eq(bl_vardist_nll(ctx, d, two, &nll2), BL_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "brightest_per_tile"));
    bl_tile_catalog_free(two);
    bl_tile_catalog *bare = bl_tile_catalog_alloc(1, 1, 3, 1, 4, NB);
    ck_assert_int_eq(bl_vardist_nll(ctx, d, bare, &nll2), BL_ERR_ARG);
    ck_assert_ptr_null(nll2);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "no field 'locs' needed by factor 'loc'"));
    bl_tile_catalog_free(bare);
    bl_tile_catalog_free(c);
    bl_vardist_spec_free(s);
}
END_TEST

/* the redshift factor appears in nll and sample with no other change */
START_TEST(test_redshift_factor)
{
    bl_vardist_spec *s = bl_vardist_spec_alloc_sdss(NB, 4);
    bl_vardist_spec *z = bl_vardist_spec_alloc_sdss(NB, 4);
    ck_assert_int_eq(bl_vardist_spec_add(z, &(bl_factor){.name = "redshift", .kind = bl_dist_normal,
                                                          .field = "redshifts", .mask = BL_MASK_ON}),
                     BL_OK);
    bl_tile_catalog *c = three_tiles();
    bl_tensor *zt = bl_tile_catalog_add(c, "redshifts");
    zt->data[0] = 0.62f, zt->data[1] = 1.37f, zt->data[2] = NAN;
    bl_tensor *x38 = make_x(1, 1, 3, 38), *x40 = make_x(1, 1, 3, 40);
    bl_tensor *n38, *n40;
    ck_assert_int_eq(bl_vardist_nll(ctx, bl_vardist_spec_make_dist(ctx, s, x38), c, &n38), BL_OK);
    ck_assert_int_eq(bl_vardist_nll(ctx, bl_vardist_spec_make_dist(ctx, z, x40), c, &n40), BL_OK);
    double zv[2] = {(bl_real)0.62, (bl_real)1.37};
    for (int t = 0; t < 2; t++) {
        double r[2] = {(bl_real)raw_value(t, 38), (bl_real)raw_value(t, 39)};
        ck_assert_double_eq_tol(n40->data[t] - n38->data[t], -ref_normal(r, zv[t]), 1e-4);
    }
    ck_assert(n40->data[2] == n38->data[2]); /* empty tile: no redshift term */

    /* sample(use_mode): redshifts = the normal's mean, raw 38 */
    bl_tile_catalog *m = bl_vardist_sample(bl_vardist_spec_make_dist(ctx, z, x40), 1, 0, 1);
    bl_tensor *mz = bl_tile_catalog_require(m, "redshifts");
    ck_assert_int_eq(mz->ndim, 5);
    ck_assert_int_eq(mz->shape[3], 1);
    ck_assert_int_eq(mz->shape[4], 1);
    for (int t = 0; t < 3; t++) ck_assert(mz->data[t] == x40->data[t * 40 + 38]);
    bl_tile_catalog_free(m);
    bl_tile_catalog_free(c);
    bl_vardist_spec_free(s);
    bl_vardist_spec_free(z);
}
END_TEST

/* bl_vardist_factor_eval on 4 tiles, worked out by hand, then fed to the metrics:
 *   z ~ normal (mask on): raw (0, 0) -> N(0, 1) on tiles 0-2, (1, 2 ln 2) -> N(1, 2) on tile 3;
 *   on ~ bernoulli (always): logit 3 on tiles 0-2, -3 on tile 3.
 * Truth: n_sources (1, 1, 0, 1), z (0.5, 1.5, 7, -1).
 *   z: selected tiles 0, 1, 3; nll = z^2/2 + log s + log(2 pi)/2 with z standardised:
 *      1.0439385, 2.0439385, 0.5 + ln 2 + 0.9189385 = 2.1120857;
 *      CDF 0.6914625, 0.9331928, Phi(-1) = 0.1586553: inside [0.16, 0.84] only tile 0 -> 1/3;
 *      inside [0.025, 0.975] all -> 1.
 *   on: p = sigmoid(3) = 0.9525741; mode 1, 1, 1, 0 vs truth 1, 1, 0, 1 -> hits 1, 1, 0, 0;
 *      nll -log p = 0.0485874 (tiles 0, 1), -log(1 - p) = 3.0485874 (tiles 2, 3) -> mean
 *      1.5485874. */
START_TEST(test_factor_eval)
{
    bl_vardist_spec *s = bl_vardist_spec_alloc(NB, 4);
    ck_assert_int_eq(bl_vardist_spec_add(s, &(bl_factor){.name = "z", .kind = bl_dist_normal, .field = "redshifts",
                                                          .mask = BL_MASK_ON}), BL_OK);
    ck_assert_int_eq(bl_vardist_spec_add(s, &(bl_factor){.name = "on", .kind = bl_dist_bernoulli,
                                                          .field = BL_FIELD_N_SOURCES}), BL_OK);
    bl_tensor *x = bl_zeros(ctx, 4, BL_SHAPE(1, 1, 4, 3));
    for (int t = 0; t < 4; t++) x->data[t * 3 + 2] = t < 3 ? 3 : -3;
    x->data[3 * 3 + 0] = 1;
    x->data[3 * 3 + 1] = (bl_real)(2 * log(2.0));
    bl_tile_catalog *c = bl_tile_catalog_alloc(1, 1, 4, 1, 4, NB);
    bl_tensor *zt = bl_tile_catalog_add(c, "redshifts");
    const int n_src[4] = {1, 1, 0, 1};
    const double z[4] = {0.5, 1.5, 7, -1};
    for (int t = 0; t < 4; t++) c->n_sources[t] = n_src[t], zt->data[t] = (bl_real)z[t];
    bl_vardist *d = bl_vardist_spec_make_dist(ctx, s, x);
    bl_vardist_targets tg;
    ck_assert_int_eq(bl_vardist_targets_make(ctx, s, c, &tg), BL_OK);
    uint8_t sel[4], hit[4];
    double nll[4], pit[4];
    ck_assert_int_eq(bl_vardist_factor_eval(ctx, d, &tg, 0, sel, nll, pit, NULL), BL_OK);
    const uint8_t zsel[4] = {1, 1, 0, 1};
    const double znll[4] = {1.0439385, 2.0439385, 0, 2.1120857}, zpit[4] = {0.6914625, 0.9331928, 0, 0.1586553};
    for (int t = 0; t < 4; t++) {
        ck_assert_int_eq(sel[t], zsel[t]);
        if (!zsel[t]) continue;
        ck_assert_double_eq_tol(nll[t], znll[t], 1e-5);
        ck_assert_double_eq_tol(pit[t], zpit[t], 1e-6);
    }
    bl_metrics_opts o;
    bl_metrics_opts_default(&o);
    bl_metrics *m = bl_metrics_alloc(&o, NB);
    bl_metrics_add_factor(m, &(bl_metrics_factor){.name = "z", .field = "redshifts", .value_dim = 1, .source_type = -1});
    bl_metrics_add_factor(m, &(bl_metrics_factor){.name = "on", .field = "n_sources", .value_dim = 1, .discrete = 1,
                                                  .source_type = -1});
    ck_assert_int_eq(bl_metrics_update_factor_q(m, 0, 4, sel, nll, pit, NULL), BL_OK);
    ck_assert_int_eq(bl_vardist_factor_eval(ctx, d, &tg, 1, sel, nll, pit, hit), BL_OK);
    const uint8_t ohit[4] = {1, 1, 0, 0};
    for (int t = 0; t < 4; t++) {
        ck_assert_int_eq(sel[t], 1);
        ck_assert_int_eq(hit[t], ohit[t]);
        ck_assert(isnan(pit[t])); /* bernoulli: no cdf */
    }
    ck_assert_int_eq(bl_metrics_update_factor_q(m, 1, 4, sel, nll, pit, hit), BL_OK);
    bl_metrics_result r;
    bl_metrics_compute(m, &r);
    ck_assert_int_eq(r.factors[0].n_tiles, 3);
    ck_assert_double_eq_tol(r.factors[0].nll, (1.0439385 + 2.0439385 + 2.1120857) / 3, 1e-5);
    ck_assert_double_eq_tol(r.factors[0].coverage68, 1.0 / 3, 1e-12);
    ck_assert_double_eq_tol(r.factors[0].coverage95, 1.0, 1e-12);
    ck_assert_int_eq(r.factors[1].n_tiles, 4);
    ck_assert_double_eq_tol(r.factors[1].nll, 1.5485874, 1e-5);
    ck_assert_double_eq_tol(r.factors[1].tile_acc, 0.5, 1e-12);
    ck_assert(!r.factors[1].has_cdf);
    bl_metrics_free(m);
    bl_tile_catalog_free(c);
    bl_vardist_spec_free(s);
}
END_TEST

/* sample(use_mode) picks mode or median per factor (docs/behaviour.md §3.4) */
START_TEST(test_sample_use_mode)
{
    bl_vardist_spec *s = bl_vardist_spec_alloc_sdss(NB, 4);
    bl_tensor *x = make_x(2, 2, 3, 38);
    bl_tile_catalog *m = bl_vardist_sample(bl_vardist_spec_make_dist(ctx, s, x), 5, 0, 1);
    ck_assert_int_eq(m->B, 2);
    ck_assert_int_eq(m->ht, 2);
    ck_assert_int_eq(m->wt, 3);
    ck_assert_int_eq(m->S, 1);
    ck_assert_int_eq(m->tile_slen, 4);
    bl_tensor *locs = bl_tile_catalog_require(m, "locs"), *st = bl_tile_catalog_require(m, "source_type");
    bl_tensor *sf = bl_tile_catalog_require(m, "star_fluxes"), *gf = bl_tile_catalog_require(m, "galaxy_fluxes");
    bl_tensor *gp = bl_tile_catalog_require(m, "galaxy_params");
    for (int t = 0; t < 12; t++) {
        const bl_real *r = x->data + t * 38;
        ck_assert_int_eq(m->n_sources[t], r[0] > 0);
        ck_assert_int_eq((int)st->data[t], r[5] > 0);
        ck_assert_double_eq_tol(locs->data[2 * t], sig(r[1]), 1e-6);
        ck_assert_double_eq_tol(locs->data[2 * t + 1], sig(r[2]), 1e-6);
        for (int b = 0; b < NB; b++) {
            double mu = r[18 + 2 * b], s2 = exp(clampd(r[19 + 2 * b], -6, 10));
            ck_assert_double_eq_tol(sf->data[t * NB + b], exp(mu - s2), 1e-5 * exp(mu - s2));  /* mode */
            ck_assert_double_eq_tol(gf->data[t * NB + b], exp(r[28 + 2 * b]), 1e-5 * exp(r[28 + 2 * b])); /* median */
        }
        ck_assert_double_eq_tol(gp->data[t * 6 + 0], sig(r[6]), 1e-6);
        ck_assert_double_eq_tol(gp->data[t * 6 + 1], M_PI * sig(r[8]), 1e-5);
        ck_assert_double_eq_tol(gp->data[t * 6 + 3], exp(r[12]), 1e-5 * exp(r[12]));
    }
    bl_tile_catalog_free(m);
    bl_vardist_spec_free(s);
}
END_TEST

/* draws: frequencies match the factor's probability; same seed same catalog; results do not
 * depend on the thread count */
START_TEST(test_sample_draws)
{
    bl_vardist_spec *s = bl_vardist_spec_alloc_sdss(NB, 4);
    int64_t B = 12, ht = 20, wt = 20, n = B * ht * wt;
    bl_tensor *x = bl_new(ctx, 4, BL_SHAPE(B, ht, wt, 38));
    for (int64_t t = 0; t < n; t++)
        for (int p = 0; p < 38; p++) x->data[t * 38 + p] = (bl_real)raw_value(0, p);
    x->data[0] = 0; /* keep the generic row below for every other tile */
    for (int64_t t = 0; t < n; t++) x->data[t * 38] = 0.37f; /* p_on = sigmoid(0.37) */
    bl_vardist *d = bl_vardist_spec_make_dist(ctx, s, x);
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    bl_tile_catalog *a = bl_vardist_sample(d, 42, 9, 0);
    omp_set_num_threads(2);
    bl_tile_catalog *b = bl_vardist_sample(d, 42, 9, 0);
    omp_set_num_threads(threads);
    bl_tile_catalog *c = bl_vardist_sample(d, 42, 10, 0);
    ck_assert_mem_eq(a->n_sources, b->n_sources, (size_t)n * sizeof(int32_t));
    for (int f = 0; f < a->n_fields; f++)
        ck_assert_mem_eq(a->fields[f].t->data, b->fields[f].t->data, (size_t)a->fields[f].t->numel * sizeof(bl_real));
    ck_assert(memcmp(a->n_sources, c->n_sources, (size_t)n * sizeof(int32_t)) != 0);

    double p = sig(0.37f), on = (double)bl_tile_catalog_total_sources(a) / n;
    ck_assert_msg(fabs(on - p) < 5 * sqrt(p * (1 - p) / n), "on frequency %g vs %g", on, p);
    /* every sampled value lies in its support */
    bl_tensor *locs = bl_tile_catalog_require(a, "locs"), *gp = bl_tile_catalog_require(a, "galaxy_params");
    for (int64_t i = 0; i < locs->numel; i++) ck_assert(locs->data[i] >= 0 && locs->data[i] < 1);
    for (int64_t t = 0; t < n; t++) {
        ck_assert(gp->data[t * 6 + 0] > 0 && gp->data[t * 6 + 0] < 1);
        ck_assert(gp->data[t * 6 + 1] > 0 && gp->data[t * 6 + 1] < M_PI);
        ck_assert(gp->data[t * 6 + 3] > 0);
    }
    /* galaxy_flux_r draws: mean of log = mu (raw 32) within 5 standard errors */
    bl_tensor *gf = bl_tile_catalog_require(a, "galaxy_fluxes");
    double mu = (bl_real)raw_value(0, 32), sd = exp(0.5 * clampd((bl_real)raw_value(0, 33), -6, 10)), sum = 0;
    for (int64_t t = 0; t < n; t++) sum += log(gf->data[t * NB + 2]);
    ck_assert_msg(fabs(sum / n - mu) < 5 * sd / sqrt((double)n), "mean log flux %g vs %g", sum / n, mu);
    bl_tile_catalog_free(a);
    bl_tile_catalog_free(b);
    bl_tile_catalog_free(c);
    bl_vardist_spec_free(s);
}
END_TEST

/* a factor on a field that did not exist: register the field, add the factor; nll and sample
 * pick it up */
START_TEST(test_new_field_factor)
{
    ck_assert_int_eq(bl_catalog_field_register("photo_z_err", 1, 0), BL_OK);
    bl_vardist_spec *s = bl_vardist_spec_alloc_sdss(NB, 4);
    bl_vardist_spec *e = bl_vardist_spec_alloc_sdss(NB, 4);
    ck_assert_int_eq(bl_vardist_spec_add(e, &(bl_factor){.name = "photo_z_err", .kind = bl_dist_lognormal,
                                                          .field = "photo_z_err", .mask = BL_MASK_GALAXY,
                                                          .point = BL_POINT_MEDIAN}),
                     BL_OK);
    bl_tile_catalog *c = three_tiles();
    bl_tensor *pz = bl_tile_catalog_add(c, "photo_z_err");
    pz->data[0] = -1, pz->data[1] = 0.05f, pz->data[2] = -1;
    bl_tensor *n38, *n40, *x40 = make_x(1, 1, 3, 40);
    ck_assert_int_eq(bl_vardist_nll(ctx, bl_vardist_spec_make_dist(ctx, s, make_x(1, 1, 3, 38)), c, &n38), BL_OK);
    bl_vardist *d = bl_vardist_spec_make_dist(ctx, e, x40);
    ck_assert_int_eq(bl_vardist_nll(ctx, d, c, &n40), BL_OK);
    double r[2] = {(bl_real)raw_value(1, 38), (bl_real)raw_value(1, 39)};
    ck_assert(n40->data[0] == n38->data[0]); /* star tile: masked */
    ck_assert_double_eq_tol(n40->data[1] - n38->data[1], -ref_lognormal(r, (double)(bl_real)0.05), 1e-4);
    ck_assert(n40->data[2] == n38->data[2]);
    bl_tile_catalog *m = bl_vardist_sample(d, 1, 0, 1);
    ck_assert_double_eq_tol(bl_tile_catalog_require(m, "photo_z_err")->data[1], exp(r[0]), 1e-5);
    bl_tile_catalog_free(m);
    bl_tile_catalog_free(c);
    bl_vardist_spec_free(s);
    bl_vardist_spec_free(e);
    bl_catalog_fields_reset();
}
END_TEST

/* a mask of the user's: registered with one call, then named in a config entry like a
 * built-in one; the nll counts the factor exactly in the tiles it selects */
static void select_empty(const bl_tile_catalog *cat, uint8_t *out)
{
    for (int64_t t = 0; t < bl_tile_catalog_n_tiles(cat); t++)
        for (int64_t s = 0; s < cat->S; s++) out[t * cat->S + s] = cat->n_sources[t] == 0;
}

START_TEST(test_registered_mask)
{
    static const bl_factor_mask empty = {"empty", select_empty};
    int n0 = bl_factor_mask_count();
    ck_assert_int_eq(n0, 4);
    ck_assert_ptr_eq(bl_factor_mask_find("galaxy"), BL_MASK_GALAXY);
    ck_assert_ptr_null(bl_factor_mask_find("empty"));
    ck_assert_int_eq(bl_factor_mask_register(&empty), BL_OK);
    ck_assert_int_eq(bl_factor_mask_register(&empty), BL_OK); /* the same descriptor again */
    static const bl_factor_mask dup = {"on", select_empty}, unnamed = {NULL, select_empty};
    ck_assert_int_eq(bl_factor_mask_register(&dup), BL_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "factor mask 'on' is already registered"));
    ck_assert_int_eq(bl_factor_mask_register(&unnamed), BL_ERR_ARG);
    ck_assert_int_eq(bl_factor_mask_count(), n0 + 1);
    ck_assert_ptr_eq(bl_factor_mask_at(n0), &empty);

    bl_config *cfg;
    ck_assert_int_eq(bl_config_load_string(&cfg, "factors = ( { name = \"z\"; kind = \"normal\"; "
                                                  "field = \"redshifts\"; mask = \"empty\"; } );", "m.cfg"),
                     BL_OK);
    bl_vardist_spec *s = bl_vardist_spec_alloc_sdss(NB, 4), *z = bl_vardist_spec_alloc_sdss(NB, 4);
    ck_assert_msg(bl_vardist_spec_add_config(z, cfg, "factors") == BL_OK, "%s", bl_error_message());
    ck_assert_int_eq(bl_config_check_unused(cfg), BL_OK);
    bl_config_free(cfg);
    ck_assert_ptr_eq(bl_vardist_spec_find(z, "z")->mask, &empty);
    bl_tile_catalog *c = three_tiles();
    bl_tensor *zt = bl_tile_catalog_add(c, "redshifts");
    zt->data[0] = NAN, zt->data[1] = NAN, zt->data[2] = 0.9f;
    bl_tensor *n38, *n40;
    ck_assert_int_eq(bl_vardist_nll(ctx, bl_vardist_spec_make_dist(ctx, s, make_x(1, 1, 3, 38)), c, &n38), BL_OK);
    ck_assert_int_eq(bl_vardist_nll(ctx, bl_vardist_spec_make_dist(ctx, z, make_x(1, 1, 3, 40)), c, &n40), BL_OK);
    ck_assert(n40->data[0] == n38->data[0]);
    ck_assert(n40->data[1] == n38->data[1]);
    double r[2] = {(bl_real)raw_value(2, 38), (bl_real)raw_value(2, 39)};
    ck_assert_double_eq_tol(n40->data[2] - n38->data[2], -ref_normal(r, (double)(bl_real)0.9), 1e-4);
    /* the factor table prints the mask's name */
    char buf[8192];
    FILE *f = fmemopen(buf, sizeof buf, "w");
    bl_vardist_spec_print(f, z);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(buf, "redshifts[0]       empty"));
    bl_tile_catalog_free(c);
    bl_vardist_spec_free(s);
    bl_vardist_spec_free(z);
}
END_TEST

/* a kind without options refuses option values set in C, naming the factor and the kind */
START_TEST(test_options_of_kinds_without)
{
    bl_vardist_spec *s = bl_vardist_spec_alloc_sdss(NB, 4);
    ck_assert_int_eq(bl_vardist_spec_add(s, &(bl_factor){.name = "z", .kind = bl_dist_normal, .opts = {0, 1},
                                                          .field = "redshifts"}),
                     BL_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "factor 'z': kind 'normal' takes 0 options, but opts[1] = 1"));
    /* a factor without a mask counts everywhere */
    ck_assert_int_eq(bl_vardist_spec_add(s, &(bl_factor){.name = "z", .kind = bl_dist_normal, .field = "redshifts"}),
                     BL_OK);
    ck_assert_ptr_eq(bl_vardist_spec_find(s, "z")->mask, BL_MASK_ALWAYS);
    bl_vardist_spec_free(s);
}
END_TEST

/* ---- config entries ---- */

static bl_status from_config(const char *text, bl_vardist_spec **spec)
{
    bl_config *cfg;
    ck_assert_int_eq(bl_config_load_string(&cfg, text, "bad.cfg"), BL_OK);
    *spec = bl_vardist_spec_alloc_sdss(NB, 4);
    bl_status st = bl_vardist_spec_add_config(*spec, cfg, "factors");
    if (st == BL_OK) ck_assert_int_eq(bl_config_check_unused(cfg), BL_OK);
    bl_config_free(cfg);
    return st;
}

START_TEST(test_config_entry)
{
    bl_vardist_spec *s;
    ck_assert_int_eq(from_config("# the redshift factor, no C code\n"
                                 "factors = (\n"
                                 "  { name = \"redshift\"; kind = \"normal\"; field = \"redshifts\"; mask = \"on\"; }\n"
                                 ");\n",
                                 &s),
                     BL_OK);
    ck_assert_int_eq(bl_vardist_spec_dim(s), 40);
    const bl_factor *f = bl_vardist_spec_find(s, "redshift");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_eq(f->kind, bl_dist_normal);
    ck_assert_str_eq(f->field, "redshifts");
    ck_assert_ptr_eq(f->mask, BL_MASK_ON);
    ck_assert_int_eq(f->point, BL_POINT_MODE);
    ck_assert_int_eq(f->column, 0);
    bl_vardist_spec_free(s);

    /* every key, logitnormal with its range */
    ck_assert_int_eq(from_config("factors = ( { name = \"dust\"; kind = \"logitnormal\"; low = 0.0; high = 2;\n"
                                 "  field = \"galaxy_params\"; column = 5; mask = \"galaxy\"; point = \"median\";\n"
                                 "  offset = 1e-9; dim = 2; } );\n",
                                 &s),
                     BL_OK);
    f = bl_vardist_spec_find(s, "dust");
    ck_assert_double_eq(f->opts[1], 2);
    ck_assert_int_eq(f->column, 5);
    ck_assert_int_eq(f->point, BL_POINT_MEDIAN);
    ck_assert_double_eq(f->offset, 1e-9);
    bl_vardist_spec_free(s);

    /* from a file */
    bl_config *cfg;
    ck_assert_int_eq(bl_config_load(&cfg, BL_DISTS_TEST_DIR "/redshift_factor.cfg"), BL_OK);
    s = bl_vardist_spec_alloc_sdss(NB, 4);
    ck_assert_int_eq(bl_vardist_spec_add_config(s, cfg, "factors"), BL_OK);
    ck_assert_int_eq(bl_vardist_spec_dim(s), 40);
    bl_config_free(cfg);
    bl_vardist_spec_free(s);
}
END_TEST

/* each bad entry: rejected with file:line and the key */
START_TEST(test_config_bad_entries)
{
    struct { const char *text, *where, *key, *what; } cases[] = {
        {"factors = (\n { name = \"z\";\n   kind = \"gamma\";\n   field = \"redshifts\"; }\n);\n",
         "bad.cfg:3", "'factors.[0].kind'", "unknown distribution kind 'gamma'"},
        {"factors = (\n { name = \"z\"; kind = \"normal\";\n   field = \"redshift\"; }\n);\n",
         "bad.cfg:3", "'factors.[0].field'", "unknown catalog field 'redshift'"},
        {"factors = (\n { name = \"z\"; kind = \"normal\"; field = \"redshifts\";\n\n   dim = 3; }\n);\n",
         "bad.cfg:4", "'factors.[0].dim'", "dim = 3 but kind 'normal' has 2"},
        {"factors = (\n { name = \"z\"; kind = \"normal\"; field = \"redshifts\";\n   colour = \"red\"; }\n);\n",
         "bad.cfg:3", "'factors.[0].colour'", "unknown key"},
        {"factors = (\n { name = \"z\"; kind = \"normal\"; field = \"redshifts\"; }, \n"
         " { name = \"w\"; kind = \"normal\"; field = \"redshifts\";\n   colum = 0; }\n);\n",
         "bad.cfg:4", "'factors.[1].colum'", "unknown key"},
        {"factors = (\n { name = \"on_prob\"; kind = \"normal\"; field = \"redshifts\"; }\n);\n",
         "bad.cfg:2", "'factors.[0].name'", "already in the spec"},
        {"factors = (\n { name = \"z\"; kind = \"normal\"; field = \"redshifts\";\n   column = 1; }\n);\n",
         "bad.cfg:3", "'factors.[0].column'", "do not fit"},
        {"factors = (\n { name = \"z\"; kind = \"normal\"; field = \"redshifts\";\n   low = 0.0; }\n);\n",
         "bad.cfg:3", "'factors.[0].low'", "unknown key"},
        {"factors = (\n { name = \"z\"; kind = \"logitnormal\"; field = \"redshifts\"; high = 1.0; }\n);\n",
         "bad.cfg:2", "'factors.[0]'", "kind 'logitnormal' needs the option 'low'"},
        {"factors = (\n { name = \"z\"; kind = \"logitnormal\"; field = \"redshifts\";\n low = 1.0;\n high = 1.0; }\n);\n",
         "bad.cfg:4", "'factors.[0].high'", "low < high"},
        {"factors = (\n { name = \"z\";\n kind = \"logitnorml\"; low = 0.0; high = 1.0; field = \"redshifts\"; }\n);\n",
         "bad.cfg:3", "'factors.[0].kind'", "unknown distribution kind 'logitnorml'"},
        {"factors = (\n { name = \"z\"; kind = \"normal\"; field = \"redshifts\";\n   mask = \"sometimes\"; }\n);\n",
         "bad.cfg:3", "'factors.[0].mask'", "unknown mask 'sometimes' (known: always, on, star, galaxy"},
        {"factors = (\n { name = \"z\"; field = \"redshifts\"; }\n);\n", "bad.cfg:2", "'factors.[0]'",
         "no 'kind'"},
        {"factors = (\n { name = \"z\"; kind = \"normal\"; field = \"redshifts\";\n   column = \"one\"; }\n);\n",
         "bad.cfg:3", "factors.[0].column", "integer"},
        {"factors = 5;\n", "bad.cfg:1", "'factors'", "list"},
        {"factors = (\n { name = \"z\"; kind = \"normal\"; field = \"redshifts\"; },\n 3\n);\n", "bad.cfg:3",
         "'factors.[1]'", "must be a group"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bl_vardist_spec *s;
        ck_assert_int_eq(from_config(cases[i].text, &s), BL_ERR_CONFIG);
        const char *msg = bl_error_message();
        ck_assert_msg(strstr(msg, cases[i].where) && strstr(msg, cases[i].key) && strstr(msg, cases[i].what),
                      "case %zu: message \"%s\" lacks %s / %s / %s", i, msg, cases[i].where, cases[i].key,
                      cases[i].what);
        ck_assert_int_eq(bl_vardist_spec_dim(s), 38 + (i == 4 ? 2 : 0));
        bl_vardist_spec_free(s);
    }

    /* a file: the message names the file */
    bl_config *cfg;
    ck_assert_int_eq(bl_config_load(&cfg, BL_DISTS_TEST_DIR "/bad_factor.cfg"), BL_OK);
    bl_vardist_spec *s = bl_vardist_spec_alloc_sdss(NB, 4);
    ck_assert_int_eq(bl_vardist_spec_add_config(s, cfg, "factors"), BL_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "bad_factor.cfg:6: unknown key 'factors.[0].fields'"));
    bl_config_free(cfg);
    bl_vardist_spec_free(s);
}
END_TEST


/* q's summaries per tile in closed form from varied raw numbers (on_prob = clamped sigmoid,
 * normal sd = exp(logvar / 2), lognormal sigma, tdbn mu = sigmoid); the inapplicable columns of
 * star factors are NaN for galaxies and vice versa, off slots and source_type untouched; a
 * q column that would shadow a field is refused */
START_TEST(test_q_summaries)
{
    bl_vardist_spec *s = bl_vardist_spec_alloc_sdss(NB, 4);
    ck_assert_int_eq(bl_vardist_spec_add(s, &(bl_factor){.name = "redshift", .kind = bl_dist_normal,
                                                         .field = "redshifts", .mask = BL_MASK_ON}), BL_OK);
    ck_assert_int_eq(bl_vardist_q_register(s), BL_OK);
    ck_assert_int_eq(bl_vardist_q_register(s), BL_OK); /* again: the same rows */
    ck_assert_int_eq(bl_catalog_field_width("loc_loc", NB), 2);
    ck_assert_int_eq(bl_catalog_field_width("on_prob", NB), 1);
    ck_assert_int_eq(bl_catalog_field_width("on_prob_loc", NB), -1); /* bernoulli: p only */
    bl_tensor *x = make_x(2, 2, 3, 40);
    x->data[0] = 30; /* p clamps to 1 - 1e-4 */
    bl_vardist *d = bl_vardist_spec_make_dist(ctx, s, x);
    bl_tile_catalog *m = bl_vardist_sample(d, 5, 0, 1);
    bl_vardist_q_fill(d, m);
    const bl_tensor *on = bl_tile_catalog_require(m, "on_prob"), *gp = bl_tile_catalog_require(m, "galaxy_prob");
    const bl_tensor *ll = bl_tile_catalog_require(m, "loc_loc"), *ls = bl_tile_catalog_require(m, "loc_scale");
    const bl_tensor *zl = bl_tile_catalog_require(m, "redshift_loc"), *zs = bl_tile_catalog_require(m, "redshift_scale");
    const bl_tensor *fl = bl_tile_catalog_require(m, "star_flux_r_loc"), *fs = bl_tile_catalog_require(m, "star_flux_r_scale");
    for (int t = 0; t < 12; t++) {
        const bl_real *r = x->data + t * 40;
        ck_assert_double_eq_tol(on->data[t], clampd(sig(r[0]), 1e-4, 1 - 1e-4), 1e-6);
        ck_assert_double_eq_tol(gp->data[t], sig(r[5]), 1e-6);
        for (int c = 0; c < 2; c++) {
            ck_assert_double_eq_tol(ll->data[2 * t + c], sig(r[1 + c]), 1e-6);
            ck_assert_double_eq_tol(ls->data[2 * t + c], exp(clampd(r[3 + c], -6, 3) / 2), 1e-6);
        }
        ck_assert_double_eq_tol(zl->data[t], r[38], 1e-6);
        ck_assert_double_eq_tol(zs->data[t], exp(clampd(r[39], -20, 20) / 2), 1e-5 * zs->data[t]);
        ck_assert_double_eq_tol(fl->data[t], r[22], 1e-6);
        ck_assert_double_eq_tol(fs->data[t], exp(clampd(r[23], -6, 10) / 2), 1e-5 * fs->data[t]);
    }
    ck_assert_double_eq_tol(on->data[0], 1 - 1e-4, 1e-7);
    bl_tile_catalog *before = bl_tile_catalog_copy(m);
    bl_vardist_spec_mark_inapplicable(s, m);
    const bl_tensor *st = bl_tile_catalog_require(m, "source_type"), *sf = bl_tile_catalog_require(m, "star_fluxes");
    const bl_tensor *gf = bl_tile_catalog_require(m, "galaxy_fluxes"), *z = bl_tile_catalog_require(m, "redshifts");
    int n_gal = 0, n_star = 0;
    for (int t = 0; t < 12; t++) {
        const int src_on = m->n_sources[t] > 0, gal = st->data[t] == 1;
        ck_assert(st->data[t] == bl_tile_catalog_require(before, "source_type")->data[t]);
        ck_assert(z->data[t] == bl_tile_catalog_require(before, "redshifts")->data[t]); /* mask on: applies */
        for (int b = 0; b < NB; b++) {
            ck_assert(isnan(sf->data[t * NB + b]) == (src_on && gal));
            ck_assert(isnan(gf->data[t * NB + b]) == (src_on && !gal));
        }
        ck_assert(isnan(fl->data[t]) == (src_on && gal) && isnan(fs->data[t]) == (src_on && gal));
        ck_assert(!isnan(on->data[t]) && !isnan(ll->data[2 * t]));
        n_gal += src_on && gal;
        n_star += src_on && !gal;
    }
    ck_assert(n_gal > 0 && n_star > 0); /* make_x gives both kinds */
    bl_tile_catalog_free(before);
    bl_tile_catalog_free(m);
    /* a bernoulli factor named after a field would write its p into that field */
    bl_vardist_spec *bad = bl_vardist_spec_alloc(NB, 4);
    ck_assert_int_eq(bl_vardist_spec_add(bad, &(bl_factor){.name = "galaxy_probs", .kind = bl_dist_bernoulli,
                                                           .field = "source_type", .mask = BL_MASK_ON}), BL_OK);
    ck_assert_int_eq(bl_vardist_q_register(bad), BL_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "factor 'galaxy_probs': its q column 'galaxy_probs' is already a catalog field"));
    bl_vardist_spec_free(bad);
    bl_vardist_spec_free(s);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("dists_vardist");
    TCase *tc = tcase_create("vardist");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_sdss_table);
    tcase_add_test(tc, test_nll_masks);
    tcase_add_test(tc, test_redshift_factor);
    tcase_add_test(tc, test_factor_eval);
    tcase_add_test(tc, test_sample_use_mode);
    tcase_add_test(tc, test_sample_draws);
    tcase_add_test(tc, test_q_summaries);
    tcase_add_test(tc, test_new_field_factor);
    tcase_add_test(tc, test_registered_mask);
    tcase_add_test(tc, test_options_of_kinds_without);
    tcase_add_test(tc, test_config_entry);
    tcase_add_test(tc, test_config_bad_entries);
    suite_add_tcase(s, tc);
    return bl_check_run(s);
}
