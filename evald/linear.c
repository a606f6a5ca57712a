/* Multinomial logistic regression on frozen features (linear.h).
 *
 * One evaluation of the objective is one pass over the standardised rows Z (n, d), which at
 * 50,000 x 512 are 100 MB, far beyond the caches. The pass is cut into blocks of LR_BLOCK rows:
 * for each block the logits, the softmax, the loss and P = dL/dlogits are computed, and the
 * block's share of the weight gradient, P^T Z_blk, is added while the block is still in L2; so
 * Z is read from memory once per evaluation, not twice (logits, then gradient), and nothing is
 * packed. The blocks are grouped into at most LR_SLICES fixed slices, each with its own
 * gradient sums; threads claim slices in any order and the slices are summed in slice order,
 * so the result depends on n but not on the thread count or on scheduling.
 *
 * Precision: the logits are dot products accumulated in double (Z float, W the double point
 * itself), the softmax takes double arguments and sums float exponentials (v16_exp) in double,
 * and the loss, the bias gradient and the slice sums are double; P and the weight-gradient sums
 * are float. Float logits (sgemm) rounded each logit at its own magnitude, which made f jitter
 * by ~1e-9 at n = 50,000: as much as the last L-BFGS steps gain, so those line searches
 * backtracked for tens of evaluations. Now f is within ~3e-11 of a double evaluation.
 *
 * The block kernels are AVX-512 intrinsics (FMA, masked loads for d % 16) when the CPU has it
 * (cpu_isa(), common/cpu.h), else vector-extension loops compiled per kernel level; the same
 * arithmetic in a different order. */
#include "evald/linear.h"

#include "common/blas.h"
#include "common/clock.h"
#include "common/cpu.h"
#include "common/nn/team.h"
#include "common/nn/vec.h"
#include "common/sig.h"

#include <cblas.h>
#include <errno.h>
#include <immintrin.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define LBFGS_PAIRS 10

/* Rows per block: 64 rows of 512 floats (128 KB) stay in L2 between the logits and the
 * gradient; a multiple of 16 (the softmax takes 16 rows per vector). */
#define LR_BLOCK 64
/* Slices of the rows, each with its own float gradient sums (C * d floats): also the most
 * threads an evaluation uses. */
#define LR_SLICES 16
/* The AVX-512 logits prefetch the rows this far ahead. Measured on one thread at 50,000 x 512,
 * 10 classes: 11.8 ms per evaluation, against 24 ms without (each 4-row tile is 4 short
 * streams, which the hardware prefetcher does not pick up); 64 rows ahead 12.0 ms, 128 12.9;
 * blocks of 32 or 128 rows within 3 % of 64. */
#define LR_PREFETCH 32

typedef double v8d __attribute__((vector_size(64)));
typedef long long v8l __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));

void linear_model_free(struct linear_model *m)
{
    free(m->mean);
    free(m->inv_std);
    free(m->w);
    memset(m, 0, sizeof *m);
}

double linear_grid(int i)
{
    return pow(10.0, -1.0 - 0.5 * (double)i);
}

/* Work space of one fit: the standardised rows and what one evaluation needs, allocated once. */
struct lr_work {
    const float *Z; /* (n, d) standardised rows, not owned */
    const uint32_t *y;
    size_t n;
    int d, C, nt, nslice; /* nt threads (<= nslice), nslice slices (<= LR_SLICES) */
    double lambda;
    struct nn_team *team; /* NULL when nt == 1 */
    float *Gs;            /* (nslice, C, d) each slice's sum of P^T Z over its rows */
    double *part;         /* (nslice, 1 + C) each slice's loss sum, then its bias-gradient sums */
    double *L;            /* (nt, C, LR_BLOCK) per thread: a block's logits without the bias */
    float *P;             /* (nt, C + 1, LR_BLOCK) per thread: a block's dL/dlogits; row C stays 0
                           * (the AVX-512 gradient reads it for the missing class of a pair) */
};

/* Sets up k for rows Z (n, d) with labels y, using OpenBLAS's thread count (blas_threads(), so
 * evald's --threads). A team that cannot be started means one thread (same results). 0, or -1
 * with errno ENOMEM; lr_work_deinit(k) in either case. */
static int lr_work_init(struct lr_work *k, const float *Z, const uint32_t *y, size_t n, int d,
                        int C, double lambda)
{
    size_t D = (size_t)d, nb = (n + LR_BLOCK - 1) / LR_BLOCK;
    int nslice = nb < LR_SLICES ? (int)nb : LR_SLICES, nt = blas_threads();
    nt = nt < 1 ? 1 : nt > nslice ? nslice : nt;
    *k = (struct lr_work){ .Z = Z, .y = y, .n = n, .d = d, .C = C, .nt = nt, .nslice = nslice,
                           .lambda = lambda };
    k->Gs = malloc((size_t)nslice * (size_t)C * D * sizeof *k->Gs);
    k->part = malloc((size_t)nslice * ((size_t)C + 1) * sizeof *k->part);
    k->L = calloc((size_t)nt * (size_t)C * LR_BLOCK, sizeof *k->L); /* columns past a short
                                                                     * block stay finite */
    k->P = calloc((size_t)nt * ((size_t)C + 1) * LR_BLOCK, sizeof *k->P);
    if (!k->Gs || !k->part || !k->L || !k->P) {
        errno = ENOMEM;
        return -1;
    }
    if (nt > 1 && !(k->team = nn_team_new(nt)))
        k->nt = 1;
    return 0;
}

static void lr_work_deinit(struct lr_work *k)
{
    nn_team_destroy(&k->team);
    free(k->Gs);
    free(k->part);
    free(k->L);
    free(k->P);
    memset(k, 0, sizeof *k);
}

CPU_BEGIN_AVX512
/* Lanes 0..7 of *lo are the sums of v[0..7]'s 8 lanes, those of *hi the sums of v[8..15]'s
 * (a transposing add tree: 42 operations for 16 sums). */
static inline __attribute__((always_inline)) void lr_sum16(const __m512d *v, __m512d *lo,
                                                           __m512d *hi)
{
    __m512d t[8], u[4];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) /* per 128-bit lane: (a0 + a1, b0 + b1) of v[2i], v[2i+1] */
        t[i] = _mm512_add_pd(_mm512_unpacklo_pd(v[2 * i], v[2 * i + 1]),
                             _mm512_unpackhi_pd(v[2 * i], v[2 * i + 1]));
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) /* 128-bit lanes: halves of the sums of v[4i .. 4i+3] */
        u[i] = _mm512_add_pd(_mm512_shuffle_f64x2(t[2 * i], t[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f64x2(t[2 * i], t[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    *lo = _mm512_add_pd(_mm512_shuffle_f64x2(u[0], u[1], _MM_SHUFFLE(2, 0, 2, 0)),
                        _mm512_shuffle_f64x2(u[0], u[1], _MM_SHUFFLE(3, 1, 3, 1)));
    *hi = _mm512_add_pd(_mm512_shuffle_f64x2(u[2], u[3], _MM_SHUFFLE(2, 0, 2, 0)),
                        _mm512_shuffle_f64x2(u[2], u[3], _MM_SHUFFLE(3, 1, 3, 1)));
}

/* Zb (nr, d) a block's rows, nr <= LR_BLOCK, avail >= nr rows of Z from Zb on; W (C, d).
 * L (C, LR_BLOCK): L[c][r] = W_c . Zb_r in double for r < nr; columns up to nr rounded up to 4
 * get copies of row nr - 1's. Tiles of 4 rows x 4 classes, 16 accumulators of 8 doubles. */
static void lr_logits_avx512(double *L, const float *Zb, size_t nr, size_t avail,
                             const double *W, size_t d, int C)
{
    for (size_t r0 = 0; r0 < nr; r0 += 4) {
        const float *z[4];
#pragma GCC unroll 4
        for (size_t r = 0; r < 4; r++)
            z[r] = Zb + (r0 + r < nr ? r0 + r : nr - 1) * d;
        /* the 4 rows LR_PREFETCH ahead: 2 lines per 8 columns, during the first class tile */
        const char *pf = r0 + LR_PREFETCH + 4 <= avail ? (const char *)(Zb + (r0 + LR_PREFETCH) * d)
                                                        : NULL;
        for (int c0 = 0; c0 < C; c0 += 4, pf = NULL) {
            const double *w[4];
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++)
                w[c] = W + (size_t)(c0 + c < C ? c0 + c : C - 1) * d;
            __m512d acc[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++)
                acc[i] = _mm512_setzero_pd();
            for (size_t j = 0; j < d; j += 8) {
                __mmask8 m = d - j >= 8 ? (__mmask8)0xff : (__mmask8)((1u << (d - j)) - 1);
                if (pf && j + 4 < d) { /* both lines inside the rows */
                    _mm_prefetch(pf + j / 8 * 128, _MM_HINT_T0);
                    _mm_prefetch(pf + j / 8 * 128 + 64, _MM_HINT_T0);
                }
                __m512d x[4];
#pragma GCC unroll 4
                for (int r = 0; r < 4; r++)
                    x[r] = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, z[r] + j));
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++) {
                    __m512d a = _mm512_maskz_loadu_pd(m, w[c] + j);
#pragma GCC unroll 4
                    for (int r = 0; r < 4; r++)
                        acc[4 * c + r] = _mm512_fmadd_pd(a, x[r], acc[4 * c + r]);
                }
            }
            __m512d lo, hi; /* lo: classes c0, c0 + 1 (4 rows each); hi: c0 + 2, c0 + 3 */
            lr_sum16(acc, &lo, &hi);
            double *o = L + (size_t)c0 * LR_BLOCK + r0;
            _mm256_storeu_pd(o, _mm512_castpd512_pd256(lo));
            if (c0 + 1 < C)
                _mm256_storeu_pd(o + LR_BLOCK, _mm512_extractf64x4_pd(lo, 1));
            if (c0 + 2 < C)
                _mm256_storeu_pd(o + 2 * LR_BLOCK, _mm512_castpd512_pd256(hi));
            if (c0 + 3 < C)
                _mm256_storeu_pd(o + 3 * LR_BLOCK, _mm512_extractf64x4_pd(hi, 1));
        }
    }
}

static inline __attribute__((always_inline)) __mmask16 lr_mask16(size_t d, size_t j)
{
    return j >= d ? 0 : d - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (d - j)) - 1);
}

/* G (C, d) += P^T Zb: G[c][j] += sum over r < nr of P[c][r] Zb[r][j]; P (C + 1, LR_BLOCK)
 * with row C zero. Tiles of 2 classes x 128 columns, 16 accumulators of 16 floats. */
static void lr_grad_avx512(float *G, const float *P, const float *Zb, size_t nr, size_t d, int C)
{
    for (size_t j0 = 0; j0 < d; j0 += 128) {
        __mmask16 m[8];
#pragma GCC unroll 8
        for (int q = 0; q < 8; q++)
            m[q] = lr_mask16(d, j0 + 16 * (size_t)q);
        for (int c0 = 0; c0 < C; c0 += 2) {
            const float *p0 = P + (size_t)c0 * LR_BLOCK, *p1 = p0 + LR_BLOCK;
            __m512 a[8], b[8];
#pragma GCC unroll 8
            for (int q = 0; q < 8; q++)
                a[q] = b[q] = _mm512_setzero_ps();
            for (size_t r = 0; r < nr; r++) {
                __m512 u = _mm512_set1_ps(p0[r]), v = _mm512_set1_ps(p1[r]);
                const float *zr = Zb + r * d + j0;
#pragma GCC unroll 8
                for (int q = 0; q < 8; q++) {
                    __m512 x = _mm512_maskz_loadu_ps(m[q], zr + 16 * q);
                    a[q] = _mm512_fmadd_ps(u, x, a[q]);
                    b[q] = _mm512_fmadd_ps(v, x, b[q]);
                }
            }
            float *g0 = G + (size_t)c0 * d + j0, *g1 = g0 + d;
#pragma GCC unroll 8
            for (int q = 0; q < 8; q++) {
                if (!m[q])
                    break;
                float *o = g0 + 16 * q;
                _mm512_mask_storeu_ps(o, m[q], _mm512_add_ps(_mm512_maskz_loadu_ps(m[q], o), a[q]));
                if (c0 + 1 < C) {
                    o = g1 + 16 * q;
                    _mm512_mask_storeu_ps(o, m[q], _mm512_add_ps(_mm512_maskz_loadu_ps(m[q], o), b[q]));
                }
            }
        }
    }
}
CPU_END

static inline v8d v8d_load(const double *p)
{
    v8d v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* The portable logits: as lr_logits_avx512 (columns past nr are left alone), one row and up to
 * 4 classes at a time. */
CPU_INLINE void lr_logits_vec_body(double *L, const float *Zb, size_t nr, const double *W,
                                   size_t d, int C)
{
    for (size_t r = 0; r < nr; r++) {
        const float *z = Zb + r * d;
        for (int c0 = 0; c0 < C; c0 += 4) {
            const double *w[4];
#pragma GCC unroll 4
            for (int c = 0; c < 4; c++)
                w[c] = W + (size_t)(c0 + c < C ? c0 + c : C - 1) * d;
            v8d acc[4] = { { 0 } };
            size_t j = 0;
            for (; j + 8 <= d; j += 8) {
                v8f zf;
                memcpy(&zf, z + j, sizeof zf);
                v8d x = __builtin_convertvector(zf, v8d);
#pragma GCC unroll 4
                for (int c = 0; c < 4; c++)
                    acc[c] += x * v8d_load(w[c] + j);
            }
            for (int c = 0; c < 4 && c0 + c < C; c++) {
                double s = 0.0;
                for (int l = 0; l < 8; l++)
                    s += acc[c][l];
                for (size_t t = j; t < d; t++)
                    s += (double)z[t] * w[c][t];
                L[(size_t)(c0 + c) * LR_BLOCK + r] = s;
            }
        }
    }
}
CPU_VARIANTS(lr_logits_vec, (double *L, const float *Zb, size_t nr, const double *W, size_t d, int C),
             (L, Zb, nr, W, d, C))

/* The portable gradient: as lr_grad_avx512, 4 rows per pass over G. */
CPU_INLINE void lr_grad_vec_body(float *G, const float *P, const float *Zb, size_t nr, size_t d, int C)
{
    for (size_t r = 0; r < nr; r += 4) {
        size_t nq = nr - r < 4 ? nr - r : 4;
        const float *z[4];
        for (size_t q = 0; q < 4; q++)
            z[q] = Zb + (r + (q < nq ? q : 0)) * d;
        for (int c = 0; c < C; c++) {
            const float *pc = P + (size_t)c * LR_BLOCK + r;
            float p[4] = { pc[0], nq > 1 ? pc[1] : 0, nq > 2 ? pc[2] : 0, nq > 3 ? pc[3] : 0 };
            v16f p0 = v16_set1(p[0]), p1 = v16_set1(p[1]), p2 = v16_set1(p[2]), p3 = v16_set1(p[3]);
            float *g = G + (size_t)c * d;
            size_t j = 0;
            for (; j + 16 <= d; j += 16)
                v16_store(g + j, v16_load(g + j) + p0 * v16_load(z[0] + j) + p1 * v16_load(z[1] + j) +
                                     p2 * v16_load(z[2] + j) + p3 * v16_load(z[3] + j));
            for (; j < d; j++)
                g[j] += p[0] * z[0][j] + p[1] * z[1][j] + p[2] * z[2][j] + p[3] * z[3][j];
        }
    }
}
CPU_VARIANTS(lr_grad_vec, (float *G, const float *P, const float *Zb, size_t nr, size_t d, int C),
             (G, P, Zb, nr, d, C))

/* max(a, b) per lane (b where either is NaN) */
static inline v8d v8d_max(v8d a, v8d b)
{
    return (v8d)(((v8l)a & (a > b)) | ((v8l)b & ~(a > b)));
}

/* A block's logits L (C, LR_BLOCK, without the bias b) for rows r < nr with labels y (columns
 * past nr may hold anything) into P (C, LR_BLOCK): P[c][r] = scale * (softmax_c - [c == y_r])
 * for r < nr, 0 past nr. Adds the rows' loss, logsumexp - the label's logit, to part[0] and
 * each class's sum of P to part[1 + c]. 16 rows per step; the exponentials are float, of
 * double arguments, and their sums z double: in float, z = 1 + u would drop the u < 6e-8 of
 * a confident row, biasing the loss down by their mean, and so would the label's p - 1. */
CPU_INLINE void lr_softmax_body(const double *L, float *P, int C, const double *b,
                                const uint32_t *y, size_t nr, double scale, double *part)
{
    for (size_t g = 0; g < nr; g += 16) {
        size_t nv = nr - g < 16 ? nr - g : 16;
        const uint32_t *yg = y + g;
        v8d m0 = { -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY,
                   -INFINITY }, m1 = m0, z0 = { 0 }, z1 = { 0 };
        for (int c = 0; c < C; c++) {
            const double *l = L + (size_t)c * LR_BLOCK + g;
            m0 = v8d_max(v8d_load(l) + b[c], m0);
            m1 = v8d_max(v8d_load(l + 8) + b[c], m1);
        }
        for (int c = 0; c < C; c++) {
            const double *l = L + (size_t)c * LR_BLOCK + g;
            v8f a0 = __builtin_convertvector(v8d_load(l) + b[c] - m0, v8f);
            v8f a1 = __builtin_convertvector(v8d_load(l + 8) + b[c] - m1, v8f);
            v16f e = v16_exp(__builtin_shufflevector(a0, a1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10,
                                                     11, 12, 13, 14, 15));
            v16_store(P + (size_t)c * LR_BLOCK + g, e);
            z0 += __builtin_convertvector(__builtin_shufflevector(e, e, 0, 1, 2, 3, 4, 5, 6, 7), v8d);
            z1 += __builtin_convertvector(__builtin_shufflevector(e, e, 8, 9, 10, 11, 12, 13, 14, 15),
                                          v8d);
        }
        double mx[16], z[16], loss = 0.0, prod = 1.0;
        memcpy(mx, &m0, sizeof m0);
        memcpy(mx + 8, &m1, sizeof m1);
        memcpy(z, &z0, sizeof z0);
        memcpy(z + 8, &z1, sizeof z1);
        v16f q = { 0 }; /* scale / z, 0 past nr: v16_exp is finite, so P is 0 there */
        float py[16];
        for (size_t l = 0; l < nv; l++) {
            size_t iy = (size_t)yg[l] * LR_BLOCK + g + l;
            loss += mx[l] - (L[iy] + b[yg[l]]);
            prod *= z[l]; /* each z is in [1, C]: a product of 16 is a double for any C < 1e19 */
            q[l] = (float)(scale / z[l]);
            py[l] = (float)(scale * ((P[iy] - z[l]) / z[l]));
        }
        part[0] += loss + log(prod);
        for (int c = 0; c < C; c++) {
            float *p = P + (size_t)c * LR_BLOCK + g;
            v16_store(p, v16_load(p) * q);
        }
        for (size_t l = 0; l < nv; l++)
            P[(size_t)yg[l] * LR_BLOCK + g + l] = py[l];
        for (int c = 0; c < C; c++)
            part[1 + c] += v16_hsum(v16_load(P + (size_t)c * LR_BLOCK + g));
    }
}
CPU_VARIANTS(lr_softmax, (const double *L, float *P, int C, const double *b, const uint32_t *y,
                          size_t nr, double scale, double *part),
             (L, P, C, b, y, nr, scale, part))

/* Slice s of the rows (whole blocks; only the last block of all may be short) at the point x:
 * its P^T Z into k->Gs[s], its loss and bias-gradient sums into k->part[s]. L and P are the
 * thread's block scratch. */
static void lr_slice(const struct lr_work *k, const double *x, int s, int avx512, double *L,
                     float *P)
{
    size_t D = (size_t)k->d, C = (size_t)k->C, nb = (k->n + LR_BLOCK - 1) / LR_BLOCK;
    size_t b0 = nb * (size_t)s / (size_t)k->nslice, b1 = nb * (size_t)(s + 1) / (size_t)k->nslice;
    float *G = k->Gs + (size_t)s * C * D;
    double *part = k->part + (size_t)s * (C + 1);
    memset(G, 0, C * D * sizeof *G);
    memset(part, 0, (C + 1) * sizeof *part);
    for (size_t blk = b0; blk < b1; blk++) {
        size_t i0 = blk * LR_BLOCK, nr = k->n - i0 < LR_BLOCK ? k->n - i0 : LR_BLOCK;
        const float *Zb = k->Z + i0 * D;
        if (avx512)
            lr_logits_avx512(L, Zb, nr, k->n - i0, x, D, k->C);
        else
            lr_logits_vec(L, Zb, nr, x, D, k->C);
        lr_softmax(L, P, k->C, x + C * D, k->y + i0, nr, 1.0 / (double)k->n, part);
        if (avx512)
            lr_grad_avx512(G, P, Zb, nr, D, k->C);
        else
            lr_grad_vec(G, P, Zb, nr, D, k->C);
    }
}

struct lr_job {
    const struct lr_work *k;
    const double *x;
    int avx512;
    atomic_int next; /* the next slice to claim */
};

static void lr_job_run(void *arg, int tid)
{
    struct lr_job *j = arg;
    const struct lr_work *k = j->k;
    double *L = k->L + (size_t)tid * (size_t)k->C * LR_BLOCK;
    float *P = k->P + (size_t)tid * ((size_t)k->C + 1) * LR_BLOCK;
    for (int s; (s = atomic_fetch_add(&j->next, 1)) < k->nslice;)
        lr_slice(k, j->x, s, j->avx512, L, P);
}

/* f(x) and its gradient g (both at x = [W (C,d), b (C)]). */
static double lr_eval(struct lr_work *k, const double *x, double *g)
{
    size_t C = (size_t)k->C, nw = C * (size_t)k->d;
    struct lr_job job = { .k = k, .x = x, .avx512 = cpu_isa() >= CPU_ISA_AVX512 };
    atomic_init(&job.next, 0);
    if (k->team)
        nn_team_run(k->team, lr_job_run, &job);
    else
        lr_job_run(&job, 0);
    double loss = 0.0, reg = 0.0, *gb = g + nw;
    for (size_t i = 0; i < nw; i++) {
        g[i] = k->lambda * x[i];
        reg += x[i] * x[i];
    }
    for (size_t c = 0; c < C; c++)
        gb[c] = 0.0;
    for (int s = 0; s < k->nslice; s++) { /* in slice order: deterministic */
        const float *G = k->Gs + (size_t)s * nw;
        const double *part = k->part + (size_t)s * (C + 1);
        for (size_t i = 0; i < nw; i++)
            g[i] += G[i];
        loss += part[0];
        for (size_t c = 0; c < C; c++)
            gb[c] += part[1 + c];
    }
    return loss / (double)k->n + 0.5 * k->lambda * reg;
}

double linear_objective(const float *Z, const uint32_t *y, size_t n, int d, int C, double lambda,
                        const double *w, double *g)
{
    struct lr_work k;
    double f = NAN;
    if (lr_work_init(&k, Z, y, n, d, C, lambda) == 0)
        f = lr_eval(&k, w, g);
    lr_work_deinit(&k);
    return f;
}

static double dot(const double *a, const double *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static double max_abs(const double *a, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        m = fabs(a[i]) > m ? fabs(a[i]) : m;
    return m;
}

/* L-BFGS on k from x (updated in place). */
static int lbfgs(struct lr_work *k, double *x, int max_iter, double tol,
                 struct linear_fit_info *info)
{
    size_t N = (size_t)k->C * (size_t)k->d + (size_t)k->C;
    double *buf = malloc((4 + 2 * LBFGS_PAIRS) * N * sizeof *buf);
    if (!buf) {
        errno = ENOMEM;
        return -1;
    }
    double *g = buf, *p = g + N, *xn = p + N, *gn = xn + N;
    double *S = gn + N, *Y = S + LBFGS_PAIRS * N;
    double rho[LBFGS_PAIRS], alpha[LBFGS_PAIRS];
    int npair = 0, head = 0; /* pairs head-npair .. head-1 (mod LBFGS_PAIRS) */
    double f = lr_eval(k, x, g);
    int evals = 1, it = 0, converged = 0;
    for (; it < max_iter; it++) {
        if (sig_stop) { /* SIGTERM / SIGINT: give up the fit */
            free(buf);
            errno = EINTR;
            return -1;
        }
        if (max_abs(g, N) < tol) {
            converged = 1;
            break;
        }
        /* p = -H g (two-loop recursion) */
        for (size_t i = 0; i < N; i++)
            p[i] = -g[i];
        for (int j = 0; j < npair; j++) {
            int q = (head - 1 - j + LBFGS_PAIRS) % LBFGS_PAIRS;
            alpha[q] = rho[q] * dot(S + (size_t)q * N, p, N);
            const double *yq = Y + (size_t)q * N;
            for (size_t i = 0; i < N; i++)
                p[i] -= alpha[q] * yq[i];
        }
        double t = 1.0;
        if (npair > 0) {
            int q = (head - 1 + LBFGS_PAIRS) % LBFGS_PAIRS;
            const double *yq = Y + (size_t)q * N;
            double gamma = 1.0 / (rho[q] * dot(yq, yq, N));
            for (size_t i = 0; i < N; i++)
                p[i] *= gamma;
        } else {
            double gn2 = sqrt(dot(g, g, N));
            t = gn2 > 1.0 ? 1.0 / gn2 : 1.0;
        }
        for (int j = npair - 1; j >= 0; j--) {
            int q = (head - 1 - j + LBFGS_PAIRS) % LBFGS_PAIRS;
            double beta = rho[q] * dot(Y + (size_t)q * N, p, N);
            const double *sq = S + (size_t)q * N;
            for (size_t i = 0; i < N; i++)
                p[i] += (alpha[q] - beta) * sq[i];
        }
        double gp = dot(g, p, N);
        if (!(gp < 0.0)) { /* not a descent direction: restart from steepest descent */
            npair = 0;
            for (size_t i = 0; i < N; i++)
                p[i] = -g[i];
            gp = -dot(g, g, N);
        }
        /* Armijo backtracking */
        double fn = f;
        int ok = 0;
        for (int ls = 0; ls < 60; ls++) {
            for (size_t i = 0; i < N; i++)
                xn[i] = x[i] + t * p[i];
            fn = lr_eval(k, xn, gn);
            evals++;
            if (isfinite(fn) && fn <= f + 1e-4 * t * gp) {
                ok = 1;
                break;
            }
            t *= 0.5;
        }
        if (!ok)
            break; /* no decrease at float precision: as good as it gets */
        double *sq = S + (size_t)head * N, *yq = Y + (size_t)head * N;
        for (size_t i = 0; i < N; i++) {
            sq[i] = xn[i] - x[i];
            yq[i] = gn[i] - g[i];
        }
        double ys = dot(sq, yq, N);
        if (ys > 1e-12 * dot(yq, yq, N) && ys > 0.0) {
            rho[head] = 1.0 / ys;
            head = (head + 1) % LBFGS_PAIRS;
            npair += npair < LBFGS_PAIRS;
        }
        double df = f - fn;
        memcpy(x, xn, N * sizeof *x);
        memcpy(g, gn, N * sizeof *g);
        f = fn;
        if (df <= 1e-12 * (fabs(f) > 1.0 ? fabs(f) : 1.0) && max_abs(g, N) < 10 * tol) {
            converged = 1;
            break;
        }
    }
    if (info) {
        info->iters = it;
        info->evals = evals;
        info->converged = converged || max_abs(g, N) < tol;
        info->loss = f;
        info->grad_max = max_abs(g, N);
    }
    free(buf);
    return 0;
}

int linear_fit(struct linear_model *m, const float *X, const uint32_t *y, size_t n, int d, int C,
               double lambda, int max_iter, double tol, struct linear_fit_info *info)
{
    double t0 = clock_seconds();
    if (n == 0 || d < 1 || C < 2 || !(lambda >= 0.0)) {
        errno = EINVAL;
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        if (y[i] >= (uint32_t)C) {
            errno = EINVAL;
            return -1;
        }
    size_t D = (size_t)d, N = (size_t)C * D + (size_t)C;
    if (m->d != d || m->C != C || !m->w) {
        linear_model_free(m);
        m->d = d;
        m->C = C;
        m->w = calloc(N, sizeof *m->w);
        m->mean = malloc(D * sizeof *m->mean);
        m->inv_std = malloc(D * sizeof *m->inv_std);
        if (!m->w || !m->mean || !m->inv_std) {
            linear_model_free(m);
            errno = ENOMEM;
            return -1;
        }
    }
    /* standardisation over the rows, in double */
    double *sum = calloc(2 * D, sizeof *sum);
    float *Z = malloc(n * D * sizeof *Z);
    struct lr_work k;
    int rc = -1;
    if (lr_work_init(&k, Z, y, n, d, C, lambda) != 0 || !sum || !Z) {
        errno = ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        const float *x = X + i * D;
        for (size_t j = 0; j < D; j++) {
            if (!isfinite(x[j])) {
                errno = EINVAL;
                goto out;
            }
            sum[j] += x[j];
            sum[D + j] += (double)x[j] * x[j];
        }
    }
    for (size_t j = 0; j < D; j++) {
        double mu = sum[j] / (double)n, var = sum[D + j] / (double)n - mu * mu;
        double sd = var > 1e-24 ? sqrt(var) : 1.0;
        m->mean[j] = (float)mu;
        m->inv_std[j] = (float)(1.0 / sd);
    }
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < D; j++)
            Z[i * D + j] = (X[i * D + j] - m->mean[j]) * m->inv_std[j];
    rc = lbfgs(&k, m->w, max_iter, tol, info);
    if (info)
        info->seconds = clock_seconds() - t0;
out:
    lr_work_deinit(&k);
    free(sum);
    free(Z);
    return rc;
}

void linear_scores(const struct linear_model *m, const float *X, size_t n, float *S)
{
    size_t D = (size_t)m->d, C = (size_t)m->C, chunk = 1024;
    float *Z = malloc(chunk * D * sizeof *Z), *W = malloc(C * D * sizeof *W);
    if (!Z || !W) { /* plain loops: slower, same result */
        for (size_t i = 0; i < n; i++)
            for (size_t c = 0; c < C; c++) {
                double s = m->w[C * D + c];
                for (size_t j = 0; j < D; j++)
                    s += m->w[c * D + j] * (double)((X[i * D + j] - m->mean[j]) * m->inv_std[j]);
                S[i * C + c] = (float)s;
            }
        free(Z);
        free(W);
        return;
    }
    for (size_t i = 0; i < C * D; i++)
        W[i] = (float)m->w[i];
    for (size_t s = 0; s < n; s += chunk) {
        size_t c = n - s < chunk ? n - s : chunk;
        for (size_t i = 0; i < c; i++)
            for (size_t j = 0; j < D; j++)
                Z[i * D + j] = (X[(s + i) * D + j] - m->mean[j]) * m->inv_std[j];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)c, (int)C, (int)D, 1.0f, Z,
                    (int)D, W, (int)D, 0.0f, S + s * C, (int)C);
        for (size_t i = 0; i < c; i++)
            for (size_t k = 0; k < C; k++)
                S[(s + i) * C + k] += (float)m->w[C * D + k];
    }
    free(Z);
    free(W);
}

int linear_accuracy(const struct linear_model *m, const float *X, const uint32_t *y, size_t n,
                    double *top1, double *top5, double *per_class)
{
    size_t C = (size_t)m->C, kk = C < 5 ? C : 5;
    float *S = malloc((n ? n : 1) * C * sizeof *S);
    size_t *hit = calloc(C, sizeof *hit), *cnt = calloc(C, sizeof *cnt);
    if (!S || !hit || !cnt) {
        free(S);
        free(hit);
        free(cnt);
        errno = ENOMEM;
        return -1;
    }
    linear_scores(m, X, n, S);
    size_t c1 = 0, c5 = 0;
    for (size_t i = 0; i < n; i++) {
        const float *s = S + i * C;
        size_t yi = y[i], rank = 0;
        /* rank of the true class; ties go against it (a constant model scores chance) */
        for (size_t c = 0; c < C; c++)
            rank += c != yi && s[c] >= s[yi];
        c1 += rank == 0;
        c5 += rank < kk;
        if (yi < C) {
            cnt[yi]++;
            hit[yi] += rank == 0;
        }
    }
    *top1 = n ? (double)c1 / (double)n : 0.0;
    *top5 = n ? (double)c5 / (double)n : 0.0;
    if (per_class)
        for (size_t c = 0; c < C; c++)
            per_class[c] = cnt[c] ? (double)hit[c] / (double)cnt[c] : NAN;
    free(S);
    free(hit);
    free(cnt);
    return 0;
}

static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

int linear_select(struct linear_model *m, const float *X, const uint32_t *y, size_t n, int d,
                  int C, uint64_t seed, int max_iter, double tol, struct linear_selection *sel,
                  struct linear_fit_info *info)
{
    size_t D = (size_t)d, nv = 0;
    for (size_t i = 0; i < n; i++)
        nv += mix64(seed ^ mix64(i)) % 5 == 0;
    size_t nf = n - nv;
    if (nv == 0 || nf == 0) {
        errno = EINVAL;
        return -1;
    }
    float *Xf = malloc(nf * D * sizeof *Xf), *Xv = malloc(nv * D * sizeof *Xv);
    uint32_t *yf = malloc(nf * sizeof *yf), *yv = malloc(nv * sizeof *yv);
    struct linear_model path = { 0 };
    int rc = -1;
    if (!Xf || !Xv || !yf || !yv) {
        errno = ENOMEM;
        goto out;
    }
    size_t a = 0, b = 0;
    for (size_t i = 0; i < n; i++) {
        if (mix64(seed ^ mix64(i)) % 5 == 0) {
            memcpy(Xv + b * D, X + i * D, D * sizeof *X);
            yv[b++] = y[i];
        } else {
            memcpy(Xf + a * D, X + i * D, D * sizeof *X);
            yf[a++] = y[i];
        }
    }
    sel->n_fit = nf;
    sel->n_val = nv;
    double best = -1.0;
    int best_i = 0;
    for (int i = 0; i < LINEAR_GRID; i++) {
        double t1, t5;
        if (linear_fit(&path, Xf, yf, nf, d, C, linear_grid(i), max_iter, tol, NULL) != 0 ||
            linear_accuracy(&path, Xv, yv, nv, &t1, &t5, NULL) != 0)
            goto out;
        sel->val_top1[i] = t1;
        if (t1 > best) {
            best = t1;
            best_i = i;
        }
    }
    sel->lambda = linear_grid(best_i);
    rc = linear_fit(m, X, y, n, d, C, sel->lambda, max_iter, tol, info);
out:
    linear_model_free(&path);
    free(Xf);
    free(Xv);
    free(yf);
    free(yv);
    return rc;
}
