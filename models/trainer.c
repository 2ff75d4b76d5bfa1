#include "models/trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/checkpoint.h"

bl_trainer_opts bl_trainer_opts_default(void)
{
    return (bl_trainer_opts){.adam = bl_adam_defaults(), .fixed_batch = 0, .arena_bytes = 0};
}

bl_trainer *bl_trainer_alloc(bl_encoder *enc, const bl_trainer_opts *opts, bl_batch_source train,
                             bl_batch_source val)
{
    BL_ASSERT(enc && train.get, "bl_trainer_alloc: an encoder and a training batch source are needed");
    bl_trainer *tr = bl_calloc(1, sizeof *tr);
    tr->enc = enc;
    tr->opts = opts ? *opts : bl_trainer_opts_default();
    tr->adam = bl_adam_alloc(enc->params, tr->opts.adam);
    tr->ctx = bl_ctx_alloc(tr->opts.arena_bytes);
    tr->train = train;
    tr->val = val;
    return tr;
}

void bl_trainer_free(bl_trainer *tr)
{
    if (!tr) return;
    bl_adam_free(tr->adam);
    bl_ctx_free(tr->ctx);
    bl_tensor_free(tr->fixed_x);
    bl_tile_catalog_free(tr->fixed_truth);
    free(tr);
}

/* The step's batch: from the source, or the cached batch 0 in the fixed-batch loop. */
static bl_status bl_trainer_batch(bl_trainer *tr, bl_tensor **x, bl_tile_catalog **truth, int *owned)
{
    *owned = 1;
    if (!tr->opts.fixed_batch) return tr->train.get(tr->train.user, bl_ctx_arena(tr->ctx), tr->step, x, truth);
    if (!tr->fixed_truth) {
        bl_tensor *x0;
        bl_tile_catalog *t0;
        bl_status st = tr->train.get(tr->train.user, bl_ctx_arena(tr->ctx), 0, &x0, &t0);
        if (st) return st;
        tr->fixed_x = bl_tensor_alloc("fixed_batch", x0->ndim, x0->shape, 0);
        bl_tensor_copy(tr->fixed_x, x0);
        tr->fixed_truth = t0;
    }
    *x = tr->fixed_x; /* read-only input: used in place, no copy per step */
    *truth = tr->fixed_truth;
    *owned = 0;
    return BL_OK;
}

bl_status bl_trainer_step(bl_trainer *tr, double lr, double *loss)
{
    bl_tensor *x, *l = NULL;
    bl_tile_catalog *truth;
    int owned;
    bl_status st = bl_trainer_batch(tr, &x, &truth, &owned);
    if (st) {
        bl_ctx_reset(tr->ctx);
        return st;
    }
    bl_encoder_set_training(tr->enc, 1);
    bl_set_grad_enabled(tr->ctx, 1);
    bl_params_zero_grad(tr->enc->params);
    st = bl_encoder_loss(tr->enc, tr->ctx, x, truth, &l, NULL);
    if (!st && !isfinite((double)l->data[0]))
        st = bl_error(BL_ERR_NAN, "training step %lld: the loss is %g; parameters left unchanged",
                      (long long)tr->step, (double)l->data[0]);
    if (!st) {
        bl_backward(tr->ctx, l);
        if (tr->opts.after_backward) tr->opts.after_backward(tr->opts.after_backward_user, tr->enc->params);
        tr->adam->opts.lr = lr;
        bl_adam_step(tr->adam);
        tr->step++;
        if (loss) *loss = (double)l->data[0];
    }
    if (owned) bl_tile_catalog_free(truth);
    bl_ctx_reset(tr->ctx);
    return st;
}

bl_status bl_trainer_validate(bl_trainer *tr, double *val_loss)
{
    if (!tr->val.get || tr->val.n_batches <= 0)
        return bl_error(BL_ERR_ARG, "validation: no validation batches configured");
    const int was_training = tr->enc->training, grad_was = bl_set_grad_enabled(tr->ctx, 0);
    bl_encoder_set_training(tr->enc, 0);
    double sum = 0;
    bl_status st = BL_OK;
    for (int64_t i = 0; i < tr->val.n_batches && !st; i++) {
        bl_tensor *x, *l;
        bl_tile_catalog *truth;
        st = tr->val.get(tr->val.user, bl_ctx_arena(tr->ctx), i, &x, &truth);
        if (st) {
            bl_ctx_reset(tr->ctx);
            break;
        }
        st = bl_encoder_loss(tr->enc, tr->ctx, x, truth, &l, NULL);
        if (!st) sum += (double)l->data[0];
        bl_tile_catalog_free(truth);
        bl_ctx_reset(tr->ctx);
    }
    bl_encoder_set_training(tr->enc, was_training);
    bl_set_grad_enabled(tr->ctx, grad_was);
    if (!st) *val_loss = sum / (double)tr->val.n_batches;
    return st;
}

bl_status bl_trainer_fixed_batch_loop(bl_trainer *tr, int64_t n_steps, double lr, int print_every,
                                      FILE *log, double *losses)
{
    const int was = tr->opts.fixed_batch;
    tr->opts.fixed_batch = 1;
    bl_status st = BL_OK;
    for (int64_t s = 0; s < n_steps && !st; s++) {
        double l;
        st = bl_trainer_step(tr, lr, &l);
        if (st) break;
        if (losses) losses[s] = l;
        if (log && print_every > 0 && (s % print_every == 0 || s == n_steps - 1)) {
            fprintf(log, "step %lld loss %.6f\n", (long long)s, l);
            fflush(log);
        }
    }
    tr->opts.fixed_batch = was;
    return st;
}

bl_status bl_trainer_save(const bl_trainer *tr, const char *path, int n_meta,
                          const char *const *keys, const char *const *values)
{
    const char **k = bl_malloc((size_t)(n_meta + 1) * sizeof *k);
    const char **v = bl_malloc((size_t)(n_meta + 1) * sizeof *v);
    char step[32];
    snprintf(step, sizeof step, "%lld", (long long)tr->step);
    k[0] = "trainer.step";
    v[0] = step;
    for (int i = 0; i < n_meta; i++) {
        k[i + 1] = keys[i];
        v[i + 1] = values[i];
    }
    bl_status st = bl_checkpoint_save(path, tr->enc->params, tr->adam, n_meta + 1, k, v);
    free(k);
    free(v);
    return st;
}

bl_status bl_trainer_load(bl_trainer *tr, const char *path, bl_safetensors **meta)
{
    bl_safetensors *st_file;
    bl_status st = bl_checkpoint_load(path, tr->enc->params, tr->adam, &st_file);
    if (st) {
        if (meta) *meta = NULL;
        return st;
    }
    const char *s = bl_safetensors_meta(st_file, "trainer.step");
    tr->step = s ? strtoll(s, NULL, 10) : tr->adam->step;
    if (meta)
        *meta = st_file;
    else
        bl_safetensors_free(st_file);
    return BL_OK;
}
