#include "lib/sim/render.h"

#include <complex.h>
#include <fftw3.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lib/sim/profiles.h"

/* Fraction of a source's flux (per galaxy component) allowed beyond half the stamp side, where
 * it folds back in. 1.5% keeps stars on 32 x 32 stamps with the default PSF (whose power-law
 * wing holds 6% of the flux); BLISS cuts its PSF at 12 px, which drops a similar fraction. */
#define BL_RENDER_FOLD_EPS 0.015
#define BL_RENDER_RADIAL_N 4096 /* samples of the radial PSF transform on [0, pi sqrt 2] */

/* even sizes with small prime factors; 40 and 48 are left out because FFTW_ESTIMATE plans
 * for them are no faster than for 64 (measured, FFTW 3.3.10) */
static const int bl_stamp_sizes[] = {16, 32, 64, 80, 96, 128, 160, 192, 256, 320, 384, 512,
                                     640, 768, 1024, 1280, 1536, 2048};
#define BL_N_STAMP_SIZES ((int)(sizeof bl_stamp_sizes / sizeof *bl_stamp_sizes))

typedef struct bl_stamp_plan {
    int n;                 /* stamp side N */
    int nk;                /* N/2 + 1 columns of the half-spectrum */
    fftwf_plan c2r;        /* (N, N/2+1) complex -> (N, N) real */
    float *k_row;          /* (N) signed row frequency 2 pi i' / N, radians per pixel */
    float *k_col;          /* (N/2+1) */
    float *psf;            /* (NB, N, N/2+1): PSF(k) box(k) / N^2, Nyquist row/column 0 */
} bl_stamp_plan;

struct bl_renderer {
    bl_survey sv;
    int64_t H, W;
    int n_plans;
    bl_stamp_plan plans[BL_N_STAMP_SIZES];
    int star_plan;                       /* index of the star stamp */
    int switch_plan;                     /* stamps at least this big go to the image grid */
    double psf_radius;                   /* px: all bands, BL_RENDER_FOLD_EPS */
    double exp_radius_hlr, dev_radius_hlr; /* in half-light radii, at FOLD_EPS */
};

struct bl_render_scratch {
    int cap;                    /* largest N (= the image-level grid P) */
    fftwf_complex *ge;          /* (N, N/2+1): G(k) exp(-i k.c) */
    fftwf_complex *x;           /* (N, N/2+1): one band's spectrum (destroyed by c2r) */
    float *out;                 /* (N, N) */
    float complex *ph_row, *ph_col;
    float *s2d, *s2b, *fd, *fb; /* (N/2+1) one row of squared arguments / profile values */
    fftwf_complex *spec;        /* (NB, P, P/2+1): pending image-level spectrum, sans PSF */
    int pending;                /* spec holds sources not yet added to the image */
    const bl_real *pending_images;
};

static double bl_sinc_half(double k)
{
    double x = 0.5 * k;
    return fabs(x) < 1e-8 ? 1.0 : sin(x) / x;
}

static int bl_plan_index_for(const bl_renderer *r, double radius)
{
    for (int i = 0; i < r->n_plans; i++)
        if (r->plans[i].n >= 2 * radius) return i;
    return r->n_plans - 1;
}

/* radial PSF transform tabulated for one band, Catmull-Rom interpolated */
static double bl_radial_lookup(const double *tab, double dk_inv, double k)
{
    double x = k * dk_inv;
    int i = (int)x;
    if (i >= BL_RENDER_RADIAL_N) return tab[BL_RENDER_RADIAL_N + 1];
    double t = x - i;
    const double *p = tab + i; /* p[1] = value at i */
    return p[1] + 0.5 * t * (p[2] - p[0] + t * (2 * p[0] - 5 * p[1] + 4 * p[2] - p[3] +
                                                t * (3 * (p[1] - p[2]) + p[3] - p[0])));
}

bl_renderer *bl_renderer_alloc(const bl_survey *sv, int64_t H, int64_t W)
{
    BL_ASSERT(H > 0 && W > 0, "bl_renderer_alloc: image size %lld x %lld", (long long)H, (long long)W);
    BL_ASSERT(bl_survey_check(sv) == BL_OK, "bl_renderer_alloc: invalid survey: %s", bl_error_message());
    bl_profiles_init();
    bl_renderer *r = bl_calloc(1, sizeof *r);
    r->sv = *sv;
    r->H = H;
    r->W = W;
    const int NB = sv->n_bands;
    r->psf_radius = 0;
    for (int b = 0; b < NB; b++) {
        double rad = bl_psf_radius(&sv->psf[b], BL_RENDER_FOLD_EPS);
        if (rad > r->psf_radius) r->psf_radius = rad;
    }
    r->exp_radius_hlr = bl_exponential_radius(BL_RENDER_FOLD_EPS);
    r->dev_radius_hlr = bl_devaucouleurs_radius(BL_RENDER_FOLD_EPS);
    /* sizes up to the first one covering twice the image (and at least the star stamp) */
    int64_t big = 2 * (H > W ? H : W);
    double star_side = 2 * (r->psf_radius + 2);
    int n_plans = 0;
    for (int i = 0; i < BL_N_STAMP_SIZES; i++) {
        n_plans = i + 1;
        if (bl_stamp_sizes[i] >= big && bl_stamp_sizes[i] >= star_side) break;
    }
    r->n_plans = n_plans;

    /* radial PSF x nothing (the box is separable, applied per axis) on [0, kmax] */
    const double kmax = M_PI * sqrt(2.0) * 1.0001, dk = kmax / BL_RENDER_RADIAL_N;
    double *radial = bl_malloc((size_t)NB * (BL_RENDER_RADIAL_N + 3) * sizeof(double));
    for (int b = 0; b < NB; b++) {
        double *tab = radial + (size_t)b * (BL_RENDER_RADIAL_N + 3);
        for (int i = 0; i <= BL_RENDER_RADIAL_N + 1; i++) tab[i + 1] = bl_psf_ft(&sv->psf[b], i * dk);
        tab[0] = tab[2]; /* even in k */
    }
    for (int z = 0; z < n_plans; z++) {
        bl_stamp_plan *p = &r->plans[z];
        const int N = bl_stamp_sizes[z], nk = N / 2 + 1;
        p->n = N;
        p->nk = nk;
        fftwf_complex *in = fftwf_malloc(sizeof(fftwf_complex) * (size_t)N * nk);
        float *out = fftwf_malloc(sizeof(float) * (size_t)N * N);
        BL_ASSERT(in && out, "bl_renderer_alloc: fftwf_malloc failed (out of memory)");
        /* FFTW_ESTIMATE: the plan (and so every rounding) is the same in every run */
        p->c2r = fftwf_plan_dft_c2r_2d(N, N, in, out, FFTW_ESTIMATE);
        BL_ASSERT(p->c2r, "bl_renderer_alloc: FFTW could not plan a %d x %d c2r transform", N, N);
        fftwf_free(in);
        fftwf_free(out);
        p->k_row = bl_malloc((size_t)N * sizeof(float));
        p->k_col = bl_malloc((size_t)nk * sizeof(float));
        for (int i = 0; i < N; i++) p->k_row[i] = (float)(2 * M_PI * (i <= N / 2 ? i : i - N) / N);
        for (int j = 0; j < nk; j++) p->k_col[j] = (float)(2 * M_PI * j / N);
        p->psf = bl_malloc((size_t)NB * N * nk * sizeof(float));
        const double inv_n2 = 1.0 / ((double)N * N);
        for (int b = 0; b < NB; b++) {
            const double *tab = radial + (size_t)b * (BL_RENDER_RADIAL_N + 3);
            float *dst = p->psf + (size_t)b * N * nk;
            for (int i = 0; i < N; i++) {
                double ky = 2 * M_PI * (i <= N / 2 ? i : i - N) / N, by = bl_sinc_half(ky);
                for (int j = 0; j < nk; j++) {
                    double kx = 2 * M_PI * j / N;
                    double v = bl_radial_lookup(tab, 1 / dk, sqrt(kx * kx + ky * ky)) * by *
                               bl_sinc_half(kx) * inv_n2;
                    /* Nyquist row and column carry an ambiguous (+pi / -pi) phase: drop them */
                    dst[(size_t)i * nk + j] = (i == N / 2 || j == N / 2) ? 0.0f : (float)v;
                }
            }
        }
    }
    free(radial);
    r->star_plan = bl_plan_index_for(r, r->psf_radius + 2);
    /* A stamp of side N costs ~ NB inverse FFTs of N x N; a source on the image grid P costs
     * one evaluation of its transform over P x (P/2+1) plus NB multiply-adds per frequency
     * (the NB image FFTs are shared by all such sources). Measured on x86-64 with FFTW 3.3:
     * the image grid wins once N > P/2. */
    r->switch_plan = r->n_plans - 1;
    for (int z = 0; z < r->n_plans; z++)
        if (2 * r->plans[z].n > r->plans[r->n_plans - 1].n) {
            r->switch_plan = z;
            break;
        }
    if (r->switch_plan <= r->star_plan) r->switch_plan = r->star_plan + 1;
    return r;
}

void bl_renderer_free(bl_renderer *r)
{
    if (!r) return;
    for (int z = 0; z < r->n_plans; z++) {
        fftwf_destroy_plan(r->plans[z].c2r);
        free(r->plans[z].k_row);
        free(r->plans[z].k_col);
        free(r->plans[z].psf);
    }
    free(r);
}

int bl_render_max_stamp(const bl_renderer *r) { return r->plans[r->n_plans - 1].n; }

bl_render_scratch *bl_render_scratch_alloc(const bl_renderer *r)
{
    bl_render_scratch *w = bl_calloc(1, sizeof *w);
    const int N = bl_render_max_stamp(r), nk = N / 2 + 1;
    w->cap = N;
    w->ge = fftwf_malloc(sizeof(fftwf_complex) * (size_t)N * nk);
    w->x = fftwf_malloc(sizeof(fftwf_complex) * (size_t)N * nk);
    w->out = fftwf_malloc(sizeof(float) * (size_t)N * N);
    BL_ASSERT(w->ge && w->x && w->out, "bl_render_scratch_alloc: fftwf_malloc failed (out of memory)");
    w->ph_row = bl_malloc((size_t)N * sizeof(float complex));
    w->ph_col = bl_malloc((size_t)nk * sizeof(float complex));
    w->s2d = bl_malloc((size_t)nk * sizeof(float));
    w->s2b = bl_malloc((size_t)nk * sizeof(float));
    w->fd = bl_malloc((size_t)nk * sizeof(float));
    w->fb = bl_malloc((size_t)nk * sizeof(float));
    w->spec = fftwf_malloc(sizeof(fftwf_complex) * (size_t)r->sv.n_bands * N * nk);
    BL_ASSERT(w->spec, "bl_render_scratch_alloc: fftwf_malloc failed (out of memory)");
    memset(w->spec, 0, sizeof(fftwf_complex) * (size_t)r->sv.n_bands * N * nk);
    return w;
}

void bl_render_scratch_free(bl_render_scratch *w)
{
    if (!w) return;
    fftwf_free(w->ge);
    fftwf_free(w->x);
    fftwf_free(w->out);
    free(w->ph_row);
    free(w->ph_col);
    free(w->s2d);
    free(w->s2b);
    free(w->fd);
    free(w->fb);
    fftwf_free(w->spec);
    free(w);
}

/* Radius (px) beyond which at most FOLD_EPS of each component's flux lies (along the major
 * axis, so the bound holds for any axis ratio), widened by the PSF and 2 px for the sub-pixel
 * offset of the centre within the stamp. */
static double bl_galaxy_radius(const bl_renderer *r, const bl_galaxy_shape *g)
{
    double rad = 0;
    const double scale = 1 / r->sv.pixel_scale;
    const double fr[2] = {g->disk_frac, 1 - g->disk_frac};
    const double a[2] = {g->a_d * scale, g->a_b * scale};
    for (int c = 0; c < 2; c++) {
        if (!(fr[c] > 0)) continue;
        double rc = (c == 0 ? r->exp_radius_hlr : r->dev_radius_hlr) * a[c];
        if (rc > rad) rad = rc;
    }
    return sqrt(rad * rad + r->psf_radius * r->psf_radius) + 2;
}

int bl_render_stamp_size(const bl_renderer *r, const bl_galaxy_shape *g)
{
    if (!g) return r->plans[r->star_plan].n;
    int z = bl_plan_index_for(r, bl_galaxy_radius(r, g));
    if (z < r->star_plan) z = r->star_plan;
    return r->plans[z].n;
}

/* out[j] = v[j] * pr * pc[j] (v = NULL: 1), written out in real arithmetic: C's complex
 * product checks for NaN/inf and calls __mulsc3, which keeps the loop from vectorising */
static void bl_phase_row(float complex pr, const float complex *pc, const float *v,
                         float complex *out, int n)
{
    const float a = crealf(pr), b = cimagf(pr);
    const float *c = (const float *)pc;
    float *o = (float *)out;
    for (int j = 0; j < n; j++) {
        float s = v ? v[j] : 1.0f, re = c[2 * j], im = c[2 * j + 1];
        o[2 * j] = s * (a * re - b * im);
        o[2 * j + 1] = s * (a * im + b * re);
    }
}

/* Phases exp(-i k c) of the source centre c (stamp index units) along rows and columns, and
 * the stamp origin (i0, j0) in image pixels. */
static void bl_stamp_setup(const bl_stamp_plan *p, bl_render_scratch *w, double row, double col,
                           int64_t *i0, int64_t *j0)
{
    const int N = p->n;
    *i0 = (int64_t)floor(row) - N / 2;
    *j0 = (int64_t)floor(col) - N / 2;
    /* pixel q of the stamp is centred at j0 + q + 0.5; the source sits at index cx */
    double cy = row - 0.5 - (double)*i0, cx = col - 0.5 - (double)*j0;
    for (int i = 0; i < N; i++) {
        double ph = -(2 * M_PI * (i <= N / 2 ? i : i - N) / N) * cy;
        w->ph_row[i] = (float)cos(ph) + I * (float)sin(ph);
    }
    for (int j = 0; j < p->nk; j++) {
        double ph = -(2 * M_PI * j / N) * cx;
        w->ph_col[j] = (float)cos(ph) + I * (float)sin(ph);
    }
}

/* x = ge * psf_band * flux, inverse FFT, add the overlap with the image */
static void bl_stamp_band(const bl_renderer *r, const bl_stamp_plan *p, bl_render_scratch *w,
                          bl_real *image, int band, double flux, int64_t i0, int64_t j0)
{
    const int N = p->n, nk = p->nk;
    const size_t nspec = (size_t)N * nk;
    const float *psf = p->psf + (size_t)band * nspec;
    const float fl = (float)flux;
    float complex *x = (float complex *)w->x;
    const float complex *ge = (const float complex *)w->ge;
    for (size_t i = 0; i < nspec; i++) x[i] = ge[i] * (psf[i] * fl);
    fftwf_execute_dft_c2r(p->c2r, w->x, w->out);
    const int64_t H = r->H, W = r->W;
    int64_t ya = i0 < 0 ? 0 : i0, yb = i0 + N > H ? H : i0 + N;
    int64_t xa = j0 < 0 ? 0 : j0, xb = j0 + N > W ? W : j0 + N;
    for (int64_t y = ya; y < yb; y++) {
        const float *src = w->out + (y - i0) * N - j0;
        bl_real *dst = image + y * W;
        for (int64_t xx = xa; xx < xb; xx++) dst[xx] += (bl_real)src[xx];
    }
}

void bl_render_star(const bl_renderer *r, bl_render_scratch *w, bl_real *images, double row,
                    double col, const double *flux)
{
    const bl_stamp_plan *p = &r->plans[r->star_plan];
    int64_t i0, j0;
    bl_stamp_setup(p, w, row, col, &i0, &j0);
    const int N = p->n, nk = p->nk;
    float complex *ge = (float complex *)w->ge;
    for (int i = 0; i < N; i++) bl_phase_row(w->ph_row[i], w->ph_col, NULL, ge + (size_t)i * nk, nk);
    for (int b = 0; b < r->sv.n_bands; b++)
        if (flux[b] > 0) bl_stamp_band(r, p, w, images + (int64_t)b * r->H * r->W, b, flux[b], i0, j0);
}

/* ge = G(k) * phase over plan p, G the galaxy's unit-flux transform */
static void bl_galaxy_spectrum(const bl_renderer *r, const bl_stamp_plan *p, bl_render_scratch *w,
                               const bl_galaxy_shape *g)
{
    const int N = p->n, nk = p->nk;
    const double scale = 1 / r->sv.pixel_scale;
    const float fd = (float)(g->disk_frac > 0 ? g->disk_frac : 0),
                fb = (float)(1 - g->disk_frac > 0 ? 1 - g->disk_frac : 0);
    /* s^2 = k^T A k with A = R(beta) diag(a^2, (a q)^2) R(beta)^T, a = semi-major axis (px) of
     * the half-light ellipse; x = column, y = row, beta counter-clockwise from +x */
    const double c = cos(g->beta), s = sin(g->beta);
    float A[2][3];
    const double ax[2] = {g->a_d * scale, g->a_b * scale}, qq[2] = {g->disk_q, g->bulge_q};
    for (int m = 0; m < 2; m++) {
        double a2 = ax[m] * ax[m], b2 = a2 * qq[m] * qq[m];
        A[m][0] = (float)(a2 * c * c + b2 * s * s);       /* xx */
        A[m][1] = (float)(2 * (a2 - b2) * s * c);         /* 2 xy */
        A[m][2] = (float)(a2 * s * s + b2 * c * c);       /* yy */
    }
    float complex *ge = (float complex *)w->ge;
    const float *kx = p->k_col;
    for (int i = 0; i < N; i++) {
        const float ky = p->k_row[i];
        float complex *row = ge + (size_t)i * nk;
        if (fd > 0) {
            const float b1 = A[0][1] * ky, c0 = A[0][2] * ky * ky;
            for (int j = 0; j < nk; j++) {
                float v = (A[0][0] * kx[j] + b1) * kx[j] + c0;
                w->s2d[j] = v > 0 ? v : 0;
            }
            bl_exponential_ft_sq(w->s2d, w->fd, nk);
        }
        if (fb > 0) {
            const float b1 = A[1][1] * ky, c0 = A[1][2] * ky * ky;
            for (int j = 0; j < nk; j++) {
                float v = (A[1][0] * kx[j] + b1) * kx[j] + c0;
                w->s2b[j] = v > 0 ? v : 0;
            }
            bl_devaucouleurs_ft_sq(w->s2b, w->fb, nk);
        }
        for (int j = 0; j < nk; j++)
            w->fd[j] = (fd > 0 ? fd * w->fd[j] : 0.0f) + (fb > 0 ? fb * w->fb[j] : 0.0f);
        bl_phase_row(w->ph_row[i], w->ph_col, w->fd, row, nk);
    }
}

/* ge (unit-flux spectrum on the image grid) * flux_b accumulated into the pending spectra */
static void bl_image_accumulate(const bl_renderer *r, bl_render_scratch *w, bl_real *images,
                                const double *flux)
{
    const bl_stamp_plan *p = &r->plans[r->n_plans - 1];
    const size_t nspec = (size_t)p->n * p->nk;
    BL_ASSERT(!w->pending || w->pending_images == images,
              "bl_render: sources of two images mixed in one scratch; call bl_render_flush first");
    const float complex *ge = (const float complex *)w->ge;
    for (int b = 0; b < r->sv.n_bands; b++) {
        if (!(flux[b] > 0)) continue;
        float complex *dst = (float complex *)w->spec + (size_t)b * nspec;
        const float fl = (float)flux[b];
        for (size_t i = 0; i < nspec; i++) dst[i] += ge[i] * fl;
    }
    w->pending = 1;
    w->pending_images = images;
}

/* the image grid: index (i, j) <-> image pixel (i, j), periodic with period P */
static void bl_image_setup(const bl_stamp_plan *p, bl_render_scratch *w, double row, double col)
{
    const int N = p->n;
    for (int i = 0; i < N; i++) {
        double ph = -(2 * M_PI * (i <= N / 2 ? i : i - N) / N) * (row - 0.5);
        w->ph_row[i] = (float)cos(ph) + I * (float)sin(ph);
    }
    for (int j = 0; j < p->nk; j++) {
        double ph = -(2 * M_PI * j / N) * (col - 0.5);
        w->ph_col[j] = (float)cos(ph) + I * (float)sin(ph);
    }
}

void bl_render_flush(const bl_renderer *r, bl_render_scratch *w, bl_real *images)
{
    if (!w->pending) return;
    BL_ASSERT(w->pending_images == images, "bl_render_flush: not the image the sources were added to");
    const bl_stamp_plan *p = &r->plans[r->n_plans - 1];
    const int N = p->n;
    const size_t nspec = (size_t)N * p->nk;
    const int64_t H = r->H, W = r->W;
    for (int b = 0; b < r->sv.n_bands; b++) {
        float complex *spec = (float complex *)w->spec + (size_t)b * nspec;
        float complex *x = (float complex *)w->x;
        const float *psf = p->psf + (size_t)b * nspec;
        int any = 0;
        for (size_t i = 0; i < nspec; i++) {
            x[i] = spec[i] * psf[i];
            any |= spec[i] != 0;
            spec[i] = 0;
        }
        if (!any) continue;
        fftwf_execute_dft_c2r(p->c2r, w->x, w->out);
        bl_real *img = images + (int64_t)b * H * W;
        for (int64_t y = 0; y < H; y++)
            for (int64_t xx = 0; xx < W; xx++) img[y * W + xx] += (bl_real)w->out[y * N + xx];
    }
    w->pending = 0;
    w->pending_images = NULL;
}

void bl_render_galaxy(const bl_renderer *r, bl_render_scratch *w, bl_real *images, double row,
                      double col, const bl_galaxy_shape *g, const double *flux)
{
    int z = bl_plan_index_for(r, bl_galaxy_radius(r, g));
    if (z < r->star_plan) z = r->star_plan;
    if (z >= r->switch_plan) {
        const bl_stamp_plan *p = &r->plans[r->n_plans - 1];
        bl_image_setup(p, w, row, col);
        bl_galaxy_spectrum(r, p, w, g);
        bl_image_accumulate(r, w, images, flux);
        return;
    }
    const bl_stamp_plan *p = &r->plans[z];
    int64_t i0, j0;
    bl_stamp_setup(p, w, row, col, &i0, &j0);
    bl_galaxy_spectrum(r, p, w, g);
    for (int b = 0; b < r->sv.n_bands; b++)
        if (flux[b] > 0) bl_stamp_band(r, p, w, images + (int64_t)b * r->H * r->W, b, flux[b], i0, j0);
}
