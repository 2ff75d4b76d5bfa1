#include "models/layers.h"

#include <math.h>
#include <stdio.h>

#include "autograd/ops.h"
#include "lib/rng.h"

#define BL_NAME_MAX 256

char *bl_layer_name(char *buf, size_t n, const char *prefix, const char *suffix)
{
    int k = (prefix && *prefix) ? snprintf(buf, n, "%s.%s", prefix, suffix)
                                : snprintf(buf, n, "%s", suffix);
    BL_ASSERT(k > 0 && (size_t)k < n, "bl_layer_name: name '%s.%s' longer than %zu bytes",
              prefix ? prefix : "", suffix, n);
    return buf;
}

bl_tensor *bl_builder_add(bl_builder *b, const char *prefix, const char *suffix, int ndim,
                          const int64_t *shape, int requires_grad, double bound, double fill)
{
    char name[BL_NAME_MAX];
    uint64_t stream = (uint64_t)b->params->n;
    bl_tensor *t = bl_params_add(b->params, bl_layer_name(name, sizeof name, prefix, suffix), ndim,
                                 shape, requires_grad);
    if (bound > 0) {
        bl_rng *rng = bl_rng_alloc(b->seed, stream);
        for (int64_t i = 0; i < t->numel; i++)
            t->data[i] = (bl_real)(bound * (2 * bl_rng_uniform(rng) - 1));
        bl_rng_free(rng);
    } else if (fill != 0) {
        bl_tensor_fill(t, (bl_real)fill);
    }
    return t;
}

/* ---- BatchNorm ---- */

void bl_bn_init(bl_bn *bn, bl_builder *b, const char *prefix, int channels, double eps,
                double momentum)
{
    const int64_t *c = BL_SHAPE(channels);
    bn->weight = bl_builder_add(b, prefix, "weight", 1, c, 1, 0, 1);
    bn->bias = bl_builder_add(b, prefix, "bias", 1, c, 1, 0, 0);
    bn->running_mean = bl_builder_add(b, prefix, "running_mean", 1, c, 0, 0, 0);
    bn->running_var = bl_builder_add(b, prefix, "running_var", 1, c, 0, 0, 1);
    bn->num_batches_tracked = bl_builder_add(b, prefix, "num_batches_tracked", 0, NULL, 0, 0, 0);
    bn->eps = eps;
    bn->momentum = momentum;
}

bl_tensor *bl_bn_forward(bl_ctx *ctx, const bl_bn *bn, bl_tensor *x, int training)
{
    /* torch increments the counter in training mode whatever the momentum */
    if (training) bn->num_batches_tracked->data[0] += 1;
    return bl_batchnorm(ctx, x, bn->weight, bn->bias, bn->running_mean, bn->running_var,
                        bn->momentum, bn->eps, training);
}

bl_tensor *bl_bn_silu_forward(bl_ctx *ctx, const bl_bn *bn, bl_tensor *x, int training)
{
    if (training) bn->num_batches_tracked->data[0] += 1;
    return bl_batchnorm_silu(ctx, x, bn->weight, bn->bias, bn->running_mean, bn->running_var,
                             bn->momentum, bn->eps, training);
}

/* ---- ConvBlock ---- */

void bl_conv_block_init(bl_conv_block *cb, bl_builder *b, const char *prefix, int cin, int cout,
                        int k, int stride, int pad)
{
    char name[BL_NAME_MAX];
    const int64_t fan_in = (int64_t)cin * k * k;
    cb->weight = bl_builder_add(b, prefix, "conv.weight", 4, BL_SHAPE(cout, cin, k, k), 1,
                                1.0 / sqrt((double)fan_in), 0);
    bl_bn_init(&cb->bn, b, bl_layer_name(name, sizeof name, prefix, "bn"), cout, 1e-3, 0.03);
    cb->cin = cin;
    cb->cout = cout;
    cb->k = k;
    cb->stride = stride;
    cb->pad = pad;
}

bl_tensor *bl_conv_block_forward(bl_ctx *ctx, const bl_conv_block *cb, bl_tensor *x, int training)
{
    if (!training) /* BatchNorm folded into the convolution when nothing is recorded */
        return bl_conv2d_bn_silu_eval(ctx, x, cb->weight, cb->stride, cb->pad, cb->bn.weight,
                                      cb->bn.bias, cb->bn.running_mean, cb->bn.running_var,
                                      cb->bn.eps);
    bl_tensor *y = bl_conv2d_blocked(ctx, x, cb->weight, NULL, cb->stride, cb->pad); /* (B, cout, H', W') */
    return bl_bn_silu_forward(ctx, &cb->bn, y, training);
}

/* ---- Bottleneck ---- */

void bl_bottleneck_init(bl_bottleneck *bt, bl_builder *b, const char *prefix, int c1, int c2,
                        int shortcut, double e)
{
    char name[BL_NAME_MAX];
    const int ch = (int)(c2 * e); /* python int(c2 * e) truncates */
    bl_conv_block_init(&bt->cv1, b, bl_layer_name(name, sizeof name, prefix, "cv1"), c1, ch, 1, 1, 0);
    bl_conv_block_init(&bt->cv2, b, bl_layer_name(name, sizeof name, prefix, "cv2"), ch, c2, 3, 1, 1);
    bt->add = shortcut && c1 == c2;
}

bl_tensor *bl_bottleneck_forward(bl_ctx *ctx, const bl_bottleneck *bt, bl_tensor *x, int training)
{
    bl_tensor *y = bl_conv_block_forward(ctx, &bt->cv1, x, training);
    y = bl_conv_block_forward(ctx, &bt->cv2, y, training);
    return bt->add ? bl_add(ctx, x, y) : y;
}

/* ---- C3 ---- */

void bl_c3_init(bl_c3 *c3, bl_builder *b, const char *prefix, int c1, int c2, int n, int shortcut)
{
    char name[BL_NAME_MAX], sub[32];
    BL_ASSERT(n >= 0 && n <= BL_C3_MAX_N, "bl_c3_init: n = %d bottlenecks, at most %d", n,
              BL_C3_MAX_N);
    const int ch = (int)(c2 * 0.5);
    bl_conv_block_init(&c3->cv1, b, bl_layer_name(name, sizeof name, prefix, "cv1"), c1, ch, 1, 1, 0);
    bl_conv_block_init(&c3->cv2, b, bl_layer_name(name, sizeof name, prefix, "cv2"), c1, ch, 1, 1, 0);
    bl_conv_block_init(&c3->cv3, b, bl_layer_name(name, sizeof name, prefix, "cv3"), 2 * ch, c2, 1,
                       1, 0);
    for (int i = 0; i < n; i++) {
        snprintf(sub, sizeof sub, "m.%d", i);
        bl_bottleneck_init(&c3->m[i], b, bl_layer_name(name, sizeof name, prefix, sub), ch, ch,
                           shortcut, 1.0);
    }
    c3->n = n;
}

bl_tensor *bl_c3_forward(bl_ctx *ctx, const bl_c3 *c3, bl_tensor *x, int training)
{
    bl_tensor *a = bl_conv_block_forward(ctx, &c3->cv1, x, training); /* (B, ch, H, W) */
    for (int i = 0; i < c3->n; i++) a = bl_bottleneck_forward(ctx, &c3->m[i], a, training);
    bl_tensor *parts[2] = {a, bl_conv_block_forward(ctx, &c3->cv2, x, training)};
    bl_tensor *cat = bl_concat(ctx, 2, parts, 1);                     /* (B, 2 ch, H, W) */
    return bl_conv_block_forward(ctx, &c3->cv3, cat, training);
}

/* ---- Detect ---- */

void bl_detect_init(bl_detect *d, bl_builder *b, const char *prefix, int cin, int cout)
{
    const double bound = 1.0 / sqrt((double)cin);
    d->weight = bl_builder_add(b, prefix, "conv.weight", 4, BL_SHAPE(cout, cin, 1, 1), 1, bound, 0);
    d->bias = bl_builder_add(b, prefix, "conv.bias", 1, BL_SHAPE(cout), 1, bound, 0);
}

bl_tensor *bl_detect_forward(bl_ctx *ctx, const bl_detect *d, bl_tensor *x)
{
    bl_tensor *y = bl_conv2d(ctx, x, d->weight, d->bias, 1, 0);       /* (B, P, h, w) */
    return bl_permute(ctx, y, (const int[]){0, 2, 3, 1});             /* (B, h, w, P) */
}
