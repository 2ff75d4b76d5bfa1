/* Input normaliser of the encoder (docs/behaviour.md §4.1, BLISS's ImageNormalizer): turns a batch of
 * images and backgrounds in electrons into the network input (B, n_bands_used, C, H, W).
 *
 * Channels per band, in this order (C = their number; 6 in the base config):
 *   [image            if include_original]
 *   background, replaced by local_zscore(background) when use_clahe
 *   [psf_params[b, band, 0 .. num_psf_params)   if concat_psf_params, each constant]
 *   log transform for each t in log_transform_stdevs:
 *       z = (image - background) / sqrt(background) - t ;  out = log1p(max(z, 0))
 *   [local_zscore(image)   if use_clahe]
 * local_zscore (called CLAHE in BLISS although it is not one), per band, k = 9, p = 4:
 *   m = 9x9 box mean of the reflect-padded image (numpy "reflect": mirror without repeating
 *   the edge pixel); r = x - m; s = sqrt(9x9 box mean of the reflect-padded r^2);
 *   out = r / max(s, clahe_min_stdev).
 * Difference from BLISS (docs/simulator.md): with include_original AND use_clahe the original
 * overwrites channel 0 (the raw image) with CLAHE(background); here the raw image stays and the
 * background channel holds CLAHE(background), which is what the option names promise.
 *
 * No gradients are involved (lib/). Work is spread over (image, band) pairs with OpenMP. */
#ifndef BL_NORMALIZE_H
#define BL_NORMALIZE_H

#include "lib/config.h"
#include "lib/error.h"
#include "lib/tensor.h"

#define BL_NORMALIZE_MAX_BANDS 16
#define BL_NORMALIZE_MAX_LOGS 16

typedef struct bl_normalize_opts {
    int n_bands;                              /* bands used, in output order */
    int bands[BL_NORMALIZE_MAX_BANDS];        /* indices into the image's band axis */
    int include_original;
    int concat_psf_params;
    int num_psf_params;                       /* <= psf_params.shape[2] */
    int n_log;
    double log_transform_stdevs[BL_NORMALIZE_MAX_LOGS];
    int use_clahe;
    double clahe_min_stdev;                   /* electrons */
} bl_normalize_opts;

/* The base config: bands 0..4, no original, no psf params (6 of them), logs at -3, 0, 1, 3,
 * CLAHE on with floor 200. */
void bl_normalize_opts_default(bl_normalize_opts *o);
/* Read the group at `path` (e.g. "encoder.image_normalizer"); missing keys keep the defaults;
 * keys: bands, include_original, concat_psf_params, num_psf_params, log_transform_stdevs,
 * use_clahe, clahe_min_stdev. Out-of-range values are BL_ERR_CONFIG naming the key. */
bl_status bl_normalize_opts_from_config(bl_normalize_opts *o, bl_config *cfg, const char *path);
/* C, the channels per band. */
int bl_normalize_channels(const bl_normalize_opts *o);

/* images, background: (B, NB, H, W) electrons; psf_params: (B, NB, P) or NULL when not
 * concatenated; out: (B, n_bands, C, H, W). User errors (BL_ERR_ARG / BL_ERR_NAN / BL_ERR_RANGE
 * with the offending index): H or W < 5, a band index >= NB, a non-finite input, a background
 * <= 1e-6 when log transforms are on. Shape disagreements between the tensors are programmer
 * errors (abort). */
bl_status bl_normalize(const bl_normalize_opts *o, const bl_tensor *images, const bl_tensor *background,
                       const bl_tensor *psf_params, bl_tensor *out);
/* bl_normalize into a new tensor (B, n_bands, C, H, W) pushed on `arena` (*out, NULL on error);
 * concat_psf_params with psf_params NULL is BL_ERR_ARG naming the option. */
bl_status bl_normalize_push(const bl_normalize_opts *o, bl_arena *arena, const bl_tensor *images,
                            const bl_tensor *background, const bl_tensor *psf_params,
                            bl_tensor **out);

/* The local z-score of one H x W plane (H, W >= 5) into out (may not alias x); `work` holds
 * 4*H*W doubles. Exposed for tests. */
void bl_local_zscore(const bl_real *x, int64_t H, int64_t W, double min_stdev, bl_real *out,
                     double *work);

#endif
