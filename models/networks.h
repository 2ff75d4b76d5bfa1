/* The encoder's three networks (docs/behaviour.md §4.3–4.5): FeaturesNet, CatalogNet, ContextNet.
 *
 * The layer structure (kernel sizes, strides, block counts, registration order) is BLISS's;
 * the channel widths come from a bl_net_arch so that tests can build the same graph at tiny
 * widths. bl_net_arch_default() gives the BLISS encoder (13,865,740 trainable scalars with
 * P = 38). Shapes below use the default widths. */
#ifndef BL_NETWORKS_H
#define BL_NETWORKS_H

#include "models/layers.h"

typedef struct bl_net_arch {
    int n_bands;        /* 5: input channels of the Conv3d */
    int ch_per_band;    /* 6: depth of the Conv3d input, consumed whole by its kernel */
    int tile_slen;      /* 4 (two stride-2 convolutions) or 2 (one) */
    int n_out;          /* P, the variational spec's raw parameter count */
    int features_width; /* 64: preprocess3d and backbone[0..1]; backbone[2..3] use 2x */
    int num_features;   /* 256: output channels of FeaturesNet */
    int catalog_width;  /* 256: CatalogNet's C3 width; the downsampled branch uses 2x */
    int context_width;  /* 64: ContextNet's encode_context */
} bl_net_arch;

/* BLISS: 5 bands, 6 channels per band, tile_slen 4, widths 64/256/256/64, n_out = P. */
bl_net_arch bl_net_arch_default(int n_out);

/* ---- FeaturesNet: (B, n_bands, ch_per_band, H, W) -> (B, num_features, H/ts, W/ts) ---- */
typedef struct bl_features_net {
    bl_tensor *conv3d_weight; /* (64, 5, 6, 5, 5) preprocess3d.0.weight */
    bl_tensor *conv3d_bias;   /* (64) preprocess3d.0.bias */
    bl_bn bn3d;               /* preprocess3d.1, eps 1e-5, momentum 0.1 */
    bl_conv_block b0;         /* backbone.0: 64 -> 64, k5 */
    bl_conv_block b1[4];      /* backbone.1.i: 64 -> 64, k5 */
    bl_conv_block b2;         /* backbone.2: 64 -> 128, k3 s2 */
    bl_conv_block b3[5];      /* backbone.3.i: 128 -> 128, k3 */
    bl_conv_block b4;         /* backbone.4: 128 -> 256, k3, s2 when tile_slen == 4 */
    bl_net_arch arch;
} bl_features_net;

void bl_features_net_init(bl_features_net *net, bl_builder *b, const char *prefix,
                          const bl_net_arch *arch);
bl_tensor *bl_features_net_forward(bl_ctx *ctx, const bl_features_net *net, bl_tensor *x,
                                   int training);

/* ---- CatalogNet(cin, P): (B, cin, ht, wt) -> (B, ht, wt, P); ht, wt even ---- */
typedef struct bl_catalog_net {
    bl_c3 c0;               /* net_ml.0: C3(cin, 256, n 6, shortcut) */
    bl_conv_block c1;       /* net_ml.1: 256 -> 512, k3 s2 */
    bl_c3 c2;               /* net_ml.2: C3(512, 512, n 3, no shortcut) */
    bl_conv_block c3;       /* net_ml.3: 512 -> 256, k1 */
    /* net_ml.4: nearest upsampling x2, no parameters */
    bl_c3 c5;               /* net_ml.5: C3(cin + 512, 256, n 3, no shortcut) on [x, y0, y4] */
    bl_detect c6;           /* net_ml.6: Detect(256, P) */
} bl_catalog_net;

void bl_catalog_net_init(bl_catalog_net *net, bl_builder *b, const char *prefix, int cin,
                         const bl_net_arch *arch);
bl_tensor *bl_catalog_net_forward(bl_ctx *ctx, const bl_catalog_net *net, bl_tensor *x,
                                  int training);

/* ---- ContextNet: features (B, 256, ht, wt) + context (B, 2, ht, wt) -> (B, ht, wt, P) ---- */
typedef struct bl_context_net {
    bl_conv_block enc[3];   /* encode_context.i: 2 -> 64 -> 64 -> 64, k3 */
    bl_conv_block merge;    /* merge: 256 + 64 -> 256, k3 */
    bl_catalog_net catalog; /* catalog_net */
} bl_context_net;

void bl_context_net_init(bl_context_net *net, bl_builder *b, const char *prefix,
                         const bl_net_arch *arch);
bl_tensor *bl_context_net_forward(bl_ctx *ctx, const bl_context_net *net, bl_tensor *features,
                                  bl_tensor *context, int training);

/* ---- the encoder's networks (docs/behaviour.md §4.6), registered in state_dict order ---- */
typedef struct bl_encoder_nets {
    bl_net_arch arch;
    bl_features_net features;  /* features_net */
    bl_catalog_net marginal;   /* marginal_net */
    bl_context_net context;    /* checkerboard_net (present even when the checkerboard is off) */
    bl_catalog_net second;     /* second_net, only when has_second (double detection) */
    int has_second;
} bl_encoder_nets;

/* Registers every tensor in b->params: 527 state_dict entries for the default arch. */
void bl_encoder_nets_init(bl_encoder_nets *nets, bl_builder *b, const bl_net_arch *arch,
                          int double_detect);

#endif
