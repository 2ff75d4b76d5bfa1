#include "lib/io/plot.h"

#include <math.h>
#include <plplot.h>
#include <stdlib.h>
#include <string.h>

#include "lib/io/plplot_png.h"

#define BL_PLOT_SOFT 2.0       /* asinh softening, in noise units */
#define BL_PLOT_RGB_BITS 4     /* bits per channel of the composite's palette */
/* PLplot hands image values to the device as 16-bit integers, which can move a value to the
 * neighbouring palette entry: every shown colour fills a block of palette entries and a pixel
 * takes the middle of its block */
#define BL_PLOT_NCOL1 65536

bl_plot_opts bl_plot_opts_default(int n_bands)
{
    bl_plot_opts o = {.width = 800, .height = 800, .band = 0, .rgb = {0, 0, 0}, .flux_band = 0};
    if (n_bands >= 5) {
        o.band = -1;
        o.rgb[0] = 3, o.rgb[1] = 2, o.rgb[2] = 1;
        o.flux_band = 2;
    }
    return o;
}

/* the image's viewport in normalised device coordinates: square pixels, centred in the area
 * left by the title (top) and the axis labels (left, bottom) */
static void bl_plot_viewport(const bl_plot_opts *o, int64_t H, int64_t W, double vp[4])
{
    const double ax0 = 0.11, ax1 = 0.97, ay0 = 0.08, ay1 = 0.88;
    double aw = (ax1 - ax0) * o->width, ah = (ay1 - ay0) * o->height;
    double s = fmin(aw / (double)W, ah / (double)H); /* screen pixels per image pixel */
    double w = s * (double)W / o->width, h = s * (double)H / o->height;
    vp[0] = ax0 + ((ax1 - ax0) - w) / 2;
    vp[1] = vp[0] + w;
    vp[2] = ay0 + ((ay1 - ay0) - h) / 2;
    vp[3] = vp[2] + h;
}

void bl_plot_image_to_png(const bl_plot_opts *o, int64_t H, int64_t W, double row, double col, double *x,
                          double *y)
{
    double vp[4];
    bl_plot_viewport(o, H, W, vp);
    *x = (vp[0] + col / (double)W * (vp[1] - vp[0])) * o->width;
    *y = (1 - (vp[3] - row / (double)H * (vp[3] - vp[2]))) * o->height;
}

static int bl_cmp_real(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#define BL_PLOT_MAX_SAMPLE (1 << 20)

/* quantile q of n values, from at most BL_PLOT_MAX_SAMPLE of them taken at a regular stride
 * (a display statistic: exact for small images, a fine estimate for large ones) */
static double bl_sample_quantile(const double *v, int64_t n, double q)
{
    const int64_t stride = n > BL_PLOT_MAX_SAMPLE ? (n + BL_PLOT_MAX_SAMPLE - 1) / BL_PLOT_MAX_SAMPLE : 1;
    const int64_t m = (n + stride - 1) / stride;
    double *c = bl_malloc(((size_t)m + 1) * sizeof *c);
    for (int64_t i = 0; i < m; i++) c[i] = v[i * stride];
    qsort(c, (size_t)m, sizeof *c, bl_cmp_real);
    double at = q * (double)(m - 1), r = c[(int64_t)at];
    if ((int64_t)at + 1 < m) r += (at - floor(at)) * (c[(int64_t)at + 1] - r);
    free(c);
    return r;
}

static double bl_median(const double *v, int64_t n) { return bl_sample_quantile(v, n, 0.5); }

/* x = (image - background) / noise of one band plane, as the header describes */
static void bl_plot_normalise(const bl_real *img, const bl_real *bg, int64_t n, double *x)
{
    double *tmp = bl_malloc(((size_t)n + 1) * sizeof *tmp);
    double sky = 0;
    if (bg) {
        for (int64_t i = 0; i < n; i++) tmp[i] = bg[i];
        sky = bl_median(tmp, n);
    } else {
        for (int64_t i = 0; i < n; i++) tmp[i] = img[i];
        sky = bl_median(tmp, n);
    }
    double noise = bg && sky > 0 ? sqrt(sky) : 0;
    for (int64_t i = 0; i < n; i++) x[i] = img[i] - (bg ? bg[i] : sky);
    if (!(noise > 0)) { /* median absolute deviation */
        for (int64_t i = 0; i < n; i++) tmp[i] = fabs(x[i]);
        noise = 1.4826 * bl_median(tmp, n);
    }
    if (!(noise > 0) || !isfinite(noise)) noise = 1;
    for (int64_t i = 0; i < n; i++) x[i] = isfinite(x[i]) ? x[i] / noise : 0;
    free(tmp);
}

/* screen-pixel marker radius for a flux in nmgy */
static double bl_marker_radius(double flux)
{
    double r = 4 + 3 * log10(1 + (isfinite(flux) && flux > 0 ? flux : 0));
    return r > 20 ? 20 : r;
}

static void bl_plot_sources_draw(const bl_plot_sources *src, int64_t b, int colour, int flux_band,
                                 double world_per_px)
{
    const bl_full_catalog *c = src->cat;
    if (!c || b >= c->B) return;
    const bl_tensor *st = bl_full_catalog_get(c, "source_type");
    bl_real *flux = bl_malloc(((size_t)(c->B * c->M * c->n_bands)) * sizeof *flux + 1);
    bl_full_catalog_on_fluxes(c, flux);
    plwidth(2.0);
    for (int64_t m = 0; m < c->n_sources[b]; m++) {
        int64_t slot = b * c->M + m;
        double row = c->plocs->data[2 * slot], col = c->plocs->data[2 * slot + 1];
        if (!isfinite(row) || !isfinite(col)) continue;
        double r = bl_marker_radius(flux[slot * c->n_bands + flux_band]) * world_per_px;
        plcol0(colour);
        if (st && st->data[slot] == 1) {
            plarc(col, row, r, r, 0, 360, 0, 0);
        } else {
            pljoin(col - r, row, col + r, row);
            pljoin(col, row - r, col, row + r);
        }
        if (src->matched && !src->matched[m]) {
            double q = r + 3 * world_per_px;
            PLFLT xs[5] = {col - q, col + q, col + q, col - q, col - q};
            PLFLT ys[5] = {row - q, row - q, row + q, row + q, row - q};
            plcol0(4);
            plline(5, xs, ys);
        }
    }
    plwidth(1.0);
    free(flux);
}

bl_status bl_plot_image_png(const char *path, const bl_tensor *images, const bl_tensor *background,
                            int64_t b, bl_plot_sources truth, bl_plot_sources pred, const bl_plot_opts *o)
{
    BL_ASSERT(images->ndim == 4 && b >= 0 && b < images->shape[0], "bl_plot_image_png: image %lld of a %d-D tensor",
              (long long)b, images->ndim);
    if (background) BL_ASSERT_SAME_SHAPE("bl_plot_image_png", images, background);
    const int NB = (int)images->shape[1];
    const int64_t H = images->shape[2], W = images->shape[3], n = H * W;
    const int *bands = o->band >= 0 ? &o->band : o->rgb, nshow = o->band >= 0 ? 1 : 3;
    for (int k = 0; k < nshow; k++)
        if (bands[k] < 0 || bands[k] >= NB)
            return bl_error(BL_ERR_ARG, "%s: %s %d: the images have bands 0 .. %d", path,
                            o->band >= 0 ? "band" : "RGB band", bands[k], NB - 1);
    if (o->flux_band < 0 || o->flux_band >= NB)
        return bl_error(BL_ERR_ARG, "%s: flux band %d: the images have bands 0 .. %d", path, o->flux_band, NB - 1);
    if (H < 1 || W < 1) return bl_error(BL_ERR_ARG, "%s: an empty image (%lld x %lld)", path, (long long)H, (long long)W);

    /* the stretch: x per band, one x_max for the bands shown */
    double *x = bl_malloc((size_t)(nshow * n) * sizeof *x);
    for (int k = 0; k < nshow; k++) {
        const int64_t off = (b * NB + bands[k]) * n;
        bl_plot_normalise(images->data + off, background ? background->data + off : NULL, n, x + k * n);
    }
    const double xmax = fmax(bl_sample_quantile(x, nshow * n, 0.995), 10 * BL_PLOT_SOFT);
    const double norm = asinh(xmax / BL_PLOT_SOFT);
    const int levels = 1 << BL_PLOT_RGB_BITS, ncol = nshow == 1 ? 256 : levels * levels * levels;
    const int block = BL_PLOT_NCOL1 / ncol;
    /* an image larger than its place in the PNG is shown in blocks of f x f pixels (their mean
     * stretched value): PLplot draws one cell per block */
    double vp[4];
    bl_plot_viewport(o, H, W, vp);
    const double screen_w = (vp[1] - vp[0]) * o->width, screen_h = (vp[3] - vp[2]) * o->height;
    int64_t f = (int64_t)ceil(fmax((double)W / screen_w, (double)H / screen_h));
    if (f < 1) f = 1;
    const int64_t Wb = (W + f - 1) / f, Hb = (H + f - 1) / f;
    PLFLT **z = bl_malloc((size_t)Wb * sizeof *z);
    PLFLT *zd = bl_malloc((size_t)(Wb * Hb) * sizeof *zd);
    for (int64_t j = 0; j < Wb; j++) z[j] = zd + j * Hb;
    for (int64_t bi = 0; bi < Hb; bi++)
        for (int64_t bj = 0; bj < Wb; bj++) {
            int idx = 0;
            for (int k = 0; k < nshow; k++) {
                double v = 0;
                int64_t cnt = 0;
                for (int64_t i = bi * f; i < (bi + 1) * f && i < H; i++)
                    for (int64_t j = bj * f; j < (bj + 1) * f && j < W; j++, cnt++)
                        v += asinh(x[k * n + i * W + j] / BL_PLOT_SOFT) / norm;
                v /= (double)cnt;
                v = v < 0 ? 0 : (v > 1 ? 1 : v);
                int q = nshow == 1 ? (int)lround(v * 255) : (int)lround(v * (levels - 1));
                idx = nshow == 1 ? q : idx * levels + q;
            }
            z[bj][bi] = (double)idx * block + block / 2; /* the middle of colour idx's block */
        }
    free(x);
    PLINT *pr = bl_malloc(BL_PLOT_NCOL1 * sizeof *pr), *pg = bl_malloc(BL_PLOT_NCOL1 * sizeof *pg),
          *pb = bl_malloc(BL_PLOT_NCOL1 * sizeof *pb);
    for (int e = 0; e < BL_PLOT_NCOL1; e++) {
        const int c = e / block;
        if (nshow == 1) {
            pr[e] = pg[e] = pb[e] = c;
        } else {
            pr[e] = (c / (levels * levels)) * 255 / (levels - 1);
            pg[e] = (c / levels % levels) * 255 / (levels - 1);
            pb[e] = (c % levels) * 255 / (levels - 1);
        }
    }

    char *tmp = NULL;
    bl_status st = bl_plplot_png_begin(path, o->width, o->height, &tmp);
    if (st == BL_OK) {
        plscol0(2, BL_PLOT_TRUE_RGB);
        plscol0(3, BL_PLOT_PRED_RGB);
        plscol0(4, BL_PLOT_UNMATCHED_RGB);
        plscmap1n(BL_PLOT_NCOL1);
        plscmap1(pr, pg, pb, BL_PLOT_NCOL1);
        plinit();
        pladv(0);
        plvpor(vp[0], vp[1], vp[2], vp[3]);
        plwind(0, (double)W, (double)H, 0); /* row 0 at the top */
        /* the blocks cover [0, Wb f) x [0, Hb f); the part inside the image is shown */
        plimage((const PLFLT *const *)z, (PLINT)Wb, (PLINT)Hb, 0, (double)(Wb * f), 0, (double)(Hb * f), 0,
                BL_PLOT_NCOL1, 0, (double)W, 0, (double)H);
        const double world_per_px = (double)W / ((vp[1] - vp[0]) * o->width);
        bl_plot_sources_draw(&truth, b, 2, o->flux_band, world_per_px);
        bl_plot_sources_draw(&pred, b, 3, o->flux_band, world_per_px);
        plcol0(1);
        plbox("bcnst", 0, 0, "bcnstv", 0, 0);
        char what[512];
        if (nshow == 1)
            snprintf(what, sizeof what, "%s%sband %d, asinh stretch", o->title ? o->title : "", o->title ? " - " : "",
                     o->band);
        else
            snprintf(what, sizeof what, "%s%sRGB = bands %d, %d, %d, asinh stretch", o->title ? o->title : "",
                     o->title ? " - " : "", o->rgb[0], o->rgb[1], o->rgb[2]);
        pllab("column (pixels)", "row (pixels)", what);
        plschr(0, 0.8);
        plmtex("t", 0.6, 0.5, 0.5, "true: green, predicted: red; + star, o galaxy; yellow box: unmatched");
        st = bl_plplot_png_end(path, tmp);
    }
    free(pr), free(pg), free(pb);
    free(z), free(zd);
    return st;
}
