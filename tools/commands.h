/* Subcommands of the bliss CLI (tools/bliss.c parses the command line, these do the work). */
#ifndef BL_TOOLS_COMMANDS_H
#define BL_TOOLS_COMMANDS_H

#include <stdint.h>

#include "experiment/settings.h"

#define BL_EXIT_ERROR 1
#define BL_EXIT_USAGE 2

/* options shared by every subcommand, and the subcommands' own */
typedef struct bl_cli {
    const char *cmd;
    const char *config;
    int n_sets;
    const char **sets;
    int threads;   /* 0: the OpenMP default */
    int has_seed;
    int64_t seed;
    const char *out, *data, *checkpoint, *input, *resume;
    const char *init;        /* train --init: weights only, fresh optimizer */
    int64_t max_steps, batches;
    int fits;
    int pad;       /* predict --pad */
    int64_t samples; /* predict --samples K: K catalogs drawn from q (0: none) */
    int plot;        /* predict --plot */
    /* pictures (predict --plot, plot): --band N (-1: default), --rgb R,G,B, --plot-size WxH */
    int plot_band, has_rgb, plot_rgb[3], plot_width, plot_height;
    const char *catalog; /* plot --catalog FILE (a predicted FITS catalog) */
    const char *curve;   /* plot --curve FILE (curve.csv) */
    int log_scale;       /* plot --log */
} bl_cli;

/* Print "bliss CMD: error: <last bl_error message>" and return BL_EXIT_ERROR. */
int bl_cli_fail(const bl_cli *cli);
/* Load and check the whole config with the command line's --set / --seed. */
bl_status bl_cli_settings(const bl_cli *cli, bl_settings **s);
/* mkdir -p */
bl_status bl_cli_mkdirs(const char *dir);
/* The directory of output file `file` exists (else BL_ERR_IO saying so, before any work). */
bl_status bl_cli_check_out_dir(const char *file);

int bl_cmd_factors(bl_cli *cli);
int bl_cmd_train(bl_cli *cli);
int bl_cmd_generate(bl_cli *cli);
int bl_cmd_evaluate(bl_cli *cli);
int bl_cmd_predict(bl_cli *cli);
int bl_cmd_plot(bl_cli *cli);
/* The true catalog of an input file, when it has one (a `bliss generate` shard, a FITS with a
 * CATALOG table); *out NULL otherwise. */
bl_status bl_cli_read_truth(const bl_settings *s, const char *path, bl_full_catalog **out);
/* PNGs of every image (PREFIX.png, or PREFIX_NNNN.png for a batch) with truth and pred (either
 * may be NULL) under the --band / --rgb / --plot-size options; sources closer than `border`
 * pixels to the edge (not predicted) are not marked unmatched. */
bl_status bl_cli_plot_images(const bl_settings *s, const bl_cli *cli, const char *prefix, const bl_tensor *images,
                             const bl_tensor *background, const bl_full_catalog *truth, const bl_full_catalog *pred,
                             int border);

#endif
