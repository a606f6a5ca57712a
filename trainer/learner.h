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
 * replicas have them; the cost is one more forward per step. */
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
    float *feat;              /* (rows, dim) this step's features */
    float *df;                /* (rows, dim) dL/df */
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
/* Forward pass over rows images of uint8 CHW pixels (views * count: view 0, then view 1). */
void learner_forward(struct learner *l, const uint8_t *pixels, uint32_t rows);
/* The loss of the count images idx after learner_forward, against pos (count, dim) and neg
 * (m, dim), or the mirror (n, dim) in softmax mode; dL/df into learner's df. *finite is 0
 * when the loss or a gradient is not finite (no update may follow). */
double learner_loss(struct learner *l, const float *pos, const float *neg, const float *mirror,
                    const uint32_t *idx, uint32_t count, int *finite);
/* The gradients from df, then one SGD step with learning rate lr. */
void learner_backward(struct learner *l);
void learner_sgd(struct learner *l, double lr);
#endif
