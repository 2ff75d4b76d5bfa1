/* The SDSS point-spread function model (docs/behaviour.md §5.6): two Gaussians and a power law,
 *
 *   f(r) = [ exp(-r^2 / (2 sigma1)) + b exp(-r^2 / (2 sigma2))
 *            + p0 (1 + r^2 / (beta sigmap))^(-beta/2) ] / (1 + b + p0)
 *
 * with r in pixels and sigma1, sigma2, sigmap stored SQUARED (pixel^2), as in BLISS's
 * psf_params tensor [sigma1, sigma2, sigmap, beta, b, p0].
 *
 * Two uses:
 * - bl_psf_image: BLISS's pixelised PSF (f at integer offsets of a slen x slen stamp,
 *   normalised to sum 1); used for psf outputs and Richardson-Lucy deconvolution.
 * - bl_psf_ft: the Fourier transform of the continuous, untruncated profile normalised to unit
 *   flux; the renderer works in Fourier space (docs/simulator.md). The total flux of f is
 *   2 pi [sigma1 + b sigma2 + p0 beta sigmap / (beta - 2)] / (1 + b + p0), finite only for
 *   beta > 2, and the transform of the power law is a Matern function:
 *   FT[(1 + r^2/a)^(-beta/2)](k) / its value at 0 = (2 / Gamma(nu)) (z/2)^nu K_nu(z),
 *   nu = beta/2 - 1, z = sqrt(a) k, a = beta sigmap. */
#ifndef BL_SIM_PSF_H
#define BL_SIM_PSF_H

#include "lib/error.h"

#define BL_PSF_N_PARAMS 6

typedef struct bl_psf_params {
    double sigma1, sigma2, sigmap; /* squared widths, pixel^2 */
    double beta, b, p0;
} bl_psf_params;

/* Parameters in psf_params order [sigma1, sigma2, sigmap, beta, b, p0]. */
void bl_psf_params_to_array(const bl_psf_params *p, double out[BL_PSF_N_PARAMS]);
void bl_psf_params_from_array(bl_psf_params *p, const double in[BL_PSF_N_PARAMS]);

/* User-error check: finite values, sigma1, sigma2, sigmap > 0, b >= 0, p0 >= 0 (so the profile
 * is positive everywhere) and beta > 2 (so its flux is finite). The message names `where`
 * (e.g. "configs/sim_default.cfg:40: survey.psf.r") and the offending parameter. */
bl_status bl_psf_params_check(const bl_psf_params *p, const char *where);

/* Unnormalised profile f(r) at r^2 (pixel^2). */
double bl_psf_profile(const bl_psf_params *p, double r2);
/* Total flux of f (see above); requires beta > 2. */
double bl_psf_total(const bl_psf_params *p);
/* Fourier transform of f / bl_psf_total at wavenumber k (radians per pixel): 1 at k = 0. */
double bl_psf_ft(const bl_psf_params *p, double k);
/* Radius (pixels) outside which a fraction `eps` of the flux lies. */
double bl_psf_radius(const bl_psf_params *p, double eps);
/* BLISS's PSF stamp: f at integer offsets -(slen/2) .. slen/2 (slen odd), normalised to sum 1;
 * out has slen * slen values, row-major. */
void bl_psf_image(const bl_psf_params *p, int slen, double *out);

#endif
