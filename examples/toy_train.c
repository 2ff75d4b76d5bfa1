/* A tiny conv net learns where the blobs are: the foundation's end-to-end demo.
 *
 * Each 16x16 image holds 0-3 Gaussian blobs on noise; the target is a 4x4 map saying which
 * 4x4 tile holds a blob centre. The net (conv 3x3 -> BN -> SiLU, two stride-2 conv blocks,
 * a 1x1 conv with bias) outputs one logit per tile, trained with the Bernoulli NLL
 * softplus(z) - y z by Adam. Prints the loss every 10 steps; the curve must go down.
 *
 *   toy_train [steps=200] [seed=1] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "autograd/ops.h"
#include "autograd/optim.h"
#include "lib/rng.h"

enum { B = 16, H = 16, TILE = 4, HT = H / TILE };

static void make_batch(bl_rng *rng, bl_real *img /* (B,1,H,W) */, bl_real *occ /* (B,1,HT,HT) */)
{
    for (int b = 0; b < B; b++) {
        bl_real *x = img + b * H * H, *y = occ + b * HT * HT;
        for (int i = 0; i < H * H; i++) x[i] = (bl_real)(0.1 * bl_rng_normal(rng));
        for (int i = 0; i < HT * HT; i++) y[i] = 0;
        int n = (int)bl_rng_uniform_int(rng, 4);
        for (int k = 0; k < n; k++) {
            double r = H * bl_rng_uniform(rng), c = H * bl_rng_uniform(rng);
            y[(int)(r / TILE) * HT + (int)(c / TILE)] = 1;
            for (int i = 0; i < H; i++)
                for (int j = 0; j < H; j++) {
                    double d2 = (i + 0.5 - r) * (i + 0.5 - r) + (j + 0.5 - c) * (j + 0.5 - c);
                    x[i * H + j] += (bl_real)exp(-d2 / 2.0);
                }
        }
    }
}

typedef struct { bl_tensor *w, *bn_w, *bn_b, *mean, *var; } conv_block;

static conv_block block_add(bl_params *ps, bl_rng *rng, const char *name, int cin, int cout)
{
    char n[64];
    conv_block cb;
    snprintf(n, sizeof n, "%s.conv.weight", name);
    cb.w = bl_params_add(ps, n, 4, BL_SHAPE(cout, cin, 3, 3), 1);
    double bound = 1.0 / sqrt(cin * 9.0); /* PyTorch's default (Kaiming-uniform, a = sqrt 5) */
    for (int64_t i = 0; i < cb.w->numel; i++) cb.w->data[i] = (bl_real)(bound * (2 * bl_rng_uniform(rng) - 1));
    snprintf(n, sizeof n, "%s.bn.weight", name);
    cb.bn_w = bl_params_add(ps, n, 1, BL_SHAPE(cout), 1);
    bl_tensor_fill(cb.bn_w, 1);
    snprintf(n, sizeof n, "%s.bn.bias", name);
    cb.bn_b = bl_params_add(ps, n, 1, BL_SHAPE(cout), 1);
    snprintf(n, sizeof n, "%s.bn.running_mean", name);
    cb.mean = bl_params_add(ps, n, 1, BL_SHAPE(cout), 0);
    snprintf(n, sizeof n, "%s.bn.running_var", name);
    cb.var = bl_params_add(ps, n, 1, BL_SHAPE(cout), 0);
    bl_tensor_fill(cb.var, 1);
    return cb;
}

static bl_tensor *block_forward(bl_ctx *ctx, const conv_block *cb, bl_tensor *x, int stride)
{
    bl_tensor *y = bl_conv2d(ctx, x, cb->w, NULL, stride, 1);
    y = bl_batchnorm(ctx, y, cb->bn_w, cb->bn_b, cb->mean, cb->var, 0.03, 1e-3, 1);
    return bl_silu(ctx, y);
}

int main(int argc, char **argv)
{
    int steps = argc > 1 ? atoi(argv[1]) : 200;
    unsigned long seed = argc > 2 ? strtoul(argv[2], NULL, 10) : 1;
    bl_rng *init = bl_rng_alloc(seed, 0), *data = bl_rng_alloc(seed, 1);
    bl_params *ps = bl_params_alloc();
    conv_block c1 = block_add(ps, init, "net.0", 1, 8);
    conv_block c2 = block_add(ps, init, "net.1", 8, 16);
    conv_block c3 = block_add(ps, init, "net.2", 16, 16);
    bl_tensor *head_w = bl_params_add(ps, "net.3.weight", 4, BL_SHAPE(1, 16, 1, 1), 1);
    bl_tensor *head_b = bl_params_add(ps, "net.3.bias", 1, BL_SHAPE(1), 1);
    for (int i = 0; i < 16; i++) head_w->data[i] = (bl_real)(0.25 * (2 * bl_rng_uniform(init) - 1));
    bl_adam_opts opts = bl_adam_defaults();
    opts.lr = 3e-3;
    bl_adam *adam = bl_adam_alloc(ps, opts);
    bl_ctx *ctx = bl_ctx_alloc(1 << 22);
    printf("toy_train: %lld parameters, batch %d, %d steps\n",
           (long long)bl_params_count_trainable(ps), B, steps);
    double first = 0, avg = 0;
    for (int step = 1; step <= steps; step++) {
        bl_tensor *x = bl_new(ctx, 4, BL_SHAPE(B, 1, H, H));     /* (B, 1, H, W) */
        bl_tensor *y = bl_new(ctx, 4, BL_SHAPE(B, 1, HT, HT));   /* (B, 1, ht, wt) */
        make_batch(data, x->data, y->data);
        bl_tensor *h = block_forward(ctx, &c1, x, 1);            /* (B, 8, 16, 16) */
        h = block_forward(ctx, &c2, h, 2);                       /* (B, 16, 8, 8) */
        h = block_forward(ctx, &c3, h, 2);                       /* (B, 16, 4, 4) */
        bl_tensor *z = bl_conv2d(ctx, h, head_w, head_b, 1, 0);  /* (B, 1, 4, 4) logits */
        /* Bernoulli NLL: softplus(z) - y z */
        bl_tensor *loss = bl_mean(ctx, bl_sub(ctx, bl_softplus(ctx, z), bl_mul(ctx, y, z)));
        bl_params_zero_grad(ps);
        bl_backward(ctx, loss);
        bl_adam_step(adam);
        double l = loss->data[0];
        avg += l;
        if (step == 1) first = l;
        if (step % 10 == 0) {
            printf("step %4d  loss %.4f\n", step, avg / 10);
            avg = 0;
        }
        bl_ctx_reset(ctx);
    }
    bl_ctx_free(ctx);
    bl_adam_free(adam);
    bl_params_free(ps);
    bl_rng_free(init);
    bl_rng_free(data);
    printf("first loss %.4f\n", first);
    return 0;
}
