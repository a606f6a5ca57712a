/* Aligned float blocks and the two-pass carver (see tensor.h). */
#include "common/nn/tensor.h"

#include <stdlib.h>
#include <string.h>

float *nn_carve(struct nn_carver *c, size_t n)
{
    float *p = c->base ? c->base + c->used : NULL;
    c->used += (n + 15) & ~(size_t)15;
    return p;
}

float *nn_alloc(size_t n)
{
    size_t bytes = ((n ? n : 1) * sizeof(float) + 63) & ~(size_t)63;
    float *p = aligned_alloc(64, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void nn_free(float *p)
{
    free(p);
}

void nn_carve_param(struct nn_layout *L, size_t n, float **p, float **g)
{
    *p = nn_carve(&L->params, n);
    *g = nn_carve(&L->grads, n);
}
