/* Factor entries in libconfig files (docs/factors.md):
 *
 *   factors = (
 *     { name = "redshift"; kind = "normal"; field = "redshifts"; mask = "on"; }
 *   );
 *
 * Each entry becomes one bl_vardist_spec_add call. Keys are read with lib/config's tracked
 * accessors only: a key nobody reads is an unknown key, reported for the entry at once and by
 * the global bl_config_check_unused otherwise. Every problem names the file, the line and the
 * key, because the person who reads the message is editing that file. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "dists/vardist.h"

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

static const char *bl_entry_key(char *buf, size_t n, const char *entry, const char *key)
{
    snprintf(buf, n, "%s.%s", entry, key);
    return buf;
}

static bl_status bl_add_entry(bl_vardist_spec *spec, bl_config *cfg, const char *entry)
{
    char key[512];
    bl_status st;
    const char *s_name, *s_kind, *s_field, *s_mask, *s_point;
    int64_t column, dim;
    double offset;
#define BL_GET(fn, k, ...) \
    if ((st = fn(cfg, bl_entry_key(key, sizeof key, entry, k), __VA_ARGS__)) != BL_OK) return st
    BL_GET(bl_config_string, "name", NULL, 0, &s_name);
    BL_GET(bl_config_string, "kind", NULL, 0, &s_kind);
    BL_GET(bl_config_string, "field", NULL, 0, &s_field);
    BL_GET(bl_config_string, "mask", "on", 0, &s_mask);
    BL_GET(bl_config_string, "point", "mode", 0, &s_point);
    BL_GET(bl_config_int, "column", 0, 0, &column);
    BL_GET(bl_config_int, "dim", 0, 0, &dim);
    BL_GET(bl_config_double, "offset", 0.0, 0, &offset);

    bl_factor f = {.name = s_name, .field = s_field, .column = (int)column, .offset = offset};
    f.kind = s_kind ? bl_dist_kind_find(s_kind) : NULL;
    if (s_kind && !f.kind) { /* before the unknown keys: its options would look like typos */
        char kinds[512];
        bl_dist_kind_names(kinds, sizeof kinds);
        return bl_entry_error(cfg, bl_entry_key(key, sizeof key, entry, "kind"),
                              "unknown distribution kind '%s' (known: %s)", s_kind, kinds);
    }
    if (f.kind) /* the kind's options: all required */
        for (int i = 0; i < f.kind->n_opts; i++)
            BL_GET(bl_config_double, f.kind->opt_names[i], 0.0, 0, &f.opts[i]);
    /* every key this entry can have is read: what is left is a typo */
    if ((st = bl_config_check_unused_in(cfg, entry)) != BL_OK) return st;

    const char *required[] = {"name", "kind", "field"}, *given[] = {s_name, s_kind, s_field};
    for (size_t j = 0; j < sizeof required / sizeof required[0]; j++)
        if (!given[j]) return bl_entry_error(cfg, entry, "the factor entry has no '%s'", required[j]);
    for (int i = 0; i < f.kind->n_opts; i++)
        if (!bl_config_exists(cfg, bl_entry_key(key, sizeof key, entry, f.kind->opt_names[i])))
            return bl_entry_error(cfg, entry, "kind '%s' needs the option '%s'", f.kind->name,
                                  f.kind->opt_names[i]);
    if (bl_config_exists(cfg, bl_entry_key(key, sizeof key, entry, "dim")) && dim != f.kind->dim)
        return bl_entry_error(cfg, key, "dim = %lld but kind '%s' has %d raw parameters", (long long)dim,
                              f.kind->name, f.kind->dim);
    f.mask = bl_factor_mask_find(s_mask);
    if (!f.mask) {
        char masks[512];
        bl_factor_mask_names(masks, sizeof masks);
        return bl_entry_error(cfg, bl_entry_key(key, sizeof key, entry, "mask"), "unknown mask '%s' (known: %s)",
                              s_mask, masks);
    }
    if (strcmp(s_point, "mode") == 0)
        f.point = BL_POINT_MODE;
    else if (strcmp(s_point, "median") == 0)
        f.point = BL_POINT_MEDIAN;
    else
        return bl_entry_error(cfg, bl_entry_key(key, sizeof key, entry, "point"),
                              "point '%s' (use \"mode\" or \"median\")", s_point);
#undef BL_GET

    const char *bad = NULL;
    if (bl_vardist_spec_check(spec, &f, &bad) != BL_OK) {
        /* the key at fault, or the entry when that key was left at its default */
        const char *at = bl_config_exists(cfg, bl_entry_key(key, sizeof key, entry, bad)) ? key : entry;
        return bl_error_context(BL_ERR_CONFIG, "%s: key '%s'", bl_config_where(cfg, at), at);
    }
    return bl_vardist_spec_add(spec, &f);
}

bl_status bl_vardist_spec_add_config(bl_vardist_spec *spec, bl_config *cfg, const char *path)
{
    int n;
    bl_status st = bl_config_groups(cfg, path, &n);
    for (int i = 0; i < n && st == BL_OK; i++) {
        char entry[256];
        snprintf(entry, sizeof entry, "%s.[%d]", path, i);
        st = bl_add_entry(spec, cfg, entry);
    }
    return st;
}
