/* Colour models (docs/behaviour.md §5.3): Gaussian mixtures over the natural-log flux ratios of adjacent
 * bands, ln(flux[j+1] / flux[j]) for j = 0 .. NB-2 (SDSS: ln g/u, ln r/g, ln i/r, ln z/i), with
 * 64 full-covariance components, fitted by BLISS with scikit-learn. The numbers live in
 * data/color_models/sdss_color_models.txt (a verbatim copy of the spec's color_models.txt).
 *
 * File format (text): blocks "MODEL <name> ..." .. "END MODEL <name> ..." holding the lines
 *   n_components <K>      dimension <D>      component <k>      weight <w>
 *   mean <D numbers>      covariance          followed by D lines of D numbers
 * Other lines inside a block (attr, source_file, sklearn_class, covariance_type,
 * covariances_shape, weights_sum) and lines starting with '#' are ignored.
 *
 * Sampling (docs/porting.md): each draw picks its own component from the weights, then
 * mean_k + L_k z with L_k the Cholesky factor of the covariance and z ~ N(0, I). */
#ifndef BL_SIM_COLOR_MODEL_H
#define BL_SIM_COLOR_MODEL_H

#include "lib/error.h"
#include "lib/rng.h"

#define BL_GMM_MAX_DIM 8
/* BLISS clips the sampled log ratios to [-2.76, 2.76] before exponentiating */
#define BL_COLOR_LOG_RATIO_CLIP 2.76

typedef struct bl_gmm {
    char name[64];
    int n_components, dim;
    double *weights;      /* (K) normalised to sum 1 */
    double *cum_weights;  /* (K) running sum, last = 1 */
    double *means;        /* (K, D) */
    double *covs;         /* (K, D, D) */
    double *chol;         /* (K, D, D) lower-triangular Cholesky factors */
} bl_gmm;

/* Load model `name` from `path` (resolved with bl_data_find). BL_ERR_IO / BL_ERR_FORMAT with
 * file:line on missing file, missing model, malformed numbers, weights not summing to ~1 or a
 * covariance that is not positive definite. */
bl_status bl_gmm_load(bl_gmm **out, const char *path, const char *name);
void bl_gmm_free(bl_gmm *g);

/* One draw (D values). */
void bl_gmm_sample(const bl_gmm *g, bl_rng *rng, double *x);
/* The mixture mean sum_k w_k mean_k. */
void bl_gmm_mean(const bl_gmm *g, double *mean);

/* Per-band flux proportions relative to the reference band from D = NB-1 log ratios:
 * prop[ref] = 1, prop[k] = prop[k+1] / ratio[k] below, prop[k] = prop[k-1] * ratio[k-1]
 * above, ratio = exp(clip(log_ratio, -2.76, 2.76)). */
void bl_color_proportions(const double *log_ratios, int n_bands, int ref_band, double *prop);

#endif
