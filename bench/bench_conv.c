/* Convolution throughput against the machine's sgemm.
 *
 *   bench_conv [--quick] [--reps N] [--shape I] [--batch B] [--engine E] [--wino W]
 *              [--col-kb KB] [--min-cols N] [--taps-min-k K]
 *
 * Measures, in one run, the GFLOP/s of a large square GEMM (cblas_sgemm, or dgemm in a double
 * build; all OpenBLAS threads, best of several runs) and of forward + backward of the encoder's
 * convolution shapes through the tape ops (bl_conv2d / bl_conv3d_depth, then bl_backward).
 * FLOPs are 2 x multiply-adds of the forward, dX and dW products (3 equal products); the first
 * layer's input is data and needs no gradient, so it counts forward + dW only. Bias and the
 * loss seed (dy += g) run inside the timed region but are not counted: they are < 1% of the
 * work. Each configuration reports the best of its repetitions (default 5), and the sgemm
 * reference is the best rate seen in the run (measured again before each configuration): on a
 * shared machine the best observed rates are the comparable ones.
 * --quick runs one small shape once (a smoke test); --shape/--batch pick one configuration;
 * --col-kb/--min-cols/--taps-min-k override the im2col chunking (autograd/conv_kernels.h).
 * --engine im2col|onednn|both (default: both when the build has oneDNN) selects the
 * convolution engines (autograd/conv_engine.h); with both, every configuration runs on each
 * engine back to back, so the two see the same machine load. --wino off|auto|all|both sets
 * oneDNN's Winograd policy for 3x3 stride-1 layers (both: one oneDNN row per policy, off and
 * all). oneDNN rows name the implementations oneDNN chose (forward | backward data |
 * backward weights). --cpu-clock times by the process CPU clock (use with OMP_NUM_THREADS=1
 * on a loaded machine). */
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "autograd/conv_engine.h"
#include "autograd/conv_kernels.h"
#include "autograd/conv_onednn.h"
#include "bench/bench_common.h"
#include "autograd/ops.h"



static void fill(bl_real *p, int64_t n, uint64_t seed)
{
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
        p[i] = (bl_real)((double)(seed >> 11) / 9007199254740992.0 - 0.5);
    }
}

/* L = sum(y * g): seeds dL/dy = g for the backward pass */
static void dot_loss_backward(bl_ctx *ctx, bl_node *node)
{
    bl_tensor *y = node->in[0];
    const bl_real *g = *(const bl_real **)node->saved;
    bl_real *dy = bl_grad(ctx, y);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < y->numel; i++) dy[i] += g[i];
}

static bl_tensor *dot_loss(bl_ctx *ctx, bl_tensor *y, const bl_real *g)
{
    bl_tensor *l = bl_full(ctx, 0, NULL, 0);
    bl_tensor *in[1] = {y};
    /* y may be channel-blocked: g is random, its order does not matter */
    bl_node *node = bl_tape_push_any_layout(ctx, "dot_loss", dot_loss_backward, l, 1, in, sizeof g);
    if (node) *(const bl_real **)node->saved = g;
    return l;
}

typedef struct shape {
    const char *name;
    int cin, cout, k, stride, pad, hw;
    int depth; /* > 0: the 3-D first layer, x (B, cin, depth, hw, hw), kernel depth = depth */
} shape;

typedef struct timing {
    double fwd, bwd, gflop;
} timing;

/* one engine setting: im2col, or oneDNN with a Winograd policy */
typedef struct engine_cfg {
    bl_conv_engine engine;
    int wino; /* bl_conv_wino (oneDNN only) */
} engine_cfg;

static void engine_select(engine_cfg e)
{
    if (bl_conv_set_engine(e.engine) != BL_OK) {
        fprintf(stderr, "bench_conv: %s\n", bl_error_message());
        exit(2);
    }
#ifdef BL_CONV_HAVE_ONEDNN
    bl_conv_onednn_set_winograd((bl_conv_wino)e.wino);
#endif
}

static const char *engine_label(engine_cfg e, char *buf, size_t n)
{
    static const char *const wino[] = {"direct", "auto", "wino"};
    if (e.engine == BL_CONV_ENGINE_ONEDNN) snprintf(buf, n, "onednn/%s", wino[e.wino]);
    else snprintf(buf, n, "%s", bl_conv_engine_name(e.engine));
    return buf;
}

/* --cpu-clock: time by the process's CPU clock instead of the wall clock. Meaningful with
 * OMP_NUM_THREADS=1 on a machine shared with other jobs (the wall clock then measures the
 * load); with more threads it also counts OpenMP's spin-waiting. */
static int use_cpu_clock;

static double bench_clock(void)
{
    if (!use_cpu_clock) return bl_bench_now();
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static timing run_shape(const shape *s, int batch, int reps)
{
    const int is3d = s->depth > 0;
    bl_tensor *x = is3d ? bl_tensor_alloc("x", 5, BL_SHAPE(batch, s->cin, s->depth, s->hw, s->hw), 0)
                        : bl_tensor_alloc("x", 4, BL_SHAPE(batch, s->cin, s->hw, s->hw), 1);
    bl_tensor *w = is3d ? bl_tensor_alloc("w", 5, BL_SHAPE(s->cout, s->cin, s->depth, s->k, s->k), 1)
                        : bl_tensor_alloc("w", 4, BL_SHAPE(s->cout, s->cin, s->k, s->k), 1);
    bl_tensor *bias = is3d ? bl_tensor_alloc("b", 1, BL_SHAPE(s->cout), 1) : NULL;
    fill(x->data, x->numel, 3);
    fill(w->data, w->numel, 4);
    /* on the oneDNN engine a 2-D layer reads and writes the channel-blocked layout its
     * primitive prefers (nChw16c with AVX-512, nChw8c with AVX2), as inside the encoder, so the
     * layer runs the kernel it runs there (the 5x5 Winograd needs blocked activations); x's
     * values are random, so they are not reordered */
    int blocked = 0;
#ifdef BL_CONV_HAVE_ONEDNN
    if (!is3d && bl_conv_get_engine() == BL_CONV_ENGINE_ONEDNN && bl_conv_get_blocked()) {
        const int ho = (s->hw + 2 * s->pad - s->k) / s->stride + 1;
        const bl_conv_geom g = {.B = batch, .C = s->cin, .H = s->hw, .W = s->hw, .M = s->cout,
                                .kh = s->k, .kw = s->k, .stride = s->stride, .pad_h = s->pad,
                                .pad_w = s->pad, .Ho = ho, .Wo = ho};
        const int v = bl_conv_onednn_out_layout(&g, 0);
        if (v && s->cin % v == 0) blocked = v;
    }
#endif
    if (blocked) x->layout = blocked;
    const int ho = (s->hw + 2 * s->pad - s->k) / s->stride + 1;
    const int64_t ny = (int64_t)batch * s->cout * ho * ho;
    bl_real *g = bl_malloc((size_t)ny * sizeof *g);
    fill(g, ny, 5);
    bl_ctx *ctx = bl_ctx_alloc((size_t)3 * ny * sizeof(bl_real) + ((size_t)64 << 20));
    timing best = {1e30, 1e30, 0};
    for (int r = 0; r < reps + 1; r++) { /* run 0 warms up (arena growth, page faults) */
        bl_ctx_reset(ctx);
        bl_tensor_zero_grad(x);
        bl_tensor_zero_grad(w);
        double t0 = bench_clock();
        bl_tensor *y = is3d ? bl_conv3d_depth(ctx, x, w, bias, s->pad)
                    : blocked ? bl_conv2d_blocked(ctx, x, w, NULL, s->stride, s->pad)
                              : bl_conv2d(ctx, x, w, NULL, s->stride, s->pad);
        double t1 = bench_clock();
        bl_backward(ctx, dot_loss(ctx, y, g));
        double t2 = bench_clock();
        if (r > 0 && t2 - t0 < best.fwd + best.bwd) {
            best.fwd = t1 - t0;
            best.bwd = t2 - t1;
        }
    }
    const double macs = (double)ny * s->cin * (is3d ? s->depth : 1) * s->k * s->k;
    best.gflop = 2 * macs * (is3d ? 2 : 3) / 1e9;
    bl_ctx_free(ctx);
    free(g);
    bl_tensor_free(x);
    bl_tensor_free(w);
    bl_tensor_free(bias);
    return best;
}

int main(int argc, char **argv)
{
    int quick = 0, reps = 5, only_shape = -1, only_batch = 0;
    bl_conv_engine engines[2] = {BL_CONV_ENGINE_IM2COL, BL_CONV_ENGINE_ONEDNN};
    int n_eng = bl_conv_engine_available(BL_CONV_ENGINE_ONEDNN) ? 2 : 1;
    int winos[2] = {1, 0}, n_wino = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) {
            quick = 1;
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
            if (reps < 1) reps = 1;
        } else if (!strcmp(argv[i], "--shape") && i + 1 < argc) {
            only_shape = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--batch") && i + 1 < argc) {
            only_batch = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--cpu-clock")) {
            use_cpu_clock = 1;
        } else if (!strcmp(argv[i], "--engine") && i + 1 < argc) {
            const char *e = argv[++i];
            n_eng = 0;
            if (!strcmp(e, "both") || !strcmp(e, "im2col")) engines[n_eng++] = BL_CONV_ENGINE_IM2COL;
            if (!strcmp(e, "both") || !strcmp(e, "onednn")) engines[n_eng++] = BL_CONV_ENGINE_ONEDNN;
            if (!n_eng) {
                fprintf(stderr, "bench_conv: --engine %s: expected im2col, onednn or both\n", e);
                return 2;
            }
        } else if (!strcmp(argv[i], "--wino") && i + 1 < argc) {
            const char *w = argv[++i];
            n_wino = 1;
            if (!strcmp(w, "off")) winos[0] = 0;
            else if (!strcmp(w, "auto")) winos[0] = 1;
            else if (!strcmp(w, "all")) winos[0] = 2;
            else if (!strcmp(w, "both")) winos[0] = 0, winos[1] = 2, n_wino = 2;
            else {
                fprintf(stderr, "bench_conv: --wino %s: expected off, auto, all or both\n", w);
                return 2;
            }
        } else if (!strcmp(argv[i], "--col-kb") && i + 1 < argc) {
            bl_conv_tuning t = bl_conv_get_tuning();
            t.col_bytes = (int64_t)atoi(argv[++i]) << 10;
            bl_conv_set_tuning(t);
        } else if (!strcmp(argv[i], "--taps-min-k") && i + 1 < argc) {
            bl_conv_tuning t = bl_conv_get_tuning();
            t.taps_min_k = atoi(argv[++i]);
            bl_conv_set_tuning(t);
        } else if (!strcmp(argv[i], "--min-cols") && i + 1 < argc) {
            bl_conv_tuning t = bl_conv_get_tuning();
            t.min_cols = atoi(argv[++i]);
            bl_conv_set_tuning(t);
        } else {
            fprintf(stderr, "usage: %s [--quick] [--reps N] [--shape I (0-8)] [--batch B] "
                            "[--engine im2col|onednn|both] [--wino off|auto|all|both] [--cpu-clock] "
                            "[--col-kb KB] [--min-cols N] [--taps-min-k K]\n", argv[0]);
            return 2;
        }
    }
    static const shape shapes[] = {
        {"64->64 5x5 p2 @80", 64, 64, 5, 1, 2, 80, 0},
        {"64->128 3x3 s2 p1 @80", 64, 128, 3, 2, 1, 80, 0},
        {"128->128 3x3 p1 @40", 128, 128, 3, 1, 1, 40, 0},
        {"256->256 3x3 p1 @20", 256, 256, 3, 1, 1, 20, 0},
        {"256->256 3x3 p1 @10", 256, 256, 3, 1, 1, 10, 0},
        {"768->128 1x1 @20", 768, 128, 1, 1, 0, 20, 0},
        {"3d 5x6x5x5->64 p2 @80 (*)", 5, 64, 5, 1, 2, 80, 6},
        {"128->128 1x1 @20", 128, 128, 1, 1, 0, 20, 0},
        {"512->256 1x1 @10", 512, 256, 1, 1, 0, 10, 0},
    };
    static const shape quick_shape = {"64->64 3x3 p1 @20", 64, 64, 3, 1, 1, 20, 0};
    static const int batches[] = {4, 16};

    /* The sgemm rate is measured before every configuration too and the best of all is the
     * reference: on a shared machine the best observed rates of both are the comparable ones. */
    const int gemm_n = quick ? 512 : 2048;
    double peak = bl_bench_gemm_gflops(gemm_n, quick ? 1 : 5);
    printf("bl_real = %s, OpenMP threads %d, OpenBLAS threads %d (%s)\n", BL_REAL_NAME,
           omp_get_max_threads(), openblas_get_num_threads(), openblas_get_corename());
    const bl_conv_tuning tu = bl_conv_get_tuning();
    printf("im2col chunks: <= %lld KB of columns, >= %lld output pixels, taps when C kw >= %lld; "
           "best of %d repetitions\n", (long long)(tu.col_bytes >> 10), (long long)tu.min_cols,
           (long long)tu.taps_min_k, quick ? 1 : reps);
    engine_cfg cfgs[4];
    int n_cfg = 0;
    for (int e = 0; e < n_eng; e++)
        for (int k = 0; k < (engines[e] == BL_CONV_ENGINE_ONEDNN ? n_wino : 1); k++)
            cfgs[n_cfg++] = (engine_cfg){engines[e], engines[e] == BL_CONV_ENGINE_ONEDNN ? winos[k] : 0};
    enum { MAX_ROWS = 64 };
    const shape *row_shape[MAX_ROWS];
    int row_batch[MAX_ROWS], n_rows = 0;
    engine_cfg row_cfg[MAX_ROWS];
    char row_impl[MAX_ROWS][160];
    timing row_t[MAX_ROWS];
    const int n_shapes = quick ? 1 : (int)(sizeof shapes / sizeof shapes[0]);
    for (int i = 0; i < n_shapes; i++)
        for (int b = 0; b < (quick ? 1 : 2) && n_rows < MAX_ROWS; b++) {
            const shape *s = quick ? &quick_shape : &shapes[i];
            const int batch = quick ? 2 : only_batch ? only_batch : batches[b];
            if ((only_shape >= 0 && i != only_shape) || (only_batch && b > 0)) continue;
            if (!quick) {
                const double g = bl_bench_gemm_gflops(gemm_n, 2);
                if (g > peak) peak = g;
            }
            for (int e = 0; e < n_cfg && n_rows < MAX_ROWS; e++) {
                engine_select(cfgs[e]);
                row_shape[n_rows] = s;
                row_batch[n_rows] = batch;
                row_cfg[n_rows] = cfgs[e];
                row_t[n_rows] = run_shape(s, batch, quick ? 1 : reps);
                row_impl[n_rows][0] = 0;
#ifdef BL_CONV_HAVE_ONEDNN
                if (cfgs[e].engine == BL_CONV_ENGINE_ONEDNN) {
                    const int is3d = s->depth > 0, ho = (s->hw + 2 * s->pad - s->k) / s->stride + 1;
                    const bl_conv_geom g = {.B = batch, .C = s->cin * (is3d ? s->depth : 1),
                                            .H = s->hw, .W = s->hw, .M = s->cout, .kh = s->k,
                                            .kw = s->k, .stride = s->stride, .pad_h = s->pad,
                                            .pad_w = s->pad, .Ho = ho, .Wo = ho};
                    snprintf(row_impl[n_rows], sizeof row_impl[0], "%s",
                             bl_conv_onednn_describe(&g, is3d, NULL));
                }
#endif
                n_rows++;
            }
        }
    printf("gemm %dx%d (best of the run): %.1f GFLOP/s\n\n", gemm_n, gemm_n, peak);
    printf("%-28s %5s %-14s %9s %9s %9s %9s %8s\n", "shape", "batch", "engine", "fwd ms", "bwd ms",
           "total ms", "GFLOP/s", "% gemm");
    for (int r = 0; r < n_rows; r++) {
        const timing t = row_t[r];
        const double total = t.fwd + t.bwd, gf = t.gflop / total;
        char lb[32];
        printf("%-28s %5d %-14s %9.2f %9.2f %9.2f %9.1f %7.0f%%  %s\n", row_shape[r]->name,
               row_batch[r], engine_label(row_cfg[r], lb, sizeof lb), 1e3 * t.fwd, 1e3 * t.bwd,
               1e3 * total, gf, 100 * gf / peak, row_impl[r]);
    }
    if (!quick)
        printf("\n(*) the first layer's input is data: forward + dW only (dX is skipped)\n");
    return 0;
}
