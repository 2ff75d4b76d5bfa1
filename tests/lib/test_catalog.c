/* Tile and full catalogs (lib/catalog.h) on small hand-made catalogs with expected numbers
 * worked out by hand from docs/behaviour.md §1.2–§2 and docs/porting.md (packing of filter_by_flux). */
#include <check.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/catalog.h"
#include "tests/bl_check.h"

#define NB 5
#define R_BAND 2

/* Set one source: galaxy (type 1) or star (type 0) with flux `flux` in every band, locs and a
 * tag in galaxy_params[0] so that we can see which source moved where. */
static void put(bl_tile_catalog *c, int64_t b, int64_t i, int64_t j, int64_t s, int type,
                double flux, double lr, double lc, double tag)
{
    bl_tensor *st = bl_tile_catalog_add(c, "source_type"), *sf = bl_tile_catalog_add(c, "star_fluxes"),
              *gf = bl_tile_catalog_add(c, "galaxy_fluxes"), *gp = bl_tile_catalog_add(c, "galaxy_params"),
              *locs = bl_tile_catalog_add(c, "locs");
    st->data[bl_tile_offset(c, b, i, j, s, 1, 0)] = (bl_real)type;
    for (int band = 0; band < NB; band++) {
        bl_tensor *f = type == 1 ? gf : sf;
        f->data[bl_tile_offset(c, b, i, j, s, NB, band)] = (bl_real)flux;
    }
    gp->data[bl_tile_offset(c, b, i, j, s, 6, 0)] = (bl_real)tag;
    locs->data[bl_tile_offset(c, b, i, j, s, 2, 0)] = (bl_real)lr;
    locs->data[bl_tile_offset(c, b, i, j, s, 2, 1)] = (bl_real)lc;
}

static double gflux(const bl_tile_catalog *c, int64_t b, int64_t i, int64_t j, int64_t s)
{
    return bl_tile_catalog_require(c, "galaxy_fluxes")->data[bl_tile_offset(c, b, i, j, s, NB, R_BAND)];
}

static double tag(const bl_tile_catalog *c, int64_t b, int64_t i, int64_t j, int64_t s)
{
    return bl_tile_catalog_require(c, "galaxy_params")->data[bl_tile_offset(c, b, i, j, s, 6, 0)];
}

/* The docs/behaviour.md §2.6 reference: four tiles (1, 2, 2 grid, S = 2) of galaxies with r fluxes
 * {[1000, 500], [10000, 200], n = 0 [0, 800], [300, 600]}. */
static bl_tile_catalog *spec_filter_catalog(void)
{
    bl_tile_catalog *c = bl_tile_catalog_alloc(1, 2, 2, 2, 4, NB);
    put(c, 0, 0, 0, 0, 1, 1000, 0.1, 0.1, 1);
    put(c, 0, 0, 0, 1, 1, 500, 0.2, 0.2, 2);
    put(c, 0, 0, 1, 0, 1, 10000, 0.3, 0.3, 3);
    put(c, 0, 0, 1, 1, 1, 200, 0.4, 0.4, 4);
    put(c, 0, 1, 0, 0, 1, 0, 0.5, 0.5, 5);
    put(c, 0, 1, 0, 1, 1, 800, 0.6, 0.6, 6);
    put(c, 0, 1, 1, 0, 1, 300, 0.7, 0.7, 7);
    put(c, 0, 1, 1, 1, 1, 600, 0.8, 0.8, 8);
    int32_t n[4] = {2, 2, 0, 2};
    memcpy(c->n_sources, n, sizeof n);
    return c;
}

START_TEST(test_field_table)
{
    ck_assert_int_eq(bl_catalog_field_width("locs", NB), 2);
    ck_assert_int_eq(bl_catalog_field_width("source_type", NB), 1);
    ck_assert_int_eq(bl_catalog_field_width("star_fluxes", NB), 5);
    ck_assert_int_eq(bl_catalog_field_width("galaxy_fluxes", 3), 3);
    ck_assert_int_eq(bl_catalog_field_width("galaxy_params", NB), 6);
    ck_assert_int_eq(bl_catalog_field_width("redshifts", NB), 1);
    ck_assert_int_eq(bl_catalog_field_width("photo_z_err", NB), -1);
    ck_assert_ptr_null(bl_catalog_field_find("photo_z_err"));
    int n0 = bl_catalog_field_count();

    ck_assert_int_eq(bl_catalog_field_register("photo_z_err", 1, 0), BL_OK);
    ck_assert_int_eq(bl_catalog_field_register("photo_z_err", 1, 0), BL_OK); /* idempotent */
    ck_assert_int_eq(bl_catalog_field_count(), n0 + 1);
    ck_assert_int_eq(bl_catalog_field_width("photo_z_err", NB), 1);
    ck_assert_int_eq(bl_catalog_field_register("photo_z_err", 2, 0), BL_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "photo_z_err"));
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "width 1"));
    ck_assert_int_eq(bl_catalog_field_register("locs", 3, 0), BL_ERR_ARG);
    ck_assert_int_eq(bl_catalog_field_register("", 1, 0), BL_ERR_ARG);
    ck_assert_int_eq(bl_catalog_field_register("zero_width", 0, 0), BL_ERR_ARG);
    ck_assert_int_eq(bl_catalog_field_register("per_band_thing", BL_FIELD_PER_BAND, 0), BL_OK);
    ck_assert_int_eq(bl_catalog_field_width("per_band_thing", 4), 4);

    bl_tile_catalog *c = bl_tile_catalog_alloc(2, 3, 3, 1, 4, NB);
    bl_tensor *z = bl_tile_catalog_add(c, "photo_z_err");
    ck_assert_int_eq(z->ndim, 5);
    ck_assert_int_eq(z->shape[0], 2);
    ck_assert_int_eq(z->shape[3], 1);
    ck_assert_int_eq(z->shape[4], 1);
    ck_assert_ptr_eq(bl_tile_catalog_add(c, "photo_z_err"), z); /* get-or-add */
    ck_assert_ptr_null(bl_tile_catalog_get(c, "redshifts"));
    ck_assert(bl_tile_catalog_has(c, "photo_z_err"));
    bl_tile_catalog_free(c);

    bl_catalog_fields_reset();
    ck_assert_int_eq(bl_catalog_field_count(), n0);
    ck_assert_ptr_null(bl_catalog_field_find("photo_z_err"));
}
END_TEST

START_TEST(test_masks_fluxes_magnitudes)
{
    /* B = 1, 1 x 2 tiles, S = 2: tile 0 holds a star (10 nmgy) and a galaxy (-1 nmgy);
     * tile 1 holds one galaxy of 100 nmgy and an off slot that carries stale values. */
    bl_tile_catalog *c = bl_tile_catalog_alloc(1, 1, 2, 2, 4, NB);
    put(c, 0, 0, 0, 0, 0, 10, 0, 0, 0);
    put(c, 0, 0, 0, 1, 1, -1, 0, 0, 0);
    put(c, 0, 0, 1, 0, 1, 100, 0, 0, 0);
    put(c, 0, 0, 1, 1, 0, 55, 0, 0, 0);
    c->n_sources[0] = 2;
    c->n_sources[1] = 1;
    uint8_t on[4], star[4], gal[4];
    bl_tile_catalog_on_mask(c, on);
    bl_tile_catalog_star_mask(c, star);
    bl_tile_catalog_galaxy_mask(c, gal);
    uint8_t on_ref[4] = {1, 1, 1, 0}, star_ref[4] = {1, 0, 0, 0}, gal_ref[4] = {0, 1, 1, 0};
    ck_assert_mem_eq(on, on_ref, 4);
    ck_assert_mem_eq(star, star_ref, 4);
    ck_assert_mem_eq(gal, gal_ref, 4);

    bl_real fl[4 * NB], mag[4 * NB];
    bl_tile_catalog_on_fluxes(c, fl);
    bl_tile_catalog_magnitudes(c, mag);
    ck_assert(fl[0 * NB + 2] == 10 && fl[1 * NB + 2] == -1 && fl[2 * NB + 2] == 100);
    ck_assert(fl[3 * NB + 2] == 0); /* off slot: 0, not the stale 55 */
    ck_assert(bl_tile_catalog_on_flux(c, 0, 0, 1, 0, 4) == 100);
    /* 22.5 - 2.5 log10(10) = 20; 22.5 - 2.5 log10(100) = 17.5 */
    ck_assert_double_eq_tol(mag[0 * NB + 1], 20.0, 1e-5);
    ck_assert_double_eq_tol(mag[2 * NB + 4], 17.5, 1e-5);
    ck_assert(isnan(mag[1 * NB]));                /* negative flux */
    ck_assert(isinf(mag[3 * NB]) && mag[3 * NB] > 0); /* off slot */
    ck_assert_double_eq_tol(bl_mag_to_flux(20.0), 10.0, 1e-12);
    ck_assert_double_eq_tol(bl_flux_to_mag(1.0), 22.5, 1e-12);
    ck_assert_int_eq(bl_tile_catalog_total_sources(c), 3);
    ck_assert_int_eq(bl_tile_catalog_height(c), 4);
    ck_assert_int_eq(bl_tile_catalog_width(c), 8);
    bl_tile_catalog_free(c);
}
END_TEST

START_TEST(test_filter_by_flux_spec_example)
{
    bl_tile_catalog *c = spec_filter_catalog();
    bl_tile_catalog *f = bl_tile_catalog_filter_by_flux(c, 300, 2000, R_BAND);
    /* kept: tile 0 both (1000, 500); tile 1 none (10000 > max, 200 < min); tile 2 empty;
     * tile 3 only 600 (300 is not > 300) -> n 3, sum 2100, max 1000 */
    ck_assert_int_eq(bl_tile_catalog_total_sources(f), 3);
    ck_assert_int_eq(f->n_sources[0], 2);
    ck_assert_int_eq(f->n_sources[1], 0);
    ck_assert_int_eq(f->n_sources[2], 0);
    ck_assert_int_eq(f->n_sources[3], 1);
    bl_real on[8 * NB];
    bl_tile_catalog_on_fluxes(f, on);
    double sum = 0, mx = 0;
    for (int s = 0; s < 8; s++) {
        sum += on[s * NB + R_BAND];
        if (on[s * NB + R_BAND] > mx) mx = on[s * NB + R_BAND];
    }
    ck_assert_double_eq(sum, 2100);
    ck_assert_double_eq(mx, 1000);
    /* packed to the front, brightest first; rejected slots are zero in every field */
    ck_assert_double_eq(gflux(f, 0, 0, 0, 0), 1000);
    ck_assert_double_eq(gflux(f, 0, 0, 0, 1), 500);
    ck_assert_double_eq(gflux(f, 0, 1, 1, 0), 600);
    ck_assert_double_eq(tag(f, 0, 1, 1, 0), 8); /* the 600 source moved with its params */
    ck_assert_double_eq(gflux(f, 0, 1, 1, 1), 0);
    ck_assert_double_eq(tag(f, 0, 1, 1, 1), 0);
    ck_assert_double_eq(gflux(f, 0, 0, 1, 0), 0);
    ck_assert_double_eq(bl_tile_catalog_require(f, "locs")->data[bl_tile_offset(f, 0, 0, 1, 0, 2, 0)], 0);
    ck_assert_double_eq(bl_tile_catalog_require(f, "source_type")->data[bl_tile_offset(f, 0, 0, 1, 0, 1, 0)], 0);
    ck_assert_double_eq(gflux(f, 0, 1, 0, 1), 0); /* stale 800 of the empty tile is gone */
    /* input untouched */
    ck_assert_double_eq(gflux(c, 0, 1, 1, 0), 300);
    bl_tile_catalog_free(f);

    /* docs/porting.md: the original's hole ([1000, 500], max 800 -> slot 0 zeroed, slot 1 kept) is
     * packed: n = 1, the 500 source in slot 0 */
    f = bl_tile_catalog_filter_by_flux(c, 0, 800, R_BAND);
    ck_assert_int_eq(f->n_sources[0], 1);
    ck_assert_double_eq(gflux(f, 0, 0, 0, 0), 500);
    ck_assert_double_eq(tag(f, 0, 0, 0, 0), 2);
    ck_assert_double_eq(gflux(f, 0, 0, 0, 1), 0);
    /* tile 1: 200 kept; tile 3: 600 then 300 */
    ck_assert_int_eq(f->n_sources[1], 1);
    ck_assert_double_eq(gflux(f, 0, 0, 1, 0), 200);
    ck_assert_int_eq(f->n_sources[3], 2);
    ck_assert_double_eq(gflux(f, 0, 1, 1, 0), 600);
    ck_assert_double_eq(gflux(f, 0, 1, 1, 1), 300);
    bl_tile_catalog_free(f);
    bl_tile_catalog_free(c);
}
END_TEST

START_TEST(test_filter_keeps_shear)
{
    bl_tile_catalog *c = bl_tile_catalog_alloc(1, 1, 1, 1, 4, NB);
    put(c, 0, 0, 0, 0, 0, 5, 0.5, 0.5, 1);
    bl_tensor *shear = bl_tile_catalog_add(c, "shear");
    shear->data[0] = 0.03f;
    shear->data[1] = -0.02f;
    c->n_sources[0] = 1;
    bl_tile_catalog *f = bl_tile_catalog_filter_by_flux(c, 10, INFINITY, R_BAND);
    ck_assert_int_eq(f->n_sources[0], 0);
    ck_assert(bl_tile_catalog_require(f, "locs")->data[0] == 0);
    ck_assert(bl_tile_catalog_require(f, "shear")->data[0] == 0.03f);
    ck_assert(bl_tile_catalog_require(f, "shear")->data[1] == -0.02f);
    bl_tile_catalog_free(f);
    bl_tile_catalog_free(c);
}
END_TEST

START_TEST(test_brightest_per_tile)
{
    bl_tile_catalog *c = spec_filter_catalog();
    bl_tile_catalog *t = bl_tile_catalog_brightest_per_tile(c, R_BAND, 0, 1);
    ck_assert_int_eq(t->S, 1);
    int32_t n_ref[4] = {1, 1, 0, 1};
    ck_assert_mem_eq(t->n_sources, n_ref, sizeof n_ref);
    ck_assert_double_eq(gflux(t, 0, 0, 0, 0), 1000);
    ck_assert_double_eq(gflux(t, 0, 0, 1, 0), 10000);
    ck_assert_double_eq(gflux(t, 0, 1, 1, 0), 600);
    ck_assert_double_eq(tag(t, 0, 1, 1, 0), 8);
    /* empty tile: both slots off (on_flux 0), slot order kept -> the stale slot-0 values */
    ck_assert_double_eq(tag(t, 0, 1, 0, 0), 5);
    bl_tile_catalog_free(t);

    /* the second brightest: n = clamp(n - 1, 0, 1) */
    t = bl_tile_catalog_brightest_per_tile(c, R_BAND, 1, 1);
    ck_assert_mem_eq(t->n_sources, n_ref, sizeof n_ref);
    ck_assert_double_eq(gflux(t, 0, 0, 0, 0), 500);
    ck_assert_double_eq(gflux(t, 0, 0, 1, 0), 200);
    ck_assert_double_eq(gflux(t, 0, 1, 1, 0), 300);
    bl_tile_catalog_free(t);

    /* top_k larger than what is left: S' = S - exclude_num */
    t = bl_tile_catalog_brightest_per_tile(c, R_BAND, 0, 5);
    ck_assert_int_eq(t->S, 2);
    int32_t n2[4] = {2, 2, 0, 2};
    ck_assert_mem_eq(t->n_sources, n2, sizeof n2);
    ck_assert_double_eq(gflux(t, 0, 1, 1, 0), 600);
    ck_assert_double_eq(gflux(t, 0, 1, 1, 1), 300);
    bl_tile_catalog_free(t);

    /* exclude_num >= S: fields unchanged, n_sources = 0 */
    t = bl_tile_catalog_brightest_per_tile(c, R_BAND, 2, 1);
    ck_assert_int_eq(t->S, 2);
    ck_assert_int_eq(bl_tile_catalog_total_sources(t), 0);
    ck_assert_double_eq(gflux(t, 0, 1, 1, 0), 300);
    bl_tile_catalog_free(t);
    bl_tile_catalog_free(c);

    /* S == 1, top_k 1, exclude 0: returned as is (a copy), no sort, no zeroing */
    c = bl_tile_catalog_alloc(1, 1, 1, 1, 4, NB);
    put(c, 0, 0, 0, 0, 1, 42, 0.5, 0.5, 9);
    t = bl_tile_catalog_brightest_per_tile(c, R_BAND, 0, 1);
    ck_assert_int_eq(t->n_sources[0], 0);
    ck_assert_double_eq(gflux(t, 0, 0, 0, 0), 42);
    bl_tile_catalog_free(t);
    bl_tile_catalog_free(c);
}
END_TEST

START_TEST(test_to_full_and_back)
{
    /* B = 2, 2 x 2 tiles of 4 px, S = 2.
     * image 0: tile (0,1) locs (0.25, 0.5) -> ploc (1, 6); tile (1,0) locs (0.5, 0.5) -> (6, 2)
     *          and (0.75, 0) -> (7, 0).  image 1: tile (1,1) locs (0, 0.25) -> (4, 5). */
    bl_tile_catalog *c = bl_tile_catalog_alloc(2, 2, 2, 2, 4, NB);
    put(c, 0, 0, 1, 0, 0, 11, 0.25, 0.5, 1);
    put(c, 0, 1, 0, 0, 1, 22, 0.5, 0.5, 2);
    put(c, 0, 1, 0, 1, 0, 33, 0.75, 0.0, 3);
    put(c, 1, 1, 1, 0, 1, 44, 0.0, 0.25, 4);
    put(c, 1, 0, 0, 1, 1, 99, 0.9, 0.9, 99); /* off slot: must not appear */
    c->n_sources[bl_tile_index(c, 0, 0, 1)] = 1;
    c->n_sources[bl_tile_index(c, 0, 1, 0)] = 2;
    c->n_sources[bl_tile_index(c, 1, 1, 1)] = 1;
    bl_full_catalog *f = bl_tile_catalog_to_full(c);
    ck_assert_int_eq(f->M, 3);
    ck_assert_int_eq(f->height, 8);
    ck_assert_int_eq(f->width, 8);
    ck_assert_int_eq(f->n_sources[0], 3);
    ck_assert_int_eq(f->n_sources[1], 1);
    ck_assert_ptr_null(bl_full_catalog_get(f, "locs"));
    double pl_ref[2][3][2] = {{{1, 6}, {6, 2}, {7, 0}}, {{4, 5}, {0, 0}, {0, 0}}};
    for (int b = 0; b < 2; b++)
        for (int m = 0; m < 3; m++)
            for (int k = 0; k < 2; k++)
                ck_assert_double_eq_tol(f->plocs->data[(b * 3 + m) * 2 + k], pl_ref[b][m][k], 1e-6);
    bl_tensor *gp = bl_full_catalog_require(f, "galaxy_params");
    ck_assert_double_eq(gp->data[(0 * 3 + 2) * 6], 3);
    ck_assert_double_eq(gp->data[(1 * 3 + 0) * 6], 4);
    ck_assert_double_eq(gp->data[(1 * 3 + 1) * 6], 0); /* padding */
    bl_real on[2 * 3 * NB];
    bl_full_catalog_on_fluxes(f, on);
    ck_assert_double_eq(on[(0 * 3 + 0) * NB], 11); /* star -> star_fluxes */
    ck_assert_double_eq(on[(0 * 3 + 1) * NB], 22); /* galaxy -> galaxy_fluxes */
    ck_assert_double_eq(on[(1 * 3 + 1) * NB], 0);
    uint8_t onm[6];
    bl_full_catalog_on_mask(f, onm);
    uint8_t onm_ref[6] = {1, 1, 1, 1, 0, 0};
    ck_assert_mem_eq(onm, onm_ref, 6);
    bl_real mag[2 * 3 * NB];
    bl_full_catalog_magnitudes(f, mag);
    ck_assert_double_eq_tol(mag[(1 * 3 + 0) * NB], 22.5 - 2.5 * log10(44.0), 1e-5);

    /* back to tiles: the same sources in the same slots */
    bl_tile_catalog *t;
    ck_assert_int_eq(bl_full_catalog_to_tile(f, 4, 2, 0, 0, &t), BL_OK);
    ck_assert_mem_eq(t->n_sources, c->n_sources, 8 * sizeof(int32_t));
    for (int64_t tile = 0; tile < 8; tile++)
        for (int64_t s = 0; s < t->n_sources[tile]; s++) {
            int64_t slot = tile * 2 + s;
            ck_assert_double_eq_tol(bl_tile_catalog_require(t, "locs")->data[2 * slot],
                                    bl_tile_catalog_require(c, "locs")->data[2 * slot], 1e-6);
            ck_assert_double_eq_tol(bl_tile_catalog_require(t, "locs")->data[2 * slot + 1],
                                    bl_tile_catalog_require(c, "locs")->data[2 * slot + 1], 1e-6);
            ck_assert_double_eq(bl_tile_catalog_require(t, "galaxy_params")->data[6 * slot],
                                bl_tile_catalog_require(c, "galaxy_params")->data[6 * slot]);
        }
    bl_tile_catalog_free(t);

    /* max 1 per tile: tile (1,0) of image 0 overflows -> error naming the tile */
    ck_assert_int_eq(bl_full_catalog_to_tile(f, 4, 1, 0, 0, &t), BL_ERR_RANGE);
    ck_assert_ptr_null(t);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "tile (1, 0) of image 0"));
    ck_assert_int_eq(bl_full_catalog_to_tile(f, 4, 1, 1, 0, &t), BL_OK);
    ck_assert_int_eq(bl_tile_catalog_total_sources(t), 3);
    bl_tile_catalog_free(t);
    /* filter_oob is strict: the source at column 0 is dropped */
    ck_assert_int_eq(bl_full_catalog_to_tile(f, 4, 2, 0, 1, &t), BL_OK);
    ck_assert_int_eq(bl_tile_catalog_total_sources(t), 3);
    ck_assert_int_eq(t->n_sources[bl_tile_index(t, 0, 1, 0)], 1);
    bl_tile_catalog_free(t);
    bl_full_catalog_free(f);

    /* a batch without sources: M = 0 */
    memset(c->n_sources, 0, 8 * sizeof(int32_t));
    f = bl_tile_catalog_to_full(c);
    ck_assert_int_eq(f->M, 0);
    ck_assert_int_eq(f->plocs->numel, 0);
    bl_full_catalog_free(f);
    bl_tile_catalog_free(c);
}
END_TEST

/* A side that is not a multiple of tile_slen: the tile count rounds up, as in BLISS */
START_TEST(test_to_tile_partial)
{
    bl_full_catalog *f = bl_full_catalog_alloc(1, 2, 10, 7, NB);
    f->n_sources[0] = 2;
    bl_real pl[4] = {9.5, 2.0, 1.0, 6.5};
    memcpy(f->plocs->data, pl, sizeof pl);
    bl_tile_catalog *t;
    ck_assert_int_eq(bl_full_catalog_to_tile(f, 4, 1, 0, 0, &t), BL_OK);
    ck_assert_int_eq(t->ht, 3);
    ck_assert_int_eq(t->wt, 2);
    const bl_tensor *locs = bl_tile_catalog_require(t, "locs");
    int64_t a = bl_tile_index(t, 0, 2, 0), b = bl_tile_index(t, 0, 0, 1);
    ck_assert_int_eq(t->n_sources[a], 1);
    ck_assert_int_eq(t->n_sources[b], 1);
    ck_assert_int_eq(bl_tile_catalog_total_sources(t), 2);
    ck_assert_double_eq_tol(locs->data[2 * a], 0.375, 1e-7);   /* (9.5 - 8) / 4 */
    ck_assert_double_eq_tol(locs->data[2 * a + 1], 0.5, 1e-7); /* 2 / 4 */
    ck_assert_double_eq_tol(locs->data[2 * b], 0.25, 1e-7);
    ck_assert_double_eq_tol(locs->data[2 * b + 1], 0.625, 1e-7); /* (6.5 - 4) / 4 */
    bl_tile_catalog_free(t);
    bl_full_catalog_free(f);
}
END_TEST

START_TEST(test_crop)
{
    bl_tile_catalog *c = bl_tile_catalog_alloc(1, 4, 4, 1, 4, NB);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            put(c, 0, i, j, 0, 0, 1, 0.5, 0.25, 10 * i + j);
            c->n_sources[bl_tile_index(c, 0, i, j)] = (i + j) % 2;
        }
    bl_tile_catalog *k = bl_tile_catalog_symmetric_crop(c, 1);
    ck_assert_int_eq(k->ht, 2);
    ck_assert_int_eq(k->wt, 2);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            ck_assert_double_eq(tag(k, 0, i, j, 0), 10 * (i + 1) + (j + 1));
            ck_assert_int_eq(k->n_sources[bl_tile_index(k, 0, i, j)], (i + j) % 2);
        }
    /* positions are relative to the new corner: tile (0,1) of the crop is tile (1,2) of the
     * original; its source at (1 + 0.5) * 4 = 6 px, (2 + 0.25) * 4 = 9 px becomes (2, 5) */
    bl_full_catalog *f = bl_tile_catalog_to_full(k);
    ck_assert_int_eq(f->n_sources[0], 2);
    ck_assert_double_eq_tol(f->plocs->data[0], 2, 1e-6);
    ck_assert_double_eq_tol(f->plocs->data[1], 5, 1e-6);
    bl_full_catalog_free(f);
    bl_tile_catalog_free(k);
    k = bl_tile_catalog_crop(c, 0, 1, 2, 4);
    ck_assert_int_eq(k->ht, 1);
    ck_assert_int_eq(k->wt, 2);
    ck_assert_double_eq(tag(k, 0, 0, 1, 0), 3);
    bl_tile_catalog_free(k);
    bl_tile_catalog_free(c);
}
END_TEST

START_TEST(test_union)
{
    bl_tile_catalog *a = bl_tile_catalog_alloc(1, 1, 2, 1, 4, NB);
    bl_tile_catalog *b = bl_tile_catalog_alloc(1, 1, 2, 1, 4, NB);
    put(a, 0, 0, 0, 0, 0, 1, 0.1, 0.1, 1);
    put(a, 0, 0, 1, 0, 0, 1, 0.2, 0.2, 2);
    put(b, 0, 0, 0, 0, 1, 1, 0.3, 0.3, 3);
    put(b, 0, 0, 1, 0, 1, 1, 0.4, 0.4, 4);
    bl_tile_catalog_add(b, "redshifts")->data[1] = 0.7f; /* only in b */
    a->n_sources[0] = 1;
    a->n_sources[1] = 0;
    b->n_sources[0] = 1;
    b->n_sources[1] = 1;
    bl_tile_catalog *u = bl_tile_catalog_union(a, b);
    ck_assert_int_eq(u->S, 2);
    ck_assert_int_eq(u->n_sources[0], 2);
    ck_assert_int_eq(u->n_sources[1], 1);
    /* tile 0: a has a source -> [a, b]; tile 1: a empty -> [b, a] */
    ck_assert_double_eq(tag(u, 0, 0, 0, 0), 1);
    ck_assert_double_eq(tag(u, 0, 0, 0, 1), 3);
    ck_assert_double_eq(tag(u, 0, 0, 1, 0), 4);
    ck_assert_double_eq(tag(u, 0, 0, 1, 1), 2);
    bl_tensor *z = bl_tile_catalog_require(u, "redshifts");
    ck_assert(z->data[bl_tile_offset(u, 0, 0, 1, 0, 1, 0)] == 0.7f);
    ck_assert(z->data[bl_tile_offset(u, 0, 0, 1, 1, 1, 0)] == 0);
    bl_tile_catalog_free(u);
    bl_tile_catalog_free(a);
    bl_tile_catalog_free(b);
}
END_TEST

START_TEST(test_copy_and_sort)
{
    bl_tile_catalog *c = spec_filter_catalog();
    bl_tile_catalog *d = bl_tile_catalog_copy(c);
    ck_assert_int_eq(d->n_fields, c->n_fields);
    bl_tile_catalog_require(d, "galaxy_fluxes")->data[0] = 7;
    ck_assert(bl_tile_catalog_require(c, "galaxy_fluxes")->data[0] == 1000);
    bl_tile_catalog_free(d);
    d = bl_tile_catalog_sort_by_flux(c, R_BAND);
    ck_assert_double_eq(gflux(d, 0, 1, 1, 0), 600);
    ck_assert_double_eq(gflux(d, 0, 1, 1, 1), 300);
    ck_assert_double_eq(gflux(d, 0, 0, 0, 0), 1000);
    ck_assert_int_eq(d->n_sources[3], 2);
    bl_tile_catalog_free(d);
    bl_tile_catalog_free(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("catalog");
    TCase *tc = tcase_create("catalog");
    tcase_add_test(tc, test_field_table);
    tcase_add_test(tc, test_masks_fluxes_magnitudes);
    tcase_add_test(tc, test_filter_by_flux_spec_example);
    tcase_add_test(tc, test_filter_keeps_shear);
    tcase_add_test(tc, test_brightest_per_tile);
    tcase_add_test(tc, test_to_full_and_back);
    tcase_add_test(tc, test_to_tile_partial);
    tcase_add_test(tc, test_crop);
    tcase_add_test(tc, test_union);
    tcase_add_test(tc, test_copy_and_sort);
    suite_add_tcase(s, tc);
    return bl_check_run(s);
}
