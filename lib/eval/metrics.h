/* Catalog metrics (docs/behaviour.md §6, docs/porting.md, docs/metrics.md).
 *
 * A bl_metrics accumulates over batches, like the original's torchmetrics objects: each
 * bl_metrics_update matches the estimated full catalog to the true one image by image
 * (lib/eval/match.h: Hungarian matching within dist_slack) and adds to the counts; then
 * bl_metrics_compute turns the counts into:
 *   detection precision / recall / F1, overall and per magnitude bin (mag_band, 2 = r);
 *   source-type accuracy over matched pairs;
 *   flux MAE per band over matched pairs (on_fluxes, nmgy);
 *   galaxy-shape MAE per galaxy parameter over matched TRUE GALAXIES (docs/porting.md: the original
 *     summed over all matched pairs and divided by the galaxies);
 *   redshift MSE over matched pairs (when both catalogs have `redshifts`);
 *   redshift NLL of q(z) over tiles that hold a source (docs/porting.md: the original divided by the
 *     batch size), fed separately with bl_metrics_update_redshift_nll because q(z) lives above
 *     lib/.
 * A ratio with a zero denominator is NaN (JSON null): "undefined", never a made-up 0 or 1. */
#ifndef BL_METRICS_H
#define BL_METRICS_H

#include <stdint.h>
#include <stdio.h>

#include "lib/catalog.h"
#include "lib/config.h"
#include "lib/error.h"
#include "lib/eval/match.h"

#define BL_METRICS_MAX_CUTOFFS 32
#define BL_METRICS_MAX_BANDS 16
/* mag_band meaning "no band": every magnitude is 1 (the original spelled this 0 or None) */
#define BL_METRICS_NO_BAND (-1)
#define BL_N_GALAXY_PARAMS 6

/* galaxy_params column names: disk_frac, beta_radians, disk_q, a_d, bulge_q, a_b */
extern const char *const bl_galaxy_param_names[BL_N_GALAXY_PARAMS];

typedef struct bl_metrics_opts {
    bl_match_opts match;   /* dist_slack 1.0 pixel, mag_slack 0 (off) */
    int mag_band;          /* band of mag_slack and of the bins; 2 (r) or BL_METRICS_NO_BAND */
    int n_cutoffs;         /* bins: (-inf, c0], (c0, c1], ..., (c_last, inf) */
    double mag_cutoffs[BL_METRICS_MAX_CUTOFFS];  /* strictly increasing */
    int exclude_last_bin;  /* leave the faintest bin out of the detection totals */
} bl_metrics_opts;

/* The docs/behaviour.md §6 defaults: dist_slack 1, no mag_slack, band 2, cutoffs [19, 19.4, ..., 21.8]. */
void bl_metrics_opts_default(bl_metrics_opts *opts);
/* Read group `group` (e.g. "metrics") over the defaults: keys dist_slack, mag_slack,
 * mag_band (a band index, or -1 for no band), mag_cutoffs, exclude_last_bin. Values out of
 * range (negative slack, band >= n_bands, cutoffs not increasing, mag_slack without a band)
 * are BL_ERR_CONFIG naming file, line and key. */
bl_status bl_metrics_opts_from_config(bl_config *cfg, const char *group, int n_bands,
                                      bl_metrics_opts *opts);

typedef struct bl_metrics bl_metrics;

bl_metrics *bl_metrics_alloc(const bl_metrics_opts *opts, int n_bands);
void bl_metrics_free(bl_metrics *m);
void bl_metrics_reset(bl_metrics *m);
/* Match and accumulate one batch. Both catalogs have the same B and n_bands (programmer
 * error otherwise). BL_ERR_RANGE if a location is not finite in a way the matcher rejects. */
bl_status bl_metrics_update(bl_metrics *m, const bl_full_catalog *truth, const bl_full_catalog *est);
/* Redshift NLL: over the n tiles with n_sources[t] > 0, add -log N(z_true[t]; loc[t], scale[t]).
 * A scale <= 0 or a non-finite term is BL_ERR_RANGE naming the tile. */
bl_status bl_metrics_update_redshift_nll(bl_metrics *m, int64_t n, const int32_t *n_sources,
                                         const bl_real *z_true, const bl_real *loc,
                                         const bl_real *scale);

/* The accumulated state as numbers that add up over disjoint parts of a dataset (to sum the
 * metrics of several processes, tools/dist.h): BL_METRICS_STATE_INTS counts and flags,
 * BL_METRICS_STATE_SUMS sums. set_state replaces m's state by such numbers (a flag is set
 * when its sum is positive); m's options stay. */
#define BL_METRICS_STATE_INTS (4 * (BL_METRICS_MAX_CUTOFFS + 1) + 7)
#define BL_METRICS_STATE_SUMS (BL_METRICS_MAX_BANDS + BL_N_GALAXY_PARAMS + 2)
void bl_metrics_get_state(const bl_metrics *m, int64_t *ints, double *sums);
void bl_metrics_set_state(bl_metrics *m, const int64_t *ints, const double *sums);
typedef struct bl_metrics_bin {
    double lo, hi;                     /* magnitudes in (lo, hi]; -inf / +inf at the ends */
    int64_t n_true, n_est;             /* sources whose true / estimated magnitude is in it */
    int64_t n_true_matched, n_est_matched;
    double precision, recall, f1;
} bl_metrics_bin;

typedef struct bl_metrics_result {
    int n_bands, n_bins;
    bl_metrics_bin bins[BL_METRICS_MAX_CUTOFFS + 1];
    /* detection totals over the bins used (all, or all but the last) */
    int64_t n_true, n_est, n_true_matched, n_est_matched;
    double precision, recall, f1;
    int64_t n_matches;                 /* all matched pairs */
    double classification_acc;
    double flux_mae[BL_METRICS_MAX_BANDS];
    int has_shape;                     /* both catalogs had galaxy_params */
    int64_t n_matched_galaxies;        /* matched pairs whose true source is a galaxy */
    double shape_mae[BL_N_GALAXY_PARAMS];
    int has_redshift;                  /* both catalogs had redshifts */
    double redshift_mse;
    int64_t n_nll;                     /* tiles in the NLL mean (0: not computed) */
    double redshift_nll;
} bl_metrics_result;

void bl_metrics_compute(const bl_metrics *m, bl_metrics_result *r);
/* A JSON object with the metric keys (detection_precision, ..., flux_err_<band>_mae,
 * <param>_mae, redshift_mse, redshift_nll, counts, and "bins"); NaN as null. band_names has
 * n_bands entries (NULL: "band<i>"). Returns the JSON text (no newline), malloc'd: free() it.
 * (Text rather than a JSON library's type: no public header exposes a third-party type.) */
char *bl_metrics_result_to_json(const bl_metrics_result *r, const char *const *band_names);
/* A readable table, one column per result (e.g. "mode", "sample"), then the per-bin detection
 * table of each. */
void bl_metrics_print_table(FILE *f, int n, const char *const *titles,
                            const bl_metrics_result *const *results, const char *const *band_names);

#endif
