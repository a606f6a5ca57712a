/* 16-float vectors through GCC's vector extension: AVX-512 registers with -march=native on
 * this machine, split into narrower operations elsewhere. Loads and stores go through
 * memcpy, so no alignment is assumed. Used by the element-wise kernels (bn.c, act.c). */
#ifndef NPID_NN_VEC_H
#define NPID_NN_VEC_H
#include <string.h>

typedef float v16f __attribute__((vector_size(64)));
typedef int v16i __attribute__((vector_size(64)));

static inline v16f v16_load(const float *p)
{
    v16f v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static inline void v16_store(float *p, v16f v)
{
    memcpy(p, &v, sizeof(v));
}

static inline v16f v16_set1(float a)
{
    return (v16f){ a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a };
}

/* max(v, 0) */
static inline v16f v16_relu(v16f v)
{
    v16f z = { 0 };
    return (v16f)((v16i)v & (v > z));
}

/* v where m > 0, else 0 */
static inline v16f v16_mask_pos(v16f v, v16f m)
{
    v16f z = { 0 };
    return (v16f)((v16i)v & (m > z));
}

static inline double v16_hsum(v16f v)
{
    double s = 0.0;
    for (int i = 0; i < 16; i++) s += v[i];
    return s;
}

#endif
