/* Fresh simulated batches as a bl_batch_source (lib/batch.h): batch `index` is
 * bl_simulator_generate(sim, seed, first + index), normalised with `norm`. A validation set is
 * a source with a `first` far from the training stream's (the trainer asks it for indices
 * 0 .. n_batches - 1 every time: a fixed set). */
#ifndef BL_SIM_SOURCE_H
#define BL_SIM_SOURCE_H

#include "lib/batch.h"
#include "lib/sim/normalize.h"
#include "lib/sim/simulate.h"

typedef struct bl_sim_source bl_sim_source;
bl_sim_source *bl_sim_source_alloc(const bl_simulator *sim, const bl_normalize_opts *norm,
                                   uint64_t seed, uint64_t first);
void bl_sim_source_free(bl_sim_source *s);
/* The source as a bl_batch_source with n_batches (0: unbounded). */
bl_batch_source bl_sim_source_batches(bl_sim_source *s, int64_t n_batches);

#endif
