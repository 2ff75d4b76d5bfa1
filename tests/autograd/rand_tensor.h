/* Deterministic random tensors for the convolution and layout tests: a 64-bit LCG (reset
 * lcg_state to repeat a sequence) and per-step tensors filled with offset + scale * U[-1, 1). */
#ifndef BL_TESTS_RAND_TENSOR_H
#define BL_TESTS_RAND_TENSOR_H

#include <stdint.h>

#include "autograd/tape.h"

static uint64_t lcg_state;
static double urand(void) /* uniform [-1, 1), deterministic */
{
    lcg_state = lcg_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (double)(lcg_state >> 11) / 9007199254740992.0 * 2 - 1;
}

__attribute__((unused)) static bl_tensor *rand_tensor(bl_ctx *ctx, int ndim, const int64_t *shape,
                                                      double scale, double offset, int requires_grad)
{
    bl_tensor *t = bl_new(ctx, ndim, shape);
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = (bl_real)(offset + scale * urand());
    t->requires_grad = requires_grad;
    return t;
}

#endif
