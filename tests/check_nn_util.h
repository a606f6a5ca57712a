/* Shared helpers of the nn Check suites: random fills and a central-difference gradient
 * check. Included by tests/check_nn_*.c only. */
#ifndef NPID_TESTS_CHECK_NN_UTIL_H
#define NPID_TESTS_CHECK_NN_UTIL_H
#include <math.h>
#include <stdlib.h>

#include "common/rng.h"

static inline void fill_normal(float *x, size_t n, double std, uint64_t seed)
{
    struct rng r;
    rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) x[i] = (float)(rng_normal(&r) * std);
}

static inline double dot_d(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* A loss L(ctx) computed in double by running the forward under test. */
typedef double (*gc_loss_fn)(void *ctx);

/* Compares ana (the analytic dL/dx) with central differences of L over up to max_checks
 * coordinates of x spread over the whole array. Returns ||ana - num|| / max(||ana||, ||num||)
 * over the checked coordinates (0 when both vanish). x is restored. */
static inline double gc_rel_error(gc_loss_fn loss, void *ctx, float *x, const float *ana,
                                  size_t n, size_t max_checks, float h)
{
    size_t step = n > max_checks ? n / max_checks : 1;
    double dd = 0.0, aa = 0.0, nn = 0.0;
    for (size_t i = (step > 1 ? step / 2 : 0); i < n; i += step) {
        float keep = x[i];
        x[i] = keep + h;
        double lp = loss(ctx);
        x[i] = keep - h;
        double lm = loss(ctx);
        x[i] = keep;
        double num = (lp - lm) / (2.0 * (double)h);
        dd += (ana[i] - num) * (ana[i] - num);
        aa += (double)ana[i] * ana[i];
        nn += num * num;
    }
    double den = sqrt(aa > nn ? aa : nn);
    return den > 0.0 ? sqrt(dd) / den : 0.0;
}

#endif
