/* The seed notebook of BLISS's redshift case study, in C (docs/walkthrough.md).
 *
 *   seed_redshift [STEPS [BATCH [SEED]]] [--threads N] [--tiles N]
 *
 *   STEPS    optimizer steps (300, as the notebook)
 *   BATCH    images in the one batch (64, as the notebook)
 *   SEED     simulation and network initialisation (42, train.seed of the configs)
 *   --tiles  tiles per image side (20: 80 x 80 pixels; a multiple of 4, for quick tries)
 *
 * Cells of the notebook, each a block of main() below:
 *   1. the variational spec: the SDSS factors plus `redshift`, added by ONE call (P = 40)
 *   2. the encoder for that spec (BLISS's widths; no checkerboard, as redshift.yaml)
 *   3. the simulator with the redshift prior Uniform(0.99, 1.01) and ONE batch of it
 *   4. Adam, lr 1e-3, STEPS steps on that same batch, the loss every 10 steps
 *   5. q(redshift) on the batch: mean and sd of its loc and scale over the tiles
 *
 * The images say nothing about redshift (the simulator does not use it), so the best q is
 * the prior: loc -> 1.0 and scale -> 0.02 / sqrt(12) = 0.0058.
 *
 * The same run from the command line is `bliss train -c configs/seed_toy.cfg`: with the same
 * seed, batch size, image size and thread count both print the same losses. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dists/vardist.h"
#include "lib/sim/simulate.h"
#include "models/encoder.h"
#include "lib/sim/source.h"
#include "models/trainer.h"

static int fail(const char *what)
{
    fprintf(stderr, "seed_redshift: %s: %s\n", what, bl_error_message());
    return EXIT_FAILURE;
}

static int usage(void)
{
    fprintf(stderr, "usage: seed_redshift [STEPS=300 [BATCH=64 [SEED=42]]] [--threads N] [--tiles N]\n");
    return 2;
}

/* a whole number in [lo, hi], or -1 */
static long parse_count(const char *s, long lo, long hi)
{
    char *end;
    long v = strtol(s, &end, 10);
    return (*s && !*end && v >= lo && v <= hi) ? v : -1;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* mean and sd of loc and scale of q(redshift) over the tiles where use[t] (all when NULL);
 * raw (B, ht, wt, dim) of factor f, whose kind maps it to loc and scale (for the normal:
 * mean and sd = exp(clamp(logvar, -20, 20) / 2)) */
static void print_q_stats(const bl_factor *f, const bl_tensor *raw, const int32_t *use, const char *what)
{
    double s[2] = {0, 0}, s2[2] = {0, 0};
    int64_t n = 0;
    const int dim = f->kind->dim;
    if (f->kind->value_dim != 1) return; /* one loc and one scale per tile */
    for (int64_t t = 0; t < raw->numel / dim; t++) {
        if (use && !use[t]) continue;
        double loc, scale;
        if (bl_dist_kind_loc_scale(f->kind, f->opts, raw->data + t * dim, &loc, &scale)) return;
        s[0] += loc;
        s2[0] += loc * loc;
        s[1] += scale;
        s2[1] += scale * scale;
        n++;
    }
    if (n == 0) return;
    double m0 = s[0] / n, m1 = s[1] / n;
    printf("q(redshift) over %lld %s: loc mean %.6g sd %.6g, scale mean %.6g sd %.6g\n",
           (long long)n, what, m0, sqrt(fmax(s2[0] / n - m0 * m0, 0)), m1,
           sqrt(fmax(s2[1] / n - m1 * m1, 0)));
}

int main(int argc, char **argv)
{
    long steps = 300, batch = 64, seed = 42, tiles = 20, threads = 0;
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            if ((threads = parse_count(argv[++i], 1, 1024)) < 0) return usage();
        } else if (!strcmp(argv[i], "--tiles") && i + 1 < argc) {
            if ((tiles = parse_count(argv[++i], 4, 256)) < 0 || tiles % 4) return usage();
        } else if (npos < 3 && argv[i][0] != '-') {
            long *dst[3] = {&steps, &batch, &seed};
            long lo = npos == 2 ? 0 : 1; /* a seed may be 0, steps and batch not */
            if ((*dst[npos++] = parse_count(argv[i], lo, 1000000000L)) < 0) return usage();
        } else {
            return usage();
        }
    }
    if (threads > 0) omp_set_num_threads((int)threads); /* OpenBLAS (OpenMP build) follows */

    /* 1. The variational spec: the 19 SDSS factors (P = 38), then redshift, a Normal per tile
     *    holding a source, on the catalog field `redshifts` (raw 38 = mean, 39 = log-variance). */
    bl_survey survey;
    bl_survey_default(&survey); /* the SDSS-like survey of configs/sim_default.cfg */
    const int tile_slen = 4;
    bl_vardist_spec *spec = bl_vardist_spec_alloc_sdss(survey.n_bands, tile_slen);
    if (bl_vardist_spec_add(spec, &(bl_factor){.name = "redshift", .kind = bl_dist_normal,
                                               .field = "redshifts", .mask = BL_MASK_ON}))
        return fail("redshift factor");
    const int P = bl_vardist_spec_dim(spec);
    const int iz = bl_vardist_spec_index(spec, "redshift");

    /* 2. The encoder: BLISS's networks with P outputs per tile (arch NULL = the BLISS widths,
     *    for the default normaliser's 5 bands x 6 channels), initialised from the seed. */
    bl_encoder_opts eopts = bl_encoder_opts_default();
    eopts.use_checkerboard = 0;
    bl_encoder *enc = bl_encoder_alloc(spec, NULL, &eopts, (uint64_t)seed);

    /* 3. The simulator: the default prior with the notebook's batch and image size, plus one
     *    sampler filling `redshifts` ~ U[0.99, 1.01) for every source. */
    bl_prior_params pp;
    bl_prior_params_default(&pp);
    pp.batch_size = batch;
    pp.n_tiles_h = pp.n_tiles_w = tiles;
    pp.tile_slen = tile_slen;
    bl_prior *prior;
    bl_simulator *sim;
    bl_sim_opts sopts;
    bl_sim_opts_default(&sopts);
    if (bl_prior_alloc(&prior, &pp)) return fail("prior");
    if (bl_prior_add(prior, &(bl_field_sampler){.name = "redshift", .kind = bl_sampler_uniform,
                                                .field = "redshifts", .params = {0.99, 1.01}}))
        return fail("redshift prior");
    if (bl_simulator_alloc(&sim, &survey, prior, &sopts)) return fail("simulator"); /* owns prior */

    /* The batch source: batch 0 of the seed's stream, normalised for the network (docs/behaviour.md §4.1).
     * Here we look at it; the trainer (fixed_batch) asks for batch 0 once and keeps it. */
    bl_normalize_opts norm;
    bl_normalize_opts_default(&norm);
    bl_sim_source *source = bl_sim_source_alloc(sim, &norm, (uint64_t)seed, 0);
    bl_batch_source batches = bl_sim_source_batches(source, 1);
    bl_ctx *ctx = bl_ctx_alloc(0); /* our batch and the final inference; the trainer has its own */
    bl_tensor *x;
    bl_tile_catalog *truth;
    if (batches.get(batches.user, bl_ctx_arena(ctx), 0, &x, &truth)) return fail("batch");
    const bl_tensor *z = bl_tile_catalog_require(truth, "redshifts"); /* (B, ht, wt, S, 1) */
    double zmin = INFINITY, zmax = -INFINITY;
    for (int64_t t = 0; t < bl_tile_catalog_n_tiles(truth); t++)
        if (truth->n_sources[t] > 0) { /* S = 1 (prior.max_sources): slot 0 is tile t's */
            zmin = fmin(zmin, z->data[t]);
            zmax = fmax(zmax, z->data[t]);
        }
    char shape[96];
    printf("seed_redshift: P = %d, %lld trainable parameters, seed %ld, %d threads\n", P,
           (long long)bl_params_count_trainable(enc->params), seed, omp_get_max_threads());
    printf("batch: x %s, %lld sources, redshifts in [%.4f, %.4f]\n",
           bl_shape_str(x, shape, sizeof shape), (long long)bl_tile_catalog_total_sources(truth),
           zmin, zmax);

    /* 4. Training: Adam lr 1e-3 on the same batch for every step. */
    bl_trainer_opts topts = bl_trainer_opts_default();
    topts.adam.lr = 1e-3;
    topts.fixed_batch = 1;
    bl_trainer *tr = bl_trainer_alloc(enc, &topts, batches, (bl_batch_source){0});
    double t0 = now();
    for (long s = 1; s <= steps; s++) {
        double loss;
        if (bl_trainer_step(tr, topts.adam.lr, &loss)) return fail("training");
        if (s == 1 || s % 10 == 0 || s == steps) {
            printf("step %4ld  loss %.6f  %7.1f s\n", s, loss, now() - t0);
            fflush(stdout);
        }
    }

    /* 5. q(redshift) on the batch: the marginal, BatchNorm in eval mode, no tape. */
    bl_encoder_set_training(enc, 0);
    bl_set_grad_enabled(ctx, 0);
    bl_encoder_pred pred;
    bl_encoder_infer_marginal(enc, ctx, x, &pred);
    const bl_tensor *raw = pred.marginal->raw[iz]; /* (B, ht, wt, 2), tiles like truth's */
    const bl_factor *fz = &spec->factors[iz];
    print_q_stats(fz, raw, NULL, "tiles");
    print_q_stats(fz, raw, truth->n_sources, "tiles with a source");
    printf("(the prior: mean 1, sd %.6g)\n", 0.02 / sqrt(12.0));

    bl_trainer_free(tr);
    bl_tile_catalog_free(truth);
    bl_ctx_free(ctx);
    bl_sim_source_free(source);
    bl_simulator_free(sim);
    bl_encoder_free(enc);
    bl_vardist_spec_free(spec);
    return EXIT_SUCCESS;
}
