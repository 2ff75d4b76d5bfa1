/* Provokes one programmer error (argv[1]) so that tests/autograd/expect_abort.sh can check the
 * op aborts with the op's name, the shapes and file:line on stderr. Exits 0 only if the op
 * wrongly returned. */
#include <stdio.h>
#include <string.h>

#include "autograd/ops.h"

int main(int argc, char **argv)
{
    const char *what = argc > 1 ? argv[1] : "add";
    bl_ctx *ctx = bl_ctx_alloc(0);
    bl_tensor *a = bl_zeros(ctx, 2, BL_SHAPE(2, 3));
    if (strcmp(what, "add") == 0) bl_add(ctx, a, bl_zeros(ctx, 2, BL_SHAPE(4, 5)));
    if (strcmp(what, "mul") == 0) bl_mul(ctx, a, bl_zeros(ctx, 2, BL_SHAPE(4, 3)));
    if (strcmp(what, "sum_dim") == 0) bl_sum_dim(ctx, a, 2, 0);
    if (strcmp(what, "concat") == 0)
        bl_concat(ctx, 2, (bl_tensor *[]){a, bl_zeros(ctx, 2, BL_SHAPE(3, 3))}, 1);
    if (strcmp(what, "reshape") == 0) bl_reshape(ctx, a, 2, BL_SHAPE(4, -1));
    if (strcmp(what, "slice") == 0) bl_slice(ctx, a, 1, 2, 5);
    /* a tensor in the channel-blocked layout (lib/tensor.h) reaching an op that does not read it */
    bl_tensor *blk = bl_zeros(ctx, 4, BL_SHAPE(2, 16, 3, 3));
    blk->layout = 16;
    if (strcmp(what, "blocked_permute") == 0) bl_permute(ctx, blk, (const int[]){0, 2, 3, 1});
    if (strcmp(what, "blocked_mul") == 0) bl_mul(ctx, bl_zeros(ctx, 4, BL_SHAPE(2, 16, 3, 3)), blk);
    if (strcmp(what, "blocked_sum") == 0) bl_sum(ctx, blk);

    fprintf(stderr, "shape_abort: '%s' returned without aborting\n", what);
    bl_ctx_free(ctx);
    return 0;
}
