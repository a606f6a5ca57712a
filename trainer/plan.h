/* The epoch plan: a seeded permutation of 0..n-1 cut into batches.
 *
 * The permutation of epoch e depends only on (seed, e), so a resumed run replans the same
 * epoch and continues at the same step. Batch s of an epoch holds perm[s*B .. s*B+B-1]; the
 * last batch is partial unless drop_last is set. */
#ifndef NPID_PLAN_H
#define NPID_PLAN_H
#include <stddef.h>
#include <stdint.h>

/* Where a run is: the next step to run, as global steps done and (epoch, step of the epoch);
 * steps_per_epoch is the plan's (struct plan's steps). */
struct run_pos {
    uint64_t step;
    uint32_t epoch, epoch_step, steps_per_epoch;
};

struct plan {
    uint32_t *perm;     /* n indices */
    size_t n;
    uint32_t batch;
    uint32_t steps;     /* batches in the epoch */
    uint32_t epoch;
    uint64_t seed;
    int drop_last;
};

/* Allocates the permutation buffer once; 0 or -1 (ENOMEM / EINVAL for n == 0 or batch == 0). */
int plan_init(struct plan *p, size_t n, uint32_t batch, uint64_t seed, int drop_last);
void plan_deinit(struct plan *p);
/* Fills the permutation for epoch e (Fisher-Yates with rng_derive(seed, "plan", e)). */
void plan_epoch(struct plan *p, uint32_t epoch);
/* Indices of step s: *count receives the batch size (last batch may be shorter). */
const uint32_t *plan_step(const struct plan *p, uint32_t step, uint32_t *count);
/* Steps per epoch for given sizes. */
uint32_t plan_steps_per_epoch(size_t n, uint32_t batch, int drop_last);

#endif
