/* Where the CLI's batches come from: the simulator (fresh batches from seeded streams) or a
 * dataset directory written by `bliss generate`. Each source hands out normalised images
 * (B, n_bands, ch_per_band, H, W) in the ctx arena and a true tile catalog (bl_batch_source of
 * models/trainer.h), and can also give the raw batch (images in electrons, background) for
 * prediction and export. */
#ifndef BL_EXPERIMENT_DATA_H
#define BL_EXPERIMENT_DATA_H

#include "models/trainer.h"
#include "experiment/settings.h"

typedef enum {
    BL_DATA_TRAIN = 0,   /* fresh batch per index (or the dataset's first 80%) */
    BL_DATA_VAL,         /* the fixed validation set (or the next 10%) */
    BL_DATA_TEST,        /* the last 10% of a dataset; simulation: its own streams */
} bl_data_split;

typedef struct bl_cli_data bl_cli_data;

/* `dir` NULL or "simulate": simulate with the config's prior and survey. */
bl_status bl_cli_data_open(bl_cli_data **out, const bl_settings *s, const char *dir);
/* The slice of process `rank` of n_ranks (tools/dist.h): every batch holds images
 * [rank B / n, (rank + 1) B / n) of the global batch (B = prior.batch_size), the same images a
 * single process has there (simulation: the same per-image streams). B not a multiple of
 * n_ranks is BL_ERR_CONFIG. */
bl_status bl_cli_data_open_slice(bl_cli_data **out, const bl_settings *s, const char *dir, int rank,
                                 int n_ranks);
void bl_cli_data_free(bl_cli_data *d);
/* A batch source over one split; n_batches as in bl_batch_source (0 = unbounded). A dataset's
 * last 10% of batches (at least one) are the validation split, the rest the training split;
 * BL_DATA_TEST is every batch in file order. n_batches is capped at what the split holds. */
bl_batch_source bl_cli_data_source(bl_cli_data *d, bl_data_split split, int64_t n_batches);

/* Images to predict on: a batch .safetensors ("images" (B, NB, H, W) and "background") or a
 * FITS file with one image HDU per band named after the bands (and "BKG_<band>" HDUs; without
 * them the background is each band's median, see docs/cli.md). Persistent tensors. */
bl_status bl_cli_read_images(const bl_settings *s, const char *path, bl_tensor **images,
                             bl_tensor **background);
/* 1 when bl_cli_read_images reads `path` as FITS (.fits, .fit, .fits.gz). */
int bl_cli_input_is_fits(const char *path);
/* The encoder's input (B, NB, ch_per_band, H, W) in ctx from images and background
 * (encoder.image_normalizer); psf_params (B, NB, 6) only when it concatenates them. */
bl_status bl_cli_normalize(const bl_settings *s, bl_ctx *ctx, const bl_tensor *images,
                           const bl_tensor *background, bl_tensor **x);
/* Batches in a dataset (0 when simulating). */
int64_t bl_cli_data_n_batches(const bl_cli_data *d);
/* The simulator (NULL for a dataset). */
const bl_simulator *bl_cli_data_simulator(const bl_cli_data *d);

/* An empty batch of B images with the geometry and catalog fields of `like`, and the copy of
 * images [s0, s0 + n) of src to [d0, d0 + n) of dst: shards of several batches. */
bl_sim_batch *bl_cli_batch_like(const bl_sim_batch *like, int64_t B);
void bl_cli_batch_copy(bl_sim_batch *dst, int64_t d0, const bl_sim_batch *src, int64_t s0, int64_t n);

#endif
