/* Configuration files (libconfig syntax, `@include` supported) with strict keys.
 *
 * Every lookup marks the setting as used; after all modules have read their part,
 * bl_config_check_unused() reports the first setting nobody read as an unknown key, naming
 * the file and line ("configs/x.cfg:12: unknown key 'train.lrr'"). Lookups of the wrong type
 * and values out of range are errors naming file, line and key as well. Paths are dotted
 * ("train.adam.lr"). `--set path=value` overrides are applied with bl_config_set, after the
 * file's own `overrides` lists (bl_config_load). */
#ifndef BL_CONFIG_H
#define BL_CONFIG_H

#include <stdint.h>

#include "lib/error.h"

typedef struct bl_config bl_config;
typedef struct config_setting_t bl_config_setting; /* libconfig's node */

/* Parse `path` (with its @includes, resolved against the directory of `path`), then apply the
 * overrides lists: every top-level list named `overrides` or `overrides_<anything>` holds
 * "key = value" strings, each applied like bl_config_set, the lists in file order (an included
 * file's lists come first, so the including file wins). libconfig refuses to define a key
 * twice, so this is how a config that @includes another changes the included values:
 *   @include "base.cfg"
 *   overrides_redshift = ( "encoder.use_checkerboard = false", "train.optimizer.lr = 1e-4" );
 * The lists count as used keys. On failure returns BL_ERR_IO (missing file) or
 * BL_ERR_CONFIG (syntax, or an override of an unknown key / of the wrong type, naming the
 * file:line of the entry) and *out = NULL. */
bl_status bl_config_load(bl_config **out, const char *path);
/* Parse from a string (tests), overrides applied as above; `name` stands for the file name in
 * messages. */
bl_status bl_config_load_string(bl_config **out, const char *text, const char *name);
void bl_config_free(bl_config *cfg);

/* Scalar lookups. `found` (may be NULL) tells whether the key exists; a missing key leaves
 * *value at `def` and returns BL_OK unless required. Numbers accept int or float settings. */
bl_status bl_config_double(bl_config *cfg, const char *path, double def, int required, double *value);
bl_status bl_config_int(bl_config *cfg, const char *path, int64_t def, int required, int64_t *value);
bl_status bl_config_bool(bl_config *cfg, const char *path, int def, int required, int *value);
/* The string stays owned by cfg. */
bl_status bl_config_string(bl_config *cfg, const char *path, const char *def, int required,
                           const char **value);
/* A list/array of numbers: fills up to `max` values, sets *n; a count not in
 * [min_n, max] is an error. */
bl_status bl_config_doubles(bl_config *cfg, const char *path, int min_n, int max, double *values,
                            int *n);
/* Range check helper: error "file:line: key 'k' = v is out of range [lo, hi]". */
bl_status bl_config_check_range(bl_config *cfg, const char *path, double value, double lo, double hi);

int bl_config_exists(bl_config *cfg, const char *path);
/* The libconfig node at path (marked used, children not), or NULL; for lists of groups such
 * as factor entries. Use bl_config_setting_path to get its dotted path for the lookups above. */
bl_config_setting *bl_config_lookup(bl_config *cfg, const char *path);
int bl_config_length(bl_config *cfg, const char *path);   /* children of a group/list, 0 if absent */
/* The list of groups at `path` (factor entries, prior samplers): *n entries, 0 when the key
 * is absent. BL_ERR_CONFIG naming file:line and the key when it is not a list, or an entry
 * ("path.[i]") is not a group. The list and its groups count as used; their keys do not until
 * they are read. */
bl_status bl_config_groups(bl_config *cfg, const char *path, int *n);
/* "file:line" of a setting for messages (static thread-local buffer). */
const char *bl_config_where(bl_config *cfg, const char *path);

/* Override "a.b.c=value": value parsed as int, float, bool (true/false), "string" or bare
 * string; the key must already exist unless it is a new key in an existing group. */
bl_status bl_config_set(bl_config *cfg, const char *assignment);
/* BL_ERR_CONFIG naming file:line and the key of the first setting never looked up. */
bl_status bl_config_check_unused(bl_config *cfg);
/* The same for the settings below `path` only (a reader that has read all the keys it knows
 * of one group reports a typo there at once); BL_OK when path is absent. */
bl_status bl_config_check_unused_in(bl_config *cfg, const char *path);
const char *bl_config_file(const bl_config *cfg);

#endif
