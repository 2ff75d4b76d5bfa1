/* Scoring an encoder against true catalogs (docs/metrics.md): the work of one batch of
 * `bliss evaluate` and of the per-epoch validation metrics of `bliss train`, for any
 * variational-distribution spec. Every factor is scored from its kind: continuous kinds by
 * MSE / MAE of the point estimate on matched sources, the mean NLL of q and the coverage of
 * q's central 68% and 95% intervals (kinds with a CDF); discrete kinds (Bernoulli) by the
 * accuracy of the point estimate (lib/eval/metrics.h). */
#ifndef BL_MODELS_EVALUATE_H
#define BL_MODELS_EVALUATE_H

#include <stdint.h>
#include <stdio.h>

#include "lib/batch.h"
#include "lib/eval/metrics.h"
#include "models/encoder.h"

/* Track every factor of spec in m (bl_metrics_add_factor), in spec order: discrete kinds
 * score accuracy, the others MSE / MAE; a factor with mask "star" ("galaxy") is scored on
 * matched true stars (galaxies) only. */
void bl_metrics_add_spec_factors(bl_metrics *m, const bl_vardist_spec *spec);

/* One batch of images x with their true catalog (as a batch source gives them). The target is
 * the truth filtered by flux as the loss filters it (encoder opts min_flux_threshold,
 * flux_band). mode / sample (either may be NULL): the encoder's catalog of point estimates /
 * of one draw (seed, stream: bl_encoder_sample), matched to the target cropped like the
 * prediction. marginal (may be NULL): q of the marginal distribution of every factor on the
 * uncropped target's brightest source per tile, the tiles each factor's mask selects (the
 * tiles of its loss term). The metrics must track spec's factors (bl_metrics_add_spec_factors)
 * for the per-factor results. Runs without a tape, in the encoder's current mode; per-step
 * memory on ctx, which the caller resets. */
bl_status bl_encoder_metrics_update(bl_encoder *enc, bl_ctx *ctx, bl_tensor *x,
                                    const bl_tile_catalog *truth, uint64_t seed, uint64_t stream,
                                    bl_metrics *mode, bl_metrics *sample, bl_metrics *marginal);

/* The per-epoch validation metrics of a training run (metrics.csv, docs/metrics.md): their
 * names for spec, in this order: detection_precision, detection_recall, detection_f1, then per
 * factor "<name>.<metric>": continuous kinds mse, mae (matched sources of the mode catalog),
 * nll, coverage_68, coverage_95 (q); discrete kinds acc (matched sources; for a factor of
 * n_sources: q's point estimate per tile) and nll. *n gets the count; free with
 * bl_val_metrics_names_free. */
char **bl_val_metrics_names(const bl_vardist_spec *spec, int *n);
void bl_val_metrics_names_free(char **names, int n);
/* Those metrics of enc on the n_batches batches of src (src.n_batches when > 0 and smaller),
 * with the matching options opts and draws from `seed`: values[n] in the order above (NaN
 * where undefined, or for coverage of a kind without a CDF). Eval mode, no tape; the
 * encoder's mode and the ctx are restored / reset. */
bl_status bl_encoder_val_metrics(bl_encoder *enc, bl_ctx *ctx, bl_batch_source src,
                                 const bl_metrics_opts *opts, uint64_t seed, double *values);

/* Statistics of q on one batch, a line per factor and value dimension for all tiles and one
 * for the tiles holding a true source (the seed notebook's look at q(redshift)):
 *   q(redshift) over 400 tiles: loc mean 0.61 sd 0.2, scale mean 0.9 sd 0.1
 * with the kind's loc and scale (bl_dist_kind_loc_scale); "q(loc)[1]" for dimension 1 of a
 * value; for a discrete kind without loc / scale (bernoulli): "p(1) mean .. sd ..", the
 * probability q gives the value 1. Runs in eval mode without a tape and restores both. */
void bl_encoder_print_q_stats(FILE *f, bl_encoder *enc, bl_ctx *ctx, bl_tensor *x,
                              const bl_tile_catalog *truth);

#endif
