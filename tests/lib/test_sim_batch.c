/* Simulated batches (lib/sim/simulate.h): layout, thread-count independence, noise statistics,
 * safetensors and FITS round trips, Richardson-Lucy against direct convolution, bad files. */
#include <check.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/io/fits.h"
#include "lib/io/safetensors.h"
#include "lib/sim/deconvolve.h"
#include "lib/sim/simulate.h"
#include "tests/bl_check.h"

#define CONFIG BL_SOURCE_ROOT "/configs/sim_default.cfg"

static char tmpdir[256];

static void setup(void) { bl_check_tmpdir(tmpdir, sizeof tmpdir, "bl_test_batch"); }
static void teardown(void) { bl_check_tmpdir_remove(tmpdir); }

/* the default config with a small batch and `extra` overrides */
static bl_simulator *small_sim(int B, int ntiles, const char *const *extra, int n_extra)
{
    bl_config *cfg;
    ck_assert_int_eq(bl_config_load(&cfg, CONFIG), BL_OK);
    char set[64];
    snprintf(set, sizeof set, "prior.batch_size=%d", B);
    ck_assert_int_eq(bl_config_set(cfg, set), BL_OK);
    snprintf(set, sizeof set, "prior.n_tiles_h=%d", ntiles);
    ck_assert_int_eq(bl_config_set(cfg, set), BL_OK);
    snprintf(set, sizeof set, "prior.n_tiles_w=%d", ntiles);
    ck_assert_int_eq(bl_config_set(cfg, set), BL_OK);
    for (int i = 0; i < n_extra; i++) ck_assert_msg(bl_config_set(cfg, extra[i]) == BL_OK, "%s", bl_error_message());
    bl_simulator *sim;
    ck_assert_msg(bl_simulator_from_config(&sim, cfg) == BL_OK, "%s", bl_error_message());
    ck_assert_msg(bl_config_check_unused(cfg) == BL_OK, "%s", bl_error_message());
    bl_config_free(cfg);
    return sim;
}

static int same_tensor(const bl_tensor *a, const bl_tensor *b)
{
    return bl_tensor_same_shape(a, b) && memcmp(a->data, b->data, (size_t)a->numel * sizeof(bl_real)) == 0;
}

static int same_catalog(const bl_tile_catalog *a, const bl_tile_catalog *b)
{
    if (a->B != b->B || a->ht != b->ht || a->wt != b->wt || a->S != b->S || a->n_fields != b->n_fields)
        return 0;
    if (memcmp(a->n_sources, b->n_sources, (size_t)bl_tile_catalog_n_tiles(a) * sizeof(int32_t))) return 0;
    for (int f = 0; f < a->n_fields; f++) {
        const bl_tensor *y = bl_tile_catalog_get(b, a->fields[f].name);
        if (!y || !same_tensor(a->fields[f].t, y)) return 0;
    }
    return 1;
}

START_TEST(test_layout_and_threads)
{
    bl_simulator *sim = small_sim(6, 12, NULL, 0);
    bl_sim_batch *a = bl_sim_batch_alloc(sim), *b = bl_sim_batch_alloc(sim), *c = bl_sim_batch_alloc(sim);
    ck_assert_int_eq(a->images->ndim, 4);
    ck_assert_int_eq(a->images->shape[0], 6);
    ck_assert_int_eq(a->images->shape[1], 5);
    ck_assert_int_eq(a->images->shape[2], 48);
    ck_assert_int_eq(a->images->shape[3], 48);
    ck_assert_int_eq(a->psf_params->shape[2], 6);
    ck_assert_ptr_null(a->deconvolution);
    omp_set_num_threads(1);
    bl_simulator_generate(sim, 123, 4, a);
    omp_set_num_threads(2);
    bl_simulator_generate(sim, 123, 4, b);
    ck_assert(same_tensor(a->images, b->images));
    ck_assert(same_tensor(a->background, b->background));
    ck_assert(same_tensor(a->psf_params, b->psf_params));
    ck_assert(same_catalog(a->tile_catalog, b->tile_catalog));
    bl_simulator_generate(sim, 123, 5, c);
    ck_assert(!same_tensor(a->images, c->images));
    /* psf_params and background come from the survey; the catalog stays in nanomaggies */
    const bl_survey *sv = bl_simulator_survey(sim);
    for (int i = 0; i < 6; i++)
        for (int k = 0; k < 5; k++) {
            const bl_real *pp = a->psf_params->data + (i * 5 + k) * 6;
            ck_assert_double_eq_tol(pp[0], sv->psf[k].sigma1, 1e-6);
            ck_assert_double_eq_tol(pp[3], sv->psf[k].beta, 1e-6);
            ck_assert_double_eq_tol(pp[5], sv->psf[k].p0, 1e-6);
            ck_assert_double_eq_tol(a->background->data[((i * 5 + k) * 48 + 7) * 48 + 9], sv->sky[k], 1e-3);
        }
    const bl_tensor *sf = bl_tile_catalog_require(a->tile_catalog, "star_fluxes");
    for (int64_t i = 0; i < sf->numel; i += 5) ck_assert(sf->data[i + 2] >= 0.63f && sf->data[i + 2] < 404.0f);
    bl_sim_batch_free(a);
    bl_sim_batch_free(b);
    bl_sim_batch_free(c);
    bl_simulator_free(sim);
}
END_TEST

START_TEST(test_noise_and_signal)
{
    /* no sources: images = sky + sqrt(sky) N(0,1) per pixel */
    const char *empty[] = {"prior.mean_sources=0.0"};
    bl_simulator *sim = small_sim(4, 16, empty, 1);
    bl_sim_batch *a = bl_sim_batch_alloc(sim);
    bl_simulator_generate(sim, 9, 0, a);
    const bl_survey *sv = bl_simulator_survey(sim);
    const int64_t plane = 64 * 64;
    for (int k = 0; k < 5; k++) {
        double s = 0, s2 = 0, s4 = 0, n = 0;
        for (int b = 0; b < 4; b++)
            for (int64_t i = 0; i < plane; i++) {
                double z = (a->images->data[(b * 5 + k) * plane + i] - sv->sky[k]) / sqrt(sv->sky[k]);
                s += z;
                s2 += z * z;
                s4 += z * z * z * z;
                n += 1;
            }
        ck_assert_msg(fabs(s / n) < 4 / sqrt(n), "band %d: mean z %g", k, s / n);
        ck_assert_msg(fabs(s2 / n - 1) < 4 * sqrt(2 / n), "band %d: var z %g", k, s2 / n);
        ck_assert_msg(fabs(s4 / n - 3) < 4 * sqrt(96 / n), "band %d: kurtosis %g", k, s4 / n);
    }
    bl_sim_batch_free(a);
    bl_simulator_free(sim);

    /* with sources: images - background sums to the flux in electrons up to noise and the
     * light falling off the images */
    sim = small_sim(4, 16, NULL, 0);
    a = bl_sim_batch_alloc(sim);
    bl_simulator_generate(sim, 10, 0, a);
    bl_tensor *clean = bl_tensor_alloc(NULL, 4, BL_SHAPE(4, 5, 64, 64), 0);
    ck_assert_int_eq(bl_simulator_render(sim, a->tile_catalog, clean), BL_OK);
    for (int b = 0; b < 4; b++) {
        double diff = 0, var = 0;
        for (int64_t i = 0; i < plane; i++) {
            int64_t o = (b * 5 + 2) * plane + i;
            diff += a->images->data[o] - a->background->data[o] - clean->data[o];
            var += a->background->data[o] + fmax(clean->data[o], 0);
        }
        ck_assert_msg(fabs(diff) < 5 * sqrt(var), "image %d: residual %g vs sd %g", b, diff, sqrt(var));
    }
    /* a NaN in a user catalog is reported, not rendered */
    bl_tile_catalog *bad = bl_tile_catalog_copy(a->tile_catalog);
    int64_t t = 0;
    while (bad->n_sources[t] == 0) t++;
    bl_tile_catalog_require(bad, "galaxy_params")->data[t * bad->S * 6 + 3] = NAN;
    bl_tile_catalog_require(bad, "star_fluxes")->data[t * bad->S * 5 + 1] = NAN;
    ck_assert_int_eq(bl_simulator_render(sim, bad, clean), BL_ERR_NAN);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "is not finite"));
    bl_tile_catalog_free(bad);
    bl_tensor_free(clean);
    bl_sim_batch_free(a);
    bl_simulator_free(sim);
}
END_TEST

START_TEST(test_files_round_trip)
{
    const char *extra[] = {"simulator.deconvolve=true", "simulator.rl_iterations=3"};
    /* configs/base.cfg will @include the simulator defaults (same directory): that works */
    char path[400], cmd[800];
    snprintf(cmd, sizeof cmd, "cp %s %s/sim_default.cfg", CONFIG, tmpdir);
    ck_assert_int_eq(system(cmd), 0);
    snprintf(path, sizeof path, "%s/inc.cfg", tmpdir);
    FILE *f = fopen(path, "w");
    fprintf(f, "@include \"sim_default.cfg\"\n");
    fclose(f);
    bl_config *cfg;
    ck_assert_msg(bl_config_load(&cfg, path) == BL_OK, "%s", bl_error_message());
    bl_simulator *inc;
    ck_assert_msg(bl_simulator_from_config(&inc, cfg) == BL_OK, "%s", bl_error_message());
    ck_assert_int_eq(bl_config_check_unused(cfg), BL_OK);
    bl_simulator_free(inc);
    bl_config_free(cfg);
    /* a redshift prior added to the prior travels through the files */
    bl_simulator *sim = small_sim(3, 8, extra, 2);
    bl_field_sampler z = {.name = "redshift", .kind = bl_sampler_uniform, .field = "redshifts", .params = {0, 1}};
    ck_assert_int_eq(bl_prior_add((bl_prior *)bl_simulator_prior(sim), &z), BL_OK);
    bl_sim_batch *a = bl_sim_batch_alloc(sim);
    ck_assert_ptr_nonnull(a->deconvolution);
    bl_simulator_generate(sim, 77, 1, a);
    snprintf(path, sizeof path, "%s/batch.safetensors", tmpdir);
    ck_assert_int_eq(bl_sim_batch_write(a, path), BL_OK);
    bl_sim_batch *r;
    ck_assert_msg(bl_sim_batch_read(&r, path) == BL_OK, "%s", bl_error_message());
    ck_assert(same_tensor(a->images, r->images));
    ck_assert(same_tensor(a->background, r->background));
    ck_assert(same_tensor(a->psf_params, r->psf_params));
    ck_assert(same_tensor(a->deconvolution, r->deconvolution));
    ck_assert(same_catalog(a->tile_catalog, r->tile_catalog));
    ck_assert(bl_tile_catalog_has(r->tile_catalog, "redshifts"));
    ck_assert_str_eq(r->band_names[4], "z");
    ck_assert_int_eq(r->tile_catalog->tile_slen, 4);
    bl_sim_batch_free(r);
    /* BLISS's names and dtypes in the file */
    bl_safetensors *st;
    ck_assert_int_eq(bl_safetensors_read(&st, path), BL_OK);
    ck_assert_int_eq(bl_safetensors_find(st, "tile_catalog.n_sources")->dtype, BL_DTYPE_I64);
    ck_assert_int_eq(bl_safetensors_find(st, "tile_catalog.source_type")->dtype, BL_DTYPE_I64);
    ck_assert_int_eq(bl_safetensors_find(st, "tile_catalog.locs")->dtype, BL_DTYPE_F32);
    ck_assert_int_eq(bl_safetensors_find(st, "tile_catalog.locs")->ndim, 5);
    ck_assert_int_eq(bl_safetensors_find(st, "deconvolution")->dtype, BL_DTYPE_F64);
    ck_assert_int_eq(bl_safetensors_find(st, "images")->shape[1], 5);

    /* a damaged batch: background of the wrong shape, an unknown field */
    bl_safetensors *bad = bl_safetensors_alloc();
    for (int i = 0; i < st->n; i++) {
        const bl_st_tensor *t = &st->tensors[i];
        if (strcmp(t->name, "background") == 0)
            bl_safetensors_add(bad, t->name, t->dtype, 4, BL_SHAPE(t->shape[0], t->shape[1], t->shape[2] - 1, t->shape[3]), t->data);
        else
            bl_safetensors_add(bad, t->name, t->dtype, t->ndim, t->shape, t->data);
    }
    for (int i = 0; i < st->n_meta; i++) bl_safetensors_set_meta(bad, st->meta_keys[i], st->meta_values[i]);
    snprintf(path, sizeof path, "%s/bad.safetensors", tmpdir);
    ck_assert_int_eq(bl_safetensors_write(bad, path), BL_OK);
    ck_assert_int_eq(bl_sim_batch_read(&r, path), BL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "'background' has shape (3, 5, 31, 32)"));
    bl_safetensors_free(bad);
    bad = bl_safetensors_alloc();
    for (int i = 0; i < st->n; i++) {
        const bl_st_tensor *t = &st->tensors[i];
        bl_safetensors_add(bad, strcmp(t->name, "tile_catalog.redshifts") ? t->name : "tile_catalog.redshiftz",
                           t->dtype, t->ndim, t->shape, t->data);
    }
    ck_assert_int_eq(bl_safetensors_write(bad, path), BL_OK);
    ck_assert_int_eq(bl_sim_batch_read(&r, path), BL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "metadata tile_slen"));
    for (int i = 0; i < st->n_meta; i++) bl_safetensors_set_meta(bad, st->meta_keys[i], st->meta_values[i]);
    ck_assert_int_eq(bl_safetensors_write(bad, path), BL_OK);
    ck_assert_int_eq(bl_sim_batch_read(&r, path), BL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "'redshiftz' is not a catalog field"));
    bl_safetensors_free(bad);
    bl_safetensors_free(st);

    /* FITS: images, background and the full catalog */
    snprintf(path, sizeof path, "%s/batch.fits", tmpdir);
    ck_assert_int_eq(bl_sim_batch_write_fits(a, path), BL_OK);
    bl_tensor *im, *bg;
    const char *bands[5] = {"u", "g", "r", "i", "z"};
    ck_assert_int_eq(bl_fits_read_batch_images(path, 5, bands, NULL, &im), BL_OK);
    ck_assert_int_eq(bl_fits_read_batch_images(path, 5, bands, "BKG_", &bg), BL_OK);
    ck_assert(same_tensor(im, a->images));
    ck_assert(same_tensor(bg, a->background));
    bl_full_catalog *fc, *want = bl_tile_catalog_to_full(a->tile_catalog);
    ck_assert_int_eq(bl_fits_read_catalog(path, &fc), BL_OK);
    ck_assert_int_eq(fc->M, want->M);
    ck_assert_int_eq(memcmp(fc->n_sources, want->n_sources, 3 * sizeof(int32_t)), 0);
    ck_assert(same_tensor(fc->plocs, want->plocs));
    ck_assert(same_tensor(bl_full_catalog_require(fc, "galaxy_fluxes"), bl_full_catalog_require(want, "galaxy_fluxes")));
    ck_assert(same_tensor(bl_full_catalog_require(fc, "redshifts"), bl_full_catalog_require(want, "redshifts")));
    bl_full_catalog_free(fc);
    bl_full_catalog_free(want);
    bl_tensor_free(im);
    bl_tensor_free(bg);
    bl_sim_batch_free(a);
    bl_simulator_free(sim);
}
END_TEST

START_TEST(test_richardson_lucy)
{
    /* the FFT version equals direct 'same' convolutions; a point source sharpens */
    const int H = 14, W = 11, s = 5, pad = 3, it = 4;
    double psf[25], tot = 0;
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 5; j++) {
            psf[i * 5 + j] = exp(-((i - 2) * (i - 2) + (j - 2) * (j - 2) * 1.3) / 2.0) + 0.01 * (i == 0);
            tot += psf[i * 5 + j];
        }
    for (int i = 0; i < 25; i++) psf[i] /= tot;
    bl_real img[14 * 11];
    srand(4);
    for (int i = 0; i < H * W; i++) img[i] = (bl_real)(100 + 20 * (rand() / (double)RAND_MAX));
    img[6 * W + 5] += 3000;
    img[7 * W + 5] += 1500;
    bl_real fast[14 * 11], slow[14 * 11];
    bl_rl_plan *p = bl_rl_plan_alloc(H, W, s, pad, it);
    bl_rl_scratch *w = bl_rl_scratch_alloc(p);
    bl_richardson_lucy(p, w, img, psf, 100, fast);
    bl_richardson_lucy_naive(H, W, img, psf, s, pad, it, 100, slow);
    for (int i = 0; i < H * W; i++) ck_assert_double_eq_tol(fast[i], slow[i], 1e-6);
    /* scaled by the padded maximum: values within [-1, 1]; the peak grows relative to its
     * neighbours with the iterations (deconvolution sharpens) */
    double peak_ratio_in = img[6 * W + 5] / (double)img[6 * W + 7];
    ck_assert(fast[6 * W + 5] <= 1 && fast[6 * W + 5] > 0);
    ck_assert_double_gt(fast[6 * W + 5] / fast[6 * W + 7], peak_ratio_in);
    bl_rl_scratch_free(w);
    bl_rl_plan_free(p);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sim_batch");
    TCase *tc = tcase_create("batch");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_layout_and_threads);
    tcase_add_test(tc, test_noise_and_signal);
    tcase_add_test(tc, test_files_round_trip);
    tcase_add_test(tc, test_richardson_lucy);
    suite_add_tcase(s, tc);
    return bl_check_run(s);
}
