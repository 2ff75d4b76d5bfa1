#include "lib/config.h"

#include <errno.h>
#include <libconfig.h>
#include <libgen.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A setting counts as used when its hook points at this sentinel. libconfig owns no other
 * hooks in this project. */
static char bl_config_used_mark;

struct bl_config {
    config_t cfg;
    char *file;     /* the top-level file name, for messages */
    char *dir;      /* its directory: the @include directory */
};

static void bl_config_mark(config_setting_t *s)
{
    for (; s; s = config_setting_parent(s)) config_setting_set_hook(s, &bl_config_used_mark);
}

static const char *bl_setting_file(const bl_config *cfg, const config_setting_t *s)
{
    const char *f = s ? config_setting_source_file(s) : NULL;
    return f ? f : cfg->file;
}

/* "file:line" of a setting ("file" for settings made by --set, which have no line) */
static const char *bl_setting_where(const bl_config *cfg, const config_setting_t *s)
{
    static _Thread_local char buf[1024];
    unsigned line = s ? config_setting_source_line(s) : 0;
    if (line)
        snprintf(buf, sizeof buf, "%s:%u", bl_setting_file(cfg, s), line);
    else
        snprintf(buf, sizeof buf, "%s (--set)", bl_setting_file(cfg, s));
    return buf;
}

static bl_status bl_config_finish_parse(bl_config *cfg, bl_config **out, int ok, const char *name)
{
    if (ok) {
        *out = cfg;
        return BL_OK;
    }
    const char *file = config_error_file(&cfg->cfg);
    bl_status st = bl_error(BL_ERR_CONFIG, "%s:%d: %s", file ? file : name,
                            config_error_line(&cfg->cfg), config_error_text(&cfg->cfg));
    bl_config_free(cfg);
    *out = NULL;
    return st;
}

static bl_config *bl_config_new(const char *name)
{
    bl_config *cfg = bl_calloc(1, sizeof *cfg);
    config_init(&cfg->cfg);
    config_set_options(&cfg->cfg, CONFIG_OPTION_SEMICOLON_SEPARATORS);
    cfg->file = bl_strdup(name);
    char *tmp = bl_strdup(name);
    cfg->dir = bl_strdup(dirname(tmp));
    free(tmp);
    config_set_include_dir(&cfg->cfg, cfg->dir);
    return cfg;
}

static bl_status bl_config_apply_overrides(bl_config *cfg);

/* Parsed (ok) or not: on success the overrides lists are applied before *out is set, so a
 * caller never sees the included files' values that the including file changes. */
static bl_status bl_config_finish_load(bl_config *cfg, bl_config **out, int ok, const char *name)
{
    bl_status st = bl_config_finish_parse(cfg, out, ok, name);
    if (st) return st;
    if ((st = bl_config_apply_overrides(cfg))) {
        bl_config_free(cfg);
        *out = NULL;
    }
    return st;
}

bl_status bl_config_load(bl_config **out, const char *path)
{
    *out = NULL;
    FILE *f = fopen(path, "r");
    if (!f) return bl_error(BL_ERR_IO, "%s: cannot open config file: %s", path, strerror(errno));
    fclose(f);
    bl_config *cfg = bl_config_new(path);
    return bl_config_finish_load(cfg, out, config_read_file(&cfg->cfg, path) == CONFIG_TRUE, path);
}

bl_status bl_config_load_string(bl_config **out, const char *text, const char *name)
{
    bl_config *cfg = bl_config_new(name);
    return bl_config_finish_load(cfg, out, config_read_string(&cfg->cfg, text) == CONFIG_TRUE, name);
}

void bl_config_free(bl_config *cfg)
{
    if (!cfg) return;
    config_destroy(&cfg->cfg);
    free(cfg->file);
    free(cfg->dir);
    free(cfg);
}

const char *bl_config_file(const bl_config *cfg) { return cfg->file; }

static config_setting_t *bl_config_find(bl_config *cfg, const char *path)
{
    config_setting_t *s = config_lookup(&cfg->cfg, path);
    if (s) bl_config_mark(s);
    return s;
}

int bl_config_exists(bl_config *cfg, const char *path) { return config_lookup(&cfg->cfg, path) != NULL; }

bl_config_setting *bl_config_lookup(bl_config *cfg, const char *path) { return bl_config_find(cfg, path); }

int bl_config_length(bl_config *cfg, const char *path)
{
    config_setting_t *s = bl_config_find(cfg, path);
    return s ? config_setting_length(s) : 0;
}

bl_status bl_config_groups(bl_config *cfg, const char *path, int *n)
{
    *n = 0;
    config_setting_t *s = bl_config_find(cfg, path);
    if (!s) return BL_OK;
    if (config_setting_type(s) != CONFIG_TYPE_LIST)
        return bl_error(BL_ERR_CONFIG, "%s: key '%s' must be a list of groups: ( { ... }, { ... } )",
                        bl_setting_where(cfg, s), path);
    int len = config_setting_length(s);
    for (int i = 0; i < len; i++) {
        config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        if (config_setting_type(e) != CONFIG_TYPE_GROUP)
            return bl_error(BL_ERR_CONFIG, "%s: key '%s.[%d]' must be a group { key = value; ... }",
                            bl_setting_where(cfg, e), path, i);
        bl_config_mark(e);
    }
    *n = len;
    return BL_OK;
}

const char *bl_config_where(bl_config *cfg, const char *path)
{
    return bl_setting_where(cfg, config_lookup(&cfg->cfg, path));
}

static bl_status bl_config_missing(bl_config *cfg, const char *path)
{
    return bl_error(BL_ERR_CONFIG, "%s: missing required key '%s'", cfg->file, path);
}

static bl_status bl_config_wrong_type(bl_config *cfg, config_setting_t *s, const char *path,
                                      const char *want)
{
    return bl_error(BL_ERR_CONFIG, "%s: key '%s' must be %s", bl_setting_where(cfg, s), path, want);
}

static int bl_setting_is_number(const config_setting_t *s)
{
    int t = config_setting_type(s);
    return t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64 || t == CONFIG_TYPE_FLOAT;
}

static double bl_setting_number(const config_setting_t *s)
{
    int t = config_setting_type(s);
    if (t == CONFIG_TYPE_FLOAT) return config_setting_get_float(s);
    return (double)config_setting_get_int64(s);
}

bl_status bl_config_double(bl_config *cfg, const char *path, double def, int required, double *value)
{
    config_setting_t *s = bl_config_find(cfg, path);
    *value = def;
    if (!s) return required ? bl_config_missing(cfg, path) : BL_OK;
    if (!bl_setting_is_number(s)) return bl_config_wrong_type(cfg, s, path, "a number");
    *value = bl_setting_number(s);
    return BL_OK;
}

bl_status bl_config_int(bl_config *cfg, const char *path, int64_t def, int required, int64_t *value)
{
    config_setting_t *s = bl_config_find(cfg, path);
    *value = def;
    if (!s) return required ? bl_config_missing(cfg, path) : BL_OK;
    int t = config_setting_type(s);
    if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
        return bl_config_wrong_type(cfg, s, path, "an integer");
    *value = config_setting_get_int64(s);
    return BL_OK;
}

bl_status bl_config_bool(bl_config *cfg, const char *path, int def, int required, int *value)
{
    config_setting_t *s = bl_config_find(cfg, path);
    *value = def;
    if (!s) return required ? bl_config_missing(cfg, path) : BL_OK;
    if (config_setting_type(s) != CONFIG_TYPE_BOOL)
        return bl_config_wrong_type(cfg, s, path, "true or false");
    *value = config_setting_get_bool(s);
    return BL_OK;
}

bl_status bl_config_string(bl_config *cfg, const char *path, const char *def, int required,
                           const char **value)
{
    config_setting_t *s = bl_config_find(cfg, path);
    *value = def;
    if (!s) return required ? bl_config_missing(cfg, path) : BL_OK;
    if (config_setting_type(s) != CONFIG_TYPE_STRING)
        return bl_config_wrong_type(cfg, s, path, "a string");
    *value = config_setting_get_string(s);
    return BL_OK;
}

bl_status bl_config_doubles(bl_config *cfg, const char *path, int min_n, int max, double *values,
                            int *n)
{
    config_setting_t *s = bl_config_find(cfg, path);
    *n = 0;
    if (!s) return min_n > 0 ? bl_config_missing(cfg, path) : BL_OK;
    int t = config_setting_type(s);
    if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
        return bl_config_wrong_type(cfg, s, path, "an array of numbers, e.g. [1.0, 2.0]");
    int len = config_setting_length(s);
    if (len < min_n || len > max)
        return bl_error(BL_ERR_CONFIG, "%s: key '%s' has %d values, expected %d to %d",
                        bl_setting_where(cfg, s), path, len, min_n, max);
    for (int i = 0; i < len; i++) {
        config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        if (!bl_setting_is_number(e)) return bl_config_wrong_type(cfg, s, path, "an array of numbers");
        values[i] = bl_setting_number(e);
    }
    *n = len;
    return BL_OK;
}

bl_status bl_config_check_range(bl_config *cfg, const char *path, double value, double lo, double hi)
{
    if (value >= lo && value <= hi) return BL_OK;
    return bl_error(BL_ERR_CONFIG, "%s: key '%s' = %g is out of range [%g, %g]",
                    bl_setting_where(cfg, config_lookup(&cfg->cfg, path)), path, value, lo, hi);
}

/* Parse the right-hand side of --set into a setting of `type` (or of an inferred type when
 * type == CONFIG_TYPE_NONE: a new key). */
static bl_status bl_config_assign(bl_config *cfg, config_setting_t *s, const char *key,
                                  const char *text)
{
    char *end;
    int t = config_setting_type(s);
    if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64) {
        errno = 0;
        long long v = strtoll(text, &end, 0);
        if (errno || *end || end == text)
            return bl_error(BL_ERR_CONFIG, "--set %s=%s: expected an integer", key, text);
        /* libconfig stores a value beyond int32 into a 32-bit setting as 0: widen the setting
         * (config_setting_t is public in libconfig.h; the set below then keeps all 64 bits) */
        if (t == CONFIG_TYPE_INT && (v > INT32_MAX || v < INT32_MIN)) s->type = CONFIG_TYPE_INT64;
        return config_setting_set_int64(s, v) ? BL_OK : bl_error(BL_ERR_CONFIG, "--set %s: cannot set", key);
    }
    if (t == CONFIG_TYPE_FLOAT) {
        errno = 0;
        double v = strtod(text, &end);
        if (errno || *end || end == text)
            return bl_error(BL_ERR_CONFIG, "--set %s=%s: expected a number", key, text);
        return config_setting_set_float(s, v) ? BL_OK : bl_error(BL_ERR_CONFIG, "--set %s: cannot set", key);
    }
    if (t == CONFIG_TYPE_BOOL) {
        if (strcmp(text, "true") && strcmp(text, "false"))
            return bl_error(BL_ERR_CONFIG, "--set %s=%s: expected true or false", key, text);
        return config_setting_set_bool(s, text[0] == 't') ? BL_OK
                                                          : bl_error(BL_ERR_CONFIG, "--set %s: cannot set", key);
    }
    if (t == CONFIG_TYPE_STRING) {
        size_t n = strlen(text);
        char *v = bl_strdup(text);
        if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
            v[n - 1] = 0;
            memmove(v, v + 1, n - 1);
        }
        int ok = config_setting_set_string(s, v);
        free(v);
        return ok ? BL_OK : bl_error(BL_ERR_CONFIG, "--set %s: cannot set", key);
    }
    return bl_error(BL_ERR_CONFIG, "--set %s: only scalar keys can be overridden", key);
}

static int bl_config_infer_type(const char *text)
{
    char *end;
    if (!strcmp(text, "true") || !strcmp(text, "false")) return CONFIG_TYPE_BOOL;
    strtoll(text, &end, 0);
    if (*text && !*end) return CONFIG_TYPE_INT64;
    strtod(text, &end);
    if (*text && !*end) return CONFIG_TYPE_FLOAT;
    return CONFIG_TYPE_STRING;
}

bl_status bl_config_set(bl_config *cfg, const char *assignment)
{
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return bl_error(BL_ERR_ARG, "--set '%s': expected key=value", assignment);
    size_t klen = (size_t)(eq - assignment);
    char *key = bl_malloc(klen + 1);
    memcpy(key, assignment, klen);
    key[klen] = 0;
    const char *text = eq + 1;
    bl_status st = BL_OK;
    config_setting_t *s = config_lookup(&cfg->cfg, key);
    if (!s) { /* a new key: its parent group must exist */
        char *dot = strrchr(key, '.');
        config_setting_t *parent = dot ? (dot[0] = 0, config_lookup(&cfg->cfg, key))
                                       : config_root_setting(&cfg->cfg);
        const char *name = dot ? dot + 1 : key;
        if (!parent || config_setting_type(parent) != CONFIG_TYPE_GROUP) {
            st = bl_error(BL_ERR_CONFIG, "--set %.*s: no group '%s' in %s", (int)klen, assignment,
                          dot ? key : "(root)", cfg->file);
        } else if (!(s = config_setting_add(parent, name, bl_config_infer_type(text)))) {
            st = bl_error(BL_ERR_CONFIG, "--set %.*s: invalid key name", (int)klen, assignment);
        }
        if (dot) dot[0] = '.';
    }
    if (st == BL_OK) st = bl_config_assign(cfg, s, key, text);
    free(key);
    return st;
}

static config_setting_t *bl_config_first_unused(config_setting_t *s)
{
    int t = config_setting_type(s);
    int n = (t == CONFIG_TYPE_GROUP || t == CONFIG_TYPE_LIST) ? config_setting_length(s) : 0;
    if (n == 0) return config_setting_get_hook(s) == &bl_config_used_mark ? NULL : s;
    for (int i = 0; i < n; i++) {
        config_setting_t *u = bl_config_first_unused(config_setting_get_elem(s, (unsigned)i));
        if (u) return u;
    }
    return NULL;
}

/* dotted path of a setting, list elements as [i] */
static void bl_setting_path(const config_setting_t *s, char *buf, size_t n)
{
    const config_setting_t *parent = config_setting_parent(s);
    if (!parent || !config_setting_parent(parent)) {
        snprintf(buf, n, "%s", config_setting_name(s) ? config_setting_name(s) : "");
        return;
    }
    bl_setting_path(parent, buf, n);
    size_t k = strlen(buf);
    if (config_setting_name(s))
        snprintf(buf + k, n - k, ".%s", config_setting_name(s));
    else
        snprintf(buf + k, n - k, ".[%d]", config_setting_index(s));
}

static bl_status bl_config_unused_below(bl_config *cfg, config_setting_t *top)
{
    int n = config_setting_length(top);
    for (int i = 0; i < n; i++) {
        config_setting_t *u = bl_config_first_unused(config_setting_get_elem(top, (unsigned)i));
        if (u) {
            char path[512];
            bl_setting_path(u, path, sizeof path);
            return bl_error(BL_ERR_CONFIG, "%s: unknown key '%s'", bl_setting_where(cfg, u), path);
        }
    }
    return BL_OK;
}

bl_status bl_config_check_unused(bl_config *cfg)
{
    return bl_config_unused_below(cfg, config_root_setting(&cfg->cfg));
}

bl_status bl_config_check_unused_in(bl_config *cfg, const char *path)
{
    config_setting_t *s = config_lookup(&cfg->cfg, path);
    int t = s ? config_setting_type(s) : CONFIG_TYPE_NONE;
    if (t != CONFIG_TYPE_GROUP && t != CONFIG_TYPE_LIST) return BL_OK;
    return bl_config_unused_below(cfg, s);
}

/* " a.b = c " -> "a.b=c": spaces around the key, the '=' and the value are allowed in
 * overrides; the value itself is kept as written */
static char *bl_strip_assignment(const char *text)
{
    const char *eq = strchr(text, '=');
    if (!eq) return bl_strdup(text);
    const char *k0 = text, *k1 = eq, *v0 = eq + 1, *v1 = eq + strlen(eq);
    while (k0 < k1 && (*k0 == ' ' || *k0 == '\t')) k0++;
    while (k1 > k0 && (k1[-1] == ' ' || k1[-1] == '\t')) k1--;
    while (v0 < v1 && (*v0 == ' ' || *v0 == '\t')) v0++;
    while (v1 > v0 && (v1[-1] == ' ' || v1[-1] == '\t')) v1--;
    char *out = bl_malloc((size_t)(k1 - k0) + (size_t)(v1 - v0) + 2);
    memcpy(out, k0, (size_t)(k1 - k0));
    out[k1 - k0] = '=';
    memcpy(out + (k1 - k0) + 1, v0, (size_t)(v1 - v0));
    out[(k1 - k0) + 1 + (v1 - v0)] = 0;
    return out;
}

/* Apply the top-level list `list` of "key = value" strings like bl_config_set; the list and
 * its entries count as used. Errors name the entry's file:line. */
static bl_status bl_config_apply_override_list(bl_config *cfg, config_setting_t *list)
{
    const char *name = config_setting_name(list);
    bl_config_mark(list);
    int t = config_setting_type(list);
    if (t != CONFIG_TYPE_LIST && t != CONFIG_TYPE_ARRAY)
        return bl_error(BL_ERR_CONFIG, "%s: key '%s' must be a list of \"key = value\" strings",
                        bl_setting_where(cfg, list), name);
    int n = config_setting_length(list);
    for (int i = 0; i < n; i++) {
        config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
        bl_config_mark(e);
        char where[1024];
        snprintf(where, sizeof where, "%s", bl_setting_where(cfg, e));
        if (config_setting_type(e) != CONFIG_TYPE_STRING)
            return bl_error(BL_ERR_CONFIG, "%s: %s entry %d must be a \"key = value\" string", where,
                            name, i);
        char *a = bl_strip_assignment(config_setting_get_string(e));
        bl_status st = bl_config_set(cfg, a);
        if (st) st = bl_error_context(st, "%s: override \"%s\"", where, a);
        free(a);
        if (st) return st;
    }
    return BL_OK;
}

/* Every top-level list named overrides or overrides_<suffix>, in file order: after @include
 * expansion an included file's lists come first, so the including file's changes win. Each
 * file needs its own name because libconfig refuses a second `overrides`. An override may add
 * a new top-level key, so the root's length is read on every pass. */
static bl_status bl_config_apply_overrides(bl_config *cfg)
{
    config_setting_t *root = config_root_setting(&cfg->cfg);
    for (int i = 0; i < config_setting_length(root); i++) {
        config_setting_t *list = config_setting_get_elem(root, (unsigned)i);
        const char *name = config_setting_name(list);
        if (!name || strncmp(name, "overrides", 9) != 0 || (name[9] != 0 && name[9] != '_')) continue;
        bl_status st = bl_config_apply_override_list(cfg, list);
        if (st) return st;
    }
    return BL_OK;
}
