/* The researcher's workflow around a new latent quantity, end to end with the bliss binary:
 * configs/new_field.cfg (a catalog field and a factor from the config alone) through generate
 * -> train -> predict; predict's uncertainty columns, sampled catalogs, FITS headers and WCS
 * on an encoder whose output layer is made constant (every tile's q is then known). */
#include <fitsio.h>
#include <math.h>
#include <png.h>

#include "dists/vardist.h"
#include "lib/io/atomic_file.h"
#include "lib/io/fits.h"
#include "lib/io/plot.h"
#include "lib/io/safetensors.h"
#include "lib/sim/simulate.h"
#include "tests/bl_check.h"

#include "cli_run.h"

static char dir[256];
static cli_result r;

static const char *p(const char *name) { return cli_path(dir, name); }

static void setup(void)
{
    bl_check_tmpdir(dir, sizeof dir, "bl_test_predict");
    cli_link_configs(dir);
}

static void teardown(void) { cli_rmtree(dir); }

/* the spec of configs/new_field.cfg, as the CLI builds it (the field registered as its
 * `fields` entry does) */
static bl_vardist_spec *new_field_spec(void)
{
    ck_assert_int_eq(bl_catalog_field_register("photo_z_err", 1, 0), BL_OK);
    bl_config *cfg;
    ck_assert_msg(bl_config_load(&cfg, p("new_field.cfg")) == BL_OK, "%s", bl_error_message());
    bl_vardist_spec *spec = bl_vardist_spec_alloc_sdss(5, 4);
    ck_assert_msg(bl_vardist_spec_add_config(spec, cfg, "factors") == BL_OK, "%s", bl_error_message());
    bl_config_free(cfg);
    ck_assert_int_eq(spec->dim, 42);
    return spec;
}

/* a float tensor of a safetensors file, as doubles (numel returned) */
static int64_t st_floats(const bl_safetensors *st, const char *name, double **out, int64_t *shape, int *ndim)
{
    const bl_st_tensor *t = bl_safetensors_find(st, name);
    ck_assert_msg(t != NULL, "no tensor %s", name);
    *out = malloc((size_t)t->numel * sizeof(double) + 1);
    for (int64_t i = 0; i < t->numel; i++)
        (*out)[i] = t->dtype == BL_DTYPE_F32 ? ((const float *)t->data)[i] : (double)((const int64_t *)t->data)[i];
    if (shape) memcpy(shape, t->shape, (size_t)t->ndim * sizeof(int64_t));
    if (ndim) *ndim = t->ndim;
    return t->numel;
}

/* ---- the worked example of docs/factors.md ------------------------------------------------ */

START_TEST(test_new_field_example)
{
    cli_run(&r, dir, "factors", "-c", "new_field.cfg", NULL);
    ck_assert_msg(r.status == 0, "factors: %s", r.err);
    ck_assert_has(r.out, "photo_z_err          lognormal               2  40-41    photo_z_err[0]     galaxy  median");
    ck_assert_has(r.out, "total P = 42");
    cli_run(&r, dir, "generate", "-c", "new_field.cfg", "-o", "ds", "--fits", "--threads", "1", NULL);
    ck_assert_msg(r.status == 0, "generate: %s", r.err);
    ck_assert_int_eq(bl_catalog_field_register("photo_z_err", 1, 0), BL_OK); /* to read the shards */
    /* the field in every shard: (B, ht, wt, S, 1), Gamma(4, rate 80) values (mean 0.05, sd 0.025) */
    double sum = 0;
    int64_t n = 0;
    for (int f = 0; f < 2; f++) {
        char name[64];
        snprintf(name, sizeof name, "ds/shard_%04d.safetensors", f);
        bl_sim_batch *b;
        ck_assert_msg(bl_sim_batch_read(&b, p(name)) == BL_OK, "%s", bl_error_message());
        const bl_tensor *z = bl_tile_catalog_get(b->tile_catalog, "photo_z_err");
        ck_assert_ptr_nonnull(z);
        ck_assert_int_eq(z->ndim, 5);
        ck_assert(z->shape[0] == 4 && z->shape[1] == 4 && z->shape[2] == 4 && z->shape[3] == 1 && z->shape[4] == 1);
        for (int64_t i = 0; i < z->numel; i++) {
            ck_assert(z->data[i] > 0 && z->data[i] < 0.5);
            sum += z->data[i];
        }
        n += z->numel;
        /* the FITS export has the column, one row per on source, the same values */
        snprintf(name, sizeof name, "ds/shard_%04d.fits", f);
        bl_full_catalog *fc;
        ck_assert_msg(bl_fits_read_catalog(p(name), &fc) == BL_OK, "%s", bl_error_message());
        bl_full_catalog *tc = bl_tile_catalog_to_full(b->tile_catalog);
        const bl_tensor *a = bl_full_catalog_require(fc, "photo_z_err"), *e = bl_full_catalog_require(tc, "photo_z_err");
        int64_t rows = 0;
        for (int64_t i = 0; i < fc->B; i++)
            for (int64_t m = 0; m < fc->n_sources[i]; m++, rows++)
                ck_assert(a->data[i * fc->M + m] == e->data[i * tc->M + m]);
        ck_assert_int_eq(rows, bl_tile_catalog_total_sources(b->tile_catalog));
        bl_full_catalog_free(fc);
        bl_full_catalog_free(tc);
        bl_sim_batch_free(b);
    }
    ck_assert_int_eq(n, 128);
    ck_assert_msg(fabs(sum / (double)n - 0.05) < 4 * 0.025 / sqrt((double)n), "mean %g", sum / (double)n);

    cli_run(&r, dir, "train", "-c", "new_field.cfg", "--data", "ds", "-o", "run", "--max-steps", "2",
            "--threads", "1", NULL);
    ck_assert_msg(r.status == 0, "train: %s\n%s", r.err, r.out);
    ck_assert_has(r.out, "train 2/2");
    /* predict from the checkpoint alone: its recorded config defines the field */
    cli_run(&r, dir, "predict", "--checkpoint", "run/last.safetensors", "-i", "ds/shard_0000.fits", "-o", "pred",
            NULL);
    ck_assert_msg(r.status == 0, "predict: %s", r.err);
    bl_safetensors *st;
    ck_assert_int_eq(bl_safetensors_read(&st, p("pred.safetensors")), BL_OK);
    double *v, *loc, *gal;
    int64_t shape[8];
    int ndim;
    int64_t k = st_floats(st, "tile_catalog.photo_z_err", &v, shape, &ndim);
    ck_assert_int_eq(ndim, 5);
    ck_assert(shape[0] == 4 && shape[1] == 2 && shape[2] == 2 && shape[3] == 1 && shape[4] == 1);
    st_floats(st, "tile_catalog.photo_z_err_loc", &loc, NULL, NULL);
    st_floats(st, "tile_catalog.source_type", &gal, NULL, NULL);
    double *ns;
    st_floats(st, "tile_catalog.n_sources", &ns, NULL, NULL);
    for (int64_t i = 0; i < k; i++) {
        if (ns[i] > 0 && gal[i] == 0) { /* a predicted star: the galaxy factor does not apply */
            ck_assert(isnan(v[i]) && isnan(loc[i]));
        } else { /* q's median exp(mu) */
            ck_assert(v[i] > 0);
            ck_assert_double_eq_tol(v[i], exp(loc[i]), 1e-6 * v[i]);
        }
    }
    free(v);
    free(loc);
    free(gal);
    free(ns);
    bl_safetensors_free(st);
    /* the FITS table has the column */
    fitsfile *f;
    int status = 0, col = 0;
    ck_assert_int_eq(fits_open_file(&f, p("pred.fits"), READONLY, &status), 0);
    ck_assert_int_eq(fits_movnam_hdu(f, BINARY_TBL, "CATALOG", 0, &status), 0);
    ck_assert_int_eq(fits_get_colnum(f, CASEINSEN, "photo_z_err", &col, &status), 0);
    ck_assert_int_eq(fits_get_colnum(f, CASEINSEN, "photo_z_err_scale", &col, &status), 0);
    fits_close_file(f, &status);
}
END_TEST

/* ---- predict on an encoder with a constant output layer ------------------------------------- */

#define P 42
/* every tile's raw output is `bias`: zero weights in both output layers (marginal and
 * checkerboard), so q is the same known distribution in every tile */
static void make_constant(const char *in, const char *out, const double *bias)
{
    bl_safetensors *st;
    ck_assert_int_eq(bl_safetensors_read(&st, in), BL_OK);
    int changed = 0;
    for (int i = 0; i < st->n; i++) {
        bl_st_tensor *t = &st->tensors[i];
        if (strncmp(t->name, "optimizer.", 10) == 0) continue;
        size_t L = strlen(t->name);
        int is_w = L > 20 && strcmp(t->name + L - 20, "net_ml.6.conv.weight") == 0;
        int is_b = L > 18 && strcmp(t->name + L - 18, "net_ml.6.conv.bias") == 0;
        if (!is_w && !is_b) continue;
        ck_assert_int_eq(t->dtype, BL_DTYPE_F32);
        ck_assert_int_eq(t->shape[0], P);
        for (int64_t j = 0; j < t->numel; j++) ((float *)t->data)[j] = is_w ? 0.0f : (float)bias[j];
        changed++;
    }
    ck_assert_int_eq(changed, 4);
    ck_assert_int_eq(bl_safetensors_write(st, out), BL_OK);
    bl_safetensors_free(st);
}

static double sigmoid(double x) { return 1 / (1 + exp(-x)); }

/* one column of the current FITS table as doubles (NaN kept) */
static void fits_col(fitsfile *f, const char *name, int64_t nrows, int repeat, double *out)
{
    int status = 0, col = 0;
    ck_assert_msg(fits_get_colnum(f, CASEINSEN, (char *)name, &col, &status) == 0, "no column %s", name);
    double nul = 0;
    int any = 0;
    ck_assert_int_eq(fits_read_col(f, TDOUBLE, col, 1, 1, (LONGLONG)(nrows * repeat), &nul, out, &any, &status), 0);
}

static void key_str(fitsfile *f, const char *key, char *val)
{
    int status = 0;
    ck_assert_msg(fits_read_key(f, TSTRING, key, val, NULL, &status) == 0, "no keyword %s", key);
}

/* q's loc/scale columns of every factor equal the in-library computation on the bias; the
 * point estimates follow; the columns of the factors whose mask does not select the predicted
 * type are NaN (all galaxies when galaxy = 1, all stars otherwise) */
static void check_constant_prediction(const bl_vardist_spec *spec, const double *bias, int galaxy,
                                      const char *file)
{
    bl_safetensors *st;
    ck_assert_int_eq(bl_safetensors_read(&st, p(file)), BL_OK);
    double *ns, *v;
    int64_t nt = st_floats(st, "tile_catalog.n_sources", &ns, NULL, NULL);
    ck_assert_int_eq(nt, 16);
    for (int64_t t = 0; t < nt; t++) ck_assert(ns[t] == 1); /* sigmoid(2) > 1/2 everywhere */
    free(ns);
    st_floats(st, "tile_catalog.on_prob", &v, NULL, NULL);
    for (int64_t t = 0; t < nt; t++) ck_assert_double_eq_tol(v[t], sigmoid(bias[0]), 1e-6);
    free(v);
    st_floats(st, "tile_catalog.galaxy_prob", &v, NULL, NULL);
    for (int64_t t = 0; t < nt; t++) ck_assert_double_eq_tol(v[t], sigmoid(bias[5]), 1e-6);
    free(v);
    st_floats(st, "tile_catalog.source_type", &v, NULL, NULL);
    for (int64_t t = 0; t < nt; t++) ck_assert(v[t] == galaxy);
    free(v);
    for (int i = 0; i < spec->n_factors; i++) {
        const bl_factor *g = &spec->factors[i];
        if (g->kind == bl_dist_bernoulli) continue;
        const int vd = g->kind->value_dim;
        const int applies = g->mask == BL_MASK_ON || (g->mask == BL_MASK_GALAXY) == galaxy;
        bl_real raw[4];
        for (int j = 0; j < g->kind->dim; j++) raw[j] = (bl_real)(float)bias[spec->raw_offset[i] + j];
        double eloc[2], escale[2];
        ck_assert_int_eq(bl_dist_kind_loc_scale(g->kind, g->opts, raw, eloc, escale), BL_OK);
        char name[128];
        double *loc, *scale, *field;
        snprintf(name, sizeof name, "tile_catalog.%s_loc", g->name);
        st_floats(st, name, &loc, NULL, NULL);
        snprintf(name, sizeof name, "tile_catalog.%s_scale", g->name);
        st_floats(st, name, &scale, NULL, NULL);
        snprintf(name, sizeof name, "tile_catalog.%s", g->field);
        int64_t shape[8];
        int ndim;
        st_floats(st, name, &field, shape, &ndim);
        const int k = (int)shape[ndim - 1];
        bl_real point[2];
        if (g->point == BL_POINT_MEDIAN && g->kind->median)
            g->kind->median(g->opts, raw, point);
        else
            g->kind->mode(g->opts, raw, point);
        for (int64_t t = 0; t < nt; t++)
            for (int c = 0; c < vd; c++) {
                double a = loc[t * vd + c], b = scale[t * vd + c], x = field[t * k + g->column + c];
                if (!applies) {
                    ck_assert_msg(isnan(a) && isnan(b) && isnan(x), "%s applies to no %s: %g %g %g", g->name,
                                  galaxy ? "galaxy" : "star", a, b, x);
                    continue;
                }
                ck_assert_msg(fabs(a - eloc[c]) <= 1e-5 * (1 + fabs(eloc[c])), "%s loc %g, expected %g", g->name, a, eloc[c]);
                ck_assert_msg(fabs(b - escale[c]) <= 1e-5 * escale[c], "%s scale %g, expected %g", g->name, b, escale[c]);
                ck_assert_msg(fabs(x - point[c]) <= 1e-5 * (1 + fabs(point[c])), "%s point %g, expected %g", g->name, x, point[c]);
            }
        free(loc);
        free(scale);
        free(field);
    }
    /* closed forms: normal redshift loc = mean, scale = exp(logvar / 2); lognormal star flux
     * mode exp(mu - sigma^2), galaxy flux median exp(mu) */
    st_floats(st, "tile_catalog.redshift_scale", &v, NULL, NULL);
    ck_assert_double_eq_tol(v[0], exp(bias[39] / 2), 1e-6);
    free(v);
    st_floats(st, "tile_catalog.redshifts", &v, NULL, NULL);
    ck_assert_double_eq_tol(v[0], bias[38], 1e-6);
    free(v);
    if (galaxy) {
        st_floats(st, "tile_catalog.galaxy_fluxes", &v, NULL, NULL);
        ck_assert_double_eq_tol(v[2], exp(bias[32]), 1e-5 * exp(bias[32]));
    } else {
        st_floats(st, "tile_catalog.star_fluxes", &v, NULL, NULL);
        double e = exp(bias[22] - exp(bias[23]));
        ck_assert_double_eq_tol(v[2], e, 1e-5 * e);
    }
    free(v);
    bl_safetensors_free(st);
}

START_TEST(test_predict_uncertainties)
{
    cli_run(&r, dir, "generate", "-c", "new_field.cfg", "-o", "ds", "--fits", "--threads", "1", NULL);
    ck_assert_msg(r.status == 0, "generate: %s", r.err);
    cli_run(&r, dir, "train", "-c", "new_field.cfg", "--data", "ds", "-o", "run", "--max-steps", "1", "--threads",
            "1", NULL);
    ck_assert_msg(r.status == 0, "train: %s", r.err);
    bl_vardist_spec *spec = new_field_spec();
    ck_assert_int_eq(bl_vardist_q_register(spec), BL_OK);
    double bias[P];
    for (int i = 0; i < P; i++) bias[i] = 0.4 * sin(1.7 * i + 0.3);
    bias[0] = 2.0;            /* on_prob: p = 0.8808 */
    bias[5] = 1.5;            /* galaxy_prob: 0.8176 -> galaxies */
    bias[38] = 0.3;           /* redshift mean */
    bias[39] = log(0.04);     /* redshift sd 0.2 */
    make_constant(p("run/last.safetensors"), p("galaxies.safetensors"), bias);
    const int K = 64;
    cli_run(&r, dir, "predict", "--checkpoint", "galaxies.safetensors", "-i", "ds/shard_0000.safetensors", "-o",
            "pg", "--samples", "64", NULL);
    ck_assert_msg(r.status == 0, "predict: %s", r.err);
    ck_assert_has(r.out, "predicted 16 sources in 4 images");
    ck_assert_has(r.out, "(with 64 sampled catalogs)");
    check_constant_prediction(spec, bias, 1, "pg.safetensors");

    /* K draws: shapes (K, B, ht, wt, ...); every tile's q is the same, so the draws of all
     * tiles are one sample of it: redshift mean 0.3, sd 0.2; detection frequency sigmoid(2) */
    bl_safetensors *st;
    ck_assert_int_eq(bl_safetensors_read(&st, p("pg.safetensors")), BL_OK);
    ck_assert_str_eq(bl_safetensors_meta(st, "n_samples"), "64");
    ck_assert_has(bl_safetensors_meta(st, "pixel_convention"), "0-based (row, col)");
    const bl_st_tensor *t;
    ck_assert_int_eq(bl_safetensors_expect(st, "pg", "samples.redshifts", 6, BL_SHAPE(K, 4, 2, 2, 1, 1), &t), BL_OK);
    ck_assert_int_eq(bl_safetensors_expect(st, "pg", "samples.n_sources", 4, BL_SHAPE(K, 4, 2, 2), &t), BL_OK);
    ck_assert_ptr_null(bl_safetensors_find(st, "samples.redshift_loc")); /* draws, not q */
    double *z, *ns, *src, *sf;
    int64_t n = st_floats(st, "samples.redshifts", &z, NULL, NULL);
    st_floats(st, "samples.n_sources", &ns, NULL, NULL);
    st_floats(st, "samples.source_type", &src, NULL, NULL);
    st_floats(st, "samples.star_fluxes", &sf, NULL, NULL);
    double s1 = 0, s2 = 0, on = 0, distinct = 0;
    for (int64_t i = 0; i < n; i++) {
        s1 += z[i];
        s2 += z[i] * z[i];
        on += ns[i];
        distinct += i > 0 && z[i] != z[i - 1];
        /* the star fluxes of a sampled galaxy are NaN, of a sampled star finite and positive */
        for (int c = 0; c < 5; c++)
            ck_assert(ns[i] == 0 || (src[i] == 1 ? isnan(sf[i * 5 + c]) : sf[i * 5 + c] > 0));
    }
    double mean = s1 / (double)n, sd = sqrt(s2 / (double)n - mean * mean);
    ck_assert_int_eq(n, 1024);
    ck_assert_msg(fabs(mean - 0.3) < 4 * 0.2 / sqrt((double)n), "sample mean %g", mean);
    ck_assert_msg(fabs(sd - 0.2) < 0.1 * 0.2, "sample sd %g", sd);
    double pon = sigmoid(2.0);
    ck_assert_msg(fabs(on / (double)n - pon) < 4 * sqrt(pon * (1 - pon) / (double)n), "on frequency %g", on / (double)n);
    ck_assert(distinct > n / 2);
    free(z);
    free(ns);
    free(src);
    free(sf);
    bl_safetensors_free(st);

    /* the FITS file: pixel convention, the CATALOG rows with q's columns, K SAMPLE tables */
    fitsfile *f;
    int status = 0, ival = -1;
    char val[FLEN_VALUE];
    double dval = 0;
    ck_assert_int_eq(fits_open_file(&f, p("pg.fits"), READONLY, &status), 0);
    key_str(f, "PIXCONV", val);
    ck_assert_has(val, "0-based (row, col)");
    ck_assert_has(val, "centre is i + 0.5");
    key_str(f, "NSAMPLES", val);
    ck_assert_str_eq(val, "64");
    ck_assert(fits_read_key(f, TSTRING, "CTYPE1", val, NULL, &status) != 0); /* no WCS in the input */
    status = 0;
    ck_assert_int_eq(fits_movnam_hdu(f, BINARY_TBL, "CATALOG", 0, &status), 0);
    ck_assert_int_eq(fits_read_key(f, TINT, "PIXORIG", &ival, NULL, &status), 0);
    ck_assert_int_eq(ival, 0);
    ck_assert_int_eq(fits_read_key(f, TDOUBLE, "PIXCENT", &dval, NULL, &status), 0);
    ck_assert(dval == 0.5);
    key_str(f, "PLOCAXES", val);
    ck_assert_str_eq(val, "row,col");
    long nrows = 0;
    ck_assert_int_eq(fits_get_num_rows(f, &nrows, &status), 0);
    ck_assert_int_eq(nrows, 16);
    double a[16 * 5];
    fits_col(f, "on_prob", nrows, 1, a);
    for (int i = 0; i < 16; i++) ck_assert_double_eq_tol(a[i], sigmoid(2.0), 1e-6);
    fits_col(f, "star_fluxes", nrows, 5, a);
    for (int i = 0; i < 16 * 5; i++) ck_assert(isnan(a[i]));
    fits_col(f, "galaxy_flux_r_loc", nrows, 1, a);
    for (int i = 0; i < 16; i++) ck_assert_double_eq_tol(a[i], (float)bias[32], 1e-6);
    fits_col(f, "star_flux_r_scale", nrows, 1, a);
    for (int i = 0; i < 16; i++) ck_assert(isnan(a[i]));
    for (int k = 1; k <= K; k++) ck_assert_int_eq(fits_movnam_hdu(f, BINARY_TBL, "SAMPLE", k, &status), 0);
    ck_assert(fits_movnam_hdu(f, BINARY_TBL, "SAMPLE", K + 1, &status) != 0);
    status = 0;
    fits_close_file(f, &status);

    /* all stars: the galaxy factors' columns are NaN, the star ones are q's */
    bias[5] = -1.5;
    make_constant(p("run/last.safetensors"), p("stars.safetensors"), bias);
    cli_run(&r, dir, "predict", "--checkpoint", "stars.safetensors", "-i", "ds/shard_0000.safetensors", "-o", "ps",
            NULL);
    ck_assert_msg(r.status == 0, "predict: %s", r.err);
    check_constant_prediction(spec, bias, 0, "ps.safetensors");
    bl_vardist_spec_free(spec);
}
END_TEST

/* An input FITS with a WCS: predict copies its WCS cards, verbatim, into the primary and the
 * table headers (and nothing else of the input's header). */
START_TEST(test_predict_copies_wcs)
{
    cli_run(&r, dir, "generate", "-c", "quick.cfg", "-o", "ds", "--threads", "1", NULL);
    ck_assert_msg(r.status == 0, "generate: %s", r.err);
    cli_run(&r, dir, "train", "-c", "quick.cfg", "--data", "ds", "-o", "run", "--max-steps", "1", "--threads", "1",
            NULL);
    ck_assert_msg(r.status == 0, "train: %s", r.err);
    bl_sim_batch *b;
    ck_assert_int_eq(bl_sim_batch_read(&b, p("ds/shard_0000.safetensors")), BL_OK);
    const char *bands[5] = {"u", "g", "r", "i", "z"};
    ck_assert_int_eq(bl_fits_write_batch(p("wcs.fits"), b->images, b->background, bands, "electron", NULL), BL_OK);
    bl_sim_batch_free(b);
    fitsfile *f;
    int status = 0;
    ck_assert_int_eq(fits_open_file(&f, p("wcs.fits"), READWRITE, &status), 0);
    ck_assert_int_eq(fits_movnam_hdu(f, IMAGE_HDU, "u", 0, &status), 0);
    double crpix = 8.5, crval1 = 150.1171, crval2 = 2.2057, cd = 1.1e-4, mcd = -1.1e-4, zero = 0;
    fits_update_key(f, TSTRING, "CTYPE1", "RA---TAN", NULL, &status);
    fits_update_key(f, TSTRING, "CTYPE2", "DEC--TAN", NULL, &status);
    fits_update_key(f, TDOUBLE, "CRPIX1", &crpix, NULL, &status);
    fits_update_key(f, TDOUBLE, "CRPIX2", &crpix, NULL, &status);
    fits_update_key(f, TDOUBLE, "CRVAL1", &crval1, NULL, &status);
    fits_update_key(f, TDOUBLE, "CRVAL2", &crval2, NULL, &status);
    fits_update_key(f, TDOUBLE, "CD1_1", &mcd, NULL, &status);
    fits_update_key(f, TDOUBLE, "CD1_2", &zero, NULL, &status);
    fits_update_key(f, TDOUBLE, "CD2_1", &zero, NULL, &status);
    fits_update_key(f, TDOUBLE, "CD2_2", &cd, NULL, &status);
    fits_update_key(f, TSTRING, "RADESYS", "ICRS", NULL, &status);
    ck_assert_int_eq(status, 0);
    fits_close_file(f, &status);
    cli_run(&r, dir, "predict", "--checkpoint", "run/last.safetensors", "-i", "wcs.fits", "-o", "pw", NULL);
    ck_assert_msg(r.status == 0, "predict: %s", r.err);
    ck_assert_has(r.out, "the input's WCS copied");
    ck_assert_int_eq(fits_open_file(&f, p("pw.fits"), READONLY, &status), 0);
    for (int hdu = 0; hdu < 2; hdu++) {
        if (hdu) ck_assert_int_eq(fits_movnam_hdu(f, BINARY_TBL, "CATALOG", 0, &status), 0);
        char val[FLEN_VALUE];
        double d = 0;
        key_str(f, "CTYPE1", val);
        ck_assert_str_eq(val, "RA---TAN");
        key_str(f, "RADESYS", val);
        ck_assert_str_eq(val, "ICRS");
        ck_assert_int_eq(fits_read_key(f, TDOUBLE, "CRVAL1", &d, NULL, &status), 0);
        ck_assert(d == crval1);
        ck_assert_int_eq(fits_read_key(f, TDOUBLE, "CD1_1", &d, NULL, &status), 0);
        ck_assert(d == mcd);
        ck_assert_int_eq(fits_read_key(f, TDOUBLE, "CRPIX2", &d, NULL, &status), 0);
        ck_assert(d == crpix);
        ck_assert(fits_read_key(f, TSTRING, "BUNIT", val, NULL, &status) != 0); /* not a WCS key */
        status = 0;
    }
    fits_close_file(f, &status);
    /* --samples needs a count */
    cli_run(&r, dir, "predict", "--checkpoint", "run/last.safetensors", "-i", "wcs.fits", "-o", "pw",
            "--samples", "-1", NULL);
    ck_assert_int_eq(r.status, 2);
    ck_assert_has(r.err, "--samples '-1'");
}
END_TEST


/* ---- pictures ------------------------------------------------------------------------------- */

typedef struct { int w, h; unsigned char *px; } rgba_image;

static int png_read(const char *path, rgba_image *im)
{
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&img, path)) return 0;
    img.format = PNG_FORMAT_RGBA;
    im->px = malloc(PNG_IMAGE_SIZE(img));
    int ok = png_image_finish_read(&img, NULL, im->px, 0, NULL);
    im->w = (int)img.width;
    im->h = (int)img.height;
    return ok;
}

static const unsigned char *px_at(const rgba_image *im, int x, int y) { return im->px + 4 * ((size_t)y * im->w + x); }

/* pixels of exactly this colour within the box [x0, x1) x [y0, y1) (clipped) */
static long count_rgb(const rgba_image *im, int x0, int y0, int x1, int y1, int cr, int cg, int cb)
{
    long n = 0;
    for (int y = y0 < 0 ? 0 : y0; y < y1 && y < im->h; y++)
        for (int x = x0 < 0 ? 0 : x0; x < x1 && x < im->w; x++) {
            const unsigned char *q = px_at(im, x, y);
            n += q[0] == cr && q[1] == cg && q[2] == cb;
        }
    return n;
}

static int no_temporaries(void)
{
    DIR *dp = opendir(dir);
    struct dirent *e;
    int n = 0;
    while (dp && (e = readdir(dp))) n += bl_atomic_tmp_owner(e->d_name) != 0;
    if (dp) closedir(dp);
    return n == 0;
}

/* predict --plot on the constant encoder: one PNG per image, of the requested size, written
 * atomically; red markers at every predicted source (where bl_plot_image_to_png puts it),
 * green ones for the true sources, yellow boxes for the unmatched; bad options are errors */
START_TEST(test_predict_plot)
{
    cli_run(&r, dir, "generate", "-c", "new_field.cfg", "-o", "ds", "--threads", "1", NULL);
    ck_assert_msg(r.status == 0, "generate: %s", r.err);
    cli_run(&r, dir, "train", "-c", "new_field.cfg", "--data", "ds", "-o", "run", "--max-steps", "1", "--threads",
            "1", NULL);
    ck_assert_msg(r.status == 0, "train: %s", r.err);
    double bias[P];
    for (int i = 0; i < P; i++) bias[i] = 0.4 * sin(1.7 * i + 0.3);
    bias[0] = 2.0;
    bias[5] = -1.5; /* stars: '+' markers */
    make_constant(p("run/last.safetensors"), p("c.safetensors"), bias);
    cli_run(&r, dir, "predict", "--checkpoint", "c.safetensors", "-i", "ds/shard_0000.safetensors", "-o", "pp",
            "--plot", "--plot-size", "320x240", "--band", "2", NULL);
    ck_assert_msg(r.status == 0, "predict --plot: %s", r.err);
    ck_assert_has(r.out, "wrote 4 plots (pp_0003.png, ...)");
    ck_assert(no_temporaries());
    ck_assert_int_eq(bl_catalog_field_register("photo_z_err", 1, 0), BL_OK);
    bl_vardist_spec *spec = new_field_spec();
    ck_assert_int_eq(bl_vardist_q_register(spec), BL_OK);
    bl_vardist_spec_free(spec);
    bl_full_catalog *pred;
    ck_assert_msg(bl_fits_read_catalog(p("pp.fits"), &pred) == BL_OK, "%s", bl_error_message());
    bl_plot_opts o = bl_plot_opts_default(5);
    o.width = 320, o.height = 240, o.band = 2;
    long yellow = 0;
    for (int b = 0; b < 4; b++) {
        char name[32];
        snprintf(name, sizeof name, "pp_%04d.png", b);
        rgba_image im;
        ck_assert_msg(png_read(p(name), &im), "%s", name);
        ck_assert_int_eq(im.w, 320);
        ck_assert_int_eq(im.h, 240);
        ck_assert_int_eq(pred->n_sources[b], 4); /* every interior tile detects */
        for (int m = 0; m < pred->n_sources[b]; m++) {
            double x, y;
            const bl_real *pl = pred->plocs->data + (b * pred->M + m) * 2;
            bl_plot_image_to_png(&o, 16, 16, pl[0], pl[1], &x, &y);
            /* the '+' arms run through the source's position */
            long red = count_rgb(&im, (int)x - 3, (int)y - 3, (int)x + 4, (int)y + 4, BL_PLOT_PRED_RGB);
            ck_assert_msg(red >= 4, "image %d source %d at (%g, %g): %ld red pixels", b, m, x, y, red);
        }
        ck_assert(count_rgb(&im, 0, 0, im.w, im.h, BL_PLOT_TRUE_RGB) > 10); /* the true sources */
        yellow += count_rgb(&im, 0, 0, im.w, im.h, BL_PLOT_UNMATCHED_RGB);
        /* the corners outside the image stay white */
        const unsigned char *c = px_at(&im, 1, 1);
        ck_assert(c[0] == 255 && c[1] == 255 && c[2] == 255);
        free(im.px);
    }
    ck_assert_msg(yellow > 0, "no unmatched marker"); /* tile-centred guesses miss most true sources */
    bl_full_catalog_free(pred);
    /* a band the images do not have: exit 1 naming it, no PNG */
    cli_run(&r, dir, "predict", "--checkpoint", "c.safetensors", "-i", "ds/shard_0000.safetensors", "-o", "pq",
            "--plot", "--band", "5", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "pq_0000.png: band 5: the images have bands 0 .. 4");
    ck_assert(!cli_exists(dir, "pq_0000.png"));
    ck_assert(no_temporaries());
    cli_run(&r, dir, "plot", "-c", "new_field.cfg", "-i", "ds/shard_0000.safetensors", "-o", "pr", "--rgb", "1,2,9", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "RGB band 9: the images have bands 0 .. 4");
    cli_run(&r, dir, "plot", "-c", "new_field.cfg", "-i", "ds/shard_0000.safetensors", "-o", "pr", "--rgb", "1,2", NULL);
    ck_assert_int_eq(r.status, 2);
    ck_assert_has(r.err, "--rgb '1,2'");
    cli_run(&r, dir, "plot", "-c", "new_field.cfg", "-i", "ds/shard_0000.safetensors", "-o", "pr", "--rgb", "1,2,3",
            "--band", "1", NULL);
    ck_assert_int_eq(r.status, 2);
    cli_run(&r, dir, "plot", "-c", "new_field.cfg", "-i", "ds/shard_0000.safetensors", "-o", "pr", "--plot-size",
            "20x20", NULL);
    ck_assert_int_eq(r.status, 2);
}
END_TEST

/* bliss plot on a larger single image with few sources (RGB default): image row 0 at the top,
 * the brightest true source bright in the picture where its marker is; and curve.csv redrawn
 * with a log axis */
START_TEST(test_plot_command)
{
    const char *big[] = {"--set", "prior.n_tiles_h=24", "--set", "prior.n_tiles_w=24", "--set",
                         "prior.mean_sources=0.03", "--set", "prior.batch_size=1"};
    const char *gen[32] = {"generate", "-c", "quick.cfg", "-o", "big", "--set", "generate.n_files=1", "--set",
                           "generate.n_batches_per_file=1"};
    int n = 9;
    for (int i = 0; i < 8; i++) gen[n++] = big[i];
    gen[n] = NULL;
    cli_runv(&r, dir, gen);
    ck_assert_msg(r.status == 0, "generate: %s", r.err);
    const char *plt[32] = {"plot", "-c", "quick.cfg", "-i", "big/shard_0000.safetensors", "-o", "pic", "--plot-size",
                           "400x400"};
    n = 9;
    for (int i = 0; i < 8; i++) plt[n++] = big[i];
    plt[n] = NULL;
    cli_runv(&r, dir, plt);
    ck_assert_msg(r.status == 0, "plot: %s", r.err);
    ck_assert_has(r.out, "wrote 1 plot (");
    bl_sim_batch *b;
    ck_assert_int_eq(bl_sim_batch_read(&b, p("big/shard_0000.safetensors")), BL_OK);
    bl_full_catalog *truth = bl_tile_catalog_to_full(b->tile_catalog);
    ck_assert(truth->n_sources[0] >= 3);
    bl_real *flux = malloc((size_t)(truth->M * 5) * sizeof *flux);
    bl_full_catalog_on_fluxes(truth, flux);
    int best = 0;
    for (int m = 1; m < truth->n_sources[0]; m++)
        if (flux[m * 5 + 2] > flux[best * 5 + 2]) best = m;
    rgba_image im;
    ck_assert(png_read(p("pic.png"), &im));
    ck_assert(im.w == 400 && im.h == 400);
    bl_plot_opts o = bl_plot_opts_default(5);
    o.width = o.height = 400;
    /* the image area's median brightness (sky), and the brightness at the brightest source */
    double x0, y0, x1, y1;
    bl_plot_image_to_png(&o, 96, 96, 0, 0, &x0, &y0);
    bl_plot_image_to_png(&o, 96, 96, 96, 96, &x1, &y1);
    ck_assert(x1 - x0 > 300 && y1 - y0 > 300); /* square pixels, most of the picture */
    int *hist = calloc(766, sizeof *hist), total = 0;
    for (int y = (int)y0 + 2; y < (int)y1 - 2; y++)
        for (int x = (int)x0 + 2; x < (int)x1 - 2; x++) {
            const unsigned char *q = px_at(&im, x, y);
            hist[q[0] + q[1] + q[2]]++;
            total++;
        }
    int med = 0;
    for (int acc = 0; acc < total / 2; med++) acc += hist[med];
    free(hist);
    const bl_real *pl = truth->plocs->data + best * 2;
    double x, y;
    bl_plot_image_to_png(&o, 96, 96, pl[0], pl[1], &x, &y);
    double around = 0;
    int cnt = 0;
    for (int dy = -1; dy <= 1; dy++)
        for (int dx = -1; dx <= 1; dx++) {
            const unsigned char *q = px_at(&im, (int)x + dx, (int)y + dy);
            if (q[1] == 200 && q[0] == 0 && q[2] == 0) continue; /* the marker itself */
            around += q[0] + q[1] + q[2];
            cnt++;
        }
    ck_assert_msg(cnt > 0 && around / cnt > med + 150, "brightest source at (%g, %g): %g vs sky %d", x, y,
                  around / cnt, med);
    ck_assert(count_rgb(&im, (int)x - 25, (int)y - 25, (int)x + 26, (int)y + 26, BL_PLOT_TRUE_RGB) > 0);
    ck_assert_int_eq(count_rgb(&im, 0, 0, im.w, im.h, BL_PLOT_PRED_RGB), 0); /* no predictions given */
    free(im.px);
    free(flux);
    bl_full_catalog_free(truth);
    bl_sim_batch_free(b);

    /* the curve of a short run, redrawn with a log axis, without a config */
    cli_run(&r, dir, "train", "-c", "quick.cfg", "-o", "run", "--max-steps", "3", "--threads", "1", NULL);
    ck_assert_msg(r.status == 0, "train: %s", r.err);
    cli_run(&r, dir, "plot", "--curve", "run/curve.csv", "--log", "-o", "curve_log.png", "--plot-size", "300x200", NULL);
    ck_assert_msg(r.status == 0, "plot --curve: %s", r.err);
    ck_assert_has(r.out, "wrote curve_log.png (3 points, log scale)");
    ck_assert(png_read(p("curve_log.png"), &im));
    ck_assert(im.w == 300 && im.h == 200);
    ck_assert(count_rgb(&im, 0, 0, im.w, im.h, 31, 119, 180) > 10); /* the train loss in blue */
    free(im.px);
    cli_run(&r, dir, "plot", "--curve", "nope.csv", "-o", "c2.png", NULL);
    ck_assert_int_eq(r.status, 1);
    ck_assert_has(r.err, "nope.csv");
}
END_TEST

static Suite *cli_predict_suite(void)
{
    Suite *s = suite_create("cli_predict");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_new_field_example);
    tcase_add_test(tc, test_predict_uncertainties);
    tcase_add_test(tc, test_predict_copies_wcs);
    tcase_add_test(tc, test_predict_plot);
    tcase_add_test(tc, test_plot_command);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) { return bl_check_run(cli_predict_suite()); }
