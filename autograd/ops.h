/* Differentiable ops. Each takes the ctx first, returns a new per-step tensor, and records a
 * node on the tape when an input requires a gradient (see tape.h; backward ACCUMULATES).
 * Forward and backward of an op sit side by side in one file per family:
 *   ops_elementwise.c  ops_reduce.c  ops_shape.c  ops_conv.c  ops_norm.c
 * A shape mismatch is a programmer error: it aborts naming the op, the shapes and file:line. */
#ifndef BL_OPS_H
#define BL_OPS_H

#include "autograd/tape.h"

/* ---- elementwise, numpy/PyTorch broadcasting (shapes aligned from the right) ---- */
bl_tensor *bl_add(bl_ctx *ctx, bl_tensor *a, bl_tensor *b);
bl_tensor *bl_sub(bl_ctx *ctx, bl_tensor *a, bl_tensor *b);
bl_tensor *bl_mul(bl_ctx *ctx, bl_tensor *a, bl_tensor *b);
bl_tensor *bl_div(bl_ctx *ctx, bl_tensor *a, bl_tensor *b);
bl_tensor *bl_neg(bl_ctx *ctx, bl_tensor *a);
bl_tensor *bl_add_scalar(bl_ctx *ctx, bl_tensor *a, double s);   /* a + s */
bl_tensor *bl_mul_scalar(bl_ctx *ctx, bl_tensor *a, double s);   /* a * s */
bl_tensor *bl_rsub_scalar(bl_ctx *ctx, double s, bl_tensor *a);  /* s - a */
bl_tensor *bl_exp(bl_ctx *ctx, bl_tensor *a);
bl_tensor *bl_log(bl_ctx *ctx, bl_tensor *a);
bl_tensor *bl_log1p(bl_ctx *ctx, bl_tensor *a);
bl_tensor *bl_sqrt(bl_ctx *ctx, bl_tensor *a);
bl_tensor *bl_square(bl_ctx *ctx, bl_tensor *a);
bl_tensor *bl_sigmoid(bl_ctx *ctx, bl_tensor *a);
bl_tensor *bl_softplus(bl_ctx *ctx, bl_tensor *a);      /* log(1 + e^a), stable */
bl_tensor *bl_silu(bl_ctx *ctx, bl_tensor *a);          /* a * sigmoid(a) */
/* min(max(a, lo), hi); gradient 1 inside [lo, hi] and 0 outside, as torch.clamp */
bl_tensor *bl_clamp(bl_ctx *ctx, bl_tensor *a, double lo, double hi);
bl_tensor *bl_erf(bl_ctx *ctx, bl_tensor *a);
/* log Phi(a), Phi the standard normal CDF; accurate for a << 0 (asymptotic series) */
bl_tensor *bl_log_ndtr(bl_ctx *ctx, bl_tensor *a);
/* cond != 0 ? a : b, broadcasting cond, a, b together; cond gets no gradient */
bl_tensor *bl_where(bl_ctx *ctx, const bl_tensor *cond, bl_tensor *a, bl_tensor *b);
/* 1-D tensor of a's elements where mask != 0 (mask broadcast to a's shape), row-major order */
bl_tensor *bl_masked_select(bl_ctx *ctx, bl_tensor *a, const bl_tensor *mask);

/* ---- reductions ---- */
bl_tensor *bl_sum(bl_ctx *ctx, bl_tensor *a);   /* all elements -> 0-dim */
bl_tensor *bl_mean(bl_ctx *ctx, bl_tensor *a);
bl_tensor *bl_sum_dim(bl_ctx *ctx, bl_tensor *a, int dim, int keepdim);
bl_tensor *bl_mean_dim(bl_ctx *ctx, bl_tensor *a, int dim, int keepdim);
bl_tensor *bl_logsumexp_dim(bl_ctx *ctx, bl_tensor *a, int dim, int keepdim);

/* ---- shape (results are contiguous copies, or views for reshape) ---- */
/* one size may be -1 (inferred) */
bl_tensor *bl_reshape(bl_ctx *ctx, bl_tensor *a, int ndim, const int64_t *shape);
/* out.shape[i] = a.shape[perm[i]] */
bl_tensor *bl_permute(bl_ctx *ctx, bl_tensor *a, const int *perm);
/* a[..., start:end, ...] along dim */
bl_tensor *bl_slice(bl_ctx *ctx, bl_tensor *a, int dim, int64_t start, int64_t end);
/* n consecutive slices of the given sizes along dim (sizes sum to a.shape[dim]) into out[] */
void bl_split(bl_ctx *ctx, bl_tensor *a, int dim, int n, const int64_t *sizes, bl_tensor **out);
bl_tensor *bl_concat(bl_ctx *ctx, int n, bl_tensor *const *ts, int dim);
/* zero padding of the last two dims (H, W) */
bl_tensor *bl_pad2d(bl_ctx *ctx, bl_tensor *a, int top, int bottom, int left, int right);
/* remove rows/cols from the borders of the last two dims */
bl_tensor *bl_crop2d(bl_ctx *ctx, bl_tensor *a, int top, int bottom, int left, int right);

/* ---- network ---- */
/* x (B, Cin, H, W), w (Cout, Cin, kh, kw), bias (Cout) or NULL; zero padding `pad` on each
 * side, stride `stride` -> (B, Cout, (H + 2 pad - kh)/stride + 1, ...) */
bl_tensor *bl_conv2d(bl_ctx *ctx, bl_tensor *x, bl_tensor *w, bl_tensor *bias, int stride, int pad);
/* 3-D convolution whose kernel consumes the whole depth (the encoder's first layer):
 * x (B, Cin, D, H, W), w (Cout, Cin, D, kh, kw), bias (Cout) or NULL, depth padding 0,
 * spatial padding `pad`, stride 1 -> (B, Cout, 1, H', W') */
bl_tensor *bl_conv3d_depth(bl_ctx *ctx, bl_tensor *x, bl_tensor *w, bl_tensor *bias, int pad);
/* Layouts (lib/tensor.h, docs/conv.md "Layouts"). Both convolutions read x in any layout.
 * These variants may write their output in the engine's channel-blocked layout (the oneDNN
 * engine, when Cout is a multiple of its block; else plain), which only the layout-aware ops
 * read: the convolutions, bl_batchnorm, bl_batchnorm_silu, bl_add (equal shapes and layouts),
 * bl_concat (dim 1, every part blocked), bl_upsample2x, bl_reshape (dims 0 and 1 kept),
 * bl_to_plain. Every other op aborts on a blocked input, naming itself. */
bl_tensor *bl_conv2d_blocked(bl_ctx *ctx, bl_tensor *x, bl_tensor *w, bl_tensor *bias,
                             int stride, int pad);
bl_tensor *bl_conv3d_depth_blocked(bl_ctx *ctx, bl_tensor *x, bl_tensor *w, bl_tensor *bias,
                                   int pad);
/* a in the plain layout: a itself when it is plain, else a reordered copy (with backward). */
bl_tensor *bl_to_plain(bl_ctx *ctx, bl_tensor *a);
/* Eval ConvBlock: silu(bl_batchnorm(bl_conv2d_blocked(x, w, NULL, stride, pad), bn_weight,
 * bn_bias, running_mean, running_var, eps, eval)). When nothing is recorded and the engine is
 * oneDNN it is one primitive: the BatchNorm folded into the weights and a bias (from the
 * current parameters, on every call) and SiLU as an eltwise post-op; else the two ops. */
bl_tensor *bl_conv2d_bn_silu_eval(bl_ctx *ctx, bl_tensor *x, bl_tensor *w, int stride, int pad,
                                  bl_tensor *bn_weight, bl_tensor *bn_bias,
                                  bl_tensor *running_mean, bl_tensor *running_var, double eps);
/* BatchNorm over dim 1 of x (B, C, ...). training: normalise with the batch statistics
 * (biased variance) and update running_mean/running_var in place with
 * running = (1 - momentum) running + momentum batch_stat (unbiased variance);
 * otherwise use the running statistics. weight/bias (C) may be NULL (1 / 0). */
bl_tensor *bl_batchnorm(bl_ctx *ctx, bl_tensor *x, bl_tensor *weight, bl_tensor *bias,
                        bl_tensor *running_mean, bl_tensor *running_var, double momentum,
                        double eps, int training);
/* silu(bl_batchnorm(...)) in one op (the ConvBlock's BatchNorm -> SiLU): same arguments and
 * running-statistics update; the BatchNorm output is not stored (backward recomputes it) */
bl_tensor *bl_batchnorm_silu(bl_ctx *ctx, bl_tensor *x, bl_tensor *weight, bl_tensor *bias,
                             bl_tensor *running_mean, bl_tensor *running_var, double momentum,
                             double eps, int training);
/* Synchronised BatchNorm (data-parallel training over several processes, docs/scaling.md):
 * with a reducer set, training-mode BatchNorm takes its statistics over the batches of all
 * processes. The reducer must replace buf[0 .. n) by its sum over the processes (the same
 * result on every process); autograd calls it outside parallel regions, in the same order on
 * every process. `first` is 1 on the one process whose slice begins the global batch. The
 * statistics are those one process computes over the whole batch, with the same float
 * operations per value: forward, the channel's first value in the global batch (from the
 * `first` process), then the sums of d = x - that value, of d^2 and the value count; backward,
 * the per-channel sums of g and g xhat. Only the double-precision sums are added in another
 * order. weight/bias gradients stay local (the caller all-reduces parameter gradients).
 * NULL (the default): per-process statistics. Process-wide setting. */
typedef void (*bl_batchnorm_reducer)(void *user, double *buf, int64_t n);
void bl_batchnorm_set_reducer(bl_batchnorm_reducer fn, void *user, int first);
/* nearest upsampling x2 of the last two dims: out[i][j] = in[i/2][j/2] */
bl_tensor *bl_upsample2x(bl_ctx *ctx, bl_tensor *x);

#endif
