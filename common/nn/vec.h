/* 16-float vectors through GCC's vector extension: one AVX-512 register in a function
 * compiled for AVX-512 (common/cpu.h), split into narrower operations elsewhere. Loads and
 * stores go through memcpy, so no alignment is assumed. Used by the element-wise kernels
 * (bn.c, act.c), each compiled once per kernel level. */
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

/* exp(x) per lane, relative error below 2.4e-7 (2 ulp) for x in [-87.3, 88.3]; inputs are
 * clamped to that range first (so exp of anything below -87.3 is exp(-87.3) ~ 1.2e-38, not 0,
 * and nothing overflows). Cephes' reduction x = n ln2 + r, |r| <= ln2/2, and its degree-6 polynomial. */
static inline v16f v16_exp(v16f x)
{
    v16f hi = v16_set1(88.3f), lo = v16_set1(-87.3f);
    x = (v16f)(((v16i)x & (x < hi)) | ((v16i)hi & ~(x < hi)));
    x = (v16f)(((v16i)x & (x > lo)) | ((v16i)lo & ~(x > lo)));
    /* n = round(x / ln2) by the 1.5 * 2^23 trick (|x / ln2| < 2^22) */
    v16f magic = v16_set1(12582912.0f);
    v16f n = (x * v16_set1(1.44269504088896341f) + magic) - magic;
    v16f r = x - n * v16_set1(0.693359375f);
    r = r - n * v16_set1(-2.12194440e-4f);
    v16f p = v16_set1(1.9875691500e-4f);
    p = p * r + v16_set1(1.3981999507e-3f);
    p = p * r + v16_set1(8.3334519073e-3f);
    p = p * r + v16_set1(4.1665795894e-2f);
    p = p * r + v16_set1(1.6666665459e-1f);
    p = p * r + v16_set1(5.0000001201e-1f);
    p = p * r * r + r + v16_set1(1.0f);
    v16i e = (__builtin_convertvector(n, v16i) + 127) << 23;
    return p * (v16f)e;
}

static inline double v16_hsum(v16f v)
{
    double s = 0.0;
    for (int i = 0; i < 16; i++) s += v[i];
    return s;
}

#endif
