/* Encoder training-step throughput against the machine's sgemm (docs/encoder.md).
 *
 *   bench_encoder [--quick] [--reps N] [--size S] [--batches 1,4,16] [--no-base]
 *                 [--engine im2col|onednn|both] [--cpu-clock]
 *
 * One training step = zero_grad + loss forward (docs/behaviour.md §4.9) + backward + Adam step + ctx reset,
 * on a random normalised batch (B, 5, 6, S, S) (default S = 80) with a random true catalog.
 *  1. sgemm: GFLOP/s of a 2048^3 cblas_sgemm with all OpenBLAS threads, best of 3, measured
 *     again right before and after every configuration: on a shared machine the rate moves
 *     with the load, so each row is compared with the best sgemm rate around it.
 *  2. The redshift config (P = 40, checkerboard off: features net + marginal net) at each B:
 *     ms per step (best of --reps after one warm-up step), GFLOP/s and the fraction of the
 *     sgemm rate. FLOPs: the convolutions' forward, dX and dW products (2 x multiply-adds
 *     each), the first layer without dX (its input is data): counted from the layer list,
 *     printed per image (the issue quotes 36.17 GFLOP per image per step).
 *  3. Peak resident memory (getrusage) after the largest-B redshift step, and the ctx arena's
 *     peak.
 *  4. The base config's step (P = 38, checkerboard on: the checkerboard net runs twice).
 * --quick: S = 16, B = 1, one rep (a smoke test). Numbers on a shared machine are noisy.
 * --engine picks the convolution engine (autograd/conv_engine.h; default: the library's
 * default); with both, each configuration runs on every engine back to back (same machine
 * load) and the rows name the engine. --cpu-clock times steps by the process CPU clock (use
 * with OMP_NUM_THREADS=1 on a loaded machine).
 *
 *   bench_encoder --curve N [--batches B] [--size S] [--lr LR]
 *
 * instead runs the seed notebook's single-batch loop with the base config (P = 38,
 * checkerboard on): one simulated batch (default survey and prior, seed 42) for N steps of
 * Adam, the loss printed every 10 steps, the first step's time (it simulates the batch) and
 * ms per step over the others.
 *
 *   bench_encoder --step-only [--config redshift|base] [--batches B] [--reps R] [--size S] [--eval]
 *
 * is the machine-readable mode bench/vs_torch runs, one process per configuration so that the
 * peak RSS is this run's alone: one warm-up step then R timed training steps at batch B
 * (lines "step_ms=<ms>"), with --eval one warm-up then R timed forwards in eval mode without a
 * tape ("eval_ms=<ms>": features net, marginal net and, with the checkerboard, both
 * conditionals given the true catalog, as bl_encoder_infer), then "loss=", "peak_rss_kb="
 * (getrusage: the whole process), "arena_peak_mb=", the split of the step's memory
 * (autograd/tape.h, bl_ctx_mem: "forward_mb=" activations and tape at the start of backward,
 * "backward_scratch_mb=" the backward functions' scratch on top, "grad_peak_mb=" gradient
 * buffers of per-step tensors, "grad_total_mb=" what they would take without recycling),
 * "threads=", "conv5x5_impl=" (the 5x5 ConvBlocks' kernels: forward | backward data |
 * backward weights), "openblas_core=" and
 * "openblas_config=". */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "autograd/conv_engine.h"
#include "autograd/conv_onednn.h"
#include "autograd/optim.h"
#include "bench/bench_common.h"
#include "lib/rng.h"
#include "models/encoder.h"
#include "lib/sim/source.h"
#include "models/trainer.h"



/* ---- FLOPs of one training step (convolutions only) ---- */

static double conv_flops(const bl_conv_block *cb, int64_t *h, int64_t *w)
{
    *h = (*h + 2 * cb->pad - cb->k) / cb->stride + 1;
    *w = (*w + 2 * cb->pad - cb->k) / cb->stride + 1;
    return 2.0 * cb->cout * cb->cin * cb->k * cb->k * (double)(*h * *w);
}

static double c3_flops(const bl_c3 *c3, int64_t h, int64_t w)
{
    int64_t hh = h, ww = w;
    double f = conv_flops(&c3->cv1, &hh, &ww) + conv_flops(&c3->cv2, &hh, &ww) +
               conv_flops(&c3->cv3, &hh, &ww);
    for (int i = 0; i < c3->n; i++)
        f += conv_flops(&c3->m[i].cv1, &hh, &ww) + conv_flops(&c3->m[i].cv2, &hh, &ww);
    return f;
}

static double catalog_flops(const bl_catalog_net *n, int64_t h, int64_t w, int P)
{
    double f = c3_flops(&n->c0, h, w);
    int64_t hh = h, ww = w;
    f += conv_flops(&n->c1, &hh, &ww);
    f += c3_flops(&n->c2, hh, ww);
    f += conv_flops(&n->c3, &hh, &ww);
    f += c3_flops(&n->c5, h, w);
    return f + 2.0 * P * n->c5.cv3.cout * (double)(h * w); /* Detect */
}

/* forward FLOPs of features + marginal per image; *first = the Conv3d's share */
static double forward_flops(const bl_encoder *enc, int64_t H, int64_t W, double *first)
{
    const bl_net_arch *a = &enc->nets.arch;
    const bl_features_net *fn = &enc->nets.features;
    *first = 2.0 * a->features_width * a->n_bands * a->ch_per_band * 25 * (double)(H * W);
    double f = *first;
    int64_t h = H, w = W;
    f += conv_flops(&fn->b0, &h, &w);
    for (int i = 0; i < 4; i++) f += conv_flops(&fn->b1[i], &h, &w);
    f += conv_flops(&fn->b2, &h, &w);
    for (int i = 0; i < 5; i++) f += conv_flops(&fn->b3[i], &h, &w);
    f += conv_flops(&fn->b4, &h, &w);
    return f + catalog_flops(&enc->nets.marginal, h, w, a->n_out);
}

static double context_flops(const bl_encoder *enc, int64_t ht, int64_t wt)
{
    const bl_context_net *c = &enc->nets.context;
    double f = 0;
    int64_t h = ht, w = wt;
    for (int i = 0; i < 3; i++) f += conv_flops(&c->enc[i], &h, &w);
    f += conv_flops(&c->merge, &h, &w);
    return f + catalog_flops(&c->catalog, ht, wt, enc->nets.arch.n_out);
}

/* ---- one configuration ---- */

static bl_tile_catalog *random_truth(int64_t B, int64_t ht, int64_t wt, int with_z)
{
    bl_tile_catalog *c = bl_tile_catalog_alloc(B, ht, wt, 1, 4, 5);
    bl_tensor *locs = bl_tile_catalog_add(c, "locs"), *type = bl_tile_catalog_add(c, "source_type");
    bl_tensor *sf = bl_tile_catalog_add(c, "star_fluxes"), *gf = bl_tile_catalog_add(c, "galaxy_fluxes");
    bl_tensor *gp = bl_tile_catalog_add(c, "galaxy_params");
    bl_tensor *z = with_z ? bl_tile_catalog_add(c, "redshifts") : NULL;
    bl_rng *r = bl_rng_alloc(5, 0);
    for (int64_t t = 0; t < B * ht * wt; t++) {
        c->n_sources[t] = bl_rng_uniform(r) < 0.2;
        locs->data[2 * t] = (bl_real)bl_rng_uniform(r);
        locs->data[2 * t + 1] = (bl_real)bl_rng_uniform(r);
        type->data[t] = bl_rng_uniform(r) < 0.7;
        for (int k = 0; k < 5; k++) {
            sf->data[5 * t + k] = (bl_real)(1 + 10 * bl_rng_uniform(r));
            gf->data[5 * t + k] = (bl_real)(1 + 10 * bl_rng_uniform(r));
        }
        for (int k = 0; k < 6; k++) gp->data[6 * t + k] = (bl_real)(0.1 + 0.8 * bl_rng_uniform(r));
        if (z) z->data[t] = (bl_real)bl_rng_uniform(r);
    }
    bl_rng_free(r);
    return c;
}

/* --cpu-clock: time steps by the process's CPU clock (meaningful with OMP_NUM_THREADS=1 on a
 * machine shared with other jobs, where the wall clock measures the load) */
static int use_cpu_clock;

static double step_clock(void)
{
    if (!use_cpu_clock) return bl_bench_now();
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct step_result {
    double ms, loss;
    size_t arena_peak;
} step_result;

static step_result run_steps(bl_encoder *enc, int64_t B, int64_t S, int reps, int with_z)
{
    bl_adam_opts ao = bl_adam_defaults();
    bl_adam *adam = bl_adam_alloc(enc->params, ao);
    bl_ctx *ctx = bl_ctx_alloc((size_t)64 << 20);
    bl_tile_catalog *truth = random_truth(B, S / 4, S / 4, with_z);
    bl_rng *r = bl_rng_alloc(6, 0);
    bl_real *xdata = bl_malloc((size_t)(B * 5 * 6 * S * S) * sizeof *xdata);
    for (int64_t i = 0; i < B * 5 * 6 * S * S; i++) xdata[i] = (bl_real)bl_rng_normal(r);
    step_result res = {1e30, 0, 0};
    for (int rep = 0; rep <= reps; rep++) { /* rep 0 warms up (arena growth, page faults) */
        double t0 = step_clock();
        bl_tensor *x = bl_from_data(ctx, 5, BL_SHAPE(B, 5, 6, S, S), xdata);
        bl_tensor *loss;
        bl_params_zero_grad(enc->params);
        if (bl_encoder_loss(enc, ctx, x, truth, &loss, NULL) != BL_OK) {
            fprintf(stderr, "bench_encoder: %s\n", bl_error_message());
            exit(1);
        }
        bl_backward(ctx, loss);
        bl_adam_step(adam);
        res.loss = loss->data[0];
        bl_ctx_reset(ctx);
        double ms = 1e3 * (step_clock() - t0);
        if (rep > 0 && ms < res.ms) res.ms = ms;
    }
    if (reps == 0) res.ms = 0;
    res.arena_peak = bl_arena_peak(bl_ctx_arena(ctx));
    free(xdata);
    bl_rng_free(r);
    bl_tile_catalog_free(truth);
    bl_ctx_free(ctx);
    bl_adam_free(adam);
    return res;
}

static long peak_rss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

/* --step-only: per-rep times on stdout, machine-readable */
static int run_step_only(const char *config, int64_t B, int64_t S, int reps, int eval)
{
    const int redshift = !strcmp(config, "redshift");
    if (!redshift && strcmp(config, "base")) {
        fprintf(stderr, "bench_encoder: --config must be redshift or base, got '%s'\n", config);
        return 2;
    }
    bl_vardist_spec *spec = bl_vardist_spec_alloc_sdss(5, 4);
    if (redshift &&
        bl_vardist_spec_add(spec, &(bl_factor){.name = "redshift", .kind = bl_dist_normal,
                                               .field = "redshifts", .mask = BL_MASK_ON})) {
        fprintf(stderr, "bench_encoder: %s\n", bl_error_message());
        return 1;
    }
    bl_encoder_opts o = bl_encoder_opts_default();
    o.use_checkerboard = !redshift;
    bl_encoder *enc = bl_encoder_alloc(spec, NULL, &o, 1);
    printf("config=%s\nP=%d\ncheckerboard=%d\nB=%lld\nsize=%lld\nthreads=%d\n", config, spec->dim,
           o.use_checkerboard, (long long)B, (long long)S, omp_get_max_threads());
    bl_adam *adam = bl_adam_alloc(enc->params, bl_adam_defaults());
    bl_ctx *ctx = bl_ctx_alloc((size_t)64 << 20);
    bl_tile_catalog *truth = random_truth(B, S / 4, S / 4, redshift);
    bl_rng *r = bl_rng_alloc(6, 0);
    const int64_t n = B * 5 * 6 * S * S;
    bl_real *xdata = bl_malloc((size_t)n * sizeof *xdata);
    for (int64_t i = 0; i < n; i++) xdata[i] = (bl_real)bl_rng_normal(r);
    double loss = 0;
    for (int rep = 0; rep <= reps; rep++) { /* rep 0 warms up */
        const double t0 = step_clock();
        bl_tensor *x = bl_from_data(ctx, 5, BL_SHAPE(B, 5, 6, S, S), xdata), *l;
        bl_params_zero_grad(enc->params);
        if (bl_encoder_loss(enc, ctx, x, truth, &l, NULL) != BL_OK) {
            fprintf(stderr, "bench_encoder: %s\n", bl_error_message());
            return 1;
        }
        bl_backward(ctx, l);
        bl_adam_step(adam);
        loss = l->data[0];
        bl_ctx_reset(ctx);
        if (rep > 0) printf("step_ms=%.3f\n", 1e3 * (step_clock() - t0));
        fflush(stdout);
    }
    if (eval) {
        bl_encoder_set_training(enc, 0);
        bl_set_grad_enabled(ctx, 0);
        for (int rep = 0; rep <= reps; rep++) {
            const double t0 = step_clock();
            bl_tensor *x = bl_from_data(ctx, 5, BL_SHAPE(B, 5, 6, S, S), xdata);
            bl_encoder_pred pred;
            if (bl_encoder_infer(enc, ctx, x, truth, &pred) != BL_OK) {
                fprintf(stderr, "bench_encoder: %s\n", bl_error_message());
                return 1;
            }
            bl_ctx_reset(ctx);
            if (rep > 0) printf("eval_ms=%.3f\n", 1e3 * (step_clock() - t0));
            fflush(stdout);
        }
    }
    bl_ctx_mem mem;
    bl_ctx_memory(ctx, &mem);
    const double MB = 1048576.0;
    printf("loss=%.6f\npeak_rss_kb=%ld\narena_peak_mb=%.1f\n", loss, peak_rss_kb(),
           mem.arena_peak / MB);
    /* where the step's memory goes (autograd/tape.h, bl_ctx_mem) */
    printf("forward_mb=%.1f\nbackward_scratch_mb=%.1f\ngrad_peak_mb=%.1f\ngrad_live_peak_mb=%.1f\n"
           "grad_total_mb=%.1f\narena_reserved_mb=%.1f\n",
           mem.forward_bytes / MB, (mem.arena_peak - mem.forward_bytes) / MB, mem.grad_peak / MB,
           mem.grad_live_peak / MB, mem.grad_total / MB, (mem.arena_reserved + mem.grad_reserved) / MB);
    printf("openblas_core=%s\nopenblas_config=%s\n", openblas_get_corename(), openblas_get_config());
#ifdef BL_CONV_HAVE_ONEDNN
    /* the kernels of the 5x5 ConvBlocks (autograd/conv_wino5.h), which ONEDNN_VERBOSE does not
     * list when they run the project's Winograd */
    if (bl_conv_get_engine() == BL_CONV_ENGINE_ONEDNN) {
        const int64_t fw = enc->nets.arch.features_width;
        const bl_conv_geom g5 = {.B = B, .C = fw, .H = S, .W = S, .M = fw, .kh = 5, .kw = 5,
                                 .stride = 1, .pad_h = 2, .pad_w = 2, .Ho = S, .Wo = S};
        printf("conv5x5_impl=%s\n", bl_conv_onednn_describe(&g5, 0, NULL));
    }
#endif
    free(xdata);
    bl_rng_free(r);
    bl_tile_catalog_free(truth);
    bl_ctx_free(ctx);
    bl_adam_free(adam);
    bl_encoder_free(enc);
    bl_vardist_spec_free(spec);
    return 0;
}

/* the single-batch loop on a simulated batch (B, 5, S, S) */
static int run_curve(int64_t n_steps, int64_t B, int64_t S, double lr)
{
    bl_survey sv;
    bl_survey_default(&sv);
    bl_prior_params pp;
    bl_prior_params_default(&pp);
    pp.batch_size = B;
    pp.n_tiles_h = pp.n_tiles_w = S / 4;
    bl_prior *prior;
    bl_simulator *sim;
    bl_sim_opts so;
    bl_sim_opts_default(&so);
    if (bl_prior_alloc(&prior, &pp) || bl_simulator_alloc(&sim, &sv, prior, &so)) {
        fprintf(stderr, "bench_encoder: %s\n", bl_error_message());
        return 1;
    }
    bl_normalize_opts no;
    bl_normalize_opts_default(&no);
    bl_sim_source *src = bl_sim_source_alloc(sim, &no, 42, 0);
    bl_vardist_spec *spec = bl_vardist_spec_alloc_sdss(5, 4);
    bl_encoder *enc = bl_encoder_alloc(spec, NULL, NULL, 42);
    bl_trainer_opts to = bl_trainer_opts_default();
    to.fixed_batch = 1;
    bl_trainer *tr = bl_trainer_alloc(enc, &to, bl_sim_source_batches(src, 0), (bl_batch_source){0});
    printf("single-batch loop: base config (P = 38, checkerboard on), B = %lld, %lld x %lld, lr %g, "
           "%lld steps\n", (long long)B, (long long)S, (long long)S, lr, (long long)n_steps);
    /* the first step simulates the batch: timed apart from the others */
    double *losses = bl_malloc((size_t)n_steps * sizeof *losses);
    const double t0 = bl_bench_now();
    bl_status st = bl_trainer_fixed_batch_loop(tr, 1, lr, 0, NULL, losses);
    const double t1 = bl_bench_now();
    if (!st && n_steps > 1) st = bl_trainer_fixed_batch_loop(tr, n_steps - 1, lr, 0, NULL, losses + 1);
    const double t2 = bl_bench_now();
    for (int64_t s = 0; !st && s < n_steps; s++)
        if (s % 10 == 0 || s == n_steps - 1) printf("step %lld loss %.6f\n", (long long)s, losses[s]);
    free(losses);
    if (st) fprintf(stderr, "bench_encoder: %s\n", bl_error_message());
    else printf("first step (simulates the batch) %.1f ms; %.1f ms per step over the other %lld; "
                "total %.2f s; true sources in the batch: %lld\n",
                1e3 * (t1 - t0), n_steps > 1 ? 1e3 * (t2 - t1) / (double)(n_steps - 1) : 0.0,
                (long long)(n_steps - 1), t2 - t0,
                (long long)bl_tile_catalog_total_sources(tr->fixed_truth));
    bl_trainer_free(tr);
    bl_encoder_free(enc);
    bl_vardist_spec_free(spec);
    bl_sim_source_free(src);
    bl_simulator_free(sim);
    return st ? 1 : 0;
}

int main(int argc, char **argv)
{
    int quick = 0, reps = 3, base = 1, step_only = 0, eval = 0;
    const char *config = "redshift";
    int64_t curve = 0;
    double lr = 1e-3;
    int64_t S = 80;
    int batches[8] = {1, 4, 16}, nb = 3;
    bl_conv_engine engines[2] = {bl_conv_get_engine()};
    int n_eng = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--no-base")) base = 0;
        else if (!strcmp(argv[i], "--step-only")) step_only = 1;
        else if (!strcmp(argv[i], "--eval")) eval = 1;
        else if (!strcmp(argv[i], "--config") && i + 1 < argc) config = argv[++i];
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc) S = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--curve") && i + 1 < argc) curve = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--lr") && i + 1 < argc) lr = atof(argv[++i]);
        else if (!strcmp(argv[i], "--cpu-clock")) use_cpu_clock = 1;
        else if (!strcmp(argv[i], "--engine") && i + 1 < argc) {
            const char *e = argv[++i];
            n_eng = 0;
            if (!strcmp(e, "both")) {
                engines[n_eng++] = BL_CONV_ENGINE_IM2COL;
                engines[n_eng++] = BL_CONV_ENGINE_ONEDNN;
            } else if (bl_conv_engine_parse(e, &engines[n_eng++]) != BL_OK) {
                fprintf(stderr, "bench_encoder: --engine: %s\n", bl_error_message());
                return 2;
            }
            for (int k = 0; k < n_eng; k++)
                if (bl_conv_set_engine(engines[k]) != BL_OK) {
                    fprintf(stderr, "bench_encoder: --engine: %s\n", bl_error_message());
                    return 2;
                }
        }
        else if (!strcmp(argv[i], "--batches") && i + 1 < argc) {
            nb = 0;
            for (char *p = argv[++i]; *p && nb < 8;) {
                batches[nb++] = (int)strtol(p, &p, 10);
                if (*p == ',') p++;
            }
        } else {
            fprintf(stderr, "usage: %s [--quick] [--reps N] [--size S] [--batches 1,4,16] [--no-base] "
                            "[--engine im2col|onednn|both] [--cpu-clock]\n"
                            "       %s --curve N [--batches B] [--size S] [--lr LR]\n"
                            "       %s --step-only [--config redshift|base] [--batches B] [--reps R] "
                            "[--size S] [--eval]\n",
                    argv[0], argv[0], argv[0]);
            return 2;
        }
    }
    if (quick) {
        S = 16;
        nb = 1;
        batches[0] = 1;
        reps = 1;
    }
    if (S % 16 || S < 16) {
        fprintf(stderr, "bench_encoder: --size must be a multiple of 16\n");
        return 2;
    }
    if (curve > 0) return run_curve(curve, batches[0], S, lr);
    if (step_only) return run_step_only(config, batches[0], S, reps, eval);
    printf("bench_encoder: %d OpenMP threads, bl_real = %s, images %lld x %lld\n",
           omp_get_max_threads(), BL_REAL_NAME, (long long)S, (long long)S);
    const int gemm_n = quick ? 256 : 2048, gemm_reps = quick ? 1 : 3;
    double peak = bl_bench_gemm_gflops(gemm_n, gemm_reps), best_peak = peak;
    printf("sgemm %d^3: %.1f GFLOP/s\n", gemm_n, peak);

    /* redshift config: P = 40, checkerboard off */
    bl_vardist_spec *spec40 = bl_vardist_spec_alloc_sdss(5, 4);
    bl_status st = bl_vardist_spec_add(spec40, &(bl_factor){.name = "redshift", .kind = bl_dist_normal,
                                                            .field = "redshifts", .mask = BL_MASK_ON});
    if (st) {
        fprintf(stderr, "bench_encoder: %s\n", bl_error_message());
        return 1;
    }
    bl_encoder_opts o = bl_encoder_opts_default();
    o.use_checkerboard = 0;
    bl_encoder *enc = bl_encoder_alloc(spec40, NULL, &o, 1);
    double first, fwd = forward_flops(enc, S, S, &first);
    /* fwd + dX + dW; the first layer has no dX */
    const double step_flops = 3 * fwd - first;
    printf("redshift config (P = %d, checkerboard off): %.2f GFLOP per image per step "
           "(forward %.2f; %lld trainable parameters)\n",
           spec40->dim, step_flops / 1e9, fwd / 1e9, (long long)bl_params_count_trainable(enc->params));
    printf("%4s %-7s %10s %10s %12s %8s %10s\n", "B", "engine", "ms/step", "GFLOP/s", "sgemm GF/s",
           "%sgemm", "loss");
    long rss = 0;
    size_t arena = 0;
    for (int i = 0; i < nb; i++) {
        double ms[2] = {0, 0};
        for (int e = 0; e < n_eng; e++) {
            bl_conv_set_engine(engines[e]);
            step_result r = run_steps(enc, batches[i], S, reps, 1);
            rss = peak_rss_kb();
            arena = r.arena_peak;
            const double after = bl_bench_gemm_gflops(gemm_n, gemm_reps), local = after > peak ? after : peak;
            best_peak = local > best_peak ? local : best_peak;
            const double gf = step_flops * batches[i] / (r.ms / 1e3) / 1e9;
            printf("%4d %-7s %10.1f %10.1f %12.1f %7.1f%% %10.4f\n", batches[i],
                   bl_conv_engine_name(engines[e]), r.ms, gf, local, 100 * gf / local, r.loss);
            fflush(stdout);
            peak = after;
            ms[e] = r.ms;
        }
        if (n_eng == 2 && ms[0] > 0)
            printf("     B = %d: %s / %s step time %.3f\n", batches[i], bl_conv_engine_name(engines[1]),
                   bl_conv_engine_name(engines[0]), ms[1] / ms[0]);
    }
    printf("peak RSS after B = %d: %.0f MiB (ctx arena peak %.0f MiB)\n", batches[nb - 1],
           rss / 1024.0, arena / 1048576.0);
    bl_encoder_free(enc);

    if (base) {
        bl_vardist_spec *spec38 = bl_vardist_spec_alloc_sdss(5, 4);
        bl_encoder *eb = bl_encoder_alloc(spec38, NULL, NULL, 1);
        double f38 = forward_flops(eb, S, S, &first);
        const double base_flops = 3 * f38 - first + 2 * 3 * context_flops(eb, S / 4, S / 4);
        printf("base config (P = 38, checkerboard on): %.2f GFLOP per image per step\n",
               base_flops / 1e9);
        for (int i = 0; i < nb; i++)
            for (int e = 0; e < n_eng; e++) {
                bl_conv_set_engine(engines[e]);
                step_result r = run_steps(eb, batches[i], S, reps, 0);
                const double after = bl_bench_gemm_gflops(gemm_n, gemm_reps), local = after > peak ? after : peak;
                best_peak = local > best_peak ? local : best_peak;
                const double gf = base_flops * batches[i] / (r.ms / 1e3) / 1e9;
                printf("%4d %-7s %10.1f %10.1f %12.1f %7.1f%% %10.4f\n", batches[i],
                       bl_conv_engine_name(engines[e]), r.ms, gf, local, 100 * gf / local, r.loss);
                fflush(stdout);
                peak = after;
            }
        bl_encoder_free(eb);
        bl_vardist_spec_free(spec38);
    }
    printf("best sgemm rate seen in this run: %.1f GFLOP/s\n", best_peak);
    bl_vardist_spec_free(spec40);
    return 0;
}
