#include "lib/rng.h"

#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <stdlib.h>

#include "lib/error.h"

struct bl_rng {
    gsl_rng *r;
    uint64_t seed, stream;
};

static uint64_t bl_splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

uint64_t bl_rng_mix(uint64_t seed, uint64_t stream)
{
    return bl_splitmix64(bl_splitmix64(seed) ^ bl_splitmix64(stream + 0x632be59bd9b4e019ULL));
}

void bl_rng_reseed(bl_rng *rng, uint64_t seed, uint64_t stream)
{
    uint64_t s = bl_rng_mix(seed, stream);
    /* MT19937 takes a 32-bit seed; fold the 64 mixed bits; gsl treats 0 as its default 4357 */
    unsigned long s32 = (unsigned long)((s ^ (s >> 32)) & 0xffffffffUL);
    gsl_rng_set(rng->r, s32 ? s32 : 1);
    rng->seed = seed;
    rng->stream = stream;
}

bl_rng *bl_rng_alloc(uint64_t seed, uint64_t stream)
{
    bl_rng *rng = bl_malloc(sizeof *rng);
    rng->r = gsl_rng_alloc(gsl_rng_mt19937);
    BL_ASSERT(rng->r, "bl_rng_alloc: gsl_rng_alloc failed (out of memory)");
    bl_rng_reseed(rng, seed, stream);
    return rng;
}

void bl_rng_free(bl_rng *rng)
{
    if (!rng) return;
    gsl_rng_free(rng->r);
    free(rng);
}

double bl_rng_uniform(bl_rng *rng) { return gsl_rng_uniform(rng->r); }
double bl_rng_uniform_pos(bl_rng *rng) { return gsl_rng_uniform_pos(rng->r); }
double bl_rng_normal(bl_rng *rng) { return gsl_ran_gaussian_ziggurat(rng->r, 1.0); }
unsigned int bl_rng_poisson(bl_rng *rng, double mean) { return gsl_ran_poisson(rng->r, mean); }
double bl_rng_gamma(bl_rng *rng, double shape, double scale) { return gsl_ran_gamma(rng->r, shape, scale); }
unsigned long bl_rng_uniform_int(bl_rng *rng, unsigned long n) { return gsl_rng_uniform_int(rng->r, n); }
