/* Data files shipped with bliss-c (colour models, ...): data/<rel> in the source tree, installed
 * to <prefix>/<datadir>/bliss-c/<rel> by meson. The library never reads outside these places
 * (never the specification folder beside the project).
 *
 * Search order for a relative name `rel` (first existing file wins):
 *   1. $BLISS_DATA_DIR/<rel>            an explicit override (relocated installs, tests)
 *   2. <source tree>/data/<rel>         compiled in: a build used from its source tree
 *   3. <prefix>/<datadir>/bliss-c/<rel> compiled in: an installed library
 * An absolute `rel`, or one starting with "./" or "../", is used as is. */
#ifndef BL_SIM_DATADIR_H
#define BL_SIM_DATADIR_H

#include <stddef.h>

#include "lib/error.h"

/* The full path of `rel` into out (n bytes); BL_ERR_IO listing the places tried. */
bl_status bl_data_find(const char *rel, char *out, size_t n);

#endif
