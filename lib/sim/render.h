/* Rendering stars and galaxies into per-band images (docs/behaviour.md §5.4), in Fourier space.
 *
 * A pixel value is the integral over the pixel of (profile * PSF), i.e. the profile convolved
 * with the PSF and the 1-pixel box, sampled at the pixel centre (galsim's method "auto", which
 * BLISS uses). Every factor has an analytic Fourier transform:
 *   star:    flux * PSF(k) * box(k)
 *   galaxy:  flux * [disk_frac Exp(s_d(k)) + (1 - disk_frac) DeV(s_b(k))] * PSF(k) * box(k)
 *   box(k) = sinc(kx/2) sinc(ky/2);  a position offset is the phase exp(-i k.x0)
 * (lib/sim/psf.h, lib/sim/profiles.h). A source is drawn on an N x N stamp (N from a list of
 * FFT-friendly sizes, chosen so that at most ~1% of the flux lies beyond N/2 of the centre):
 * the transform is sampled on the stamp's frequency grid, the Nyquist row/column are zeroed,
 * and one inverse real FFT per band (FFTW, single precision) gives the pixel values, which are
 * added to the image where the stamp overlaps it. Consequences (docs/simulator.md):
 *   - exact sub-pixel positions (a phase, no resampling), any axis ratio down to 1e-8 (a line),
 *     cuspy bulges, exact flux: the stamp sums to the flux (k = 0 term), and so does the image
 *     when the stamp lies inside it;
 *   - light beyond N/2 wraps around to the other side of the stamp (periodic), <= ~1% of the
 *     flux by construction, at the stamp's faint edge;
 *   - sources whose stamp would exceed about half the image grid P (the first size >= 2 max(H,W))
 *     are instead accumulated, with their phases, in one spectrum per band on the P x P grid
 *     (index = image pixel, periodic with period P) and transformed once per image by
 *     bl_render_flush: one evaluation of their transform per source instead of NB large FFTs.
 *     Light further than P - max(H, W) from the image wraps back into it; <= 1% for all but
 *     the largest galaxies of the prior's Gamma tail;
 *   - the PSF is the continuous, untruncated model (BLISS interpolates a 25 x 25 sampled PSF).
 *
 * Threading: a bl_renderer (FFTW plans, PSF transforms per band and stamp size) is read-only
 * after bl_renderer_alloc and may be shared; each thread needs its own bl_render_scratch.
 * Results do not depend on which thread renders what. */
#ifndef BL_SIM_RENDER_H
#define BL_SIM_RENDER_H

#include <stdint.h>

#include "lib/sim/survey.h"
#include "lib/tensor.h"

/* galaxy_params of the catalog (docs/behaviour.md §1.2), a_d and a_b in arcsec */
typedef struct bl_galaxy_shape {
    double disk_frac, beta, disk_q, a_d, bulge_q, a_b;
} bl_galaxy_shape;

typedef struct bl_renderer bl_renderer;
typedef struct bl_render_scratch bl_render_scratch;

/* For images of H x W pixels of survey sv (copied). Creates the FFTW plans: call from one
 * thread. */
bl_renderer *bl_renderer_alloc(const bl_survey *sv, int64_t H, int64_t W);
void bl_renderer_free(bl_renderer *r);
bl_render_scratch *bl_render_scratch_alloc(const bl_renderer *r);
void bl_render_scratch_free(bl_render_scratch *w);

/* Add a star / galaxy centred at pixel coordinates (row, col) (pixel (i, j) covers
 * [i, i+1) x [j, j+1)) to images (NB, H, W); flux[band] in electrons; bands with flux <= 0 are
 * skipped. */
void bl_render_star(const bl_renderer *r, bl_render_scratch *w, bl_real *images, double row,
                    double col, const double *flux);
void bl_render_galaxy(const bl_renderer *r, bl_render_scratch *w, bl_real *images, double row,
                      double col, const bl_galaxy_shape *g, const double *flux);

/* Sources too large for a cheap stamp are accumulated in an image-level spectrum held by the
 * scratch; this adds them to `images` (the array they were rendered for). Call it once after
 * the last source of an image, before reading the image or rendering another image with the
 * same scratch. */
void bl_render_flush(const bl_renderer *r, bl_render_scratch *w, bl_real *images);

/* The stamp side used for a star (g = NULL) or a galaxy. */
int bl_render_stamp_size(const bl_renderer *r, const bl_galaxy_shape *g);
/* The largest stamp side. */
int bl_render_max_stamp(const bl_renderer *r);

#endif
