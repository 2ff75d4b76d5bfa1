/* Seeded random numbers over GSL.
 *
 * Reproducibility independent of the thread count: randomness is drawn from *streams*
 * identified by (seed, stream id); a stream id names a piece of work (a sample in a batch,
 * a step, a purpose), never a thread. Each stream is a gsl_rng (MT19937) seeded with
 * splitmix64(seed, stream), so any thread may draw stream k and get the same numbers. */
#ifndef BL_RNG_H
#define BL_RNG_H

#include <stdint.h>

typedef struct bl_rng bl_rng; /* opaque: no public header exposes a third-party type */

/* Mix (seed, stream) into a 64-bit value (splitmix64 of both): distinct ids -> unrelated seeds. */
uint64_t bl_rng_mix(uint64_t seed, uint64_t stream);
/* Stream `stream` of generator `seed`; free with bl_rng_free. Two-level ids (e.g. step, then
 * sample) are formed with bl_rng_mix(step, sample) as the stream id. */
bl_rng *bl_rng_alloc(uint64_t seed, uint64_t stream);
void bl_rng_free(bl_rng *rng);
/* Re-seed in place (no allocation): for per-sample loops. */
void bl_rng_reseed(bl_rng *rng, uint64_t seed, uint64_t stream);

double bl_rng_uniform(bl_rng *rng);              /* [0, 1) */
double bl_rng_uniform_pos(bl_rng *rng);          /* (0, 1) */
double bl_rng_normal(bl_rng *rng);               /* N(0, 1) */
unsigned int bl_rng_poisson(bl_rng *rng, double mean);
double bl_rng_gamma(bl_rng *rng, double shape, double scale);
unsigned long bl_rng_uniform_int(bl_rng *rng, unsigned long n); /* 0 .. n-1 */

#endif
