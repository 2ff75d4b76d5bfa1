/* The table of distribution kinds: the built-ins plus registered ones. */
#include <string.h>

#include "dists/kind.h"

/* Fixed capacity: kinds are registered once at start-up; descriptors are not copied. */
#define BL_MAX_KINDS 64

static const bl_dist_kind *bl_kinds[BL_MAX_KINDS];
static int bl_n_kinds = -1; /* -1: built-ins not entered yet */

static void bl_kinds_init(void)
{
    if (bl_n_kinds >= 0) return;
    bl_kinds[0] = bl_dist_bernoulli;
    bl_kinds[1] = bl_dist_normal;
    bl_kinds[2] = bl_dist_lognormal;
    bl_kinds[3] = bl_dist_logitnormal;
    bl_kinds[4] = bl_dist_tdbn;
    bl_n_kinds = 5;
}

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
    return BL_OK;
}

bl_status bl_dist_kind_loc_scale(const bl_dist_kind *kind, const bl_dist_opts *opts,
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
    const bl_dist_kind *old = bl_dist_kind_find(kind->name);
    if (old == kind) return BL_OK;
    if (old)
        return bl_error(BL_ERR_ARG, "distribution kind '%s' is already registered (another descriptor)",
                        kind->name);
    if (bl_n_kinds >= BL_MAX_KINDS)
        return bl_error(BL_ERR_ARG, "distribution kind '%s': the kind table is full (%d)", kind->name,
                        BL_MAX_KINDS);
    bl_kinds[bl_n_kinds++] = kind;
    return BL_OK;
}

const bl_dist_kind *bl_dist_kind_find(const char *name)
{
    bl_kinds_init();
    if (!name) return NULL;
    for (int i = 0; i < bl_n_kinds; i++)
        if (strcmp(bl_kinds[i]->name, name) == 0) return bl_kinds[i];
    return NULL;
}

int bl_dist_kind_count(void)
{
    bl_kinds_init();
    return bl_n_kinds;
}

const bl_dist_kind *bl_dist_kind_at(int i)
{
    bl_kinds_init();
    BL_ASSERT(i >= 0 && i < bl_n_kinds, "bl_dist_kind_at: index %d of %d kinds", i, bl_n_kinds);
    return bl_kinds[i];
}

bl_status bl_dist_kind_check_opts(const bl_dist_kind *kind, const bl_dist_opts *opts)
{
    static const bl_dist_opts none = {0, 0};
    const bl_dist_opts *o = opts ? opts : &none;
    if (!kind->uses_range && (o->low != 0 || o->high != 0))
        return bl_error(BL_ERR_ARG, "distribution kind '%s' takes no low/high (got %g, %g)",
                        kind->name, o->low, o->high);
    if (kind->check_opts) return kind->check_opts(o);
    return BL_OK;
}
