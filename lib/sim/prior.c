#include "lib/sim/prior.h"

#include "lib/registry.h"

#include <gsl/gsl_cdf.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bl_prior {
    bl_prior_params p;
    bl_gmm *star_gmm, *galaxy_gmm;
    int n;
    bl_field_sampler samplers[BL_PRIOR_MAX_SAMPLERS]; /* name and field strings owned */
};

/* ------------------------------------------------------------------------------------------ */
/* Distributions                                                                               */

double bl_truncated_pareto_icdf(double u, double b, double c, double loc, double scale)
{
    return loc + scale * pow(1 - (1 - pow(c, -b)) * u, -1 / b);
}

/* ------------------------------------------------------------------------------------------ */
/* Built-in samplers of the base prior                                                         */

static int64_t bl_slots_per_image(const bl_tile_catalog *cat) { return cat->ht * cat->wt * cat->S; }

static void bl_sample_n_sources(const bl_field_sampler *s, const bl_prior *prior, bl_rng *rng,
                                bl_tile_catalog *cat, int64_t b)
{
    (void)s;
    const bl_prior_params *p = &prior->p;
    int32_t *n = cat->n_sources + b * cat->ht * cat->wt;
    for (int64_t t = 0; t < cat->ht * cat->wt; t++) {
        int64_t v = p->mean_sources > 0 ? (int64_t)bl_rng_poisson(rng, p->mean_sources) : 0;
        if (v < p->min_sources) v = p->min_sources;
        if (v > p->max_sources) v = p->max_sources;
        n[t] = (int32_t)v;
    }
}

static void bl_sample_locs(const bl_field_sampler *s, const bl_prior *prior, bl_rng *rng,
                           bl_tile_catalog *cat, int64_t b)
{
    (void)prior;
    bl_tensor *t = bl_tile_catalog_require(cat, s->field);
    const int64_t n = bl_slots_per_image(cat) * 2;
    bl_real *d = t->data + b * n;
    for (int64_t i = 0; i < n; i++) d[i] = (bl_real)bl_rng_uniform(rng);
}

static void bl_sample_source_type(const bl_field_sampler *s, const bl_prior *prior, bl_rng *rng,
                                  bl_tile_catalog *cat, int64_t b)
{
    bl_tensor *t = bl_tile_catalog_require(cat, s->field);
    const int64_t n = bl_slots_per_image(cat);
    bl_real *d = t->data + b * n;
    for (int64_t i = 0; i < n; i++) d[i] = bl_rng_uniform(rng) < prior->p.prob_galaxy ? 1 : 0;
}

/* Per slot: reference-band flux from the truncated Pareto (exponent, truncation, loc, scale)
 * times the colour proportions of one draw of `gmm` (docs/behaviour.md §5.2, §5.3). */
static void bl_fill_fluxes(const bl_prior_params *p, const bl_gmm *gmm, const double pareto[4],
                           bl_rng *rng, bl_real *out, int64_t n_slots)
{
    double lr[BL_GMM_MAX_DIM], prop[BL_GMM_MAX_DIM + 1];
    for (int64_t i = 0; i < n_slots; i++) {
        double ref = bl_truncated_pareto_icdf(bl_rng_uniform(rng), pareto[0], pareto[1], pareto[2], pareto[3]);
        bl_gmm_sample(gmm, rng, lr);
        bl_color_proportions(lr, p->n_bands, p->reference_band, prop);
        for (int k = 0; k < p->n_bands; k++) out[i * p->n_bands + k] = (bl_real)(ref * prop[k]);
    }
}

static void bl_sample_star_fluxes(const bl_field_sampler *s, const bl_prior *prior, bl_rng *rng,
                                  bl_tile_catalog *cat, int64_t b)
{
    const bl_prior_params *p = &prior->p;
    const double pareto[4] = {p->star_flux_exponent, p->star_flux_truncation, p->star_flux_loc,
                              p->star_flux_scale};
    const int64_t n = bl_slots_per_image(cat);
    bl_fill_fluxes(p, prior->star_gmm, pareto, rng,
                   bl_tile_catalog_require(cat, s->field)->data + b * n * p->n_bands, n);
}

static void bl_sample_galaxy_fluxes(const bl_field_sampler *s, const bl_prior *prior, bl_rng *rng,
                                    bl_tile_catalog *cat, int64_t b)
{
    const bl_prior_params *p = &prior->p;
    const double pareto[4] = {p->galaxy_flux_exponent, p->galaxy_flux_truncation, p->galaxy_flux_loc,
                              p->galaxy_flux_scale};
    const int64_t n = bl_slots_per_image(cat);
    bl_fill_fluxes(p, prior->galaxy_gmm, pareto, rng,
                   bl_tile_catalog_require(cat, s->field)->data + b * n * p->n_bands, n);
}

static void bl_sample_galaxy_params(const bl_field_sampler *s, const bl_prior *prior, bl_rng *rng,
                                    bl_tile_catalog *cat, int64_t b)
{
    const bl_prior_params *p = &prior->p;
    bl_tensor *t = bl_tile_catalog_require(cat, s->field);
    const int64_t n = bl_slots_per_image(cat);
    const double lo_q = 1e-8;
    for (int64_t i = 0; i < n; i++) {
        bl_real *d = t->data + (b * n + i) * 6;
        double disk_frac = bl_rng_uniform(rng);
        double beta = M_PI * bl_rng_uniform(rng);
        double disk_q = lo_q + (1 - lo_q) * bl_rng_uniform(rng);
        double a_d = bl_rng_gamma(rng, p->galaxy_a_concentration, 1.0) * p->galaxy_a_scale + p->galaxy_a_loc;
        double bulge_q = lo_q + (1 - lo_q) * bl_rng_uniform(rng);
        double a_b = bl_rng_gamma(rng, p->galaxy_a_concentration, 1.0) * p->galaxy_a_scale / p->galaxy_a_bd_ratio +
                     p->galaxy_a_loc / p->galaxy_a_bd_ratio;
        d[0] = (bl_real)disk_frac;
        d[1] = (bl_real)beta;
        d[2] = (bl_real)disk_q;
        d[3] = (bl_real)a_d;
        d[4] = (bl_real)bulge_q;
        d[5] = (bl_real)a_b;
    }
}

static const bl_sampler_kind bl_kind_n_sources = {.name = "n_sources", .sample = bl_sample_n_sources};
static const bl_sampler_kind bl_kind_locs = {.name = "locs", .sample = bl_sample_locs};
static const bl_sampler_kind bl_kind_source_type = {.name = "source_type", .sample = bl_sample_source_type};
static const bl_sampler_kind bl_kind_star_fluxes = {.name = "star_fluxes", .sample = bl_sample_star_fluxes};
static const bl_sampler_kind bl_kind_galaxy_fluxes = {.name = "galaxy_fluxes",
                                                      .sample = bl_sample_galaxy_fluxes};
static const bl_sampler_kind bl_kind_galaxy_params = {.name = "galaxy_params",
                                                      .sample = bl_sample_galaxy_params};

/* ------------------------------------------------------------------------------------------ */
/* Extra samplers (redshift priors of docs/behaviour.md §9.1)                                               */

static bl_status bl_check_uniform(const double *p, const char *where)
{
    if (!(p[1] > p[0]))
        return bl_error(BL_ERR_CONFIG, "%s: max = %g must be greater than min = %g", where, p[1], p[0]);
    return BL_OK;
}

static void bl_sample_uniform(const bl_field_sampler *s, const bl_prior *prior, bl_rng *rng,
                              bl_tile_catalog *cat, int64_t b)
{
    bl_tensor *t = bl_tile_catalog_require(cat, s->field);
    const int64_t n = bl_slots_per_image(cat) * t->shape[4];
    bl_real *d = t->data + b * n;
    for (int64_t i = 0; i < n; i++)
        d[i] = (bl_real)(s->params[0] + (s->params[1] - s->params[0]) * bl_rng_uniform(rng));
    (void)prior;
}

static bl_status bl_check_gamma(const double *p, const char *where)
{
    if (!(p[0] > 0))
        return bl_error(BL_ERR_CONFIG, "%s: alpha = %g must be > 0 (the Gamma shape)", where, p[0]);
    if (!(p[1] > 0))
        return bl_error(BL_ERR_CONFIG, "%s: beta = %g must be > 0 (the Gamma rate)", where, p[1]);
    return BL_OK;
}

static void bl_sample_gamma(const bl_field_sampler *s, const bl_prior *prior, bl_rng *rng,
                            bl_tile_catalog *cat, int64_t b)
{
    bl_tensor *t = bl_tile_catalog_require(cat, s->field);
    const int64_t n = bl_slots_per_image(cat) * t->shape[4];
    bl_real *d = t->data + b * n;
    for (int64_t i = 0; i < n; i++) d[i] = (bl_real)bl_rng_gamma(rng, s->params[0], 1 / s->params[1]);
    (void)prior;
}

static double bl_cdf_uniform(const double *p, double x)
{
    return x <= p[0] ? 0 : (x >= p[1] ? 1 : (x - p[0]) / (p[1] - p[0]));
}

static double bl_cdf_gamma(const double *p, double x) { return gsl_cdf_gamma_P(x, p[0], 1 / p[1]); }

static const bl_sampler_kind bl_kind_uniform = {
    .name = "uniform", .n_params = 2, .param_names = {"min", "max"}, .example_params = {0.0, 1.0},
    .check = bl_check_uniform, .cdf = bl_cdf_uniform, .sample = bl_sample_uniform};
static const bl_sampler_kind bl_kind_gamma = {
    .name = "gamma", .n_params = 2, .param_names = {"alpha", "beta"}, .example_params = {2.0, 4.0},
    .check = bl_check_gamma, .cdf = bl_cdf_gamma, .sample = bl_sample_gamma};
const bl_sampler_kind *const bl_sampler_uniform = &bl_kind_uniform;
const bl_sampler_kind *const bl_sampler_gamma = &bl_kind_gamma;

/* The kinds configs can name (lib/registry.h): the extra kinds above, then registered ones.
 * The base samplers' kinds are not in it: the prior adds them itself. */
static const char *bl_sampler_kind_name(const void *k) { return ((const bl_sampler_kind *)k)->name; }
static const void *const bl_builtin_sampler_kinds[] = {&bl_kind_uniform, &bl_kind_gamma};
static const void *bl_registered_sampler_kinds[64]; /* capacity for registered kinds */
static bl_registry bl_sampler_kinds = BL_REGISTRY_INIT("sampler kind", bl_builtin_sampler_kinds,
                                                       bl_registered_sampler_kinds, bl_sampler_kind_name);

const bl_sampler_kind *bl_sampler_kind_find(const char *name) { return bl_registry_find(&bl_sampler_kinds, name); }
int bl_sampler_kind_count(void) { return bl_registry_count(&bl_sampler_kinds); }
const bl_sampler_kind *bl_sampler_kind_at(int i) { return bl_registry_at(&bl_sampler_kinds, i); }

bl_status bl_sampler_kind_check(const bl_sampler_kind *k)
{
    if (!k || !k->name || !*k->name) return bl_error(BL_ERR_ARG, "sampler kind without a name");
    if (!k->sample) return bl_error(BL_ERR_ARG, "sampler kind '%s' has no sample function", k->name);
    if (k->n_params < 0 || k->n_params > BL_SAMPLER_MAX_PARAMS)
        return bl_error(BL_ERR_ARG, "sampler kind '%s' has %d parameters (at most %d)", k->name,
                        k->n_params, BL_SAMPLER_MAX_PARAMS);
    for (int i = 0; i < k->n_params; i++)
        if (!k->param_names[i] || !*k->param_names[i])
            return bl_error(BL_ERR_ARG, "sampler kind '%s': parameter %d has no name", k->name, i);
    return BL_OK;
}

bl_status bl_sampler_kind_register(const bl_sampler_kind *kind)
{
    bl_status s = bl_sampler_kind_check(kind);
    if (s != BL_OK) return s;
    return bl_registry_add(&bl_sampler_kinds, kind);
}

/* ------------------------------------------------------------------------------------------ */
/* Parameters                                                                                  */

void bl_prior_params_default(bl_prior_params *p)
{
    memset(p, 0, sizeof *p);
    p->batch_size = 64;
    p->n_tiles_h = 20;
    p->n_tiles_w = 20;
    p->tile_slen = 4;
    p->n_bands = 5;
    p->reference_band = 2;
    p->min_sources = 0;
    p->max_sources = 1;
    p->mean_sources = 0.2;
    p->prob_galaxy = 0.72;
    p->star_flux_exponent = 0.43;
    p->star_flux_truncation = 640;
    p->star_flux_loc = 0;
    p->star_flux_scale = 0.63094948;
    p->galaxy_flux_exponent = 0.47;
    p->galaxy_flux_truncation = 1013;
    p->galaxy_flux_loc = 0;
    p->galaxy_flux_scale = 0.6301037;
    p->galaxy_a_concentration = 0.39330758068481686;
    p->galaxy_a_loc = 0.8371888967872619;
    p->galaxy_a_scale = 4.432725319432478;
    p->galaxy_a_bd_ratio = 2.0;
    snprintf(p->color_model_file, sizeof p->color_model_file, "color_models/sdss_color_models.txt");
    snprintf(p->star_color_model, sizeof p->star_color_model, "star_gmm_nmgy");
    snprintf(p->galaxy_color_model, sizeof p->galaxy_color_model, "gal_gmm_nmgy");
}

/* One rule per parameter, shared by the config reader and the hand-filled check. */
typedef struct {
    const char *key;
    size_t offset;
    int is_int;
    double lo, hi;
    int lo_open; /* value must be > lo (not >=) */
    const char *why;
} bl_prior_rule;

#define BL_D(field) offsetof(bl_prior_params, field), 0
#define BL_I(field) offsetof(bl_prior_params, field), 1
static const bl_prior_rule bl_prior_rules[] = {
    {"batch_size", BL_I(batch_size), 1, 1e9, 0, "images per batch"},
    {"n_tiles_h", BL_I(n_tiles_h), 1, 1e6, 0, "tiles per column"},
    {"n_tiles_w", BL_I(n_tiles_w), 1, 1e6, 0, "tiles per row"},
    {"min_sources", BL_I(min_sources), 0, 1e6, 0, "a count"},
    {"max_sources", BL_I(max_sources), 1, 1e6, 0, "the slots per tile (S)"},
    {"mean_sources", BL_D(mean_sources), 0, 1e6, 0, "a Poisson mean"},
    {"prob_galaxy", BL_D(prob_galaxy), 0, 1, 0, "a probability"},
    {"star_flux_exponent", BL_D(star_flux_exponent), 0, 1e3, 1, "the Pareto exponent b"},
    {"star_flux_truncation", BL_D(star_flux_truncation), 1, 1e12, 1, "the truncation c (> 1)"},
    {"star_flux_loc", BL_D(star_flux_loc), 0, 1e12, 0, "a flux (nmgy)"},
    {"star_flux_scale", BL_D(star_flux_scale), 0, 1e12, 1, "the flux scale (nmgy)"},
    {"galaxy_flux_exponent", BL_D(galaxy_flux_exponent), 0, 1e3, 1, "the Pareto exponent b"},
    {"galaxy_flux_truncation", BL_D(galaxy_flux_truncation), 1, 1e12, 1, "the truncation c (> 1)"},
    {"galaxy_flux_loc", BL_D(galaxy_flux_loc), 0, 1e12, 0, "a flux (nmgy)"},
    {"galaxy_flux_scale", BL_D(galaxy_flux_scale), 0, 1e12, 1, "the flux scale (nmgy)"},
    {"galaxy_a_concentration", BL_D(galaxy_a_concentration), 0, 1e6, 1, "the Gamma shape"},
    {"galaxy_a_loc", BL_D(galaxy_a_loc), 0, 1e6, 1, "the smallest size (arcsec, > 0)"},
    {"galaxy_a_scale", BL_D(galaxy_a_scale), 0, 1e6, 0, "a size scale (arcsec)"},
    {"galaxy_a_bd_ratio", BL_D(galaxy_a_bd_ratio), 0, 1e6, 1, "a size ratio"},
};
#undef BL_D
#undef BL_I
#define BL_N_PRIOR_RULES ((int)(sizeof bl_prior_rules / sizeof *bl_prior_rules))

static double bl_rule_get(const bl_prior_params *p, const bl_prior_rule *r)
{
    const char *base = (const char *)p + r->offset;
    return r->is_int ? (double)*(const int64_t *)base : *(const double *)base;
}

/* where(key) gives the message prefix for a key */
static bl_status bl_prior_params_check_at(const bl_prior_params *p, bl_config *cfg, const char *path)
{
    char key[256];
    for (int i = 0; i < BL_N_PRIOR_RULES; i++) {
        const bl_prior_rule *r = &bl_prior_rules[i];
        double v = bl_rule_get(p, r);
        int ok = isfinite(v) && v <= r->hi && (r->lo_open ? v > r->lo : v >= r->lo);
        if (!ok) {
            snprintf(key, sizeof key, "%s.%s", path, r->key);
            return bl_error(BL_ERR_CONFIG, "%s: key '%s' = %g is impossible: %s must be in %s%g, %g]",
                            cfg ? bl_config_where(cfg, key) : "prior", key, v, r->why,
                            r->lo_open ? "(" : "[", r->lo, r->hi);
        }
    }
    if (p->min_sources > p->max_sources) {
        snprintf(key, sizeof key, "%s.min_sources", path);
        return bl_error(BL_ERR_CONFIG, "%s: key '%s' = %lld exceeds max_sources = %lld",
                        cfg ? bl_config_where(cfg, key) : "prior", key, (long long)p->min_sources,
                        (long long)p->max_sources);
    }
    if (p->tile_slen < 1 || p->tile_slen > 4096) {
        snprintf(key, sizeof key, "%s.tile_slen", path);
        return bl_error(BL_ERR_CONFIG, "%s: key '%s' = %d must be in [1, 4096]",
                        cfg ? bl_config_where(cfg, key) : "prior", key, p->tile_slen);
    }
    if (p->n_bands < 2 || p->n_bands > BL_GMM_MAX_DIM + 1 || p->reference_band < 0 ||
        p->reference_band >= p->n_bands) {
        snprintf(key, sizeof key, "%s.reference_band", path);
        return bl_error(BL_ERR_CONFIG, "%s: key '%s' = %d is not one of the %d bands",
                        cfg ? bl_config_where(cfg, key) : "prior", key, p->reference_band, p->n_bands);
    }
    return BL_OK;
}

bl_status bl_prior_params_check(const bl_prior_params *p) { return bl_prior_params_check_at(p, NULL, "prior"); }

bl_status bl_prior_params_from_config(bl_prior_params *p, bl_config *cfg, const char *path)
{
    int n_bands = p->n_bands;
    bl_prior_params_default(p);
    if (n_bands > 0) p->n_bands = n_bands;
    char key[256];
    bl_status s;
    for (int i = 0; i < BL_N_PRIOR_RULES; i++) {
        const bl_prior_rule *r = &bl_prior_rules[i];
        snprintf(key, sizeof key, "%s.%s", path, r->key);
        char *base = (char *)p + r->offset;
        if (r->is_int)
            s = bl_config_int(cfg, key, *(int64_t *)base, 0, (int64_t *)base);
        else
            s = bl_config_double(cfg, key, *(double *)base, 0, (double *)base);
        if (s != BL_OK) return s;
    }
    int64_t v = p->tile_slen;
    snprintf(key, sizeof key, "%s.tile_slen", path);
    if ((s = bl_config_int(cfg, key, v, 0, &v)) != BL_OK ||
        (s = bl_config_check_range(cfg, key, (double)v, 1, 4096)) != BL_OK)
        return s;
    p->tile_slen = (int)v;
    v = p->reference_band;
    snprintf(key, sizeof key, "%s.reference_band", path);
    if ((s = bl_config_int(cfg, key, v, 0, &v)) != BL_OK ||
        (s = bl_config_check_range(cfg, key, (double)v, 0, p->n_bands - 1)) != BL_OK)
        return s;
    p->reference_band = (int)v;
    struct { const char *k; char *dst; size_t n; } strs[] = {
        {"color_model_file", p->color_model_file, sizeof p->color_model_file},
        {"star_color_model", p->star_color_model, sizeof p->star_color_model},
        {"galaxy_color_model", p->galaxy_color_model, sizeof p->galaxy_color_model},
    };
    for (size_t i = 0; i < sizeof strs / sizeof *strs; i++) {
        const char *val = NULL;
        snprintf(key, sizeof key, "%s.%s", path, strs[i].k);
        if ((s = bl_config_string(cfg, key, strs[i].dst, 0, &val)) != BL_OK) return s;
        if (strlen(val) >= strs[i].n)
            return bl_error(BL_ERR_CONFIG, "%s: key '%s' is too long", bl_config_where(cfg, key), key);
        if (val != strs[i].dst) snprintf(strs[i].dst, strs[i].n, "%s", val);
    }
    return bl_prior_params_check_at(p, cfg, path);
}

/* ------------------------------------------------------------------------------------------ */
/* The prior                                                                                   */

static bl_status bl_prior_push(bl_prior *prior, const bl_field_sampler *s)
{
    if (prior->n == BL_PRIOR_MAX_SAMPLERS)
        return bl_error(BL_ERR_ARG, "prior: more than %d samplers", BL_PRIOR_MAX_SAMPLERS);
    bl_field_sampler *d = &prior->samplers[prior->n++];
    *d = *s;
    d->name = bl_strdup(s->name);
    d->field = bl_strdup(s->field);
    return BL_OK;
}

bl_status bl_prior_alloc(bl_prior **out, const bl_prior_params *p)
{
    *out = NULL;
    bl_status s = bl_prior_params_check(p);
    if (s != BL_OK) return s;
    bl_prior *prior = bl_calloc(1, sizeof *prior);
    prior->p = *p;
    if ((s = bl_gmm_load(&prior->star_gmm, p->color_model_file, p->star_color_model)) != BL_OK ||
        (s = bl_gmm_load(&prior->galaxy_gmm, p->color_model_file, p->galaxy_color_model)) != BL_OK) {
        bl_prior_free(prior);
        return bl_error_context(s, "prior colour models (color_model_file '%s')", p->color_model_file);
    }
    const bl_gmm *g[2] = {prior->star_gmm, prior->galaxy_gmm};
    for (int i = 0; i < 2; i++)
        if (g[i]->dim != p->n_bands - 1) {
            s = bl_error(BL_ERR_CONFIG, "%s: colour model '%s' has dimension %d; %d bands need %d "
                         "log flux ratios", p->color_model_file, g[i]->name, g[i]->dim, p->n_bands,
                         p->n_bands - 1);
            bl_prior_free(prior);
            return s;
        }
    const bl_field_sampler base[] = {
        {.name = "n_sources", .kind = &bl_kind_n_sources, .field = "n_sources"},
        {.name = "locs", .kind = &bl_kind_locs, .field = "locs"},
        {.name = "source_type", .kind = &bl_kind_source_type, .field = "source_type"},
        {.name = "star_fluxes", .kind = &bl_kind_star_fluxes, .field = "star_fluxes"},
        {.name = "galaxy_fluxes", .kind = &bl_kind_galaxy_fluxes, .field = "galaxy_fluxes"},
        {.name = "galaxy_params", .kind = &bl_kind_galaxy_params, .field = "galaxy_params"},
    };
    for (size_t i = 0; i < sizeof base / sizeof *base; i++) bl_prior_push(prior, &base[i]);
    *out = prior;
    return BL_OK;
}

void bl_prior_free(bl_prior *prior)
{
    if (!prior) return;
    for (int i = 0; i < prior->n; i++) {
        free((char *)prior->samplers[i].name);
        free((char *)prior->samplers[i].field);
    }
    bl_gmm_free(prior->star_gmm);
    bl_gmm_free(prior->galaxy_gmm);
    free(prior);
}

const bl_prior_params *bl_prior_get_params(const bl_prior *prior) { return &prior->p; }
const bl_gmm *bl_prior_star_gmm(const bl_prior *prior) { return prior->star_gmm; }
const bl_gmm *bl_prior_galaxy_gmm(const bl_prior *prior) { return prior->galaxy_gmm; }
int bl_prior_n_samplers(const bl_prior *prior) { return prior->n; }
const bl_field_sampler *bl_prior_sampler(const bl_prior *prior, int i) { return &prior->samplers[i]; }

static bl_status bl_prior_add_at(bl_prior *prior, const bl_field_sampler *s, const char *where)
{
    if (!s->name || !*s->name) return bl_error(BL_ERR_ARG, "%s: sampler without a name", where);
    bl_status st = bl_sampler_kind_check(s->kind);
    if (st != BL_OK) {
        return bl_error_context(st, "%s: sampler '%s'", where, s->name);
    }
    if (!s->field || bl_catalog_field_width(s->field, prior->p.n_bands) < 0)
        return bl_error(BL_ERR_ARG, "%s: sampler '%s': '%s' is not a catalog field", where, s->name,
                        s->field ? s->field : "(null)");
    for (int i = 0; i < prior->n; i++) {
        if (strcmp(prior->samplers[i].name, s->name) == 0)
            return bl_error(BL_ERR_ARG, "%s: sampler name '%s' is taken", where, s->name);
        if (strcmp(prior->samplers[i].field, s->field) == 0)
            return bl_error(BL_ERR_ARG, "%s: sampler '%s': field '%s' is already drawn by '%s'",
                            where, s->name, s->field, prior->samplers[i].name);
    }
    for (int i = 0; i < s->kind->n_params; i++)
        if (!isfinite(s->params[i]))
            return bl_error(BL_ERR_ARG, "%s: sampler '%s': %s = %g is not finite", where, s->name,
                            s->kind->param_names[i], s->params[i]);
    if (s->kind->check && (st = s->kind->check(s->params, where)) != BL_OK) return st;
    return bl_prior_push(prior, s);
}

bl_status bl_prior_add(bl_prior *prior, const bl_field_sampler *s)
{
    char where[128];
    snprintf(where, sizeof where, "prior sampler '%s'", s->name ? s->name : "");
    return bl_prior_add_at(prior, s, where);
}

bl_status bl_prior_add_config(bl_prior *prior, bl_config *cfg, const char *path)
{
    int n;
    char key[512], where[1024];
    bl_status s = bl_config_groups(cfg, path, &n);
    if (s != BL_OK) return s;
    for (int i = 0; i < n; i++) {
        const char *name = NULL, *kind_name = NULL, *field = NULL;
#define BL_ITEM(k) (snprintf(key, sizeof key, "%s.[%d].%s", path, i, k), key)
        if ((s = bl_config_string(cfg, BL_ITEM("name"), NULL, 1, &name)) != BL_OK ||
            (s = bl_config_string(cfg, BL_ITEM("sampler"), NULL, 1, &kind_name)) != BL_OK)
            return s;
        const bl_sampler_kind *kind = bl_sampler_kind_find(kind_name);
        if (!kind)
        {
            char known[512];
            bl_registry_names(&bl_sampler_kinds, known, sizeof known);
            return bl_error(BL_ERR_CONFIG, "%s: key '%s': unknown sampler '%s' (known: %s)",
                            bl_config_where(cfg, key), key, kind_name, known);
        }
        if ((s = bl_config_string(cfg, BL_ITEM("field"), NULL, 1, &field)) != BL_OK) return s;
        if (bl_catalog_field_width(field, prior->p.n_bands) < 0)
            return bl_error(BL_ERR_CONFIG, "%s: key '%s': '%s' is not a catalog field",
                            bl_config_where(cfg, key), key, field);
        bl_field_sampler fs = {.name = name, .kind = kind, .field = field};
        for (int j = 0; j < kind->n_params; j++)
            if ((s = bl_config_double(cfg, BL_ITEM(kind->param_names[j]), 0, 1, &fs.params[j])) != BL_OK)
                return s;
        char item[300];
        snprintf(item, sizeof item, "%s.[%d]", path, i);
        snprintf(where, sizeof where, "%s: %s (sampler '%s')", bl_config_where(cfg, BL_ITEM("name")),
                 item, name);
        if ((s = bl_prior_add_at(prior, &fs, where)) != BL_OK) {
            char msg[1024]; /* the same message as a config error (bl_error may not read its own buffer) */
            snprintf(msg, sizeof msg, "%s", bl_error_message());
            return bl_error(BL_ERR_CONFIG, "%s", msg);
        }
#undef BL_ITEM
    }
    return BL_OK;
}

/* BL_ERR_CONFIG "file:line: key 'path': ..." */
__attribute__((format(printf, 3, 4)))
static bl_status bl_key_error(bl_config *cfg, const char *path, const char *fmt, ...)
{
    char msg[768], where[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(where, sizeof where, "%s", bl_config_where(cfg, path));
    return bl_error(BL_ERR_CONFIG, "%s: key '%s': %s", where, path, msg);
}

bl_status bl_prior_fields_from_config(bl_prior *prior, bl_config *cfg, const char *path)
{
    int n;
    char key[512], where[1024];
    bl_status s = bl_config_groups(cfg, path, &n);
    if (s != BL_OK) return s;
    for (int i = 0; i < n; i++) {
        char entry[300];
        snprintf(entry, sizeof entry, "%s.[%d]", path, i);
#define BL_ITEM(k) (snprintf(key, sizeof key, "%s.%s", entry, k), key)
        const char *name = NULL, *kind_name = NULL;
        int64_t width = 1;
        if ((s = bl_config_string(cfg, BL_ITEM("name"), NULL, 0, &name)) != BL_OK) return s;
        if (!name) return bl_key_error(cfg, entry, "the field entry has no 'name'");
        if (!*name || strlen(name) >= BL_CATALOG_NAME_MAX || strcmp(name, "n_sources") == 0 ||
            strcmp(name, "plocs") == 0)
            return bl_key_error(cfg, key, "'%s' cannot name a catalog field (1 to %d characters, not "
                                "n_sources or plocs)", name, BL_CATALOG_NAME_MAX - 1);
        if (bl_catalog_field_is_builtin(name))
            return bl_key_error(cfg, key, "'%s' is a built-in catalog field: draw it with a "
                                "prior_fields entry, or give the new field another name", name);
        for (int j = 0; j < i; j++) {
            char other[320];
            const char *oname = NULL;
            snprintf(other, sizeof other, "%s.[%d].name", path, j);
            if (bl_config_string(cfg, other, NULL, 1, &oname) == BL_OK && strcmp(oname, name) == 0) {
                char at[512];
                snprintf(at, sizeof at, "%s", bl_config_where(cfg, other));
                return bl_key_error(cfg, key, "field '%s' is already defined by %s.[%d] (%s)", name,
                                    path, j, at);
            }
        }
        if ((s = bl_config_int(cfg, BL_ITEM("width"), 1, 0, &width)) != BL_OK ||
            (s = bl_config_check_range(cfg, key, (double)width, 1, 64)) != BL_OK)
            return s;
        if ((s = bl_config_string(cfg, BL_ITEM("sampler"), NULL, 0, &kind_name)) != BL_OK) return s;
        if (!kind_name)
            return bl_key_error(cfg, entry, "field '%s' has no 'sampler' (how the prior draws it)", name);
        const bl_sampler_kind *kind = bl_sampler_kind_find(kind_name);
        if (!kind) {
            char known[512];
            bl_registry_names(&bl_sampler_kinds, known, sizeof known);
            return bl_key_error(cfg, key, "unknown sampler '%s' (known: %s)", kind_name, known);
        }
        bl_field_sampler fs = {.name = name, .kind = kind, .field = name};
        for (int j = 0; j < kind->n_params; j++) {
            if ((s = bl_config_double(cfg, BL_ITEM(kind->param_names[j]), 0, 0, &fs.params[j])) != BL_OK)
                return s;
            if (!bl_config_exists(cfg, key))
                return bl_key_error(cfg, entry, "sampler '%s' needs the parameter '%s'", kind->name,
                                    kind->param_names[j]);
        }
        /* every key an entry can have is read: what is left is a typo */
        if ((s = bl_config_check_unused_in(cfg, entry)) != BL_OK) return s;
        if ((s = bl_catalog_field_register(name, (int)width, 0)) != BL_OK)
            return bl_error_context(BL_ERR_CONFIG, "%s: key '%s'", bl_config_where(cfg, BL_ITEM("width")), key);
        snprintf(where, sizeof where, "%s: %s (field '%s')", bl_config_where(cfg, BL_ITEM("name")), entry, name);
        if ((s = bl_prior_add_at(prior, &fs, where)) != BL_OK) {
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", bl_error_message());
            return bl_error(BL_ERR_CONFIG, "%s", msg);
        }
#undef BL_ITEM
    }
    return BL_OK;
}

bl_status bl_prior_from_config(bl_prior **out, bl_config *cfg, int n_bands)
{
    *out = NULL;
    bl_prior_params pp;
    pp.n_bands = n_bands;
    bl_status s;
    bl_prior *prior;
    if ((s = bl_prior_params_from_config(&pp, cfg, "prior")) != BL_OK) return s;
    if ((s = bl_prior_alloc(&prior, &pp)) != BL_OK) return s;
    if ((s = bl_prior_fields_from_config(prior, cfg, "fields")) != BL_OK ||
        (s = bl_prior_add_config(prior, cfg, "prior.fields")) != BL_OK ||
        (s = bl_prior_add_config(prior, cfg, "prior_fields")) != BL_OK) {
        bl_prior_free(prior);
        return s;
    }
    *out = prior;
    return BL_OK;
}

/* FNV-1a: a stable stream id per sampler name */
static uint64_t bl_name_hash(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

void bl_prior_sample_into(const bl_prior *prior, uint64_t seed, uint64_t stream, bl_tile_catalog *cat)
{
    bl_prior_sample_slice(prior, seed, stream, 0, cat);
}

void bl_prior_sample_slice(const bl_prior *prior, uint64_t seed, uint64_t stream, int64_t first,
                           bl_tile_catalog *cat)
{
    const bl_prior_params *p = &prior->p;
    BL_ASSERT(cat->B == p->batch_size && cat->ht == p->n_tiles_h && cat->wt == p->n_tiles_w &&
                  cat->S == p->max_sources && cat->tile_slen == p->tile_slen && cat->n_bands == p->n_bands,
              "bl_prior_sample_slice: catalog geometry differs from the prior's");
    /* fields are added before the parallel region: bl_tile_catalog_add is not thread-safe */
    for (int i = 0; i < prior->n; i++)
        if (strcmp(prior->samplers[i].field, "n_sources") != 0)
            bl_tile_catalog_add(cat, prior->samplers[i].field);
    uint64_t hashes[BL_PRIOR_MAX_SAMPLERS];
    for (int i = 0; i < prior->n; i++) hashes[i] = bl_name_hash(prior->samplers[i].name);
    const int64_t B = cat->B;
#pragma omp parallel if (B > 1)
    {
        bl_rng *rng = bl_rng_alloc(seed, 0);
#pragma omp for schedule(static)
        for (int64_t b = 0; b < B; b++) {
            uint64_t image_stream = bl_rng_mix(stream, (uint64_t)(first + b));
            for (int i = 0; i < prior->n; i++) {
                const bl_field_sampler *s = &prior->samplers[i];
                bl_rng_reseed(rng, seed, bl_rng_mix(image_stream, hashes[i]));
                s->kind->sample(s, prior, rng, cat, b);
            }
        }
        bl_rng_free(rng);
    }
}

bl_tile_catalog *bl_prior_sample(const bl_prior *prior, uint64_t seed, uint64_t stream)
{
    const bl_prior_params *p = &prior->p;
    bl_tile_catalog *cat = bl_tile_catalog_alloc(p->batch_size, p->n_tiles_h, p->n_tiles_w,
                                                 p->max_sources, p->tile_slen, p->n_bands);
    bl_prior_sample_into(prior, seed, stream, cat);
    return cat;
}
