/* Building blocks of the BLISS encoder (docs/behaviour.md §4.2): BatchNorm, ConvBlock, Bottleneck, C3,
 * Detect.
 *
 * A layer struct holds pointers to persistent tensors owned by a bl_params, registered under
 * their PyTorch state_dict names ("<prefix>.conv.weight", "<prefix>.bn.running_mean", ...) in
 * PyTorch's registration order, so that the listing of a bl_params equals the state_dict of
 * the corresponding torch module.
 *
 * Initialisation follows PyTorch's defaults, drawn from our own RNG (torch's generator is not
 * reproduced; weights move between the two through checkpoints):
 *   conv weight (cout, cin, k...):  U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = cin * prod(k)
 *     (kaiming_uniform_ with a = sqrt(5): gain sqrt(2/(1+5)) * sqrt(3/fan_in) = 1/sqrt(fan_in))
 *   conv bias:                       U(-1/sqrt(fan_in), 1/sqrt(fan_in)), same fan_in
 *   BatchNorm: weight 1, bias 0, running_mean 0, running_var 1, num_batches_tracked 0.
 * Tensor number i of the params set draws from the RNG stream (seed, i), so a tensor's initial
 * values depend only on the seed and its position, never on thread count.
 *
 * num_batches_tracked is an int64 scalar in PyTorch. Here it is a 0-dim bl_real tensor that
 * requires no gradient (exact up to 2^24 steps in float); checkpoints store it as I64 (every
 * tensor whose name ends in ".num_batches_tracked", see checkpoint.h). */
#ifndef BL_LAYERS_H
#define BL_LAYERS_H

#include <stdint.h>

#include "autograd/params.h"
#include "autograd/tape.h"

/* Where layers register their tensors and how they are initialised. */
typedef struct bl_builder {
    bl_params *params;
    uint64_t seed;
} bl_builder;

/* "<prefix>.<suffix>" (or "<suffix>" when prefix is empty) into buf; returns buf. */
char *bl_layer_name(char *buf, size_t n, const char *prefix, const char *suffix);

/* Registers a tensor `prefix.suffix` in the builder's params filled with
 * U(-bound, bound) (bound > 0) or the constant `fill` (bound == 0). */
bl_tensor *bl_builder_add(bl_builder *b, const char *prefix, const char *suffix, int ndim,
                          const int64_t *shape, int requires_grad, double bound, double fill);

/* ---- BatchNorm{2,3}d over dim 1 ---- */
typedef struct bl_bn {
    bl_tensor *weight, *bias;            /* (C) */
    bl_tensor *running_mean, *running_var; /* (C) buffers */
    bl_tensor *num_batches_tracked;      /* () buffer, counts training-mode calls */
    double eps, momentum;
} bl_bn;

void bl_bn_init(bl_bn *bn, bl_builder *b, const char *prefix, int channels, double eps,
                double momentum);
/* x (B, C, ...) -> same shape. Training: batch statistics, running stats and
 * num_batches_tracked updated; eval: running statistics. */
bl_tensor *bl_bn_forward(bl_ctx *ctx, const bl_bn *bn, bl_tensor *x, int training);
/* silu(bl_bn_forward(x)) in one fused op (bl_batchnorm_silu): the BatchNorm output is
 * recomputed in backward instead of stored, and SiLU needs no pass of its own. */
bl_tensor *bl_bn_silu_forward(bl_ctx *ctx, const bl_bn *bn, bl_tensor *x, int training);

/* ---- ConvBlock: Conv2d(no bias) -> BatchNorm2d(eps 1e-3, momentum 0.03) -> SiLU ---- */
typedef struct bl_conv_block {
    bl_tensor *weight;   /* (cout, cin, k, k) "<prefix>.conv.weight" */
    bl_bn bn;            /* "<prefix>.bn.*" */
    int cin, cout, k, stride, pad;
} bl_conv_block;

void bl_conv_block_init(bl_conv_block *cb, bl_builder *b, const char *prefix, int cin, int cout,
                        int k, int stride, int pad);
/* x (B, cin, H, W) -> (B, cout, (H + 2 pad - k)/stride + 1, ...) */
bl_tensor *bl_conv_block_forward(bl_ctx *ctx, const bl_conv_block *cb, bl_tensor *x, int training);

/* ---- Bottleneck(c1, c2, shortcut, e): cv1 1x1 -> cv2 3x3, plus x when shortcut && c1 == c2 ---- */
typedef struct bl_bottleneck {
    bl_conv_block cv1, cv2;
    int add;
} bl_bottleneck;

void bl_bottleneck_init(bl_bottleneck *bt, bl_builder *b, const char *prefix, int c1, int c2,
                        int shortcut, double e);
bl_tensor *bl_bottleneck_forward(bl_ctx *ctx, const bl_bottleneck *bt, bl_tensor *x, int training);

/* ---- C3(c1, c2, n, shortcut, e = 0.5): cv3(concat(m(cv1(x)), cv2(x))) ---- */
#define BL_C3_MAX_N 8
typedef struct bl_c3 {
    bl_conv_block cv1, cv2, cv3;
    bl_bottleneck m[BL_C3_MAX_N];
    int n;
} bl_c3;

void bl_c3_init(bl_c3 *c3, bl_builder *b, const char *prefix, int c1, int c2, int n, int shortcut);
/* x (B, c1, H, W) -> (B, c2, H, W) */
bl_tensor *bl_c3_forward(bl_ctx *ctx, const bl_c3 *c3, bl_tensor *x, int training);

/* ---- Detect(cin, cout): 1x1 Conv2d with bias, then (B, C, h, w) -> (B, h, w, C) ---- */
typedef struct bl_detect {
    bl_tensor *weight;   /* (cout, cin, 1, 1) "<prefix>.conv.weight" */
    bl_tensor *bias;     /* (cout) "<prefix>.conv.bias" */
} bl_detect;

void bl_detect_init(bl_detect *d, bl_builder *b, const char *prefix, int cin, int cout);
/* x (B, cin, h, w) -> (B, h, w, cout) */
bl_tensor *bl_detect_forward(bl_ctx *ctx, const bl_detect *d, bl_tensor *x);

#endif
