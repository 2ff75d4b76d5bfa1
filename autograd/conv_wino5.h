/* Winograd F(4x4, 5x5) for the encoder's 5x5 stride-1 convolutions (internal to the oneDNN
 * engine, not installed; docs/conv.md, "Winograd for the 5x5 layers").
 *
 * oneDNN 2.6 has Winograd only for 3x3 kernels; the five 64 -> 64 5x5 layers at full
 * resolution are half of the encoder's FLOPs. This computes them with 4 multiplications per
 * output pixel and channel pair instead of 25: 8x8 input tiles (stride 4) are transformed
 * (BT d B), multiplied point by point over the channels (64 small GEMMs per block of tiles,
 * vectorised over the output channels), and transformed back (AT m A), block by block in each
 * thread's cache. The transforms come from autograd/gen_conv_wino5.py; the weights' transform
 * G w G^T is computed in double precision on every call (the weights change every step).
 *
 * Applies to stride 1, padding 2, 5x5 kernels, C and M multiples of 64 (the backward data
 * swaps them), and activations in a channel-blocked layout (8 or 16; 16 for the avx512
 * variant) on both sides. Results do not depend on
 * the batch size or the thread count (no reduction crosses a tile), only on the instruction-set
 * variant: avx512 (AVX-512F), avx2 (AVX2 + FMA) or generic (the baseline x86-64 / any CPU),
 * picked from the CPU at the first call (the environment variable BL_WINO5_ISA=generic|avx2|
 * avx512 picks one the CPU runs instead, for benchmarks; another value exits with a message). */
#ifndef BL_CONV_WINO5_H
#define BL_CONV_WINO5_H

#include "autograd/conv_onednn.h"

#ifdef BL_CONV_HAVE_ONEDNN

/* 1 when the kernel computes convolution g from layout x_layout to y_layout. */
int bl_wino5_applies(const bl_conv_geom *g, int x_layout, int y_layout);
/* What bl_wino5_forward does with the result r = conv(x, w) + bias. */
enum { BL_WINO5_STORE = 0, BL_WINO5_ACC = 1, BL_WINO5_SILU = 2 };
/* y = r, y += r (ACC) or y = silu(r) (SILU, e^t as autograd/ops_norm.c's SiLU); w is OIHW, bias
 * may be NULL. */
void bl_wino5_forward(bl_ctx *ctx, const bl_conv_geom *g, const float *x, int x_layout,
                      const float *w, const float *bias, float *y, int y_layout, int mode);
/* The backward data of conv g: dx = (or += when acc) the correlation of dy with w flipped and
 * transposed (a 5x5 stride-1 padding-2 convolution from M to C channels). */
void bl_wino5_backward_data(bl_ctx *ctx, const bl_conv_geom *g, const float *dy, int dy_layout,
                            const float *w, float *dx, int dx_layout, int acc);

/* The backward weights of conv g without bias: dw += dL/dw (OIHW) from x and dy. The sums
 * over tiles run per thread and are added in thread order: bit-identical for a thread count,
 * not across thread counts (like oneDNN's backward weights). */
void bl_wino5_backward_weights(bl_ctx *ctx, const bl_conv_geom *g, const float *x, int x_layout,
                               const float *dy, int dy_layout, float *dw);

/* The instruction-set variants; AUTO is the best the CPU has. */
typedef enum bl_wino5_isa {
    BL_WINO5_ISA_AUTO = 0,
    BL_WINO5_ISA_GENERIC,
    BL_WINO5_ISA_AVX2,
    BL_WINO5_ISA_AVX512,
} bl_wino5_isa;
/* Select a variant (tests, benchmarks); 0 when this CPU cannot run it (nothing changes). */
int bl_wino5_set_isa(bl_wino5_isa isa);
/* "avx512" / "avx2" / "generic": the variant calls run now. */
const char *bl_wino5_isa_name(void);

#endif
#endif
