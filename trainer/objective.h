/* The training objectives on L2-normalised features: NCE with a shared or per-element draw
 * of negatives, InfoNCE on the same shared draw, the full non-parametric softmax, and the
 * optional proximal term.
 *
 * Every loss function returns the loss of the batch (a mean over the B elements, negative
 * NCE terms summed per element, as ../shared/spec/algorithm.md and the reference compute it)
 * and writes dL/df (B, d) into the caller's df buffer (overwritten). No gradient flows into
 * bank rows or Z. All scratch is allocated by objective_new for max_batch and m; the loss
 * functions allocate nothing.
 *
 * NCE (c = m/n, eps = 1e-7, P = exp(s/tau)/Z):
 *   loss = -( sum_i log(P_i0/(P_i0 + c + eps)) + sum_i sum_j log(c/(P_ij + c + eps)) ) / B
 * Z: the first NCE call computes the estimate n * mean(exp(s/tau)) over all B x (m+1)
 * scores (positives included) and, unless a value was set with objective_set_z, adopts it.
 * OBJ_Z_FROZEN then keeps Z (the reference); OBJ_Z_EMA moves Z by
 * Z = mom*Z + (1-mom)*estimate after each later call (the estimate of that call's scores).
 * The Z used by a call is the one before its own EMA update. Z is kept in double.
 *
 * InfoNCE (s = f.v / tau, positive v = pos_i, negatives v = neg_j; no Z):
 *   loss = mean_i -log( exp(s_i0) / (exp(s_i0) + sum_j exp(s_ij)) )   (log-sum-exp)
 * With B = 1, pos the bank row idx_0 and neg every other bank row, it is the full softmax.
 * Two views (objective_infonce_views): rows i and B + i are two augmentations of image i; each
 * row's positive is the other view's feature (gradients flow into both), its negatives are the
 * shared m rows and the other 2B - 2 rows of the batch (the current features of the other
 * images, as SimCLR's); the loss is the mean of the 2B terms.
 *
 * Proximal term (prox_lambda > 0): loss += lambda * mean_i ||f_i - pos_i||^2 and
 * df_i += 2 lambda (f_i - pos_i) / B. For the softmax, pos_i is bank row idx_i. */
#ifndef NPID_TRAINER_OBJECTIVE_H
#define NPID_TRAINER_OBJECTIVE_H
#include <stddef.h>
#include <stdint.h>

enum objective_z_mode { OBJ_Z_FROZEN = 0, OBJ_Z_EMA = 1 };

struct objective_config {
    int max_batch;        /* largest B of any call */
    int dim;              /* feature dimension d */
    size_t m;             /* negatives per step (NCE); 0 for softmax-only use */
    size_t n;             /* bank rows */
    double tau;           /* temperature */
    int z_mode;           /* enum objective_z_mode */
    double z_momentum;    /* EMA momentum (0.99) */
    double prox_lambda;   /* 0: off */
    int softmax;          /* nonzero: also size scratch for objective_softmax */
    struct nn_team *team; /* threads for objective_softmax (NULL: the caller's thread only);
                             it must outlive the objective and be idle during its calls */
};

struct objective;
struct nn_team;

/* NULL on bad config or out of memory (reason logged). */
struct objective *objective_new(const struct objective_config *cfg);
void objective_destroy(struct objective **o);

/* NCE, one shared draw: f (B, d), pos (B, d) the bank rows of the batch's own indices read
 * before this step's update, neg (m, d) the shared negatives. Scores are one B x m sgemm. */
double objective_nce_shared(struct objective *o, const float *f, const float *pos,
                            const float *neg, int B, float *df);
/* NCE, per-element draw: neg (B, m, d), element i scored against its own m rows. */
double objective_nce_per_element(struct objective *o, const float *f, const float *pos,
                                 const float *neg, int B, float *df);
/* InfoNCE, one shared draw: f, pos, neg as for objective_nce_shared (cfg.m >= 1 negatives);
 * cross entropy of the positive against itself and the m negatives. Leaves Z alone. */
double objective_infonce_shared(struct objective *o, const float *f, const float *pos,
                                const float *neg, int B, float *df);
/* InfoNCE on two views: f (2B, d) holds view 0 of the B images, then view 1; neg (m, d);
 * df (2B, d). Needs cfg.max_batch >= 2B. No proximal term (cfg.prox_lambda is not used). */
double objective_infonce_views(struct objective *o, const float *f, const float *neg, int B,
                               float *df);
/* The bank-update feature of two views: out_i = normalize(f_i + f_{B+i}) for f (2B, d),
 * out (B, d); out may be f itself (view 0's rows are overwritten). A zero sum gives zeros. */
void objective_views_mean(const float *f, int B, int dim, float *out);
/* Full non-parametric softmax: logits = f . bank^T / tau over all n rows (bank (n, d)),
 * cross entropy with target idx_i (< n), mean over the batch. Needs cfg.softmax. Runs on
 * cfg.team; results are deterministic for a given team size, and sizes agree to float
 * rounding. */
double objective_softmax(struct objective *o, const float *f, const float *bank,
                         const uint32_t *idx, int B, float *df);

/* Current Z (0 before the first NCE call unless set). */
double objective_z(const struct objective *o);
/* The Z estimate n * mean(exp(s/tau)) of the last NCE call (0 before any). */
double objective_z_estimate(const struct objective *o);
/* Sets Z (from a checkpoint or --nce-z); z > 0. Later calls use it as if estimated. */
void objective_set_z(struct objective *o, double z);

#endif
