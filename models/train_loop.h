/* The training driver of `bliss train` (docs/cli.md, docs/behaviour.md §4.10): epochs of optimizer steps,
 * the learning-rate schedule, validation after each epoch, early stopping, the best and the
 * last checkpoint, the training curve (CSV + PNG), progress output, resume, and a clean stop on
 * SIGINT/SIGTERM. What a step, a validation and a checkpoint are is given by hooks, so the
 * driver knows nothing of networks or gradients (and is tested with a fake model).
 *
 * Rules, as Lightning applies them to the original:
 *   lr(epoch) = MultiStepLR(base_lr, milestones, gamma) at the epoch's index (0-based);
 *   after epoch e: val = validate(); improvement iff val < best (strict); then best.safetensors
 *   is written; otherwise bad_epochs += 1; training stops when bad_epochs >= patience
 *   (patience > 0) and e + 1 >= min_epochs, or after max_epochs, or at max_steps (> 0);
 *   last.safetensors is written after every epoch, every checkpoint_every steps (> 0), at the
 *   end and when stopped by a signal.
 * Files in out_dir: last.safetensors, best.safetensors (with validation), curve.csv, curve.png,
 * metrics.csv and metrics.png (with plan->metrics);
 * each appears only complete (the save hook must write atomically too). */
#ifndef BL_MODELS_TRAIN_LOOP_H
#define BL_MODELS_TRAIN_LOOP_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "autograd/optim.h"
#include "lib/io/curve.h"
#include "lib/io/table.h"
#include "lib/error.h"
#include "lib/progress.h"

/* Everything needed to continue a run; stored in checkpoints by the save hook. */
typedef struct bl_train_state {
    int64_t step;        /* optimizer steps done */
    int64_t epoch;       /* epochs completed */
    double best_val;     /* best validation loss so far (+inf: none yet) */
    int64_t best_epoch;  /* epoch (1-based count) that produced it, 0 if none */
    int64_t bad_epochs;  /* validations since the best one without improvement */
    double seconds;      /* wall time of training so far, earlier runs included */
} bl_train_state;

void bl_train_state_init(bl_train_state *s);

typedef struct bl_train_hooks {
    void *ctx;
    /* One optimizer step with learning rate lr (the step's index is state->step, 0-based). */
    bl_status (*step)(void *ctx, int64_t step, double lr, double *train_loss);
    /* Validation loss; NULL: no validation (no early stopping, no best checkpoint). */
    bl_status (*validate)(void *ctx, double *val_loss);
    /* Optional (with plan->metrics): the validation metrics after each validation, one value
     * per column of plan->metrics after its first two (step, epoch). */
    bl_status (*val_metrics)(void *ctx, double *values);
    /* Write a checkpoint holding the model, the optimizer and *state to `path`, atomically. */
    bl_status (*save)(void *ctx, const char *path, const bl_train_state *state);
} bl_train_hooks;

typedef enum {
    BL_TRAIN_DONE = 0,      /* max_epochs reached */
    BL_TRAIN_EARLY_STOP,    /* patience exhausted */
    BL_TRAIN_MAX_STEPS,     /* max_steps reached */
    BL_TRAIN_INTERRUPTED,   /* *stop became non-zero */
} bl_train_end;

typedef struct bl_train_plan {
    int64_t steps_per_epoch, max_epochs, min_epochs, patience;
    int64_t max_steps;           /* 0: no limit */
    int64_t checkpoint_every;    /* 0: at epoch ends only */
    int64_t print_every;
    bl_multistep schedule;
    const char *out_dir;
    int plot_width, plot_height; /* curve.png; 0: no plot */
    int plot_log;                /* curve.png's loss axis logarithmic */
    const char *title;           /* of the plot */
    FILE *log;                   /* progress and messages (stdout) */
    bl_progress_mode progress;
    volatile sig_atomic_t *stop; /* may be NULL */
    int follower;                /* 1: another process writes curve.csv/png (data-parallel
                                  * ranks > 0; their save hook writes nothing either) */
    bl_table *metrics;           /* NULL, or the per-epoch validation metrics so far (columns
                                  * step, epoch, then hooks->val_metrics's): a row is added after
                                  * every validation and written to metrics.csv / metrics.png;
                                  * rows past state->step are dropped at the start (resume) */
} bl_train_plan;

/* Run from *state (fresh: bl_train_state_init; resumed: the checkpoint's) and the curve so far
 * (its points past state->step are dropped); both are updated. A hook error stops training
 * after saving nothing more and is returned; *end says why training ended otherwise. */
bl_status bl_train_run(const bl_train_plan *plan, const bl_train_hooks *hooks,
                       bl_train_state *state, bl_curve *curve, bl_train_end *end);

const char *bl_train_end_name(bl_train_end end);

#endif
