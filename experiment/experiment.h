/* An experiment built from a config (docs/experiments.md): the settings of every module
 * (experiment/settings.h), the data (simulation or a dataset, experiment/data.h), the encoder
 * with its factors and input normaliser, the trainer, and the training loop of
 * models/train_loop.h with its hooks — what `bliss train` runs, for a C program:
 *
 *   bl_experiment *ex;
 *   bl_experiment_opts o = bl_experiment_opts_default();
 *   o.out_dir = "run";
 *   if (bl_experiment_load(&ex, "configs/quick.cfg", 0, NULL, &o)) { ...bl_error_message()... }
 *   bl_train_end end;
 *   bl_status st = bl_experiment_run(ex, &end);     (last/best.safetensors, curve, metrics)
 *   bl_experiment_print_q_stats(ex, stdout);
 *   bl_experiment_free(ex);
 *
 * Checkpoints hold the model, Adam, the training state (train.step, train.epoch, ...), the
 * resolved config (bliss.config: `bliss evaluate` and `bliss predict` rebuild the encoder from
 * it) and Lightning's counters (epoch, global_step, scheduler.*: tools/pt_convert.py). Under
 * data-parallel training the caller fills `parallel` and the trainer's after_backward
 * (tools/ddp.c, the CLI); one process needs neither. */
#ifndef BL_EXPERIMENT_H
#define BL_EXPERIMENT_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "experiment/data.h"
#include "experiment/settings.h"
#include "lib/io/table.h"
#include "models/train_loop.h"
#include "models/trainer.h"

/* Checkpoint metadata keys besides the training state. */
#define BL_META_CONFIG "bliss.config"         /* the resolved config, libconfig text */
#define BL_META_VERSION "bliss.version"       /* the program's version (the CLI's) */
#define BL_META_SEED "train.seed"
#define BL_META_THREADS "train.threads"
#define BL_META_ENGINE "train.conv_engine"

typedef struct bl_experiment_opts {
    const char *out_dir;       /* NULL: train.output_dir; created if missing (one level) */
    const char *data;          /* NULL: train.data ("simulate" or a dataset directory) */
    int64_t max_steps;         /* 0: train.max_steps */
    int rank, n_ranks;         /* this process's slice of every batch (0, 1: one process) */
    FILE *log;                 /* progress and messages; NULL: stdout */
    bl_progress_mode progress; /* BL_PROGRESS_AUTO */
    volatile sig_atomic_t *stop; /* may be NULL: set to stop after the current step */
    const char *title;         /* of curve.png; NULL: the config's path */
    int n_meta;                /* extra checkpoint metadata (the CLI's version, threads, ...) */
    const char *const *meta_keys, *const *meta_values;
} bl_experiment_opts;

bl_experiment_opts bl_experiment_opts_default(void);

/* Data-parallel hook points (the CLI fills them from tools/ddp.c and tools/dist.c); each may be
 * NULL. Every process runs the same loop; rank 0 writes the files. */
typedef struct bl_experiment_parallel {
    void *user;
    /* after every optimizer step: make the step's loss the global one (and, e.g., agree on a
     * stop request, check that the parameters agree) */
    bl_status (*after_step)(void *user, int64_t step, double *loss);
    /* v[0 .. n) := the mean over the processes, the same on all */
    void (*mean)(void *user, double *v, int n);
    /* before every checkpoint (all processes) */
    bl_status (*before_save)(void *user, int64_t step);
} bl_experiment_parallel;

typedef struct bl_experiment {
    bl_settings *s;            /* owned */
    bl_cli_data *data;         /* owned */
    bl_encoder *enc;           /* owned */
    bl_trainer *tr;            /* owned; tr->opts.after_backward is a hook point */
    bl_batch_source train, val;
    bl_train_state state;      /* fresh, or the resumed checkpoint's */
    bl_curve *curve;
    bl_table *metrics;         /* per-epoch validation metrics; NULL without validation */
    char **metric_names;
    int n_metric_names;
    char *out_dir, *data_name; /* where the run writes, what it reads ("simulate" or a dir) */
    char *config_text;         /* the run's resolved config (with out_dir, data, max_steps) */
    bl_experiment_opts opts;
    bl_experiment_parallel parallel;
} bl_experiment;

/* Build an experiment from loaded settings (taken over: freed with the experiment, also on
 * error). opts may be NULL (defaults). The config records opts' out_dir, data and max_steps
 * (train.output_dir, train.data, train.max_steps) so that it repeats the run. */
bl_status bl_experiment_from_settings(bl_experiment **out, bl_settings *s, const bl_experiment_opts *opts);
/* bl_settings_load(config, sets) (with the memory check of one step) + from_settings. */
bl_status bl_experiment_load(bl_experiment **out, const char *config, int n_sets,
                             const char *const *sets, const bl_experiment_opts *opts);
void bl_experiment_free(bl_experiment *ex);

/* Start from the weights of `file` (any safetensors with the model's state_dict names); Adam
 * stays fresh. Missing, unexpected or mis-shaped weights are BL_ERR_FORMAT listing them. */
bl_status bl_experiment_init_weights(bl_experiment *ex, const char *file);
/* Continue from a checkpoint written by an experiment: the config recorded in it is compared
 * with this one first (a model-shaping key that differs is BL_ERR_CONFIG naming it; other
 * differences are warnings to `warn`, may be NULL), then the model, Adam, the training state,
 * and curve.csv / metrics.csv of out_dir (lines past the checkpoint's step dropped). */
bl_status bl_experiment_resume(bl_experiment *ex, const char *checkpoint, FILE *warn);
/* Train (models/train_loop.h) from ex->state; *end says why it stopped. */
bl_status bl_experiment_run(bl_experiment *ex, bl_train_end *end);
/* The q statistics of every factor (models/evaluate.h) on the first validation batch (the
 * training batch without validation or with fixed_batch). */
void bl_experiment_print_q_stats(bl_experiment *ex, FILE *f);

/* Compare two resolved config texts key by key (what resume does): a difference under
 * encoder, factors, survey, prior_fields, or in prior.tile_slen is BL_ERR_CONFIG naming the
 * key, both values and `file`; others are printed to `warn` (may be NULL). */
bl_status bl_experiment_compare_configs(const char *file, const char *recorded, const char *current,
                                        FILE *warn);

#endif
