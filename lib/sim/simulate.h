/* Simulated batches (docs/behaviour.md §1.1, §5.5): prior -> catalog (nmgy) -> rendered images (electrons)
 * -> + background -> noise, plus psf_params and, optionally, Richardson-Lucy deconvolutions.
 *
 *   images        (B, NB, H, W)  electrons: mean + sqrt(mean) N(0,1), mean = max(render + sky, 1e-6)
 *   background    (B, NB, H, W)  electrons: the survey's sky level per band (noise-free)
 *   psf_params    (B, NB, 6)     [sigma1, sigma2, sigmap, beta, b, p0] of each band
 *   deconvolution (B, NB, H, W)  optional (simulator.deconvolve), docs/behaviour.md §9.6
 *   tile_catalog  (B, ht, wt, S) fluxes in nanomaggies, as the prior drew them
 * Rendered sources use flux_nmgy * nelec_per_nmgy[band] electrons; the rendered image is
 * clamped at 1e-8 below before the background is added (BLISS does the same).
 *
 * Determinism: image b of batch `batch_index` under `seed` draws its catalog from the prior's
 * streams (lib/sim/prior.h, stream = batch_index) and its noise from stream
 * mix(mix(batch_index, b), "noise"); images are distributed over OpenMP threads, each with its
 * own scratch, so a batch is bit-identical for any thread count.
 *
 * Config (bl_simulator_from_config): groups `survey` (lib/sim/survey.h), `prior`
 * (lib/sim/prior.h, with optional `prior.fields` list and top-level `prior_fields` list) and
 * optional `simulator`:
 *   deconvolve = false;        add the Richardson-Lucy output
 *   rl_iterations = 50;  rl_pad = 10; */
#ifndef BL_SIM_SIMULATE_H
#define BL_SIM_SIMULATE_H

#include <stdint.h>

#include "lib/catalog.h"
#include "lib/config.h"
#include "lib/sim/prior.h"
#include "lib/sim/render.h"
#include "lib/sim/survey.h"

/* The most sources per tile a dataset shard may declare (the prior's max_sources bound). */
#define BL_SIM_MAX_SOURCES_PER_TILE 1000000

typedef struct bl_simulator bl_simulator;

typedef struct bl_sim_batch {
    int64_t B, NB, H, W;
    char band_names[BL_SURVEY_MAX_BANDS][BL_BAND_NAME_MAX];
    bl_tensor *images;          /* (B, NB, H, W) */
    bl_tensor *background;      /* (B, NB, H, W) */
    bl_tensor *psf_params;      /* (B, NB, 6) */
    bl_tensor *deconvolution;   /* (B, NB, H, W) or NULL */
    bl_tile_catalog *tile_catalog;
} bl_sim_batch;

typedef struct bl_sim_opts {
    int deconvolve;
    int rl_iterations, rl_pad;
} bl_sim_opts;

void bl_sim_opts_default(bl_sim_opts *o);
/* The optional group at `path` ("simulator"): missing keys keep the defaults; rl_iterations
 * outside [0, 100000] or rl_pad outside [0, 10000] is BL_ERR_CONFIG naming file:line. */
bl_status bl_sim_opts_from_config(bl_sim_opts *o, bl_config *cfg, const char *path);

/* Takes ownership of `prior`. The survey's band count must equal the prior's. */
bl_status bl_simulator_alloc(bl_simulator **out, const bl_survey *sv, bl_prior *prior,
                             const bl_sim_opts *opts);
/* survey, prior (bl_prior_from_config: + prior.fields and prior_fields) and simulator groups of
 * cfg. */
bl_status bl_simulator_from_config(bl_simulator **out, bl_config *cfg);
void bl_simulator_free(bl_simulator *sim);
const bl_survey *bl_simulator_survey(const bl_simulator *sim);
const bl_prior *bl_simulator_prior(const bl_simulator *sim);
const bl_renderer *bl_simulator_renderer(const bl_simulator *sim);

/* An empty batch of the simulator's geometry. */
bl_sim_batch *bl_sim_batch_alloc(const bl_simulator *sim);
void bl_sim_batch_free(bl_sim_batch *batch);

/* Draw batch `batch_index` of the stream of `seed` into `batch` (from bl_sim_batch_alloc). */
void bl_simulator_generate(const bl_simulator *sim, uint64_t seed, uint64_t batch_index,
                           bl_sim_batch *batch);
/* Images first .. first + B - 1 (B: this simulator's prior.batch_size) of that batch as a
 * simulator of a larger batch draws them: a process's slice of a data-parallel batch. */
void bl_simulator_generate_slice(const bl_simulator *sim, uint64_t seed, uint64_t batch_index,
                                 int64_t first, bl_sim_batch *batch);

/* Render a catalog (nmgy) into noise-free images (B, NB, H, W) in electrons (no background,
 * no clamp): the decoder alone. The catalog needs `locs` and, for its on sources, finite
 * fluxes and galaxy_params; a non-finite value is BL_ERR_NAN naming the image, tile and slot
 * (images untouched). */
bl_status bl_simulator_render(const bl_simulator *sim, const bl_tile_catalog *cat, bl_tensor *images);

/* Files. safetensors names (BLISS's, with the batch dimension): images, background,
 * psf_params, [deconvolution], tile_catalog.n_sources (I64, (B, ht, wt)) and
 * tile_catalog.<field> for every catalog field (F32; I64 for integer fields such as
 * source_type); metadata tile_slen, bands, format. Reading checks every shape against the
 * others and the field table, and returns BL_ERR_FORMAT naming the tensor otherwise. */
bl_status bl_sim_batch_write(const bl_sim_batch *batch, const char *path);
bl_status bl_sim_batch_read(bl_sim_batch **out, const char *path);
/* FITS for astronomers (lib/io/fits.h): images and background per band and the full catalog. */
bl_status bl_sim_batch_write_fits(const bl_sim_batch *batch, const char *path);

#endif
