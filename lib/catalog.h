/* Catalogs of light sources (docs/behaviour.md §1.2, §1.3, §2; docs/porting.md).
 *
 * Tile catalog: the image is cut into ht x wt tiles of tile_slen pixels; each tile holds up to
 * S sources, packed at the front of the S axis (slot s is "on" iff s < n_sources of the tile).
 *   n_sources  int32_t[B * ht * wt]                      (B, ht, wt), row-major
 *   fields     bl_tensor (B, ht, wt, S, k), bl_real      looked up by name ("locs", ...)
 * Full catalog: sources of a whole image in one list of M slots (packed at the front).
 *   n_sources  int32_t[B]                                (B)
 *   plocs      bl_tensor (B, M, 2)                       pixel (row, col)
 *   fields     bl_tensor (B, M, k)                       same names and k as the tile fields
 *
 * Every field is stored as a persistent bl_tensor (bl_tensor_alloc; bl_real = float, or
 * double in the f64 build) owned by its catalog, so the encoder's loss can feed it to tape ops
 * without conversion. Integer-valued fields (source_type: 0 = star, 1 = galaxy) are stored as
 * exact small integers in bl_real; counts are int32. `locs` is an ordinary tile field (row, col
 * fractions of the tile side); the full catalog keeps pixel locations in `plocs` instead and
 * has no `locs` field.
 *
 * Field names are not free text: every field name and its width k come from ONE process-wide
 * table (bl_catalog_field_*). The built-in rows are listed in catalog.c; a new latent quantity
 * (a simulator sampler, a variational factor) registers its field once with
 * bl_catalog_field_register, after which it is a field like any other. The table is a
 * lib/registry.h registry: register before worker threads start (nothing is locked). Adding a field with a name not in the table is a
 * programmer error (abort); user-provided names (configs) are validated with
 * bl_catalog_field_find first.
 *
 * All operations returning a catalog allocate a new one (free it with the matching _free);
 * inputs are never modified. Shape mismatches between catalogs are programmer errors. */
#ifndef BL_CATALOG_H
#define BL_CATALOG_H

#include <stdint.h>

#include "lib/error.h"
#include "lib/tensor.h"

/* ---------------------------------------------------------------------------------------- */
/* The field table                                                                           */

#define BL_CATALOG_NAME_MAX 48
/* width value meaning "one column per band" (k = n_bands of the catalog) */
#define BL_FIELD_PER_BAND (-1)

enum {
    BL_FIELD_INTEGER = 1u << 0,     /* values are small integers (source_type, objid) */
    BL_FIELD_KEEP_ON_FILTER = 1u << 1, /* not zeroed by filter_by_flux (shear, convergence) */
};

typedef struct bl_catalog_field_info {
    char name[BL_CATALOG_NAME_MAX];
    int width;       /* k, or BL_FIELD_PER_BAND */
    unsigned flags;  /* BL_FIELD_* */
} bl_catalog_field_info;

/* Row of the table named `name`, or NULL. */
const bl_catalog_field_info *bl_catalog_field_find(const char *name);
/* k of field `name` for a catalog with n_bands bands; -1 if the name is unknown. */
int bl_catalog_field_width(const char *name, int n_bands);
/* Add a row. Registering the same name again with the same width and flags is a no-op
 * (a sampler and a factor may both register `redshifts`); a different width, an empty or
 * too long name, or width 0 / < -1 is BL_ERR_ARG with a message naming the field. */
bl_status bl_catalog_field_register(const char *name, int width, unsigned flags);
/* 1 if `name` is one of the compiled-in rows (locs, source_type, ..., redshifts, ...). */
int bl_catalog_field_is_builtin(const char *name);
int bl_catalog_field_count(void);
const bl_catalog_field_info *bl_catalog_field_at(int i);
/* Forget every registered row, keep the built-ins (tests). */
void bl_catalog_fields_reset(void);

/* ---------------------------------------------------------------------------------------- */
/* Tile catalog                                                                              */

typedef struct bl_catalog_field {
    char *name;         /* owned copy */
    int k;
    bl_tensor *t;       /* tile: (B, ht, wt, S, k); full: (B, M, k) */
} bl_catalog_field;

typedef struct bl_tile_catalog {
    int64_t B, ht, wt, S;
    int tile_slen;           /* pixels per tile side */
    int n_bands;             /* k of per-band fields */
    int32_t *n_sources;      /* (B, ht, wt) */
    int n_fields;            /* fields[0 .. n_fields) in insertion order */
    int cap_fields;
    bl_catalog_field *fields;
} bl_tile_catalog;

/* n_sources zeroed, no fields. */
bl_tile_catalog *bl_tile_catalog_alloc(int64_t B, int64_t ht, int64_t wt, int64_t S,
                                       int tile_slen, int n_bands);
void bl_tile_catalog_free(bl_tile_catalog *cat);
/* Deep copy. */
bl_tile_catalog *bl_tile_catalog_copy(const bl_tile_catalog *cat);

/* The field `name` (B, ht, wt, S, k), added zero-filled if absent. Aborts if `name` is not in
 * the field table (register it first). */
bl_tensor *bl_tile_catalog_add(bl_tile_catalog *cat, const char *name);
/* The field `name`, or NULL if the catalog has none. */
bl_tensor *bl_tile_catalog_get(const bl_tile_catalog *cat, const char *name);
/* As _get but aborts naming the field and the fields present when absent. */
bl_tensor *bl_tile_catalog_require(const bl_tile_catalog *cat, const char *name);
int bl_tile_catalog_has(const bl_tile_catalog *cat, const char *name);

static inline int64_t bl_tile_index(const bl_tile_catalog *c, int64_t b, int64_t i, int64_t j)
{
    return (b * c->ht + i) * c->wt + j;
}
/* Offset of (b, i, j, s, col) in a (B, ht, wt, S, k) field. */
static inline int64_t bl_tile_offset(const bl_tile_catalog *c, int64_t b, int64_t i, int64_t j,
                                     int64_t s, int k, int col)
{
    return ((bl_tile_index(c, b, i, j) * c->S + s) * k) + col;
}
static inline int64_t bl_tile_catalog_n_tiles(const bl_tile_catalog *c) { return c->B * c->ht * c->wt; }
static inline int64_t bl_tile_catalog_height(const bl_tile_catalog *c) { return c->ht * c->tile_slen; }
static inline int64_t bl_tile_catalog_width(const bl_tile_catalog *c) { return c->wt * c->tile_slen; }
/* Total number of sources (sum of n_sources). */
int64_t bl_tile_catalog_total_sources(const bl_tile_catalog *cat);

/* Derived quantities, written into caller buffers (no allocation; docs/behaviour.md §1.2):
 *   on_mask      uint8[B*ht*wt*S]     slot s < n_sources
 *   star_mask    uint8[B*ht*wt*S]     on AND source_type == 0 (all on slots if no source_type)
 *   galaxy_mask  uint8[B*ht*wt*S]     on AND source_type == 1
 *   on_fluxes    bl_real[B*ht*wt*S*NB] galaxy_fluxes for galaxies, star_fluxes otherwise, 0 off
 *                (a missing flux field reads as 0)
 *   magnitudes   bl_real[B*ht*wt*S*NB] 22.5 - 2.5 log10(on_flux): +inf off, NaN for flux < 0 */
void bl_tile_catalog_on_mask(const bl_tile_catalog *cat, uint8_t *out);
void bl_tile_catalog_star_mask(const bl_tile_catalog *cat, uint8_t *out);
void bl_tile_catalog_galaxy_mask(const bl_tile_catalog *cat, uint8_t *out);
void bl_tile_catalog_on_fluxes(const bl_tile_catalog *cat, bl_real *out);
void bl_tile_catalog_magnitudes(const bl_tile_catalog *cat, bl_real *out);
/* on_flux of one slot in one band (0 when off). */
bl_real bl_tile_catalog_on_flux(const bl_tile_catalog *cat, int64_t b, int64_t i, int64_t j,
                                int64_t s, int band);
/* nanomaggies <-> AB magnitudes */
double bl_flux_to_mag(double nmgy);
double bl_mag_to_flux(double mag);

/* Operations (docs/behaviour.md §2, docs/porting.md). `band` indexes the per-band flux fields (2 = r). */
/* Sort each tile's slots by on_flux[band], descending (stable: ties keep slot order). */
bl_tile_catalog *bl_tile_catalog_sort_by_flux(const bl_tile_catalog *cat, int band);
/* §2.5. S == 1, top_k == 1, exclude_num == 0: a copy. exclude_num >= S: a copy with
 * n_sources = 0. Else sort, keep slots [exclude_num, exclude_num + top_k) (S' = kept count),
 * n_sources = clamp(n - exclude_num, 0, top_k). */
bl_tile_catalog *bl_tile_catalog_brightest_per_tile(const bl_tile_catalog *cat, int band,
                                                    int exclude_num, int top_k);
/* §2.6 with the docs/porting.md fix: sort, keep on sources with min < on_flux[band] < max (strict),
 * packed to the front in flux order; n_sources = kept count; every other slot of every field
 * (except BL_FIELD_KEEP_ON_FILTER ones) is 0. Use INFINITY for no upper bound. */
bl_tile_catalog *bl_tile_catalog_filter_by_flux(const bl_tile_catalog *cat, double min_flux,
                                                double max_flux, int band);
/* §2.3: tile rows [h0, h1), cols [w0, w1). */
bl_tile_catalog *bl_tile_catalog_crop(const bl_tile_catalog *cat, int64_t h0, int64_t h1,
                                      int64_t w0, int64_t w1);
/* rows [t, ht - t), cols [t, wt - t) */
bl_tile_catalog *bl_tile_catalog_symmetric_crop(const bl_tile_catalog *cat, int64_t t);
/* §2.7: both S == 1, same B, ht, wt, tile_slen, n_bands. S = 2: [self, other] where self has
 * a source, else [other, self]; n_sources summed. Fields present in only one catalog read as
 * 0 in the other. */
bl_tile_catalog *bl_tile_catalog_union(const bl_tile_catalog *a, const bl_tile_catalog *b);
/* Full pixel locations of every slot (on or off): (B, ht, wt, S, 2) into out. */
void bl_tile_catalog_plocs(const bl_tile_catalog *cat, bl_real *out);
/* §2.2: on slots of each image in row-major (tile row, tile col, slot) order; M = max count
 * over the batch (may be 0); padding rows are 0. */
struct bl_full_catalog *bl_tile_catalog_to_full(const bl_tile_catalog *cat);

/* ---------------------------------------------------------------------------------------- */
/* Full catalog                                                                              */

typedef struct bl_full_catalog {
    int64_t B, M;
    int64_t height, width;   /* pixels */
    int n_bands;
    int32_t *n_sources;      /* (B) */
    bl_tensor *plocs;        /* (B, M, 2) pixel (row, col) */
    int n_fields, cap_fields;
    bl_catalog_field *fields; /* (B, M, k) each */
} bl_full_catalog;

/* plocs and n_sources zeroed, no fields. */
bl_full_catalog *bl_full_catalog_alloc(int64_t B, int64_t M, int64_t height, int64_t width,
                                       int n_bands);
void bl_full_catalog_free(bl_full_catalog *cat);
/* 1 if a full catalog may hold field `name`: a table field other than `locs` (tile
 * fractions; a full catalog keeps pixel positions in `plocs`). Readers check it on names from
 * files before bl_full_catalog_add, which asserts it. */
int bl_full_catalog_accepts(const char *name);
bl_tensor *bl_full_catalog_add(bl_full_catalog *cat, const char *name);
bl_tensor *bl_full_catalog_get(const bl_full_catalog *cat, const char *name);
bl_tensor *bl_full_catalog_require(const bl_full_catalog *cat, const char *name);
/* uint8[B*M]: m < n_sources[b] */
void bl_full_catalog_on_mask(const bl_full_catalog *cat, uint8_t *out);
/* bl_real[B*M*NB]: field `fluxes` if present, else galaxy/star selection; 0 off. */
void bl_full_catalog_on_fluxes(const bl_full_catalog *cat, bl_real *out);
void bl_full_catalog_magnitudes(const bl_full_catalog *cat, bl_real *out);
/* §2.8: ceil(height / tile_slen) x ceil(width / tile_slen) tiles (as BLISS: a side that is not
 * a multiple of tile_slen ends in a partial tile), tile = trunc(ploc / tile_slen),
 * locs = (ploc mod tile_slen) / tile_slen; the first
 * sources (catalog order) of a tile fill its slots. A tile with more than max_per_tile sources
 * is BL_ERR_RANGE naming image, tile and count unless ignore_extra (then extra ones are
 * dropped). filter_oob drops sources outside (0, height) x (0, width) (strict); without it a
 * source outside the image is BL_ERR_RANGE. *out = NULL on error. */
bl_status bl_full_catalog_to_tile(const bl_full_catalog *cat, int tile_slen, int max_per_tile,
                                  int ignore_extra, int filter_oob, bl_tile_catalog **out);

#endif
