/* Convolutions: bl_conv2d, bl_conv3d_depth.
 *
 * Two engines compute convolutions (autograd/conv_engine.h): the oneDNN primitives of
 * autograd/conv_onednn.c (default in the float build) or the im2col engine of this file; the
 * op records which one ran its forward, and its backward dispatches on that.
 *
 * The im2col engine lowers a convolution to OpenBLAS GEMMs on column matrices. With
 * K = C kh kw and N output pixels of a chunk:
 *   forward   Y (M, N)   = W (M, K) Col (K, N)
 *   dW        dW (M, K) += dY (M, N) Col^T (N, K)
 *   dX        stride 1: dX = conv(dY, W~) with W~ (C, M, kh, kw) the kernel transposed and flipped
 *             and padding kh - 1 - pad: the forward path again, a well-shaped GEMM with no
 *             scatter; stride > 1: dCol (K, N) = W^T dY, then col2im adds dCol into dX.
 *   db        sums of dY over batch and pixels.
 * A 1x1 stride-1 unpadded convolution needs no im2col: within one image the input (C, H W)
 * is the column matrix. A stride-1 convolution on large images splits its forward and dW
 * GEMMs over the kernel rows ("taps", see conv_forward_taps): im2col then writes kh times less.
 *
 * Chunks. The output pixels of the whole batch, B Ho Wo, are cut into chunks of whole output
 * rows. A chunk's column matrix is at most col_bytes (conv_kernels.h), so the GEMM reads it
 * from cache right after im2col wrote it, and the scratch memory does not grow with the batch.
 * At small spatial sizes (20x20, 10x10) a chunk spans several images so that the GEMMs stay
 * large; their output then goes through a small scratch matrix and a permute into NCHW.
 * Within one image, GEMMs read and write the NCHW tensors in place (leading dimension Ho Wo).
 *
 * Threads: OpenBLAS (the OpenMP build) threads each GEMM itself; im2col, col2im, permutes and
 * bias sums are OpenMP loops between GEMMs, never around them, so there is one OpenMP runtime
 * and no oversubscription. Every reduction has a fixed order, so results do not depend on
 * timing (GEMM results may depend on the thread count through OpenBLAS's partitioning).
 *
 * Scratch memory comes from the ctx arena and is released when the op returns
 * (bl_arena_release), so a step's arena holds activations, not im2col buffers. */
#include "autograd/ops.h"
#include "autograd/conv_engine.h"
#include "autograd/conv_kernels.h"
#include "autograd/conv_onednn.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#ifdef BL_REAL_DOUBLE
#define BL_GEMM cblas_dgemm
#else
#define BL_GEMM cblas_sgemm
#endif

/* Column-matrix budget per chunk: a fraction of the 32 MB L3, several times the L2. Chunks
 * narrower than min_cols output pixels make GEMMs inefficient: take more rows instead. Taps
 * need an inner dimension C kw >= 256 (the first layer's 150 was slower with taps). Values
 * measured with bench/bench_conv on a 2-core Zen 3. */
static bl_conv_tuning conv_tuning = {.col_bytes = (int64_t)6 << 20, .min_cols = 1024,
                                     .taps_min_k = 256};

bl_conv_tuning bl_conv_get_tuning(void) { return conv_tuning; }
void bl_conv_set_tuning(bl_conv_tuning tuning) { conv_tuning = tuning; }

/* Pointwise convolutions with at least this many output pixels per image run per image. */
#define BL_CONV_POINTWISE_MIN_HW 256
/* Below this many elements a loop runs on one thread. */
#define BL_CONV_OMP_MIN 32768

/* Chunks of output rows r = b Ho + oh: either `per` whole images each, or (when one image is
 * too large) each image split into `parts` bands of nearly equal height. */
typedef struct bl_conv_plan {
    int64_t n;        /* number of chunks */
    int64_t per;      /* images per chunk, or 0 when images are split */
    int64_t parts;    /* bands per image when split */
    int64_t max_cols; /* widest chunk, in output pixels */
} bl_conv_plan;

static int conv_is_pointwise(const bl_conv_geom *g)
{
    return g->kh == 1 && g->kw == 1 && g->stride == 1 && g->pad_h == 0 && g->pad_w == 0;
}

static bl_conv_plan conv_plan(const bl_conv_geom *g, int64_t K)
{
    bl_conv_plan p = {0};
    int64_t rows = conv_tuning.col_bytes / ((int64_t)sizeof(bl_real) * K * g->Wo);
    int64_t min_rows = (conv_tuning.min_cols + g->Wo - 1) / g->Wo;
    if (rows < min_rows) rows = min_rows;
    if (rows < 1) rows = 1;
    /* a pointwise convolution reads its input in place one image at a time: when an image is
     * large enough for an efficient GEMM (measured: 1x1 768->128 at 20x20), copying several
     * images into one column matrix costs more than it gains */
    if (conv_is_pointwise(g) && g->Ho * g->Wo >= BL_CONV_POINTWISE_MIN_HW) rows = g->Ho;
    if (rows >= g->Ho) {
        int64_t per = rows / g->Ho;
        if (per > g->B) per = g->B;
        int64_t n = (g->B + per - 1) / per;
        p.per = (g->B + n - 1) / n; /* balance the images over the chunks */
        p.n = (g->B + p.per - 1) / p.per;
        p.max_cols = p.per * g->Ho * g->Wo;
    } else {
        p.parts = (g->Ho + rows - 1) / rows;
        p.n = g->B * p.parts;
        p.max_cols = ((g->Ho + p.parts - 1) / p.parts) * g->Wo;
    }
    return p;
}

/* Output rows [r0, r1) of chunk k. */
static void conv_chunk(const bl_conv_geom *g, const bl_conv_plan *p, int64_t k, int64_t *r0,
                       int64_t *r1)
{
    if (p->per) {
        int64_t b0 = k * p->per, b1 = b0 + p->per < g->B ? b0 + p->per : g->B;
        *r0 = b0 * g->Ho;
        *r1 = b1 * g->Ho;
    } else {
        int64_t b = k / p->parts, q = k % p->parts;
        *r0 = b * g->Ho + q * g->Ho / p->parts;
        *r1 = b * g->Ho + (q + 1) * g->Ho / p->parts;
    }
}

/* Output columns ow whose input column ow s - pad_w + j lies inside [0, W): [*lo, *hi). */
static void conv_valid_cols(const bl_conv_geom *g, int64_t j, int64_t *lo, int64_t *hi)
{
    const int64_t s = g->stride, off = g->pad_w - j; /* iw = ow s - off */
    int64_t l = off > 0 ? (off + s - 1) / s : 0;      /* ceil(off / s) */
    int64_t h = g->W - 1 + off >= 0 ? (g->W - 1 + off) / s + 1 : 0;
    if (h > g->Wo) h = g->Wo;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* col (K, (r1 - r0) Wo) <- patches of x (B, C, H, W) for output rows [r0, r1). */
static void conv_im2col(const bl_conv_geom *g, const bl_real *x, int64_t r0, int64_t r1,
                        bl_real *col)
{
    const int64_t K = g->C * g->kh * g->kw, n_cols = (r1 - r0) * g->Wo;
    const int64_t Wo = g->Wo, W = g->W, H = g->H, s = g->stride;
#pragma omp parallel for schedule(static) if (K * n_cols > BL_CONV_OMP_MIN)
    for (int64_t row = 0; row < K; row++) {
        const int64_t c = row / (g->kh * g->kw), i = (row / g->kw) % g->kh, j = row % g->kw;
        int64_t lo, hi;
        conv_valid_cols(g, j, &lo, &hi);
        bl_real *dst = col + row * n_cols;
        for (int64_t r = r0; r < r1; r++, dst += Wo) {
            const int64_t b = r / g->Ho, oh = r % g->Ho, ih = oh * s - g->pad_h + i;
            if (ih < 0 || ih >= H) {
                memset(dst, 0, (size_t)Wo * sizeof *dst);
                continue;
            }
            /* output column ow reads input column ow s + off */
            const bl_real *src = x + ((b * g->C + c) * H + ih) * W;
            const int64_t off = j - g->pad_w;
            for (int64_t ow = 0; ow < lo; ow++) dst[ow] = 0;
            if (s == 1)
                memcpy(dst + lo, src + lo + off, (size_t)(hi - lo) * sizeof *dst);
            else if (s == 2) /* a constant stride vectorizes (even/odd shuffles) */
                for (int64_t ow = lo; ow < hi; ow++) dst[ow] = src[2 * ow + off];
            else
                for (int64_t ow = lo; ow < hi; ow++) dst[ow] = src[ow * s + off];
            for (int64_t ow = hi; ow < Wo; ow++) dst[ow] = 0;
        }
    }
}

/* dx (B, C, H, W) += col2im(dcol (K, (r1 - r0) Wo)); one thread per input channel, so no two
 * threads add into the same element. */
static void conv_col2im_add(const bl_conv_geom *g, const bl_real *dcol, int64_t r0, int64_t r1,
                            bl_real *dx)
{
    const int64_t n_cols = (r1 - r0) * g->Wo, Wo = g->Wo, W = g->W, H = g->H, s = g->stride;
#pragma omp parallel for schedule(static) if (g->C * g->kh * g->kw * n_cols > BL_CONV_OMP_MIN)
    for (int64_t c = 0; c < g->C; c++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++) {
                int64_t lo, hi;
                conv_valid_cols(g, j, &lo, &hi);
                const bl_real *src = dcol + ((c * g->kh + i) * g->kw + j) * n_cols;
                for (int64_t r = r0; r < r1; r++, src += Wo) {
                    const int64_t b = r / g->Ho, oh = r % g->Ho, ih = oh * s - g->pad_h + i;
                    if (ih < 0 || ih >= H) continue;
                    bl_real *dst = dx + ((b * g->C + c) * H + ih) * W;
                    const int64_t off = j - g->pad_w;
                    if (s == 2)
                        for (int64_t ow = lo; ow < hi; ow++) dst[2 * ow + off] += src[ow];
                    else
                        for (int64_t ow = lo; ow < hi; ow++) dst[ow * s + off] += src[ow];
                }
            }
}

/* (M, n_img HW) <-> (n_img, M, HW) for chunks of whole images. */
static void conv_scatter(const bl_real *buf, int64_t M, int64_t n_img, int64_t hw, bl_real *t,
                         int accumulate)
{
#pragma omp parallel for schedule(static) if (M * n_img * hw > BL_CONV_OMP_MIN)
    for (int64_t mb = 0; mb < M * n_img; mb++) {
        const int64_t m = mb / n_img, b = mb % n_img;
        const bl_real *src = buf + (m * n_img + b) * hw;
        bl_real *dst = t + (b * M + m) * hw;
        if (accumulate)
            for (int64_t k = 0; k < hw; k++) dst[k] += src[k];
        else
            memcpy(dst, src, (size_t)hw * sizeof *dst);
    }
}

static void conv_gather(const bl_real *t, int64_t M, int64_t n_img, int64_t hw, bl_real *buf)
{
#pragma omp parallel for schedule(static) if (M * n_img * hw > BL_CONV_OMP_MIN)
    for (int64_t mb = 0; mb < M * n_img; mb++) {
        const int64_t m = mb / n_img, b = mb % n_img;
        memcpy(buf + (m * n_img + b) * hw, t + (b * M + m) * hw, (size_t)hw * sizeof *buf);
    }
}

/* The (K, n_cols) column matrix of chunk [r0, r1): in place for a pointwise convolution within
 * one image, else im2col into `col`. */
static const bl_real *conv_columns(const bl_conv_geom *g, const bl_real *x, int64_t r0, int64_t r1,
                                   bl_real *col, int64_t *ld)
{
    const int64_t b = r0 / g->Ho;
    if (conv_is_pointwise(g) && (r1 - 1) / g->Ho == b) {
        *ld = g->H * g->W;
        return x + b * g->C * g->H * g->W + (r0 % g->Ho) * g->W;
    }
    conv_im2col(g, x, r0, r1, col);
    *ld = (r1 - r0) * g->Wo;
    return col;
}

/* The (M, n_cols) block of t (B, M, Ho, Wo) for chunk [r0, r1): in place within one image,
 * else gathered into `buf`. */
static const bl_real *conv_out_block(const bl_conv_geom *g, const bl_real *t, int64_t r0,
                                     int64_t r1, bl_real *buf, int64_t *ld)
{
    const int64_t b = r0 / g->Ho, hw = g->Ho * g->Wo;
    if ((r1 - 1) / g->Ho == b) {
        *ld = hw;
        return t + b * g->M * hw + (r0 % g->Ho) * g->Wo;
    }
    conv_gather(t + b * g->M * hw, g->M, (r1 - r0) / g->Ho, hw, buf);
    *ld = (r1 - r0) * g->Wo;
    return buf;
}

/* band (C kw, T Wo) <- for input rows ih = oh0 - pad_h + t, t < T, of image b: row (c, j),
 * column (t, ow) holds x[b][c][ih][ow - pad_w + j] (stride 1, zero outside) */
static void conv_im2col_band(const bl_conv_geom *g, const bl_real *x, int64_t b, int64_t oh0,
                             int64_t T, bl_real *band)
{
    const int64_t rows = g->C * g->kw, Wo = g->Wo, W = g->W, H = g->H, n_cols = T * Wo;
#pragma omp parallel for schedule(static) if (rows * n_cols > BL_CONV_OMP_MIN)
    for (int64_t row = 0; row < rows; row++) {
        const int64_t c = row / g->kw, j = row % g->kw, off = j - g->pad_w;
        int64_t lo, hi;
        conv_valid_cols(g, j, &lo, &hi);
        bl_real *dst = band + row * n_cols;
        for (int64_t t = 0; t < T; t++, dst += Wo) {
            const int64_t ih = oh0 - g->pad_h + t;
            if (ih < 0 || ih >= H) {
                memset(dst, 0, (size_t)Wo * sizeof *dst);
                continue;
            }
            const bl_real *src = x + ((b * g->C + c) * H + ih) * W;
            for (int64_t ow = 0; ow < lo; ow++) dst[ow] = 0;
            memcpy(dst + lo, src + lo + off, (size_t)(hi - lo) * sizeof *dst);
            for (int64_t ow = hi; ow < Wo; ow++) dst[ow] = 0;
        }
    }
}

/* The vertical-taps paths apply to stride-1 kernels with several rows whose kernel row
 * C kw is long enough for an efficient GEMM, when a chunk of output rows stays within one
 * image; *p is then their chunk plan (inner dimension C kw). */
static int conv_taps_plan(const bl_conv_geom *g, bl_conv_plan *p)
{
    const int64_t kt = g->C * g->kw;
    if (g->stride != 1 || g->kh < 2 || !conv_tuning.taps_min_k || kt < conv_tuning.taps_min_k)
        return 0;
    *p = conv_plan(g, kt);
    return p->per <= 1;
}

/* Stride-1 forward by vertical taps: Y = sum_i W_i Band_i, W_i (M, C kw) the kernel row i and
 * Band_i the band matrix shifted by i rows (a column offset of i Wo: no copy). The band is kh
 * times smaller than the full column matrix, so im2col writes kh times less, while the GEMMs
 * keep an inner dimension C kw >= taps_min_k and accumulate into Y in place (measured: five
 * K = 320 GEMMs run as fast as one K = 1600 GEMM). Chunks must lie within one image (a band
 * across images would compute kh - 1 rows of junk per image); returns 0 when not applicable. */
static int conv_forward_taps(bl_ctx *ctx, const bl_conv_geom *g, const bl_real *x,
                             const bl_real *w, bl_real *y, int accumulate)
{
    const int64_t kt = g->C * g->kw;
    bl_conv_plan p;
    if (!conv_taps_plan(g, &p)) return 0;
    bl_arena *arena = bl_ctx_arena(ctx);
    const size_t mark = bl_arena_used(arena);
    const int64_t K = g->C * g->kh * g->kw, hw = g->Ho * g->Wo, kh = g->kh;
    bl_real *wr = bl_scratch(ctx, (size_t)(g->M * K) * sizeof(bl_real)); /* (M, kh, C, kw) */
    for (int64_t m = 0; m < g->M; m++)
        for (int64_t c = 0; c < g->C; c++)
            for (int64_t i = 0; i < kh; i++)
                memcpy(wr + ((m * kh + i) * g->C + c) * g->kw, w + ((m * g->C + c) * kh + i) * g->kw,
                       (size_t)g->kw * sizeof *wr);
    const int64_t max_rows = p.max_cols / g->Wo;
    bl_real *band = bl_scratch(ctx, (size_t)(kt * (max_rows + kh - 1) * g->Wo) * sizeof(bl_real));
    for (int64_t k = 0; k < p.n; k++) {
        int64_t r0, r1;
        conv_chunk(g, &p, k, &r0, &r1);
        const int64_t b = r0 / g->Ho, oh0 = r0 % g->Ho, rows = r1 - r0;
        const int64_t ld = (rows + kh - 1) * g->Wo;
        conv_im2col_band(g, x, b, oh0, rows + kh - 1, band);
        for (int64_t i = 0; i < kh; i++)
            BL_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g->M, (int)(rows * g->Wo), (int)kt,
                    1, wr + i * kt, (int)K, band + i * g->Wo, (int)ld, i || accumulate ? 1 : 0,
                    y + b * g->M * hw + oh0 * g->Wo, (int)hw);
    }
    bl_arena_release(arena, mark);
    return 1;
}

/* y (B, M, Ho, Wo) (+)= conv(x, w), w (M, C kh kw) row-major; accumulate selects += or =. */
static void conv_forward_gemm(bl_ctx *ctx, const bl_conv_geom *g, const bl_real *x,
                              const bl_real *w, bl_real *y, int accumulate)
{
    if (conv_forward_taps(ctx, g, x, w, y, accumulate)) return;
    bl_arena *arena = bl_ctx_arena(ctx);
    const size_t mark = bl_arena_used(arena);
    const int64_t K = g->C * g->kh * g->kw, hw = g->Ho * g->Wo;
    const bl_conv_plan p = conv_plan(g, K);
    bl_real *col = bl_scratch(ctx, (size_t)(K * p.max_cols) * sizeof(bl_real));
    bl_real *ybuf = p.per > 1 ? bl_scratch(ctx, (size_t)(g->M * p.max_cols) * sizeof(bl_real)) : NULL;
    for (int64_t k = 0; k < p.n; k++) {
        int64_t r0, r1, ldb;
        conv_chunk(g, &p, k, &r0, &r1);
        const int64_t n_cols = (r1 - r0) * g->Wo, b = r0 / g->Ho;
        const bl_real *bm = conv_columns(g, x, r0, r1, col, &ldb);
        if ((r1 - 1) / g->Ho == b) {
            BL_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g->M, (int)n_cols, (int)K, 1, w,
                    (int)K, bm, (int)ldb, accumulate ? 1 : 0, y + b * g->M * hw + (r0 % g->Ho) * g->Wo,
                    (int)hw);
        } else {
            BL_GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)g->M, (int)n_cols, (int)K, 1, w,
                    (int)K, bm, (int)ldb, 0, ybuf, (int)n_cols);
            conv_scatter(ybuf, g->M, (r1 - r0) / g->Ho, hw, y + b * g->M * hw, accumulate);
        }
    }
    bl_arena_release(arena, mark);
}

/* dW by vertical taps (see conv_forward_taps): dW_i (M, C kw) += dY Band_i^T, into a scratch
 * (M, kh, C, kw) added to dw (M, C, kh, kw) at the end; returns 0 when not applicable. */
static int conv_dweight_taps(bl_ctx *ctx, const bl_conv_geom *g, const bl_real *x,
                             const bl_real *dy, bl_real *dw)
{
    const int64_t kt = g->C * g->kw;
    bl_conv_plan p;
    if (!conv_taps_plan(g, &p)) return 0;
    bl_arena *arena = bl_ctx_arena(ctx);
    const size_t mark = bl_arena_used(arena);
    const int64_t K = g->C * g->kh * g->kw, hw = g->Ho * g->Wo, kh = g->kh;
    bl_real *dwr = bl_scratch(ctx, (size_t)(g->M * K) * sizeof(bl_real)); /* (M, kh, C, kw) */
    memset(dwr, 0, (size_t)(g->M * K) * sizeof *dwr);
    const int64_t max_rows = p.max_cols / g->Wo;
    bl_real *band = bl_scratch(ctx, (size_t)(kt * (max_rows + kh - 1) * g->Wo) * sizeof(bl_real));
    for (int64_t k = 0; k < p.n; k++) {
        int64_t r0, r1;
        conv_chunk(g, &p, k, &r0, &r1);
        const int64_t b = r0 / g->Ho, oh0 = r0 % g->Ho, rows = r1 - r0;
        const int64_t ld = (rows + kh - 1) * g->Wo;
        conv_im2col_band(g, x, b, oh0, rows + kh - 1, band);
        for (int64_t i = 0; i < kh; i++)
            BL_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)g->M, (int)kt, (int)(rows * g->Wo),
                    1, dy + b * g->M * hw + oh0 * g->Wo, (int)hw, band + i * g->Wo, (int)ld, 1,
                    dwr + i * kt, (int)K);
    }
    for (int64_t m = 0; m < g->M; m++)
        for (int64_t c = 0; c < g->C; c++)
            for (int64_t i = 0; i < kh; i++) {
                const bl_real *src = dwr + ((m * kh + i) * g->C + c) * g->kw;
                bl_real *dst = dw + ((m * g->C + c) * kh + i) * g->kw;
                for (int64_t j = 0; j < g->kw; j++) dst[j] += src[j];
            }
    bl_arena_release(arena, mark);
    return 1;
}

/* dw (M, K) += dY Col^T summed over the batch. */
static void conv_dweight_gemm(bl_ctx *ctx, const bl_conv_geom *g, const bl_real *x,
                              const bl_real *dy, bl_real *dw)
{
    if (conv_dweight_taps(ctx, g, x, dy, dw)) return;
    bl_arena *arena = bl_ctx_arena(ctx);
    const size_t mark = bl_arena_used(arena);
    const int64_t K = g->C * g->kh * g->kw;
    const bl_conv_plan p = conv_plan(g, K);
    bl_real *col = bl_scratch(ctx, (size_t)(K * p.max_cols) * sizeof(bl_real));
    bl_real *dybuf = p.per > 1 ? bl_scratch(ctx, (size_t)(g->M * p.max_cols) * sizeof(bl_real)) : NULL;
    for (int64_t k = 0; k < p.n; k++) {
        int64_t r0, r1, ldb, ldd;
        conv_chunk(g, &p, k, &r0, &r1);
        const int64_t n_cols = (r1 - r0) * g->Wo;
        const bl_real *bm = conv_columns(g, x, r0, r1, col, &ldb);
        const bl_real *dm = conv_out_block(g, dy, r0, r1, dybuf, &ldd);
        BL_GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, (int)g->M, (int)K, (int)n_cols, 1, dm,
                (int)ldd, bm, (int)ldb, 1, dw, (int)K);
    }
    bl_arena_release(arena, mark);
}

/* dx (B, C, H, W) += d conv / dx applied to dy. */
static void conv_dinput(bl_ctx *ctx, const bl_conv_geom *g, const bl_real *w, const bl_real *dy,
                        bl_tensor *x)
{
    int fresh;
    /* stride 1 writes every element of dx (a full convolution), so a fresh dx is stored */
    bl_real *dx = g->stride == 1 ? bl_grad_for_write(ctx, x, &fresh) : bl_grad(ctx, x);
    bl_arena *arena = bl_ctx_arena(ctx);
    const size_t mark = bl_arena_used(arena);
    const int64_t K = g->C * g->kh * g->kw, khw = g->kh * g->kw;
    if (g->stride == 1) {
        /* dx[c][h][v] = sum_{m,i,j} dy[m][h + pad_h - i][v + pad_w - j] w[m][c][i][j]: a
         * convolution of dy with w~[c][m][kh-1-i][kw-1-j] = w[m][c][i][j], padding k - 1 - pad */
        bl_real *wt = bl_scratch(ctx, (size_t)(g->M * K) * sizeof(bl_real)); /* (C, M, kh, kw) */
        for (int64_t m = 0; m < g->M; m++)
            for (int64_t c = 0; c < g->C; c++)
                for (int64_t ij = 0; ij < khw; ij++)
                    wt[(c * g->M + m) * khw + khw - 1 - ij] = w[(m * g->C + c) * khw + ij];
        const bl_conv_geom gt = {.B = g->B, .C = g->M, .H = g->Ho, .W = g->Wo, .M = g->C,
                                 .kh = g->kh, .kw = g->kw, .stride = 1,
                                 .pad_h = g->kh - 1 - g->pad_h, .pad_w = g->kw - 1 - g->pad_w,
                                 .Ho = g->H, .Wo = g->W};
        conv_forward_gemm(ctx, &gt, dy, wt, dx, !fresh);
    } else {
        const bl_conv_plan p = conv_plan(g, K);
        bl_real *dcol = bl_scratch(ctx, (size_t)(K * p.max_cols) * sizeof(bl_real));
        bl_real *dybuf = p.per > 1 ? bl_scratch(ctx, (size_t)(g->M * p.max_cols) * sizeof(bl_real)) : NULL;
        for (int64_t k = 0; k < p.n; k++) {
            int64_t r0, r1, ldd;
            conv_chunk(g, &p, k, &r0, &r1);
            const int64_t n_cols = (r1 - r0) * g->Wo;
            const bl_real *dm = conv_out_block(g, dy, r0, r1, dybuf, &ldd);
            BL_GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)n_cols, (int)g->M, 1, w,
                    (int)K, dm, (int)ldd, 0, dcol, (int)n_cols);
            conv_col2im_add(g, dcol, r0, r1, dx);
        }
    }
    bl_arena_release(arena, mark);
}

/* y (B, M, Ho, Wo) <- bias broadcast; the GEMMs then accumulate onto it (beta = 1), which
 * costs one pass over y instead of OpenBLAS's beta = 0 clearing plus an add pass */
static void conv_bias_fill(const bl_conv_geom *g, const bl_real *bias, bl_real *y)
{
    const int64_t hw = g->Ho * g->Wo;
#pragma omp parallel for schedule(static) if (g->B * g->M * hw > BL_CONV_OMP_MIN)
    for (int64_t bm = 0; bm < g->B * g->M; bm++) {
        const bl_real v = bias[bm % g->M];
        bl_real *p = y + bm * hw;
        for (int64_t k = 0; k < hw; k++) p[k] = v;
    }
}

static void conv_bias_backward(const bl_conv_geom *g, const bl_real *dy, bl_real *db)
{
    const int64_t hw = g->Ho * g->Wo;
#pragma omp parallel for schedule(static) if (g->B * g->M * hw > BL_CONV_OMP_MIN)
    for (int64_t m = 0; m < g->M; m++) {
        /* 8 partial sums in a fixed order: no serial add chain, same result on any thread count */
        double acc[8] = {0};
        for (int64_t b = 0; b < g->B; b++) {
            const bl_real *p = dy + (b * g->M + m) * hw;
            int64_t k = 0;
            for (; k + 8 <= hw; k += 8)
                for (int l = 0; l < 8; l++) acc[l] += p[k + l];
            for (; k < hw; k++) acc[0] += p[k];
        }
        double s = 0;
        for (int l = 0; l < 8; l++) s += acc[l];
        db[m] += (bl_real)s;
    }
}

/* What a convolution node saves: its geometry and the engine its forward ran on. */
typedef struct conv_saved {
    bl_conv_geom g;
    bl_conv_engine engine;
} conv_saved;

static void conv_backward(bl_ctx *ctx, bl_node *node)
{
    const conv_saved *sv = node->saved;
    const bl_conv_geom *g = &sv->g;
    bl_tensor *x = node->in[0], *w = node->in[1], *bias = node->in[2];
    const bl_real *dy = node->out->grad;
#ifdef BL_CONV_HAVE_ONEDNN
    if (sv->engine == BL_CONV_ENGINE_ONEDNN) {
        int fresh = 0;
        /* oneDNN's backward data writes every element of dx, whatever the stride */
        bl_real *dx = x->requires_grad ? bl_grad_for_write(ctx, x, &fresh) : NULL;
        bl_conv_onednn_backward(ctx, g, bias != NULL, x->data, x->layout, w->data, dy,
                                node->out->layout, w->requires_grad ? bl_grad(ctx, w) : NULL,
                                bias && bias->requires_grad ? bl_grad(ctx, bias) : NULL, dx, !fresh);
        return;
    }
#endif
    if (bias && bias->requires_grad) conv_bias_backward(g, dy, bl_grad(ctx, bias));
    if (w->requires_grad) conv_dweight_gemm(ctx, g, x->data, dy, bl_grad(ctx, w));
    if (x->requires_grad) conv_dinput(ctx, g, w->data, dy, x);
}

static bl_tensor *conv_apply(bl_ctx *ctx, const char *op, const bl_conv_geom *g, bl_tensor *x,
                             bl_tensor *w, bl_tensor *bias, int ndim, const int64_t *shape,
                             int blocked_ok)
{
    bl_tensor *y = bl_new(ctx, ndim, shape);
    const conv_saved sv = {.g = *g, .engine = bl_conv_get_engine()};
#ifdef BL_CONV_HAVE_ONEDNN
    if (sv.engine == BL_CONV_ENGINE_ONEDNN) {
        y->layout = blocked_ok && bl_conv_get_blocked() ? bl_conv_onednn_out_layout(g, bias != NULL)
                                                        : BL_LAYOUT_PLAIN;
        bl_conv_onednn_forward(ctx, g, x->data, x->layout, w->data, bias ? bias->data : NULL,
                               y->data, y->layout);
    } else
#endif
    {
        (void)blocked_ok;
        char sx[96];
        BL_ASSERT(x->layout == BL_LAYOUT_PLAIN,
                  "%s: x %s is in the channel-blocked layout (block %d), which the im2col engine "
                  "does not read; convert it with bl_to_plain", op, bl_shape_str(x, sx, 96),
                  x->layout);
        if (bias) conv_bias_fill(g, bias->data, y->data);
        conv_forward_gemm(ctx, g, x->data, w->data, y->data, bias != NULL);
    }
    bl_tensor *in[3] = {x, w, bias};
    bl_node *node = bl_tape_push_any_layout(ctx, op, conv_backward, y, 3, in, sizeof sv);
    if (node) memcpy(node->saved, &sv, sizeof sv);
    return y;
}

static void conv_check(const char *op, const bl_tensor *x, const bl_tensor *w, const bl_tensor *bias,
                       int ndim, int64_t cin, int stride, int pad)
{
    char sx[96], sw[96];
    BL_ASSERT(x->ndim == ndim && w->ndim == ndim,
              "%s: expected %d-D input and weight, got x %s and w %s", op, ndim,
              bl_shape_str(x, sx, 96), bl_shape_str(w, sw, 96));
    BL_ASSERT(w->shape[1] == cin, "%s: weight %s expects %lld input channels, x %s has %lld", op,
              bl_shape_str(w, sw, 96), (long long)w->shape[1], bl_shape_str(x, sx, 96),
              (long long)cin);
    BL_ASSERT(!bias || (bias->ndim == 1 && bias->shape[0] == w->shape[0]),
              "%s: bias %s must be (%lld), one value per output channel", op,
              bias ? bl_shape_str(bias, sx, 96) : "", (long long)w->shape[0]);
    BL_ASSERT(stride >= 1 && pad >= 0, "%s: stride %d must be >= 1 and pad %d >= 0", op, stride, pad);
    BL_ASSERT(x->numel > 0 && w->numel > 0, "%s: empty input %s or weight %s", op,
              bl_shape_str(x, sx, 96), bl_shape_str(w, sw, 96));
}

/* The geometry of bl_conv2d(x, w, stride, pad), checked. */
static bl_conv_geom conv2d_geom(const char *op, const bl_tensor *x, const bl_tensor *w,
                                const bl_tensor *bias, int stride, int pad)
{
    conv_check(op, x, w, bias, 4, x->ndim == 4 ? x->shape[1] : -1, stride, pad);
    bl_conv_geom g = {.B = x->shape[0], .C = x->shape[1], .H = x->shape[2], .W = x->shape[3],
                      .M = w->shape[0], .kh = w->shape[2], .kw = w->shape[3], .stride = stride,
                      .pad_h = pad, .pad_w = pad};
    g.Ho = (g.H + 2 * pad - g.kh) / stride + 1;
    g.Wo = (g.W + 2 * pad - g.kw) / stride + 1;
    char sx[96], sw[96];
    BL_ASSERT(g.H + 2 * pad >= g.kh && g.W + 2 * pad >= g.kw,
              "%s: kernel %s larger than the padded input %s (pad %d)", op,
              bl_shape_str(w, sw, 96), bl_shape_str(x, sx, 96), pad);
    return g;
}

static bl_tensor *conv2d(bl_ctx *ctx, const char *op, bl_tensor *x, bl_tensor *w,
                         bl_tensor *bias, int stride, int pad, int blocked_ok)
{
    const bl_conv_geom g = conv2d_geom(op, x, w, bias, stride, pad);
    return conv_apply(ctx, op, &g, x, w, bias, 4, BL_SHAPE(g.B, g.M, g.Ho, g.Wo), blocked_ok);
}

bl_tensor *bl_conv2d(bl_ctx *ctx, bl_tensor *x, bl_tensor *w, bl_tensor *bias, int stride, int pad)
{
    return conv2d(ctx, "bl_conv2d", x, w, bias, stride, pad, 0);
}

bl_tensor *bl_conv2d_blocked(bl_ctx *ctx, bl_tensor *x, bl_tensor *w, bl_tensor *bias,
                             int stride, int pad)
{
    return conv2d(ctx, "bl_conv2d", x, w, bias, stride, pad, 1);
}

static bl_tensor *conv3d_depth(bl_ctx *ctx, bl_tensor *x, bl_tensor *w, bl_tensor *bias, int pad,
                               int blocked_ok)
{
    conv_check("bl_conv3d_depth", x, w, bias, 5, x->ndim == 5 ? x->shape[1] : -1, 1, pad);
    char sx[96], sw[96];
    BL_ASSERT(w->shape[2] == x->shape[2],
              "bl_conv3d_depth: kernel depth of w %s must equal the depth of x %s",
              bl_shape_str(w, sw, 96), bl_shape_str(x, sx, 96));
    BL_ASSERT(x->layout == BL_LAYOUT_PLAIN, "bl_conv3d_depth: x %s must be in the plain layout",
              bl_shape_str(x, sx, 96));
    /* x (B, Cin, D, H, W) is the 2-D input (B, Cin D, H, W), w (M, Cin, D, kh, kw) the 2-D
     * kernel (M, Cin D, kh, kw): same memory, no copy */
    bl_conv_geom g = {.B = x->shape[0], .C = x->shape[1] * x->shape[2], .H = x->shape[3],
                      .W = x->shape[4], .M = w->shape[0], .kh = w->shape[3], .kw = w->shape[4],
                      .stride = 1, .pad_h = pad, .pad_w = pad};
    g.Ho = g.H + 2 * pad - g.kh + 1;
    g.Wo = g.W + 2 * pad - g.kw + 1;
    BL_ASSERT(g.Ho >= 1 && g.Wo >= 1,
              "bl_conv3d_depth: kernel %s larger than the padded input %s (pad %d)",
              bl_shape_str(w, sw, 96), bl_shape_str(x, sx, 96), pad);
    return conv_apply(ctx, "bl_conv3d_depth", &g, x, w, bias, 5,
                      BL_SHAPE(g.B, g.M, 1, g.Ho, g.Wo), blocked_ok);
}

bl_tensor *bl_conv3d_depth(bl_ctx *ctx, bl_tensor *x, bl_tensor *w, bl_tensor *bias, int pad)
{
    return conv3d_depth(ctx, x, w, bias, pad, 0);
}

bl_tensor *bl_conv3d_depth_blocked(bl_ctx *ctx, bl_tensor *x, bl_tensor *w, bl_tensor *bias,
                                   int pad)
{
    return conv3d_depth(ctx, x, w, bias, pad, 1);
}

bl_tensor *bl_conv2d_bn_silu_eval(bl_ctx *ctx, bl_tensor *x, bl_tensor *w, int stride, int pad,
                                  bl_tensor *bn_weight, bl_tensor *bn_bias,
                                  bl_tensor *running_mean, bl_tensor *running_var, double eps)
{
#ifdef BL_CONV_HAVE_ONEDNN
    bl_tensor *in[4] = {x, w, bn_weight, bn_bias};
    if (bl_conv_get_engine() == BL_CONV_ENGINE_ONEDNN && bl_conv_get_blocked() &&
        !bl_tape_needs(ctx, 4, in)) {
        const char *op = "bl_conv2d_bn_silu_eval";
        const bl_conv_geom g = conv2d_geom(op, x, w, NULL, stride, pad);
        const bl_tensor *per_channel[4] = {bn_weight, bn_bias, running_mean, running_var};
        char sw[96], sp[96];
        for (int i = 0; i < 4; i++)
            BL_ASSERT(per_channel[i] && per_channel[i]->numel == g.M,
                      "%s: BatchNorm weight, bias and running statistics must have %lld "
                      "elements (w %s), got %s", op, (long long)g.M, bl_shape_str(w, sw, 96),
                      per_channel[i] ? bl_shape_str(per_channel[i], sp, 96) : "NULL");
        bl_tensor *y = bl_new(ctx, 4, BL_SHAPE(g.B, g.M, g.Ho, g.Wo));
        y->layout = bl_conv_onednn_out_layout(&g, 0);
        bl_arena *arena = bl_ctx_arena(ctx);
        const size_t mark = bl_arena_used(arena);
        /* BatchNorm folded into the convolution, from the current parameters on every call:
         * w' = w s, b' = beta - mean s with s = gamma / sqrt(var + eps) */
        const int64_t per = w->numel / g.M;
        bl_real *wf = bl_scratch(ctx, (size_t)w->numel * sizeof *wf);
        bl_real *bf = bl_scratch(ctx, (size_t)g.M * sizeof *bf);
        for (int64_t m = 0; m < g.M; m++) {
            const double sc = bn_weight->data[m] / sqrt((double)running_var->data[m] + eps);
            bf[m] = (bl_real)(bn_bias->data[m] - running_mean->data[m] * sc);
            for (int64_t k = 0; k < per; k++) wf[m * per + k] = (bl_real)(w->data[m * per + k] * sc);
        }
        bl_conv_onednn_forward_silu(ctx, &g, x->data, x->layout, wf, bf, y->data, y->layout);
        bl_arena_release(arena, mark);
        return y;
    }
#endif
    bl_tensor *y = bl_conv2d_blocked(ctx, x, w, NULL, stride, pad);
    return bl_batchnorm_silu(ctx, y, bn_weight, bn_bias, running_mean, running_var, 0, eps, 0);
}
