/* Pictures of an image with its catalogs, as BLISS's notebooks draw them (docs/cli.md, `bliss
 * plot` and `bliss predict --plot`): one band in grey or three bands as an RGB composite, with
 * an asinh stretch, the true and the predicted sources overlaid. PNG through PLplot's pngcairo
 * device, written atomically (lib/io/plplot_png.h). Not thread-safe (PLplot): one thread.
 *
 * Stretch: per band, x = (image - background) / noise with noise = sqrt(median background)
 * (Poisson sky; the image's median absolute deviation x 1.4826 when there is no background or
 * it is not positive); shown value asinh(x / soft) / asinh(x_max / soft), clipped to [0, 1],
 * where x_max is the 99.5th percentile of x over the bands shown (at least 10 soft) and
 * soft = 2 (noise units): the sky is black, faint sources visible, bright cores not saturated.
 * (Medians and the percentile are taken over at most 2^20 pixels at a regular stride.) An
 * image with more pixels than its place in the PNG is shown in blocks of f x f pixels, the
 * mean of their stretched values, so the drawing time follows the PNG's size.
 *
 * Markers: shape by type — star '+', galaxy 'o' (the catalog's source_type; no source_type:
 * stars) — colour by origin — true green (0, 200, 0), predicted red (255, 40, 40) — size by
 * the flux in `flux_band` (radius 4 + 3 log10(1 + flux / 1 nmgy) screen pixels, at most 20);
 * a source without a match in the other catalog gets a yellow (255, 230, 0) square around it
 * (a missed true source, a false detection). Image row 0 is at the top, as in ds9's default
 * "origin upper" view of BLISS's arrays and matplotlib's imshow. */
#ifndef BL_PLOT_H
#define BL_PLOT_H

#include <stdint.h>

#include "lib/catalog.h"
#include "lib/error.h"

/* marker colours (the tests look for them) */
#define BL_PLOT_TRUE_RGB 0, 200, 0
#define BL_PLOT_PRED_RGB 255, 40, 40
#define BL_PLOT_UNMATCHED_RGB 255, 230, 0

typedef struct bl_plot_opts {
    int width, height;    /* PNG pixels (64 .. 10000) */
    int band;             /* >= 0: that band in grey; -1: the RGB composite of rgb[] */
    int rgb[3];           /* bands shown as red, green, blue */
    int flux_band;        /* band of the marker sizes */
    const char *title;    /* NULL: none */
} bl_plot_opts;

/* Defaults: 800 x 800, RGB of bands (3, 2, 1) (i, r, g of u g r i z) when there are 5 bands,
 * else band 0 in grey, flux_band 2 (or 0). */
bl_plot_opts bl_plot_opts_default(int n_bands);

/* The catalogs drawn on image b: NULL catalogs draw nothing; matched[m] != 0 for the sources
 * m < n_sources[b] of image b that have a partner in the other catalog (NULL: all matched). */
typedef struct bl_plot_sources {
    const bl_full_catalog *cat;
    const uint8_t *matched;
} bl_plot_sources;

/* Draw image b of `images` (B, NB, H, W) (background the same shape, or NULL) with `truth`
 * and `pred` (full catalogs with pixel plocs of that image) into `path`. BL_ERR_ARG naming
 * the option for a band outside [0, NB) or an impossible size; BL_ERR_IO when the file cannot
 * be written or the pngcairo device is missing. */
bl_status bl_plot_image_png(const char *path, const bl_tensor *images, const bl_tensor *background,
                            int64_t b, bl_plot_sources truth, bl_plot_sources pred, const bl_plot_opts *opts);

/* Where pixel (row, col) of an H x W image lands in that PNG (for tests and for placing
 * labels): *x, *y in PNG pixels from the top left. */
void bl_plot_image_to_png(const bl_plot_opts *opts, int64_t H, int64_t W, double row, double col, double *x,
                          double *y);

#endif
