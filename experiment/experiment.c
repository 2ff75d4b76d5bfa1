#include "experiment/experiment.h"

#include <errno.h>
#include <libconfig.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "models/checkpoint.h"
#include "models/evaluate.h"

bl_experiment_opts bl_experiment_opts_default(void)
{
    return (bl_experiment_opts){.rank = 0, .n_ranks = 1, .progress = BL_PROGRESS_AUTO};
}

static char *bl_path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = bl_malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* out_dir, data and max_steps into the config the run records (train.output_dir, train.data,
 * train.max_steps), so that the recorded config repeats the run */
static bl_status bl_record_options(bl_settings *s, const bl_experiment_opts *o)
{
    const char *keys[3] = {"train.output_dir", "train.data", "train.max_steps"};
    char steps[32];
    snprintf(steps, sizeof steps, "%lld", (long long)o->max_steps);
    const char *values[3] = {o->out_dir, o->data, o->max_steps ? steps : NULL};
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

bl_status bl_experiment_from_settings(bl_experiment **out, bl_settings *s, const bl_experiment_opts *opts)
{
    *out = NULL;
    bl_experiment *ex = bl_calloc(1, sizeof *ex);
    ex->s = s;
    ex->opts = opts ? *opts : bl_experiment_opts_default();
    if (ex->opts.n_ranks < 1) ex->opts.n_ranks = 1;
    const bl_train_settings *t = &s->train;
    ex->out_dir = bl_strdup(ex->opts.out_dir ? ex->opts.out_dir : t->output_dir);
    char *source = bl_strdup(ex->opts.data ? ex->opts.data : t->data);
    bl_status st = BL_OK;
    if (!*ex->out_dir)
        st = bl_error(BL_ERR_ARG, "the output directory is an empty string");
    else if (ex->opts.rank == 0 && mkdir(ex->out_dir, 0777) != 0 && errno != EEXIST)
        st = bl_error(BL_ERR_IO, "%s: cannot create directory: %s", ex->out_dir, strerror(errno));
    if (!st) st = bl_cli_data_open_slice(&ex->data, s, source, ex->opts.rank, ex->opts.n_ranks);
    if (!st) st = bl_record_options(s, &ex->opts);
    if (st) {
        free(source);
        bl_experiment_free(ex);
        return st;
    }
    /* the recorded strings replaced the config's: the settings point at the experiment's copies */
    ex->data_name = source;
    s->train.output_dir = ex->out_dir;
    s->train.data = ex->data_name;
    if (ex->opts.max_steps) s->train.max_steps = ex->opts.max_steps;
    ex->config_text = bl_config_to_string(s->cfg);
    ex->enc = bl_encoder_alloc(s->spec, &s->arch, &s->encoder, (uint64_t)t->seed);
    bl_trainer_opts topts = bl_trainer_opts_default();
    topts.adam = t->adam;
    topts.fixed_batch = t->fixed_batch;
    ex->train = bl_cli_data_source(ex->data, BL_DATA_TRAIN, 0);
    ex->val = t->val_batches > 0 ? bl_cli_data_source(ex->data, BL_DATA_VAL, t->val_batches) : (bl_batch_source){0};
    ex->tr = bl_trainer_alloc(ex->enc, &topts, ex->train, ex->val);
    bl_train_state_init(&ex->state);
    ex->curve = bl_curve_alloc();
    if (t->val_batches > 0 && t->val_metrics) {
        ex->metric_names = bl_val_metrics_names(s->spec, &ex->n_metric_names);
        const char **cols = bl_malloc((size_t)(ex->n_metric_names + 2) * sizeof *cols);
        cols[0] = "step";
        cols[1] = "epoch";
        for (int i = 0; i < ex->n_metric_names; i++) cols[i + 2] = ex->metric_names[i];
        ex->metrics = bl_table_alloc(ex->n_metric_names + 2, cols);
        free(cols);
    }
    *out = ex;
    return BL_OK;
}

bl_status bl_experiment_load(bl_experiment **out, const char *config, int n_sets,
                             const char *const *sets, const bl_experiment_opts *opts)
{
    *out = NULL;
    bl_settings *s;
    bl_status st = bl_settings_load(&s, config, n_sets, sets, 0, 0);
    if (st) return st;
    if ((st = bl_settings_check_memory(s))) {
        bl_settings_free(s);
        return st;
    }
    return bl_experiment_from_settings(out, s, opts);
}

void bl_experiment_free(bl_experiment *ex)
{
    if (!ex) return;
    bl_trainer_free(ex->tr);
    if (ex->enc) bl_encoder_free(ex->enc);
    bl_cli_data_free(ex->data);
    bl_curve_free(ex->curve);
    bl_table_free(ex->metrics);
    bl_val_metrics_names_free(ex->metric_names, ex->n_metric_names);
    free(ex->out_dir);
    free(ex->data_name);
    free(ex->config_text);
    bl_settings_free(ex->s);
    free(ex);
}

bl_status bl_experiment_init_weights(bl_experiment *ex, const char *file)
{
    return bl_checkpoint_load(file, ex->enc->params, NULL, NULL);
}

/* ---- hooks of the training loop ------------------------------------------------------------ */

static bl_status bl_hook_step(void *ctx, int64_t step, double lr, double *loss)
{
    bl_experiment *ex = ctx;
    /* the trainer keeps the same count and picks batch `step` itself */
    bl_status st = bl_trainer_step(ex->tr, lr, loss);
    if (!st && ex->parallel.after_step) st = ex->parallel.after_step(ex->parallel.user, step, loss);
    return st;
}

static bl_status bl_hook_validate(void *ctx, double *val)
{
    bl_experiment *ex = ctx;
    bl_status st = bl_trainer_validate(ex->tr, val);
    if (!st && ex->parallel.mean) ex->parallel.mean(ex->parallel.user, val, 1);
    return st;
}

/* the per-factor validation metrics (models/evaluate.h); under data-parallel training each
 * process scores its slice and the values are averaged */
static bl_status bl_hook_val_metrics(void *ctx, double *values)
{
    bl_experiment *ex = ctx;
    bl_status st = bl_encoder_val_metrics(ex->enc, ex->tr->ctx, ex->val, &ex->s->metrics,
                                          (uint64_t)ex->s->train.seed, values);
    if (!st && ex->parallel.mean) ex->parallel.mean(ex->parallel.user, values, ex->n_metric_names);
    return st;
}

#define BL_N_STATE_META 8
static const char *const bl_state_keys[BL_N_STATE_META] = {
    "train.step", "train.epoch", "train.best_val", "train.best_epoch", "train.bad_epochs",
    "train.seconds", "train.config", "train.P",
};

static bl_status bl_hook_save(void *ctx, const char *path, const bl_train_state *s)
{
    bl_experiment *ex = ctx;
    if (ex->parallel.before_save) {
        bl_status cst = ex->parallel.before_save(ex->parallel.user, s->step);
        if (cst) return cst;
    }
    if (ex->opts.rank != 0) return BL_OK; /* rank 0 writes the files */
    char v[BL_N_STATE_META][512];
    snprintf(v[0], sizeof v[0], "%lld", (long long)s->step);
    snprintf(v[1], sizeof v[1], "%lld", (long long)s->epoch);
    snprintf(v[2], sizeof v[2], "%.17g", s->best_val);
    snprintf(v[3], sizeof v[3], "%lld", (long long)s->best_epoch);
    snprintf(v[4], sizeof v[4], "%lld", (long long)s->bad_epochs);
    snprintf(v[5], sizeof v[5], "%.17g", s->seconds);
    snprintf(v[6], sizeof v[6], "%s", ex->s->path);
    snprintf(v[7], sizeof v[7], "%d", ex->s->spec->dim);
    /* Lightning's counters (tools/pt_convert.py --lightning): `epoch` is the index of the epoch
     * the checkpoint was taken in (the one just completed at an epoch end), `global_step` the
     * optimizer steps; the epoch-interval MultiStepLR has stepped once per epoch before it */
    const bl_train_settings *t = &ex->s->train;
    const int at_end = s->epoch > 0 && s->step == s->epoch * t->steps_per_epoch;
    char seed[32], epoch[32], ms[BL_MAX_MILESTONES * 24] = "", gamma[32], lr0[32];
    snprintf(seed, sizeof seed, "%lld", (long long)t->seed);
    snprintf(epoch, sizeof epoch, "%lld", (long long)(at_end ? s->epoch - 1 : s->epoch));
    for (int i = 0; i < t->n_milestones; i++)
        snprintf(ms + strlen(ms), sizeof ms - strlen(ms), i ? ",%lld" : "%lld", (long long)t->milestones[i]);
    snprintf(gamma, sizeof gamma, "%.17g", t->gamma);
    snprintf(lr0, sizeof lr0, "%.17g", t->adam.lr);
    enum { N_RUN = 8 };
    const char *run_keys[N_RUN] = {BL_META_CONFIG, BL_META_SEED, "epoch", "global_step", "scheduler.milestones",
                                   "scheduler.gamma", "scheduler.last_epoch", "adam.initial_lr"};
    const char *run_values[N_RUN] = {ex->config_text, seed, epoch, v[0], ms, gamma, epoch, lr0};
    const int n = BL_N_STATE_META + N_RUN + ex->opts.n_meta;
    const char **keys = bl_malloc((size_t)n * sizeof *keys), **values = bl_malloc((size_t)n * sizeof *values);
    int k = 0;
    for (int i = 0; i < BL_N_STATE_META; i++, k++) keys[k] = bl_state_keys[i], values[k] = v[i];
    for (int i = 0; i < N_RUN; i++, k++) keys[k] = run_keys[i], values[k] = run_values[i];
    for (int i = 0; i < ex->opts.n_meta; i++, k++) keys[k] = ex->opts.meta_keys[i], values[k] = ex->opts.meta_values[i];
    bl_status st = bl_trainer_save(ex->tr, path, n, keys, values);
    free(keys);
    free(values);
    return st;
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

bl_status bl_experiment_resume(bl_experiment *ex, const char *checkpoint, FILE *warn)
{
    /* the recorded config first: a changed architecture is named by its key, before the
     * loader lists the tensors whose shapes differ */
    bl_safetensors *meta = NULL;
    bl_status st = bl_safetensors_read(&meta, checkpoint);
    if (st) return st;
    const char *recorded = bl_safetensors_meta(meta, BL_META_CONFIG);
    st = recorded ? bl_experiment_compare_configs(checkpoint, recorded, ex->config_text, warn) : BL_OK;
    bl_safetensors_free(meta);
    meta = NULL;
    if (st || (st = bl_trainer_load(ex->tr, checkpoint, &meta))) return st;
    st = bl_state_from_meta(meta, checkpoint, &ex->state);
    bl_safetensors_free(meta);
    if (st) return st;
    if (ex->tr->step != ex->state.step)
        return bl_error(BL_ERR_FORMAT, "%s: trainer.step %lld and train.step %lld disagree", checkpoint,
                        (long long)ex->tr->step, (long long)ex->state.step);
    char *csv = bl_path_join(ex->out_dir, "curve.csv"), *mcsv = bl_path_join(ex->out_dir, "metrics.csv");
    struct stat sb;
    if (stat(csv, &sb) == 0) {
        bl_curve *c;
        if (!(st = bl_curve_read_csv(&c, csv))) {
            bl_curve_free(ex->curve);
            ex->curve = c;
        }
    } else if (warn) {
        fprintf(warn, "note: no %s to continue; the curve starts at step %lld\n", csv, (long long)ex->state.step);
    }
    if (!st && ex->metrics && stat(mcsv, &sb) == 0) {
        bl_table *t;
        if (!(st = bl_table_read_csv(&t, mcsv))) {
            int same = t->n_cols == ex->n_metric_names + 2;
            for (int i = 0; same && i < ex->n_metric_names; i++) same = strcmp(t->cols[i + 2], ex->metric_names[i]) == 0;
            if (!same) {
                bl_table_free(t);
                st = bl_error(BL_ERR_FORMAT, "%s: its columns are not the metrics of this config's factors; "
                              "move it away to start a new one", mcsv);
            } else {
                bl_table_free(ex->metrics);
                ex->metrics = t;
            }
        }
    }
    free(csv);
    free(mcsv);
    return st;
}

bl_status bl_experiment_run(bl_experiment *ex, bl_train_end *end)
{
    const bl_train_settings *t = &ex->s->train;
    bl_train_hooks hooks = {.ctx = ex, .step = bl_hook_step,
                            .validate = t->val_batches > 0 ? bl_hook_validate : NULL,
                            .val_metrics = ex->metrics ? bl_hook_val_metrics : NULL,
                            .save = bl_hook_save};
    bl_train_plan plan = {
        .steps_per_epoch = t->steps_per_epoch, .max_epochs = t->max_epochs,
        .min_epochs = t->min_epochs, .patience = t->patience,
        .max_steps = ex->opts.max_steps ? ex->opts.max_steps : t->max_steps,
        .checkpoint_every = t->checkpoint_every, .print_every = t->print_every,
        .out_dir = ex->out_dir, .plot_width = (int)t->plot_width, .plot_height = (int)t->plot_height,
        .plot_log = t->plot_log,
        .title = ex->opts.title ? ex->opts.title : ex->s->path, .log = ex->opts.log ? ex->opts.log : stdout,
        .progress = ex->opts.progress, .stop = ex->opts.stop, .follower = ex->opts.rank != 0,
        .metrics = ex->metrics,
    };
    plan.schedule.base_lr = t->adam.lr;
    plan.schedule.gamma = t->gamma;
    plan.schedule.n_milestones = t->n_milestones;
    for (int i = 0; i < t->n_milestones; i++) plan.schedule.milestones[i] = (int)t->milestones[i];
    return bl_train_run(&plan, &hooks, &ex->state, ex->curve, end);
}

void bl_experiment_print_q_stats(bl_experiment *ex, FILE *f)
{
    const bl_train_settings *t = &ex->s->train;
    bl_batch_source src = t->fixed_batch || t->val_batches == 0 ? ex->train : ex->val;
    if (!src.get) return;
    bl_tensor *x;
    bl_tile_catalog *truth;
    if (src.get(src.user, bl_ctx_arena(ex->tr->ctx), 0, &x, &truth) != BL_OK) {
        fprintf(stderr, "warning: no batch for the q statistics: %s\n", bl_error_message());
        bl_ctx_reset(ex->tr->ctx);
        return;
    }
    bl_encoder_print_q_stats(f, ex->enc, ex->tr->ctx, x, truth);
    bl_tile_catalog_free(truth);
    bl_ctx_reset(ex->tr->ctx);
}

/* ---- comparing two resolved configs ------------------------------------------------------ */

typedef struct {
    int n, cap;
    char **key, **value;
} bl_flat;

static void bl_flat_add(bl_flat *f, const char *key, const char *value)
{
    if (f->n == f->cap) {
        f->cap = f->cap ? 2 * f->cap : 64;
        f->key = bl_realloc(f->key, (size_t)f->cap * sizeof *f->key);
        f->value = bl_realloc(f->value, (size_t)f->cap * sizeof *f->value);
    }
    f->key[f->n] = bl_strdup(key);
    f->value[f->n++] = bl_strdup(value);
}

static void bl_flat_free(bl_flat *f)
{
    for (int i = 0; i < f->n; i++) free(f->key[i]), free(f->value[i]);
    free(f->key);
    free(f->value);
}

/* every scalar of setting s under the key `prefix` (lists and arrays by index: a.[0].b) */
static void bl_flatten(bl_flat *f, const config_setting_t *s, const char *prefix)
{
    char key[512], v[512];
    const int type = config_setting_type(s);
    if (type == CONFIG_TYPE_GROUP || type == CONFIG_TYPE_LIST || type == CONFIG_TYPE_ARRAY) {
        const int n = config_setting_length(s);
        if (n == 0) bl_flat_add(f, prefix, type == CONFIG_TYPE_GROUP ? "{}" : "()");
        for (int i = 0; i < n; i++) {
            const config_setting_t *c = config_setting_get_elem(s, (unsigned)i);
            const char *name = config_setting_name(c);
            if (type == CONFIG_TYPE_GROUP)
                snprintf(key, sizeof key, "%s%s%s", prefix, prefix[0] ? "." : "", name);
            else
                snprintf(key, sizeof key, "%s.[%d]", prefix, i);
            bl_flatten(f, c, key);
        }
        return;
    }
    switch (type) {
    case CONFIG_TYPE_INT: snprintf(v, sizeof v, "%d", config_setting_get_int(s)); break;
    case CONFIG_TYPE_INT64: snprintf(v, sizeof v, "%lld", (long long)config_setting_get_int64(s)); break;
    case CONFIG_TYPE_FLOAT: snprintf(v, sizeof v, "%.17g", config_setting_get_float(s)); break;
    case CONFIG_TYPE_BOOL: snprintf(v, sizeof v, "%s", config_setting_get_bool(s) ? "true" : "false"); break;
    case CONFIG_TYPE_STRING: snprintf(v, sizeof v, "\"%s\"", config_setting_get_string(s)); break;
    default: snprintf(v, sizeof v, "?"); break;
    }
    bl_flat_add(f, prefix, v);
}

static bl_status bl_flatten_text(bl_flat *f, const char *text, const char *what)
{
    config_t c;
    config_init(&c);
    if (!config_read_string(&c, text)) {
        bl_status st = bl_error(BL_ERR_CONFIG, "%s: line %d: %s", what, config_error_line(&c), config_error_text(&c));
        config_destroy(&c);
        return st;
    }
    bl_flatten(f, config_root_setting(&c), "");
    config_destroy(&c);
    return BL_OK;
}

/* 1 for keys that shape the network, its factors or its loss */
static int bl_model_key(const char *key)
{
    static const char *const prefixes[] = {"encoder.", "factors", "survey.", "prior_fields", "prior.tile_slen"};
    for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++)
        if (strncmp(key, prefixes[i], strlen(prefixes[i])) == 0) return 1;
    return 0;
}

static const char *bl_flat_get(const bl_flat *f, const char *key)
{
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->key[i], key) == 0) return f->value[i];
    return NULL;
}

bl_status bl_experiment_compare_configs(const char *file, const char *recorded, const char *current, FILE *warn)
{
    bl_flat a = {0}, b = {0};
    char what[600];
    snprintf(what, sizeof what, "%s [its config]", file);
    bl_status st = bl_flatten_text(&a, recorded, what);
    if (!st) st = bl_flatten_text(&b, current, "the current config");
    for (int pass = 0; pass < 2 && !st; pass++) {
        const bl_flat *x = pass ? &b : &a, *y = pass ? &a : &b;
        for (int i = 0; i < x->n && !st; i++) {
            const char *other = bl_flat_get(y, x->key[i]);
            if (other && (pass || strcmp(other, x->value[i]) == 0)) continue; /* same, or seen */
            const char *was = pass ? "(absent)" : x->value[i], *now = pass ? x->value[i] : other ? other : "(absent)";
            if (bl_model_key(x->key[i]))
                st = bl_error(BL_ERR_CONFIG, "%s: the checkpoint was trained with %s = %s, the current config has %s: "
                              "this key shapes the model; resume with the checkpoint's config (%s records it) or "
                              "start a new run with --init", file, x->key[i], was, now, "bliss.config");
            else if (warn)
                fprintf(warn, "warning: %s differs from the checkpoint's config: %s, was %s\n",
                        x->key[i], now, was);
        }
    }
    bl_flat_free(&a);
    bl_flat_free(&b);
    return st;
}
