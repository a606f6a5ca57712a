/* Weighted kNN over a streamed bank: see knn.h.
 *
 * Per query the state is an unsorted candidate list of at most `cap` (>= 2k + 16) pairs
 * (similarity, row) and a threshold: once the list has been compacted to its k best, the k-th
 * best similarity. A new similarity enters the list only if it beats the threshold; when the
 * list is full it is compacted again (quickselect, O(cap)). After the first few thousand rows
 * almost every similarity fails the threshold test, so the selection costs about one vector
 * compare per 16 similarities and the run time is dominated by the sgemm. */
#include "evald/knn.h"

#include "common/log.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

/* Tile: KNN_QB queries x KNN_NB bank rows of similarities (8 MB at 1024 x 2048). */
enum { KNN_QB = 1024, KNN_NB = 2048, KNN_MAX_THREADS = 8 };

struct knn {
    size_t nq, dim, k, cap;
    float *q;          /* (nq, dim) queries */
    float *cval;       /* (nq, cap) candidate similarities */
    uint32_t *cidx;    /* (nq, cap) candidate row numbers */
    size_t *ccnt;      /* (nq) candidates held */
    float *thr;        /* (nq) entry threshold: k-th best after the last compaction */
    uint8_t *sorted;   /* (nq) 1 when the list is compacted and sorted best first */
    float *tile;       /* (KNN_QB, KNN_NB) similarities */
    struct knn_pair { float v; uint32_t i; } *scratch; /* (cap) for sorting */
    size_t threads;
    uint64_t seen;
};

/* a is better than b: larger similarity, then smaller row number */
static inline int knn_better(float va, uint32_t ia, float vb, uint32_t ib)
{
    return va > vb || (va == vb && ia < ib);
}

static inline void knn_swap(float *v, uint32_t *ix, size_t a, size_t b)
{
    float tv = v[a];
    v[a] = v[b];
    v[b] = tv;
    uint32_t ti = ix[a];
    ix[a] = ix[b];
    ix[b] = ti;
}

/* Rearranges v/ix (n pairs) so that position kth holds the pair that would be there if the
 * pairs were sorted best first, and every pair before it is better. kth < n. */
static void knn_select(float *v, uint32_t *ix, size_t n, size_t kth)
{
    size_t lo = 0, hi = n - 1;
    while (hi > lo) {
        size_t mid = lo + (hi - lo) / 2;
        /* median of three moved to hi as the pivot */
        if (knn_better(v[mid], ix[mid], v[lo], ix[lo]))
            knn_swap(v, ix, mid, lo);
        if (knn_better(v[hi], ix[hi], v[lo], ix[lo]))
            knn_swap(v, ix, hi, lo);
        if (knn_better(v[mid], ix[mid], v[hi], ix[hi]))
            knn_swap(v, ix, mid, hi);
        float pv = v[hi];
        uint32_t pi = ix[hi];
        size_t store = lo;
        for (size_t i = lo; i < hi; i++)
            if (knn_better(v[i], ix[i], pv, pi))
                knn_swap(v, ix, i, store++);
        knn_swap(v, ix, store, hi);
        if (store == kth)
            return;
        if (kth < store)
            hi = store - 1;
        else
            lo = store + 1;
    }
}

/* Keeps the k best of cnt > k candidates; returns k and sets *thr to the k-th best. */
static size_t knn_compact(float *v, uint32_t *ix, size_t cnt, size_t k, float *thr)
{
    knn_select(v, ix, cnt, k - 1);
    *thr = v[k - 1];
    return k;
}

/* Scans one row of similarities s (nb) for query qi; bank row numbers start at base. */
static void knn_scan_row(struct knn *kn, size_t qi, const float *s, size_t nb, uint32_t base)
{
    size_t cap = kn->cap, k = kn->k;
    float *cv = kn->cval + qi * cap;
    uint32_t *ci = kn->cidx + qi * cap;
    size_t cnt = kn->ccnt[qi];
    float thr = kn->thr[qi];
    size_t cnt0 = cnt;
    size_t j = 0;
#if defined(__AVX512F__)
    const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    __m512 t = _mm512_set1_ps(thr);
    for (; j + 16 <= nb; j += 16) {
        __m512 x = _mm512_loadu_ps(s + j);
        __mmask16 m = _mm512_cmp_ps_mask(x, t, _CMP_GT_OQ);
        if (!m)
            continue;
        if (cnt + 16 > cap) {
            cnt = knn_compact(cv, ci, cnt, k, &thr);
            t = _mm512_set1_ps(thr);
            m = _mm512_cmp_ps_mask(x, t, _CMP_GT_OQ);
            if (!m)
                continue;
        }
        __m512i id = _mm512_add_epi32(iota, _mm512_set1_epi32((int)(base + (uint32_t)j)));
        _mm512_mask_compressstoreu_ps(cv + cnt, m, x);
        _mm512_mask_compressstoreu_epi32(ci + cnt, m, id);
        cnt += (size_t)__builtin_popcount((unsigned)m);
    }
#endif
    for (; j < nb; j++) {
        if (!(s[j] > thr))
            continue;
        if (cnt == cap) {
            cnt = knn_compact(cv, ci, cnt, k, &thr);
            if (!(s[j] > thr))
                continue;
        }
        cv[cnt] = s[j];
        ci[cnt] = base + (uint32_t)j;
        cnt++;
    }
    if (cnt != cnt0)
        kn->sorted[qi] = 0;
    kn->ccnt[qi] = cnt;
    kn->thr[qi] = thr;
}

struct knn_job {
    struct knn *kn;
    const float *tile; /* (qb, ld) */
    size_t ld, q0, r0, r1, nb;
    uint32_t base;
};

static void *knn_job_run(void *arg)
{
    struct knn_job *j = arg;
    for (size_t r = j->r0; r < j->r1; r++)
        knn_scan_row(j->kn, j->q0 + r, j->tile + r * j->ld, j->nb, j->base);
    return NULL;
}

/* Runs the selection for a tile of qb rows on up to kn->threads threads. */
static void knn_scan_tile(struct knn *kn, size_t q0, size_t qb, size_t nb, uint32_t base)
{
    size_t nt = kn->threads;
    if (nt > qb / 16)
        nt = qb / 16;
    if (nt < 1)
        nt = 1;
    struct knn_job jobs[KNN_MAX_THREADS];
    pthread_t tids[KNN_MAX_THREADS];
    int started[KNN_MAX_THREADS] = { 0 };
    for (size_t t = 0; t < nt; t++) {
        jobs[t] = (struct knn_job){ kn, kn->tile, nb, q0, qb * t / nt, qb * (t + 1) / nt, nb, base };
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
    kn->cval = malloc(nq * kn->cap * sizeof *kn->cval);
    kn->cidx = malloc(nq * kn->cap * sizeof *kn->cidx);
    kn->ccnt = malloc(nq * sizeof *kn->ccnt);
    kn->thr = malloc(nq * sizeof *kn->thr);
    kn->sorted = malloc(nq);
    kn->tile = malloc((size_t)KNN_QB * KNN_NB * sizeof *kn->tile);
    kn->scratch = malloc(kn->cap * sizeof *kn->scratch);
    if (!kn->q || !kn->cval || !kn->cidx || !kn->ccnt || !kn->thr || !kn->sorted || !kn->tile ||
        !kn->scratch)
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
    free(kn->cval);
    free(kn->cidx);
    free(kn->ccnt);
    free(kn->thr);
    free(kn->sorted);
    free(kn->tile);
    free(kn->scratch);
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
    size_t d = kn->dim;
    for (size_t c0 = 0; c0 < count; c0 += KNN_NB) {
        size_t nb = count - c0 < KNN_NB ? count - c0 : KNN_NB;
        const float *b = rows + c0 * d; /* (nb, d) */
        for (size_t q0 = 0; q0 < kn->nq; q0 += KNN_QB) {
            size_t qb = kn->nq - q0 < KNN_QB ? kn->nq - q0 : KNN_QB;
            /* tile (qb, nb) = q (qb, d) . b^T (d, nb) */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)qb, (int)nb, (int)d, 1.0f,
                        kn->q + q0 * d, (int)d, b, (int)d, 0.0f, kn->tile, (int)nb);
            knn_scan_tile(kn, q0, qb, nb, (uint32_t)(start + c0));
        }
    }
    kn->seen += count;
    return 0;
}

static int knn_pair_cmp(const void *a, const void *b)
{
    const struct knn_pair *x = a, *y = b;
    if (knn_better(x->v, x->i, y->v, y->i))
        return -1;
    if (knn_better(y->v, y->i, x->v, x->i))
        return 1;
    return 0;
}

/* Compacts query qi's list to its best min(k, cnt) and sorts it best first; returns the count. */
static size_t knn_finalize(struct knn *kn, size_t qi)
{
    float *cv = kn->cval + qi * kn->cap;
    uint32_t *ci = kn->cidx + qi * kn->cap;
    size_t cnt = kn->ccnt[qi];
    if (kn->sorted[qi])
        return cnt;
    if (cnt > kn->k)
        cnt = knn_compact(cv, ci, cnt, kn->k, &kn->thr[qi]);
    for (size_t j = 0; j < cnt; j++)
        kn->scratch[j] = (struct knn_pair){ cv[j], ci[j] };
    qsort(kn->scratch, cnt, sizeof *kn->scratch, knn_pair_cmp);
    for (size_t j = 0; j < cnt; j++) {
        cv[j] = kn->scratch[j].v;
        ci[j] = kn->scratch[j].i;
    }
    kn->ccnt[qi] = cnt;
    kn->sorted[qi] = 1;
    return cnt;
}

size_t knn_neighbours(struct knn *kn, size_t q, uint32_t *idx, float *sim)
{
    NPID_CHECK(q < kn->nq);
    size_t n = knn_finalize(kn, q);
    if (idx)
        memcpy(idx, kn->cidx + q * kn->cap, n * sizeof *idx);
    if (sim)
        memcpy(sim, kn->cval + q * kn->cap, n * sizeof *sim);
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
        const float *cv = kn->cval + q * kn->cap;
        const uint32_t *ci = kn->cidx + q * kn->cap;
        size_t nt = 0;
        for (size_t j = 0; j < n; j++) {
            if (ci[j] >= nbank || bank_labels[ci[j]] >= nclass)
                goto fail;
            uint32_t c = bank_labels[ci[j]];
            if (!voted[c]) {
                voted[c] = 1;
                touched[nt++] = c;
            }
            /* shifted by the best similarity: same ranking as exp(s / sigma), no overflow */
            score[c] += exp(((double)cv[j] - (double)cv[0]) / sigma);
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
        r->pred_nn1[q] = n ? bank_labels[ci[0]] : UINT32_MAX;
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
