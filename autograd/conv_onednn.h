/* The oneDNN convolution engine (internal to the convolution ops, not installed; see
 * autograd/conv_engine.h for the selection and docs/conv.md for the design).
 *
 * Compiled in when meson found oneDNN (BL_HAVE_DNNL) and bl_real is float: oneDNN has no
 * double-precision convolutions, so the double build always runs the im2col engine.
 * Tensors are NCHW / OIHW float32 at this boundary; the primitives use the layouts oneDNN
 * picks (format_tag_any) with reorders around them. Primitives are created once per shape
 * and thread count and cached for the life of the process. */
#ifndef BL_CONV_ONEDNN_H
#define BL_CONV_ONEDNN_H

#include "autograd/conv_kernels.h"
#include "autograd/tape.h"

#if defined(BL_HAVE_DNNL) && !defined(BL_REAL_DOUBLE)
#define BL_CONV_HAVE_ONEDNN 1

/* Activations x, y, dx, dy come in a layout of lib/tensor.h (BL_LAYOUT_PLAIN or a channel
 * block size); a layout that differs from the primitive's is reordered around the call.
 * The blocked layout a convolution of geometry g can write without a reorder (its forward
 * primitive's, when M is a multiple of the block), or BL_LAYOUT_PLAIN. */
int bl_conv_onednn_out_layout(const bl_conv_geom *g, int has_bias);
/* y (B, M, Ho, Wo) = conv(x, w) + bias (bias may be NULL); writes every element of y. */
void bl_conv_onednn_forward(bl_ctx *ctx, const bl_conv_geom *g, const bl_real *x, int x_layout,
                            const bl_real *w, const bl_real *bias, bl_real *y, int y_layout);
/* Inference only: y = silu(conv(x, w) + bias), bias required, one primitive with SiLU as an
 * eltwise post-op where oneDNN's implementation takes one (the eval ConvBlock with its
 * BatchNorm folded into w and bias). */
void bl_conv_onednn_forward_silu(bl_ctx *ctx, const bl_conv_geom *g, const bl_real *x,
                                 int x_layout, const bl_real *w, const bl_real *bias, bl_real *y,
                                 int y_layout);
/* Gradients of a convolution with upstream gradient dy: dw += dL/dw, db += dL/db, and
 * dx = dL/dx (dx_acc = 0) or dx += dL/dx (dx_acc = 1), dx in x's layout. dw, db, dx may be
 * NULL (not wanted); has_bias must be what the forward was called with. */
void bl_conv_onednn_backward(bl_ctx *ctx, const bl_conv_geom *g, int has_bias, const bl_real *x,
                             int x_layout, const bl_real *w, const bl_real *dy, int dy_layout,
                             bl_real *dw, bl_real *db, bl_real *dx, int dx_acc);

/* Winograd policy: never, the measured choice (default: oneDNN's F(4x4, 3x3) on 3x3 stride-1
 * layers with channel counts that are multiples of 16, and autograd/conv_wino5.h on the 5x5
 * layers it covers), or wherever oneDNN implements it (3x3; the 5x5 rule is unchanged).
 * The environment variable BL_CONV_WINO=off|auto|all sets it at the first query (an unknown
 * value exits with a message). Changing it selects other cached primitives. */
typedef enum bl_conv_wino {
    BL_CONV_WINO_OFF = 0,
    BL_CONV_WINO_AUTO = 1,
    BL_CONV_WINO_ALL = 2,
} bl_conv_wino;
void bl_conv_onednn_set_winograd(bl_conv_wino mode);
bl_conv_wino bl_conv_onednn_get_winograd(void);

/* "fwd impl | bwd-data impl | bwd-weights impl" of the cached primitives for g (created if
 * needed), e.g. "brg:avx512_core | jit:avx512_core | jit:avx512_core", and whether they run
 * Winograd. For benchmarks and reports. */
const char *bl_conv_onednn_describe(const bl_conv_geom *g, int has_bias, int *winograd);
#endif

#endif
