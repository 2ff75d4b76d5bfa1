/* Training the encoder (docs/behaviour.md §4.10): optimizer steps on batches from a source (the simulator,
 * fresh every step, or a saved dataset), Adam with a learning rate set per step (the
 * multi-step schedule is applied by the caller per epoch, bl_multistep_lr), BatchNorm in
 * training mode for steps and eval mode for validation, the validation loss over a fixed
 * validation set, the seed notebook's single-batch loop, and checkpoints with the Adam state.
 *
 * Memory: all per-step tensors live in the trainer's ctx arena, reset after every step and
 * every validation batch; after the first step a step allocates nothing from the system
 * (apart from the small true catalogs of the loss). */
#ifndef BL_TRAINER_H
#define BL_TRAINER_H

#include <stdio.h>

#include "autograd/optim.h"
#include "lib/batch.h"
#include "lib/io/safetensors.h"
#include "models/encoder.h"

typedef struct bl_trainer_opts {
    bl_adam_opts adam;       /* torch defaults; BLISS: lr 1e-3 (redshift 1e-4) */
    int fixed_batch;         /* 1: the seed's loop, batch 0 of the source for every step */
    size_t arena_bytes;      /* initial ctx arena size (0: grows on the first step) */
    /* Called after backward and before Adam in every step (may be NULL): data-parallel
     * training averages the gradients over processes here (tools/ddp.h). */
    void (*after_backward)(void *user, bl_params *params);
    void *after_backward_user;
} bl_trainer_opts;

bl_trainer_opts bl_trainer_opts_default(void);

typedef struct bl_trainer {
    bl_encoder *enc;         /* not owned */
    bl_adam *adam;
    bl_ctx *ctx;
    bl_batch_source train, val;
    bl_trainer_opts opts;
    int64_t step;            /* optimizer steps taken */
    /* the single batch of the fixed-batch loop, kept between steps */
    bl_tensor *fixed_x;      /* persistent; the network reads it in place every step */
    bl_tile_catalog *fixed_truth;
} bl_trainer;

/* val.get may be NULL (no validation). */
bl_trainer *bl_trainer_alloc(bl_encoder *enc, const bl_trainer_opts *opts, bl_batch_source train,
                             bl_batch_source val);
void bl_trainer_free(bl_trainer *tr);

/* One optimizer step in training mode with learning rate lr: zero grads, loss, backward, Adam,
 * ctx reset. The batch is train.get(step) (or the cached batch 0 with fixed_batch). A
 * non-finite loss is BL_ERR_NAN naming the step, and the parameters are left unchanged. */
bl_status bl_trainer_step(bl_trainer *tr, double lr, double *loss);
/* Mean loss over val.n_batches batches in eval mode without a tape; restores training mode. */
bl_status bl_trainer_validate(bl_trainer *tr, double *val_loss);

/* The seed's single-batch loop: n_steps steps at lr on batch 0, printing "step N loss L" to
 * log (may be NULL) every print_every steps (and the first); losses[n_steps] (may be NULL). */
bl_status bl_trainer_fixed_batch_loop(bl_trainer *tr, int64_t n_steps, double lr, int print_every,
                                      FILE *log, double *losses);

/* Checkpoint with the model, the Adam state and "trainer.step" plus n_meta caller strings. */
bl_status bl_trainer_save(const bl_trainer *tr, const char *path, int n_meta,
                          const char *const *keys, const char *const *values);
/* Restore model, Adam state and the step counter; *meta (if non-NULL) gets the file for its
 * metadata (free with bl_safetensors_free). */
bl_status bl_trainer_load(bl_trainer *tr, const char *path, bl_safetensors **meta);

#endif
