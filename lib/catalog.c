#include "lib/catalog.h"

#include "lib/registry.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------- */
/* The field table                                                                           */

/* The built-in rows: the fields of docs/behaviour.md §1.2 (its "allowed keys") plus `redshifts`, which the
 * original forgot (docs/porting.md) and which is a regular (B, ht, wt, S, 1) field here. The spec
 * gives the widths of locs, source_type, the fluxes and galaxy_params; the others follow their
 * meaning (per-band quantities use NB, 2-vectors 2, the rest 1). */
/* a built-in row: a file-scope compound literal, static like any other descriptor */
#define BL_ROW(name, width, flags) &(const bl_catalog_field_info){name, width, flags}
static const void *const bl_builtin_fields[] = {
    BL_ROW("locs", 2, 0),
    BL_ROW("source_type", 1, BL_FIELD_INTEGER),
    BL_ROW("star_fluxes", BL_FIELD_PER_BAND, 0),
    BL_ROW("galaxy_fluxes", BL_FIELD_PER_BAND, 0),
    BL_ROW("galaxy_params", 6, 0),
    BL_ROW("redshifts", 1, 0),
    BL_ROW("fluxes", BL_FIELD_PER_BAND, 0),
    BL_ROW("star_log_fluxes", BL_FIELD_PER_BAND, 0),
    BL_ROW("mags", BL_FIELD_PER_BAND, 0),
    BL_ROW("ellips", 2, 0),
    BL_ROW("snr", BL_FIELD_PER_BAND, 0),
    BL_ROW("blendedness", 1, 0),
    BL_ROW("galaxy_probs", 1, 0),
    BL_ROW("galaxy_blends", 1, 0),
    BL_ROW("n_source_log_probs", 1, 0),
    BL_ROW("objid", 1, BL_FIELD_INTEGER),
    BL_ROW("hlr", 1, 0),
    BL_ROW("ra", 1, 0),
    BL_ROW("dec", 1, 0),
    BL_ROW("matched", 1, BL_FIELD_INTEGER),
    BL_ROW("mismatched", 1, BL_FIELD_INTEGER),
    BL_ROW("detection_thresholds", 1, 0),
    BL_ROW("log_flux_sd", BL_FIELD_PER_BAND, 0),
    BL_ROW("loc_sd", 2, 0),
    BL_ROW("shear", 2, BL_FIELD_KEEP_ON_FILTER),
    BL_ROW("convergence", 1, BL_FIELD_KEEP_ON_FILTER),
};
#undef BL_ROW
/* Registered rows are copied here (fixed capacity, so that row pointers handed out stay
 * valid); the registry holds pointers to them. */
static bl_catalog_field_info bl_field_rows[128];
static const void *bl_registered_fields[sizeof bl_field_rows / sizeof bl_field_rows[0]];
static const char *bl_field_name(const void *row) { return ((const bl_catalog_field_info *)row)->name; }
static bl_registry bl_fields = BL_REGISTRY_INIT("catalog field", bl_builtin_fields, bl_registered_fields,
                                                bl_field_name);

void bl_catalog_fields_reset(void) { bl_registry_reset(&bl_fields); }

const bl_catalog_field_info *bl_catalog_field_find(const char *name) { return bl_registry_find(&bl_fields, name); }

int bl_catalog_field_width(const char *name, int n_bands)
{
    const bl_catalog_field_info *f = bl_catalog_field_find(name);
    if (!f) return -1;
    return f->width == BL_FIELD_PER_BAND ? n_bands : f->width;
}

bl_status bl_catalog_field_register(const char *name, int width, unsigned flags)
{
    if (!name || !name[0]) return bl_error(BL_ERR_ARG, "catalog field: empty name");
    if (strlen(name) >= BL_CATALOG_NAME_MAX)
        return bl_error(BL_ERR_ARG, "catalog field '%s': name longer than %d characters", name,
                        BL_CATALOG_NAME_MAX - 1);
    if (width == 0 || width < BL_FIELD_PER_BAND)
        return bl_error(BL_ERR_ARG, "catalog field '%s': width %d (use k >= 1 or BL_FIELD_PER_BAND)",
                        name, width);
    const bl_catalog_field_info *old = bl_catalog_field_find(name);
    if (old) {
        if (old->width == width && old->flags == flags) return BL_OK;
        return bl_error(BL_ERR_ARG,
                        "catalog field '%s' is already registered with width %d (flags %u); "
                        "cannot register it again with width %d (flags %u)",
                        name, old->width, old->flags, width, flags);
    }
    if (bl_fields.n_extra >= bl_fields.cap)
        return bl_error(BL_ERR_ARG, "catalog field '%s': the field table is full (%d registered rows)",
                        name, bl_fields.cap);
    bl_catalog_field_info *row = &bl_field_rows[bl_fields.n_extra];
    snprintf(row->name, sizeof row->name, "%s", name);
    row->width = width;
    row->flags = flags;
    return bl_registry_add(&bl_fields, row);
}

int bl_catalog_field_is_builtin(const char *name)
{
    for (int i = 0; i < bl_fields.n_builtins; i++)
        if (name && strcmp(((const bl_catalog_field_info *)bl_fields.builtins[i])->name, name) == 0) return 1;
    return 0;
}

int bl_catalog_field_count(void) { return bl_registry_count(&bl_fields); }
const bl_catalog_field_info *bl_catalog_field_at(int i) { return bl_registry_at(&bl_fields, i); }

/* ---------------------------------------------------------------------------------------- */
/* Field lists shared by tile and full catalogs                                              */

static bl_catalog_field *bl_fields_lookup(bl_catalog_field *fields, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (strcmp(fields[i].name, name) == 0) return &fields[i];
    return NULL;
}

/* Append a zero-filled field of shape (lead..., k); returns its tensor. */
static bl_tensor *bl_fields_append(bl_catalog_field **fields, int *n, int *cap, const char *name,
                                   int k, int nlead, const int64_t *lead)
{
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 8;
        *fields = bl_realloc(*fields, (size_t)*cap * sizeof **fields);
    }
    int64_t shape[BL_MAX_DIMS];
    for (int d = 0; d < nlead; d++) shape[d] = lead[d];
    shape[nlead] = k;
    bl_catalog_field *f = &(*fields)[(*n)++];
    f->name = bl_strdup(name);
    f->k = k;
    f->t = bl_tensor_alloc(NULL, nlead + 1, shape, 0);
    return f->t;
}

static void bl_fields_free(bl_catalog_field *fields, int n)
{
    for (int i = 0; i < n; i++) {
        free(fields[i].name);
        bl_tensor_free(fields[i].t);
    }
    free(fields);
}

static int bl_checked_width(const char *name, int n_bands)
{
    int k = bl_catalog_field_width(name, n_bands);
    BL_ASSERT(k > 0,
              "catalog: unknown field '%s' (not in the field table); did you forget "
              "bl_catalog_field_register(\"%s\", width, flags)?",
              name, name);
    return k;
}

static void bl_fields_names(const bl_catalog_field *fields, int n, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = 0;
    for (int i = 0; i < n && used < size; i++)
        used += snprintf(buf + used, size - used, "%s%s", i ? ", " : "", fields[i].name);
}

/* ---------------------------------------------------------------------------------------- */
/* Tile catalog                                                                              */

bl_tile_catalog *bl_tile_catalog_alloc(int64_t B, int64_t ht, int64_t wt, int64_t S,
                                       int tile_slen, int n_bands)
{
    BL_ASSERT(B >= 0 && ht >= 0 && wt >= 0 && S >= 0 && tile_slen > 0 && n_bands > 0,
              "bl_tile_catalog_alloc: B %lld ht %lld wt %lld S %lld tile_slen %d n_bands %d",
              (long long)B, (long long)ht, (long long)wt, (long long)S, tile_slen, n_bands);
    bl_tile_catalog *c = bl_calloc(1, sizeof *c);
    c->B = B;
    c->ht = ht;
    c->wt = wt;
    c->S = S;
    c->tile_slen = tile_slen;
    c->n_bands = n_bands;
    c->n_sources = bl_calloc((size_t)(B * ht * wt) + 1, sizeof(int32_t));
    return c;
}

void bl_tile_catalog_free(bl_tile_catalog *cat)
{
    if (!cat) return;
    free(cat->n_sources);
    bl_fields_free(cat->fields, cat->n_fields);
    free(cat);
}

bl_tensor *bl_tile_catalog_get(const bl_tile_catalog *cat, const char *name)
{
    bl_catalog_field *f = bl_fields_lookup(cat->fields, cat->n_fields, name);
    return f ? f->t : NULL;
}

int bl_tile_catalog_has(const bl_tile_catalog *cat, const char *name)
{
    return bl_tile_catalog_get(cat, name) != NULL;
}

bl_tensor *bl_tile_catalog_require(const bl_tile_catalog *cat, const char *name)
{
    bl_tensor *t = bl_tile_catalog_get(cat, name);
    if (!t) {
        char names[512];
        bl_fields_names(cat->fields, cat->n_fields, names, sizeof names);
        bl_abort(__FILE__, __LINE__, "tile catalog: no field '%s' (fields present: %s)", name,
                 cat->n_fields ? names : "none");
    }
    return t;
}

bl_tensor *bl_tile_catalog_add(bl_tile_catalog *cat, const char *name)
{
    int k = bl_checked_width(name, cat->n_bands);
    bl_tensor *t = bl_tile_catalog_get(cat, name);
    if (t) return t;
    return bl_fields_append(&cat->fields, &cat->n_fields, &cat->cap_fields, name, k, 4,
                            BL_SHAPE(cat->B, cat->ht, cat->wt, cat->S));
}

bl_tile_catalog *bl_tile_catalog_copy(const bl_tile_catalog *cat)
{
    bl_tile_catalog *c = bl_tile_catalog_alloc(cat->B, cat->ht, cat->wt, cat->S, cat->tile_slen,
                                               cat->n_bands);
    memcpy(c->n_sources, cat->n_sources, (size_t)bl_tile_catalog_n_tiles(cat) * sizeof(int32_t));
    for (int f = 0; f < cat->n_fields; f++)
        bl_tensor_copy(bl_tile_catalog_add(c, cat->fields[f].name), cat->fields[f].t);
    return c;
}

int64_t bl_tile_catalog_total_sources(const bl_tile_catalog *cat)
{
    int64_t n = 0;
    for (int64_t t = 0; t < bl_tile_catalog_n_tiles(cat); t++) n += cat->n_sources[t];
    return n;
}

/* source_type of a slot, -1 if the catalog has no source_type field */
static int bl_slot_type(const bl_tensor *st, int64_t slot)
{
    return st ? (int)lrint((double)st->data[slot]) : -1;
}

void bl_tile_catalog_on_mask(const bl_tile_catalog *cat, uint8_t *out)
{
    for (int64_t t = 0; t < bl_tile_catalog_n_tiles(cat); t++)
        for (int64_t s = 0; s < cat->S; s++) out[t * cat->S + s] = s < cat->n_sources[t];
}

void bl_tile_catalog_star_mask(const bl_tile_catalog *cat, uint8_t *out)
{
    const bl_tensor *st = bl_tile_catalog_get(cat, "source_type");
    for (int64_t t = 0; t < bl_tile_catalog_n_tiles(cat); t++)
        for (int64_t s = 0; s < cat->S; s++) {
            int64_t slot = t * cat->S + s;
            int type = bl_slot_type(st, slot);
            out[slot] = s < cat->n_sources[t] && type <= 0;
        }
}

void bl_tile_catalog_galaxy_mask(const bl_tile_catalog *cat, uint8_t *out)
{
    const bl_tensor *st = bl_tile_catalog_get(cat, "source_type");
    for (int64_t t = 0; t < bl_tile_catalog_n_tiles(cat); t++)
        for (int64_t s = 0; s < cat->S; s++) {
            int64_t slot = t * cat->S + s;
            out[slot] = s < cat->n_sources[t] && bl_slot_type(st, slot) == 1;
        }
}

/* on_flux of slot `slot` (flattened (B, ht, wt, S) index), given whether it is on */
static bl_real bl_slot_on_flux(const bl_tensor *st, const bl_tensor *sf, const bl_tensor *gf,
                               int nb, int64_t slot, int on, int band)
{
    if (!on) return 0;
    const bl_tensor *src = bl_slot_type(st, slot) == 1 ? gf : sf;
    return src ? src->data[slot * nb + band] : 0;
}

bl_real bl_tile_catalog_on_flux(const bl_tile_catalog *cat, int64_t b, int64_t i, int64_t j,
                                int64_t s, int band)
{
    BL_ASSERT(band >= 0 && band < cat->n_bands, "on_flux: band %d of %d", band, cat->n_bands);
    int64_t t = bl_tile_index(cat, b, i, j);
    return bl_slot_on_flux(bl_tile_catalog_get(cat, "source_type"),
                           bl_tile_catalog_get(cat, "star_fluxes"),
                           bl_tile_catalog_get(cat, "galaxy_fluxes"), cat->n_bands,
                           t * cat->S + s, s < cat->n_sources[t], band);
}

void bl_tile_catalog_on_fluxes(const bl_tile_catalog *cat, bl_real *out)
{
    const bl_tensor *st = bl_tile_catalog_get(cat, "source_type");
    const bl_tensor *sf = bl_tile_catalog_get(cat, "star_fluxes");
    const bl_tensor *gf = bl_tile_catalog_get(cat, "galaxy_fluxes");
    int nb = cat->n_bands;
    for (int64_t t = 0; t < bl_tile_catalog_n_tiles(cat); t++)
        for (int64_t s = 0; s < cat->S; s++) {
            int64_t slot = t * cat->S + s;
            for (int c = 0; c < nb; c++)
                out[slot * nb + c] = bl_slot_on_flux(st, sf, gf, nb, slot, s < cat->n_sources[t], c);
        }
}

double bl_flux_to_mag(double nmgy) { return 22.5 - 2.5 * log10(nmgy); }
double bl_mag_to_flux(double mag) { return pow(10.0, (22.5 - mag) / 2.5); }

/* log10(0) = -inf gives +inf for off slots; log10(<0) = NaN, as the original */
static void bl_mags_from_fluxes(bl_real *v, int64_t n)
{
    for (int64_t i = 0; i < n; i++) v[i] = (bl_real)bl_flux_to_mag((double)v[i]);
}

void bl_tile_catalog_magnitudes(const bl_tile_catalog *cat, bl_real *out)
{
    bl_tile_catalog_on_fluxes(cat, out);
    bl_mags_from_fluxes(out, bl_tile_catalog_n_tiles(cat) * cat->S * cat->n_bands);
}

/* Copy slot `from` of every field of `src` into slot `to` of the same field of `dst` (both
 * flattened (B, ht, wt, S) indices of their catalogs); dst has the same field set. */
static void bl_copy_slot(bl_tile_catalog *dst, int64_t to, const bl_tile_catalog *src, int64_t from)
{
    for (int f = 0; f < src->n_fields; f++) {
        int k = src->fields[f].k;
        bl_tensor *d = bl_tile_catalog_require(dst, src->fields[f].name);
        memcpy(d->data + to * k, src->fields[f].t->data + from * k, (size_t)k * sizeof(bl_real));
    }
}

/* A catalog with the geometry of `cat` but S slots, every field of `cat` present and zero. */
static bl_tile_catalog *bl_tile_catalog_like(const bl_tile_catalog *cat, int64_t S)
{
    bl_tile_catalog *c = bl_tile_catalog_alloc(cat->B, cat->ht, cat->wt, S, cat->tile_slen,
                                               cat->n_bands);
    for (int f = 0; f < cat->n_fields; f++) bl_tile_catalog_add(c, cat->fields[f].name);
    return c;
}

/* Slot order of one tile by on_flux[band], descending; on slots always come before off slots
 * (so an on source with flux <= 0 does not break the packing), ties keep slot order. Insertion
 * sort: S is tiny (1 in the base config). */
static void bl_tile_order(const bl_tile_catalog *cat, int64_t t, int band, const bl_tensor *st,
                          const bl_tensor *sf, const bl_tensor *gf, int64_t *order, bl_real *key)
{
    int64_t S = cat->S;
    for (int64_t s = 0; s < S; s++) {
        order[s] = s;
        key[s] = bl_slot_on_flux(st, sf, gf, cat->n_bands, t * S + s, s < cat->n_sources[t], band);
    }
    for (int64_t a = 1; a < S; a++) {
        int64_t o = order[a];
        int on_o = o < cat->n_sources[t];
        int64_t p = a - 1;
        while (p >= 0) {
            int64_t q = order[p];
            int on_q = q < cat->n_sources[t];
            int before = on_o > on_q || (on_o == on_q && key[o] > key[q]);
            if (!before) break;
            order[p + 1] = q;
            p--;
        }
        order[p + 1] = o;
    }
}

bl_tile_catalog *bl_tile_catalog_sort_by_flux(const bl_tile_catalog *cat, int band)
{
    BL_ASSERT(band >= 0 && band < cat->n_bands, "sort_by_flux: band %d of %d", band, cat->n_bands);
    bl_tile_catalog *out = bl_tile_catalog_like(cat, cat->S);
    memcpy(out->n_sources, cat->n_sources, (size_t)bl_tile_catalog_n_tiles(cat) * sizeof(int32_t));
    const bl_tensor *st = bl_tile_catalog_get(cat, "source_type");
    const bl_tensor *sf = bl_tile_catalog_get(cat, "star_fluxes");
    const bl_tensor *gf = bl_tile_catalog_get(cat, "galaxy_fluxes");
    int64_t *order = bl_malloc((size_t)(cat->S + 1) * sizeof *order);
    bl_real *key = bl_malloc((size_t)(cat->S + 1) * sizeof *key);
    for (int64_t t = 0; t < bl_tile_catalog_n_tiles(cat); t++) {
        bl_tile_order(cat, t, band, st, sf, gf, order, key);
        for (int64_t s = 0; s < cat->S; s++) bl_copy_slot(out, t * cat->S + s, cat, t * cat->S + order[s]);
    }
    free(order);
    free(key);
    return out;
}

bl_tile_catalog *bl_tile_catalog_brightest_per_tile(const bl_tile_catalog *cat, int band,
                                                    int exclude_num, int top_k)
{
    BL_ASSERT(exclude_num >= 0 && top_k >= 1, "brightest_per_tile: exclude_num %d top_k %d",
              exclude_num, top_k);
    if (cat->S == 1 && top_k == 1 && exclude_num == 0) return bl_tile_catalog_copy(cat);
    if (exclude_num >= cat->S) {
        bl_tile_catalog *c = bl_tile_catalog_copy(cat);
        memset(c->n_sources, 0, (size_t)bl_tile_catalog_n_tiles(c) * sizeof(int32_t));
        return c;
    }
    bl_tile_catalog *sorted = bl_tile_catalog_sort_by_flux(cat, band);
    int64_t kept = cat->S - exclude_num < top_k ? cat->S - exclude_num : top_k;
    bl_tile_catalog *out = bl_tile_catalog_like(cat, kept);
    for (int64_t t = 0; t < bl_tile_catalog_n_tiles(cat); t++) {
        int32_t n = cat->n_sources[t] - exclude_num;
        out->n_sources[t] = n < 0 ? 0 : (n > top_k ? top_k : n);
        for (int64_t s = 0; s < kept; s++)
            bl_copy_slot(out, t * kept + s, sorted, t * cat->S + exclude_num + s);
    }
    bl_tile_catalog_free(sorted);
    return out;
}

bl_tile_catalog *bl_tile_catalog_filter_by_flux(const bl_tile_catalog *cat, double min_flux,
                                                double max_flux, int band)
{
    bl_tile_catalog *sorted = bl_tile_catalog_sort_by_flux(cat, band);
    bl_tile_catalog *out = bl_tile_catalog_like(cat, cat->S);
    /* fields that survive the filter untouched (in their sorted order) */
    for (int f = 0; f < sorted->n_fields; f++) {
        const bl_catalog_field_info *info = bl_catalog_field_find(sorted->fields[f].name);
        if (info && (info->flags & BL_FIELD_KEEP_ON_FILTER))
            bl_tensor_copy(bl_tile_catalog_require(out, sorted->fields[f].name), sorted->fields[f].t);
    }
    const bl_tensor *st = bl_tile_catalog_get(sorted, "source_type");
    const bl_tensor *sf = bl_tile_catalog_get(sorted, "star_fluxes");
    const bl_tensor *gf = bl_tile_catalog_get(sorted, "galaxy_fluxes");
    for (int64_t t = 0; t < bl_tile_catalog_n_tiles(cat); t++) {
        int32_t kept = 0;
        for (int64_t s = 0; s < cat->S; s++) {
            int64_t slot = t * cat->S + s;
            bl_real flux = bl_slot_on_flux(st, sf, gf, cat->n_bands, slot, s < sorted->n_sources[t], band);
            if (!(s < sorted->n_sources[t] && flux > min_flux && flux < max_flux)) continue;
            int64_t to = t * cat->S + kept++;
            for (int f = 0; f < sorted->n_fields; f++) {
                const bl_catalog_field_info *info = bl_catalog_field_find(sorted->fields[f].name);
                if (info && (info->flags & BL_FIELD_KEEP_ON_FILTER)) continue;
                int k = sorted->fields[f].k;
                memcpy(out->fields[f].t->data + to * k, sorted->fields[f].t->data + slot * k,
                       (size_t)k * sizeof(bl_real));
            }
        }
        out->n_sources[t] = kept;
    }
    bl_tile_catalog_free(sorted);
    return out;
}

bl_tile_catalog *bl_tile_catalog_crop(const bl_tile_catalog *cat, int64_t h0, int64_t h1,
                                      int64_t w0, int64_t w1)
{
    BL_ASSERT(0 <= h0 && h0 <= h1 && h1 <= cat->ht && 0 <= w0 && w0 <= w1 && w1 <= cat->wt,
              "tile catalog crop: rows [%lld, %lld) cols [%lld, %lld) of a %lld x %lld tile grid",
              (long long)h0, (long long)h1, (long long)w0, (long long)w1, (long long)cat->ht,
              (long long)cat->wt);
    bl_tile_catalog *out = bl_tile_catalog_alloc(cat->B, h1 - h0, w1 - w0, cat->S, cat->tile_slen,
                                                 cat->n_bands);
    for (int f = 0; f < cat->n_fields; f++) bl_tile_catalog_add(out, cat->fields[f].name);
    for (int64_t b = 0; b < cat->B; b++)
        for (int64_t i = h0; i < h1; i++)
            for (int64_t j = w0; j < w1; j++) {
                int64_t from = bl_tile_index(cat, b, i, j), to = bl_tile_index(out, b, i - h0, j - w0);
                out->n_sources[to] = cat->n_sources[from];
                for (int64_t s = 0; s < cat->S; s++)
                    bl_copy_slot(out, to * cat->S + s, cat, from * cat->S + s);
            }
    return out;
}

bl_tile_catalog *bl_tile_catalog_symmetric_crop(const bl_tile_catalog *cat, int64_t t)
{
    return bl_tile_catalog_crop(cat, t, cat->ht - t, t, cat->wt - t);
}

bl_tile_catalog *bl_tile_catalog_union(const bl_tile_catalog *a, const bl_tile_catalog *b)
{
    BL_ASSERT(a->S == 1 && b->S == 1, "tile catalog union: needs S == 1 in both (got %lld, %lld)",
              (long long)a->S, (long long)b->S);
    BL_ASSERT(a->B == b->B && a->ht == b->ht && a->wt == b->wt && a->tile_slen == b->tile_slen &&
                  a->n_bands == b->n_bands,
              "tile catalog union: geometry (%lld, %lld, %lld, slen %d, %d bands) vs "
              "(%lld, %lld, %lld, slen %d, %d bands)",
              (long long)a->B, (long long)a->ht, (long long)a->wt, a->tile_slen, a->n_bands,
              (long long)b->B, (long long)b->ht, (long long)b->wt, b->tile_slen, b->n_bands);
    bl_tile_catalog *out = bl_tile_catalog_like(a, 2);
    for (int f = 0; f < b->n_fields; f++) bl_tile_catalog_add(out, b->fields[f].name);
    for (int64_t t = 0; t < bl_tile_catalog_n_tiles(a); t++) {
        out->n_sources[t] = a->n_sources[t] + b->n_sources[t];
        int a_first = a->n_sources[t] > 0;
        for (int f = 0; f < out->n_fields; f++) {
            int k = out->fields[f].k;
            const bl_tensor *ta = bl_tile_catalog_get(a, out->fields[f].name);
            const bl_tensor *tb = bl_tile_catalog_get(b, out->fields[f].name);
            bl_real *d = out->fields[f].t->data + t * 2 * k;
            bl_real *da = a_first ? d : d + k, *db = a_first ? d + k : d;
            for (int c = 0; c < k; c++) {
                da[c] = ta ? ta->data[t * k + c] : 0;
                db[c] = tb ? tb->data[t * k + c] : 0;
            }
        }
    }
    return out;
}

void bl_tile_catalog_plocs(const bl_tile_catalog *cat, bl_real *out)
{
    const bl_tensor *locs = bl_tile_catalog_get(cat, "locs");
    for (int64_t b = 0; b < cat->B; b++)
        for (int64_t i = 0; i < cat->ht; i++)
            for (int64_t j = 0; j < cat->wt; j++)
                for (int64_t s = 0; s < cat->S; s++) {
                    int64_t o = bl_tile_offset(cat, b, i, j, s, 2, 0);
                    bl_real r = locs ? locs->data[o] : 0, c = locs ? locs->data[o + 1] : 0;
                    out[o] = r * cat->tile_slen + (bl_real)(i * cat->tile_slen);
                    out[o + 1] = c * cat->tile_slen + (bl_real)(j * cat->tile_slen);
                }
}

bl_full_catalog *bl_tile_catalog_to_full(const bl_tile_catalog *cat)
{
    int64_t tiles_per_image = cat->ht * cat->wt, M = 0;
    for (int64_t b = 0; b < cat->B; b++) {
        int64_t n = 0;
        for (int64_t t = 0; t < tiles_per_image; t++) n += cat->n_sources[b * tiles_per_image + t];
        if (n > M) M = n;
    }
    bl_full_catalog *full = bl_full_catalog_alloc(cat->B, M, bl_tile_catalog_height(cat),
                                                  bl_tile_catalog_width(cat), cat->n_bands);
    for (int f = 0; f < cat->n_fields; f++)
        if (bl_full_catalog_accepts(cat->fields[f].name)) bl_full_catalog_add(full, cat->fields[f].name);
    bl_real *plocs = bl_malloc((size_t)(bl_tile_catalog_n_tiles(cat) * cat->S * 2 + 1) * sizeof *plocs);
    bl_tile_catalog_plocs(cat, plocs);
    for (int64_t b = 0; b < cat->B; b++) {
        int64_t m = 0;
        for (int64_t t = b * tiles_per_image; t < (b + 1) * tiles_per_image; t++)
            for (int64_t s = 0; s < cat->n_sources[t] && s < cat->S; s++) {
                int64_t slot = t * cat->S + s, to = b * M + m++;
                full->plocs->data[2 * to] = plocs[2 * slot];
                full->plocs->data[2 * to + 1] = plocs[2 * slot + 1];
                for (int f = 0; f < cat->n_fields; f++) {
                    int k = cat->fields[f].k;
                    bl_tensor *d = bl_full_catalog_get(full, cat->fields[f].name);
                    if (!d) continue; /* locs */
                    memcpy(d->data + to * k, cat->fields[f].t->data + slot * k, (size_t)k * sizeof(bl_real));
                }
            }
        full->n_sources[b] = (int32_t)m;
    }
    free(plocs);
    return full;
}

/* ---------------------------------------------------------------------------------------- */
/* Full catalog                                                                              */

bl_full_catalog *bl_full_catalog_alloc(int64_t B, int64_t M, int64_t height, int64_t width,
                                       int n_bands)
{
    BL_ASSERT(B >= 0 && M >= 0 && height >= 0 && width >= 0 && n_bands > 0,
              "bl_full_catalog_alloc: B %lld M %lld %lld x %lld n_bands %d", (long long)B,
              (long long)M, (long long)height, (long long)width, n_bands);
    bl_full_catalog *c = bl_calloc(1, sizeof *c);
    c->B = B;
    c->M = M;
    c->height = height;
    c->width = width;
    c->n_bands = n_bands;
    c->n_sources = bl_calloc((size_t)B + 1, sizeof(int32_t));
    c->plocs = bl_tensor_alloc("plocs", 3, BL_SHAPE(B, M, 2), 0);
    return c;
}

void bl_full_catalog_free(bl_full_catalog *cat)
{
    if (!cat) return;
    free(cat->n_sources);
    bl_tensor_free(cat->plocs);
    bl_fields_free(cat->fields, cat->n_fields);
    free(cat);
}

bl_tensor *bl_full_catalog_get(const bl_full_catalog *cat, const char *name)
{
    bl_catalog_field *f = bl_fields_lookup(cat->fields, cat->n_fields, name);
    return f ? f->t : NULL;
}

bl_tensor *bl_full_catalog_require(const bl_full_catalog *cat, const char *name)
{
    bl_tensor *t = bl_full_catalog_get(cat, name);
    if (!t) {
        char names[512];
        bl_fields_names(cat->fields, cat->n_fields, names, sizeof names);
        bl_abort(__FILE__, __LINE__, "full catalog: no field '%s' (fields present: %s)", name,
                 cat->n_fields ? names : "none");
    }
    return t;
}

int bl_full_catalog_accepts(const char *name)
{
    return strcmp(name, "locs") != 0 && bl_catalog_field_find(name) != NULL;
}

bl_tensor *bl_full_catalog_add(bl_full_catalog *cat, const char *name)
{
    BL_ASSERT(strcmp(name, "locs") != 0,
              "full catalog: 'locs' are tile fractions; a full catalog holds pixel plocs");
    int k = bl_checked_width(name, cat->n_bands);
    bl_tensor *t = bl_full_catalog_get(cat, name);
    if (t) return t;
    return bl_fields_append(&cat->fields, &cat->n_fields, &cat->cap_fields, name, k, 2,
                            BL_SHAPE(cat->B, cat->M));
}

void bl_full_catalog_on_mask(const bl_full_catalog *cat, uint8_t *out)
{
    for (int64_t b = 0; b < cat->B; b++)
        for (int64_t m = 0; m < cat->M; m++) out[b * cat->M + m] = m < cat->n_sources[b];
}

void bl_full_catalog_on_fluxes(const bl_full_catalog *cat, bl_real *out)
{
    const bl_tensor *fl = bl_full_catalog_get(cat, "fluxes");
    const bl_tensor *st = bl_full_catalog_get(cat, "source_type");
    const bl_tensor *sf = bl_full_catalog_get(cat, "star_fluxes");
    const bl_tensor *gf = bl_full_catalog_get(cat, "galaxy_fluxes");
    int nb = cat->n_bands;
    for (int64_t b = 0; b < cat->B; b++)
        for (int64_t m = 0; m < cat->M; m++) {
            int64_t slot = b * cat->M + m;
            int on = m < cat->n_sources[b];
            for (int c = 0; c < nb; c++)
                out[slot * nb + c] = !on ? 0
                                     : fl ? fl->data[slot * nb + c]
                                          : bl_slot_on_flux(st, sf, gf, nb, slot, 1, c);
        }
}

void bl_full_catalog_magnitudes(const bl_full_catalog *cat, bl_real *out)
{
    bl_full_catalog_on_fluxes(cat, out);
    bl_mags_from_fluxes(out, cat->B * cat->M * cat->n_bands);
}

bl_status bl_full_catalog_to_tile(const bl_full_catalog *cat, int tile_slen, int max_per_tile,
                                  int ignore_extra, int filter_oob, bl_tile_catalog **out)
{
    *out = NULL;
    BL_ASSERT(tile_slen > 0 && max_per_tile >= 1, "to_tile: tile_slen %d max_per_tile %d",
              tile_slen, max_per_tile);
    /* as BLISS: the tile counts round up, the last row/column of tiles may be partial */
    int64_t ht = (cat->height + tile_slen - 1) / tile_slen, wt = (cat->width + tile_slen - 1) / tile_slen;
    bl_tile_catalog *tc = bl_tile_catalog_alloc(cat->B, ht, wt, max_per_tile, tile_slen, cat->n_bands);
    bl_tensor *locs = bl_tile_catalog_add(tc, "locs");
    for (int f = 0; f < cat->n_fields; f++) bl_tile_catalog_add(tc, cat->fields[f].name);
    for (int64_t b = 0; b < cat->B; b++)
        for (int64_t m = 0; m < cat->n_sources[b] && m < cat->M; m++) {
            double r = cat->plocs->data[2 * (b * cat->M + m)];
            double c = cat->plocs->data[2 * (b * cat->M + m) + 1];
            if (filter_oob && !(r > 0 && r < (double)cat->height && c > 0 && c < (double)cat->width))
                continue;
            if (!(r >= 0 && r < (double)cat->height && c >= 0 && c < (double)cat->width)) {
                bl_tile_catalog_free(tc);
                return bl_error(BL_ERR_RANGE,
                                "to_tile: source %lld of image %lld at (%g, %g) is outside the "
                                "%lld x %lld image (use filter_oob)",
                                (long long)m, (long long)b, r, c, (long long)cat->height,
                                (long long)cat->width);
            }
            int64_t i = (int64_t)(r / tile_slen), j = (int64_t)(c / tile_slen);
            int64_t t = bl_tile_index(tc, b, i, j);
            if (tc->n_sources[t] >= max_per_tile) {
                if (ignore_extra) continue;
                bl_tile_catalog_free(tc);
                return bl_error(BL_ERR_RANGE,
                                "to_tile: tile (%lld, %lld) of image %lld holds more than "
                                "max_sources_per_tile = %d sources",
                                (long long)i, (long long)j, (long long)b, max_per_tile);
            }
            int64_t slot = t * max_per_tile + tc->n_sources[t]++;
            locs->data[2 * slot] = (bl_real)((r - (double)(i * tile_slen)) / tile_slen);
            locs->data[2 * slot + 1] = (bl_real)((c - (double)(j * tile_slen)) / tile_slen);
            for (int f = 0; f < cat->n_fields; f++) {
                int k = cat->fields[f].k;
                memcpy(bl_tile_catalog_require(tc, cat->fields[f].name)->data + slot * k,
                       cat->fields[f].t->data + (b * cat->M + m) * k, (size_t)k * sizeof(bl_real));
            }
        }
    *out = tc;
    return BL_OK;
}
