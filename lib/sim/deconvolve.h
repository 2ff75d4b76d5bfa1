/* Richardson-Lucy deconvolution (docs/behaviour.md §9.6, scikit-image's richardson_lucy), the optional
 * `deconvolution` output of the redshift case study.
 *
 * For one image and band: pad the noisy image by `pad` (10) pixels on each side with the mean
 * of that band's background, divide by the padded image's maximum, then iterate (50 times)
 *   est_0 = 0.5;  conv = est * psf + 1e-12;  est *= (image / conv) * psf_flipped
 * ('same'-size linear convolutions with zero padding, as scipy.signal.convolve(mode="same")),
 * clip the result to [-1, 1] and crop the padding. The convolutions use FFTW in double
 * precision on a zero-padded grid, so they are linear, not circular. */
#ifndef BL_SIM_DECONVOLVE_H
#define BL_SIM_DECONVOLVE_H

#include <stdint.h>

#include "lib/tensor.h"

typedef struct bl_rl_plan bl_rl_plan;
typedef struct bl_rl_scratch bl_rl_scratch;

/* For H x W images, an odd psf_slen x psf_slen PSF, `pad` pixels of padding. Creates FFTW
 * plans: call from one thread. */
bl_rl_plan *bl_rl_plan_alloc(int64_t H, int64_t W, int psf_slen, int pad, int iterations);
void bl_rl_plan_free(bl_rl_plan *p);
bl_rl_scratch *bl_rl_scratch_alloc(const bl_rl_plan *p);
void bl_rl_scratch_free(bl_rl_scratch *w);

/* image: H x W; psf: psf_slen^2 (sums to 1); background_mean: the pad value; out: H x W. */
void bl_richardson_lucy(const bl_rl_plan *p, bl_rl_scratch *w, const bl_real *image,
                        const double *psf, double background_mean, bl_real *out);

/* The same by direct (O(n^2 k^2)) convolution, for tests. */
void bl_richardson_lucy_naive(int64_t H, int64_t W, const bl_real *image, const double *psf,
                              int psf_slen, int pad, int iterations, double background_mean,
                              bl_real *out);

#endif
