#include "models/reference.h"

#include <stdio.h>
#include <string.h>

#include "autograd/ops.h"

#ifdef BL_REAL_DOUBLE
#define BL_REF_DTYPE BL_DTYPE_F64
#else
#define BL_REF_DTYPE BL_DTYPE_F32
#endif

static void bl_ref_add(bl_safetensors *st, const char *prefix, const char *name, const bl_tensor *t,
                       const bl_real *data)
{
    char full[400];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    bl_tensor view = *t;
    view.data = (bl_real *)data;
    bl_status s = bl_safetensors_add_tensor(st, full, &view, BL_REF_DTYPE);
    BL_ASSERT(s == BL_OK, "bl_encoder_reference: %s", bl_error_message());
}

bl_status bl_encoder_reference(bl_encoder *enc, bl_ctx *ctx, bl_tensor *x,
                               const bl_tile_catalog *truth, bl_safetensors **out)
{
    *out = NULL;
    bl_params_zero_grad(enc->params);
    bl_encoder_set_training(enc, 1);
    const int grad_was = bl_set_grad_enabled(ctx, 1);
    bl_tensor *loss;
    bl_encoder_loss_parts p;
    bl_status s = bl_encoder_loss(enc, ctx, x, truth, &loss, &p);
    if (s) {
        bl_set_grad_enabled(ctx, grad_was);
        return s;
    }
    bl_backward(ctx, loss);
    bl_safetensors *st = bl_safetensors_alloc();
    const bl_tensor *o[] = {p.pred.marginal->x_cat, p.pred.white ? p.pred.white->x_cat : NULL,
                            p.pred.black ? p.pred.black->x_cat : NULL, p.nll_marginal,
                            p.nll_white, p.nll_black, p.loss_tiles, loss};
    const char *on[] = {"x_marginal", "x_white", "x_black", "nll_marginal",
                        "nll_white", "nll_black", "loss_tiles", "loss"};
    for (int i = 0; i < 8; i++)
        if (o[i]) bl_ref_add(st, "out.", on[i], o[i], o[i]->data);
    for (int i = 0; i < enc->params->n; i++) {
        const bl_tensor *t = enc->params->t[i];
        if (t->requires_grad)
            bl_ref_add(st, "grad.", t->name, t, t->grad);
        else
            bl_ref_add(st, "after.", t->name, t, t->data);
    }
    /* eval mode after the step: running statistics instead of batch statistics */
    bl_set_grad_enabled(ctx, 0);
    bl_encoder_set_training(enc, 0);
    bl_encoder_pred pred;
    bl_encoder_infer_marginal(enc, ctx, x, &pred);
    bl_ref_add(st, "out.", "x_marginal_eval", pred.marginal->x_cat, pred.marginal->x_cat->data);
    bl_set_grad_enabled(ctx, grad_was);
    char v[64];
    snprintf(v, sizeof v, "%.17g", (double)loss->data[0]);
    bl_safetensors_set_meta(st, "loss", v);
    bl_safetensors_set_meta(st, "generator", "bliss-c bl_encoder_reference");
    *out = st;
    return BL_OK;
}

bl_status bl_encoder_reference_write(bl_encoder *enc, bl_ctx *ctx, bl_tensor *x,
                                     const bl_tile_catalog *truth, const char *path)
{
    bl_safetensors *st;
    bl_status s = bl_encoder_reference(enc, ctx, x, truth, &st);
    if (s) return s;
    s = bl_safetensors_write(st, path);
    bl_safetensors_free(st);
    return s;
}
