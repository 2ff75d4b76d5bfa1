/* The table of distribution kinds (a lib/registry.h registry): the built-ins plus registered
 * ones. */
#include <math.h>
#include <string.h>

#include "dists/kind.h"
#include "lib/registry.h"

/* the registry of dists/builtin_kinds.c, where the built-in descriptors are visible */
extern bl_registry bl_dist_kinds;

bl_status bl_dist_kind_check(const bl_dist_kind *kind)
{
    if (!kind) return bl_error(BL_ERR_ARG, "distribution kind: NULL descriptor");
    const char *name = kind->name && kind->name[0] ? kind->name : "(unnamed)";
    if (!kind->name || !kind->name[0])
        return bl_error(BL_ERR_ARG, "distribution kind: the descriptor has no name");
    if (kind->dim <= 0)
        return bl_error(BL_ERR_ARG,
                        "distribution kind '%s': dimension %d; set .dim to the number of raw "
                        "network outputs per source (>= 1)",
                        name, kind->dim);
    if (kind->value_dim <= 0)
        return bl_error(BL_ERR_ARG, "distribution kind '%s': value_dim %d; set .value_dim (>= 1)",
                        name, kind->value_dim);
    if (!kind->log_prob)
        return bl_error(BL_ERR_ARG,
                        "distribution kind '%s': no log_prob; the loss needs log q(value | raw) "
                        "built from tape ops",
                        name);
    if (!kind->sample) return bl_error(BL_ERR_ARG, "distribution kind '%s': no sample function", name);
    if (!kind->mode) return bl_error(BL_ERR_ARG, "distribution kind '%s': no mode function", name);
    if (kind->n_opts < 0 || kind->n_opts > BL_DIST_MAX_OPTS)
        return bl_error(BL_ERR_ARG, "distribution kind '%s': %d options (at most %d)", name,
                        kind->n_opts, BL_DIST_MAX_OPTS);
    for (int i = 0; i < kind->n_opts; i++) {
        if (!kind->opt_names[i] || !kind->opt_names[i][0])
            return bl_error(BL_ERR_ARG, "distribution kind '%s': option %d has no name", name, i);
        for (int j = 0; j < i; j++)
            if (strcmp(kind->opt_names[i], kind->opt_names[j]) == 0)
                return bl_error(BL_ERR_ARG, "distribution kind '%s': two options named '%s'", name,
                                kind->opt_names[i]);
    }
    return BL_OK;
}

bl_status bl_dist_kind_loc_scale(const bl_dist_kind *kind, const double *opts,
                                 const bl_real *raw, double *loc, double *scale)
{
    if (!kind->loc_scale)
        return bl_error(BL_ERR_ARG, "distribution kind '%s' has no location and scale", kind->name);
    kind->loc_scale(opts, raw, loc, scale);
    return BL_OK;
}

bl_status bl_dist_kind_register(const bl_dist_kind *kind)
{
    bl_status st = bl_dist_kind_check(kind);
    if (st != BL_OK) return st;
    return bl_registry_add(&bl_dist_kinds, kind);
}

const bl_dist_kind *bl_dist_kind_find(const char *name) { return bl_registry_find(&bl_dist_kinds, name); }
int bl_dist_kind_count(void) { return bl_registry_count(&bl_dist_kinds); }
void bl_dist_kind_names(char *buf, size_t n) { bl_registry_names(&bl_dist_kinds, buf, n); }
const bl_dist_kind *bl_dist_kind_at(int i) { return bl_registry_at(&bl_dist_kinds, i); }

int bl_dist_kind_opt_index(const bl_dist_kind *kind, const char *name)
{
    for (int i = 0; i < kind->n_opts; i++)
        if (strcmp(kind->opt_names[i], name) == 0) return i;
    return -1;
}

bl_status bl_dist_kind_check_opts(const bl_dist_kind *kind, const double *opts)
{
    for (int i = 0; i < kind->n_opts; i++)
        if (!isfinite(opts[i]))
            return bl_error(BL_ERR_ARG, "distribution kind '%s': option %s = %g is not finite",
                            kind->name, kind->opt_names[i], opts[i]);
    if (kind->check_opts) return kind->check_opts(opts);
    return BL_OK;
}
