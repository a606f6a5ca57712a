/* Weighted k-nearest-neighbour classification against a memory bank streamed in chunks
 * (Wu et al. 2018; ../shared/spec/algorithm.md, "Weighted kNN evaluation").
 *
 * For every query q (an L2-normalised feature, one row of a (nq, dim) matrix) the k bank rows
 * with the largest similarity s_j = q . v_j are kept; each votes for its class with weight
 * exp(s_j / sigma); the class with the largest summed weight is the top-1 prediction, the five
 * largest are the top-5. The first neighbour alone gives the 1-NN prediction.
 *
 * The bank never needs to be in memory at once: knn_add takes rows (count, dim) with their
 * global row numbers as they arrive (e.g. from bankd `get`), computes similarities with sgemm
 * in tiles (query block x bank rows) and keeps a bounded candidate list per query. Memory is
 * O(nq * (dim + 2k)) plus one tile, independent of the bank size.
 *
 * Ties: between neighbours of equal similarity the lower row number wins when chunks arrive
 * in ascending row order (otherwise the earlier arrival); between classes of equal summed
 * weight the lower class index wins. Classes with no vote fill the top-5 in ascending order
 * (their score is 0), so the top-5 always holds min(5, nclass) distinct classes.
 *
 * Threads: knn_add runs the selection on up to knn_set_threads() threads (default: online
 * CPUs, at most 8); sgemm uses OpenBLAS's own threads. A struct knn is not thread-safe. */
#ifndef NPID_EVALD_KNN_H
#define NPID_EVALD_KNN_H
#include <stddef.h>
#include <stdint.h>

struct knn;

/* Copies queries (nq, dim). k >= 1 is the number of neighbours kept per query. Returns NULL
 * with errno EINVAL on nq == 0, dim == 0, k == 0 or a non-finite query value, ENOMEM when
 * memory runs out. */
struct knn *knn_new(const float *queries, size_t nq, size_t dim, size_t k);
void knn_destroy(struct knn **kn);

/* Forgets every bank row seen so far (same queries, same k). */
void knn_reset(struct knn *kn);

/* Number of selection threads for later knn_add calls (0 = default). */
void knn_set_threads(struct knn *kn, size_t threads);

/* Adds bank rows (count, dim) whose global row numbers are start .. start+count-1 (each row
 * at most once over all calls; row numbers < 2^32). Rows with non-finite values never become
 * neighbours. Returns 0, or -1 with errno EINVAL (start + count >= 2^32) / ENOMEM. */
int knn_add(struct knn *kn, const float *rows, size_t start, size_t count);

/* Bank rows added so far. */
uint64_t knn_rows_seen(const struct knn *kn);

/* The neighbours of query q, best first: writes up to min(k, rows seen) row numbers and
 * similarities (either pointer may be NULL) and returns how many. idx/sim hold k entries. */
size_t knn_neighbours(struct knn *kn, size_t q, uint32_t *idx, float *sim);

/* Classification results. Accuracies are fractions in [0, 1] over the nq queries. */
struct knn_result {
    size_t nq, nclass, k;   /* k actually used (min(k asked, rows seen)) */
    double sigma;
    double top1, top5, nn1;
    uint32_t *pred;         /* (nq, 5) top-5 classes per query, best first; UINT32_MAX past nclass */
    uint32_t *pred_nn1;     /* (nq) class of the nearest neighbour */
    uint64_t *class_count;  /* (nclass) queries per true class */
    uint64_t *class_top1;   /* (nclass) correct top-1 per true class */
    uint64_t *confusion;    /* (nclass, nclass) row = true class, column = top-1 prediction */
};

/* Votes with the k (<= the k of knn_new; 0 = all kept) nearest neighbours, weights
 * exp(s / sigma). bank_labels (nbank) gives the class of every bank row number that was added
 * (nbank > the largest row number added); query_labels (nq) the true classes. Returns a new
 * result or NULL with errno EINVAL (sigma <= 0, a label >= nclass, nbank too small, nclass 0)
 * or ENOMEM. Free with knn_result_destroy. */
struct knn_result *knn_classify(struct knn *kn, const uint32_t *bank_labels, size_t nbank,
                                const uint32_t *query_labels, size_t nclass, size_t k,
                                double sigma);
void knn_result_destroy(struct knn_result **r);

/* Per-class top-1 accuracy of class c (0 when the class has no queries). */
double knn_result_class_acc(const struct knn_result *r, size_t c);

#endif
