/* Seedable, splittable random numbers: xoshiro256** seeded through splitmix64.
 *
 * rng_derive(seed, a, b) gives an independent generator for a (seed, stream, item) triple,
 * e.g. (run seed, epoch, image index) for augmentation, so results do not depend on which
 * process or thread draws them or in what order. The state is plain data: it can be copied
 * into a checkpoint and restored bit-exactly. */
#ifndef NPID_RNG_H
#define NPID_RNG_H
#include <stdint.h>

struct rng { uint64_t s[4]; };

void rng_seed(struct rng *r, uint64_t seed);
struct rng rng_derive(uint64_t seed, uint64_t a, uint64_t b);
uint64_t rng_u64(struct rng *r);
uint32_t rng_u32(struct rng *r);
/* uniform in [0, 1) with 24 (float) or 53 (double) random bits */
float rng_float(struct rng *r);
double rng_double(struct rng *r);
/* uniform integer in [0, n), unbiased (Lemire); n > 0 */
uint64_t rng_below(struct rng *r, uint64_t n);
/* standard normal (Box-Muller) */
double rng_normal(struct rng *r);
/* splitmix64 step: a good 64-bit mixer for hashing seeds */
uint64_t rng_mix64(uint64_t x);

#endif
