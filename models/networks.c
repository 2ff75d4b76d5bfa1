#include "models/networks.h"

#include <math.h>
#include <stdio.h>

#include "autograd/ops.h"

#define BL_NAME_MAX 256

bl_net_arch bl_net_arch_default(int n_out)
{
    return (bl_net_arch){.n_bands = 5, .ch_per_band = 6, .tile_slen = 4, .n_out = n_out,
                         .features_width = 64, .num_features = 256, .catalog_width = 256,
                         .context_width = 64};
}

/* ---- FeaturesNet ---- */

void bl_features_net_init(bl_features_net *net, bl_builder *b, const char *prefix,
                          const bl_net_arch *a)
{
    char name[BL_NAME_MAX], sub[32];
    BL_ASSERT(a->tile_slen == 2 || a->tile_slen == 4, "FeaturesNet: tile_slen %d, must be 2 or 4",
              a->tile_slen);
    const int w = a->features_width;
    const int64_t fan_in = (int64_t)a->n_bands * a->ch_per_band * 5 * 5;
    const double bound = 1.0 / sqrt((double)fan_in);
    net->conv3d_weight = bl_builder_add(b, prefix, "preprocess3d.0.weight", 5,
                                        BL_SHAPE(w, a->n_bands, a->ch_per_band, 5, 5), 1, bound, 0);
    net->conv3d_bias = bl_builder_add(b, prefix, "preprocess3d.0.bias", 1, BL_SHAPE(w), 1, bound, 0);
    bl_bn_init(&net->bn3d, b, bl_layer_name(name, sizeof name, prefix, "preprocess3d.1"), w, 1e-5, 0.1);

    bl_conv_block_init(&net->b0, b, bl_layer_name(name, sizeof name, prefix, "backbone.0"), w, w, 5, 1, 2);
    for (int i = 0; i < 4; i++) {
        snprintf(sub, sizeof sub, "backbone.1.%d", i);
        bl_conv_block_init(&net->b1[i], b, bl_layer_name(name, sizeof name, prefix, sub), w, w, 5, 1, 2);
    }
    bl_conv_block_init(&net->b2, b, bl_layer_name(name, sizeof name, prefix, "backbone.2"), w, 2 * w,
                       3, 2, 1);
    for (int i = 0; i < 5; i++) {
        snprintf(sub, sizeof sub, "backbone.3.%d", i);
        bl_conv_block_init(&net->b3[i], b, bl_layer_name(name, sizeof name, prefix, sub), 2 * w,
                           2 * w, 3, 1, 1);
    }
    bl_conv_block_init(&net->b4, b, bl_layer_name(name, sizeof name, prefix, "backbone.4"), 2 * w,
                       a->num_features, 3, a->tile_slen == 4 ? 2 : 1, 1);
    net->arch = *a;
}

bl_tensor *bl_features_net_forward(bl_ctx *ctx, const bl_features_net *net, bl_tensor *x,
                                   int training)
{
    char s[96];
    const bl_net_arch *a = &net->arch;
    BL_ASSERT(x->ndim == 5 && x->shape[1] == a->n_bands && x->shape[2] == a->ch_per_band,
              "FeaturesNet: input %s, expected (B, %d, %d, H, W)", bl_shape_str(x, s, sizeof s),
              a->n_bands, a->ch_per_band);
    const int64_t B = x->shape[0], H = x->shape[3], W = x->shape[4];
    bl_tensor *y = bl_conv3d_depth_blocked(ctx, x, net->conv3d_weight, net->conv3d_bias, 2);
    /* y (B, 64, 1, H, W), channel-blocked on the oneDNN engine (as every activation up to the
     * detection heads' convolutions, whose outputs are plain) */
    y = bl_bn_silu_forward(ctx, &net->bn3d, y, training);
    y = bl_reshape(ctx, y, 4, BL_SHAPE(B, a->features_width, H, W));                 /* (B, 64, H, W) */
    y = bl_conv_block_forward(ctx, &net->b0, y, training);
    for (int i = 0; i < 4; i++) y = bl_conv_block_forward(ctx, &net->b1[i], y, training);
    y = bl_conv_block_forward(ctx, &net->b2, y, training);                           /* (B, 128, H/2, W/2) */
    for (int i = 0; i < 5; i++) y = bl_conv_block_forward(ctx, &net->b3[i], y, training);
    return bl_conv_block_forward(ctx, &net->b4, y, training);                        /* (B, 256, ht, wt) */
}

/* ---- CatalogNet ---- */

void bl_catalog_net_init(bl_catalog_net *net, bl_builder *b, const char *prefix, int cin,
                         const bl_net_arch *a)
{
    char name[BL_NAME_MAX];
    const int w = a->catalog_width;
    bl_c3_init(&net->c0, b, bl_layer_name(name, sizeof name, prefix, "net_ml.0"), cin, w, 6, 1);
    bl_conv_block_init(&net->c1, b, bl_layer_name(name, sizeof name, prefix, "net_ml.1"), w, 2 * w,
                       3, 2, 1);
    bl_c3_init(&net->c2, b, bl_layer_name(name, sizeof name, prefix, "net_ml.2"), 2 * w, 2 * w, 3, 0);
    bl_conv_block_init(&net->c3, b, bl_layer_name(name, sizeof name, prefix, "net_ml.3"), 2 * w, w,
                       1, 1, 0);
    bl_c3_init(&net->c5, b, bl_layer_name(name, sizeof name, prefix, "net_ml.5"), cin + 2 * w, w, 3, 0);
    bl_detect_init(&net->c6, b, bl_layer_name(name, sizeof name, prefix, "net_ml.6"), w, a->n_out);
}

bl_tensor *bl_catalog_net_forward(bl_ctx *ctx, const bl_catalog_net *net, bl_tensor *x, int training)
{
    char s[96];
    BL_ASSERT(x->ndim == 4 && x->shape[2] % 2 == 0 && x->shape[3] % 2 == 0,
              "CatalogNet: input %s, expected (B, C, ht, wt) with even ht and wt",
              bl_shape_str(x, s, sizeof s));
    bl_tensor *y0 = bl_c3_forward(ctx, &net->c0, x, training);      /* (B, 256, ht, wt) */
    bl_tensor *y = bl_conv_block_forward(ctx, &net->c1, y0, training); /* (B, 512, ht/2, wt/2) */
    y = bl_c3_forward(ctx, &net->c2, y, training);
    y = bl_conv_block_forward(ctx, &net->c3, y, training);          /* (B, 256, ht/2, wt/2) */
    bl_tensor *y4 = bl_upsample2x(ctx, y);                          /* (B, 256, ht, wt) */
    bl_tensor *saved[3] = {x, y0, y4};
    y = bl_concat(ctx, 3, saved, 1);                                /* (B, cin + 512, ht, wt) */
    y = bl_c3_forward(ctx, &net->c5, y, training);                  /* (B, 256, ht, wt) */
    return bl_detect_forward(ctx, &net->c6, y);                     /* (B, ht, wt, P) */
}

/* ---- ContextNet ---- */

void bl_context_net_init(bl_context_net *net, bl_builder *b, const char *prefix,
                         const bl_net_arch *a)
{
    char name[BL_NAME_MAX], sub[32];
    const int w = a->context_width;
    for (int i = 0; i < 3; i++) {
        snprintf(sub, sizeof sub, "encode_context.%d", i);
        bl_conv_block_init(&net->enc[i], b, bl_layer_name(name, sizeof name, prefix, sub),
                           i == 0 ? 2 : w, w, 3, 1, 1);
    }
    bl_conv_block_init(&net->merge, b, bl_layer_name(name, sizeof name, prefix, "merge"),
                       a->num_features + w, a->num_features, 3, 1, 1);
    bl_catalog_net_init(&net->catalog, b, bl_layer_name(name, sizeof name, prefix, "catalog_net"),
                        a->num_features, a);
}

bl_tensor *bl_context_net_forward(bl_ctx *ctx, const bl_context_net *net, bl_tensor *features,
                                  bl_tensor *context, int training)
{
    bl_tensor *c = context;                                         /* (B, 2, ht, wt) */
    for (int i = 0; i < 3; i++) c = bl_conv_block_forward(ctx, &net->enc[i], c, training);
    bl_tensor *parts[2] = {features, c};
    bl_tensor *y = bl_concat(ctx, 2, parts, 1);                     /* (B, 256 + 64, ht, wt) */
    y = bl_conv_block_forward(ctx, &net->merge, y, training);       /* (B, 256, ht, wt) */
    return bl_catalog_net_forward(ctx, &net->catalog, y, training); /* (B, ht, wt, P) */
}

void bl_encoder_nets_init(bl_encoder_nets *nets, bl_builder *b, const bl_net_arch *arch,
                          int double_detect)
{
    nets->arch = *arch;
    bl_features_net_init(&nets->features, b, "features_net", arch);
    bl_catalog_net_init(&nets->marginal, b, "marginal_net", arch->num_features, arch);
    bl_context_net_init(&nets->context, b, "checkerboard_net", arch);
    nets->has_second = double_detect;
    if (double_detect) bl_catalog_net_init(&nets->second, b, "second_net", arch->num_features, arch);
}
