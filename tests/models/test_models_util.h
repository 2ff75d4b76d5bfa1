/* Shared helpers of the models tests: a tiny architecture, random inputs and catalogs. */
#ifndef BL_TEST_MODELS_UTIL_H
#define BL_TEST_MODELS_UTIL_H

#include <math.h>

#include "autograd/params.h"
#include "autograd/tape.h"
#include "lib/catalog.h"
#include "lib/rng.h"
#include "models/networks.h"

/* BLISS's layer structure at widths 4/8/8/4 with 5 bands x 6 channels (22,760 parameters at
 * P = 38, the network of tests/data/gen_encoder_refs.py). */
static inline bl_net_arch tm_tiny_arch(void)
{
    return (bl_net_arch){.n_bands = 5, .ch_per_band = 6, .tile_slen = 4, .n_out = 38,
                         .features_width = 4, .num_features = 8, .catalog_width = 8,
                         .context_width = 4};
}

/* (B, 5, 6, H, W) with N(0, 1) entries from stream `seed` */
static inline bl_tensor *tm_random_input_in(bl_arena *arena, int64_t B, int64_t H, int64_t W,
                                            uint64_t seed)
{
    bl_tensor *x = bl_tensor_push(arena, 5, BL_SHAPE(B, 5, 6, H, W));
    bl_rng *r = bl_rng_alloc(1234, seed);
    for (int64_t i = 0; i < x->numel; i++) x->data[i] = (bl_real)bl_rng_normal(r);
    bl_rng_free(r);
    return x;
}

static inline bl_tensor *tm_random_input(bl_ctx *ctx, int64_t B, int64_t H, int64_t W, uint64_t seed)
{
    return tm_random_input_in(bl_ctx_arena(ctx), B, H, W, seed);
}

/* A true catalog with S = 1: half the tiles hold a source, 60% of them galaxies; fluxes
 * e^(3u) nmgy, galaxy shapes inside their supports; optionally redshifts U(0, 3). */
static inline bl_tile_catalog *tm_random_truth(int64_t B, int64_t ht, int64_t wt, int tile_slen,
                                               uint64_t seed, int redshift)
{
    bl_tile_catalog *c = bl_tile_catalog_alloc(B, ht, wt, 1, tile_slen, 5);
    bl_tensor *locs = bl_tile_catalog_add(c, "locs"), *type = bl_tile_catalog_add(c, "source_type");
    bl_tensor *sf = bl_tile_catalog_add(c, "star_fluxes"), *gf = bl_tile_catalog_add(c, "galaxy_fluxes");
    bl_tensor *gp = bl_tile_catalog_add(c, "galaxy_params");
    bl_tensor *z = redshift ? bl_tile_catalog_add(c, "redshifts") : NULL;
    static const double scale[6] = {1, M_PI, 1, 3, 1, 3};
    bl_rng *r = bl_rng_alloc(99, seed);
    for (int64_t t = 0; t < B * ht * wt; t++) {
        c->n_sources[t] = bl_rng_uniform(r) < 0.5;
        for (int k = 0; k < 2; k++) locs->data[t * 2 + k] = (bl_real)bl_rng_uniform(r);
        type->data[t] = bl_rng_uniform(r) < 0.6;
        for (int k = 0; k < 5; k++) {
            sf->data[t * 5 + k] = (bl_real)exp(3 * bl_rng_uniform(r));
            gf->data[t * 5 + k] = (bl_real)exp(3 * bl_rng_uniform(r));
        }
        for (int k = 0; k < 6; k++) gp->data[t * 6 + k] = (bl_real)(scale[k] * (0.01 + 0.98 * bl_rng_uniform(r)));
        if (z) z->data[t] = (bl_real)(3 * bl_rng_uniform(r));
    }
    bl_rng_free(r);
    return c;
}

/* Perturb BatchNorm affine parameters and running statistics (1-D tensors) so that they
 * matter in eval mode; running_var stays >= 0.6. */
static inline void tm_perturb_bn(bl_params *p, uint64_t seed)
{
    bl_rng *r = bl_rng_alloc(7, seed);
    for (int i = 0; i < p->n; i++) {
        bl_tensor *t = p->t[i];
        if (t->ndim != 1) continue;
        for (int64_t k = 0; k < t->numel; k++)
            t->data[k] += (bl_real)(0.3 * (2 * bl_rng_uniform(r) - 1) + (t->requires_grad ? 0 : 0.1));
    }
    bl_rng_free(r);
}

#endif
