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
 *   per factor of the variational distribution (bl_metrics_add_factor), from its kind:
 *     on matched pairs, MSE and MAE of the point estimate (continuous kinds) or its accuracy
 *     (discrete kinds); and from q itself, fed tile by tile with bl_metrics_update_factor_q
 *     because q lives above lib/ (models/evaluate.h computes it): the mean NLL over the tiles
 *     the factor counts in, the coverage of q's central 68% and 95% intervals (continuous
 *     kinds with a CDF; "n/a" otherwise) and the accuracy of q's point estimate (discrete).
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
#define BL_METRICS_MAX_FACTORS 64
#define BL_METRICS_NAME_MAX 64

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

/* A factor of the variational distribution whose point estimates and q are scored. */
typedef struct bl_metrics_factor {
    const char *name;    /* the factor's name (copied, at most BL_METRICS_NAME_MAX - 1 chars) */
    const char *field;   /* its catalog field (copied); "n_sources": no matched-pair metrics */
    int column, value_dim; /* the columns [column, column + value_dim) of the field */
    int discrete;        /* 1: accuracy (Bernoulli); 0: MSE, MAE, NLL, coverage */
    int source_type;     /* matched pairs counted: -1 all, 0 true stars, 1 true galaxies (the
                          * factor's mask "star" / "galaxy") */
} bl_metrics_factor;

/* Track factor f (before the first update); returns its index for bl_metrics_update_factor_q.
 * More than BL_METRICS_MAX_FACTORS, an empty name or value_dim < 1 is a programmer error. */
int bl_metrics_add_factor(bl_metrics *m, const bl_metrics_factor *f);
/* q of factor `f` on n tiles (models/evaluate.h): over the tiles with sel[t] != 0, add nll[t]
 * (-log q(true value)); pit[t * value_dim + d] (may be NULL, NaN entries: no CDF) is q's CDF
 * at the true value, inside the central p interval iff (1-p)/2 <= pit <= (1+p)/2, p = 0.68,
 * 0.95; hit[t] (may be NULL) is 1 when q's point estimate equals the true value. A non-finite
 * nll on a selected tile is BL_ERR_RANGE naming the factor and the tile. */
bl_status bl_metrics_update_factor_q(bl_metrics *m, int f, int64_t n, const uint8_t *sel,
                                     const double *nll, const double *pit, const uint8_t *hit);

typedef struct bl_metrics_factor_result {
    char name[BL_METRICS_NAME_MAX];
    int discrete, value_dim;
    int has_field;          /* both catalogs had the factor's field in some batch */
    int64_t n_matched;      /* matched pairs scored (after the source-type selection) */
    double mse, mae;        /* continuous: over n_matched * value_dim numbers */
    double acc;             /* discrete: pairs whose point estimate equals the truth */
    int64_t n_tiles;        /* tiles in the q metrics (0: none fed) */
    double nll;             /* mean -log q(true value) over them */
    int has_cdf;            /* continuous kind with a CDF: coverage defined ("n/a" otherwise) */
    double coverage68, coverage95; /* fraction of true values inside q's central intervals */
    int has_hit;
    double tile_acc;        /* fraction of tiles where q's point estimate equals the truth */
} bl_metrics_factor_result;

/* The accumulated state as numbers that add up over disjoint parts of a dataset (to sum the
 * metrics of several processes, tools/dist.h): BL_METRICS_STATE_INTS counts and flags,
 * BL_METRICS_STATE_SUMS sums. set_state replaces m's state by such numbers (a flag is set
 * when its sum is positive); m's options stay. */
#define BL_METRICS_STATE_FLAGS (1 + BL_METRICS_MAX_FACTORS)
#define BL_METRICS_STATE_INTS (4 * (BL_METRICS_MAX_CUTOFFS + 1) + 3 + 8 * BL_METRICS_MAX_FACTORS + \
                               BL_METRICS_STATE_FLAGS)
#define BL_METRICS_STATE_SUMS (BL_METRICS_MAX_BANDS + BL_N_GALAXY_PARAMS + 3 * BL_METRICS_MAX_FACTORS)
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
    int n_factors;
    bl_metrics_factor_result factors[BL_METRICS_MAX_FACTORS];
} bl_metrics_result;

void bl_metrics_compute(const bl_metrics *m, bl_metrics_result *r);
/* A JSON object with the metric keys (detection_precision, ..., flux_err_<band>_mae,
 * <param>_mae, counts, "bins", and "factors": one object per factor with its matched-pair keys
 * n_matched, mse, mae / acc, and, when q was fed, n_tiles, nll, coverage_68, coverage_95 ("n/a"
 * for a kind without a CDF) / tile_acc); NaN as null. band_names has
 * n_bands entries (NULL: "band<i>"). Returns the JSON text (no newline), malloc'd: free() it.
 * (Text rather than a JSON library's type: no public header exposes a third-party type.) */
char *bl_metrics_result_to_json(const bl_metrics_result *r, const char *const *band_names);
/* A readable table, one column per result (e.g. "mode", "sample"), with a row per factor
 * metric ("redshift.mse"), then the per-bin detection table of each. */
void bl_metrics_print_table(FILE *f, int n, const char *const *titles,
                            const bl_metrics_result *const *results, const char *const *band_names);
/* The q metrics of every factor of r that was fed some tiles: one line each with the tiles,
 * the NLL, the coverages ("n/a" without a CDF) or the point accuracy. Nothing when none was. */
void bl_metrics_print_q_table(FILE *f, const bl_metrics_result *r);

#endif
