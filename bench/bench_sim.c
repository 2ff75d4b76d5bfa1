/* Simulator throughput: wall time to simulate one batch of the default config
 * (64 images x 5 bands x 80 x 80, ~72 sources per image) with 1 and 2 OpenMP threads.
 *
 *   bench_sim [--reps N] [--config path] [--deconvolve] [--quick]
 *
 * Each thread count: one warm-up batch, then N timed batches (default 7) with different batch
 * indices; prints min / median / max, sources per batch, the time split between the prior
 * (catalog) and the rest (rendering, noise), and the 1-minute load average before and after
 * (the machine is shared: compare the minimum across runs, and read the load). --quick: a
 * 16-image batch, 2 reps (a smoke test). Target: < 1 s per 64-image batch with 2 threads. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench_common.h"
#include "lib/sim/simulate.h"


static double load1(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1) l = -1;
        fclose(f);
    }
    return l;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    const char *config = BL_SOURCE_ROOT "/configs/sim_default.cfg";
    int reps = 7, quick = 0, deconvolve = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--config") && i + 1 < argc) config = argv[++i];
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--deconvolve")) deconvolve = 1;
        else {
            fprintf(stderr, "usage: bench_sim [--reps N] [--config path] [--deconvolve] [--quick]\n");
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    if (quick) reps = 2;
    bl_config *cfg;
    if (bl_config_load(&cfg, config) != BL_OK ||
        (quick && bl_config_set(cfg, "prior.batch_size=16") != BL_OK) ||
        (deconvolve && bl_config_set(cfg, "simulator.deconvolve=true") != BL_OK)) {
        fprintf(stderr, "bench_sim: %s\n", bl_error_message());
        return 1;
    }
    bl_simulator *sim;
    if (bl_simulator_from_config(&sim, cfg) != BL_OK) {
        fprintf(stderr, "bench_sim: %s\n", bl_error_message());
        return 1;
    }
    bl_sim_batch *batch = bl_sim_batch_alloc(sim);
    printf("bench_sim: %s, batch (%lld, %lld, %lld, %lld)%s\n", config, (long long)batch->B,
           (long long)batch->NB, (long long)batch->H, (long long)batch->W,
           deconvolve ? " + Richardson-Lucy" : "");
    double *t = bl_malloc((size_t)reps * sizeof(double));
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        double l0 = load1();
        bl_simulator_generate(sim, 1, 1000, batch); /* warm-up: page faults, FFTW twiddles */
        double prior_time = 0;
        int64_t sources = 0;
        for (int r = 0; r < reps; r++) {
            double t0 = bl_bench_now();
            bl_simulator_generate(sim, 1, (uint64_t)r, batch);
            t[r] = bl_bench_now() - t0;
            sources += bl_tile_catalog_total_sources(batch->tile_catalog);
            t0 = bl_bench_now();
            bl_tile_catalog *c = bl_prior_sample(bl_simulator_prior(sim), 1, (uint64_t)r);
            prior_time += bl_bench_now() - t0;
            bl_tile_catalog_free(c);
        }
        qsort(t, (size_t)reps, sizeof *t, cmp_double);
        printf("threads %d: min %.3f s  median %.3f s  max %.3f s  (%d batches, %.1f sources/image, "
               "prior %.1f ms/batch)  load %.2f -> %.2f\n",
               threads, t[0], t[reps / 2], t[reps - 1], reps,
               (double)sources / reps / (double)batch->B, 1e3 * prior_time / reps, l0, load1());
    }
    free(t);
    bl_sim_batch_free(batch);
    bl_simulator_free(sim);
    bl_config_free(cfg);
    return 0;
}
