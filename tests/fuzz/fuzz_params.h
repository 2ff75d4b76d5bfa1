/* The small parameter set whose checkpoints fuzz_checkpoint loads (and make_seeds writes). */
#ifndef BL_FUZZ_PARAMS_H
#define BL_FUZZ_PARAMS_H

#include "models/checkpoint.h"

static bl_params *bl_fuzz_params(void)
{
    bl_params *p = bl_params_alloc();
    bl_tensor *t[4] = {
        bl_params_add(p, "net.conv.weight", 4, BL_SHAPE(2, 3, 3, 3), 1),
        bl_params_add(p, "net.conv.bias", 1, BL_SHAPE(2), 1),
        bl_params_add(p, "net.bn.running_var", 1, BL_SHAPE(2), 0),
        bl_params_add(p, "net.bn.num_batches_tracked", 0, NULL, 0),
    };
    for (int k = 0; k < 4; k++)
        for (int64_t i = 0; i < t[k]->numel; i++) t[k]->data[i] = (bl_real)(0.25 * (double)(i % 7) - 0.5);
    return p;
}

#endif
