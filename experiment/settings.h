/* The bliss CLI's view of a config file (docs/config.md): every key of every module is read
 * here into plain structs, then bl_config_check_unused reports any key nobody read, naming its
 * file and line. Reading everything up front means a typo anywhere fails every subcommand at
 * once, before any work starts.
 *
 * Loading order: the file (with its @includes), then its `overrides` lists (both applied by
 * bl_config_load, lib/config.h), then the --set assignments of the command line, then --seed. */
#ifndef BL_EXPERIMENT_SETTINGS_H
#define BL_EXPERIMENT_SETTINGS_H

#include <stdint.h>

#include "autograd/optim.h"
#include "dists/vardist.h"
#include "lib/config.h"
#include "lib/eval/metrics.h"
#include "lib/sim/normalize.h"
#include "lib/sim/simulate.h"
#include "models/encoder.h"

#define BL_MAX_MILESTONES 16

/* train.ddp_bucket_mb's default: 25 MB of float32 per all-reduce message, as PyTorch's DDP
 * buckets (tools/ddp.c) */
#define BL_DDP_BUCKET_MB 25.0

typedef struct bl_train_settings {
    int64_t seed;              /* 42: network initialisation, data order, sampling */
    const char *data;          /* "simulate" (fresh batches every step) or a dataset directory */
    int64_t steps_per_epoch;   /* 128 (simulator.n_batches) */
    int64_t val_batches;       /* 10: fixed validation set (0: no validation) */
    int64_t max_epochs;        /* 50 */
    int64_t min_epochs;        /* 1 */
    int64_t patience;          /* 5: epochs without a better val loss before stopping (0: off) */
    int64_t max_steps;         /* 0: no limit; else stop after this many optimizer steps */
    int fixed_batch;           /* 0; 1: the seed's loop, one batch for every step */
    int sync_batchnorm;        /* 0; 1: under mpirun, BatchNorm statistics of the global batch */
    int val_metrics;           /* 1: per-factor validation metrics after each epoch (metrics.csv) */
    int ddp_overlap;           /* 0; 1: under mpirun, gradient all-reduce overlapped with backward */
    double ddp_bucket_mb;      /* 25 (BL_DDP_BUCKET_MB): MB of gradients per all-reduce message */
    int64_t print_every;       /* 10 */
    int64_t checkpoint_every;  /* 0: last.safetensors at epoch ends only; else also every N steps */
    bl_adam_opts adam;         /* train.optimizer: torch's defaults (bl_adam_defaults) */
    int n_milestones;
    int64_t milestones[BL_MAX_MILESTONES];        /* [32] epochs */
    double gamma;                                 /* 0.1 */
    const char *output_dir;    /* "output" */
    int64_t plot_width, plot_height;              /* 800 x 500 */
    int plot_log;                                 /* 0; 1: curve.png on a log loss axis */
} bl_train_settings;

/* The defaults of every train.* key: the readers start from this struct. */
bl_train_settings bl_train_settings_default(void);

typedef struct bl_generate_settings {
    int64_t n_files;           /* 32 */
    int64_t n_batches_per_file;/* 16 */
    const char *output_dir;    /* "data/sim" */
    int fits;                  /* 0: also export every file's images and catalog as FITS */
} bl_generate_settings;

bl_generate_settings bl_generate_settings_default(void);

typedef struct bl_settings {
    bl_config *cfg;
    const char *path;
    int n_bands;               /* from the survey */
    const char *const *band_names;
    int tile_slen;             /* prior.tile_slen: the simulator's tiles are the encoder's */
    int64_t batch_size;        /* prior.batch_size */
    bl_survey survey;
    bl_prior *prior;           /* with prior.fields and the top-level prior_fields; owned */
    bl_sim_opts sim;
    bl_encoder_opts encoder;
    bl_normalize_opts normalize; /* encoder.image_normalizer */
    bl_net_arch arch;          /* n_out filled from the spec */
    int base_factors;          /* 1: the built-in SDSS factors first (encoder.base_factors "sdss") */
    bl_vardist_spec *spec;     /* built-in factors + the top-level `factors` list */
    bl_train_settings train;
    bl_generate_settings generate;
    bl_metrics_opts metrics;
} bl_settings;

/* Load `path` (with its overrides lists), apply the n_sets "key=value" assignments and the seed (if
 * has_seed), read every module's keys and check that none is unknown. On error *out = NULL
 * and the message (file:line: ...) is in bl_error_message(). */
bl_status bl_settings_load(bl_settings **out, const char *path, int n_sets, const char *const *sets,
                           int has_seed, int64_t seed);
/* The same from config text (a checkpoint's recorded config); `name` stands for the file in
 * messages and its directory is where @includes are looked for first. */
bl_status bl_settings_load_string(bl_settings **out, const char *text, const char *name, int n_sets,
                                  const char *const *sets, int has_seed, int64_t seed);
void bl_settings_free(bl_settings *s);

/* An estimate of the memory one training step needs (bytes): the encoder's activations and
 * their gradients for prior.batch_size images of the prior's size, plus the simulated batch. */
double bl_settings_step_bytes(const bl_settings *s);
/* BL_ERR_NOMEM ("needs ~N GiB for batch B at HxW; reduce prior.batch_size ...") when that
 * estimate exceeds the machine's physical memory. */
bl_status bl_settings_check_memory(const bl_settings *s);

#endif
