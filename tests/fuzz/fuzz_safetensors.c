/* safetensors parser: any bytes -> a set or BL_ERR_FORMAT, never a crash. */
#include "lib/io/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bl_safetensors *st;
    if (bl_safetensors_parse(&st, data, size, "fuzz") == BL_OK) {
        /* every tensor converts to bl_real through the checked path */
        for (int i = 0; i < st->n; i++) {
            bl_tensor *t = bl_tensor_alloc(NULL, st->tensors[i].ndim, st->tensors[i].shape, 0);
            if (bl_safetensors_read_into(st, "fuzz", st->tensors[i].name, t) != BL_OK) abort();
            bl_tensor_free(t);
        }
        bl_safetensors_free(st);
    }
    return 0;
}
