/* A tour of the variational distribution (the seed notebook, in C).
 *
 *   vardists               the redshift factor is added by one C call
 *   vardists factors.cfg   ... or by the `factors` list of a libconfig file, with no C code
 *
 * 1. the SDSS base spec: its factor table, P = 38
 * 2. add the redshift factor: P = 40
 * 3. random raw network outputs x_cat (4, 20, 20, P) -> make_dist
 * 4. a sampled catalog as the "truth", its per-tile nll (4, 20, 20)
 * 5. sample(use_mode) and a few of its fields */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "autograd/ops.h"
#include "dists/vardist.h"
#include "lib/config.h"
#include "lib/rng.h"

static int fail(const char *what)
{
    fprintf(stderr, "vardists: %s: %s\n", what, bl_error_message());
    return EXIT_FAILURE;
}

int main(int argc, char **argv)
{
    const int n_bands = 5, tile_slen = 4;
    const int64_t B = 4, ht = 20, wt = 20;

    printf("== SDSS base spec ==\n");
    bl_vardist_spec *spec = bl_vardist_spec_alloc_sdss(n_bands, tile_slen);
    bl_vardist_spec_print(stdout, spec);

    if (argc > 1) {
        printf("\n== with the factors of %s ==\n", argv[1]);
        bl_config *cfg;
        if (bl_config_load(&cfg, argv[1]) != BL_OK) return fail("config");
        bl_status st = bl_vardist_spec_add_config(spec, cfg, "factors");
        if (st == BL_OK) st = bl_config_check_unused(cfg);
        bl_config_free(cfg);
        if (st != BL_OK) return fail("factors");
    } else {
        printf("\n== with the redshift factor (one registration call) ==\n");
        if (bl_vardist_spec_add(spec, &(bl_factor){.name = "redshift", .kind = bl_dist_normal,
                                                   .field = "redshifts", .mask = BL_MASK_ON}) != BL_OK)
            return fail("redshift");
    }
    bl_vardist_spec_print(stdout, spec);
    const int P = bl_vardist_spec_dim(spec);

    /* raw outputs of an untrained network: N(0, 1) */
    bl_ctx *ctx = bl_ctx_alloc(64 << 20);
    bl_tensor *x_cat = bl_new(ctx, 4, BL_SHAPE(B, ht, wt, P)); /* (B, ht, wt, P) */
    bl_rng *rng = bl_rng_alloc(2385, 0);
    for (int64_t i = 0; i < x_cat->numel; i++) x_cat->data[i] = (bl_real)bl_rng_normal(rng);
    bl_rng_free(rng);
    char shape[96];
    printf("\nx_cat shape %s\n", bl_shape_str(x_cat, shape, sizeof shape));
    bl_vardist *dist = bl_vardist_spec_make_dist(ctx, spec, x_cat);

    /* a draw from the distribution serves as the true catalog */
    bl_tile_catalog *truth = bl_vardist_sample(dist, 2385, 1, 0);
    printf("true catalog: %lld sources in %lld tiles\n", (long long)bl_tile_catalog_total_sources(truth),
           (long long)bl_tile_catalog_n_tiles(truth));
    bl_tensor *nll;
    if (bl_vardist_nll(ctx, dist, truth, &nll) != BL_OK) return fail("nll");
    double mean = 0;
    for (int64_t i = 0; i < nll->numel; i++) mean += nll->data[i] / (double)nll->numel;
    printf("nll shape %s, mean %.4f\n", bl_shape_str(nll, shape, sizeof shape), mean);

    bl_tile_catalog *est = bl_vardist_sample(dist, 2385, 2, 1);
    printf("\nsample(use_mode): %lld sources; fields:", (long long)bl_tile_catalog_total_sources(est));
    for (int f = 0; f < est->n_fields; f++)
        printf(" %s%s", est->fields[f].name, bl_shape_str(est->fields[f].t, shape, sizeof shape));
    printf("\n");
    const bl_tensor *locs = bl_tile_catalog_require(est, "locs");
    const bl_tensor *type = bl_tile_catalog_require(est, "source_type");
    const bl_tensor *sf = bl_tile_catalog_require(est, "star_fluxes");
    const bl_tensor *gf = bl_tile_catalog_require(est, "galaxy_fluxes");
    const bl_tensor *z = bl_tile_catalog_get(est, "redshifts");
    printf("%-10s %-4s %-17s %-5s %-12s %-12s %s\n", "tile", "n", "locs", "type", "star_flux_r",
           "gal_flux_r", "redshifts");
    for (int64_t j = 0; j < 4; j++) {
        int64_t t = bl_tile_index(est, 0, 0, j);
        printf("(0,0,%lld)    %-4d (%.4f, %.4f) %-5d %-12.5g %-12.5g ", (long long)j, est->n_sources[t],
               (double)locs->data[2 * t], (double)locs->data[2 * t + 1], (int)type->data[t],
               (double)sf->data[t * n_bands + 2], (double)gf->data[t * n_bands + 2]);
        if (z) printf("%.5g", (double)z->data[t]); else printf("-");
        printf("\n");
    }

    bl_tile_catalog_free(est);
    bl_tile_catalog_free(truth);
    bl_ctx_free(ctx);
    bl_vardist_spec_free(spec);
    return EXIT_SUCCESS;
}
