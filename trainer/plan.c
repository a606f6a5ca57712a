/* Epoch plan: see plan.h. */
#include "trainer/plan.h"
#include "common/log.h"
#include "common/rng.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

uint32_t plan_steps_per_epoch(size_t n, uint32_t batch, int drop_last)
{
    if (batch == 0)
        return 0;
    return (uint32_t)(drop_last ? n / batch : (n + batch - 1) / batch);
}

int plan_init(struct plan *p, size_t n, uint32_t batch, uint64_t seed, int drop_last)
{
    memset(p, 0, sizeof *p);
    if (n == 0 || batch == 0 || n > UINT32_MAX || plan_steps_per_epoch(n, batch, drop_last) == 0) {
        errno = EINVAL;
        return -1;
    }
    p->perm = malloc(n * sizeof *p->perm);
    if (!p->perm)
        return -1;
    p->n = n;
    p->batch = batch;
    p->seed = seed;
    p->drop_last = drop_last;
    p->steps = plan_steps_per_epoch(n, batch, drop_last);
    p->epoch = UINT32_MAX;
    return 0;
}

void plan_deinit(struct plan *p)
{
    free(p->perm);
    p->perm = NULL;
}

void plan_epoch(struct plan *p, uint32_t epoch)
{
    struct rng r = rng_derive(p->seed, 0x706c616eull /* "plan" */, epoch);
    for (size_t i = 0; i < p->n; i++)
        p->perm[i] = (uint32_t)i;
    for (size_t i = p->n - 1; i > 0; i--) {
        size_t j = (size_t)rng_below(&r, i + 1);
        uint32_t t = p->perm[i];
        p->perm[i] = p->perm[j];
        p->perm[j] = t;
    }
    p->epoch = epoch;
}

const uint32_t *plan_step(const struct plan *p, uint32_t step, uint32_t *count)
{
    NPID_CHECK(step < p->steps);
    size_t start = (size_t)step * p->batch;
    size_t end = start + p->batch;
    if (end > p->n)
        end = p->n;
    *count = (uint32_t)(end - start);
    return p->perm + start;
}
