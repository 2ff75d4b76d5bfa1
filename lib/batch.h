/* Where batches come from: the one interface between data (the simulator, a saved dataset, a
 * user's own reader) and whatever consumes batches (the trainer, evaluation). It lives in the
 * core floor so that a data source never needs the tape and the trainer never needs the
 * simulator. */
#ifndef BL_BATCH_H
#define BL_BATCH_H

#include "lib/arena.h"
#include "lib/catalog.h"
#include "lib/tensor.h"

/* get() fills batch `index` of the stream: the normalised images (B, n_bands, ch_per_band, H, W)
 * as a tensor pushed on `arena` (per step: gone at the arena's reset) and a true tile catalog
 * that the caller frees. A validation source must return the same batch for the same index
 * every time (a fixed validation set); a training source may draw fresh data for every index. */
typedef struct bl_batch_source {
    void *user;
    bl_status (*get)(void *user, bl_arena *arena, int64_t index, bl_tensor **x,
                     bl_tile_catalog **truth);
    int64_t n_batches; /* batches in one pass (validation), or 0: unbounded (fresh data) */
} bl_batch_source;

#endif
