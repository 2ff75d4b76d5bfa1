/* FITS files for astronomers (cfitsio): images and catalogs that astropy and ds9 open.
 *
 * Layout written by bl_fits_write:
 *   HDU 0     primary, no data; keywords CREATOR, NBANDS, BANDS ("u,g,r,i,z") and any caller
 *             keywords.
 *   HDU 1..   one IMAGE extension per entry of `images`, EXTNAME e.g. "u" or "BKG_u", keywords
 *             BAND and BUNIT (e.g. 'electron'), no WCS. A stack of n planes of H x W is a cube
 *             NAXIS1 = W, NAXIS2 = H, NAXIS3 = n (n = 1 gives a 2-D image). Pixel values are
 *             stored as IEEE float32 (BITPIX -32), or float64 in the double build, so a round
 *             trip is bit-exact.
 *   last      (optional) BINTABLE "CATALOG": one row per on source of a full catalog, columns
 *             `image` (J, index in the batch), `plocs` (2E, pixel row/col, unit pix) and one
 *             column per catalog field with the field's name, repeat k, E (D in the double build)
 *             or J for integer fields, TUNIT 'nmgy' for flux fields. Header: NIMAGES, HEIGHT,
 *             WIDTH, NBANDS, BAND<i>, GPAR<i> naming the galaxy_params columns, and the plocs
 *             convention (PLOCAXES, PIXORIG, PIXCENT; see bl_fits_write_tables).
 *
 * Everything is written to a temporary file renamed over `path` at the end. Readers return
 * BL_ERR_IO (missing file) or BL_ERR_FORMAT (not FITS, truncated, missing HDU or column, wrong
 * type or shape) with cfitsio's explanation; they never crash on bad files. */
#ifndef BL_FITS_H
#define BL_FITS_H

#include <stdint.h>

#include "lib/catalog.h"
#include "lib/error.h"
#include "lib/tensor.h"

typedef struct bl_fits_image {
    const char *extname;     /* HDU name, e.g. "u" or "BKG_u" */
    const char *band;        /* BAND keyword (may be NULL) */
    const char *bunit;       /* BUNIT keyword, e.g. "electron" (may be NULL) */
    const char *content;     /* CONTENT keyword, e.g. "image" or "background" (may be NULL) */
    int64_t n, h, w;         /* n planes of h x w */
    const bl_real *data;     /* plane p starts at data + p * plane_stride, rows contiguous */
    int64_t plane_stride;
} bl_fits_image;

/* A free-form primary-header keyword (value is a string), or, when `card` is set, an 80-char
 * header card copied verbatim (key, value, comment ignored) into the primary header and every
 * table header (the WCS of an input image, bl_fits_read_wcs). */
typedef struct bl_fits_keyword {
    const char *key, *value, *comment;
    const char *card;
} bl_fits_keyword;

/* A BINTABLE of a full catalog: EXTNAME (NULL: "CATALOG") and EXTVER (0: none). */
typedef struct bl_fits_table {
    const char *extname;
    int extver;
    const bl_full_catalog *cat;
} bl_fits_table;

/* Write images (HDU 1..n_images) and, if cat != NULL, its CATALOG table. band_names has
 * n_bands entries (the catalog's per-band columns follow this order). */
bl_status bl_fits_write(const char *path, int n_bands, const char *const *band_names,
                        const bl_fits_image *images, int n_images, const bl_full_catalog *cat,
                        const bl_fits_keyword *keywords, int n_keywords);

/* The same with any number of catalog tables (e.g. "CATALOG" and "SAMPLE" EXTVER 1..K).
 * Every table header states the plocs convention: PLOCAXES = 'row,col', PIXORIG = 0,
 * PIXCENT = 0.5, and COMMENT lines (FITS pixel x = col + 0.5, y = row + 0.5). */
bl_status bl_fits_write_tables(const char *path, int n_bands, const char *const *band_names,
                               const bl_fits_image *images, int n_images, const bl_fits_table *tables,
                               int n_tables, const bl_fits_keyword *keywords, int n_keywords);
/* The WCS cards (CTYPEi, CRPIXi, CRVALi, CDELTi, CDi_j, PCi_j, CUNITi, RADESYS, EQUINOX, SIP
 * A_/B_ terms, ...) of the image HDU `extname`, as 80-char cards: *n of them (0: the image has
 * no WCS). Free *cards. Errors as bl_fits_read_image. */
bl_status bl_fits_read_wcs(const char *path, const char *extname, char (**cards)[81], int *n);
/* Convenience for a batch: images (B, NB, H, W) as HDUs named after the bands, background
 * (B, NB, H, W) or NULL as "BKG_<band>", both in `bunit`; cat may be NULL. */
bl_status bl_fits_write_batch(const char *path, const bl_tensor *images, const bl_tensor *background,
                              const char *const *band_names, const char *bunit,
                              const bl_full_catalog *cat);

/* *has = 1 when the file has an HDU named `extname` (any type); errors opening the file as
 * bl_fits_read_image. */
bl_status bl_fits_has_hdu(const char *path, const char *extname, int *has);
/* Read the image HDU named `extname`: a (n, H, W) tensor (n = 1 for a 2-D HDU). */
bl_status bl_fits_read_image(const char *path, const char *extname, bl_tensor **out);
/* Read the image HDUs named after the bands into (B, NB, H, W); all must have equal shapes. */
bl_status bl_fits_read_batch_images(const char *path, int n_bands, const char *const *band_names,
                                    const char *prefix, bl_tensor **out);
/* Read the CATALOG table into a full catalog (B = NIMAGES, M = most sources in one image;
 * sources keep their table order within an image). Unknown column names are BL_ERR_FORMAT. */
bl_status bl_fits_read_catalog(const char *path, bl_full_catalog **out);

#endif
