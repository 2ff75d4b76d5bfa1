/* Catalog metrics (lib/eval/metrics.h) on hand-made catalogs; every expected number is worked out
 * in the comments. */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/config.h"
#include "lib/eval/metrics.h"
#include "tests/bl_check.h"

#define EPS 1e-5

typedef struct {
    double row, col;
    int galaxy;
    double flux[3];    /* on flux per band (u, g, r stand-ins), nmgy */
    double params[6];  /* galaxy_params */
    double z;
} src;

/* A full catalog with 3 bands from per-image source lists; the other flux field gets junk so
 * that picking the wrong one shows, and padding slots get a location on top of a real source
 * so that matching an off slot shows. */
/* the result's JSON text parsed back (checks that it is valid JSON) */
static json_t *metrics_json(const bl_metrics_result *r, const char *const *band_names)
{
    char *text = bl_metrics_result_to_json(r, band_names);
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    ck_assert_msg(j != NULL, "invalid JSON (%s): %s", err.text, text);
    free(text);
    return j;
}

static bl_full_catalog *make_cat(int B, int M, const int *n, const src *const *srcs)
{
    bl_full_catalog *c = bl_full_catalog_alloc(B, M, 64, 64, 3);
    bl_tensor *st = bl_full_catalog_add(c, "source_type");
    bl_tensor *sf = bl_full_catalog_add(c, "star_fluxes");
    bl_tensor *gf = bl_full_catalog_add(c, "galaxy_fluxes");
    bl_tensor *gp = bl_full_catalog_add(c, "galaxy_params");
    bl_tensor *z = bl_full_catalog_add(c, "redshifts");
    for (int b = 0; b < B; b++) {
        c->n_sources[b] = n[b];
        for (int m = 0; m < M; m++) {
            int64_t s = (int64_t)b * M + m;
            const src *x = m < n[b] ? &srcs[b][m] : &srcs[b][0];
            if (m >= n[b] && n[b] == 0) continue;
            c->plocs->data[2 * s] = (bl_real)x->row;
            c->plocs->data[2 * s + 1] = (bl_real)x->col;
            st->data[s] = (bl_real)x->galaxy;
            for (int k = 0; k < 3; k++) {
                (x->galaxy ? gf : sf)->data[3 * s + k] = (bl_real)x->flux[k];
                (x->galaxy ? sf : gf)->data[3 * s + k] = 999;
            }
            for (int k = 0; k < 6; k++) gp->data[6 * s + k] = (bl_real)x->params[k];
            z->data[s] = (bl_real)x->z;
        }
    }
    return c;
}

START_TEST(test_metrics_no_sources)
{
    bl_metrics_opts o;
    bl_metrics_opts_default(&o);
    bl_metrics *m = bl_metrics_alloc(&o, 3);
    bl_full_catalog *t = bl_full_catalog_alloc(2, 0, 64, 64, 3), *e = bl_full_catalog_alloc(2, 0, 64, 64, 3);
    ck_assert_int_eq(bl_metrics_update(m, t, e), BL_OK);
    bl_metrics_result r;
    bl_metrics_compute(m, &r);
    ck_assert_int_eq(r.n_true, 0);
    ck_assert_int_eq(r.n_est, 0);
    ck_assert_int_eq(r.n_matches, 0);
    /* 0/0 everywhere: undefined, not 0 or 1 */
    ck_assert(isnan(r.precision) && isnan(r.recall) && isnan(r.f1));
    ck_assert(isnan(r.classification_acc) && isnan(r.flux_mae[2]));
    ck_assert_int_eq(r.n_bins, 9);
    json_t *j = metrics_json(&r, NULL);
    ck_assert(json_is_null(json_object_get(j, "detection_precision")));
    ck_assert(json_is_null(json_object_get(j, "flux_err_band2_mae")));
    ck_assert_int_eq(json_integer_value(json_object_get(j, "n_matches")), 0);
    ck_assert_int_eq((int)json_array_size(json_object_get(j, "bins")), 9);
    json_decref(j);
    bl_full_catalog_free(t);
    bl_full_catalog_free(e);
    bl_metrics_free(m);
}
END_TEST

START_TEST(test_metrics_only_unmatched)
{
    /* two true sources, one estimate 3 px away from both: precision 0/1, recall 0/2, F1 0 */
    const src t0[] = {{10, 10, 0, {1, 1, 10}, {0}, 0}, {10, 16, 1, {1, 1, 10}, {0}, 0}};
    const src e0[] = {{10, 13, 0, {1, 1, 10}, {0}, 0}};
    const src *ts[] = {t0}, *es[] = {e0};
    bl_full_catalog *t = make_cat(1, 2, (int[]){2}, ts), *e = make_cat(1, 1, (int[]){1}, es);
    bl_metrics_opts o;
    bl_metrics_opts_default(&o);
    bl_metrics *m = bl_metrics_alloc(&o, 3);
    ck_assert_int_eq(bl_metrics_update(m, t, e), BL_OK);
    bl_metrics_result r;
    bl_metrics_compute(m, &r);
    ck_assert_int_eq(r.n_true, 2);
    ck_assert_int_eq(r.n_est, 1);
    ck_assert_int_eq(r.n_matches, 0);
    ck_assert_double_eq(r.precision, 0);
    ck_assert_double_eq(r.recall, 0);
    ck_assert_double_eq(r.f1, 0);
    ck_assert(isnan(r.classification_acc));
    /* flux 10 nmgy = mag 20.0: bin (19.8, 20.2] = index 3 */
    ck_assert_int_eq(r.bins[3].n_true, 2);
    ck_assert_int_eq(r.bins[3].n_est, 1);
    /* with a slack of 3 px the estimate matches one of them (a tie: the first true source) */
    o.match.dist_slack = 3.0;
    bl_metrics *m3 = bl_metrics_alloc(&o, 3);
    ck_assert_int_eq(bl_metrics_update(m3, t, e), BL_OK);
    bl_metrics_compute(m3, &r);
    ck_assert_int_eq(r.n_matches, 1);
    ck_assert_double_eq(r.precision, 1);
    ck_assert_double_eq_tol(r.recall, 0.5, 1e-12);
    ck_assert_double_eq_tol(r.f1, 2 * 0.5 / 1.5, 1e-12);
    /* matched to the star (index 0): types agree */
    ck_assert_double_eq(r.classification_acc, 1);
    bl_full_catalog_free(t);
    bl_full_catalog_free(e);
    bl_metrics_free(m);
    bl_metrics_free(m3);
}
END_TEST

/* Two images, 3 bands (band 2 = r).
 * Image 0, truth: T0 star (10,10) r 100 (mag 17.5, bin 0); T1 galaxy (20,20) r 10 (mag 20.0,
 *   bin 3); T2 galaxy (30,30) r 1 (mag 22.5, bin 8).
 * Image 0, est: E0 star (10.5,10) r 90 (17.61, bin 0) ~ T0 (0.5 px); E1 galaxy (20,20.8) r 11
 *   (19.90, bin 3) ~ T1 (0.8 px); E2 star (40,40) r 5 (20.75, bin 5) unmatched.
 * Image 1, truth: U0 galaxy (5,5) r 2 (21.75, bin 7); est: F0 star (5,5.3) r 3 (21.31, bin 6).
 * Matches: T0-E0, T1-E1, U0-F0 -> precision 3/4, recall 3/4, F1 3/4.
 * Types: star-star, gal-gal right, gal-star wrong -> 2/3.
 * Flux |diff| per band: T0-E0 (5, 5, 10), T1-E1 (1, 2, 1), U0-F0 (0, .5, 1)
 *   -> MAE (6/3, 7.5/3, 12/3) = (2, 2.5, 4).
 * Shapes over matched true galaxies T1, U0 (T0 is a star and does not count):
 *   T1-E1 |diff| (.1, .2, 0, 1, .1, .5), U0-F0 (.2, .5, 0, .5, .1, 0)
 *   -> MAE (.15, .35, 0, .75, .1, .25).
 * Factors (bl_metrics_add_factor):
 *   redshift (continuous, every matched pair): diffs -.1, .1, .2 -> MSE .06/3 = .02,
 *     MAE .4/3;
 *   galaxy_prob (discrete, source_type): the type accuracy 2/3;
 *   a_d (continuous, galaxy_params[3], true galaxies): T1-E1 3 vs 2, U0-F0 1 vs 1.5 ->
 *     MSE (1 + .25)/2 = .625, MAE .75 over 2 pairs;
 *   star_flux_r (continuous, star_fluxes[2], true stars): T0-E0 100 vs 90 -> MSE 100, MAE 10;
 *   on_prob (field n_sources): no matched-pair metrics. */
static const src img0_t[] = {
    {10, 10, 0, {50, 80, 100}, {.5, 1, .5, 2, .5, 1}, .1},
    {20, 20, 1, {4, 8, 10}, {.2, 1.0, .6, 3.0, .4, 1.5}, .5},
    {30, 30, 1, {.5, .8, 1}, {.1, .1, .1, .1, .1, .1}, .9},
};
static const src img0_e[] = {
    {10.5, 10, 0, {45, 85, 90}, {.1, .1, .1, .1, .1, .1}, .2},
    {20, 20.8, 1, {5, 6, 11}, {.3, .8, .6, 2.0, .5, 1.0}, .4},
    {40, 40, 0, {2, 4, 5}, {0, 0, 0, 0, 0, 0}, 0},
};
static const src img1_t[] = {{5, 5, 1, {1, 1.5, 2}, {.7, 2.0, .3, 1.0, .9, .5}, 1.2}};
static const src img1_e[] = {{5, 5.3, 0, {1, 2, 3}, {.5, 2.5, .3, 1.5, .8, .5}, 1.0}};

START_TEST(test_metrics_hand_made_batch)
{
    const src *ts[] = {img0_t, img1_t}, *es[] = {img0_e, img1_e};
    bl_full_catalog *t = make_cat(2, 3, (int[]){3, 1}, ts), *e = make_cat(2, 3, (int[]){3, 1}, es);
    bl_metrics_opts o;
    bl_metrics_opts_default(&o);
    bl_metrics *m = bl_metrics_alloc(&o, 3);
    const bl_metrics_factor factors[5] = {
        {.name = "redshift", .field = "redshifts", .value_dim = 1, .source_type = -1},
        {.name = "galaxy_prob", .field = "source_type", .value_dim = 1, .discrete = 1, .source_type = -1},
        {.name = "a_d", .field = "galaxy_params", .column = 3, .value_dim = 1, .source_type = 1},
        {.name = "star_flux_r", .field = "star_fluxes", .column = 2, .value_dim = 1, .source_type = 0},
        {.name = "on_prob", .field = "n_sources", .value_dim = 1, .discrete = 1, .source_type = -1},
    };
    for (int f = 0; f < 5; f++) ck_assert_int_eq(bl_metrics_add_factor(m, &factors[f]), f);
    ck_assert_int_eq(bl_metrics_update(m, t, e), BL_OK);
    bl_metrics_result r;
    bl_metrics_compute(m, &r);
    ck_assert_int_eq(r.n_true, 4);
    ck_assert_int_eq(r.n_est, 4);
    ck_assert_int_eq(r.n_matches, 3);
    ck_assert_double_eq_tol(r.precision, 0.75, 1e-12);
    ck_assert_double_eq_tol(r.recall, 0.75, 1e-12);
    ck_assert_double_eq_tol(r.f1, 0.75, 1e-12);
    ck_assert_double_eq_tol(r.classification_acc, 2.0 / 3.0, 1e-12);
    ck_assert_double_eq_tol(r.flux_mae[0], 2.0, EPS);
    ck_assert_double_eq_tol(r.flux_mae[1], 2.5, EPS);
    ck_assert_double_eq_tol(r.flux_mae[2], 4.0, EPS);
    ck_assert(r.has_shape);
    ck_assert_int_eq(r.n_matched_galaxies, 2);
    const double shape[6] = {.15, .35, 0, .75, .1, .25};
    for (int p = 0; p < 6; p++) ck_assert_double_eq_tol(r.shape_mae[p], shape[p], EPS);
    ck_assert_int_eq(r.n_factors, 5);
    const bl_metrics_factor_result *fz = &r.factors[0], *fg = &r.factors[1], *fa = &r.factors[2],
                                   *fs = &r.factors[3], *fo = &r.factors[4];
    ck_assert_str_eq(fz->name, "redshift");
    ck_assert(fz->has_field && fz->n_matched == 3);
    ck_assert_double_eq_tol(fz->mse, 0.02, EPS);
    ck_assert_double_eq_tol(fz->mae, 0.4 / 3, EPS);
    ck_assert(isnan(fz->acc));
    ck_assert(fg->has_field && fg->n_matched == 3);
    ck_assert_double_eq_tol(fg->acc, 2.0 / 3.0, 1e-12);
    ck_assert(isnan(fg->mse));
    ck_assert_int_eq(fa->n_matched, 2);
    ck_assert_double_eq_tol(fa->mse, 0.625, EPS);
    ck_assert_double_eq_tol(fa->mae, 0.75, EPS);
    ck_assert_int_eq(fs->n_matched, 1);
    ck_assert_double_eq_tol(fs->mse, 100, 1e-3);
    ck_assert_double_eq_tol(fs->mae, 10, 1e-4);
    ck_assert(!fo->has_field && fo->n_matched == 0 && fo->n_tiles == 0);
    /* bins: true in 0, 3, 7, 8; est in 0, 3, 5, 6; matched true 0, 3, 7; matched est 0, 3, 6 */
    const int nt[9] = {1, 0, 0, 1, 0, 0, 0, 1, 1}, ne[9] = {1, 0, 0, 1, 0, 1, 1, 0, 0};
    const int ntm[9] = {1, 0, 0, 1, 0, 0, 0, 1, 0}, nem[9] = {1, 0, 0, 1, 0, 0, 1, 0, 0};
    for (int k = 0; k < 9; k++) {
        ck_assert_int_eq(r.bins[k].n_true, nt[k]);
        ck_assert_int_eq(r.bins[k].n_est, ne[k]);
        ck_assert_int_eq(r.bins[k].n_true_matched, ntm[k]);
        ck_assert_int_eq(r.bins[k].n_est_matched, nem[k]);
    }
    ck_assert(isinf(r.bins[0].lo) && r.bins[0].hi == 19);
    ck_assert(r.bins[3].lo == 19.8 && r.bins[3].hi == 20.2);
    ck_assert_double_eq(r.bins[5].precision, 0);   /* E2 unmatched */
    ck_assert_double_eq(r.bins[8].recall, 0);      /* T2 unmatched */
    ck_assert_double_eq(r.bins[7].recall, 1);
    ck_assert(isnan(r.bins[7].precision));         /* no estimate in (21.4, 21.8] */

    /* exclude_last_bin drops T2 (bin 8) from the totals: recall 3/3, precision 3/4,
     * F1 = 2 * .75 * 1 / 1.75 = 6/7 */
    o.exclude_last_bin = 1;
    bl_metrics *mx = bl_metrics_alloc(&o, 3);
    ck_assert_int_eq(bl_metrics_update(mx, t, e), BL_OK);
    bl_metrics_compute(mx, &r);
    ck_assert_double_eq_tol(r.recall, 1.0, 1e-12);
    ck_assert_double_eq_tol(r.precision, 0.75, 1e-12);
    ck_assert_double_eq_tol(r.f1, 6.0 / 7.0, 1e-12);

    /* accumulating the same batch twice changes no ratio; reset forgets */
    ck_assert_int_eq(bl_metrics_update(m, t, e), BL_OK);
    bl_metrics_compute(m, &r);
    ck_assert_int_eq(r.n_matches, 6);
    ck_assert_double_eq_tol(r.precision, 0.75, 1e-12);
    ck_assert_double_eq_tol(r.flux_mae[2], 4.0, EPS);
    ck_assert_double_eq_tol(r.factors[0].mse, 0.02, EPS);
    bl_metrics_reset(m);
    bl_metrics_compute(m, &r);
    ck_assert_int_eq(r.n_matches, 0);
    ck_assert_int_eq(r.n_factors, 5); /* still tracked, counts gone */
    ck_assert_str_eq(r.factors[3].name, "star_flux_r");
    ck_assert(!r.factors[0].has_field && isnan(r.factors[0].mse));
    ck_assert_int_eq(bl_metrics_update(m, t, e), BL_OK);
    bl_metrics_compute(m, &r);
    ck_assert_double_eq_tol(r.factors[2].mae, 0.75, EPS);
    char *text = bl_metrics_result_to_json(&r, NULL);
    json_error_t jerr;
    json_t *jf = json_loads(text, 0, &jerr);
    free(text);
    ck_assert_ptr_nonnull(jf);
    json_t *jfs = json_object_get(jf, "factors");
    ck_assert_double_eq_tol(json_real_value(json_object_get(json_object_get(jfs, "redshift"), "mse")), 0.02, EPS);
    ck_assert_double_eq_tol(json_real_value(json_object_get(json_object_get(jfs, "galaxy_prob"), "acc")), 2.0 / 3.0, 1e-9);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(jfs, "a_d"), "n_matched")), 2);
    ck_assert_ptr_null(json_object_get(json_object_get(jfs, "redshift"), "nll")); /* q not fed */
    ck_assert_ptr_null(json_object_get(jfs, "on_prob"));                        /* nothing at all */
    json_decref(jf);

    /* no magnitude band: every magnitude is 1, all sources in bin 0 */
    o.exclude_last_bin = 0;
    o.mag_band = BL_METRICS_NO_BAND;
    bl_metrics *mn = bl_metrics_alloc(&o, 3);
    ck_assert_int_eq(bl_metrics_update(mn, t, e), BL_OK);
    bl_metrics_compute(mn, &r);
    ck_assert_int_eq(r.bins[0].n_true, 4);
    ck_assert_int_eq(r.bins[0].n_est_matched, 3);
    ck_assert_double_eq_tol(r.precision, 0.75, 1e-12);

    /* mag_slack 0.5 in r: T0-E0 differ by 0.114 mag (kept), T1-E1 by 0.103 (kept), U0-F0 by
     * 0.44 (kept); with 0.2 U0-F0 is dropped */
    o.mag_band = 2;
    o.match.mag_slack = 0.2;
    bl_metrics *ms = bl_metrics_alloc(&o, 3);
    ck_assert_int_eq(bl_metrics_update(ms, t, e), BL_OK);
    bl_metrics_compute(ms, &r);
    ck_assert_int_eq(r.n_matches, 2);
    ck_assert_double_eq_tol(r.classification_acc, 1.0, 1e-12);

    json_t *j = metrics_json(&r, (const char *const[]){"u", "g", "r"});
    ck_assert_double_eq_tol(json_real_value(json_object_get(j, "detection_precision")), 0.5, 1e-12);
    ck_assert_ptr_nonnull(json_object_get(j, "flux_err_r_mae"));
    ck_assert_ptr_nonnull(json_object_get(j, "a_d_mae"));
    /* no factor tracked in ms: an empty "factors" object */
    ck_assert_int_eq(json_object_size(json_object_get(j, "factors")), 0);
    json_decref(j);

    bl_full_catalog_free(t);
    bl_full_catalog_free(e);
    bl_metrics_free(m);
    bl_metrics_free(mx);
    bl_metrics_free(mn);
    bl_metrics_free(ms);
}
END_TEST

START_TEST(test_metrics_factor_q)
{
    /* factor 0 continuous (value_dim 1), factor 1 discrete, factor 2 continuous without a CDF.
     * 5 tiles, sel (1, 0, 1, 1, 1); nll (1, 99, 2, 3, 6) -> mean over 4 selected = 3.
     * pit (0.5, 0.0, 0.16, 0.83, 0.975): selected 0.5, 0.16, 0.83, 0.975;
     *   inside [0.16, 0.84]: 0.5, 0.16, 0.83 -> 3/4; inside [0.025, 0.975]: all 4 -> 1.
     * hit (1, 1, 0, 1, 1) on the selected tiles 1, 0, 1, 1 -> 3/4. */
    bl_metrics_opts o;
    bl_metrics_opts_default(&o);
    bl_metrics *m = bl_metrics_alloc(&o, 3);
    bl_metrics_add_factor(m, &(bl_metrics_factor){.name = "z", .field = "redshifts", .value_dim = 1, .source_type = -1});
    bl_metrics_add_factor(m, &(bl_metrics_factor){.name = "on", .field = "n_sources", .value_dim = 1, .discrete = 1, .source_type = -1});
    bl_metrics_add_factor(m, &(bl_metrics_factor){.name = "w", .field = "redshifts", .value_dim = 1, .source_type = -1});
    const uint8_t sel[5] = {1, 0, 1, 1, 1}, hit[5] = {1, 1, 0, 1, 1};
    const double nll[5] = {1, 99, 2, 3, 6}, pit[5] = {0.5, 0.0, 0.16, 0.83, 0.975};
    const double nopit[5] = {NAN, NAN, NAN, NAN, NAN};
    ck_assert_int_eq(bl_metrics_update_factor_q(m, 0, 5, sel, nll, pit, NULL), BL_OK);
    ck_assert_int_eq(bl_metrics_update_factor_q(m, 1, 5, sel, nll, NULL, hit), BL_OK);
    ck_assert_int_eq(bl_metrics_update_factor_q(m, 2, 5, sel, nll, nopit, NULL), BL_OK);
    bl_metrics_result r;
    bl_metrics_compute(m, &r);
    ck_assert_int_eq(r.factors[0].n_tiles, 4);
    ck_assert_double_eq_tol(r.factors[0].nll, 3.0, 1e-12);
    ck_assert(r.factors[0].has_cdf);
    ck_assert_double_eq_tol(r.factors[0].coverage68, 0.75, 1e-12);
    ck_assert_double_eq_tol(r.factors[0].coverage95, 1.0, 1e-12);
    ck_assert(r.factors[1].has_hit);
    ck_assert_double_eq_tol(r.factors[1].tile_acc, 0.75, 1e-12);
    ck_assert(!r.factors[2].has_cdf && isnan(r.factors[2].coverage68));
    /* JSON: coverage "n/a" for the factor without a CDF, tile_acc for the discrete one */
    json_t *j = metrics_json(&r, NULL), *jf = json_object_get(j, "factors");
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(jf, "w"), "coverage_68")), "n/a");
    ck_assert_double_eq_tol(json_real_value(json_object_get(json_object_get(jf, "z"), "coverage_68")), 0.75, 1e-12);
    ck_assert_double_eq_tol(json_real_value(json_object_get(json_object_get(jf, "on"), "tile_acc")), 0.75, 1e-12);
    ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(jf, "z"), "n_tiles")), 4);
    json_decref(j);
    /* the printed q table says n/a and the numbers */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    bl_metrics_print_q_table(f, &r);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(buf, "n/a"));
    ck_assert_ptr_nonnull(strstr(buf, "0.75"));
    free(buf);
    /* a non-finite NLL on a selected tile is an error naming the factor and tile; on an
     * unselected one it is ignored */
    const double bad[5] = {1, INFINITY, 2, NAN, 6};
    ck_assert_int_eq(bl_metrics_update_factor_q(m, 0, 5, sel, bad, pit, NULL), BL_ERR_RANGE);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "'z'"));
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "tile 3"));
    const double ok[5] = {1, INFINITY, 2, 3, 6};
    ck_assert_int_eq(bl_metrics_update_factor_q(m, 0, 5, sel, ok, pit, NULL), BL_OK);
    bl_metrics_free(m);
}
END_TEST

/* The state adds up over disjoint parts of a dataset (how evaluate sums the metrics of several
 * processes): part A = the hand-made batch, part B = the same batch and the redshift NLL of
 * test_metrics_redshift_nll; A + B set into a fresh bl_metrics computes what one bl_metrics
 * fed all of it computes. */
START_TEST(test_metrics_state_sums)
{
    /* the state of two parts added up gives the metrics of the whole: matching counts, flux
     * and shape errors, a factor's matched-pair errors and its q metrics */
    const src *ts[] = {img0_t, img1_t}, *es[] = {img0_e, img1_e};
    bl_full_catalog *t = make_cat(2, 3, (int[]){3, 1}, ts), *e = make_cat(2, 3, (int[]){3, 1}, es);
    const uint8_t sel[5] = {1, 0, 1, 1, 1};
    const double nll[5] = {1, 99, 2, 3, 6}, pit[5] = {0.5, 0.0, 0.16, 0.83, 0.975};
    bl_metrics_opts o;
    bl_metrics_opts_default(&o);
    bl_metrics *whole = bl_metrics_alloc(&o, 3), *a = bl_metrics_alloc(&o, 3), *b = bl_metrics_alloc(&o, 3);
    bl_metrics *sum = bl_metrics_alloc(&o, 3);
    bl_metrics *all[4] = {whole, a, b, sum};
    for (int k = 0; k < 4; k++)
        bl_metrics_add_factor(all[k], &(bl_metrics_factor){.name = "z", .field = "redshifts", .value_dim = 1,
                                                           .source_type = -1});
    ck_assert_int_eq(bl_metrics_update(whole, t, e), BL_OK);
    ck_assert_int_eq(bl_metrics_update(whole, t, e), BL_OK);
    ck_assert_int_eq(bl_metrics_update_factor_q(whole, 0, 5, sel, nll, pit, NULL), BL_OK);
    ck_assert_int_eq(bl_metrics_update(a, t, e), BL_OK);
    ck_assert_int_eq(bl_metrics_update(b, t, e), BL_OK);
    ck_assert_int_eq(bl_metrics_update_factor_q(b, 0, 5, sel, nll, pit, NULL), BL_OK);
    int64_t ia[BL_METRICS_STATE_INTS], ib[BL_METRICS_STATE_INTS];
    double da[BL_METRICS_STATE_SUMS], db[BL_METRICS_STATE_SUMS];
    bl_metrics_get_state(a, ia, da);
    bl_metrics_get_state(b, ib, db);
    for (int k = 0; k < BL_METRICS_STATE_INTS; k++) ia[k] += ib[k];
    for (int k = 0; k < BL_METRICS_STATE_SUMS; k++) da[k] += db[k];
    bl_metrics_set_state(sum, ia, da);
    bl_metrics_result *r = malloc(2 * sizeof *r);
    ck_assert_ptr_nonnull(r);
    bl_metrics_compute(whole, &r[0]);
    bl_metrics_compute(sum, &r[1]);
    const bl_metrics_result *rw = &r[0], *rs = &r[1];
    ck_assert_int_eq(rs->n_matches, 6);
    ck_assert(rs->has_shape);
    ck_assert_int_eq(rs->n_true, rw->n_true);
    ck_assert_int_eq(rs->n_est_matched, rw->n_est_matched);
    ck_assert_int_eq(rs->n_matched_galaxies, rw->n_matched_galaxies);
    for (int k = 0; k < rw->n_bins; k++) {
        ck_assert_int_eq(rs->bins[k].n_true, rw->bins[k].n_true);
        ck_assert_int_eq(rs->bins[k].n_est, rw->bins[k].n_est);
        ck_assert_int_eq(rs->bins[k].n_true_matched, rw->bins[k].n_true_matched);
        ck_assert_int_eq(rs->bins[k].n_est_matched, rw->bins[k].n_est_matched);
    }
    ck_assert_double_eq_tol(rs->precision, rw->precision, 1e-15);
    ck_assert_double_eq_tol(rs->classification_acc, rw->classification_acc, 1e-15);
    for (int k = 0; k < 3; k++) ck_assert_double_eq_tol(rs->flux_mae[k], rw->flux_mae[k], 1e-12);
    for (int p = 0; p < 6; p++) ck_assert_double_eq_tol(rs->shape_mae[p], rw->shape_mae[p], 1e-12);
    const bl_metrics_factor_result *fw = &rw->factors[0], *fs = &rs->factors[0];
    ck_assert(fs->has_field && fw->has_field);
    ck_assert_int_eq(fs->n_matched, fw->n_matched);
    ck_assert_int_gt(fs->n_matched, 0);
    ck_assert_double_eq_tol(fs->mse, fw->mse, 1e-15);
    ck_assert_double_eq_tol(fs->mae, fw->mae, 1e-15);
    ck_assert_int_eq(fs->n_tiles, 4);
    ck_assert_double_eq_tol(fs->nll, 3.0, 1e-12);
    ck_assert_double_eq_tol(fs->coverage68, 0.75, 1e-12);
    ck_assert_double_eq_tol(fs->coverage95, 1.0, 1e-12);
    free(r);
    bl_full_catalog_free(t);
    bl_full_catalog_free(e);
    for (int k = 0; k < 4; k++) bl_metrics_free(all[k]);
}
END_TEST

START_TEST(test_metrics_opts_from_config)
{
    bl_config *cfg;
    bl_metrics_opts o;
    ck_assert_int_eq(bl_config_load_string(&cfg, "metrics: { dist_slack = 2.0; mag_cutoffs = [20.0, 21.0]; exclude_last_bin = true; };", "m.cfg"), BL_OK);
    ck_assert_int_eq(bl_metrics_opts_from_config(cfg, "metrics", 5, &o), BL_OK);
    ck_assert_double_eq(o.match.dist_slack, 2.0);
    ck_assert_int_eq(o.n_cutoffs, 2);
    ck_assert_int_eq(o.mag_band, 2);
    ck_assert(o.exclude_last_bin);
    ck_assert_int_eq(bl_config_check_unused(cfg), BL_OK);
    bl_config_free(cfg);

    ck_assert_int_eq(bl_config_load_string(&cfg, "metrics: {\n  mag_band = 5;\n};", "m.cfg"), BL_OK);
    ck_assert_int_eq(bl_metrics_opts_from_config(cfg, "metrics", 5, &o), BL_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "m.cfg:2"));
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "mag_band"));
    bl_config_free(cfg);

    ck_assert_int_eq(bl_config_load_string(&cfg, "metrics: {\n  mag_cutoffs = [21.0, 20.0];\n};", "m.cfg"), BL_OK);
    ck_assert_int_eq(bl_metrics_opts_from_config(cfg, "metrics", 5, &o), BL_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "increasing"));
    bl_config_free(cfg);

    ck_assert_int_eq(bl_config_load_string(&cfg, "metrics: {\n  dist_slack = -1.0;\n};", "m.cfg"), BL_OK);
    ck_assert_int_eq(bl_metrics_opts_from_config(cfg, "metrics", 5, &o), BL_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "dist_slack"));
    bl_config_free(cfg);

    ck_assert_int_eq(bl_config_load_string(&cfg, "metrics: { mag_band = -1; mag_slack = 0.5; };", "m.cfg"), BL_OK);
    ck_assert_int_eq(bl_metrics_opts_from_config(cfg, "metrics", 5, &o), BL_ERR_CONFIG);
    bl_config_free(cfg);
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_metrics_no_sources);
    tcase_add_test(tc, test_metrics_only_unmatched);
    tcase_add_test(tc, test_metrics_hand_made_batch);
    tcase_add_test(tc, test_metrics_factor_q);
    tcase_add_test(tc, test_metrics_state_sums);
    tcase_add_test(tc, test_metrics_opts_from_config);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bl_check_run(metrics_suite()); }
