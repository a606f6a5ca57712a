/* Weighted kNN over a streamed bank: see knn.h.
 *
 * Per query the state is an unsorted candidate list of at most `cap` (>= 2k + 16) keys and a
 * threshold: once the list has been compacted to its k best, the k-th best similarity. A key
 * packs (similarity, row) into 64 bits so that a larger key is a better neighbour: the high
 * half is the similarity's bits made order-preserving as an unsigned integer, the low half the
 * complement of the row number (lower row wins a tie). A similarity enters the list only if it
 * beats the threshold; when the list is full it is compacted again (quickselect, O(cap)).
 * After the first few thousand rows almost every similarity fails the threshold test, so the
 * selection costs about one vector compare per 16 similarities and the run time is dominated
 * by the sgemm. */
#include "evald/knn.h"

#include "common/cpu.h"
#include "common/log.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <immintrin.h>

/* Tile: KNN_QB queries x KNN_NB bank rows of similarities per worker. */
#ifndef KNN_QB
#define KNN_QB 256
#endif
#ifndef KNN_NB
#define KNN_NB 1024
#endif
enum { KNN_MAX_THREADS = 8 };

struct knn {
    size_t nq, dim, k, cap;
    float *q;          /* (nq, dim) queries */
    uint64_t *ckey;    /* (nq, cap) candidate keys */
    size_t *ccnt;      /* (nq) candidates held */
    float *thr;        /* (nq) entry threshold: k-th best after the last compaction */
    uint8_t *sorted;   /* (nq) 1 when the list is compacted and sorted best first */
    float *tile;       /* (KNN_MAX_THREADS, KNN_QB, KNN_NB) similarities, one tile per worker */
    uint64_t *tmp;     /* (KNN_MAX_THREADS, cap + 8) selection scratch, one per worker */
    size_t threads;
    uint64_t seen;
};

/* Order-preserving map of a float's bits to uint32 (NaN aside) and back. */
static inline uint32_t knn_fkey(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return u ^ ((uint32_t)((int32_t)u >> 31) | 0x80000000u);
}

static inline float knn_fval(uint32_t s)
{
    uint32_t u = (s & 0x80000000u) ? s ^ 0x80000000u : ~s;
    float v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static inline uint64_t knn_key(float v, uint32_t row)
{
    return (uint64_t)knn_fkey(v) << 32 | (uint32_t)~row;
}

static inline float knn_key_sim(uint64_t key)
{
    return knn_fval((uint32_t)(key >> 32));
}

static inline uint32_t knn_key_row(uint64_t key)
{
    return ~(uint32_t)key;
}

#define KNN_SWAP(x, y) do { uint64_t t_ = (x); (x) = (y); (y) = t_; } while (0)

/* Rearranges a (n distinct keys) so that a[kth] is the key that would be there if a were
 * sorted descending, a[0..kth-1] are larger and the rest smaller (Numerical Recipes' select,
 * with descending order). kth < n. */
static void knn_select(uint64_t *a, size_t n, size_t kth)
{
    size_t l = 0, ir = n - 1;
    for (;;) {
        if (ir <= l + 1) {
            if (ir == l + 1 && a[ir] > a[l])
                KNN_SWAP(a[l], a[ir]);
            return;
        }
        size_t mid = (l + ir) >> 1;
        KNN_SWAP(a[mid], a[l + 1]);
        if (a[l] < a[ir])
            KNN_SWAP(a[l], a[ir]);
        if (a[l + 1] < a[ir])
            KNN_SWAP(a[l + 1], a[ir]);
        if (a[l] < a[l + 1])
            KNN_SWAP(a[l], a[l + 1]);
        size_t i = l + 1, j = ir;
        uint64_t p = a[l + 1];
        for (;;) {
            do
                i++;
            while (a[i] > p);
            do
                j--;
            while (a[j] < p);
            if (j < i)
                break;
            KNN_SWAP(a[i], a[j]);
        }
        a[l + 1] = a[j];
        a[j] = p;
        if (j >= kth)
            ir = j - 1;
        if (j <= kth)
            l = i;
    }
}

/* Sorts a (n keys) descending: quicksort on the larger part's loop, insertion sort below 16. */
static void knn_sort(uint64_t *a, size_t n)
{
    while (n > 16) {
        size_t mid = n / 2, last = n - 1;
        if (a[0] < a[mid])
            KNN_SWAP(a[0], a[mid]);
        if (a[0] < a[last])
            KNN_SWAP(a[0], a[last]);
        if (a[mid] < a[last])
            KNN_SWAP(a[mid], a[last]);
        uint64_t p = a[mid]; /* a[0] >= p >= a[last]: sentinels for the scans */
        size_t i = 0, j = last;
        for (;;) {
            while (a[i] > p)
                i++;
            while (a[j] < p)
                j--;
            if (i >= j)
                break;
            KNN_SWAP(a[i], a[j]);
            i++;
            j--;
        }
        /* a[0..j] >= p >= a[j+1..n-1] */
        size_t left = j + 1;
        if (left < n - left) {
            knn_sort(a, left);
            a += left;
            n -= left;
        } else {
            knn_sort(a + left, n - left);
            n = left;
        }
    }
    for (size_t i = 1; i < n; i++) {
        uint64_t x = a[i];
        size_t j = i;
        for (; j > 0 && a[j - 1] < x; j--)
            a[j] = a[j - 1];
        a[j] = x;
    }
}

CPU_BEGIN_AVX512
/* knn_select with vectorised partitions: each round moves the keys larger than a median-of-3
 * pivot to tmp (n + 8 keys) and the others down in place, then joins the two runs, narrowing
 * to the side that holds kth; small or degenerate ranges finish in knn_select. */
static void knn_select_vec(uint64_t *a, size_t n, size_t kth, uint64_t *tmp)
{
    size_t lo = 0, hi = n;
    while (hi - lo > 64) {
        size_t len = hi - lo, mid = lo + len / 2;
        uint64_t x = a[lo], y = a[mid], z = a[hi - 1];
        uint64_t p = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        __m512i pv = _mm512_set1_epi64((long long)p);
        size_t ng = 0, nl = 0, i = lo;
        for (; i + 8 <= hi; i += 8) {
            __m512i v = _mm512_loadu_si512(a + i);
            __mmask8 gt = _mm512_cmpgt_epu64_mask(v, pv);
            /* full 8-lane stores: tmp has room; in a they land on keys already loaded */
            _mm512_storeu_si512(tmp + ng, _mm512_maskz_compress_epi64(gt, v));
            ng += (size_t)__builtin_popcount(gt);
            _mm512_storeu_si512(a + lo + nl, _mm512_maskz_compress_epi64((__mmask8)~gt, v));
            nl += 8 - (size_t)__builtin_popcount(gt);
        }
        for (; i < hi; i++) {
            uint64_t v = a[i];
            if (v > p)
                tmp[ng++] = v;
            else
                a[lo + nl++] = v;
        }
        if (ng == 0 || nl == 0)
            break; /* duplicates of the pivot: let the scalar select finish */
        memmove(a + lo + ng, a + lo, nl * sizeof *a);
        memcpy(a + lo, tmp, ng * sizeof *a);
        if (kth < lo + ng)
            hi = lo + ng;
        else
            lo += ng;
    }
    knn_select(a + lo, hi - lo, kth - lo);
}
CPU_END

/* Keeps the k best of cnt > k keys (tmp: cap + 8 keys of scratch); returns k and sets *thr
 * to the k-th best similarity. */
static size_t knn_compact(uint64_t *a, size_t cnt, size_t k, float *thr, uint64_t *tmp)
{
    if (cpu_isa() >= CPU_ISA_AVX512)
        knn_select_vec(a, cnt, k - 1, tmp);
    else
        knn_select(a, cnt, k - 1);
    *thr = knn_key_sim(a[k - 1]);
    return k;
}

CPU_BEGIN_AVX512
/* knn_scan_row's whole chunks of 16: similarities s[0, nb & ~15) against the threshold *thr,
 * candidates appended to ck (cap keys, *cnt held). Returns the similarities it scanned. */
static size_t knn_scan_vec(uint64_t *ck, size_t cap, size_t k, size_t *cnt_io, float *thr_io,
                           const float *s, size_t nb, uint32_t base, uint64_t *tmp)
{
    size_t cnt = *cnt_io, j = 0;
    float thr = *thr_io;
    const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i signbit = _mm512_set1_epi32((int)0x80000000u);
    __m512 t = _mm512_set1_ps(thr);
    for (; j + 16 <= nb; j += 16) {
        __m512 x = _mm512_loadu_ps(s + j);
        __mmask16 m = _mm512_cmp_ps_mask(x, t, _CMP_GT_OQ);
        if (!m)
            continue;
        if (cnt + 16 > cap) {
            cnt = knn_compact(ck, cnt, k, &thr, tmp);
            t = _mm512_set1_ps(thr);
            m = _mm512_cmp_ps_mask(x, t, _CMP_GT_OQ);
            if (!m)
                continue;
        }
        /* keys of the 16 lanes as two vectors of 8, packed with an in-register compress
         * (the store form is microcoded and slow on some cores); the full 8-lane stores stay
         * inside cap because cnt + 16 <= cap here */
        __m512i u = _mm512_castps_si512(x);
        __m512i hi = _mm512_xor_si512(u, _mm512_or_si512(_mm512_srai_epi32(u, 31), signbit));
        __m512i lo = _mm512_xor_si512(_mm512_add_epi32(iota, _mm512_set1_epi32((int)(base + (uint32_t)j))),
                                      _mm512_set1_epi32(-1));
        __m512i k0 = _mm512_or_si512(_mm512_slli_epi64(_mm512_cvtepu32_epi64(_mm512_castsi512_si256(hi)), 32),
                                     _mm512_cvtepu32_epi64(_mm512_castsi512_si256(lo)));
        __m512i k1 = _mm512_or_si512(_mm512_slli_epi64(_mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(hi, 1)), 32),
                                     _mm512_cvtepu32_epi64(_mm512_extracti64x4_epi64(lo, 1)));
        __mmask8 m0 = (__mmask8)(m & 0xff), m1 = (__mmask8)(m >> 8);
        _mm512_storeu_si512(ck + cnt, _mm512_maskz_compress_epi64(m0, k0));
        cnt += (size_t)__builtin_popcount(m0);
        _mm512_storeu_si512(ck + cnt, _mm512_maskz_compress_epi64(m1, k1));
        cnt += (size_t)__builtin_popcount(m1);
    }
    *cnt_io = cnt;
    *thr_io = thr;
    return j;
}
CPU_END

/* Scans one row of similarities s (nb) for query qi; bank row numbers start at base. */
static void knn_scan_row(struct knn *kn, size_t qi, const float *s, size_t nb, uint32_t base,
                         uint64_t *tmp)
{
    size_t cap = kn->cap, k = kn->k;
    uint64_t *ck = kn->ckey + qi * cap;
    size_t cnt = kn->ccnt[qi];
    float thr = kn->thr[qi];
    size_t cnt0 = cnt;
    size_t j = 0;
    if (cpu_isa() >= CPU_ISA_AVX512)
        j = knn_scan_vec(ck, cap, k, &cnt, &thr, s, nb, base, tmp);
    for (; j < nb; j++) {
        if (!(s[j] > thr))
            continue;
        if (cnt == cap) {
            cnt = knn_compact(ck, cnt, k, &thr, tmp);
            if (!(s[j] > thr))
                continue;
        }
        ck[cnt++] = knn_key(s[j], base + (uint32_t)j);
    }
    if (cnt != cnt0)
        kn->sorted[qi] = 0;
    kn->ccnt[qi] = cnt;
    kn->thr[qi] = thr;
}

/* One worker's share of a knn_add call: queries [q0, q1) against rows (count, dim). */
struct knn_job {
    struct knn *kn;
    float *tile;   /* (KNN_QB, KNN_NB) private to the worker */
    uint64_t *tmp; /* (cap + 8) private to the worker */
    const float *rows;
    size_t q0, q1, count;
    uint32_t start;
};

static void *knn_job_run(void *arg)
{
    struct knn_job *j = arg;
    struct knn *kn = j->kn;
    size_t d = kn->dim;
    for (size_t c0 = 0; c0 < j->count; c0 += KNN_NB) {
        size_t nb = j->count - c0 < KNN_NB ? j->count - c0 : KNN_NB;
        const float *b = j->rows + c0 * d; /* (nb, d) */
        for (size_t q0 = j->q0; q0 < j->q1; q0 += KNN_QB) {
            size_t qb = j->q1 - q0 < KNN_QB ? j->q1 - q0 : KNN_QB;
            /* tile (qb, nb) = q (qb, d) . b^T (d, nb) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)qb, (int)nb, (int)d, 1.0f,
                        kn->q + q0 * d, (int)d, b, (int)d, 0.0f, j->tile, (int)nb);
            for (size_t r = 0; r < qb; r++)
                knn_scan_row(kn, q0 + r, j->tile + r * nb, nb, j->start + (uint32_t)c0, j->tmp);
        }
    }
    return NULL;
}

struct knn *knn_new(const float *queries, size_t nq, size_t dim, size_t k)
{
    if (!queries || nq == 0 || dim == 0 || k == 0 || k > UINT32_MAX / 4) {
        errno = EINVAL;
        return NULL;
    }
    for (size_t i = 0; i < nq * dim; i++) {
        if (!isfinite(queries[i])) {
            errno = EINVAL;
            return NULL;
        }
    }
    struct knn *kn = calloc(1, sizeof *kn);
    if (!kn)
        goto fail;
    kn->nq = nq;
    kn->dim = dim;
    kn->k = k;
    kn->cap = (2 * k + 16 + 15) / 16 * 16;
    kn->q = malloc(nq * dim * sizeof *kn->q);
    kn->ckey = malloc(nq * kn->cap * sizeof *kn->ckey);
    kn->tmp = malloc(KNN_MAX_THREADS * (kn->cap + 8) * sizeof *kn->tmp);
    kn->ccnt = malloc(nq * sizeof *kn->ccnt);
    kn->thr = malloc(nq * sizeof *kn->thr);
    kn->sorted = malloc(nq);
    kn->tile = malloc((size_t)KNN_MAX_THREADS * KNN_QB * KNN_NB * sizeof *kn->tile);
    if (!kn->q || !kn->ckey || !kn->tmp || !kn->ccnt || !kn->thr || !kn->sorted || !kn->tile)
        goto fail;
    memcpy(kn->q, queries, nq * dim * sizeof *kn->q);
    knn_set_threads(kn, 0);
    knn_reset(kn);
    return kn;
fail:
    knn_destroy(&kn);
    errno = ENOMEM;
    return NULL;
}

void knn_destroy(struct knn **pkn)
{
    if (!pkn || !*pkn)
        return;
    struct knn *kn = *pkn;
    free(kn->q);
    free(kn->ckey);
    free(kn->tmp);
    free(kn->ccnt);
    free(kn->thr);
    free(kn->sorted);
    free(kn->tile);
    free(kn);
    *pkn = NULL;
}

void knn_reset(struct knn *kn)
{
    for (size_t i = 0; i < kn->nq; i++) {
        kn->ccnt[i] = 0;
        kn->thr[i] = -INFINITY;
        kn->sorted[i] = 1;
    }
    kn->seen = 0;
}

void knn_set_threads(struct knn *kn, size_t threads)
{
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (size_t)n : 1;
    }
    kn->threads = threads > KNN_MAX_THREADS ? KNN_MAX_THREADS : threads;
}

uint64_t knn_rows_seen(const struct knn *kn)
{
    return kn->seen;
}

int knn_add(struct knn *kn, const float *rows, size_t start, size_t count)
{
    if (count == 0)
        return 0;
    if (!rows || start >= UINT32_MAX || count >= (size_t)UINT32_MAX - start) {
        errno = EINVAL;
        return -1;
    }
    /* Each worker takes a block of queries and runs a single-threaded sgemm followed by the
     * selection on its own tile while the tile is still in cache. OpenBLAS's own threads are
     * switched off meanwhile (they would spin against the selection) and restored after. */
    size_t nt = kn->threads;
    if (nt > (kn->nq + 63) / 64)
        nt = (kn->nq + 63) / 64;
    if (nt < 1)
        nt = 1;
    struct knn_job jobs[KNN_MAX_THREADS];
    pthread_t tids[KNN_MAX_THREADS];
    int started[KNN_MAX_THREADS] = { 0 };
    int blas_threads = openblas_get_num_threads();
    if (nt > 1)
        openblas_set_num_threads(1);
    for (size_t t = 0; t < nt; t++) {
        jobs[t] = (struct knn_job){ kn, kn->tile + t * (size_t)KNN_QB * KNN_NB,
                                    kn->tmp + t * (kn->cap + 8), rows,
                                    kn->nq * t / nt, kn->nq * (t + 1) / nt, count, (uint32_t)start };
        if (t > 0)
            started[t] = pthread_create(&tids[t], NULL, knn_job_run, &jobs[t]) == 0;
    }
    knn_job_run(&jobs[0]);
    for (size_t t = 1; t < nt; t++) {
        if (started[t])
            pthread_join(tids[t], NULL);
        else
            knn_job_run(&jobs[t]); /* no thread: do its share here */
    }
    if (nt > 1)
        openblas_set_num_threads(blas_threads);
    kn->seen += count;
    return 0;
}

/* Compacts query qi's list to its best min(k, cnt) and sorts it best first; returns the count. */
static size_t knn_finalize(struct knn *kn, size_t qi)
{
    uint64_t *ck = kn->ckey + qi * kn->cap;
    size_t cnt = kn->ccnt[qi];
    if (kn->sorted[qi])
        return cnt;
    if (cnt > kn->k)
        cnt = knn_compact(ck, cnt, kn->k, &kn->thr[qi], kn->tmp);
    knn_sort(ck, cnt);
    kn->ccnt[qi] = cnt;
    kn->sorted[qi] = 1;
    return cnt;
}

size_t knn_neighbours(struct knn *kn, size_t q, uint32_t *idx, float *sim)
{
    NPID_CHECK(q < kn->nq);
    size_t n = knn_finalize(kn, q);
    const uint64_t *ck = kn->ckey + q * kn->cap;
    for (size_t j = 0; j < n; j++) {
        if (idx)
            idx[j] = knn_key_row(ck[j]);
        if (sim)
            sim[j] = knn_key_sim(ck[j]);
    }
    return n;
}
void knn_result_destroy(struct knn_result **pr)
{
    if (!pr || !*pr)
        return;
    struct knn_result *r = *pr;
    free(r->pred);
    free(r->pred_nn1);
    free(r->class_count);
    free(r->class_top1);
    free(r->confusion);
    free(r);
    *pr = NULL;
}

double knn_result_class_acc(const struct knn_result *r, size_t c)
{
    NPID_CHECK(c < r->nclass);
    return r->class_count[c] ? (double)r->class_top1[c] / (double)r->class_count[c] : 0.0;
}

/* c1 ranks before c2: larger score, then smaller class index */
static inline int knn_class_before(const double *score, uint32_t c1, uint32_t c2)
{
    return score[c1] > score[c2] || (score[c1] == score[c2] && c1 < c2);
}

struct knn_result *knn_classify(struct knn *kn, const uint32_t *bank_labels, size_t nbank,
                                const uint32_t *query_labels, size_t nclass, size_t k,
                                double sigma)
{
    struct knn_result *r = NULL;
    double *score = NULL;
    uint32_t *touched = NULL;
    uint8_t *voted = NULL;
    int err = EINVAL;
    if (!bank_labels || !query_labels || nclass == 0 || nclass >= UINT32_MAX ||
        !(sigma > 0) || !isfinite(sigma))
        goto fail;
    size_t kuse = (k == 0 || k > kn->k) ? kn->k : k;
    err = ENOMEM;
    r = calloc(1, sizeof *r);
    if (!r)
        goto fail;
    r->nq = kn->nq;
    r->nclass = nclass;
    r->sigma = sigma;
    r->pred = malloc(kn->nq * 5 * sizeof *r->pred);
    r->pred_nn1 = malloc(kn->nq * sizeof *r->pred_nn1);
    r->class_count = calloc(nclass, sizeof *r->class_count);
    r->class_top1 = calloc(nclass, sizeof *r->class_top1);
    r->confusion = calloc(nclass * nclass, sizeof *r->confusion);
    score = calloc(nclass, sizeof *score);
    touched = malloc((kuse + 1) * sizeof *touched);
    voted = calloc(nclass, 1);
    if (!r->pred || !r->pred_nn1 || !r->class_count || !r->class_top1 || !r->confusion ||
        !score || !touched || !voted)
        goto fail;
    err = EINVAL;
    size_t used = 0;
    uint64_t c1 = 0, c5 = 0, cn = 0;
    for (size_t q = 0; q < kn->nq; q++) {
        uint32_t truth = query_labels[q];
        if (truth >= nclass)
            goto fail;
        size_t n = knn_finalize(kn, q);
        if (n > kuse)
            n = kuse;
        if (n > used)
            used = n;
        const uint64_t *ck = kn->ckey + q * kn->cap;
        double s0 = n ? knn_key_sim(ck[0]) : 0;
        size_t nt = 0;
        for (size_t j = 0; j < n; j++) {
            uint32_t row = knn_key_row(ck[j]);
            if (row >= nbank || bank_labels[row] >= nclass)
                goto fail;
            uint32_t c = bank_labels[row];
            if (!voted[c]) {
                voted[c] = 1;
                touched[nt++] = c;
            }
            /* shifted by the best similarity: same ranking as exp(s / sigma), no overflow */
            score[c] += exp(((double)knn_key_sim(ck[j]) - s0) / sigma);
        }
        /* top-5: best voted classes, then unvoted ones in ascending order */
        uint32_t *p = r->pred + q * 5;
        size_t np = 0;
        for (; np < 5 && np < nt; np++) {
            size_t best = np;
            for (size_t t = np + 1; t < nt; t++)
                if (knn_class_before(score, touched[t], touched[best]))
                    best = t;
            uint32_t tmp = touched[np];
            touched[np] = touched[best];
            touched[best] = tmp;
            p[np] = touched[np];
        }
        for (uint32_t c = 0; np < 5 && c < nclass; c++)
            if (!voted[c])
                p[np++] = c;
        for (; np < 5; np++)
            p[np] = UINT32_MAX;
        for (size_t t = 0; t < nt; t++) {
            score[touched[t]] = 0;
            voted[touched[t]] = 0;
        }
        r->pred_nn1[q] = n ? bank_labels[knn_key_row(ck[0])] : UINT32_MAX;
        r->class_count[truth]++;
        r->confusion[(size_t)truth * nclass + p[0]]++;
        if (p[0] == truth) {
            c1++;
            r->class_top1[truth]++;
        }
        for (size_t i = 0; i < 5; i++)
            if (p[i] == truth)
                c5++;
        if (r->pred_nn1[q] == truth)
            cn++;
    }
    r->k = used;
    r->top1 = (double)c1 / (double)kn->nq;
    r->top5 = (double)c5 / (double)kn->nq;
    r->nn1 = (double)cn / (double)kn->nq;
    free(score);
    free(touched);
    free(voted);
    return r;
fail:
    free(score);
    free(touched);
    free(voted);
    knn_result_destroy(&r);
    errno = err;
    return NULL;
}
