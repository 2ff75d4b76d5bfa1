/* Factors, the variational-distribution spec, and the variational distribution (docs/factors.md,
 * docs/behaviour.md §3; the extension point of the framework).
 *
 * A factor explains value_dim columns of one catalog field with a distribution kind:
 *   name    unique in its spec ("star_flux_r")
 *   kind    a descriptor (dists/kind.h) + its options, opts[i] for kind->opt_names[i]
 *           (low, high for logitnormal)
 *   field   a catalog field of lib/catalog.h's table, or "n_sources" (the per-tile count)
 *   column  first column of the field explained (the factor covers [column, column+value_dim))
 *   mask    which tiles the nll term counts in: a mask of the mask table (always, on
 *           (n_sources > 0), star, galaxy, or a registered one); NULL means always
 *   point   what sample(use_mode) reports: the kind's mode or its median (docs/behaviour.md §3.4)
 *   offset  added to the true value in nll (1e-9 for fluxes and galaxy shapes, docs/behaviour.md §3.5)
 *
 * The spec is an ordered list of factors; the network emits P = sum of the kinds' dims raw
 * numbers per tile, (B, ht, wt, P), split in factor order. Adding a factor — redshift — is one
 * call (bl_vardist_spec_add) or one config entry (bl_vardist_spec_add_config); nll, sample,
 * the catalog field filled and P follow with no other change.
 *
 *   bl_vardist_spec_add(spec, &(bl_factor){.name = "redshift", .kind = bl_dist_normal,
 *                                          .field = "redshifts", .mask = BL_MASK_ON});
 *
 * Factors are fixed once a distribution is made from the spec (add before make_dist). */
#ifndef BL_VARDIST_H
#define BL_VARDIST_H

#include <stdint.h>
#include <stdio.h>

#include "autograd/tape.h"
#include "dists/kind.h"
#include "lib/catalog.h"
#include "lib/config.h"

/* A factor mask: which tiles a factor's nll term counts in. `select` writes 0/1 per slot of
 * a catalog (B, ht, wt, S), as bl_tile_catalog_on_mask does; NULL selects every tile. The
 * table starts with the built-ins below; a new mask is one bl_factor_mask_register call, after
 * which configs can name it (mask = "bright"). Same thread rule as every registry
 * (lib/registry.h): register before worker threads start. */
typedef struct bl_factor_mask {
    const char *name;
    void (*select)(const bl_tile_catalog *cat, uint8_t *out);
} bl_factor_mask;

extern const bl_factor_mask *const BL_MASK_ALWAYS; /* every tile */
extern const bl_factor_mask *const BL_MASK_ON;     /* n_sources > 0 */
extern const bl_factor_mask *const BL_MASK_STAR;   /* on and source_type == 0 */
extern const bl_factor_mask *const BL_MASK_GALAXY; /* on and source_type == 1 */

/* BL_ERR_ARG naming the mask when it has no name or its name is taken by another one. */
bl_status bl_factor_mask_register(const bl_factor_mask *mask);
const bl_factor_mask *bl_factor_mask_find(const char *name);
int bl_factor_mask_count(void);
void bl_factor_mask_names(char *buf, size_t n); /* "always, on, ...", for messages */
const bl_factor_mask *bl_factor_mask_at(int i);

typedef enum {
    BL_POINT_MODE = 0,
    BL_POINT_MEDIAN,
} bl_factor_point;

/* The pseudo-field of a factor that explains the per-tile source count. */
#define BL_FIELD_N_SOURCES "n_sources"

typedef struct bl_factor {
    const char *name;
    const bl_dist_kind *kind;
    double opts[BL_DIST_MAX_OPTS]; /* kind->opt_names order; unused entries 0 */
    const char *field;
    int column;
    const bl_factor_mask *mask;    /* NULL: BL_MASK_ALWAYS */
    bl_factor_point point;
    double offset;
} bl_factor;

typedef struct bl_vardist_spec {
    int n_bands;      /* k of the per-band catalog fields */
    int tile_slen;    /* of the catalogs sampled */
    int n_factors, cap_factors;
    bl_factor *factors;  /* strings owned by the spec */
    int *raw_offset;     /* first raw index of each factor */
    int dim;             /* P */
} bl_vardist_spec;

bl_vardist_spec *bl_vardist_spec_alloc(int n_bands, int tile_slen);
void bl_vardist_spec_free(bl_vardist_spec *spec);
/* The SDSS base spec of docs/behaviour.md §3.1: 9 + 2 n_bands factors, P = 18 + 4 n_bands (19 factors and
 * P = 38 for u, g, r, i, z). */
bl_vardist_spec *bl_vardist_spec_alloc_sdss(int n_bands, int tile_slen);
/* Append a factor (copied). BL_ERR_ARG with a message naming the factor when: the name is
 * empty or taken, the kind descriptor is invalid (dists/kind.h), its options are wrong (or
 * set beyond the kind's n_opts), the field is unknown, or the columns do not fit the field's
 * width. */
bl_status bl_vardist_spec_add(bl_vardist_spec *spec, const bl_factor *factor);
/* The checks of bl_vardist_spec_add without adding. On failure *bad_key (if not NULL) names
 * the part of the factor at fault, as the config key spelling it: "name", "kind", an option
 * name, "field", "column", "mask", "point" or "offset". */
bl_status bl_vardist_spec_check(const bl_vardist_spec *spec, const bl_factor *factor,
                                const char **bad_key);
/* Append one factor per group of the list at `path` (e.g. "factors"), in order:
 *   factors = ( { name = "redshift"; kind = "normal"; field = "redshifts"; mask = "on"; } );
 * Keys: name, kind, field (required); column (0), mask ("on"), point ("mode"), offset (0.0),
 * the kind's option names (all required: low, high for logitnormal), dim (optional check
 * against the kind). Keys are read with lib/config's tracked accessors: a key no factor reads
 * (a typo, an option of another kind) is reported by the caller's bl_config_check_unused as
 * "file:line: unknown key 'factors.[0].colum'". Any other error (unknown kind, mask or field,
 * dim mismatch, wrong type, duplicate name, bad option) is BL_ERR_CONFIG naming file:line and
 * the key. A missing list adds nothing. */
bl_status bl_vardist_spec_add_config(bl_vardist_spec *spec, bl_config *cfg, const char *path);
const bl_factor *bl_vardist_spec_find(const bl_vardist_spec *spec, const char *name);
int bl_vardist_spec_index(const bl_vardist_spec *spec, const char *name); /* -1 if absent */
static inline int bl_vardist_spec_dim(const bl_vardist_spec *spec) { return spec->dim; }
const char *bl_factor_point_name(bl_factor_point point);
/* The factor table: index, name, kind, dim, raw columns, field[columns], mask, point, and
 * the total P. */
void bl_vardist_spec_print(FILE *f, const bl_vardist_spec *spec);

/* The distribution for one batch of network outputs (spec's make_dist). Per-step memory. */
typedef struct bl_vardist {
    const bl_vardist_spec *spec;
    int64_t B, ht, wt;
    bl_tensor *x_cat;  /* (B, ht, wt, P) */
    bl_tensor **raw;   /* per factor (B, ht, wt, dim_f): slices of x_cat on the tape */
} bl_vardist;

/* Split x_cat (B, ht, wt, P) by factor; aborts if x_cat is not 4-D with last dim P. */
bl_vardist *bl_vardist_spec_make_dist(bl_ctx *ctx, const bl_vardist_spec *spec, bl_tensor *x_cat);
/* Per-tile negative log-likelihood (B, ht, wt) of a true catalog with S == 1 (docs/behaviour.md §3.5):
 *   sum_f mask_f * -log q_f(true value_f + offset_f)
 * Masked-out tiles contribute exactly 0 (their true values are replaced by a value inside the
 * support before log_prob, so stale or zero values cannot produce NaN). BL_ERR_ARG naming the
 * factor when the catalog lacks a field, or has S != 1 or another geometry. */
/* = bl_vardist_targets_make + bl_vardist_nll_targets (one distribution, one catalog). */
bl_status bl_vardist_nll(bl_ctx *ctx, const bl_vardist *dist, const bl_tile_catalog *true_cat,
                         bl_tensor **out);

/* The training target of one true catalog (S == 1), which depends only on (spec, catalog):
 * per factor, the true values (B, ht, wt, value_dim) with offset added and a value inside the
 * support on masked-out tiles, and the 0/1 mask (B, ht, wt) (NULL: always). Make it once per
 * step and pass it to the NLL of every distribution of the same spec (marginal, white, black,
 * second detection). Per-step tensors in ctx. Errors as bl_vardist_nll. */
typedef struct bl_vardist_targets {
    const bl_vardist_spec *spec;
    int64_t B, ht, wt;
    bl_tensor **value;   /* [n_factors] */
    bl_tensor **mask;    /* [n_factors], NULL entries: the factor counts everywhere */
} bl_vardist_targets;
bl_status bl_vardist_targets_make(bl_ctx *ctx, const bl_vardist_spec *spec,
                                  const bl_tile_catalog *true_cat, bl_vardist_targets *out);
/* bl_vardist_nll on targets made for dist's spec; BL_ERR_ARG when the tile grids differ. */
bl_status bl_vardist_nll_targets(bl_ctx *ctx, const bl_vardist *dist, const bl_vardist_targets *tg,
                                 bl_tensor **out);
/* Factor i of dist against targets made for its spec, tile by tile, without a tape (the
 * per-factor metrics of docs/metrics.md). For every tile t of the B * ht * wt:
 *   sel[t]   1 where the factor's mask counts the tile (where its nll term counts), else 0;
 *   nll[t]   -log q_i(true value + offset) (also on tiles with sel[t] = 0: a value inside the
 *            support stands in for the true one there);
 *   pit[t * value_dim + d]  (may be NULL) the kind's marginal CDF of dimension d at the true
 *            value + offset, NaN when the kind has no cdf;
 *   hit[t]   (may be NULL) 1 when the factor's point estimate (mode or median, as sample
 *            reports it) equals the true value (rounded to integers: discrete kinds).
 * BL_ERR_ARG when the tile grids differ, as bl_vardist_nll_targets. */
bl_status bl_vardist_factor_eval(bl_ctx *ctx, const bl_vardist *dist, const bl_vardist_targets *tg,
                                 int i, uint8_t *sel, double *nll, double *pit, uint8_t *hit);

/* A tile catalog (B, ht, wt, S = 1) holding every factor's field for every tile (even where
 * n_sources = 0), docs/behaviour.md §3.4. use_mode: each factor's point estimate (mode or median);
 * otherwise a draw. Image b draws from stream bl_rng_mix(stream, b) of `seed`, tiles in
 * row-major order, factors in spec order: the result does not depend on the thread count. */
bl_tile_catalog *bl_vardist_sample(const bl_vardist *dist, uint64_t seed, uint64_t stream,
                                   int use_mode);

/* q's summaries per tile, for the astronomer's catalog (bliss predict, docs/cli.md). Each
 * factor gets catalog fields named after it:
 *   bernoulli                    "<factor>"         1 column: q's probability of 1
 *                                                   (bl_dist_bernoulli_p; on_prob, galaxy_prob)
 *   a kind with loc_scale        "<factor>_loc", "<factor>_scale"   value_dim columns each
 *                                                   (bl_dist_kind_loc_scale)
 *   other kinds                  none
 * bl_vardist_q_register adds these fields to the field table (lib/catalog.h; before worker
 * threads start); BL_ERR_ARG naming the factor when a name is a built-in field, the field of a
 * factor of the spec, or registered with another width. bl_vardist_q_fill writes them for
 * every tile of a catalog of dist's geometry and S = 1 (as bl_vardist_sample returns). */
bl_status bl_vardist_q_register(const bl_vardist_spec *spec);
void bl_vardist_q_fill(const bl_vardist *dist, bl_tile_catalog *cat);
/* For every factor whose mask does not select an on source (star factors for a galaxy), set
 * the factor's columns of its field and its q fields to NaN in that slot: the values do not
 * apply there. Integer fields (source_type) keep their values. Works for any S. */
void bl_vardist_spec_mark_inapplicable(const bl_vardist_spec *spec, bl_tile_catalog *cat);

#endif
