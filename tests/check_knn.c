/* Unit tests for the weighted kNN (evald/knn.h): against a brute-force double-precision
 * implementation on random data, chunked == unchunked, k > n, ties, bad input. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "evald/knn.h"

/* n random unit vectors (n, d) */
static float *unit_rows(size_t n, size_t d, uint64_t seed)
{
    struct rng r;
    rng_seed(&r, seed);
    float *x = malloc(n * d * sizeof *x);
    ck_assert_ptr_nonnull(x);
    for (size_t i = 0; i < n; i++) {
        double ss = 0;
        for (size_t j = 0; j < d; j++) {
            x[i * d + j] = (float)rng_normal(&r);
            ss += (double)x[i * d + j] * x[i * d + j];
        }
        for (size_t j = 0; j < d; j++)
            x[i * d + j] = (float)(x[i * d + j] / sqrt(ss));
    }
    return x;
}

static uint32_t *rand_labels(size_t n, size_t nclass, uint64_t seed)
{
    struct rng r;
    rng_seed(&r, seed);
    uint32_t *l = malloc(n * sizeof *l);
    ck_assert_ptr_nonnull(l);
    for (size_t i = 0; i < n; i++)
        l[i] = (uint32_t)rng_below(&r, nclass);
    return l;
}

struct bf_pair { double s; uint32_t i; };

static int u32_cmp(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int bf_cmp(const void *a, const void *b)
{
    const struct bf_pair *x = a, *y = b;
    if (x->s != y->s)
        return x->s > y->s ? -1 : 1;
    return x->i < y->i ? -1 : (x->i > y->i);
}

/* Brute force for one query: all similarities in double, full sort, vote in double.
 * Outputs the sorted k neighbours (idx, sims), the top-1 class, and the smallest gap
 * (boundary of the k-th neighbour; margin between the two best classes) so callers can skip
 * near-ties, where float rounding may legitimately decide differently. */
struct bf_out {
    uint32_t idx[256];
    double sim[256];
    size_t n;
    uint32_t top1, nn;
    double kgap;     /* similarity gap between the k-th and the (k+1)-th neighbour */
    double gap01;    /* gap between the first and the second neighbour */
    double cmargin;  /* relative margin between the two best class scores */
};

static void brute_force(const float *q, const float *bank, size_t n, size_t d,
                        const uint32_t *labels, size_t nclass, size_t k, double sigma,
                        struct bf_out *o)
{
    struct bf_pair *p = malloc(n * sizeof *p);
    double *score = calloc(nclass, sizeof *score);
    ck_assert(p && score);
    for (size_t j = 0; j < n; j++) {
        double s = 0;
        for (size_t t = 0; t < d; t++)
            s += (double)q[t] * bank[j * d + t];
        p[j] = (struct bf_pair){ s, (uint32_t)j };
    }
    qsort(p, n, sizeof *p, bf_cmp);
    o->n = k < n ? k : n;
    ck_assert_uint_le(o->n, 256);
    for (size_t j = 0; j < o->n; j++) {
        o->idx[j] = p[j].i;
        o->sim[j] = p[j].s;
        score[labels[p[j].i]] += exp(p[j].s / sigma);
    }
    o->kgap = o->n < n ? p[o->n - 1].s - p[o->n].s : INFINITY;
    o->nn = p[0].i;
    o->gap01 = n > 1 ? p[0].s - p[1].s : INFINITY;
    size_t b1 = 0;
    for (size_t c = 1; c < nclass; c++)
        if (score[c] > score[b1])
            b1 = c;
    double second = -1;
    for (size_t c = 0; c < nclass; c++)
        if (c != b1 && score[c] > second)
            second = score[c];
    o->top1 = (uint32_t)b1;
    o->cmargin = (score[b1] - second) / score[b1];
    free(p);
    free(score);
}

START_TEST(test_vs_brute_force)
{
    /* crosses query tiles (1024) and bank tiles (2048); n not a multiple of 16 */
    const size_t nq = 1100, n = 5003, d = 128, k = 200, nclass = 10;
    const double sigma = 0.1;
    float *q = unit_rows(nq, d, 1), *bank = unit_rows(n, d, 2);
    uint32_t *bl = rand_labels(n, nclass, 3), *ql = rand_labels(nq, nclass, 4);
    struct knn *kn = knn_new(q, nq, d, k);
    ck_assert_ptr_nonnull(kn);
    ck_assert_int_eq(knn_add(kn, bank, 0, n), 0);
    ck_assert_uint_eq(knn_rows_seen(kn), n);
    struct knn_result *r = knn_classify(kn, bl, n, ql, nclass, 0, sigma);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->k, k);
    size_t compared_nb = 0, compared_pred = 0, c1 = 0, cn = 0;
    uint32_t idx[256];
    float sim[256];
    for (size_t i = 0; i < nq; i++) {
        struct bf_out o;
        brute_force(q + i * d, bank, n, d, bl, nclass, k, sigma, &o);
        size_t got = knn_neighbours(kn, i, idx, sim);
        ck_assert_uint_eq(got, k);
        for (size_t j = 0; j < k; j++)
            ck_assert_double_le(fabs(sim[j] - o.sim[j]), 1e-5);
        if (o.kgap > 1e-5) {
            /* the same set of neighbours (order may differ only between near-equal ones) */
            qsort(idx, k, sizeof *idx, u32_cmp);
            qsort(o.idx, k, sizeof *o.idx, u32_cmp);
            for (size_t j = 0; j < k; j++)
                ck_assert_uint_eq(idx[j], o.idx[j]);
            compared_nb++;
        }
        if (o.kgap > 1e-5 && o.cmargin > 1e-4) {
            ck_assert_uint_eq(r->pred[i * 5], o.top1);
            compared_pred++;
        }
        knn_neighbours(kn, i, idx, sim);
        if (o.gap01 > 1e-5)
            ck_assert_uint_eq(idx[0], o.nn);
        c1 += o.top1 == ql[i];
        cn += bl[o.nn] == ql[i];
        ck_assert_uint_eq(r->pred_nn1[i], bl[idx[0]]);
    }
    /* near-ties are rare: nearly every query was compared */
    ck_assert_uint_ge(compared_nb, nq * 9 / 10);
    ck_assert_uint_ge(compared_pred, nq * 9 / 10);
    ck_assert_double_le(fabs(r->top1 - (double)c1 / nq), 0.1 * (nq - compared_pred) / nq + 1e-12);
    ck_assert_double_le(fabs(r->nn1 - (double)cn / nq), 1e-12 + (double)(nq - compared_nb) / nq);
    /* confusion matrix and per-class counts are consistent */
    uint64_t tot = 0, diag = 0;
    for (size_t a = 0; a < nclass; a++) {
        uint64_t row = 0;
        for (size_t b = 0; b < nclass; b++)
            row += r->confusion[a * nclass + b];
        ck_assert_uint_eq(row, r->class_count[a]);
        ck_assert_uint_eq(r->confusion[a * nclass + a], r->class_top1[a]);
        tot += row;
        diag += r->class_top1[a];
    }
    ck_assert_uint_eq(tot, nq);
    ck_assert_double_eq_tol(r->top1, (double)diag / nq, 1e-12);
    ck_assert_double_ge(r->top5, r->top1);
    knn_result_destroy(&r);
    ck_assert_ptr_null(r);
    knn_destroy(&kn);
    ck_assert_ptr_null(kn);
    free(q), free(bank), free(bl), free(ql);
}
END_TEST

START_TEST(test_chunked_equals_unchunked)
{
    const size_t nq = 300, n = 6000, d = 64, k = 50, nclass = 7;
    float *q = unit_rows(nq, d, 11), *bank = unit_rows(n, d, 12);
    uint32_t *bl = rand_labels(n, nclass, 13), *ql = rand_labels(nq, nclass, 14);
    struct knn *a = knn_new(q, nq, d, k), *b = knn_new(q, nq, d, k);
    ck_assert(a && b);
    ck_assert_int_eq(knn_add(a, bank, 0, n), 0);
    /* uneven chunks, out of the tile sizes' rhythm, one thread for b */
    knn_set_threads(b, 1);
    const size_t cuts[] = { 0, 1, 8, 17, 500, 2600, 2601, 4999, n };
    for (size_t c = 0; c + 1 < sizeof cuts / sizeof cuts[0]; c++)
        ck_assert_int_eq(knn_add(b, bank + cuts[c] * d, cuts[c], cuts[c + 1] - cuts[c]), 0);
    ck_assert_uint_eq(knn_rows_seen(b), n);
    uint32_t ia[64], ib[64];
    float sa[64], sb[64];
    for (size_t i = 0; i < nq; i++) {
        ck_assert_uint_eq(knn_neighbours(a, i, ia, sa), k);
        ck_assert_uint_eq(knn_neighbours(b, i, ib, sb), k);
        for (size_t j = 0; j < k; j++) {
            ck_assert_uint_eq(ia[j], ib[j]);
            ck_assert_float_eq_tol(sa[j], sb[j], 1e-6f);
        }
    }
    struct knn_result *ra = knn_classify(a, bl, n, ql, nclass, 0, 0.07);
    struct knn_result *rb = knn_classify(b, bl, n, ql, nclass, 0, 0.07);
    ck_assert(ra && rb);
    ck_assert_mem_eq(ra->pred, rb->pred, nq * 5 * sizeof *ra->pred);
    ck_assert_double_eq(ra->top1, rb->top1);
    /* neighbours can be read again after more rows arrive: reset and re-add in reverse */
    knn_reset(b);
    ck_assert_uint_eq(knn_rows_seen(b), 0);
    ck_assert_uint_eq(knn_neighbours(b, 0, ib, sb), 0);
    for (size_t c = sizeof cuts / sizeof cuts[0] - 1; c > 0; c--)
        ck_assert_int_eq(knn_add(b, bank + cuts[c - 1] * d, cuts[c - 1], cuts[c] - cuts[c - 1]), 0);
    ck_assert_uint_eq(knn_neighbours(b, 5, ib, sb), k);
    knn_neighbours(a, 5, ia, sa);
    for (size_t j = 0; j < k; j++)
        ck_assert_uint_eq(ia[j], ib[j]);
    knn_result_destroy(&ra);
    knn_result_destroy(&rb);
    knn_destroy(&a);
    knn_destroy(&b);
    free(q), free(bank), free(bl), free(ql);
}
END_TEST

START_TEST(test_k_larger_than_bank)
{
    const size_t d = 16, n = 20;
    float *q = unit_rows(3, d, 21), *bank = unit_rows(n, d, 22);
    uint32_t bl[20], ql[3] = { 0, 1, 2 };
    for (size_t i = 0; i < n; i++)
        bl[i] = (uint32_t)(i % 3);
    struct knn *kn = knn_new(q, 3, d, 50);
    ck_assert_ptr_nonnull(kn);
    /* no rows yet: no neighbours, classes fill the top-5 in order */
    struct knn_result *r = knn_classify(kn, bl, n, ql, 3, 0, 0.1);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->k, 0);
    ck_assert_uint_eq(r->pred[0], 0);
    ck_assert_uint_eq(r->pred[2], 2);
    ck_assert_uint_eq(r->pred[3], UINT32_MAX);
    ck_assert_uint_eq(r->pred_nn1[0], UINT32_MAX);
    ck_assert_double_eq(r->top5, 1.0);
    knn_result_destroy(&r);
    ck_assert_int_eq(knn_add(kn, bank, 0, n), 0);
    uint32_t idx[50];
    float sim[50];
    ck_assert_uint_eq(knn_neighbours(kn, 1, idx, sim), n);
    int seen[20] = { 0 };
    for (size_t j = 0; j < n; j++) {
        seen[idx[j]]++;
        if (j)
            ck_assert_float_ge(sim[j - 1], sim[j]);
    }
    for (size_t j = 0; j < n; j++)
        ck_assert_int_eq(seen[j], 1);
    r = knn_classify(kn, bl, n, ql, 3, 0, 0.1);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->k, n);
    knn_result_destroy(&r);
    knn_destroy(&kn);
    free(q), free(bank);
}
END_TEST

/* A hand-worked example: 2-d vectors, the vote and the top-5 order are known exactly. */
START_TEST(test_hand_example)
{
    const float q[2] = { 1, 0 };
    const float bank[5 * 2] = {
        0.6f, 0.8f,  /* s = 0.6 class 1 */
        1, 0,        /* s = 1.0 class 0 */
        0.8f, 0.6f,  /* s = 0.8 class 1 */
        0, 1,        /* s = 0   class 2 */
        -1, 0,       /* s = -1  class 3 */
    };
    const uint32_t bl[5] = { 1, 0, 1, 2, 3 };
    const uint32_t ql[1] = { 1 };
    struct knn *kn = knn_new(q, 1, 2, 3);
    ck_assert_ptr_nonnull(kn);
    ck_assert_int_eq(knn_add(kn, bank, 0, 5), 0);
    /* k = 3: class 0 has e^10, class 1 e^6 + e^8 < e^10 at sigma 1/10 */
    struct knn_result *r = knn_classify(kn, bl, 5, ql, 6, 0, 0.1);
    ck_assert_ptr_nonnull(r);
    const uint32_t want[5] = { 0, 1, 2, 3, 4 };
    ck_assert_mem_eq(r->pred, want, sizeof want);
    ck_assert_double_eq(r->top1, 0);
    ck_assert_double_eq(r->top5, 1);
    ck_assert_uint_eq(r->confusion[1 * 6 + 0], 1);
    knn_result_destroy(&r);
    /* sigma 1: e^1 < e^0.6 + e^0.8, class 1 wins; k = 1 is plain 1-NN */
    r = knn_classify(kn, bl, 5, ql, 6, 0, 1.0);
    ck_assert_uint_eq(r->pred[0], 1);
    ck_assert_uint_eq(r->pred[1], 0);
    ck_assert_double_eq(r->top1, 1);
    ck_assert_double_eq(knn_result_class_acc(r, 1), 1);
    ck_assert_double_eq(knn_result_class_acc(r, 0), 0);
    knn_result_destroy(&r);
    r = knn_classify(kn, bl, 5, ql, 6, 1, 1.0);
    ck_assert_uint_eq(r->k, 1);
    ck_assert_uint_eq(r->pred[0], 0);
    ck_assert_uint_eq(r->pred_nn1[0], 0);
    knn_result_destroy(&r);
    knn_destroy(&kn);
}
END_TEST

START_TEST(test_ties_and_nan_rows)
{
    const size_t d = 4, n = 40;
    float q[4] = { 0.5f, 0.5f, 0.5f, 0.5f };
    float *bank = calloc(n * d, sizeof *bank);
    for (size_t i = 0; i < n; i++)
        bank[i * d] = 1; /* every row has similarity 0.5 */
    bank[7 * d + 1] = NAN;
    bank[9 * d] = INFINITY;
    struct knn *kn = knn_new(q, 1, d, 5);
    ck_assert_ptr_nonnull(kn);
    ck_assert_int_eq(knn_add(kn, bank, 0, n), 0);
    uint32_t idx[5];
    ck_assert_uint_eq(knn_neighbours(kn, 0, idx, NULL), 5);
    /* the infinite row first, then the lowest row numbers; the NaN row never */
    const uint32_t want[5] = { 9, 0, 1, 2, 3 };
    ck_assert_mem_eq(idx, want, sizeof want);
    knn_destroy(&kn);
    free(bank);
}
END_TEST

START_TEST(test_clusters_accuracy)
{
    /* well separated classes: kNN must be near perfect, confusion mostly diagonal */
    const size_t d = 32, nclass = 8, n = 4000, nq = 400;
    float *centres = unit_rows(nclass, d, 31);
    struct rng g;
    rng_seed(&g, 32);
    float *bank = malloc(n * d * sizeof *bank), *q = malloc(nq * d * sizeof *q);
    uint32_t *bl = malloc(n * sizeof *bl), *ql = malloc(nq * sizeof *ql);
    for (size_t i = 0; i < n + nq; i++) {
        float *row = i < n ? bank + i * d : q + (i - n) * d;
        uint32_t c = (uint32_t)rng_below(&g, nclass);
        if (i < n)
            bl[i] = c;
        else
            ql[i - n] = c;
        double ss = 0;
        for (size_t t = 0; t < d; t++) {
            row[t] = centres[c * d + t] + 0.15f * (float)rng_normal(&g);
            ss += (double)row[t] * row[t];
        }
        for (size_t t = 0; t < d; t++)
            row[t] = (float)(row[t] / sqrt(ss));
    }
    struct knn *kn = knn_new(q, nq, d, 200);
    ck_assert_int_eq(knn_add(kn, bank, 0, n), 0);
    struct knn_result *r = knn_classify(kn, bl, n, ql, nclass, 0, 0.1);
    ck_assert_ptr_nonnull(r);
    ck_assert_double_ge(r->top1, 0.98);
    ck_assert_double_ge(r->nn1, 0.95);
    ck_assert_double_eq(r->top5, 1.0);
    knn_result_destroy(&r);
    knn_destroy(&kn);
    free(centres), free(bank), free(q), free(bl), free(ql);
}
END_TEST

START_TEST(test_bad_input)
{
    float q[4] = { 1, 0, 0, 0 }, bank[8] = { 1, 0, 0, 0, 0, 1, 0, 0 };
    errno = 0;
    ck_assert_ptr_null(knn_new(q, 0, 4, 1));
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_ptr_null(knn_new(q, 1, 4, 0));
    q[2] = NAN;
    errno = 0;
    ck_assert_ptr_null(knn_new(q, 1, 4, 1));
    ck_assert_int_eq(errno, EINVAL);
    q[2] = 0;
    struct knn *kn = knn_new(q, 1, 4, 2);
    ck_assert_ptr_nonnull(kn);
    ck_assert_int_eq(knn_add(kn, bank, 0, 0), 0);
    ck_assert_int_eq(knn_add(kn, bank, UINT32_MAX, 2), -1);
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_int_eq(knn_add(kn, bank, 10, 2), 0);
    uint32_t bl[12] = { 0 }, ql[1] = { 0 };
    /* bank_labels too short for row 11 */
    errno = 0;
    ck_assert_ptr_null(knn_classify(kn, bl, 11, ql, 2, 0, 0.1));
    ck_assert_int_eq(errno, EINVAL);
    bl[11] = 5; /* label out of range */
    ck_assert_ptr_null(knn_classify(kn, bl, 12, ql, 2, 0, 0.1));
    bl[11] = 1;
    ck_assert_ptr_null(knn_classify(kn, bl, 12, ql, 2, 0, 0.0));
    ck_assert_ptr_null(knn_classify(kn, bl, 12, ql, 2, 0, NAN));
    ql[0] = 2;
    ck_assert_ptr_null(knn_classify(kn, bl, 12, ql, 2, 0, 0.1));
    ql[0] = 0;
    struct knn_result *r = knn_classify(kn, bl, 12, ql, 2, 0, 0.1);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->pred[0], 0);
    knn_result_destroy(&r);
    knn_result_destroy(&r); /* accepts NULL */
    knn_destroy(&kn);
    knn_destroy(&kn);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("knn");
    TCase *tc = tcase_create("knn");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_vs_brute_force);
    tcase_add_test(tc, test_chunked_equals_unchunked);
    tcase_add_test(tc, test_k_larger_than_bank);
    tcase_add_test(tc, test_hand_example);
    tcase_add_test(tc, test_ties_and_nan_rows);
    tcase_add_test(tc, test_clusters_accuracy);
    tcase_add_test(tc, test_bad_input);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
