/* Internal to the convolution ops (not installed): chunking parameters of the im2col GEMMs.
 * Tests shrink them to exercise every chunk layout (bands of one image, several images per
 * chunk) on small inputs; bench/bench_conv.c may tune them. Not thread-safe: set them before
 * running ops, never while ops run. */
#ifndef BL_CONV_KERNELS_H
#define BL_CONV_KERNELS_H

#include <stdint.h>

typedef struct bl_conv_tuning {
    int64_t col_bytes;  /* budget of a chunk's column matrix: it should stay in cache */
    int64_t min_cols;   /* a chunk spans at least this many output pixels (GEMM efficiency) */
    int64_t taps_min_k; /* stride-1 forward GEMMs by vertical taps when C kw >= this (0: never) */
} bl_conv_tuning;

bl_conv_tuning bl_conv_get_tuning(void);
void bl_conv_set_tuning(bl_conv_tuning tuning);

/* A 2-D convolution as the engines see it (conv3d_depth maps onto it). */
typedef struct bl_conv_geom {
    int64_t B, C, H, W;      /* input (B, C, H, W) */
    int64_t M;               /* output channels */
    int64_t kh, kw, stride, pad_h, pad_w;
    int64_t Ho, Wo;          /* output (B, M, Ho, Wo) */
} bl_conv_geom;

#endif
