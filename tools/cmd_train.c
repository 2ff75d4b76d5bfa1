/* bliss train: the trainer of models/trainer.h driven by tools/train_loop.h (docs/cli.md). */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "models/trainer.h"
#include "tools/commands.h"
#include "tools/data.h"
#include "tools/run_info.h"
#include "tools/ddp.h"
#include "tools/dist.h"
#include "tools/train_loop.h"

/* The first SIGINT/SIGTERM/SIGUSR1 asks the loop to stop after the current step (it then
 * saves); SA_RESETHAND makes a second one end the process at once. SIGUSR1 is for mpirun,
 * which forwards it to every process (a SIGTERM to mpirun tears the job down, see
 * docs/scaling.md). Under mpirun the processes agree
 * after every step (the maximum of their signal flags), so all stop after the same step. */
static volatile sig_atomic_t bl_stop_flag, bl_stop_signal, bl_signal_flag;

static void bl_on_signal(int sig)
{
    bl_stop_signal = sig;
    bl_signal_flag = 1;
    if (bl_dist_size() == 1) bl_stop_flag = 1;
}

/* parameters compared across processes every this many steps (and before every save) */
#define BL_DDP_CHECK_EVERY 100

static void bl_install_signals(struct sigaction *old_int, struct sigaction *old_term,
                               struct sigaction *old_usr1)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = bl_on_signal;
    sa.sa_flags = SA_RESETHAND;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, old_int);
    sigaction(SIGTERM, &sa, old_term);
    sigaction(SIGUSR1, &sa, old_usr1);
}

/* ---- hooks ------------------------------------------------------------------------------ */

typedef struct {
    bl_trainer *tr;
    const char *config;
    int P;
    const char *config_text; /* the resolved config (run_info.h) */
    int64_t seed;
    bl_ddp *ddp; /* NULL: one process */
} bl_train_ctx;

/* The mean of v over the processes (each holds the mean over its equal slice of the global
 * batch: the mean is the global batch's), as rank 0 has it: decided once for everyone. */
static double bl_global_mean(double v)
{
    bl_dist_sum_double(&v, 1);
    v /= bl_dist_size();
    bl_dist_bcast_double(&v, 1);
    return v;
}

static bl_status bl_hook_step(void *ctx, int64_t step, double lr, double *loss)
{
    bl_train_ctx *c = ctx;
    /* the trainer keeps the same count and picks batch `step` itself */
    bl_status st = bl_trainer_step(c->tr, lr, loss);
    if (st || !c->ddp) return st;
    double v[2] = {*loss, bl_signal_flag ? 1.0 : 0.0};
    bl_dist_sum_double(v, 2);
    *loss = v[0] / bl_dist_size();
    if (v[1] > 0) bl_stop_flag = 1;
    if (step == 0 || (step + 1) % BL_DDP_CHECK_EVERY == 0) st = bl_ddp_check(c->ddp, step + 1);
    return st;
}

static bl_status bl_hook_validate(void *ctx, double *val)
{
    bl_train_ctx *c = ctx;
    bl_status st = bl_trainer_validate(c->tr, val);
    if (!st && c->ddp) *val = bl_global_mean(*val);
    return st;
}

#define BL_N_STATE_META 8
static const char *const bl_state_keys[BL_N_STATE_META] = {
    "train.step", "train.epoch", "train.best_val", "train.best_epoch", "train.bad_epochs",
    "train.seconds", "train.config", "train.P",
};

static bl_status bl_hook_save(void *ctx, const char *path, const bl_train_state *s)
{
    bl_train_ctx *c = ctx;
    bl_status cst = bl_ddp_check(c->ddp, s->step);
    if (cst) return cst;
    if (bl_dist_rank() != 0) return BL_OK; /* rank 0 writes the files */
    char v[BL_N_STATE_META][512];
    snprintf(v[0], sizeof v[0], "%lld", (long long)s->step);
    snprintf(v[1], sizeof v[1], "%lld", (long long)s->epoch);
    snprintf(v[2], sizeof v[2], "%.17g", s->best_val);
    snprintf(v[3], sizeof v[3], "%lld", (long long)s->best_epoch);
    snprintf(v[4], sizeof v[4], "%lld", (long long)s->bad_epochs);
    snprintf(v[5], sizeof v[5], "%.17g", s->seconds);
    snprintf(v[6], sizeof v[6], "%s", c->config);
    snprintf(v[7], sizeof v[7], "%d", c->P);
    /* and what the run records about itself (run_info.h) */
    char seed[32], threads[32];
    snprintf(seed, sizeof seed, "%lld", (long long)c->seed);
    snprintf(threads, sizeof threads, "%d", bl_cli_threads());
    enum { N_RUN = 5 };
    const char *keys[BL_N_STATE_META + N_RUN], *values[BL_N_STATE_META + N_RUN];
    for (int i = 0; i < BL_N_STATE_META; i++) keys[i] = bl_state_keys[i], values[i] = v[i];
    const char *run_keys[N_RUN] = {BL_META_CONFIG, BL_META_VERSION, BL_META_SEED, BL_META_THREADS,
                                   BL_META_ENGINE};
    const char *run_values[N_RUN] = {c->config_text, bl_cli_version(), seed, threads, bl_cli_conv_engine()};
    for (int i = 0; i < N_RUN; i++) keys[BL_N_STATE_META + i] = run_keys[i], values[BL_N_STATE_META + i] = run_values[i];
    return bl_trainer_save(c->tr, path, BL_N_STATE_META + N_RUN, keys, values);
}

/* the largest count accepted from a file: every integer up to 2^53 is exact in a double */
#define BL_MAX_COUNT 9007199254740992.0

/* The train state stored by bl_hook_save. */
static bl_status bl_state_from_meta(const bl_safetensors *meta, const char *path, bl_train_state *s)
{
    double v[6];
    for (int i = 0; i < 6; i++) {
        const char *text = bl_safetensors_meta(meta, bl_state_keys[i]);
        char *end;
        if (!text)
            return bl_error(BL_ERR_FORMAT, "%s: no '%s' in the metadata: not a checkpoint written by 'bliss train'",
                            path, bl_state_keys[i]);
        errno = 0;
        v[i] = strtod(text, &end);
        if (*end || end == text || errno == ERANGE)
            return bl_error(BL_ERR_FORMAT, "%s: metadata '%s' = '%s' is not a number", path,
                            bl_state_keys[i], text);
    }
    /* counts are checked as doubles before they are converted (NaN or 1e30 would be UB) */
    for (int i = 0; i < 5; i++) {
        if (i == 2) continue; /* best_val: any double (INFINITY before the first validation) */
        if (!(v[i] >= 0 && v[i] <= BL_MAX_COUNT) || v[i] != floor(v[i]))
            return bl_error(BL_ERR_FORMAT, "%s: metadata '%s' = %g is not a whole number in [0, 2^53]",
                            path, bl_state_keys[i], v[i]);
    }
    s->step = (int64_t)v[0];
    s->epoch = (int64_t)v[1];
    s->best_val = v[2];
    s->best_epoch = (int64_t)v[3];
    s->bad_epochs = (int64_t)v[4];
    s->seconds = v[5];
    if (!(s->seconds >= 0) || isinf(s->seconds) || isnan(s->best_val))
        return bl_error(BL_ERR_FORMAT, "%s: metadata train.seconds = %g or train.best_val = %g is not valid",
                        path, s->seconds, s->best_val);
    return BL_OK;
}

/* ---- q(redshift) statistics, as the seed notebook prints them ---------------------------- */

static void bl_print_redshift_stats(const bl_settings *s, bl_trainer *tr, bl_batch_source src)
{
    int idx = bl_vardist_spec_index(s->spec, "redshift");
    /* one loc and one scale per tile: a kind with them and a scalar value (normal by default) */
    if (idx < 0 || !src.get || !s->spec->factors[idx].kind->loc_scale ||
        s->spec->factors[idx].kind->value_dim != 1)
        return;
    bl_ctx *ctx = tr->ctx;
    bl_tensor *x;
    bl_tile_catalog *truth;
    if (src.get(src.user, bl_ctx_arena(ctx), 0, &x, &truth) != BL_OK) {
        fprintf(stderr, "bliss train: warning: no batch for the q(redshift) statistics: %s\n",
                bl_error_message());
        bl_ctx_reset(ctx);
        return;
    }
    int was_training = tr->enc->training, g = bl_set_grad_enabled(ctx, 0);
    bl_encoder_set_training(tr->enc, 0);
    bl_encoder_pred pred;
    bl_encoder_infer_marginal(tr->enc, ctx, x, &pred);
    const bl_tensor *raw = pred.marginal->raw[idx]; /* (B, ht, wt, dim) */
    /* loc and scale as the factor's kind maps them (dists/kind.h; normal: mean and
     * sd = exp(clamp(logvar, -20, 20) / 2)) */
    const bl_factor *f = &s->spec->factors[idx];
    const int dim = f->kind->dim;
    double sum[2][2] = {{0}}, sq[2][2] = {{0}};
    int64_t n[2] = {0, 0};
    int64_t tiles = raw->numel / dim;
    for (int64_t t = 0; t < tiles; t++) {
        double loc, scale;
        if (bl_dist_kind_loc_scale(f->kind, f->opts, raw->data + t * dim, &loc, &scale)) break;
        int on = truth->n_sources[t] > 0; /* truth is (B, ht, wt) like raw */
        for (int k = 0; k <= on; k++) {
            sum[k][0] += loc;
            sum[k][1] += scale;
            sq[k][0] += loc * loc;
            sq[k][1] += scale * scale;
            n[k]++;
        }
    }
    static const char *const what[2] = {"tiles", "tiles with a source"};
    for (int k = 0; k < 2; k++) {
        if (n[k] == 0) continue;
        double ml = sum[k][0] / n[k], ms = sum[k][1] / n[k];
        printf("q(redshift) over %lld %s: loc mean %.6g sd %.6g, scale mean %.6g sd %.6g\n",
               (long long)n[k], what[k], ml, sqrt(fmax(sq[k][0] / n[k] - ml * ml, 0)), ms,
               sqrt(fmax(sq[k][1] / n[k] - ms * ms, 0)));
    }
    bl_encoder_set_training(tr->enc, was_training);
    bl_set_grad_enabled(ctx, g);
    bl_tile_catalog_free(truth);
    bl_ctx_reset(ctx);
}

/* ---- the command ------------------------------------------------------------------------ */

/* --out, --data and --max-steps into the config that the run records (train.output_dir,
 * train.data, train.max_steps), so that `bliss train -c config.cfg` repeats the run. */
static bl_status bl_cli_record_options(const bl_cli *cli, bl_settings *s)
{
    const char *keys[3] = {"train.output_dir", "train.data", "train.max_steps"};
    char steps[32];
    snprintf(steps, sizeof steps, "%lld", (long long)cli->max_steps);
    const char *values[3] = {cli->out, cli->data, cli->max_steps ? steps : NULL};
    for (int i = 0; i < 3; i++) {
        if (!values[i]) continue;
        size_t n = strlen(keys[i]) + strlen(values[i]) + 8;
        char *a = bl_malloc(n);
        snprintf(a, n, i < 2 ? "%s=\"%s\"" : "%s=%s", keys[i], values[i]); /* --set strips the quotes */
        bl_status st = bl_config_set(s->cfg, a);
        free(a);
        if (st) return st;
    }
    return BL_OK;
}

int bl_cmd_train(bl_cli *cli)
{
    bl_settings *s = NULL;
    bl_cli_data *data = NULL;
    bl_encoder *enc = NULL;
    bl_trainer *tr = NULL;
    bl_curve *curve = NULL;
    char *csv = NULL, *config_text = NULL;
    int status = BL_EXIT_ERROR;
    if (bl_cli_settings(cli, &s)) return bl_cli_fail(cli);
    const bl_train_settings *t = &s->train;
    const char *out_dir = cli->out ? cli->out : t->output_dir;
    const char *source = cli->data ? cli->data : t->data;
    if (bl_cli_mkdirs(out_dir) ||
        bl_cli_data_open_slice(&data, s, source, bl_dist_rank(), bl_dist_size()))
        goto done;
    /* the recorded config is the run's: with the command line's output, data and step limit */
    if (bl_cli_record_options(cli, s)) goto done;
    config_text = bl_config_to_string(s->cfg);
    if (bl_dist_rank() == 0 && bl_cli_write_run_config(cli, out_dir, s->path, config_text, t->seed)) goto done;

    enc = bl_encoder_alloc(s->spec, &s->arch, &s->encoder, (uint64_t)t->seed);
    bl_ddp *ddp = bl_ddp_alloc(enc->params, t->sync_batchnorm);
    bl_trainer_opts topts = bl_trainer_opts_default();
    topts.after_backward = ddp ? bl_ddp_after_backward : NULL;
    topts.after_backward_user = ddp;
    topts.adam = t->adam;
    topts.fixed_batch = t->fixed_batch;
    bl_batch_source train_src = bl_cli_data_source(data, BL_DATA_TRAIN, 0);
    bl_batch_source val_src = t->val_batches > 0 ? bl_cli_data_source(data, BL_DATA_VAL, t->val_batches)
                                                 : (bl_batch_source){0};
    tr = bl_trainer_alloc(enc, &topts, train_src, val_src);
    if (ddp) ddp->bucket = (int64_t)ceil(t->ddp_bucket_mb * 1e6 / sizeof(bl_real));
    if (ddp && t->ddp_overlap) bl_ddp_overlap(ddp, tr->ctx);

    bl_train_state state;
    bl_train_state_init(&state);
    size_t n = strlen(out_dir) + 16;
    csv = bl_malloc(n);
    snprintf(csv, n, "%s/curve.csv", out_dir);
    if (cli->resume) {
        bl_safetensors *meta = NULL;
        if (bl_trainer_load(tr, cli->resume, &meta)) goto done;
        bl_status st = bl_state_from_meta(meta, cli->resume, &state);
        bl_safetensors_free(meta);
        if (st) goto done;
        if (tr->step != state.step) {
            bl_error(BL_ERR_FORMAT, "%s: trainer.step %lld and train.step %lld disagree", cli->resume,
                     (long long)tr->step, (long long)state.step);
            goto done;
        }
        struct stat sb;
        if (stat(csv, &sb) == 0) {
            if (bl_curve_read_csv(&curve, csv)) goto done;
        } else {
            fprintf(stderr, "bliss train: note: no %s to continue; the curve starts at step %lld\n",
                    csv, (long long)state.step);
        }
        printf("resuming from %s: step %lld, epoch %lld, best val %.6g\n", cli->resume,
               (long long)state.step, (long long)state.epoch, state.best_val);
    }
    if (!curve) curve = bl_curve_alloc();

    bl_train_ctx hctx = {.tr = tr, .config = s->path, .P = s->spec->dim, .config_text = config_text,
                         .seed = t->seed, .ddp = ddp};
    bl_train_hooks hooks = {.ctx = &hctx, .step = bl_hook_step,
                            .validate = t->val_batches > 0 ? bl_hook_validate : NULL,
                            .save = bl_hook_save};
    char title[256];
    snprintf(title, sizeof title, "bliss train %s", s->path);
    bl_train_plan plan = {
        .steps_per_epoch = t->steps_per_epoch, .max_epochs = t->max_epochs,
        .min_epochs = t->min_epochs, .patience = t->patience,
        .max_steps = cli->max_steps ? cli->max_steps : t->max_steps,
        .checkpoint_every = t->checkpoint_every, .print_every = t->print_every,
        .out_dir = out_dir, .plot_width = (int)t->plot_width, .plot_height = (int)t->plot_height,
        .title = title, .log = stdout, .progress = BL_PROGRESS_AUTO, .stop = &bl_stop_flag,
        .follower = bl_dist_rank() != 0,
    };
    plan.schedule.base_lr = t->adam.lr;
    plan.schedule.gamma = t->gamma;
    plan.schedule.n_milestones = t->n_milestones;
    for (int i = 0; i < t->n_milestones; i++) plan.schedule.milestones[i] = (int)t->milestones[i];

    printf("training %s: P = %d, %lld trainable parameters, batch %lld, %s, output %s\n", s->path,
           s->spec->dim, (long long)bl_params_count_trainable(enc->params),
           (long long)s->batch_size, source, out_dir);
    printf("run: bliss-c %s, seed %lld, threads %d, conv engine %s; resolved config in %s/config.cfg\n",
           bl_cli_version(), (long long)t->seed, bl_cli_threads(), bl_cli_conv_engine(), out_dir);
    if (bl_dist_size() > 1)
        printf("data-parallel: %d processes x %lld images, BatchNorm statistics %s, all-reduce %s\n",
               bl_dist_size(), (long long)(s->batch_size / bl_dist_size()),
               t->sync_batchnorm ? "of the global batch (sync_batchnorm)" : "per process",
               t->ddp_overlap ? "overlapped with backward" : "after backward");
    fflush(stdout);
    struct sigaction old_int, old_term, old_usr1;
    bl_install_signals(&old_int, &old_term, &old_usr1);
    bl_train_end end;
    bl_status st = bl_train_run(&plan, &hooks, &state, curve, &end);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGUSR1, &old_usr1, NULL);
    if (st) goto done;
    printf("stopped: %s after %lld steps (%lld epochs, %.1f s)", bl_train_end_name(end),
           (long long)state.step, (long long)state.epoch, state.seconds);
    if (isfinite(state.best_val))
        printf("; best val loss %.6g at epoch %lld", state.best_val, (long long)state.best_epoch);
    printf("\nwrote %s/last.safetensors%s, %s, %s/curve.png\n", out_dir,
           isfinite(state.best_val) ? ", best.safetensors" : "", csv, out_dir);
    if (end == BL_TRAIN_INTERRUPTED) {
        printf("interrupted by signal %d; continue with --resume %s/last.safetensors\n",
               (int)bl_stop_signal, out_dir);
        status = 128 + (int)bl_stop_signal;
        goto done;
    }
    bl_print_redshift_stats(s, tr, t->fixed_batch || t->val_batches == 0 ? train_src : val_src);
    status = 0;
done:
    if (status == BL_EXIT_ERROR) bl_cli_fail(cli);
    free(csv);
    free(config_text);
    bl_curve_free(curve);
    if (tr) {
        bl_ddp_free(tr->opts.after_backward_user);
        bl_trainer_free(tr);
    }
    if (enc) bl_encoder_free(enc);
    bl_cli_data_free(data);
    bl_settings_free(s);
    return status;
}
