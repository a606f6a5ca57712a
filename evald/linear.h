/* Linear evaluation: multinomial logistic regression on frozen features.
 *
 * The model is standardised: z = (x - mean) / std with mean and std of each feature over the
 * training rows (std below 1e-12 is taken as 1), logits l = W z + b. The objective is
 *   f(W, b) = (1/n) sum_i [logsumexp(l_i) - l_i[y_i]] + (lambda / 2) ||W||^2
 * (b not penalised): scikit-learn's LogisticRegression(multi_class="multinomial") on the same
 * standardised features with C = 1 / (lambda n). It is strictly convex for lambda > 0 and is
 * minimised with L-BFGS (10 pairs, Armijo backtracking) until the largest gradient entry is
 * below tol or max_iter iterations. Each evaluation is one blocked pass over the rows on
 * OpenBLAS's thread count (blas_threads(), evald's --threads), logits in double, weight
 * gradient sums in float (linear.c); its result does not depend on the thread count. The
 * optimiser state is double. */
#ifndef NPID_EVALD_LINEAR_H
#define NPID_EVALD_LINEAR_H
#include <stddef.h>
#include <stdint.h>

struct linear_model {
    int d, C;
    float *mean, *inv_std; /* (d) */
    double *w;             /* (C, d) then b (C) */
};

struct linear_fit_info {
    int iters, evals, converged;
    double loss, grad_max, seconds;
};

/* Fits on X (n, d) with labels y in 0..C-1 (C >= 2). m->w is the starting point when
 * m->d == d and m->C == C (a warm start, e.g. the previous lambda of a path), else zeros.
 * The standardisation is recomputed from X. Returns 0, or -1 with errno (ENOMEM; EINVAL
 * for n == 0, C < 2, a label >= C or a non-finite feature; EINTR when sig_stop is set between
 * iterations, common/sig.h). */
int linear_fit(struct linear_model *m, const float *X, const uint32_t *y, size_t n, int d, int C,
               double lambda, int max_iter, double tol, struct linear_fit_info *info);

/* Logits of X (n, d) into S (n, C). */
void linear_scores(const struct linear_model *m, const float *X, size_t n, float *S);

/* Accuracy of the model on (X, y): top-1 and top-k (k = min(5, C)) fractions, and per class
 * (when per_class is not NULL, C entries: the top-1 fraction of that class's rows, NaN for a
 * class with none). 0, or -1 with errno ENOMEM. */
int linear_accuracy(const struct linear_model *m, const float *X, const uint32_t *y, size_t n,
                    double *top1, double *top5, double *per_class);

void linear_model_free(struct linear_model *m);

/* The objective f and its gradient g (C * d + C entries, laid out as m->w) at w, on rows Z
 * (n, d) that are already standardised (what linear_fit minimises, by the same code; for
 * gradient checks). Returns f, or NaN with errno ENOMEM. */
double linear_objective(const float *Z, const uint32_t *y, size_t n, int d, int C, double lambda,
                        const double *w, double *g);

/* The lambda grid searched by linear_select, strongest first: 1e-1 down to 1e-8 in half
 * decades (15 values). */
#define LINEAR_GRID 15
double linear_grid(int i);

struct linear_selection {
    double lambda;                 /* chosen */
    double val_top1[LINEAR_GRID];  /* held-out top-1 per grid value */
    size_t n_fit, n_val;
};

/* Chooses lambda on a held-out part of the training rows (every row i with
 * hash(seed, i) % 5 == 0, about 20 %; never the test rows): fits the grid from the strongest
 * lambda down, each warm-started from the previous, and keeps the one with the best held-out
 * top-1 (ties: the stronger). Then fits m on all n rows with it. Returns 0, or -1 with errno. */
int linear_select(struct linear_model *m, const float *X, const uint32_t *y, size_t n, int d,
                  int C, uint64_t seed, int max_iter, double tol, struct linear_selection *sel,
                  struct linear_fit_info *info);

#endif
