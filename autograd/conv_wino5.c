/* Winograd F(4x4, 5x5) convolutions (autograd/conv_wino5.h, docs/conv.md).
 *
 * Work is split into blocks of WINO5_TILES consecutive tiles (numbered over images, tile rows
 * and tile columns; the last block may be shorter). A thread transforms its block's input
 * (V: tiles x 64 points x C), runs the 64 point GEMMs against the transformed weights U
 * (64 x C x M, shared by all threads) into Mo (tiles x 64 x M) and transforms Mo back into
 * the output: V and Mo (2 x 12 x 64 x 64 floats = 384 KiB for the encoder's layers) stay in
 * the core's L2. The weight gradient transforms a block's x (V) and dy (Dy, tiles x 64 x M)
 * and adds V^T Dy per point into the thread's dU (64 x C x M). */
#include "autograd/conv_wino5.h"

#ifdef BL_CONV_HAVE_ONEDNN

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/conv_wino5_tables.h"

#define WINO5_TILES 12 /* tiles per block (a multiple of every variant's WINO_R) */
#define WINO5_WTILES 12 /* tiles per block of the weight gradient */

typedef struct wino5_job {
    int64_t C, M, H, W, Ho, Wo;  /* input channels, output channels, sizes (stride 1) */
    int64_t th, tw;              /* tile rows and columns per image */
    int64_t xcb, ycb;            /* channel blocks of x and y */
    const float *x, *U, *bias;
    float *y;
    const float *dy;             /* the weight gradient's output gradient (layout ycb) */
    int acc, silu;
} wino5_job;

/* image b and output origin (oy, ox) of tile t, tiles numbered over images, tile rows and
 * tile columns */
static inline void wino5_tile(const wino5_job *j, int64_t t, int64_t *b, int64_t *oy,
                              int64_t *ox)
{
    *b = t / (j->th * j->tw);
    *oy = t / j->tw % j->th * WINO5_M;
    *ox = t % j->tw * WINO5_M;
}

/* the variants (autograd/conv_wino5_kernel.inc) */
#if defined(__x86_64__) || defined(__i386__)
#define WINO_NAME(n) n##_avx512
#define WINO_TARGET __attribute__((target("avx512f,fma")))
#define WINO_VL 16
#define WINO_NV 4
#define WINO_R 6
#define WINO_RW 4
#include "autograd/conv_wino5_kernel.inc"

#define WINO_NAME(n) n##_avx2
#define WINO_TARGET __attribute__((target("avx2,fma")))
#define WINO_VL 8
#define WINO_NV 2
#define WINO_R 6
#define WINO_RW 4
#include "autograd/conv_wino5_kernel.inc"
#define WINO5_HAVE_X86 1
#endif

#define WINO_NAME(n) n##_generic
#define WINO_TARGET
#define WINO_VL 4
#define WINO_NV 4
#define WINO_R 2
#define WINO_RW 2
#include "autograd/conv_wino5_kernel.inc"

typedef void (*wino5_block_fn)(const wino5_job *, int64_t, int64_t, float *, float *);
typedef void (*wino5_wgrad_fn)(const wino5_job *, int64_t, int64_t, float *, float *, float *);

static bl_wino5_isa wino5_isa = BL_WINO5_ISA_AUTO;

static int isa_supported(bl_wino5_isa isa)
{
#ifdef WINO5_HAVE_X86
    __builtin_cpu_init();
    if (isa == BL_WINO5_ISA_AVX512) return __builtin_cpu_supports("avx512f");
    if (isa == BL_WINO5_ISA_AVX2)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
    return isa == BL_WINO5_ISA_GENERIC;
}

static bl_wino5_isa isa_now(void)
{
    if (wino5_isa == BL_WINO5_ISA_AUTO) {
        wino5_isa = isa_supported(BL_WINO5_ISA_AVX512) ? BL_WINO5_ISA_AVX512
                    : isa_supported(BL_WINO5_ISA_AVX2) ? BL_WINO5_ISA_AVX2
                                                       : BL_WINO5_ISA_GENERIC;
        /* BL_WINO5_ISA=generic|avx2|avx512 picks the variant (benchmarks of what another CPU
         * would run); a variant this CPU lacks or an unknown name is a user error */
        const char *env = getenv("BL_WINO5_ISA");
        if (env && *env) {
            const bl_wino5_isa want = !strcmp(env, "generic") ? BL_WINO5_ISA_GENERIC
                                      : !strcmp(env, "avx2")  ? BL_WINO5_ISA_AVX2
                                      : !strcmp(env, "avx512") ? BL_WINO5_ISA_AVX512
                                                               : BL_WINO5_ISA_AUTO;
            if (want == BL_WINO5_ISA_AUTO || !isa_supported(want)) {
                fprintf(stderr, "bliss: BL_WINO5_ISA=%s: %s (expected generic, avx2 or avx512 "
                                "that this CPU runs)\n", env,
                        want == BL_WINO5_ISA_AUTO ? "unknown variant" : "this CPU cannot run it");
                exit(2);
            }
            wino5_isa = want;
        }
    }
    return wino5_isa;
}

int bl_wino5_set_isa(bl_wino5_isa isa)
{
    if (isa != BL_WINO5_ISA_AUTO && !isa_supported(isa)) return 0;
    wino5_isa = isa;
    return 1;
}

const char *bl_wino5_isa_name(void)
{
    switch (isa_now()) {
    case BL_WINO5_ISA_AVX512: return "avx512";
    case BL_WINO5_ISA_AVX2: return "avx2";
    default: return "generic";
    }
}

static wino5_block_fn block_fn(void)
{
    switch (isa_now()) {
#ifdef WINO5_HAVE_X86
    case BL_WINO5_ISA_AVX512: return wino5_block_avx512;
    case BL_WINO5_ISA_AVX2: return wino5_block_avx2;
#endif
    default: return wino5_block_generic;
    }
}

static wino5_wgrad_fn wgrad_fn(void)
{
    switch (isa_now()) {
#ifdef WINO5_HAVE_X86
    case BL_WINO5_ISA_AVX512: return wino5_wgrad_block_avx512;
    case BL_WINO5_ISA_AVX2: return wino5_wgrad_block_avx2;
#endif
    default: return wino5_wgrad_block_generic;
    }
}

int bl_wino5_applies(const bl_conv_geom *g, int x_layout, int y_layout)
{
    /* a vector of the variant must lie in one channel block */
    const int vl = isa_now() == BL_WINO5_ISA_AVX512 ? 16 : isa_now() == BL_WINO5_ISA_AVX2 ? 8 : 4;
    const int blocked = (x_layout == 8 || x_layout == 16) && (y_layout == 8 || y_layout == 16) &&
                        x_layout % vl == 0 && y_layout % vl == 0;
    return blocked && g->kh == 5 && g->kw == 5 && g->stride == 1 && g->pad_h == 2 &&
           g->pad_w == 2 && g->Ho == g->H && g->Wo == g->W && g->C % 64 == 0 && g->M % 64 == 0;
}

/* U[p][i][o] (p < 64, i < Ci, o < Co) = G w_io G^T with w_io = w[o][i] (forward: Co = M output
 * channels, Ci = C) or, flipped, w_io = w[i][o] rotated by 180 degrees (backward data: the
 * convolution from M channels to C). w is OIHW (M, C, 5, 5). */
static void weights_transform(const float *w, int64_t M, int64_t C, int flip, float *U)
{
    const int64_t Ci = flip ? M : C, Co = flip ? C : M;
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < M; k++)
        for (int64_t c = 0; c < C; c++) {
            const float *wk = w + (k * C + c) * 25;
            double g[5][5], t[WINO5_A][5];
            for (int a = 0; a < 5; a++)
                for (int b = 0; b < 5; b++) g[a][b] = flip ? wk[(4 - a) * 5 + 4 - b] : wk[a * 5 + b];
            for (int i = 0; i < WINO5_A; i++)
                for (int b = 0; b < 5; b++) {
                    double s = 0;
                    for (int a = 0; a < 5; a++) s += wino5_G[i][a] * g[a][b];
                    t[i][b] = s;
                }
            const int64_t in = flip ? k : c, out = flip ? c : k;
            for (int i = 0; i < WINO5_A; i++)
                for (int jj = 0; jj < WINO5_A; jj++) {
                    double s = 0;
                    for (int b = 0; b < 5; b++) s += t[i][b] * wino5_G[jj][b];
                    U[((int64_t)(i * WINO5_A + jj) * Ci + in) * Co + out] = (float)s;
                }
        }
}

static void wino5_run(bl_ctx *ctx, wino5_job *j, const float *w, int flip, int64_t B)
{
    bl_arena *arena = bl_ctx_arena(ctx);
    const size_t mark = bl_arena_used(arena);
    const int64_t P = WINO5_A * WINO5_A;
    float *U = bl_scratch(ctx, (size_t)(P * j->C * j->M) * sizeof *U);
    weights_transform(w, flip ? j->C : j->M, flip ? j->M : j->C, flip, U);
    j->U = U;
    j->th = (j->Ho + WINO5_M - 1) / WINO5_M;
    j->tw = (j->Wo + WINO5_M - 1) / WINO5_M;
    const int64_t n_tiles = B * j->th * j->tw;
    const int64_t n_blocks = (n_tiles + WINO5_TILES - 1) / WINO5_TILES;
    const int nthr = omp_get_max_threads();
    const size_t per_thread = (size_t)(P * WINO5_TILES * (j->C + j->M));
    float *scratch = bl_scratch(ctx, (size_t)nthr * per_thread * sizeof *scratch);
    const wino5_block_fn fn = block_fn();
#pragma omp parallel num_threads(nthr)
    {
        float *V = scratch + (size_t)omp_get_thread_num() * per_thread;
        float *Mo = V + P * WINO5_TILES * j->C;
#pragma omp for schedule(static)
        for (int64_t i = 0; i < n_blocks; i++) {
            const int64_t t0 = i * WINO5_TILES;
            fn(j, t0, n_tiles - t0 < WINO5_TILES ? n_tiles - t0 : WINO5_TILES, V, Mo);
        }
    }
    bl_arena_release(arena, mark);
}

void bl_wino5_forward(bl_ctx *ctx, const bl_conv_geom *g, const float *x, int x_layout,
                      const float *w, const float *bias, float *y, int y_layout, int mode)
{
    BL_ASSERT(bl_wino5_applies(g, x_layout, y_layout), "wino5: convolution out of its scope");
    BL_ASSERT(mode >= BL_WINO5_STORE && mode <= BL_WINO5_SILU, "wino5: mode %d", mode);
    wino5_job j = {.C = g->C, .M = g->M, .H = g->H, .W = g->W, .Ho = g->Ho, .Wo = g->Wo,
                   .xcb = x_layout, .ycb = y_layout, .x = x, .bias = bias, .y = y,
                   .acc = mode == BL_WINO5_ACC, .silu = mode == BL_WINO5_SILU};
    wino5_run(ctx, &j, w, 0, g->B);
}

void bl_wino5_backward_data(bl_ctx *ctx, const bl_conv_geom *g, const float *dy, int dy_layout,
                            const float *w, float *dx, int dx_layout, int acc)
{
    BL_ASSERT(bl_wino5_applies(g, dx_layout, dy_layout), "wino5: convolution out of its scope");
    wino5_job j = {.C = g->M, .M = g->C, .H = g->Ho, .W = g->Wo, .Ho = g->H, .Wo = g->W,
                   .xcb = dy_layout, .ycb = dx_layout, .x = dy, .bias = NULL, .y = dx, .acc = acc};
    wino5_run(ctx, &j, w, 1, g->B);
}

/* dw[k][c] += G^T dU[.][c][k] G (5x5 from the 8x8 points), in double precision */
static void weights_gradient_back(const float *dU, int64_t M, int64_t C, float *dw)
{
#pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < M; k++)
        for (int64_t c = 0; c < C; c++) {
            double t[WINO5_A][5];
            for (int i = 0; i < WINO5_A; i++)
                for (int b = 0; b < 5; b++) {
                    double s = 0;
                    for (int jj = 0; jj < WINO5_A; jj++)
                        s += (double)dU[((int64_t)(i * WINO5_A + jj) * C + c) * M + k] * wino5_G[jj][b];
                    t[i][b] = s;
                }
            float *wk = dw + (k * C + c) * 25;
            for (int a = 0; a < 5; a++)
                for (int b = 0; b < 5; b++) {
                    double s = 0;
                    for (int i = 0; i < WINO5_A; i++) s += wino5_G[i][a] * t[i][b];
                    wk[a * 5 + b] += (float)s;
                }
        }
}

void bl_wino5_backward_weights(bl_ctx *ctx, const bl_conv_geom *g, const float *x, int x_layout,
                               const float *dy, int dy_layout, float *dw)
{
    BL_ASSERT(bl_wino5_applies(g, x_layout, dy_layout), "wino5: convolution out of its scope");
    bl_arena *arena = bl_ctx_arena(ctx);
    const size_t mark = bl_arena_used(arena);
    const int64_t P = WINO5_A * WINO5_A, C = g->C, M = g->M;
    wino5_job j = {.C = C, .M = M, .H = g->H, .W = g->W, .Ho = g->Ho, .Wo = g->Wo,
                   .xcb = x_layout, .ycb = dy_layout, .x = x, .dy = dy};
    j.th = (j.Ho + WINO5_M - 1) / WINO5_M;
    j.tw = (j.Wo + WINO5_M - 1) / WINO5_M;
    const int64_t n_tiles = g->B * j.th * j.tw;
    const int64_t n_blocks = (n_tiles + WINO5_WTILES - 1) / WINO5_WTILES;
    const int nthr = omp_get_max_threads();
    const size_t per_thread = (size_t)(P * WINO5_WTILES * (C + M) + P * C * M);
    float *scratch = bl_scratch(ctx, (size_t)nthr * per_thread * sizeof *scratch);
    const wino5_wgrad_fn fn = wgrad_fn();
#pragma omp parallel num_threads(nthr)
    {
        float *V = scratch + (size_t)omp_get_thread_num() * per_thread;
        float *Dy = V + P * WINO5_WTILES * C, *dU = Dy + P * WINO5_WTILES * M;
        memset(dU, 0, (size_t)(P * C * M) * sizeof *dU);
#pragma omp for schedule(static)
        for (int64_t i = 0; i < n_blocks; i++) {
            const int64_t t0 = i * WINO5_WTILES;
            fn(&j, t0, n_tiles - t0 < WINO5_WTILES ? n_tiles - t0 : WINO5_WTILES, V, Dy, dU);
        }
    }
    /* the threads' sums, added in thread order (deterministic for a thread count) */
    float *dU0 = scratch + P * WINO5_WTILES * (C + M);
#pragma omp parallel for schedule(static)
    for (int64_t e = 0; e < P * C * M; e++)
        for (int t = 1; t < nthr; t++) dU0[e] += dU0[(size_t)t * per_thread + e];
    weights_gradient_back(dU0, M, C, dw);
    bl_arena_release(arena, mark);
}

#else

/* ISO C forbids an empty translation unit */
typedef int bl_conv_wino5_unused;

#endif
