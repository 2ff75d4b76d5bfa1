/* FITS files (lib/io/fits.h): bit-exact round trips of image cubes and catalog tables, the header
 * keywords read back independently with cfitsio, and damaged files. */
#include <check.h>
#include <fitsio.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/catalog.h"
#include "lib/io/fits.h"
#include "tests/bl_check.h"

static char tmpdir[256];
static const char *const bands[3] = {"g", "r", "i"};

static void setup(void) { bl_check_tmpdir(tmpdir, sizeof tmpdir, "bl_test_fits"); }
static void teardown(void) { bl_check_tmpdir_remove(tmpdir); }

static void path_of(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", tmpdir, name); }

static bl_tensor *random_images(int64_t B, int64_t NB, int64_t H, int64_t W, unsigned seed)
{
    bl_tensor *t = bl_tensor_alloc(NULL, 4, BL_SHAPE(B, NB, H, W), 0);
    srand(seed);
    for (int64_t i = 0; i < t->numel; i++)
        t->data[i] = (bl_real)((rand() / (double)RAND_MAX - 0.3) * pow(10, rand() % 9 - 4));
    t->data[0] = (bl_real)-0.0;
    t->data[1] = (bl_real)1e-38;
    return t;
}

/* a full catalog with 3 images holding 2, 0 and 3 sources */
static bl_full_catalog *make_catalog(void)
{
    bl_full_catalog *c = bl_full_catalog_alloc(3, 3, 30, 40, 3);
    c->n_sources[0] = 2;
    c->n_sources[1] = 0;
    c->n_sources[2] = 3;
    bl_tensor *st = bl_full_catalog_add(c, "source_type"), *sf = bl_full_catalog_add(c, "star_fluxes"),
              *gp = bl_full_catalog_add(c, "galaxy_params"), *z = bl_full_catalog_add(c, "redshifts");
    for (int64_t b = 0; b < 3; b++)
        for (int64_t m = 0; m < c->n_sources[b]; m++) {
            int64_t r = b * 3 + m;
            c->plocs->data[r * 2] = (bl_real)(1.25 + 3.1 * (double)r);
            c->plocs->data[r * 2 + 1] = (bl_real)(39.9 - 0.7 * (double)r);
            st->data[r] = (bl_real)(r % 2);
            for (int k = 0; k < 3; k++) sf->data[r * 3 + k] = (bl_real)(1.0 / (double)(r + k + 1));
            for (int k = 0; k < 6; k++) gp->data[r * 6 + k] = (bl_real)(0.1 * k + (double)r);
            z->data[r] = (bl_real)(0.01 * (double)r + 1e-7);
        }
    return c;
}

START_TEST(test_image_round_trip)
{
    char path[300];
    path_of(path, sizeof path, "img.fits");
    bl_tensor *im = random_images(4, 3, 7, 5, 1), *bg = random_images(4, 3, 7, 5, 2);
    ck_assert_int_eq(bl_fits_write_batch(path, im, bg, bands, "electron", NULL), BL_OK);
    bl_tensor *a, *b;
    ck_assert_int_eq(bl_fits_read_batch_images(path, 3, bands, NULL, &a), BL_OK);
    ck_assert_int_eq(bl_fits_read_batch_images(path, 3, bands, "BKG_", &b), BL_OK);
    ck_assert(bl_tensor_same_shape(a, im));
    ck_assert_int_eq(memcmp(a->data, im->data, (size_t)im->numel * sizeof(bl_real)), 0);
    ck_assert_int_eq(memcmp(b->data, bg->data, (size_t)bg->numel * sizeof(bl_real)), 0);
    bl_tensor *one;
    ck_assert_int_eq(bl_fits_read_image(path, "r", &one), BL_OK);
    ck_assert_int_eq(one->shape[0], 4);
    ck_assert_int_eq(one->shape[1], 7);
    ck_assert_int_eq(one->shape[2], 5);
    /* pixel (b=2, row 3, col 4) of band r */
    ck_assert(one->data[(2 * 7 + 3) * 5 + 4] == im->data[((2 * 3 + 1) * 7 + 3) * 5 + 4]);
    bl_tensor_free(one);

    /* headers, read independently: HDU 1 primary, 2..4 bands g, r, i, 5..7 BKG_g .. BKG_i */
    fitsfile *f;
    int status = 0, naxis = 0, bitpix = 0;
    long naxes[3];
    char val[FLEN_VALUE];
    ck_assert_int_eq(fits_open_file(&f, path, READONLY, &status), 0);
    ck_assert_int_eq(fits_read_key(f, TSTRING, "BANDS", val, NULL, &status), 0);
    ck_assert_str_eq(val, "g,r,i");
    ck_assert_int_eq(fits_movabs_hdu(f, 3, NULL, &status), 0);
    ck_assert_int_eq(fits_read_key(f, TSTRING, "EXTNAME", val, NULL, &status), 0);
    ck_assert_str_eq(val, "r");
    ck_assert_int_eq(fits_read_key(f, TSTRING, "BAND", val, NULL, &status), 0);
    ck_assert_str_eq(val, "r");
    ck_assert_int_eq(fits_read_key(f, TSTRING, "BUNIT", val, NULL, &status), 0);
    ck_assert_str_eq(val, "electron");
    ck_assert_int_eq(fits_get_img_param(f, 3, &bitpix, &naxis, naxes, &status), 0);
    ck_assert_int_eq(naxis, 3);
    ck_assert_int_eq(naxes[0], 5); /* NAXIS1 = columns */
    ck_assert_int_eq(naxes[1], 7);
    ck_assert_int_eq(naxes[2], 4);
    ck_assert_int_eq(bitpix, sizeof(bl_real) == 4 ? FLOAT_IMG : DOUBLE_IMG);
    /* no WCS keywords */
    ck_assert_int_ne(fits_read_key(f, TSTRING, "CTYPE1", val, NULL, &status), 0);
    status = 0;
    ck_assert_int_eq(fits_movabs_hdu(f, 5, NULL, &status), 0);
    ck_assert_int_eq(fits_read_key(f, TSTRING, "EXTNAME", val, NULL, &status), 0);
    ck_assert_str_eq(val, "BKG_g");
    fits_close_file(f, &status);
    bl_tensor_free(a);
    bl_tensor_free(b);
    bl_tensor_free(im);
    bl_tensor_free(bg);
}
END_TEST

START_TEST(test_catalog_round_trip)
{
    char path[300];
    path_of(path, sizeof path, "cat.fits");
    bl_tensor *im = random_images(3, 3, 30, 40, 3);
    bl_full_catalog *c = make_catalog();
    ck_assert_int_eq(bl_fits_write_batch(path, im, NULL, bands, "electron", c), BL_OK);
    bl_full_catalog *r;
    ck_assert_int_eq(bl_fits_read_catalog(path, &r), BL_OK);
    ck_assert_int_eq(r->B, 3);
    ck_assert_int_eq(r->M, 3);
    ck_assert_int_eq(r->height, 30);
    ck_assert_int_eq(r->width, 40);
    ck_assert_int_eq(r->n_bands, 3);
    for (int b = 0; b < 3; b++) ck_assert_int_eq(r->n_sources[b], c->n_sources[b]);
    const char *fields[] = {"source_type", "star_fluxes", "galaxy_params", "redshifts"};
    for (int i = 0; i < 4; i++) {
        bl_tensor *x = bl_full_catalog_require(c, fields[i]), *y = bl_full_catalog_require(r, fields[i]);
        ck_assert(bl_tensor_same_shape(x, y));
        for (int64_t b = 0; b < 3; b++)
            for (int64_t m = 0; m < c->n_sources[b]; m++)
                ck_assert_int_eq(memcmp(x->data + (b * 3 + m) * x->shape[2], y->data + (b * 3 + m) * y->shape[2],
                                        (size_t)x->shape[2] * sizeof(bl_real)), 0);
    }
    for (int64_t b = 0; b < 3; b++)
        for (int64_t m = 0; m < c->n_sources[b]; m++)
            ck_assert_int_eq(memcmp(c->plocs->data + (b * 3 + m) * 2, r->plocs->data + (b * 3 + m) * 2,
                                    2 * sizeof(bl_real)), 0);
    bl_full_catalog_free(r);

    /* the table as cfitsio sees it: 5 rows, columns named after the fields */
    fitsfile *f;
    int status = 0, col = 0;
    long nrows = 0;
    char name[] = "star_fluxes", unit[FLEN_VALUE];
    ck_assert_int_eq(fits_open_file(&f, path, READONLY, &status), 0);
    ck_assert_int_eq(fits_movnam_hdu(f, BINARY_TBL, "CATALOG", 0, &status), 0);
    ck_assert_int_eq(fits_get_num_rows(f, &nrows, &status), 0);
    ck_assert_int_eq(nrows, 5);
    ck_assert_int_eq(fits_get_colnum(f, CASESEN, name, &col, &status), 0);
    char key[16];
    snprintf(key, sizeof key, "TUNIT%d", col);
    ck_assert_int_eq(fits_read_key(f, TSTRING, key, unit, NULL, &status), 0);
    ck_assert_str_eq(unit, "nmgy");
    int img[5];
    ck_assert_int_eq(fits_read_col(f, TINT, 1, 1, 1, 5, NULL, img, NULL, &status), 0);
    ck_assert_int_eq(img[0], 0);
    ck_assert_int_eq(img[1], 0);
    ck_assert_int_eq(img[2], 2);
    ck_assert_int_eq(img[4], 2);
    fits_close_file(f, &status);
    bl_full_catalog_free(c);
    bl_tensor_free(im);
}
END_TEST

START_TEST(test_damaged_files)
{
    char path[300], cut[300];
    path_of(path, sizeof path, "good.fits");
    path_of(cut, sizeof cut, "cut.fits");
    bl_tensor *im = random_images(2, 3, 30, 40, 4);
    bl_full_catalog *c = make_catalog();
    c->B = 2; /* only the first two images */
    ck_assert_int_eq(bl_fits_write_batch(path, im, NULL, bands, "electron", c), BL_OK);
    c->B = 3;
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *all = malloc((size_t)n);
    ck_assert_int_eq(fread(all, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    ck_assert_int_eq(n % 2880, 0);
    /* truncate at block boundaries and inside blocks */
    for (long k = 0; k < n; k += 1440 + 7) {
        FILE *g = fopen(cut, "wb");
        fwrite(all, 1, (size_t)k, g);
        fclose(g);
        bl_tensor *t = NULL;
        bl_full_catalog *r = NULL;
        bl_status s1 = bl_fits_read_batch_images(cut, 3, bands, NULL, &t);
        bl_status s2 = bl_fits_read_catalog(cut, &r);
        /* the last HDU is the table: any cut loses it */
        ck_assert_msg(s2 != BL_OK, "cut at %ld accepted", k);
        ck_assert_ptr_null(r);
        ck_assert_ptr_nonnull(strstr(bl_error_message(), cut));
        if (s1 == BL_OK) bl_tensor_free(t);
        else ck_assert_ptr_null(t);
    }
    /* a text file */
    FILE *g = fopen(cut, "w");
    fputs("SIMPLE = this is not FITS\n", g);
    fclose(g);
    bl_tensor *t;
    ck_assert_int_eq(bl_fits_read_image(cut, "r", &t), BL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "cannot open as FITS"));
    /* missing HDU, missing file */
    ck_assert_int_eq(bl_fits_read_image(path, "y", &t), BL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "image HDU 'y'"));
    path_of(cut, sizeof cut, "absent.fits");
    ck_assert_int_eq(bl_fits_read_image(cut, "r", &t), BL_ERR_IO);
    /* a write into a missing directory fails cleanly */
    path_of(cut, sizeof cut, "no/dir/x.fits");
    ck_assert_int_ne(bl_fits_write_batch(cut, im, NULL, bands, "electron", NULL), BL_OK);
    free(all);
    bl_full_catalog_free(c);
    bl_tensor_free(im);
}
END_TEST

/* A CATALOG table written with cfitsio by hand: columns image, plocs and `column` (width
 * values per row). */
static void write_foreign_catalog(const char *path, const char *column, int width)
{
    fitsfile *f;
    int status = 0;
    char path_bang[310], tform[8];
    snprintf(path_bang, sizeof path_bang, "!%s", path);
    snprintf(tform, sizeof tform, "%dE", width);
    ck_assert_int_eq(fits_create_file(&f, path_bang, &status), 0);
    fits_create_img(f, BYTE_IMG, 0, NULL, &status);
    char *ttype[] = {"image", "plocs", (char *)column}, *tforms[] = {"1J", "2E", tform};
    fits_create_tbl(f, BINARY_TBL, 1, 3, ttype, tforms, NULL, "CATALOG", &status);
    long one = 1, h = 8, w = 8, nb = 2;
    fits_update_key(f, TLONG, "NIMAGES", &one, NULL, &status);
    fits_update_key(f, TLONG, "HEIGHT", &h, NULL, &status);
    fits_update_key(f, TLONG, "WIDTH", &w, NULL, &status);
    fits_update_key(f, TLONG, "NBANDS", &nb, NULL, &status);
    int im[1] = {0};
    float pl[2] = {1, 2}, other[2] = {0.25f, 0.5f};
    fits_write_col(f, TINT, 1, 1, 1, 1, im, &status);
    fits_write_col(f, TFLOAT, 2, 1, 1, 2, pl, &status);
    fits_write_col(f, TFLOAT, 3, 1, 1, width, other, &status);
    fits_close_file(f, &status);
    ck_assert_int_eq(status, 0);
}

START_TEST(test_foreign_catalog_columns)
{
    /* a column that is no catalog field */
    char path[300];
    path_of(path, sizeof path, "foreign.fits");
    bl_full_catalog *r;
    write_foreign_catalog(path, "bogus", 1);
    ck_assert_int_eq(bl_fits_read_catalog(path, &r), BL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "column 'bogus' is not a catalog field"));
    /* the tile-only field `locs`: a format error (a fuzz campaign found it reached an assertion) */
    write_foreign_catalog(path, "locs", 2);
    ck_assert_int_eq(bl_fits_read_catalog(path, &r), BL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "column 'locs' is not a catalog field of a full "
                                                     "catalog"));
    /* image index out of range */
    fitsfile *f;
    int status = 0, im[1] = {5};
    ck_assert_int_eq(fits_open_file(&f, path, READWRITE, &status), 0);
    fits_movnam_hdu(f, BINARY_TBL, "CATALOG", 0, &status);
    fits_write_col(f, TINT, 1, 1, 1, 1, im, &status);
    fits_delete_col(f, 3, &status);
    fits_close_file(f, &status);
    ck_assert_int_eq(status, 0);
    ck_assert_int_eq(bl_fits_read_catalog(path, &r), BL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(bl_error_message(), "has image 5"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fits");
    TCase *tc = tcase_create("fits");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_image_round_trip);
    tcase_add_test(tc, test_catalog_round_trip);
    tcase_add_test(tc, test_damaged_files);
    tcase_add_test(tc, test_foreign_catalog_columns);
    suite_add_tcase(s, tc);
    return bl_check_run(s);
}
