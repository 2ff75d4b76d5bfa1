/* Compiled twice by real_mismatch.sh: with the library's element type it links and prints the
 * size of bl_real; with the other one it must fail to link, naming the element-type symbol. */
#include <stdio.h>

#include "lib/tensor.h"

int main(void)
{
    bl_tensor *t = bl_tensor_alloc("x", 1, BL_SHAPE(3), 0);
    printf("bl_real %s, %d bytes\n", BL_REAL_NAME, (int)sizeof(bl_real));
    bl_tensor_free(t);
    return 0;
}
