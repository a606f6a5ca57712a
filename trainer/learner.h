/* What a training step computes: the network, its input normalisation, the objective and
 * SGD with its schedule, and the step's buffers.
 *
 * A step is learner_forward (normalised pixels through the network; the features copied to
 * learner_feat), learner_loss (the configured objective against the bank's rows: the batch's
 * own rows and the shared negatives, or the full mirror; dL/df), learner_backward, then
 * learner_sgd (one step at the schedule's rate).
 *
 * Memory: learner_init estimates the step's memory (net_memory and the step's buffers) and
 * logs it; when the step's rows need more than the budget (--memory) or --micro-batch asks
 * for fewer, the network runs forwards of micro rows. learner_forward then computes the
 * features chunk by chunk (the BN running statistics restored afterwards); learner_backward
 * runs each chunk's forward again and its backward with that chunk's rows of dL/df, summing
 * the gradients. The loss still sees the whole step (in-batch negatives included), so the
 * gradient is that of the full step's loss, with BN statistics per chunk as data-parallel
 * replicas have them; the cost is one more forward per step.
 *
 * Data parallel (trainer/dp.h, cfg->batch a multiple of the ranks): each rank runs the network
 * on its share of the step's images only (dp_slice of the step's count), learner_gather puts
 * every rank's features together in the step's layout (view 0 of all images, then view 1), the
 * loss is the whole step's on every rank (the same numbers everywhere), learner_backward
 * propagates the rank's own rows of dL/df and sums the gradients over the ranks, so every rank
 * takes the same SGD step. BN statistics are per rank (as with micro-batches). */
#ifndef NPID_TRAINER_LEARNER_H
#define NPID_TRAINER_LEARNER_H
#include <stddef.h>
#include <stdint.h>
#include "common/nn/net.h"
#include "common/nn/sgd.h"
#include "common/pixnorm.h"
#include "trainer/config.h"
#include "trainer/objective.h"

struct learner {
    struct net *net;
    struct sgd *opt;
    struct objective *obj;
    struct lr_schedule sched;
    struct pixnorm norm;      /* the input normalisation of the augmentation preset */
    int softmax;              /* the full softmax over a mirror of the bank (--nce-k 0) */
    int infonce;              /* shared negatives scored with InfoNCE (--loss infonce) */
    int views;                /* augmented views per image (2 only with infonce) */
    int size, dim;
    float *x;                 /* (rows, 3, size, size) normalised input */
    float *feat;              /* (rows, dim) this step's features, every rank's */
    float *df;                /* (rows, dim) dL/df */
    float *feat_loc, *df_loc; /* this rank's rows of them (feat and df with one rank) */
    uint32_t total, lo, count; /* the step's images; this rank's share [lo, lo + count) */
    int micro;                /* rows per forward; fewer than a step's: accumulation */
    uint32_t rows;            /* rows of the last learner_forward */
    float *bn_saved;          /* BN running statistics kept over the features' forwards */
    float *grad_acc;          /* the accumulated gradients */
};

/* For n training images with cfg's network, objective and schedule (cfg's size and stem
 * already resolved, trainer_cfg_from_data). -1 on failure (logged); learner_deinit frees
 * what was built either way. */
int learner_init(struct learner *l, const struct trainer_cfg *cfg, size_t n);
void learner_deinit(struct learner *l);
/* Forward pass over this rank's rows images of uint8 CHW pixels (views * count: view 0, then
 * view 1), into feat_loc. */
void learner_forward(struct learner *l, const uint8_t *pixels, uint32_t rows);
/* After learner_forward on every rank: the features of the step's total images (this rank's
 * are its dp_slice of total) into feat. A no-op with one rank. */
void learner_gather(struct learner *l, uint32_t total);
/* The loss of the count images idx after learner_forward, against pos (count, dim) and neg
 * (m, dim), or the mirror (n, dim) in softmax mode; dL/df into learner's df. *finite is 0
 * when the loss or a gradient is not finite (no update may follow). */
double learner_loss(struct learner *l, const float *pos, const float *neg, const float *mirror,
                    const uint32_t *idx, uint32_t count, int *finite);
/* The gradients from this rank's rows of df, summed over the ranks; then one SGD step with
 * learning rate lr (the same on every rank). */
void learner_backward(struct learner *l);
void learner_sgd(struct learner *l, double lr);
#endif
