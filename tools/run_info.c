#include "tools/run_info.h"

#include <libconfig.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/io/atomic_file.h"
#include "models/checkpoint.h"
#include "autograd/conv_engine.h"
#include "tools/version.h" /* generated: BL_GIT_DESCRIBE */

const char *bl_cli_version(void)
{
    return BL_PROJECT_VERSION " (git " BL_GIT_DESCRIBE ")";
}

const char *bl_cli_conv_engine(void) { return bl_conv_engine_name(bl_conv_get_engine()); }

int bl_cli_threads(void) { return omp_get_max_threads(); }

bl_status bl_cli_write_run_config(const bl_cli *cli, const char *dir, const char *source,
                                  const char *text, int64_t seed)
{
    size_t n = strlen(dir) + 16;
    char *path = bl_malloc(n);
    snprintf(path, n, "%s/config.cfg", dir);
    bl_atomic_file af;
    bl_status st = bl_atomic_open(&af, path, "w");
    if (st == BL_OK) {
        FILE *f = af.f;
        fprintf(f, "# The resolved configuration of a `bliss %s` run (includes, overrides, extend and\n"
                   "# --set applied), written by bliss-c %s.\n# source: %s", cli->cmd, bl_cli_version(),
                source);
        for (int i = 0; i < cli->n_sets; i++) fprintf(f, " --set %s", cli->sets[i]);
        fprintf(f, "\n# seed %lld, threads %d, conv engine %s\n"
                   "# Training curves are identical only for the same thread count and engine.\n"
                   "# `bliss train -c config.cfg` repeats the run.\n\n%s",
                (long long)seed, bl_cli_threads(), bl_cli_conv_engine(), text);
        if (ferror(f)) {
            bl_atomic_abort(&af);
            st = bl_error(BL_ERR_IO, "%s: cannot write", path);
        } else {
            st = bl_atomic_commit(&af);
        }
    }
    free(path);
    return st;
}

bl_status bl_cli_checkpoint_settings(const bl_cli *cli, const bl_safetensors *ckpt, bl_settings **s)
{
    if (cli->config) return bl_cli_settings(cli, s);
    *s = NULL;
    const char *text = bl_safetensors_meta(ckpt, BL_META_CONFIG);
    if (!text)
        return bl_error(BL_ERR_CONFIG, "%s: the checkpoint records no config (not written by 'bliss train' of "
                        "this version, or converted from PyTorch): pass --config FILE", cli->checkpoint);
    size_t n = strlen(cli->checkpoint) + 32;
    char *name = bl_malloc(n);
    snprintf(name, n, "%s [its config]", cli->checkpoint);
    bl_status st = bl_settings_load_string(s, text, name, cli->n_sets, cli->sets, cli->has_seed, cli->seed);
    free(name);
    return st;
}

bl_status bl_cli_checkpoint_unpack(const bl_cli *cli, const bl_safetensors *ckpt, bl_params *params)
{
    bl_status st = bl_checkpoint_unpack(ckpt, cli->checkpoint, params, NULL);
    if (st && cli->config && bl_safetensors_meta(ckpt, BL_META_CONFIG)) {
        char msg[2048]; /* a note after the message (bl_error_context puts context in front) */
        snprintf(msg, sizeof msg, "%s", bl_error_message());
        st = bl_error(st, "%s\n  (%s does not describe this checkpoint; without --config the config recorded "
                      "in the checkpoint is used)", msg, cli->config);
    }
    return st;
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

bl_status bl_cli_compare_configs(const char *file, const char *recorded, const char *current, FILE *warn)
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
                fprintf(warn, "bliss train: warning: %s differs from the checkpoint's config: %s, was %s\n",
                        x->key[i], now, was);
        }
    }
    bl_flat_free(&a);
    bl_flat_free(&b);
    return st;
}
