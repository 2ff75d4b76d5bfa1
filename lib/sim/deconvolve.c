#include "lib/sim/deconvolve.h"

#include <complex.h>
#include <fftw3.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lib/error.h"

#define BL_RL_EPS 1e-12 /* scikit-image adds it to the blurred estimate before dividing */

struct bl_rl_plan {
    int64_t H, W, hp, wp;   /* image and padded sizes */
    int slen, pad, iterations;
    int64_t m, n, nk;       /* FFT grid m x n (>= padded + slen - 1), n/2 + 1 columns */
    fftw_plan r2c, c2r;
};

struct bl_rl_scratch {
    double *est, *img, *tmp;     /* (hp, wp) */
    double *grid;                /* (m, n) real */
    fftw_complex *spec, *kspec;  /* (m, nk): signal and PSF spectra */
    fftw_complex *kspec_flip;
};

static int64_t bl_fft_size(int64_t n)
{
    for (int64_t m = n;; m++) {
        int64_t r = m;
        while (r % 2 == 0) r /= 2;
        while (r % 3 == 0) r /= 3;
        while (r % 5 == 0) r /= 5;
        if (r == 1 && m % 2 == 0) return m;
    }
}

bl_rl_plan *bl_rl_plan_alloc(int64_t H, int64_t W, int psf_slen, int pad, int iterations)
{
    BL_ASSERT(psf_slen % 2 == 1 && psf_slen > 0, "bl_rl_plan_alloc: psf_slen %d must be odd", psf_slen);
    bl_rl_plan *p = bl_calloc(1, sizeof *p);
    p->H = H;
    p->W = W;
    p->slen = psf_slen;
    p->pad = pad;
    p->iterations = iterations;
    p->hp = H + 2 * pad;
    p->wp = W + 2 * pad;
    p->m = bl_fft_size(p->hp + psf_slen - 1);
    p->n = bl_fft_size(p->wp + psf_slen - 1);
    p->nk = p->n / 2 + 1;
    double *r = fftw_malloc(sizeof(double) * (size_t)(p->m * p->n));
    fftw_complex *c = fftw_malloc(sizeof(fftw_complex) * (size_t)(p->m * p->nk));
    BL_ASSERT(r && c, "bl_rl_plan_alloc: fftw_malloc failed (out of memory)");
    p->r2c = fftw_plan_dft_r2c_2d((int)p->m, (int)p->n, r, c, FFTW_ESTIMATE);
    p->c2r = fftw_plan_dft_c2r_2d((int)p->m, (int)p->n, c, r, FFTW_ESTIMATE);
    BL_ASSERT(p->r2c && p->c2r, "bl_rl_plan_alloc: FFTW could not plan %lld x %lld",
              (long long)p->m, (long long)p->n);
    fftw_free(r);
    fftw_free(c);
    return p;
}

void bl_rl_plan_free(bl_rl_plan *p)
{
    if (!p) return;
    fftw_destroy_plan(p->r2c);
    fftw_destroy_plan(p->c2r);
    free(p);
}

bl_rl_scratch *bl_rl_scratch_alloc(const bl_rl_plan *p)
{
    bl_rl_scratch *w = bl_calloc(1, sizeof *w);
    size_t np = (size_t)(p->hp * p->wp);
    w->est = bl_malloc(np * sizeof(double));
    w->img = bl_malloc(np * sizeof(double));
    w->tmp = bl_malloc(np * sizeof(double));
    w->grid = fftw_malloc(sizeof(double) * (size_t)(p->m * p->n));
    w->spec = fftw_malloc(sizeof(fftw_complex) * (size_t)(p->m * p->nk));
    w->kspec = fftw_malloc(sizeof(fftw_complex) * (size_t)(p->m * p->nk));
    w->kspec_flip = fftw_malloc(sizeof(fftw_complex) * (size_t)(p->m * p->nk));
    BL_ASSERT(w->grid && w->spec && w->kspec && w->kspec_flip,
              "bl_rl_scratch_alloc: fftw_malloc failed (out of memory)");
    return w;
}

void bl_rl_scratch_free(bl_rl_scratch *w)
{
    if (!w) return;
    free(w->est);
    free(w->img);
    free(w->tmp);
    fftw_free(w->grid);
    fftw_free(w->spec);
    fftw_free(w->kspec);
    fftw_free(w->kspec_flip);
    free(w);
}

/* spectrum of a (rows x cols) array placed at the grid origin, zero elsewhere */
static void bl_rl_forward(const bl_rl_plan *p, bl_rl_scratch *w, const double *a, int64_t rows,
                          int64_t cols, fftw_complex *out)
{
    memset(w->grid, 0, sizeof(double) * (size_t)(p->m * p->n));
    for (int64_t i = 0; i < rows; i++) memcpy(w->grid + i * p->n, a + i * cols, (size_t)cols * sizeof(double));
    fftw_execute_dft_r2c(p->r2c, w->grid, out);
}

/* out = same-size linear convolution of `a` (hp x wp) with the kernel whose spectrum is k:
 * full[i] = sum_j a[i - j] k[j]; 'same' keeps full[i + (slen - 1) / 2] */
static void bl_rl_convolve(const bl_rl_plan *p, bl_rl_scratch *w, const double *a,
                           const fftw_complex *k, double *out)
{
    bl_rl_forward(p, w, a, p->hp, p->wp, w->spec);
    const size_t ns = (size_t)(p->m * p->nk);
    const double norm = 1.0 / ((double)p->m * p->n);
    double complex *s = (double complex *)w->spec;
    const double complex *kk = (const double complex *)k;
    for (size_t i = 0; i < ns; i++) s[i] *= kk[i] * norm;
    fftw_execute_dft_c2r(p->c2r, w->spec, w->grid);
    const int64_t off = (p->slen - 1) / 2;
    for (int64_t i = 0; i < p->hp; i++)
        memcpy(out + i * p->wp, w->grid + (i + off) * p->n + off, (size_t)p->wp * sizeof(double));
}

/* pad with the background mean, divide by the max: the scaled, padded image */
static void bl_rl_prepare(int64_t H, int64_t W, int pad, const bl_real *image, double bg, double *img)
{
    const int64_t hp = H + 2 * pad, wp = W + 2 * pad;
    double mx = -INFINITY;
    for (int64_t i = 0; i < hp; i++)
        for (int64_t j = 0; j < wp; j++) {
            int inside = i >= pad && i < pad + H && j >= pad && j < pad + W;
            double v = inside ? (double)image[(i - pad) * W + (j - pad)] : bg;
            img[i * wp + j] = v;
            if (v > mx) mx = v;
        }
    for (int64_t i = 0; i < hp * wp; i++) img[i] /= mx;
}

static void bl_rl_finish(int64_t H, int64_t W, int pad, const double *est, bl_real *out)
{
    const int64_t wp = W + 2 * pad;
    for (int64_t i = 0; i < H; i++)
        for (int64_t j = 0; j < W; j++) {
            double v = est[(i + pad) * wp + j + pad];
            out[i * W + j] = (bl_real)(v > 1 ? 1 : v < -1 ? -1 : v);
        }
}

void bl_richardson_lucy(const bl_rl_plan *p, bl_rl_scratch *w, const bl_real *image,
                        const double *psf, double background_mean, bl_real *out)
{
    const int s = p->slen;
    double *flip = w->tmp; /* reused below as the blurred estimate */
    for (int i = 0; i < s * s; i++) flip[i] = psf[s * s - 1 - i];
    bl_rl_forward(p, w, psf, s, s, w->kspec);
    bl_rl_forward(p, w, flip, s, s, w->kspec_flip);
    bl_rl_prepare(p->H, p->W, p->pad, image, background_mean, w->img);
    const int64_t np = p->hp * p->wp;
    for (int64_t i = 0; i < np; i++) w->est[i] = 0.5;
    for (int it = 0; it < p->iterations; it++) {
        bl_rl_convolve(p, w, w->est, w->kspec, w->tmp);
        for (int64_t i = 0; i < np; i++) w->tmp[i] = w->img[i] / (w->tmp[i] + BL_RL_EPS);
        bl_rl_convolve(p, w, w->tmp, w->kspec_flip, w->tmp);
        for (int64_t i = 0; i < np; i++) w->est[i] *= w->tmp[i];
    }
    bl_rl_finish(p->H, p->W, p->pad, w->est, out);
}

/* 'same' direct convolution */
static void bl_conv_same_naive(const double *a, int64_t h, int64_t wd, const double *k, int s, double *out)
{
    const int off = (s - 1) / 2;
    for (int64_t i = 0; i < h; i++)
        for (int64_t j = 0; j < wd; j++) {
            double acc = 0;
            for (int u = 0; u < s; u++)
                for (int v = 0; v < s; v++) {
                    int64_t y = i + off - u, x = j + off - v;
                    if (y >= 0 && y < h && x >= 0 && x < wd) acc += a[y * wd + x] * k[u * s + v];
                }
            out[i * wd + j] = acc;
        }
}

void bl_richardson_lucy_naive(int64_t H, int64_t W, const bl_real *image, const double *psf,
                              int psf_slen, int pad, int iterations, double background_mean,
                              bl_real *out)
{
    const int64_t hp = H + 2 * pad, wp = W + 2 * pad, np = hp * wp;
    const int s = psf_slen;
    double *img = bl_malloc((size_t)np * sizeof(double)), *est = bl_malloc((size_t)np * sizeof(double));
    double *tmp = bl_malloc((size_t)np * sizeof(double)), *tmp2 = bl_malloc((size_t)np * sizeof(double));
    double *flip = bl_malloc((size_t)(s * s) * sizeof(double));
    for (int i = 0; i < s * s; i++) flip[i] = psf[s * s - 1 - i];
    bl_rl_prepare(H, W, pad, image, background_mean, img);
    for (int64_t i = 0; i < np; i++) est[i] = 0.5;
    for (int it = 0; it < iterations; it++) {
        bl_conv_same_naive(est, hp, wp, psf, s, tmp);
        for (int64_t i = 0; i < np; i++) tmp[i] = img[i] / (tmp[i] + BL_RL_EPS);
        bl_conv_same_naive(tmp, hp, wp, flip, s, tmp2);
        for (int64_t i = 0; i < np; i++) est[i] *= tmp2[i];
    }
    bl_rl_finish(H, W, pad, est, out);
    free(img);
    free(est);
    free(tmp);
    free(tmp2);
    free(flip);
}
