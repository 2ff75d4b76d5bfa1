#include "lib/sim/source.h"

#include <stdlib.h>

struct bl_sim_source {
    const bl_simulator *sim;
    bl_normalize_opts norm;
    uint64_t seed, first;
    bl_sim_batch *batch; /* reused for every batch */
};

bl_sim_source *bl_sim_source_alloc(const bl_simulator *sim, const bl_normalize_opts *norm,
                                   uint64_t seed, uint64_t first)
{
    bl_sim_source *s = bl_calloc(1, sizeof *s);
    s->sim = sim;
    s->norm = *norm;
    s->seed = seed;
    s->first = first;
    s->batch = bl_sim_batch_alloc(sim);
    return s;
}

void bl_sim_source_free(bl_sim_source *s)
{
    if (!s) return;
    bl_sim_batch_free(s->batch);
    free(s);
}

static bl_status bl_sim_source_get(void *user, bl_arena *arena, int64_t index, bl_tensor **x,
                                   bl_tile_catalog **truth)
{
    bl_sim_source *s = user;
    bl_simulator_generate(s->sim, s->seed, s->first + (uint64_t)index, s->batch);
    bl_status st = bl_normalize_push(&s->norm, arena, s->batch->images, s->batch->background,
                                     s->norm.concat_psf_params ? s->batch->psf_params : NULL, x);
    *truth = st ? NULL : bl_tile_catalog_copy(s->batch->tile_catalog);
    return st;
}

bl_batch_source bl_sim_source_batches(bl_sim_source *s, int64_t n_batches)
{
    return (bl_batch_source){.user = s, .get = bl_sim_source_get, .n_batches = n_batches};
}
