#include "models/checkpoint.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef BL_REAL_DOUBLE
#define BL_CKPT_DTYPE BL_DTYPE_F64
#else
#define BL_CKPT_DTYPE BL_DTYPE_F32
#endif

#define BL_OPT_PREFIX "optimizer."
#define BL_NAME_MAX 320

int bl_checkpoint_is_integer(const char *name)
{
    static const char suffix[] = ".num_batches_tracked";
    size_t n = strlen(name), k = sizeof suffix - 1;
    return n >= k && strcmp(name + n - k, suffix) == 0;
}

static void bl_moment_name(char *buf, size_t n, const char *param, const char *which)
{
    int k = snprintf(buf, n, BL_OPT_PREFIX "state.%s.%s", param, which);
    BL_ASSERT(k > 0 && (size_t)k < n, "checkpoint: name too long for '%s'", param);
}

/* add failures here are programmer errors: names come from a bl_params (unique, non-empty) */
static void bl_pack_add(bl_safetensors *st, const char *name, int ndim, const int64_t *shape,
                        const bl_real *data)
{
    bl_tensor view = {0};
    bl_tensor_set_shape(&view, ndim, shape);
    view.data = (bl_real *)data;
    bl_status s = bl_safetensors_add_tensor(st, name, &view, BL_CKPT_DTYPE);
    BL_ASSERT(s == BL_OK, "checkpoint: %s", bl_error_message());
}

bl_safetensors *bl_checkpoint_pack(const bl_params *params, const bl_adam *adam)
{
    bl_safetensors *st = bl_safetensors_alloc();
    for (int i = 0; i < params->n; i++) {
        const bl_tensor *t = params->t[i];
        if (bl_checkpoint_is_integer(t->name)) {
            BL_ASSERT(t->numel == 1, "checkpoint: integer buffer '%s' must be a scalar", t->name);
            const int64_t v = (int64_t)llround((double)t->data[0]);
            bl_status s = bl_safetensors_add(st, t->name, BL_DTYPE_I64, t->ndim, t->shape, &v);
            BL_ASSERT(s == BL_OK, "checkpoint: %s", bl_error_message());
        } else {
            bl_pack_add(st, t->name, t->ndim, t->shape, t->data);
        }
    }
    bl_safetensors_set_meta(st, "format", BL_CHECKPOINT_FORMAT);
    bl_safetensors_set_meta(st, "version", "1");
    if (adam) {
        BL_ASSERT(adam->params == params, "bl_checkpoint_pack: the optimiser belongs to another params set");
        char name[BL_NAME_MAX], v[64];
        for (int i = 0; i < params->n; i++) {
            const bl_tensor *t = params->t[i];
            if (!t->requires_grad) continue;
            bl_moment_name(name, sizeof name, t->name, "exp_avg");
            bl_pack_add(st, name, t->ndim, t->shape, adam->m[i]);
            bl_moment_name(name, sizeof name, t->name, "exp_avg_sq");
            bl_pack_add(st, name, t->ndim, t->shape, adam->v[i]);
            bl_moment_name(name, sizeof name, t->name, "step");
            bl_status s = bl_safetensors_add(st, name, BL_DTYPE_I64, 0, NULL, &adam->steps[i]);
            BL_ASSERT(s == BL_OK, "checkpoint: %s", bl_error_message());
        }
        snprintf(v, sizeof v, "%lld", (long long)adam->step);
        bl_safetensors_set_meta(st, "adam.step", v);
        const struct { const char *k; double x; } hp[] = {
            {"adam.lr", adam->opts.lr}, {"adam.beta1", adam->opts.beta1},
            {"adam.beta2", adam->opts.beta2}, {"adam.eps", adam->opts.eps},
            {"adam.weight_decay", adam->opts.weight_decay}};
        for (size_t k = 0; k < sizeof hp / sizeof hp[0]; k++) {
            snprintf(v, sizeof v, "%.17g", hp[k].x);
            bl_safetensors_set_meta(st, hp[k].k, v);
        }
    }
    return st;
}

/* ---- loading ---- */

typedef struct bl_mismatch_log {
    char text[4096];
    size_t len;
    int missing, unexpected, shape;
} bl_mismatch_log;

static void bl_log_add(bl_mismatch_log *log, int *counter, const char *fmt, const char *name,
                       const char *a, const char *b)
{
    if (++*counter > 5) return; /* the first few of each kind; totals at the end */
    if (log->len < sizeof log->text)
        log->len += (size_t)snprintf(log->text + log->len, sizeof log->text - log->len, fmt, name, a, b);
    if (log->len > sizeof log->text) log->len = sizeof log->text;
}

static void bl_st_shape_str(const bl_st_tensor *t, char *buf, size_t n)
{
    size_t k = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < t->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, ")");
}

static int bl_st_same_shape(const bl_st_tensor *s, const bl_tensor *t)
{
    if (s->ndim != t->ndim) return 0;
    for (int d = 0; d < t->ndim; d++)
        if (s->shape[d] != t->shape[d]) return 0;
    return 1;
}

static void bl_check_entry(bl_mismatch_log *log, const bl_safetensors *st, const char *name,
                           const bl_tensor *t)
{
    char a[96], b[96];
    const bl_st_tensor *s = bl_safetensors_find(st, name);
    if (!s) {
        bl_log_add(log, &log->missing, "\n  missing: %s %s%s", name, bl_shape_str(t, a, sizeof a), "");
    } else if (!bl_st_same_shape(s, t)) {
        bl_st_shape_str(s, a, sizeof a);
        bl_log_add(log, &log->shape, "\n  shape: %s is %s in the file, %s in the model", name, a,
                   bl_shape_str(t, b, sizeof b));
    }
}

/* entry `name` of st into dst (same numel), converting the dtype */
static void bl_copy_entry(const bl_safetensors *st, const char *file, const char *name, bl_tensor *dst)
{
    bl_status s = bl_safetensors_read_into(st, file, name, dst);
    BL_ASSERT(s == BL_OK, "checkpoint: '%s' passed the checks but could not be read: %s", name,
              bl_error_message());
}

/* 1 when the file has per-parameter Adam step counts (optimizer.state.<name>.step) */
static int bl_has_step_entries(const bl_safetensors *st)
{
    static const char suffix[] = ".step";
    const size_t k = sizeof suffix - 1;
    for (int j = 0; j < st->n; j++) {
        const char *n = st->tensors[j].name;
        const size_t len = strlen(n);
        if (strncmp(n, BL_OPT_PREFIX "state.", sizeof BL_OPT_PREFIX + 5) == 0 && len > k &&
            strcmp(n + len - k, suffix) == 0)
            return 1;
    }
    return 0;
}

/* Parameter `param`'s step count: an I64 scalar in [0, total]; into *out when != NULL. */
static bl_status bl_read_step(const bl_safetensors *st, const char *where, const char *param,
                              int64_t total, int64_t *out)
{
    char name[BL_NAME_MAX];
    bl_moment_name(name, sizeof name, param, "step");
    const bl_st_tensor *e = bl_safetensors_find(st, name);
    if (!e)
        return bl_error(BL_ERR_FORMAT, "%s: missing %s (the other parameters have Adam step counts)",
                        where, name);
    if (e->dtype != BL_DTYPE_I64 || e->numel != 1)
        return bl_error(BL_ERR_FORMAT, "%s: %s must be an I64 scalar, got %s with %lld elements",
                        where, name, bl_dtype_name(e->dtype), (long long)e->numel);
    int64_t v;
    memcpy(&v, e->data, sizeof v);
    if (v < 0 || v > total)
        return bl_error(BL_ERR_FORMAT, "%s: %s = %lld is not a step count in [0, adam.step = %lld]",
                        where, name, (long long)v, (long long)total);
    if (out) *out = v;
    return BL_OK;
}

static int bl_all_zero(const bl_real *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        if (x[i] != 0) return 0;
    return 1;
}

/* entry `name` must hold floats (F32/F64) that stay finite as bl_real: an integer tensor or a
 * NaN weight would load and predict nonsense */
static bl_status bl_check_values(const bl_safetensors *st, const char *where, const char *name)
{
    const bl_st_tensor *s = bl_safetensors_find(st, name);
    /* a counter (I64 as PyTorch writes it) may have any dtype but must be a count */
    const int counter = bl_checkpoint_is_integer(name);
    if (!counter && s->dtype != BL_DTYPE_F32 && s->dtype != BL_DTYPE_F64)
        return bl_error(BL_ERR_FORMAT, "%s: tensor '%s' has dtype %s; weights must be F32 or F64",
                        where, name, bl_dtype_name(s->dtype));
    for (int64_t i = 0; i < s->numel; i++) {
        double v = s->dtype == BL_DTYPE_F32 ? ((const float *)s->data)[i]
                 : s->dtype == BL_DTYPE_F64 ? ((const double *)s->data)[i]
                 : s->dtype == BL_DTYPE_I32 ? (double)((const int32_t *)s->data)[i]
                                            : (double)((const int64_t *)s->data)[i];
        if (!isfinite((bl_real)v) || (counter && !(v >= 0)))
            return bl_error(BL_ERR_NAN, "%s: tensor '%s' element %lld is %g (not a finite %s)",
                            where, name, (long long)i, v, counter ? "count" : "weight");
    }
    return BL_OK;
}

bl_status bl_checkpoint_unpack(const bl_safetensors *st, const char *file, bl_params *params,
                               bl_adam *adam)
{
    const char *where = file ? file : "checkpoint";
    bl_mismatch_log log = {.len = 0};
    char name[BL_NAME_MAX];
    for (int i = 0; i < params->n; i++) bl_check_entry(&log, st, params->t[i]->name, params->t[i]);
    int has_opt = 0;
    for (int j = 0; j < st->n; j++) {
        const char *n = st->tensors[j].name;
        if (strncmp(n, BL_OPT_PREFIX, sizeof BL_OPT_PREFIX - 1) == 0) {
            has_opt = 1;
            continue;
        }
        if (!bl_params_find(params, n)) {
            char a[96];
            bl_st_shape_str(&st->tensors[j], a, sizeof a);
            bl_log_add(&log, &log.unexpected, "\n  unexpected: %s %s%s", n, a, "");
        }
    }
    if (adam) {
        BL_ASSERT(adam->params == params, "bl_checkpoint_unpack: the optimiser belongs to another params set");
        if (!has_opt || !bl_safetensors_meta(st, "adam.step"))
            return bl_error(BL_ERR_FORMAT,
                            "%s: no optimizer state (a weights-only checkpoint): it can initialise "
                            "a model but not resume training", where);
        for (int i = 0; i < params->n; i++) {
            const bl_tensor *t = params->t[i];
            if (!t->requires_grad) continue;
            bl_moment_name(name, sizeof name, t->name, "exp_avg");
            bl_check_entry(&log, st, name, t);
            bl_moment_name(name, sizeof name, t->name, "exp_avg_sq");
            bl_check_entry(&log, st, name, t);
        }
    }
    const int per_param_steps = adam && bl_has_step_entries(st);
    if (log.missing || log.unexpected || log.shape)
        return bl_error(BL_ERR_FORMAT,
                        "%s does not match the model: %d missing, %d unexpected, %d of another "
                        "shape (first ones listed)%.*s", where, log.missing, log.unexpected,
                        log.shape, (int)log.len, log.text);

    int64_t step = 0;
    if (adam) {
        const char *s = bl_safetensors_meta(st, "adam.step");
        char *end;
        step = strtoll(s, &end, 10);
        if (*s == 0 || *end != 0 || step < 0)
            return bl_error(BL_ERR_FORMAT, "%s: metadata adam.step = '%s' is not a step count", where, s);
        for (int i = 0; per_param_steps && i < params->n; i++) {
            if (!params->t[i]->requires_grad) continue;
            bl_status e = bl_read_step(st, where, params->t[i]->name, step, NULL);
            if (e) return e;
        }
    }
    bl_status vs = BL_OK;
    for (int i = 0; i < params->n && !vs; i++) {
        const bl_tensor *t = params->t[i];
        vs = bl_check_values(st, where, t->name);
        if (adam && t->requires_grad && !vs) {
            bl_moment_name(name, sizeof name, t->name, "exp_avg");
            vs = bl_check_values(st, where, name);
            bl_moment_name(name, sizeof name, t->name, "exp_avg_sq");
            if (!vs) vs = bl_check_values(st, where, name);
        }
    }
    if (vs) return vs;
    /* everything checked: now copy */
    for (int i = 0; i < params->n; i++) bl_copy_entry(st, where, params->t[i]->name, params->t[i]);
    if (adam) {
        for (int i = 0; i < params->n; i++) {
            const bl_tensor *t = params->t[i];
            if (!t->requires_grad) continue;
            bl_tensor m = *t, v = *t;
            m.data = adam->m[i];
            v.data = adam->v[i];
            m.persistent = v.persistent = 0;
            bl_moment_name(name, sizeof name, t->name, "exp_avg");
            bl_copy_entry(st, where, name, &m);
            bl_moment_name(name, sizeof name, t->name, "exp_avg_sq");
            bl_copy_entry(st, where, name, &v);
            if (per_param_steps)
                bl_read_step(st, where, t->name, step, &adam->steps[i]);
            else /* an older file: moments that are all zero never saw a non-zero gradient */
                adam->steps[i] = bl_all_zero(adam->m[i], t->numel) && bl_all_zero(adam->v[i], t->numel)
                                     ? 0 : step;
        }
        adam->step = step;
    }
    return BL_OK;
}

bl_status bl_checkpoint_save(const char *path, const bl_params *params, const bl_adam *adam,
                             int n_meta, const char *const *keys, const char *const *values)
{
    bl_safetensors *st = bl_checkpoint_pack(params, adam);
    for (int i = 0; i < n_meta; i++) bl_safetensors_set_meta(st, keys[i], values[i]);
    bl_status s = bl_safetensors_write(st, path);
    bl_safetensors_free(st);
    return s;
}

bl_status bl_checkpoint_load(const char *path, bl_params *params, bl_adam *adam,
                             bl_safetensors **meta)
{
    if (meta) *meta = NULL;
    bl_safetensors *st;
    bl_status s = bl_safetensors_read(&st, path);
    if (s) return s;
    s = bl_checkpoint_unpack(st, path, params, adam);
    if (s == BL_OK && meta)
        *meta = st;
    else
        bl_safetensors_free(st);
    return s;
}
