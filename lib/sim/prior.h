/* The catalog prior (docs/behaviour.md §5.1–§5.3, §9.1): a list of field samplers that fill a tile
 * catalog (B, ht, wt, S = max_sources) in nanomaggies.
 *
 * A sampler kind is a GSL-style descriptor (like dists/kind.h): a name, the names of its
 * numeric parameters (config keys), a check of their values and a function drawing one
 * image's worth of a catalog field. A sampler is a kind bound to a catalog field and parameter
 * values. The prior starts with the built-in samplers (BLISS's CatalogPrior):
 *   n_sources      Poisson(mean_sources) clamped to [min_sources, max_sources]
 *   locs           Uniform[0, 1)^2 within the tile
 *   source_type    1 (galaxy) iff U < prob_galaxy, else 0 (star)
 *   star_fluxes    reference band: truncated Pareto (exact inverse CDF, docs/behaviour.md §5.2);
 *                  other bands: x colour ratios from the star GMM (docs/behaviour.md §5.3), one component
 *                  per source (docs/porting.md)
 *   galaxy_fluxes  same with the galaxy Pareto and GMM
 *   galaxy_params  disk_frac ~ U(0,1), beta ~ U(0,pi), disk_q, bulge_q ~ U(1e-8, 1),
 *                  a_d = G scale + loc, a_b = G' scale/bd_ratio + loc/bd_ratio,
 *                  G, G' ~ Gamma(concentration, rate 1) (arcsec)
 * Values are drawn for every slot, on or off, as BLISS does. Further fields are added the way
 * a factor is added to the variational distribution: one call,
 *   bl_prior_add(prior, &(bl_field_sampler){.name = "redshift", .kind = bl_sampler_uniform,
 *                                           .field = "redshifts", .params = {0.0, 1.0}});
 * or one config entry (bl_prior_add_config; bl_prior_from_config reads `prior.fields` and the
 * top-level `prior_fields`):
 *   fields = ( { name = "redshift"; sampler = "uniform"; field = "redshifts";
 *                min = 0.0; max = 1.0; } );
 * Built-in extra kinds: "uniform" (min, max) and "gamma" (alpha, beta: shape, rate) — the
 * RedshiftUniformPrior and RedshiftGammaPrior of docs/behaviour.md §9.1.
 *
 * Randomness: image b of a batch with stream id `stream` draws sampler `name` from
 * bl_rng stream mix(mix(stream, b), hash(name)) of `seed`: the result depends neither on the
 * thread count nor on which other samplers are present. */
#ifndef BL_SIM_PRIOR_H
#define BL_SIM_PRIOR_H

#include <stdint.h>

#include "lib/catalog.h"
#include "lib/config.h"
#include "lib/rng.h"
#include "lib/sim/color_model.h"

#define BL_SAMPLER_MAX_PARAMS 8
#define BL_PRIOR_MAX_SAMPLERS 32

typedef struct bl_prior bl_prior;
typedef struct bl_field_sampler bl_field_sampler;

typedef struct bl_sampler_kind {
    const char *name;
    int n_params;
    const char *param_names[BL_SAMPLER_MAX_PARAMS];
    double example_params[BL_SAMPLER_MAX_PARAMS]; /* valid values (generated tests, docs) */
    /* BL_ERR_CONFIG naming `where` (e.g. "cfg:12: prior.fields.[0]") and the parameter when a
     * value is impossible; NULL: any finite values */
    bl_status (*check)(const double *params, const char *where);
    /* optional: P(X <= x) of every value the kind draws, when the values are independent
     * draws of one distribution (uniform, gamma): the generated tests compare the draws with
     * it (Kolmogorov-Smirnov); NULL when there is no such closed form */
    double (*cdf)(const double *params, double x);
    /* Fill field `s->field` (or n_sources) of image b. k = width of the field. */
    void (*sample)(const bl_field_sampler *s, const bl_prior *prior, bl_rng *rng,
                   bl_tile_catalog *cat, int64_t b);
} bl_sampler_kind;

struct bl_field_sampler {
    const char *name;     /* unique in the prior; names the RNG stream */
    const bl_sampler_kind *kind;
    const char *field;    /* catalog field written ("n_sources" for the counts) */
    double params[BL_SAMPLER_MAX_PARAMS];
};

extern const bl_sampler_kind *const bl_sampler_uniform; /* min, max: U[min, max) per column */
extern const bl_sampler_kind *const bl_sampler_gamma;   /* alpha, beta: Gamma(shape alpha, rate beta) */

/* The table of kinds that configs can name ("uniform", "gamma" and any registered one; a
 * lib/registry.h registry: register before worker threads start). Registering checks the
 * descriptor (bl_sampler_kind_check: a name, a sample function, 0..BL_SAMPLER_MAX_PARAMS
 * named parameters) and refuses a second kind of the same name; the generated tests
 * (tests/lib/test_sim_prior.c) then check the new kind with its example_params. */
bl_status bl_sampler_kind_register(const bl_sampler_kind *kind);
bl_status bl_sampler_kind_check(const bl_sampler_kind *kind);
const bl_sampler_kind *bl_sampler_kind_find(const char *name);
int bl_sampler_kind_count(void);
const bl_sampler_kind *bl_sampler_kind_at(int i);

typedef struct bl_prior_params {
    int64_t batch_size, n_tiles_h, n_tiles_w;
    int tile_slen;
    int n_bands, reference_band;
    int64_t min_sources, max_sources;
    double mean_sources, prob_galaxy;
    double star_flux_exponent, star_flux_truncation, star_flux_loc, star_flux_scale;
    double galaxy_flux_exponent, galaxy_flux_truncation, galaxy_flux_loc, galaxy_flux_scale;
    double galaxy_a_concentration, galaxy_a_loc, galaxy_a_scale, galaxy_a_bd_ratio;
    char color_model_file[256], star_color_model[64], galaxy_color_model[64];
} bl_prior_params;

/* BLISS's base config (docs/behaviour.md §7), 5 bands, reference band r. */
void bl_prior_params_default(bl_prior_params *p);
/* Read the group at `path` ("prior"); missing keys keep their defaults, impossible values are
 * BL_ERR_CONFIG naming file:line and key. n_bands comes from the survey, not the group. */
bl_status bl_prior_params_from_config(bl_prior_params *p, bl_config *cfg, const char *path);
/* The same checks for parameters filled by hand (message names prior.<key>). */
bl_status bl_prior_params_check(const bl_prior_params *p);

/* Loads the colour models (bl_gmm_load, dim must be n_bands - 1) and adds the built-in
 * samplers. *out = NULL on error. */
bl_status bl_prior_alloc(bl_prior **out, const bl_prior_params *p);
void bl_prior_free(bl_prior *prior);
const bl_prior_params *bl_prior_get_params(const bl_prior *prior);
const bl_gmm *bl_prior_star_gmm(const bl_prior *prior);
const bl_gmm *bl_prior_galaxy_gmm(const bl_prior *prior);

/* Append a sampler (copied). BL_ERR_ARG naming the sampler if its name is empty or taken, its
 * kind lacks name or sample, its field is unknown (lib/catalog.h table) or already filled by
 * another sampler, or its parameters fail the kind's check. */
bl_status bl_prior_add(bl_prior *prior, const bl_field_sampler *s);
/* One sampler per group of the list at `path` (e.g. "prior.fields"): keys name, sampler,
 * field, and the kind's parameter names (all required). Errors name file:line and key. */
bl_status bl_prior_add_config(bl_prior *prior, bl_config *cfg, const char *path);
/* New catalog fields from the list of groups at `path` (the top-level "fields"):
 *   fields = ( { name = "photo_z_err"; width = 1; sampler = "uniform"; min = 0.0; max = 0.1; } );
 * Each entry registers the catalog field `name` (width columns, default 1, at most 64; not a
 * built-in field, n_sources or plocs; no name twice in the list) and adds the sampler `name`
 * of kind `sampler` (any registered sampler kind; its parameters are required keys) that
 * draws it. Errors are BL_ERR_CONFIG naming file:line and the key; a key no entry reads is an
 * unknown key. Registration is process-wide (lib/catalog.h): loading the same config twice
 * is fine, a field of the same name with another width is an error. */
bl_status bl_prior_fields_from_config(bl_prior *prior, bl_config *cfg, const char *path);
/* The prior of a config: the group `prior` (bl_prior_params_from_config; n_bands comes from
 * the survey), the built-in samplers, the new fields of the top-level list `fields`
 * (bl_prior_fields_from_config), then the samplers of the list `prior.fields` and of the
 * top-level list `prior_fields` — where a config that @includes another adds samplers
 * (libconfig cannot append to the included file's prior.fields). *out = NULL on error. */
bl_status bl_prior_from_config(bl_prior **out, bl_config *cfg, int n_bands);
int bl_prior_n_samplers(const bl_prior *prior);
const bl_field_sampler *bl_prior_sampler(const bl_prior *prior, int i);

/* A new tile catalog (B, ht, wt, S) with every sampler's field, drawn as described above. */
bl_tile_catalog *bl_prior_sample(const bl_prior *prior, uint64_t seed, uint64_t stream);
/* Fill an existing catalog of the right geometry (fields are added when missing). */
void bl_prior_sample_into(const bl_prior *prior, uint64_t seed, uint64_t stream, bl_tile_catalog *cat);
/* Images first .. first + batch_size - 1 of the batch with stream id `stream`, as the prior of
 * a larger batch would draw them (a process's slice of a data-parallel batch). */
void bl_prior_sample_slice(const bl_prior *prior, uint64_t seed, uint64_t stream, int64_t first,
                           bl_tile_catalog *cat);

/* Truncated Pareto of docs/behaviour.md §5.2 by its exact inverse CDF: u in [0, 1) ->
 * loc + scale (1 - (1 - c^-b) u)^(-1/b), support [loc + scale, loc + c scale]. */
double bl_truncated_pareto_icdf(double u, double b, double c, double loc, double scale);

#endif
