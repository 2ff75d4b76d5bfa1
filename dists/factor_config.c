/* Factor entries in libconfig files (docs/factors.md):
 *
 *   factors = (
 *     { name = "redshift"; kind = "normal"; field = "redshifts"; mask = "on"; }
 *   );
 *
 * Each entry becomes one bl_vardist_spec_add call. Every problem is reported with the file,
 * the line and the key, because the person who reads the message is editing that file. */
#include <libconfig.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "dists/vardist.h"

static const char *const bl_factor_keys[] = {"name", "kind", "field", "column", "mask",
                                             "point", "offset", "low", "high", "dim"};
#define BL_N_FACTOR_KEYS ((int)(sizeof bl_factor_keys / sizeof bl_factor_keys[0]))

/* BL_ERR_CONFIG "file:line: key 'path': ..." for the setting at path */
__attribute__((format(printf, 3, 4)))
static bl_status bl_entry_error(bl_config *cfg, const char *path, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return bl_error(BL_ERR_CONFIG, "%s: key '%s': %s", bl_config_where(cfg, path), path, msg);
}

static void bl_kind_list(char *buf, size_t n)
{
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < bl_dist_kind_count() && used < n; i++)
        used += snprintf(buf + used, n - used, "%s%s", i ? ", " : "", bl_dist_kind_at(i)->name);
}

static bl_status bl_add_entry(bl_vardist_spec *spec, bl_config *cfg, const char *entry)
{
    char key[512];
    bl_status st;
    config_setting_t *group = bl_config_lookup(cfg, entry);
    if (config_setting_type(group) != CONFIG_TYPE_GROUP)
        return bl_entry_error(cfg, entry, "a factor entry must be a group { name = ...; kind = ...; }");

    /* unknown keys first: a typo ("colum") must not silently fall back to a default */
    for (int i = 0; i < config_setting_length(group); i++) {
        const char *k = config_setting_name(config_setting_get_elem(group, (unsigned)i));
        int known = 0;
        for (int j = 0; j < BL_N_FACTOR_KEYS; j++) known |= strcmp(k, bl_factor_keys[j]) == 0;
        if (!known) {
            snprintf(key, sizeof key, "%s.%s", entry, k);
            return bl_entry_error(cfg, key,
                                  "unknown key in a factor entry (known: name, kind, field, "
                                  "column, mask, point, offset, low, high, dim)");
        }
    }

    const char *s_name, *s_kind, *s_field, *s_mask, *s_point;
    static const char *const required[3] = {"name", "kind", "field"};
    for (int j = 0; j < 3; j++) {
        snprintf(key, sizeof key, "%s.%s", entry, required[j]);
        if (!bl_config_exists(cfg, key))
            return bl_entry_error(cfg, entry, "the factor entry has no '%s'", required[j]);
    }
#define BL_GET(fn, k, ...)                                          \
    do {                                                            \
        snprintf(key, sizeof key, "%s.%s", entry, k);               \
        if ((st = fn(cfg, key, __VA_ARGS__)) != BL_OK) return st;   \
    } while (0)
    BL_GET(bl_config_string, "name", NULL, 1, &s_name);
    BL_GET(bl_config_string, "kind", NULL, 1, &s_kind);
    BL_GET(bl_config_string, "field", NULL, 1, &s_field);
    BL_GET(bl_config_string, "mask", "on", 0, &s_mask);
    BL_GET(bl_config_string, "point", "mode", 0, &s_point);
    int64_t column, dim;
    double offset, low, high;
    BL_GET(bl_config_int, "column", 0, 0, &column);
    BL_GET(bl_config_int, "dim", 0, 0, &dim);
    BL_GET(bl_config_double, "offset", 0.0, 0, &offset);
    BL_GET(bl_config_double, "low", 0.0, 0, &low);
    BL_GET(bl_config_double, "high", 0.0, 0, &high);
#undef BL_GET

    bl_factor f = {.name = s_name, .field = s_field, .column = (int)column, .offset = offset};
    snprintf(key, sizeof key, "%s.kind", entry);
    f.kind = bl_dist_kind_find(s_kind);
    if (!f.kind) {
        char kinds[256];
        bl_kind_list(kinds, sizeof kinds);
        return bl_entry_error(cfg, key, "unknown distribution kind '%s' (known: %s)", s_kind, kinds);
    }
    snprintf(key, sizeof key, "%s.dim", entry);
    if (bl_config_exists(cfg, key) && dim != f.kind->dim)
        return bl_entry_error(cfg, key, "dim = %lld but kind '%s' has %d raw parameters",
                              (long long)dim, f.kind->name, f.kind->dim);
    snprintf(key, sizeof key, "%s.low", entry);
    int has_low = bl_config_exists(cfg, key);
    snprintf(key, sizeof key, "%s.high", entry);
    int has_high = bl_config_exists(cfg, key);
    if (f.kind->uses_range) {
        if (!has_low || !has_high)
            return bl_entry_error(cfg, entry, "kind '%s' needs both 'low' and 'high'", f.kind->name);
        f.opts = (bl_dist_opts){low, high};
        if (bl_dist_kind_check_opts(f.kind, &f.opts) != BL_OK) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", bl_error_message());
            snprintf(key, sizeof key, "%s.high", entry);
            return bl_entry_error(cfg, key, "%s", msg);
        }
    } else if (has_low || has_high) {
        snprintf(key, sizeof key, "%s.%s", entry, has_low ? "low" : "high");
        return bl_entry_error(cfg, key, "kind '%s' takes no low/high", f.kind->name);
    }
    snprintf(key, sizeof key, "%s.field", entry);
    if (strcmp(s_field, BL_FIELD_N_SOURCES) != 0 && !bl_catalog_field_find(s_field))
        return bl_entry_error(cfg, key,
                              "unknown catalog field '%s' (fields are registered in C with "
                              "bl_catalog_field_register; or \"%s\")",
                              s_field, BL_FIELD_N_SOURCES);
    static const char *const masks[] = {"always", "on", "star", "galaxy"};
    int mask = -1;
    for (int m = 0; m < 4; m++)
        if (strcmp(s_mask, masks[m]) == 0) mask = m;
    snprintf(key, sizeof key, "%s.mask", entry);
    if (mask < 0)
        return bl_entry_error(cfg, key, "mask '%s' (use \"always\", \"on\", \"star\" or \"galaxy\")", s_mask);
    f.mask = (bl_factor_mask)mask;
    snprintf(key, sizeof key, "%s.point", entry);
    if (strcmp(s_point, "mode") == 0)
        f.point = BL_POINT_MODE;
    else if (strcmp(s_point, "median") == 0)
        f.point = BL_POINT_MEDIAN;
    else
        return bl_entry_error(cfg, key, "point '%s' (use \"mode\" or \"median\")", s_point);

    if (bl_vardist_spec_add(spec, &f) != BL_OK) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", bl_error_message());
        /* name the key the problem is about: a taken name, or columns outside the field */
        const char *k = strstr(msg, "already in the spec") ? "name"
                        : strstr(msg, "do not fit")       ? "column"
                                                           : "kind";
        snprintf(key, sizeof key, "%s.%s", entry, k);
        if (!bl_config_exists(cfg, key)) snprintf(key, sizeof key, "%s.field", entry);
        return bl_entry_error(cfg, key, "%s", msg);
    }
    return BL_OK;
}

bl_status bl_vardist_spec_add_config(bl_vardist_spec *spec, bl_config *cfg, const char *path)
{
    if (!bl_config_exists(cfg, path)) return BL_OK;
    config_setting_t *list = bl_config_lookup(cfg, path);
    int type = config_setting_type(list);
    if (type != CONFIG_TYPE_LIST)
        return bl_entry_error(cfg, path, "factors must be a list of groups: ( { ... }, { ... } )");
    int n = config_setting_length(list);
    for (int i = 0; i < n; i++) {
        char entry[256];
        snprintf(entry, sizeof entry, "%s.[%d]", path, i);
        bl_status st = bl_add_entry(spec, cfg, entry);
        if (st != BL_OK) return st;
    }
    return BL_OK;
}
