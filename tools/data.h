/* Where the CLI's batches come from: the simulator (fresh batches from seeded streams) or a
 * dataset directory written by `bliss generate`. Each source hands out normalised images
 * (B, n_bands, ch_per_band, H, W) in the ctx arena and a true tile catalog (bl_batch_source of
 * models/trainer.h), and can also give the raw batch (images in electrons, background) for
 * prediction and export. */
#ifndef BL_TOOLS_DATA_H
#define BL_TOOLS_DATA_H

#include "models/trainer.h"
#include "tools/settings.h"

typedef enum {
    BL_DATA_TRAIN = 0,   /* fresh batch per index (or the dataset's first 80%) */
    BL_DATA_VAL,         /* the fixed validation set (or the next 10%) */
    BL_DATA_TEST,        /* the last 10% of a dataset; simulation: its own streams */
} bl_data_split;

typedef struct bl_cli_data bl_cli_data;

/* `dir` NULL or "simulate": simulate with the config's prior and survey. */
bl_status bl_cli_data_open(bl_cli_data **out, const bl_settings *s, const char *dir);
void bl_cli_data_free(bl_cli_data *d);
/* A batch source over one split; n_batches as in bl_batch_source (0 = unbounded). */
bl_batch_source bl_cli_data_source(bl_cli_data *d, bl_data_split split, int64_t n_batches);

/* Images to predict on: a batch .safetensors ("images" (B, NB, H, W) and "background") or a
 * FITS file with one image HDU per band named after the bands (and "BKG_<band>" HDUs; without
 * them the background is each band's median, see docs/cli.md). Persistent tensors. */
bl_status bl_cli_read_images(const bl_settings *s, const char *path, bl_tensor **images,
                             bl_tensor **background);
/* The encoder's input (B, NB, ch_per_band, H, W) in ctx from images and background. */
bl_status bl_cli_normalize(const bl_settings *s, bl_ctx *ctx, const bl_tensor *images,
                           const bl_tensor *background, bl_tensor **x);

#endif
