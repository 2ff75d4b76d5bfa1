/* The BLISS encoder (docs/behaviour.md §4.6–4.9): networks + variational spec -> distribution over tile
 * catalogs; the training loss; catalog sampling with the checkerboard interleave.
 *
 * Input x is the normalised image batch (B, n_bands, ch_per_band, H, W) of lib/normalize
 * (docs/behaviour.md §4.1); H and W must be multiples of 16. Tiles: ht = H / tile_slen, wt likewise.
 *
 * infer:  f = features_net(x) (B, 256, ht, wt); marginal = make_dist(marginal_net(f)).
 *         With the checkerboard, cb[i, j] = (i + j) mod 2 and for mask in {cb, 1 - cb}:
 *           context = [n_sources(history) * mask > 0, mask] (B, 2, ht, wt)
 *           x_cat = checkerboard_net(detach(f), context)      -> white (mask = cb), black
 *         Double detection adds second = make_dist(second_net(f)).
 * The number of output channels is the spec's P: adding a factor changes nothing here.
 *
 * Memory: every tensor made here lives in the ctx arena (per step); parameters, gradients and
 * BatchNorm buffers are the persistent tensors of enc->params. Catalogs returned are
 * persistent (bl_tile_catalog_free). */
#ifndef BL_ENCODER_H
#define BL_ENCODER_H

#include <stdint.h>

#include "dists/vardist.h"
#include "lib/catalog.h"
#include "models/networks.h"

typedef struct bl_encoder_opts {
    int tiles_to_crop;         /* 1: border tiles left out of the loss and of sampled catalogs */
    double min_flux_threshold; /* 0: truth filtered to on_flux[flux_band] > threshold */
    int flux_band;             /* 2 (r): band of filter_by_flux / brightest_per_tile */
    int use_checkerboard;      /* 1 (base), 0 (redshift) */
    int double_detect;         /* 0 */
} bl_encoder_opts;

bl_encoder_opts bl_encoder_opts_default(void);

typedef struct bl_encoder {
    bl_encoder_opts opts;
    const bl_vardist_spec *spec; /* not owned; must outlive the encoder */
    bl_params *params;           /* every parameter and buffer, PyTorch state_dict order */
    bl_encoder_nets nets;
    int training;                /* BatchNorm: batch statistics (1) or running statistics (0) */
} bl_encoder;

/* arch NULL: the BLISS widths (bl_net_arch_default). arch->n_out is replaced by the spec's
 * P, arch->tile_slen must equal spec->tile_slen (2 or 4) and arch->n_bands spec->n_bands.
 * Parameters are initialised as PyTorch does (layers.h) from `seed`. Starts in training mode. */
bl_encoder *bl_encoder_alloc(const bl_vardist_spec *spec, const bl_net_arch *arch,
                             const bl_encoder_opts *opts, uint64_t seed);
void bl_encoder_free(bl_encoder *enc);
void bl_encoder_set_training(bl_encoder *enc, int training);

/* What infer computed; tensors and dists in the ctx arena. */
typedef struct bl_encoder_pred {
    bl_tensor *features;   /* (B, 256, ht, wt) */
    bl_vardist *marginal;  /* x_cat (B, ht, wt, P) */
    bl_vardist *white;     /* checkerboard conditional given history on tiles with cb = 1 */
    bl_vardist *black;     /* ... on tiles with cb = 0 */
    bl_vardist *second;    /* double detection */
} bl_encoder_pred;

/* BL_OK, or BL_ERR_ARG naming the shape when x is not (B, n_bands, ch_per_band, H, W) with H, W
 * multiples of 16, or BL_ERR_NAN when x holds a non-finite value. */
bl_status bl_encoder_check_input(const bl_encoder *enc, const bl_tensor *x);
/* Features and marginal only (pred->white/black/second NULL). */
void bl_encoder_infer_marginal(bl_encoder *enc, bl_ctx *ctx, bl_tensor *x, bl_encoder_pred *pred);
/* The conditionals given a history catalog (B, ht, wt): white and black when the checkerboard
 * is on, second when double detection is on. */
void bl_encoder_infer_conditionals(bl_encoder *enc, bl_ctx *ctx, const bl_tile_catalog *history,
                                   bl_encoder_pred *pred);
/* Both of the above. */
bl_status bl_encoder_infer(bl_encoder *enc, bl_ctx *ctx, bl_tensor *x,
                           const bl_tile_catalog *history, bl_encoder_pred *pred);

/* The checkerboard (ht, wt): cb[i, j] = (i + j) mod 2. */
bl_tensor *bl_encoder_checkerboard(bl_ctx *ctx, int64_t ht, int64_t wt);

/* The pieces of the loss, for the reference comparison (NULL where not computed). */
typedef struct bl_encoder_loss_parts {
    bl_encoder_pred pred;
    bl_tensor *nll_marginal, *nll_white, *nll_black; /* (B, ht, wt) */
    bl_tensor *loss_tiles;                           /* (B, ht, wt), before the crop */
} bl_encoder_loss_parts;

/* Training loss of docs/behaviour.md §4.9 on the true catalog `truth` (B, ht, wt, S): filter by flux, keep
 * the brightest source per tile, infer with history = that target, per-tile NLL
 *   L = (nll_m + (1 - cb) nll_white + cb nll_black) / 2   (checkerboard)   or nll_m,
 * (double detection: the min-over-orderings of docs/behaviour.md §4.9 step 5), crop tiles_to_crop tiles on
 * every side, mean -> *loss (0-dim, on the tape when gradients are enabled). parts may be NULL.
 * Errors (bad input or catalog geometry) leave *loss NULL. */
bl_status bl_encoder_loss(bl_encoder *enc, bl_ctx *ctx, bl_tensor *x, const bl_tile_catalog *truth,
                          bl_tensor **loss, bl_encoder_loss_parts *parts);

/* Predicted catalog (docs/behaviour.md §4.8), tiles_to_crop tiles cropped on every side: the marginal's
 * point estimate (use_mode) or draw is the history; with the checkerboard, tiles with cb = 1
 * keep it and tiles with cb = 0 take the white conditional's (the black conditional cannot
 * change the result and is not computed). Randomness: streams bl_rng_mix(stream, 0) for the
 * marginal, 1 for the white conditional, 2 for the second detection, each of `seed`.
 * Runs without recording a tape. *out NULL on error. */
bl_status bl_encoder_sample(bl_encoder *enc, bl_ctx *ctx, bl_tensor *x, int use_mode,
                            uint64_t seed, uint64_t stream, bl_tile_catalog **out);
/* The point estimate (bl_encoder_sample with use_mode) plus, in every tile, q's summaries
 * (bl_vardist_q_fill: on_prob, galaxy_prob, <factor>_loc, <factor>_scale) of the distribution
 * the tile's values come from: the marginal, or the white conditional on the tiles that take
 * it, or the second detection for the second slot. Register the fields first
 * (bl_vardist_q_register). */
bl_status bl_encoder_predict(bl_encoder *enc, bl_ctx *ctx, bl_tensor *x, uint64_t seed,
                             uint64_t stream, bl_tile_catalog **out);

#endif
