#include "lib/io/fits.h"

#include <fitsio.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>

#include "lib/io/atomic_file.h"

#ifdef BL_REAL_DOUBLE
#define BL_FITS_TREAL TDOUBLE
#define BL_FITS_IMG DOUBLE_IMG
#define BL_FITS_FORM "D"
#else
#define BL_FITS_TREAL TFLOAT
#define BL_FITS_IMG FLOAT_IMG
#define BL_FITS_FORM "E"
#endif

#define BL_FITS_CATALOG "CATALOG"
/* bounds on a CATALOG's header: images per file, and images x (most sources in one image) */
#define BL_FITS_MAX_IMAGES (1L << 24)
#define BL_FITS_MAX_SLOTS ((int64_t)1 << 26)

static const char *const bl_galaxy_param_names[6] = {"disk_frac", "beta_radians", "disk_q",
                                                     "a_d", "bulge_q", "a_b"};

/* A user-facing error from a cfitsio status: cfitsio's short text plus its first detailed
 * message (its stack is then cleared). */
static bl_status bl_fits_error(int status, const char *path, const char *what)
{
    char text[FLEN_STATUS] = "", msg[FLEN_ERRMSG] = "";
    fits_get_errstatus(status, text);
    fits_read_errmsg(msg);
    fits_clear_errmsg();
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == ' ')) msg[--n] = 0;
    bl_status code = status == FILE_NOT_OPENED ? BL_ERR_IO : BL_ERR_FORMAT;
    if (status == FILE_NOT_CREATED || status == WRITE_ERROR) code = BL_ERR_IO;
    return bl_error(code, "%s: %s: %s%s%s%s (cfitsio status %d)", path, what, text,
                    n ? " [" : "", msg, n ? "]" : "", status);
}

static int bl_is_flux_field(const char *name)
{
    return strstr(name, "fluxes") != NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Writing                                                                                     */

static void bl_fits_write_images(fitsfile *f, const bl_fits_image *im, int *status)
{
    long naxes[3] = {(long)im->w, (long)im->h, (long)im->n};
    int naxis = im->n == 1 ? 2 : 3;
    fits_create_img(f, BL_FITS_IMG, naxis, naxes, status);
    fits_update_key(f, TSTRING, "EXTNAME", (void *)im->extname, "HDU name", status);
    if (im->band) fits_update_key(f, TSTRING, "BAND", (void *)im->band, "photometric band", status);
    if (im->bunit) fits_update_key(f, TSTRING, "BUNIT", (void *)im->bunit, "pixel unit", status);
    if (im->content)
        fits_update_key(f, TSTRING, "CONTENT", (void *)im->content, "what the pixels hold", status);
    LONGLONG plane = (LONGLONG)im->h * im->w;
    for (int64_t p = 0; p < im->n && !*status; p++)
        fits_write_img(f, BL_FITS_TREAL, 1 + p * plane, plane,
                       (void *)(im->data + p * im->plane_stride), status);
}

/* WCS keywords of an image header (prefixes; alternate descriptions CTYPE1A etc. included) */
static int bl_is_wcs_key(const char *key)
{
    static const char *const exact[] = {"WCSAXES", "LONPOLE", "LATPOLE", "RADESYS", "RADECSYS", "EQUINOX",
                                        "EPOCH", "MJD-OBS", "DATE-OBS", "MJDREF", "A_ORDER", "B_ORDER",
                                        "AP_ORDER", "BP_ORDER"};
    static const char *const prefix[] = {"CTYPE", "CUNIT", "CRPIX", "CRVAL", "CDELT", "CROTA", "CD1_", "CD2_",
                                         "PC1_", "PC2_", "PV1_", "PV2_", "PS1_", "PS2_", "A_", "B_", "AP_", "BP_"};
    for (size_t i = 0; i < sizeof exact / sizeof *exact; i++)
        if (strcmp(key, exact[i]) == 0) return 1;
    for (size_t i = 0; i < sizeof prefix / sizeof *prefix; i++)
        if (strncmp(key, prefix[i], strlen(prefix[i])) == 0 && key[strlen(prefix[i])] != 0) return 1;
    return 0;
}

/* the plocs convention, stated in every table header */
static void bl_fits_write_pixel_convention(fitsfile *f, int *status)
{
    int origin = 0;
    double centre = 0.5;
    fits_update_key(f, TSTRING, "PLOCAXES", "row,col", "plocs columns: pixel row, pixel column", status);
    fits_update_key(f, TINT, "PIXORIG", &origin, "plocs: the first pixel is 0 (0-based)", status);
    fits_update_key(f, TDOUBLE, "PIXCENT", &centre, "plocs of pixel i's centre: i + PIXCENT", status);
    fits_write_comment(f, "plocs = (row, col) in pixels: 0-based, pixel i spans [i, i + 1), centre i + 0.5;", status);
    fits_write_comment(f, "FITS/WCS pixel coordinates (1-based, centres at integers): x = col + 0.5, y = row + 0.5", status);
}

static void bl_fits_write_catalog(fitsfile *f, const bl_fits_table *table, int n_bands,
                                  const char *const *band_names, const bl_fits_keyword *keywords,
                                  int n_keywords, int *status)
{
    const bl_full_catalog *cat = table->cat;
    BL_ASSERT(cat->n_bands == n_bands, "bl_fits_write: catalog has %d bands, %d band names",
              cat->n_bands, n_bands);
    int ncols = 2 + cat->n_fields;
    char **ttype = bl_calloc((size_t)ncols, sizeof(char *));
    char **tform = bl_calloc((size_t)ncols, sizeof(char *));
    char **tunit = bl_calloc((size_t)ncols, sizeof(char *));
    char (*forms)[16] = bl_calloc((size_t)ncols, sizeof *forms);
    ttype[0] = "image";
    tform[0] = "1J";
    tunit[0] = "";
    ttype[1] = "plocs";
    tform[1] = "2" BL_FITS_FORM;
    tunit[1] = "pix";
    for (int i = 0; i < cat->n_fields; i++) {
        const bl_catalog_field *fd = &cat->fields[i];
        const bl_catalog_field_info *info = bl_catalog_field_find(fd->name);
        int integer = info && (info->flags & BL_FIELD_INTEGER);
        snprintf(forms[2 + i], sizeof forms[2 + i], "%d%s", fd->k, integer ? "J" : BL_FITS_FORM);
        ttype[2 + i] = fd->name;
        tform[2 + i] = forms[2 + i];
        tunit[2 + i] = bl_is_flux_field(fd->name) ? "nmgy" : "";
    }
    int64_t nrows = 0;
    for (int64_t b = 0; b < cat->B; b++) nrows += cat->n_sources[b];
    fits_create_tbl(f, BINARY_TBL, (LONGLONG)nrows, ncols, ttype, tform, tunit,
                    table->extname ? table->extname : BL_FITS_CATALOG, status);
    if (table->extver > 0) {
        int v = table->extver;
        fits_update_key(f, TINT, "EXTVER", &v, "version of this EXTNAME (sample number)", status);
    }
    long nimages = (long)cat->B, height = (long)cat->height, width = (long)cat->width;
    fits_update_key(f, TLONG, "NIMAGES", &nimages, "images in the batch", status);
    fits_update_key(f, TLONG, "HEIGHT", &height, "image height (pixels)", status);
    fits_update_key(f, TLONG, "WIDTH", &width, "image width (pixels)", status);
    fits_update_key(f, TINT, "NBANDS", &n_bands, "bands of the per-band columns", status);
    for (int k = 0; k < n_bands; k++) {
        char key[16];
        snprintf(key, sizeof key, "BAND%d", k);
        fits_update_key(f, TSTRING, key, (void *)band_names[k], "per-band column order", status);
    }
    for (int k = 0; k < 6; k++) {
        char key[16];
        snprintf(key, sizeof key, "GPAR%d", k);
        fits_update_key(f, TSTRING, key, (void *)bl_galaxy_param_names[k],
                        "galaxy_params column (a_d, a_b in arcsec)", status);
    }
    bl_fits_write_pixel_convention(f, status);
    for (int i = 0; i < n_keywords; i++)
        if (keywords[i].card) fits_write_record(f, keywords[i].card, status);
    /* gather the on rows of every column */
    int *img = bl_malloc((size_t)(nrows ? nrows : 1) * sizeof(int));
    int64_t r = 0;
    for (int64_t b = 0; b < cat->B; b++)
        for (int m = 0; m < cat->n_sources[b]; m++) img[r++] = (int)b;
    if (nrows) fits_write_col(f, TINT, 1, 1, 1, (LONGLONG)nrows, img, status);
    free(img);
    for (int c = -1; c < cat->n_fields && !*status; c++) {
        const bl_tensor *t = c < 0 ? cat->plocs : cat->fields[c].t;
        int k = c < 0 ? 2 : cat->fields[c].k;
        const bl_catalog_field_info *info = c < 0 ? NULL : bl_catalog_field_find(cat->fields[c].name);
        int integer = info && (info->flags & BL_FIELD_INTEGER);
        size_t n = (size_t)(nrows ? nrows : 1) * (size_t)k;
        bl_real *buf = bl_malloc(n * sizeof(bl_real));
        int *ibuf = bl_malloc(n * sizeof(int));
        int64_t e = 0;
        for (int64_t b = 0; b < cat->B; b++)
            for (int m = 0; m < cat->n_sources[b]; m++)
                for (int j = 0; j < k; j++, e++) {
                    bl_real v = t->data[(b * cat->M + m) * k + j];
                    buf[e] = v;
                    ibuf[e] = integer ? (int)v : 0; /* never converts a NaN of a float column */
                }
        if (nrows) {
            if (integer)
                fits_write_col(f, TINT, c + 3, 1, 1, (LONGLONG)e, ibuf, status);
            else
                fits_write_col(f, BL_FITS_TREAL, c + 3, 1, 1, (LONGLONG)e, buf, status);
        }
        free(buf);
        free(ibuf);
    }
    free(ttype);
    free(tform);
    free(tunit);
    free(forms);
}

bl_status bl_fits_write(const char *path, int n_bands, const char *const *band_names,
                        const bl_fits_image *images, int n_images, const bl_full_catalog *cat,
                        const bl_fits_keyword *keywords, int n_keywords)
{
    const bl_fits_table table = {.extname = BL_FITS_CATALOG, .cat = cat};
    return bl_fits_write_tables(path, n_bands, band_names, images, n_images, cat ? &table : NULL,
                                cat ? 1 : 0, keywords, n_keywords);
}

bl_status bl_fits_write_tables(const char *path, int n_bands, const char *const *band_names,
                               const bl_fits_image *images, int n_images, const bl_fits_table *tables,
                               int n_tables, const bl_fits_keyword *keywords, int n_keywords)
{
    char *tmp = bl_atomic_tmp_path(path);
    remove(tmp);
    fitsfile *f = NULL;
    int status = 0;
    if (fits_create_file(&f, tmp, &status)) {
        free(tmp);
        return bl_fits_error(status, path, "cannot create file");
    }
    fits_create_img(f, BYTE_IMG, 0, NULL, &status);
    fits_update_key(f, TSTRING, "CREATOR", "bliss-c", "software", &status);
    fits_update_key(f, TINT, "NBANDS", &n_bands, "number of bands", &status);
    char bands[256] = "";
    for (int k = 0; k < n_bands; k++) {
        if (k) strncat(bands, ",", sizeof bands - strlen(bands) - 1);
        strncat(bands, band_names[k], sizeof bands - strlen(bands) - 1);
    }
    fits_update_key(f, TSTRING, "BANDS", bands, "band names in order", &status);
    for (int i = 0; i < n_keywords; i++) {
        if (keywords[i].card)
            fits_write_record(f, keywords[i].card, &status);
        else
            fits_update_key(f, TSTRING, keywords[i].key, (void *)keywords[i].value,
                            keywords[i].comment, &status);
    }
    for (int i = 0; i < n_images && !status; i++) bl_fits_write_images(f, &images[i], &status);
    for (int i = 0; i < n_tables && !status; i++)
        bl_fits_write_catalog(f, &tables[i], n_bands, band_names, keywords, n_keywords, &status);
    if (status) {
        bl_status s = bl_fits_error(status, path, "write failed");
        int ignore = 0;
        fits_close_file(f, &ignore);
        remove(tmp);
        free(tmp);
        return s;
    }
    if (fits_close_file(f, &status)) {
        remove(tmp);
        free(tmp);
        return bl_fits_error(status, path, "write failed");
    }
    bl_status s = bl_atomic_rename(tmp, path);
    free(tmp);
    return s;
}

bl_status bl_fits_write_batch(const char *path, const bl_tensor *images, const bl_tensor *background,
                              const char *const *band_names, const char *bunit,
                              const bl_full_catalog *cat)
{
    BL_ASSERT(images->ndim == 4, "bl_fits_write_batch: images must be (B, NB, H, W)");
    int64_t B = images->shape[0], NB = images->shape[1], H = images->shape[2], W = images->shape[3];
    if (background) BL_ASSERT_SAME_SHAPE("bl_fits_write_batch", images, background);
    int n = (int)NB * (background ? 2 : 1);
    bl_fits_image *hdus = bl_calloc((size_t)n, sizeof *hdus);
    char (*names)[80] = bl_calloc((size_t)n, sizeof *names);
    for (int i = 0; i < n; i++) {
        int band = i % (int)NB, bkg = i >= NB;
        snprintf(names[i], sizeof names[i], "%s%s", bkg ? "BKG_" : "", band_names[band]);
        hdus[i] = (bl_fits_image){.extname = names[i], .band = band_names[band], .bunit = bunit,
                                  .content = bkg ? "background" : "image", .n = B, .h = H, .w = W,
                                  .data = (bkg ? background : images)->data + band * H * W,
                                  .plane_stride = NB * H * W};
    }
    bl_status s = bl_fits_write(path, (int)NB, band_names, hdus, n, cat, NULL, 0);
    free(names);
    free(hdus);
    return s;
}

/* ------------------------------------------------------------------------------------------ */
/* Reading                                                                                     */

static bl_status bl_fits_open(const char *path, fitsfile **f)
{
    int status = 0;
    *f = NULL;
    if (fits_open_file(f, path, READONLY, &status)) {
        *f = NULL;
        return bl_fits_error(status, path, "cannot open as FITS");
    }
    return BL_OK;
}

static void bl_fits_close(fitsfile *f)
{
    int status = 0;
    if (f) fits_close_file(f, &status);
    fits_clear_errmsg();
}

/* The current HDU's data, as its header declares it (NAXISn, PCOUNT), must lie inside the file:
 * a header claiming 10^12 pixels is an error before anything is allocated for them. */
static bl_status bl_fits_check_extent(fitsfile *f, const char *path, const char *what)
{
    int status = 0;
    LONGLONG head = 0, data = 0, end = 0;
    if (fits_get_hduaddrll(f, &head, &data, &end, &status)) return bl_fits_error(status, path, what);
    LONGLONG size = f->Fptr->logfilesize;
    if (end > size)
        return bl_error(BL_ERR_FORMAT, "%s: %s declares data up to byte %lld, the file has %lld bytes "
                        "(truncated or a corrupt header)", path, what, (long long)end, (long long)size);
    return BL_OK;
}

bl_status bl_fits_has_hdu(const char *path, const char *extname, int *has)
{
    *has = 0;
    fitsfile *f;
    bl_status s = bl_fits_open(path, &f);
    if (s != BL_OK) return s;
    int status = 0;
    *has = fits_movnam_hdu(f, ANY_HDU, (char *)extname, 0, &status) == 0;
    bl_fits_close(f);
    return BL_OK;
}

bl_status bl_fits_read_wcs(const char *path, const char *extname, char (**cards)[81], int *n)
{
    *cards = NULL;
    *n = 0;
    fitsfile *f;
    bl_status s = bl_fits_open(path, &f);
    if (s != BL_OK) return s;
    int status = 0, nkeys = 0;
    char what[160];
    snprintf(what, sizeof what, "image HDU '%s'", extname);
    if (fits_movnam_hdu(f, IMAGE_HDU, (char *)extname, 0, &status) ||
        fits_get_hdrspace(f, &nkeys, NULL, &status)) {
        s = bl_fits_error(status, path, what);
        bl_fits_close(f);
        return s;
    }
    *cards = bl_calloc((size_t)nkeys + 1, sizeof **cards);
    for (int i = 1; i <= nkeys; i++) {
        char card[FLEN_CARD] = "", name[FLEN_KEYWORD] = "";
        int len = 0;
        if (fits_read_record(f, i, card, &status)) break;
        if (fits_get_keyname(card, name, &len, &status)) {
            status = 0; /* a card without a keyword name (blank, COMMENT-like): not WCS */
            continue;
        }
        if (bl_is_wcs_key(name)) snprintf((*cards)[(*n)++], 81, "%s", card);
    }
    if (status) {
        s = bl_fits_error(status, path, what);
        free(*cards);
        *cards = NULL;
        *n = 0;
    }
    bl_fits_close(f);
    return s;
}

bl_status bl_fits_read_image(const char *path, const char *extname, bl_tensor **out)
{
    *out = NULL;
    fitsfile *f;
    bl_status s = bl_fits_open(path, &f);
    if (s != BL_OK) return s;
    int status = 0, bitpix = 0, naxis = 0;
    long naxes[3] = {1, 1, 1};
    char what[160];
    snprintf(what, sizeof what, "image HDU '%s'", extname);
    if (fits_movnam_hdu(f, IMAGE_HDU, (char *)extname, 0, &status) ||
        fits_get_img_param(f, 3, &bitpix, &naxis, naxes, &status)) {
        s = bl_fits_error(status, path, what);
        bl_fits_close(f);
        return s;
    }
    if (naxis < 2 || naxis > 3) {
        bl_fits_close(f);
        return bl_error(BL_ERR_FORMAT, "%s: %s has %d axes, expected 2 or 3", path, what, naxis);
    }
    if ((s = bl_fits_check_extent(f, path, what)) != BL_OK) {
        bl_fits_close(f);
        return s;
    }
    int64_t n = naxis == 3 ? naxes[2] : 1, h = naxes[1], w = naxes[0];
    /* the pixels must fit in the file (a tile-compressed image may expand, by at most 1024x
     * here): a header claiming 10^12 pixels is refused before anything is allocated */
    int cstatus = 0;
    const double bytes = (double)n * (double)h * (double)w * (double)(bitpix < 0 ? -bitpix : bitpix) / 8;
    const double limit = (double)f->Fptr->logfilesize * (fits_is_compressed_image(f, &cstatus) ? 1024 : 1);
    if (n < 0 || h < 0 || w < 0 || bytes > limit) {
        bl_fits_close(f);
        return bl_error(BL_ERR_FORMAT, "%s: %s declares %lld x %lld x %lld pixels, more than the file "
                        "holds (truncated or a corrupt header)", path, what, (long long)n, (long long)h,
                        (long long)w);
    }
    bl_tensor *t = bl_tensor_alloc(NULL, 3, BL_SHAPE(n, h, w), 0);
    int anynul = 0;
    if (t->numel &&
        fits_read_img(f, BL_FITS_TREAL, 1, (LONGLONG)t->numel, NULL, t->data, &anynul, &status)) {
        s = bl_fits_error(status, path, what);
        bl_tensor_free(t);
        bl_fits_close(f);
        return s;
    }
    bl_fits_close(f);
    *out = t;
    return BL_OK;
}

bl_status bl_fits_read_batch_images(const char *path, int n_bands, const char *const *band_names,
                                    const char *prefix, bl_tensor **out)
{
    *out = NULL;
    bl_tensor *res = NULL;
    for (int k = 0; k < n_bands; k++) {
        char name[80];
        snprintf(name, sizeof name, "%s%s", prefix ? prefix : "", band_names[k]);
        bl_tensor *t;
        bl_status s = bl_fits_read_image(path, name, &t);
        if (s != BL_OK) {
            bl_tensor_free(res);
            return s;
        }
        int64_t B = t->shape[0], H = t->shape[1], W = t->shape[2];
        if (!res) res = bl_tensor_alloc(NULL, 4, BL_SHAPE(B, n_bands, H, W), 0);
        if (res->shape[0] != B || res->shape[2] != H || res->shape[3] != W) {
            char a[96], b[96];
            bl_status e = bl_error(BL_ERR_FORMAT, "%s: HDU '%s' has shape %s, other bands %s", path,
                                   name, bl_shape_str(t, a, 96), bl_shape_str(res, b, 96));
            bl_tensor_free(t);
            bl_tensor_free(res);
            return e;
        }
        for (int64_t b = 0; b < B; b++)
            memcpy(res->data + (b * n_bands + k) * H * W, t->data + b * H * W,
                   (size_t)(H * W) * sizeof(bl_real));
        bl_tensor_free(t);
    }
    *out = res;
    return BL_OK;
}

/* The keyword is read as its raw value text and parsed here: cfitsio's own integer conversion
 * (ffc2j) overflows a buffer on some malformed values (found by fuzzing). */
static bl_status bl_fits_read_long(fitsfile *f, const char *path, const char *key, long *v)
{
    int status = 0;
    char value[FLEN_VALUE] = "", comment[FLEN_COMMENT];
    if (fits_read_keyword(f, key, value, comment, &status)) {
        char what[96];
        snprintf(what, sizeof what, "CATALOG keyword %s", key);
        return bl_fits_error(status, path, what);
    }
    char *end;
    errno = 0;
    long long x = strtoll(value, &end, 10);
    while (*end == ' ') end++;
    if (end == value || *end || errno || x < LONG_MIN || x > LONG_MAX)
        return bl_error(BL_ERR_FORMAT, "%s: CATALOG keyword %s = '%.40s' is not an integer", path, key,
                        value);
    *v = (long)x;
    return BL_OK;
}

bl_status bl_fits_read_catalog(const char *path, bl_full_catalog **out)
{
    *out = NULL;
    fitsfile *f;
    bl_status s = bl_fits_open(path, &f);
    if (s != BL_OK) return s;
    int status = 0, ncols = 0;
    LONGLONG nrows = 0;
    long nimages = 0, height = 0, width = 0, nbands = 0;
    if (fits_movnam_hdu(f, BINARY_TBL, BL_FITS_CATALOG, 0, &status) ||
        fits_get_num_rowsll(f, &nrows, &status) || fits_get_num_cols(f, &ncols, &status)) {
        s = bl_fits_error(status, path, "table HDU 'CATALOG'");
        bl_fits_close(f);
        return s;
    }
    if ((s = bl_fits_read_long(f, path, "NIMAGES", &nimages)) != BL_OK ||
        (s = bl_fits_read_long(f, path, "HEIGHT", &height)) != BL_OK ||
        (s = bl_fits_read_long(f, path, "WIDTH", &width)) != BL_OK ||
        (s = bl_fits_read_long(f, path, "NBANDS", &nbands)) != BL_OK) {
        bl_fits_close(f);
        return s;
    }
    if (nimages < 0 || nrows < 0 || nrows > INT_MAX || nbands < 1 || nbands > 64 || height < 0 ||
        width < 0 || nimages > BL_FITS_MAX_IMAGES) {
        bl_fits_close(f);
        return bl_error(BL_ERR_FORMAT, "%s: CATALOG header has NIMAGES=%ld NBANDS=%ld rows=%lld",
                        path, nimages, nbands, (long long)nrows);
    }
    if ((s = bl_fits_check_extent(f, path, "table HDU 'CATALOG'")) != BL_OK) {
        bl_fits_close(f);
        return s;
    }
    int n = (int)nrows;
    int *img = bl_malloc((size_t)(n ? n : 1) * sizeof(int));
    int64_t *count = bl_calloc((size_t)(nimages ? nimages : 1), sizeof(int64_t));
    int anynul = 0, colnum = 0;
    char name_image[] = "image";
    if (fits_get_colnum(f, CASESEN, name_image, &colnum, &status) ||
        (n && fits_read_col(f, TINT, colnum, 1, 1, n, NULL, img, &anynul, &status))) {
        s = bl_fits_error(status, path, "CATALOG column 'image'");
        goto fail;
    }
    int64_t M = 0;
    for (int r = 0; r < n; r++) {
        if (img[r] < 0 || img[r] >= nimages) {
            s = bl_error(BL_ERR_FORMAT, "%s: CATALOG row %d has image %d, NIMAGES = %ld", path, r + 1,
                         img[r], nimages);
            goto fail;
        }
        if (++count[img[r]] > M) M = count[img[r]];
    }
    if (nimages * (M ? M : 1) > BL_FITS_MAX_SLOTS) {
        s = bl_error(BL_ERR_FORMAT, "%s: CATALOG of %ld images with up to %lld sources each is too "
                     "large (at most %lld slots)", path, nimages, (long long)M, (long long)BL_FITS_MAX_SLOTS);
        goto fail;
    }
    bl_full_catalog *cat = bl_full_catalog_alloc(nimages, M, height, width, (int)nbands);
    for (long b = 0; b < nimages; b++) cat->n_sources[b] = (int32_t)count[b];
    /* row r -> slot (img[r], m) in table order */
    int64_t *slot = bl_malloc((size_t)(n ? n : 1) * sizeof(int64_t));
    memset(count, 0, (size_t)(nimages ? nimages : 1) * sizeof(int64_t));
    for (int r = 0; r < n; r++) slot[r] = img[r] * M + count[img[r]]++;
    int have_plocs = 0;
    for (int c = 1; c <= ncols; c++) {
        char key[FLEN_KEYWORD], ttype[FLEN_VALUE] = "";
        snprintf(key, sizeof key, "TTYPE%d", c);
        int typecode = 0;
        long repeat = 0, wid = 0;
        if (fits_read_key(f, TSTRING, key, ttype, NULL, &status) ||
            fits_get_coltype(f, c, &typecode, &repeat, &wid, &status)) {
            s = bl_fits_error(status, path, "CATALOG column header");
            goto fail_cat;
        }
        if (strcmp(ttype, "image") == 0) continue;
        bl_tensor *t;
        if (strcmp(ttype, "plocs") == 0) {
            t = cat->plocs;
            have_plocs = 1;
        } else {
            if (!bl_full_catalog_accepts(ttype)) {
                s = bl_error(BL_ERR_FORMAT, "%s: CATALOG column '%s' is not a catalog field%s", path,
                             ttype, bl_catalog_field_find(ttype) ? " of a full catalog (it holds tile "
                             "fractions; pixel positions are 'plocs')" : "");
                goto fail_cat;
            }
            t = bl_full_catalog_add(cat, ttype);
        }
        int k = (int)t->shape[2];
        if (repeat != k) {
            s = bl_error(BL_ERR_FORMAT, "%s: CATALOG column '%s' has %ld values per row, expected %d",
                         path, ttype, repeat, k);
            goto fail_cat;
        }
        bl_real *buf = bl_malloc((size_t)(n ? n : 1) * (size_t)k * sizeof(bl_real));
        if (n && fits_read_col(f, BL_FITS_TREAL, c, 1, 1, (LONGLONG)n * k, NULL, buf, &anynul, &status)) {
            free(buf);
            char what[128];
            snprintf(what, sizeof what, "CATALOG column '%s'", ttype);
            s = bl_fits_error(status, path, what);
            goto fail_cat;
        }
        for (int r = 0; r < n; r++)
            memcpy(t->data + slot[r] * k, buf + (int64_t)r * k, (size_t)k * sizeof(bl_real));
        free(buf);
    }
    if (!have_plocs) {
        s = bl_error(BL_ERR_FORMAT, "%s: CATALOG has no 'plocs' column", path);
        goto fail_cat;
    }
    free(slot);
    free(img);
    free(count);
    bl_fits_close(f);
    *out = cat;
    return BL_OK;
fail_cat:
    free(slot);
    bl_full_catalog_free(cat);
fail:
    free(img);
    free(count);
    bl_fits_close(f);
    return s;
}
