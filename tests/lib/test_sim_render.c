/* Rendering (lib/sim/render.h, psf.h, profiles.h): the PSF and profile transforms against
 * independent numerical integrals and high-precision reference values, flux conservation,
 * centroids, half-light radii, rotations, and the two rendering paths against each other. */
#include <check.h>
#include <gsl/gsl_sf_bessel.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lib/sim/profiles.h"
#include "lib/sim/render.h"
#include "lib/sim/survey.h"
#include "tests/bl_check.h"

/* a 1-band survey with a given PSF */
static bl_survey one_band(bl_psf_params psf)
{
    bl_survey sv;
    bl_survey_default(&sv);
    sv.n_bands = 1;
    sv.psf[0] = psf;
    return sv;
}

static const bl_psf_params tiny_psf = {1e-4, 1e-4, 1e-4, 3, 0, 0};

static double sum_plane(const bl_real *x, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    return s;
}

/* ∫ f(r) J0(k r) 2 pi r dr by the trapezoid rule on [0, R] (k = 0: flux) */
static double hankel_numeric(double (*f)(double, const void *), const void *arg, double k, double R, double h)
{
    double s = 0;
    for (double r = h; r < R; r += h) s += f(r, arg) * gsl_sf_bessel_J0(k * r) * r;
    return 2 * M_PI * h * s;
}

static double psf_f(double r, const void *arg) { return bl_psf_profile(arg, r * r); }

START_TEST(test_psf_model)
{
    bl_survey sv;
    bl_survey_default(&sv);
    for (int b = 0; b < 5; b++) {
        double img[25 * 25];
        bl_psf_image(&sv.psf[b], 25, img);
        double s = 0;
        for (int i = 0; i < 625; i++) {
            s += img[i];
            ck_assert(img[i] > 0);
        }
        ck_assert_double_eq_tol(s, 1, 1e-12);
        for (int i = 0; i < 25; i++)
            for (int j = 0; j < 25; j++) {
                double v = img[i * 25 + j];
                ck_assert_double_eq_tol(img[(24 - i) * 25 + j], v, 1e-15); /* flip rows */
                ck_assert_double_eq_tol(img[i * 25 + 24 - j], v, 1e-15);   /* flip cols */
                ck_assert_double_eq_tol(img[j * 25 + i], v, 1e-15);        /* transpose */
            }
        /* the centre is the maximum, f(0) = 1 before normalisation */
        ck_assert_double_eq_tol(bl_psf_profile(&sv.psf[b], 0), 1, 1e-15);
        ck_assert_double_eq_tol(bl_psf_ft(&sv.psf[b], 0), 1, 1e-15);
    }
    /* total flux with beta = 3: numerical integral out to 2e4 px plus the analytic tail of the
     * power law, p0 / (1 + b + p0) * 2 pi a^(3/2) / R with a = beta sigmap */
    const bl_psf_params *p = &sv.psf[2];
    double R = 2e4, a = p->beta * p->sigmap;
    double num = hankel_numeric(psf_f, p, 0, 50, 1e-3);
    for (double r = 50 + 0.05; r < R; r += 0.1) num += 2 * M_PI * 0.1 * r * bl_psf_profile(p, r * r);
    num += p->p0 / (1 + p->b + p->p0) * 2 * M_PI * pow(a, 1.5) / R;
    ck_assert_double_eq_tol(bl_psf_total(p) / num, 1, 2e-5);
    /* the transform against a numerical Hankel transform, beta = 6 (fast-decaying wing) and
     * beta = 3 (exp(-sqrt(a) k) closed form) */
    bl_psf_params q = {2.0, 7.0, 1.5, 6.0, 0.2, 0.05};
    double tot = hankel_numeric(psf_f, &q, 0, 300, 2e-3);
    ck_assert_double_eq_tol(bl_psf_total(&q) / tot, 1, 1e-6);
    const double ks[5] = {0.1, 0.5, 1.0, 2.0, 3.0};
    for (int i = 0; i < 5; i++)
        ck_assert_double_eq_tol(bl_psf_ft(&q, ks[i]), hankel_numeric(psf_f, &q, ks[i], 300, 2e-3) / tot, 2e-6);
    bl_psf_params pl = {1.0, 1.0, 2.0, 3.0, 0.0, 1e6}; /* almost pure power law */
    for (int i = 0; i < 5; i++) {
        double w0 = 2 * M_PI * 1.0, wp = 1e6 * 2 * M_PI * 6.0;
        double want = (w0 * exp(-0.5 * ks[i] * ks[i]) + wp * exp(-sqrt(6.0) * ks[i])) / (w0 + wp);
        ck_assert_double_eq_tol(bl_psf_ft(&pl, ks[i]), want, 1e-12);
    }
}
END_TEST

static double exp_f(double r, const void *arg)
{
    (void)arg;
    return exp(-r * BL_EXP_HLR_PER_SCALE); /* unit half-light radius */
}

START_TEST(test_profile_transforms)
{
    /* de Vaucouleurs: values computed independently with mpmath (80 digits) from the series
     * and confirmed by direct quadrature of the Hankel integral */
    const double s[12] = {0.1, 0.25, 0.5, 0.9, 1, 2, 5, 10, 50, 64, 200, 1000};
    const double want[12] = {0.96266208264778439, 0.86767810814858267, 0.72878725139105662,
                             0.57399120852221404, 0.54450247959252448, 0.35536014376167531,
                             0.16320739894777853, 0.077690146587661946, 0.0089606133600404789,
                             0.0061454545715731673, 0.00094937648913118113, 5.1155674302323387e-5};
    ck_assert_double_eq_tol(bl_devaucouleurs_b(), 7.6692494425008039, 1e-12);
    for (int i = 0; i < 12; i++) {
        ck_assert_double_eq_tol(bl_devaucouleurs_ft_exact(s[i]), want[i], 1e-8 * (1 + want[i]));
        ck_assert_msg(fabs(bl_devaucouleurs_ft(s[i]) / want[i] - 1) < 3e-5, "table at s = %g: %.10g vs %.10g",
                      s[i], bl_devaucouleurs_ft(s[i]), want[i]);
    }
    ck_assert_double_eq(bl_devaucouleurs_ft(0), 1);
    /* monotone decreasing and positive across both table tiers */
    double prev = 2;
    for (double x = 0; x < 5000; x = x * 1.01 + 0.003) {
        double v = bl_devaucouleurs_ft(x);
        ck_assert(v > 0 && v <= prev + 1e-7);
        prev = v;
    }
    /* exponential: closed form against a numerical Hankel transform; unit hlr means half the
     * light within r = 1: (1 + x) e^-x = 1/2 at x = 1.67834699 */
    double tot = hankel_numeric(exp_f, NULL, 0, 60, 1e-3);
    ck_assert_double_eq_tol((1 + BL_EXP_HLR_PER_SCALE) * exp(-BL_EXP_HLR_PER_SCALE), 0.5, 1e-12);
    const double ks[4] = {0.3, 1.0, 3.0, 8.0};
    for (int i = 0; i < 4; i++)
        ck_assert_double_eq_tol(bl_exponential_ft(ks[i]), hankel_numeric(exp_f, NULL, ks[i], 60, 1e-3) / tot, 1e-5);
    float s2[3] = {0, 1, 9}, out[3];
    bl_devaucouleurs_ft_sq(s2, out, 3);
    ck_assert_double_eq_tol(out[1], want[4], 1e-6);
    bl_exponential_ft_sq(s2, out, 3);
    ck_assert_double_eq_tol(out[2], bl_exponential_ft(3), 1e-6);
    /* radii: Q(8, b r^(1/4)) and (1 + x) e^-x at the returned radii */
    ck_assert_double_eq_tol(bl_exponential_radius(0.5), 1, 1e-9);
    ck_assert_double_eq_tol(bl_devaucouleurs_radius(0.5), 1, 1e-9);
}
END_TEST

/* image moments about (r0, c0) with weight exp(-d^2 / (2 sw^2)) (sw = 0: unweighted) */
static void moments(const bl_real *img, int H, int W, double r0, double c0, double sw, double *cy,
                    double *cx, double *ixx, double *iyy, double *ixy)
{
    double s = 0, sy = 0, sx = 0, sxx = 0, syy = 0, sxy = 0;
    for (int i = 0; i < H; i++)
        for (int j = 0; j < W; j++) {
            double y = i + 0.5 - r0, x = j + 0.5 - c0;
            double w = sw > 0 ? exp(-(x * x + y * y) / (2 * sw * sw)) : 1;
            double v = w * img[i * W + j];
            s += v;
            sy += v * y;
            sx += v * x;
            sxx += v * x * x;
            syy += v * y * y;
            sxy += v * x * y;
        }
    *cy = r0 + sy / s;
    *cx = c0 + sx / s;
    if (ixx) {
        *ixx = sxx / s;
        *iyy = syy / s;
        *ixy = sxy / s;
    }
}

START_TEST(test_star_flux_and_centroid)
{
    bl_survey sv;
    bl_survey_default(&sv);
    const int H = 96, W = 96;
    bl_renderer *r = bl_renderer_alloc(&sv, H, W);
    bl_render_scratch *w = bl_render_scratch_alloc(r);
    bl_real *img = calloc(5 * H * W, sizeof(bl_real));
    const double pos[6][2] = {{48.3, 47.8}, {40.01, 55.99}, {50.5, 50.5}, {44.999, 45.001},
                              {47.37, 52.81}, {52.0, 41.0}};
    const double flux[5] = {1e3, 5e4, 2e5, 7.5, 1e6};
    for (int p = 0; p < 6; p++) {
        memset(img, 0, 5 * H * W * sizeof(bl_real));
        bl_render_star(r, w, img, pos[p][0], pos[p][1], flux);
        bl_render_flush(r, w, img);
        for (int b = 0; b < 5; b++) {
            const bl_real *x = img + b * H * W;
            ck_assert_msg(fabs(sum_plane(x, H * W) / flux[b] - 1) < 1e-3, "star %d band %d: sum %g", p,
                          b, sum_plane(x, H * W) / flux[b]);
            double cy, cx;
            moments(x, H, W, pos[p][0], pos[p][1], 3.0, &cy, &cx, NULL, NULL, NULL);
            ck_assert_msg(fabs(cy - pos[p][0]) < 0.01 && fabs(cx - pos[p][1]) < 0.01,
                          "star at (%g, %g) band %d: centroid (%.5f, %.5f)", pos[p][0], pos[p][1], b, cy, cx);
        }
    }
    /* a shift of 0.25 px moves the centroid by 0.25 px (the test above cannot pass by
     * returning the weight centre) */
    memset(img, 0, 5 * H * W * sizeof(bl_real));
    bl_render_star(r, w, img, 48.25, 48.0, flux);
    double cy, cx;
    moments(img + 2 * H * W, H, W, 48.0, 48.0, 0, &cy, &cx, NULL, NULL, NULL);
    ck_assert_double_eq_tol(cy, 48.25, 0.02);
    ck_assert_double_eq_tol(cx, 48.0, 0.02);
    free(img);
    bl_render_scratch_free(w);
    bl_renderer_free(r);

    /* pixel integration: each pixel holds the integral of the PSF over the pixel, computed
     * here by brute force (20 x 20 midpoints per pixel) from the profile f(r) and its total;
     * sampling f at pixel centres instead would be ~4% off at the peak */
    const bl_psf_params *p = &sv.psf[2];
    r = bl_renderer_alloc(&sv, 33, 33);
    w = bl_render_scratch_alloc(r);
    img = calloc(5 * 33 * 33, sizeof(bl_real));
    const double fl[5] = {0, 0, 1, 0, 0}, y0 = 16.3, x0 = 16.7, tot = bl_psf_total(p);
    bl_render_star(r, w, img, y0, x0, fl);
    const bl_real *x = img + 2 * 33 * 33;
    double peak = 0, worst = 0;
    for (int i = 10; i < 23; i++)
        for (int j = 10; j < 23; j++) {
            double acc = 0;
            for (int u = 0; u < 20; u++)
                for (int v = 0; v < 20; v++) {
                    double dy = i + (u + 0.5) / 20 - y0, dx = j + (v + 0.5) / 20 - x0;
                    acc += bl_psf_profile(p, dx * dx + dy * dy);
                }
            acc /= 400 * tot;
            peak = fmax(peak, acc);
            worst = fmax(worst, fabs(x[i * 33 + j] - acc));
        }
    ck_assert_msg(worst < 2e-3 * peak, "pixel values off by %g of the peak", worst / peak);
    free(img);
    bl_render_scratch_free(w);
    bl_renderer_free(r);
}
END_TEST

START_TEST(test_galaxy_flux)
{
    bl_survey sv;
    bl_survey_default(&sv);
    const int H = 160, W = 160;
    bl_renderer *r = bl_renderer_alloc(&sv, H, W);
    bl_render_scratch *w = bl_render_scratch_alloc(r);
    bl_real *img = calloc(5 * H * W, sizeof(bl_real));
    const double flux[5] = {100, 2e3, 3e4, 4e5, 5e3};
    const bl_galaxy_shape gs[4] = {{0.5, 0.4, 0.5, 1.5, 0.7, 0.8},
                                   {1.0, 2.0, 0.2, 2.5, 0.5, 1.0},
                                   {0.0, 1.0, 0.5, 1.0, 0.3, 0.6},
                                   {0.3, 0.1, 1e-8, 2.0, 1e-8, 1.0}}; /* a line: q = 1e-8 */
    for (int g = 0; g < 4; g++) {
        memset(img, 0, 5 * H * W * sizeof(bl_real));
        bl_render_galaxy(r, w, img, 80.3, 79.6, &gs[g], flux);
        bl_render_flush(r, w, img);
        for (int b = 0; b < 5; b++) {
            double s = sum_plane(img + b * H * W, H * W);
            ck_assert_msg(isfinite(s) && fabs(s / flux[b] - 1) < 1e-3, "galaxy %d band %d: sum/flux = %.7f",
                          g, b, s / flux[b]);
        }
    }
    /* near the edge: what is missing is what falls outside, nothing crashes */
    memset(img, 0, 5 * H * W * sizeof(bl_real));
    bl_render_galaxy(r, w, img, 0.2, 159.9, &gs[0], flux);
    bl_render_star(r, w, img, -3.0, 1.0, flux);
    bl_render_flush(r, w, img);
    double s = sum_plane(img + 2 * H * W, H * W);
    ck_assert(s > 0.1 * flux[2] && s < 0.5 * flux[2]);
    free(img);
    bl_render_scratch_free(w);
    bl_renderer_free(r);
}
END_TEST

/* radius (px) enclosing `half` of the light, from pixel centres sorted by distance */
typedef struct { double d, v; } pix;
static int pix_cmp(const void *a, const void *b)
{
    double x = ((const pix *)a)->d, y = ((const pix *)b)->d;
    return (x > y) - (x < y);
}

static double half_light_radius(const bl_real *img, int H, int W, double r0, double c0, double half)
{
    pix *p = malloc(sizeof(pix) * H * W);
    for (int i = 0; i < H; i++)
        for (int j = 0; j < W; j++) p[i * W + j] = (pix){hypot(i + 0.5 - r0, j + 0.5 - c0), img[i * W + j]};
    qsort(p, (size_t)H * W, sizeof(pix), pix_cmp);
    /* the cumulative sum is a step function at the pixel radii; take the pixels of one radius
     * as spread over the ring up to the next radius */
    double acc = 0, res = -1;
    for (int i = 0; i < H * W; i++) {
        if (acc + p[i].v >= half) {
            double r_prev = i ? p[i - 1].d : 0, t = (half - acc) / p[i].v;
            res = r_prev + t * (p[i].d - r_prev);
            break;
        }
        acc += p[i].v;
    }
    free(p);
    return res;
}

START_TEST(test_half_light_radius)
{
    /* a face-on exponential disk (and de Vaucouleurs bulge) with a negligible PSF: the light
     * within the half-light radius a_d / pixel_scale is half the flux */
    bl_survey sv = one_band(tiny_psf);
    const int H = 128, W = 128;
    bl_renderer *r = bl_renderer_alloc(&sv, H, W);
    bl_render_scratch *w = bl_render_scratch_alloc(r);
    bl_real *img = calloc(H * W, sizeof(bl_real));
    const double flux[1] = {1e4};
    const bl_galaxy_shape disk = {1.0, 0.7, 1.0, 4.0, 1.0, 1.0}, bulge = {0.0, 0.7, 1.0, 1.0, 1.0, 3.0};
    bl_render_galaxy(r, w, img, 64.0, 64.0, &disk, flux);
    bl_render_flush(r, w, img);
    double hlr = half_light_radius(img, H, W, 64.0, 64.0, flux[0] / 2);
    ck_assert_msg(fabs(hlr / (4.0 / 0.396) - 1) < 0.02, "disk hlr %.4f px, expected %.4f", hlr, 4.0 / 0.396);
    memset(img, 0, H * W * sizeof(bl_real));
    bl_render_galaxy(r, w, img, 64.0, 64.0, &bulge, flux);
    bl_render_flush(r, w, img);
    hlr = half_light_radius(img, H, W, 64.0, 64.0, flux[0] / 2);
    ck_assert_msg(fabs(hlr / (3.0 / 0.396) - 1) < 0.02, "bulge hlr %.4f px, expected %.4f", hlr, 3.0 / 0.396);
    /* an axis ratio q keeps the half-light ellipse semi-major axis a_d: the hlr of the
     * circularised light is a_d sqrt(q) */
    const bl_galaxy_shape flat = {1.0, 0.0, 0.25, 6.0, 1.0, 1.0};
    memset(img, 0, H * W * sizeof(bl_real));
    bl_render_galaxy(r, w, img, 64.0, 64.0, &flat, flux);
    bl_render_flush(r, w, img);
    /* stretch columns back by 1/q about the centre: measure along the major axis instead */
    double acc = 0;
    for (int i = 0; i < H; i++)
        for (int j = 0; j < W; j++) {
            double x = j + 0.5 - 64, y = (i + 0.5 - 64) / 0.25; /* ellipse -> circle of radius a */
            if (x * x + y * y <= (6.0 / 0.396) * (6.0 / 0.396)) acc += img[i * W + j];
        }
    ck_assert_msg(fabs(acc / flux[0] - 0.5) < 0.02, "light inside the half-light ellipse: %.4f", acc / flux[0]);
    free(img);
    bl_render_scratch_free(w);
    bl_renderer_free(r);
}
END_TEST

START_TEST(test_rotation)
{
    bl_survey sv;
    bl_survey_default(&sv);
    const int H = 65, W = 65; /* centre pixel 32, centred at 32.5 */
    bl_renderer *r = bl_renderer_alloc(&sv, H, W);
    bl_render_scratch *w = bl_render_scratch_alloc(r);
    bl_real *a = calloc(5 * H * W, sizeof(bl_real)), *b = calloc(5 * H * W, sizeof(bl_real));
    const double flux[5] = {1e4, 1e4, 1e4, 1e4, 1e4};
    bl_galaxy_shape g = {0.6, 0.3, 0.4, 2.0, 0.5, 1.0};
    bl_render_galaxy(r, w, a, 32.5, 32.5, &g, flux);
    bl_render_flush(r, w, a);
    g.beta += M_PI / 2;
    bl_render_galaxy(r, w, b, 32.5, 32.5, &g, flux);
    bl_render_flush(r, w, b);
    /* rotation by +90 degrees (x = col, y = row, counter-clockwise from +x to +y):
     * b(row, col) = a(row' = 64 - col, col' = row) */
    double peak = 0, diff = 0, moved = 0;
    for (int i = 0; i < H; i++)
        for (int j = 0; j < W; j++) {
            double va = a[2 * H * W + (64 - j) * W + i], vb = b[2 * H * W + i * W + j];
            peak = fmax(peak, vb);
            diff = fmax(diff, fabs(va - vb));
            moved = fmax(moved, fabs(a[2 * H * W + i * W + j] - vb));
        }
    ck_assert_msg(diff < 1e-4 * peak, "rotated images differ by %g (peak %g)", diff, peak);
    ck_assert(moved > 0.1 * peak); /* and the rotation changed the image */
    /* the major axis of the light lies at beta from +x towards +y */
    const double betas[3] = {0.25, 1.1, 2.6};
    for (int k = 0; k < 3; k++) {
        bl_galaxy_shape d = {1.0, betas[k], 0.3, 2.5, 1.0, 1.0};
        memset(a, 0, 5 * H * W * sizeof(bl_real));
        bl_render_galaxy(r, w, a, 32.5, 32.5, &d, flux);
        bl_render_flush(r, w, a);
        double cy, cx, ixx, iyy, ixy;
        moments(a + 2 * H * W, H, W, 32.5, 32.5, 0, &cy, &cx, &ixx, &iyy, &ixy);
        double theta = 0.5 * atan2(2 * ixy, ixx - iyy);
        if (theta < 0) theta += M_PI;
        ck_assert_msg(fabs(theta - betas[k]) < 0.01, "beta %g: major axis at %g", betas[k], theta);
        ck_assert(ixx + iyy > 0);
    }
    free(a);
    free(b);
    bl_render_scratch_free(w);
    bl_renderer_free(r);
}
END_TEST

START_TEST(test_image_grid_path)
{
    /* a large bulge is accumulated on the image grid in a 100 x 100 image (grid 256) but drawn
     * on a stamp in a 300 x 300 image (grid 640): the central pixels agree */
    bl_survey sv;
    bl_survey_default(&sv);
    const bl_galaxy_shape g = {0.2, 0.5, 0.8, 3.0, 0.9, 1.9};
    bl_renderer *small = bl_renderer_alloc(&sv, 100, 100), *big = bl_renderer_alloc(&sv, 300, 300);
    ck_assert_int_gt(2 * bl_render_stamp_size(small, &g), bl_render_max_stamp(small));
    ck_assert_int_lt(2 * bl_render_stamp_size(big, &g), bl_render_max_stamp(big));
    bl_render_scratch *ws = bl_render_scratch_alloc(small), *wb = bl_render_scratch_alloc(big);
    bl_real *a = calloc(5 * 100 * 100, sizeof(bl_real)), *b = calloc(5 * 300 * 300, sizeof(bl_real));
    const double flux[5] = {1e5, 1e5, 1e5, 1e5, 1e5};
    bl_render_galaxy(small, ws, a, 50.2, 49.7, &g, flux);
    bl_render_flush(small, ws, a);
    bl_render_galaxy(big, wb, b, 150.2, 149.7, &g, flux);
    bl_render_flush(big, wb, b);
    double peak = 0, diff = 0;
    for (int i = 25; i < 75; i++)
        for (int j = 25; j < 75; j++) {
            double va = a[4 * 10000 + i * 100 + j], vb = b[4 * 90000 + (i + 100) * 300 + j + 100];
            peak = fmax(peak, vb);
            diff = fmax(diff, fabs(va - vb));
        }
    ck_assert_msg(diff < 2e-3 * peak, "paths differ by %g of the peak", diff / peak);
    free(a);
    free(b);
    bl_render_scratch_free(ws);
    bl_render_scratch_free(wb);
    bl_renderer_free(small);
    bl_renderer_free(big);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sim_render");
    TCase *tc = tcase_create("render");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_psf_model);
    tcase_add_test(tc, test_profile_transforms);
    tcase_add_test(tc, test_star_flux_and_centroid);
    tcase_add_test(tc, test_galaxy_flux);
    tcase_add_test(tc, test_half_light_radius);
    tcase_add_test(tc, test_rotation);
    tcase_add_test(tc, test_image_grid_path);
    suite_add_tcase(s, tc);
    return bl_check_run(s);
}
