/* dataset shard reader (bl_sim_batch_read): any file -> a batch or an error. */
#include "lib/sim/simulate.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bl_sim_batch *b;
    if (bl_sim_batch_read(&b, bl_fuzz_file("shard.safetensors", data, size)) == BL_OK) {
        /* what the readers promise: counts within [0, S] */
        const bl_tile_catalog *c = b->tile_catalog;
        for (int64_t i = 0; i < bl_tile_catalog_n_tiles(c); i++)
            if (c->n_sources[i] < 0 || c->n_sources[i] > c->S) abort();
        bl_sim_batch_free(b);
    }
    return 0;
}
