/* The reference comparison: everything the encoder computes for one batch, in one
 * safetensors file, so that any other implementation (PyTorch: tests/data/gen_encoder_refs.py)
 * can be compared with it name by name.
 *
 * From the encoder's current parameters (training mode for the step, as in a training step),
 * the normalised batch x (B, n_bands, ch_per_band, H, W) and the true catalog:
 *   out.x_marginal, out.x_white, out.x_black  (B, ht, wt, P)   x_cat of each net (white/black
 *                                                              only with the checkerboard)
 *   out.nll_marginal, out.nll_white, out.nll_black, out.loss_tiles  (B, ht, wt)
 *   out.loss                                   ()              the training loss (docs/behaviour.md §4.9)
 *   grad.<param name>                          d loss / d parameter, every trainable tensor
 *   after.<buffer name>                        BatchNorm buffers after the training-mode pass
 *   out.x_marginal_eval                        (B, ht, wt, P)  marginal x_cat in eval mode, after
 * Tensors are F32 (F64 in the double build). The encoder's parameters change only through its
 * BatchNorm buffers (as in one training step without the optimizer); gradients are left in
 * the parameters' grad arrays. The encoder is left in eval mode. */
#ifndef BL_REFERENCE_H
#define BL_REFERENCE_H

#include "lib/io/safetensors.h"
#include "models/encoder.h"

/* *out = the set (free with bl_safetensors_free); NULL on error (bad input). */
bl_status bl_encoder_reference(bl_encoder *enc, bl_ctx *ctx, bl_tensor *x,
                               const bl_tile_catalog *truth, bl_safetensors **out);
/* The same, written atomically to `path`. */
bl_status bl_encoder_reference_write(bl_encoder *enc, bl_ctx *ctx, bl_tensor *x,
                                     const bl_tile_catalog *truth, const char *path);

#endif
