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

/* Parse `path` with its @includes, then apply the overrides lists and extend groups.
 *
 * `@include "name"` (alone on its line) is looked for in the including file's directory, then
 * in each directory of $BLISS_CONFIG_PATH (':'-separated), the source tree's configs/ and the
 * installed configs/ (share/bliss-c/configs); an absolute name only as itself. An include of
 * "", of a directory or of a missing file, and an include cycle, are BL_ERR_CONFIG naming the
 * including file:line (libconfig itself never opens a file).
 *
 * libconfig refuses to define a key twice, so a config that @includes another changes the
 * included values with directives, applied in file order (an included file's first, so the
 * including file wins); they count as used keys:
 *   - top-level lists `overrides` / `overrides_<anything>` of "key = value" strings, each
 *     applied like bl_config_set:
 *       overrides_redshift = ( "encoder.use_checkerboard = false", "train.optimizer.lr = 1e-4" );
 *   - top-level groups `extend` / `extend_<anything>`, merged into the config: a new key is
 *     added, a group is merged, a list or array is APPENDED to, a scalar is replaced:
 *       extend_flux = { factors = ( { name = "flux_r"; kind = "lognormal"; ... } );
 *                       train = { optimizer = { lr = 1e-4; }; }; };
 * On failure returns BL_ERR_IO (missing top-level file) or BL_ERR_CONFIG (syntax, include
 * errors, or an override of an unknown key / of the wrong type, naming the file:line of the
 * entry) and *out = NULL. */
bl_status bl_config_load(bl_config **out, const char *path);
/* Parse from a string (tests, a checkpoint's config), includes and directives handled as
 * above with `name`'s directory as the including directory; `name` stands for the file name in
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
 * string; the key must already exist unless it is a new key in an existing group. List
 * elements are addressed as "a.[1].b" or "a[1].b". An existing list or array takes a
 * libconfig list or array value ("a.b=[1, 2]" replaces its elements), "a.b+=value" appends
 * (the elements of a list value, or one element), and a group value merges into an existing
 * group like the extend groups of bl_config_load. */
bl_status bl_config_set(bl_config *cfg, const char *assignment);
/* The config as it stands (after includes, overrides, extend groups and bl_config_set), as
 * libconfig text that bl_config_load_string reads back to the same values (floats written
 * with enough digits to round-trip; the overrides and extend directives, already applied,
 * left out). Caller frees. */
char *bl_config_to_string(const bl_config *cfg);
/* BL_ERR_CONFIG naming file:line and the key of the first setting never looked up, with the
 * nearest looked-up key as a "did you mean". */
bl_status bl_config_check_unused(bl_config *cfg);
/* The same for the settings below `path` only (a reader that has read all the keys it knows
 * of one group reports a typo there at once); BL_OK when path is absent. */
bl_status bl_config_check_unused_in(bl_config *cfg, const char *path);
const char *bl_config_file(const bl_config *cfg);

#endif
