/* What a run records about itself (docs/cli.md, "Every run records itself"): the bliss-c
 * version, the thread count, the convolution engine, and the fully resolved config, written as
 * config.cfg beside the outputs of `bliss train` and into every checkpoint's metadata, from
 * which `bliss evaluate` and `bliss predict` rebuild the encoder when no --config is given. */
#ifndef BL_TOOLS_RUN_INFO_H
#define BL_TOOLS_RUN_INFO_H

#include <stdio.h>

#include "experiment/experiment.h"
#include "lib/io/safetensors.h"
#include "tools/commands.h"

/* Checkpoint metadata keys (BL_META_CONFIG, ...): experiment/experiment.h */

/* "0.1.0 (git <describe>)" */
const char *bl_cli_version(void);
/* The convolution engine in use: $BL_CONV_ENGINE, else "default". */
const char *bl_cli_conv_engine(void);
/* OpenMP threads the run uses (--threads, else the OpenMP default). */
int bl_cli_threads(void);

/* Write `text` (a resolved config) as dir/config.cfg, atomically, under a comment header
 * naming the version, the source config, the --set options, seed, threads and engine. */
bl_status bl_cli_write_run_config(const bl_cli *cli, const char *dir, const char *source,
                                  const char *text, int64_t seed);

/* The settings of `bliss evaluate` / `bliss predict`: from --config when given, else from the
 * config recorded in the checkpoint `ckpt` (already read), with --set and --seed on top. A
 * checkpoint without a recorded config is an error asking for --config. */
bl_status bl_cli_checkpoint_settings(const bl_cli *cli, const bl_safetensors *ckpt, bl_settings **s);

/* Read `path` for evaluate/predict and load its tensors into params once the encoder exists:
 * a shape mismatch (another config) keeps the checkpoint's message and, when --config was
 * given and the checkpoint records its own, says that leaving --config out would use it. */
bl_status bl_cli_checkpoint_unpack(const bl_cli *cli, const bl_safetensors *ckpt, bl_params *params);

#endif
