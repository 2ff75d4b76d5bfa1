/* The variational-distribution spec (an ordered factor list), make_dist, nll and sample. */
#include "dists/vardist.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/ops.h"
#include "lib/registry.h"

/* ---------------------------------------------------------------------------------------- */
/* The spec                                                                                  */

bl_vardist_spec *bl_vardist_spec_alloc(int n_bands, int tile_slen)
{
    BL_ASSERT(n_bands > 0 && tile_slen > 0, "bl_vardist_spec_alloc: n_bands %d tile_slen %d",
              n_bands, tile_slen);
    bl_vardist_spec *s = bl_calloc(1, sizeof *s);
    s->n_bands = n_bands;
    s->tile_slen = tile_slen;
    return s;
}

void bl_vardist_spec_free(bl_vardist_spec *spec)
{
    if (!spec) return;
    for (int i = 0; i < spec->n_factors; i++) {
        free((char *)spec->factors[i].name);
        free((char *)spec->factors[i].field);
    }
    free(spec->factors);
    free(spec->raw_offset);
    free(spec);
}

const bl_factor *bl_vardist_spec_find(const bl_vardist_spec *spec, const char *name)
{
    int i = bl_vardist_spec_index(spec, name);
    return i < 0 ? NULL : &spec->factors[i];
}

int bl_vardist_spec_index(const bl_vardist_spec *spec, const char *name)
{
    for (int i = 0; i < spec->n_factors; i++)
        if (strcmp(spec->factors[i].name, name) == 0) return i;
    return -1;
}

/* k of the factor's field ("n_sources" is one column), -1 if unknown */
static int bl_factor_field_width(const bl_vardist_spec *spec, const char *field)
{
    if (strcmp(field, BL_FIELD_N_SOURCES) == 0) return 1;
    return bl_catalog_field_width(field, spec->n_bands);
}

/* ---------------------------------------------------------------------------------------- */
/* The mask table                                                                            */

static const bl_factor_mask bl_mask_always = {"always", NULL};
static const bl_factor_mask bl_mask_on = {"on", bl_tile_catalog_on_mask};
static const bl_factor_mask bl_mask_star = {"star", bl_tile_catalog_star_mask};
static const bl_factor_mask bl_mask_galaxy = {"galaxy", bl_tile_catalog_galaxy_mask};
const bl_factor_mask *const BL_MASK_ALWAYS = &bl_mask_always;
const bl_factor_mask *const BL_MASK_ON = &bl_mask_on;
const bl_factor_mask *const BL_MASK_STAR = &bl_mask_star;
const bl_factor_mask *const BL_MASK_GALAXY = &bl_mask_galaxy;

static const char *bl_mask_name(const void *m) { return ((const bl_factor_mask *)m)->name; }
static const void *const bl_builtin_masks[] = {&bl_mask_always, &bl_mask_on, &bl_mask_star, &bl_mask_galaxy};
static const void *bl_registered_masks[32]; /* capacity for registered masks */
static bl_registry bl_masks = BL_REGISTRY_INIT("factor mask", bl_builtin_masks, bl_registered_masks,
                                               bl_mask_name);

bl_status bl_factor_mask_register(const bl_factor_mask *mask) { return bl_registry_add(&bl_masks, mask); }
const bl_factor_mask *bl_factor_mask_find(const char *name) { return bl_registry_find(&bl_masks, name); }
int bl_factor_mask_count(void) { return bl_registry_count(&bl_masks); }
void bl_factor_mask_names(char *buf, size_t n) { bl_registry_names(&bl_masks, buf, n); }
const bl_factor_mask *bl_factor_mask_at(int i) { return bl_registry_at(&bl_masks, i); }

/* ---------------------------------------------------------------------------------------- */

/* bl_error with *bad_key = key */
#define BL_FACTOR_FAIL(key, ...) (bad_key ? (void)(*bad_key = (key)) : (void)0, bl_error(BL_ERR_ARG, __VA_ARGS__))
/* the same, in front of the message a callee recorded */
#define BL_FACTOR_CONTEXT(key, ...) (bad_key ? (void)(*bad_key = (key)) : (void)0, bl_error_context(BL_ERR_ARG, __VA_ARGS__))

bl_status bl_vardist_spec_check(const bl_vardist_spec *spec, const bl_factor *f, const char **bad_key)
{
    if (!f->name || !f->name[0]) return BL_FACTOR_FAIL("name", "factor: empty name");
    const char *name = f->name;
    if (bl_vardist_spec_find(spec, name))
        return BL_FACTOR_FAIL("name", "factor '%s': a factor of that name is already in the spec", name);
    if (!f->kind) return BL_FACTOR_FAIL("kind", "factor '%s': no distribution kind", name);
    if (bl_dist_kind_check(f->kind) != BL_OK) return BL_FACTOR_CONTEXT("kind", "factor '%s'", name);
    for (int i = f->kind->n_opts; i < BL_DIST_MAX_OPTS; i++)
        if (f->opts[i] != 0)
            return BL_FACTOR_FAIL("kind", "factor '%s': kind '%s' takes %d option%s, but opts[%d] = %g",
                                  name, f->kind->name, f->kind->n_opts, f->kind->n_opts == 1 ? "" : "s",
                                  i, f->opts[i]);
    if (bl_dist_kind_check_opts(f->kind, f->opts) != BL_OK) {
        /* the last option is the one that makes a set of valid-looking values inconsistent */
        const char *key = f->kind->n_opts ? f->kind->opt_names[f->kind->n_opts - 1] : "kind";
        for (int i = 0; i < f->kind->n_opts; i++)
            if (!isfinite(f->opts[i])) key = f->kind->opt_names[i];
        return BL_FACTOR_CONTEXT(key, "factor '%s'", name);
    }
    if (!f->field || !f->field[0]) return BL_FACTOR_FAIL("field", "factor '%s': no catalog field", name);
    int width = bl_factor_field_width(spec, f->field);
    if (width < 0)
        return BL_FACTOR_FAIL("field",
                              "factor '%s': unknown catalog field '%s' (define it in the config's "
                              "'fields' list or register it with bl_catalog_field_register, or use \"%s\")",
                              name, f->field, BL_FIELD_N_SOURCES);
    if (f->column < 0 || f->column + f->kind->value_dim > width)
        return BL_FACTOR_FAIL("column",
                              "factor '%s': columns [%d, %d) of field '%s' do not fit its width %d "
                              "(kind '%s' explains %d column%s)",
                              name, f->column, f->column + f->kind->value_dim, f->field, width,
                              f->kind->name, f->kind->value_dim, f->kind->value_dim > 1 ? "s" : "");
    if (f->mask && !f->mask->name)
        return BL_FACTOR_FAIL("mask", "factor '%s': the mask has no name", name);
    if ((unsigned)f->point > BL_POINT_MEDIAN)
        return BL_FACTOR_FAIL("point", "factor '%s': point %d out of range", name, (int)f->point);
    if (!isfinite(f->offset)) return BL_FACTOR_FAIL("offset", "factor '%s': offset %g", name, f->offset);
    return BL_OK;
}
#undef BL_FACTOR_FAIL

bl_status bl_vardist_spec_add(bl_vardist_spec *spec, const bl_factor *f)
{
    bl_status st = bl_vardist_spec_check(spec, f, NULL);
    if (st != BL_OK) return st;
    if (spec->n_factors == spec->cap_factors) {
        spec->cap_factors = spec->cap_factors ? 2 * spec->cap_factors : 32;
        spec->factors = bl_realloc(spec->factors, (size_t)spec->cap_factors * sizeof *spec->factors);
        spec->raw_offset = bl_realloc(spec->raw_offset, (size_t)spec->cap_factors * sizeof(int));
    }
    bl_factor *g = &spec->factors[spec->n_factors];
    *g = *f;
    g->name = bl_strdup(f->name);
    g->field = bl_strdup(f->field);
    if (!g->mask) g->mask = BL_MASK_ALWAYS;
    spec->raw_offset[spec->n_factors++] = spec->dim;
    spec->dim += f->kind->dim;
    return BL_OK;
}

/* docs/behaviour.md §3.1: the 38-parameter order for u, g, r, i, z */
bl_vardist_spec *bl_vardist_spec_alloc_sdss(int n_bands, int tile_slen)
{
    static const char *const band_names = "ugriz";
    static const struct {
        const char *name;
        double high;
        int lognormal;
    } galsim[6] = {
        {"galsim_disk_frac", 1, 0}, {"galsim_beta_radians", M_PI, 0}, {"galsim_disk_q", 1, 0},
        {"galsim_a_d", 0, 1},       {"galsim_bulge_q", 1, 0},         {"galsim_a_b", 0, 1},
    };
    bl_vardist_spec *s = bl_vardist_spec_alloc(n_bands, tile_slen);
    int bad = 0;
    bad |= bl_vardist_spec_add(s, &(bl_factor){.name = "on_prob", .kind = bl_dist_bernoulli,
                                               .field = BL_FIELD_N_SOURCES, .mask = BL_MASK_ALWAYS});
    bad |= bl_vardist_spec_add(s, &(bl_factor){.name = "loc", .kind = bl_dist_tdbn, .field = "locs",
                                               .mask = BL_MASK_ON});
    bad |= bl_vardist_spec_add(s, &(bl_factor){.name = "galaxy_prob", .kind = bl_dist_bernoulli,
                                               .field = "source_type", .mask = BL_MASK_ON});
    for (int k = 0; k < 6; k++) {
        bl_factor f = {.name = galsim[k].name, .field = "galaxy_params", .column = k,
                       .mask = BL_MASK_GALAXY, .point = BL_POINT_MEDIAN, .offset = 1e-9};
        f.kind = galsim[k].lognormal ? bl_dist_lognormal : bl_dist_logitnormal;
        if (!galsim[k].lognormal) f.opts[1] = galsim[k].high; /* low = 0, high */
        bad |= bl_vardist_spec_add(s, &f);
    }
    char name[64];
    for (int type = 0; type < 2; type++)
        for (int b = 0; b < n_bands; b++) {
            if (n_bands <= 5)
                snprintf(name, sizeof name, "%s_flux_%c", type ? "galaxy" : "star", band_names[b]);
            else
                snprintf(name, sizeof name, "%s_flux_%d", type ? "galaxy" : "star", b);
            /* star fluxes report the mode, galaxy fluxes the median (docs/behaviour.md §3.4) */
            bad |= bl_vardist_spec_add(
                s, &(bl_factor){.name = name, .kind = bl_dist_lognormal,
                                .field = type ? "galaxy_fluxes" : "star_fluxes", .column = b,
                                .mask = type ? BL_MASK_GALAXY : BL_MASK_STAR,
                                .point = type ? BL_POINT_MEDIAN : BL_POINT_MODE, .offset = 1e-9});
        }
    BL_ASSERT(!bad, "bl_vardist_spec_alloc_sdss: %s", bl_error_message());
    return s;
}

const char *bl_factor_point_name(bl_factor_point point)
{
    return point == BL_POINT_MEDIAN ? "median" : "mode";
}

void bl_vardist_spec_print(FILE *f, const bl_vardist_spec *spec)
{
    fprintf(f, "%3s  %-20s %-21s %3s  %-7s  %-18s %-7s %s\n", "#", "name", "kind", "dim", "raw",
            "field[columns]", "mask", "point");
    for (int i = 0; i < spec->n_factors; i++) {
        const bl_factor *g = &spec->factors[i];
        char raw[32], kind[48], field[96];
        int r0 = spec->raw_offset[i], r1 = r0 + g->kind->dim - 1;
        if (r1 > r0) snprintf(raw, sizeof raw, "%d-%d", r0, r1); else snprintf(raw, sizeof raw, "%d", r0);
        int used = snprintf(kind, sizeof kind, "%s", g->kind->name);
        for (int o = 0; o < g->kind->n_opts && used < (int)sizeof kind; o++)
            used += snprintf(kind + used, sizeof kind - (size_t)used, "%s%.4g%s", o ? "," : "(",
                             g->opts[o], o == g->kind->n_opts - 1 ? ")" : "");
        if (strcmp(g->field, BL_FIELD_N_SOURCES) == 0)
            snprintf(field, sizeof field, "%s", g->field);
        else if (g->kind->value_dim == 1)
            snprintf(field, sizeof field, "%s[%d]", g->field, g->column);
        else
            snprintf(field, sizeof field, "%s[%d:%d]", g->field, g->column, g->column + g->kind->value_dim);
        fprintf(f, "%3d  %-20s %-21s %3d  %-7s  %-18s %-7s %s\n", i, g->name, kind, g->kind->dim, raw,
                field, g->mask->name, bl_factor_point_name(g->point));
    }
    fprintf(f, "total P = %d\n", spec->dim);
}

/* ---------------------------------------------------------------------------------------- */
/* make_dist, nll, sample                                                                    */

bl_vardist *bl_vardist_spec_make_dist(bl_ctx *ctx, const bl_vardist_spec *spec, bl_tensor *x_cat)
{
    char sh[96];
    BL_ASSERT(x_cat->ndim == 4 && x_cat->shape[3] == spec->dim,
              "make_dist: x_cat %s, expected (B, ht, wt, P = %d); is the encoder's output width "
              "taken from bl_vardist_spec_dim?",
              bl_shape_str(x_cat, sh, sizeof sh), spec->dim);
    BL_ASSERT(spec->n_factors > 0, "make_dist: the spec has no factors");
    bl_vardist *d = bl_scratch(ctx, sizeof *d);
    d->spec = spec;
    d->B = x_cat->shape[0];
    d->ht = x_cat->shape[1];
    d->wt = x_cat->shape[2];
    d->x_cat = x_cat;
    d->raw = bl_scratch(ctx, (size_t)spec->n_factors * sizeof *d->raw);
    int64_t *sizes = bl_scratch(ctx, (size_t)spec->n_factors * sizeof *sizes);
    for (int i = 0; i < spec->n_factors; i++) sizes[i] = spec->factors[i].kind->dim;
    bl_split(ctx, x_cat, 3, spec->n_factors, sizes, d->raw);
    return d;
}

static int bl_is_count(const bl_factor *g) { return strcmp(g->field, BL_FIELD_N_SOURCES) == 0; }

bl_status bl_vardist_targets_make(bl_ctx *ctx, const bl_vardist_spec *spec, const bl_tile_catalog *cat,
                                  bl_vardist_targets *tg)
{
    memset(tg, 0, sizeof *tg);
    if (cat->S != 1)
        return bl_error(BL_ERR_ARG,
                        "nll: the true catalog has S = %lld sources per tile; keep the brightest "
                        "with bl_tile_catalog_brightest_per_tile(cat, band, 0, 1) first",
                        (long long)cat->S);
    if (cat->n_bands != spec->n_bands)
        return bl_error(BL_ERR_ARG, "nll: true catalog with %d bands vs a spec of %d bands",
                        cat->n_bands, spec->n_bands);
    for (int i = 0; i < spec->n_factors; i++) {
        const bl_factor *g = &spec->factors[i];
        if (!bl_is_count(g) && !bl_tile_catalog_has(cat, g->field))
            return bl_error(BL_ERR_ARG, "nll: the true catalog has no field '%s' needed by factor '%s'",
                            g->field, g->name);
    }
    const int64_t n = cat->B * cat->ht * cat->wt;
    const int64_t *tshape = BL_SHAPE(cat->B, cat->ht, cat->wt);
    tg->spec = spec;
    tg->B = cat->B;
    tg->ht = cat->ht;
    tg->wt = cat->wt;
    tg->value = bl_scratch(ctx, (size_t)spec->n_factors * sizeof *tg->value);
    tg->mask = bl_scratch(ctx, (size_t)spec->n_factors * sizeof *tg->mask);
    /* the masks the factors use, on slot 0 (S == 1), as 0/1 reals (B, ht, wt); each computed
     * once (mask[i] is shared by the factors with the same mask) */
    uint8_t *m8 = bl_scratch(ctx, (size_t)n);
    for (int i = 0; i < spec->n_factors; i++) {
        const bl_factor_mask *m = spec->factors[i].mask;
        tg->mask[i] = NULL;
        for (int j = 0; j < i && m->select && !tg->mask[i]; j++)
            if (spec->factors[j].mask == m) tg->mask[i] = tg->mask[j];
        if (!m->select || tg->mask[i]) continue;
        m->select(cat, m8);
        tg->mask[i] = bl_new(ctx, 3, tshape);
        for (int64_t t = 0; t < n; t++) tg->mask[i]->data[t] = m8[t];
    }
    for (int i = 0; i < spec->n_factors; i++) {
        const bl_factor *g = &spec->factors[i];
        const bl_dist_kind *kind = g->kind;
        int vd = kind->value_dim;
        /* a value inside the support for masked-out tiles: the kind's median at raw = 0 */
        bl_real *zero_raw = bl_scratch(ctx, (size_t)kind->dim * sizeof(bl_real));
        bl_real *safe = bl_scratch(ctx, (size_t)vd * sizeof(bl_real));
        memset(zero_raw, 0, (size_t)kind->dim * sizeof(bl_real));
        (kind->median ? kind->median : kind->mode)(g->opts, zero_raw, safe);

        bl_tensor *value = bl_new(ctx, 4, BL_SHAPE(cat->B, cat->ht, cat->wt, vd));
        const bl_tensor *field = bl_is_count(g) ? NULL : bl_tile_catalog_get(cat, g->field);
        int k = field ? (int)field->shape[4] : 1;
        const bl_tensor *mask = tg->mask[i];
        for (int64_t t = 0; t < n; t++)
            for (int c = 0; c < vd; c++) {
                bl_real v = field ? field->data[t * k + g->column + c] : (bl_real)cat->n_sources[t];
                value->data[t * vd + c] =
                    mask && mask->data[t] == 0 ? safe[c] : (bl_real)(v + g->offset);
            }
        tg->value[i] = value;
    }
    return BL_OK;
}

bl_status bl_vardist_nll_targets(bl_ctx *ctx, const bl_vardist *dist, const bl_vardist_targets *tg,
                                 bl_tensor **out)
{
    const bl_vardist_spec *spec = dist->spec;
    *out = NULL;
    BL_ASSERT(tg->spec == spec, "nll: targets made for another variational-distribution spec");
    if (tg->B != dist->B || tg->ht != dist->ht || tg->wt != dist->wt)
        return bl_error(BL_ERR_ARG, "nll: true catalog (%lld, %lld, %lld) vs distribution (%lld, %lld, %lld)",
                        (long long)tg->B, (long long)tg->ht, (long long)tg->wt, (long long)dist->B,
                        (long long)dist->ht, (long long)dist->wt);
    const int64_t n = dist->B * dist->ht * dist->wt;
    bl_tensor *loss = NULL;
    for (int i = 0; i < spec->n_factors; i++) {
        const bl_factor *g = &spec->factors[i];
        bl_tensor *lp = g->kind->log_prob(ctx, g->opts, dist->raw[i], tg->value[i]);
        char sh[96];
        BL_ASSERT(lp->ndim == 3 && lp->numel == n,
                  "nll: log_prob of kind '%s' (factor '%s') returned %s, expected (B, ht, wt)",
                  g->kind->name, g->name, bl_shape_str(lp, sh, sizeof sh));
        if (tg->mask[i]) lp = bl_mul(ctx, lp, tg->mask[i]);
        loss = loss ? bl_sub(ctx, loss, lp) : bl_neg(ctx, lp);
    }
    *out = loss;
    return BL_OK;
}

bl_status bl_vardist_factor_eval(bl_ctx *ctx, const bl_vardist *dist, const bl_vardist_targets *tg,
                                 int i, uint8_t *sel, double *nll, double *pit, uint8_t *hit)
{
    const bl_vardist_spec *spec = dist->spec;
    BL_ASSERT(tg->spec == spec && i >= 0 && i < spec->n_factors,
              "factor_eval: factor %d of %d, or targets made for another spec", i, spec->n_factors);
    if (tg->B != dist->B || tg->ht != dist->ht || tg->wt != dist->wt)
        return bl_error(BL_ERR_ARG, "factor_eval: true catalog (%lld, %lld, %lld) vs distribution (%lld, %lld, %lld)",
                        (long long)tg->B, (long long)tg->ht, (long long)tg->wt, (long long)dist->B,
                        (long long)dist->ht, (long long)dist->wt);
    const bl_factor *g = &spec->factors[i];
    const bl_dist_kind *kind = g->kind;
    const int vd = kind->value_dim;
    const int64_t n = dist->B * dist->ht * dist->wt;
    const int grad_was = bl_set_grad_enabled(ctx, 0);
    bl_tensor *lp = kind->log_prob(ctx, g->opts, dist->raw[i], tg->value[i]);
    bl_set_grad_enabled(ctx, grad_was);
    BL_ASSERT(lp->numel == n, "factor_eval: log_prob of kind '%s' returned %lld values for %lld tiles",
              kind->name, (long long)lp->numel, (long long)n);
    bl_real *point = bl_scratch(ctx, (size_t)vd * sizeof(bl_real));
    const bl_real *x = dist->x_cat->data;
    for (int64_t t = 0; t < n; t++) {
        const bl_real *raw = x + t * spec->dim + spec->raw_offset[i];
        const bl_real *v = tg->value[i]->data + t * vd;
        sel[t] = tg->mask[i] ? tg->mask[i]->data[t] != 0 : 1;
        nll[t] = -(double)lp->data[t];
        for (int d = 0; pit && d < vd; d++)
            pit[t * vd + d] = kind->cdf ? kind->cdf(g->opts, raw, d, (double)v[d]) : NAN;
        if (!hit) continue;
        if (g->point == BL_POINT_MEDIAN && kind->median)
            kind->median(g->opts, raw, point);
        else
            kind->mode(g->opts, raw, point);
        hit[t] = 1;
        for (int d = 0; d < vd; d++)
            hit[t] &= lrint((double)point[d]) == lrint((double)v[d] - g->offset);
    }
    return BL_OK;
}

bl_status bl_vardist_nll(bl_ctx *ctx, const bl_vardist *dist, const bl_tile_catalog *cat,
                         bl_tensor **out)
{
    bl_vardist_targets tg;
    *out = NULL;
    bl_status st = bl_vardist_targets_make(ctx, dist->spec, cat, &tg);
    return st ? st : bl_vardist_nll_targets(ctx, dist, &tg, out);
}

bl_tile_catalog *bl_vardist_sample(const bl_vardist *dist, uint64_t seed, uint64_t stream,
                                   int use_mode)
{
    const bl_vardist_spec *spec = dist->spec;
    bl_tile_catalog *cat = bl_tile_catalog_alloc(dist->B, dist->ht, dist->wt, 1, spec->tile_slen,
                                                 spec->n_bands);
    int nf = spec->n_factors, vmax = 1;
    bl_tensor **fields = bl_malloc((size_t)nf * sizeof *fields);
    for (int i = 0; i < nf; i++) {
        const bl_factor *g = &spec->factors[i];
        fields[i] = bl_is_count(g) ? NULL : bl_tile_catalog_add(cat, g->field);
        if (g->kind->value_dim > vmax) vmax = g->kind->value_dim;
    }
    int64_t tiles = dist->ht * dist->wt, P = spec->dim;
    const bl_real *x = dist->x_cat->data;
#pragma omp parallel if (dist->B * tiles > 4096)
    {
        bl_rng *rng = use_mode ? NULL : bl_rng_alloc(seed, stream);
        bl_real *v = bl_malloc((size_t)vmax * sizeof *v);
#pragma omp for schedule(static)
        for (int64_t b = 0; b < dist->B; b++) {
            if (rng) bl_rng_reseed(rng, seed, bl_rng_mix(stream, (uint64_t)b));
            for (int64_t t = b * tiles; t < (b + 1) * tiles; t++)
                for (int i = 0; i < nf; i++) {
                    const bl_factor *g = &spec->factors[i];
                    const bl_real *raw = x + t * P + spec->raw_offset[i];
                    if (!use_mode)
                        g->kind->sample(g->opts, raw, rng, v);
                    else if (g->point == BL_POINT_MEDIAN && g->kind->median)
                        g->kind->median(g->opts, raw, v);
                    else
                        g->kind->mode(g->opts, raw, v);
                    if (!fields[i]) {
                        /* a count in a catalog of S = 1 slot */
                        long c = lrint((double)v[0]);
                        cat->n_sources[t] = (int32_t)(c < 0 ? 0 : (c > 1 ? 1 : c));
                        continue;
                    }
                    int k = (int)fields[i]->shape[4];
                    memcpy(fields[i]->data + t * k + g->column, v,
                           (size_t)g->kind->value_dim * sizeof *v);
                }
        }
        free(v);
        bl_rng_free(rng);
    }
    free(fields);
    return cat;
}

/* ---------------------------------------------------------------------------------------- */
/* q's summaries for predicted catalogs                                                      */

/* the q field names of factor g: n = 1 (bernoulli), 2 (loc, scale) or 0 */
static int bl_q_names(const bl_factor *g, char names[2][BL_CATALOG_NAME_MAX + 8])
{
    if (g->kind == bl_dist_bernoulli) {
        snprintf(names[0], sizeof names[0], "%s", g->name);
        return 1;
    }
    if (!g->kind->loc_scale) return 0;
    snprintf(names[0], sizeof names[0], "%s_loc", g->name);
    snprintf(names[1], sizeof names[1], "%s_scale", g->name);
    return 2;
}

bl_status bl_vardist_q_register(const bl_vardist_spec *spec)
{
    char names[2][BL_CATALOG_NAME_MAX + 8];
    for (int i = 0; i < spec->n_factors; i++) {
        const bl_factor *g = &spec->factors[i];
        int n = bl_q_names(g, names), width = g->kind == bl_dist_bernoulli ? 1 : g->kind->value_dim;
        for (int k = 0; k < n; k++) {
            int taken = bl_catalog_field_is_builtin(names[k]);
            for (int j = 0; j < spec->n_factors; j++) taken |= strcmp(spec->factors[j].field, names[k]) == 0;
            if (taken || strlen(names[k]) >= BL_CATALOG_NAME_MAX)
                return bl_error(BL_ERR_ARG, "factor '%s': its q column '%s' %s (rename the factor)", g->name,
                                names[k], taken ? "is already a catalog field" : "is too long a field name");
            bl_status st = bl_catalog_field_register(names[k], width, 0);
            if (st != BL_OK) return bl_error_context(st, "factor '%s': q column '%s'", g->name, names[k]);
        }
    }
    return BL_OK;
}

void bl_vardist_q_fill(const bl_vardist *dist, bl_tile_catalog *cat)
{
    const bl_vardist_spec *spec = dist->spec;
    BL_ASSERT(cat->B == dist->B && cat->ht == dist->ht && cat->wt == dist->wt && cat->S == 1,
              "bl_vardist_q_fill: catalog (%lld, %lld, %lld, S %lld) for a distribution (%lld, %lld, %lld)",
              (long long)cat->B, (long long)cat->ht, (long long)cat->wt, (long long)cat->S,
              (long long)dist->B, (long long)dist->ht, (long long)dist->wt);
    char names[2][BL_CATALOG_NAME_MAX + 8];
    const int64_t n_tiles = bl_tile_catalog_n_tiles(cat), P = spec->dim;
    for (int i = 0; i < spec->n_factors; i++) {
        const bl_factor *g = &spec->factors[i];
        int n = bl_q_names(g, names), vd = g->kind->value_dim;
        if (n == 0) continue;
        bl_tensor *a = bl_tile_catalog_add(cat, names[0]), *b = n == 2 ? bl_tile_catalog_add(cat, names[1]) : NULL;
        double *loc = bl_malloc(2 * (size_t)vd * sizeof *loc), *scale = loc + vd;
        for (int64_t t = 0; t < n_tiles; t++) {
            const bl_real *raw = dist->x_cat->data + t * P + spec->raw_offset[i];
            if (n == 1) {
                a->data[t] = (bl_real)bl_dist_bernoulli_p(raw);
                continue;
            }
            bl_dist_kind_loc_scale(g->kind, g->opts, raw, loc, scale);
            for (int c = 0; c < vd; c++) {
                a->data[t * vd + c] = (bl_real)loc[c];
                b->data[t * vd + c] = (bl_real)scale[c];
            }
        }
        free(loc);
    }
}

void bl_vardist_spec_mark_inapplicable(const bl_vardist_spec *spec, bl_tile_catalog *cat)
{
    const int64_t n_slots = bl_tile_catalog_n_tiles(cat) * cat->S;
    uint8_t *on = bl_malloc((size_t)n_slots + 1), *sel = bl_malloc((size_t)n_slots + 1);
    bl_tile_catalog_on_mask(cat, on);
    char names[2][BL_CATALOG_NAME_MAX + 8];
    for (int i = 0; i < spec->n_factors; i++) {
        const bl_factor *g = &spec->factors[i];
        if (!g->mask || !g->mask->select) continue;
        g->mask->select(cat, sel);
        int n = bl_q_names(g, names);
        const char *cols[3] = {bl_is_count(g) ? NULL : g->field, n > 0 ? names[0] : NULL, n > 1 ? names[1] : NULL};
        for (int c = 0; c < 3; c++) {
            bl_tensor *t = cols[c] ? bl_tile_catalog_get(cat, cols[c]) : NULL;
            const bl_catalog_field_info *info = t ? bl_catalog_field_find(cols[c]) : NULL;
            if (!t || (info && (info->flags & BL_FIELD_INTEGER))) continue;
            int k = (int)t->shape[4], first = c == 0 ? g->column : 0;
            int width = c == 0 || g->kind != bl_dist_bernoulli ? g->kind->value_dim : 1;
            for (int64_t slot = 0; slot < n_slots; slot++)
                if (on[slot] && !sel[slot])
                    for (int j = first; j < first + width; j++) t->data[slot * k + j] = (bl_real)NAN;
        }
    }
    free(on);
    free(sel);
}
