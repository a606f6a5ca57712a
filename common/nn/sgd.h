/* SGD with momentum and weight decay exactly as torch.optim.SGD (dampening 0, no Nesterov):
 *     d = g + wd * w;  buf = mu * buf + d;  w -= lr * buf
 * The momentum buffer starts at zero, so the first step gives buf = d, as torch does.
 * Weight decay applies to every parameter, BN affine and biases included, as the reference
 * does (torch.optim.SGD over model.parameters()). The momentum buffer is one block with the
 * parameter block's layout; checkpoints store it.
 *
 * Learning-rate schedules: lr_at(schedule, epoch) with a fractional epoch
 * (epoch + step/steps_per_epoch):
 *   LR_STEP    base * gamma^(number of milestones <= epoch)   (reference: 0.1 at 120, 160)
 *   LR_COSINE  min + (base - min) * (1 + cos(pi * t)) / 2, t = epoch / epochs in [0, 1]
 * and in both a linear warm-up from 0 to the schedule's value over warmup epochs. */
#ifndef NPID_NN_SGD_H
#define NPID_NN_SGD_H
#include <stddef.h>

struct sgd {
    size_t n;
    float momentum, wd;
    float *buf;   /* (n) momentum buffer */
};

/* NULL on out of memory. */
struct sgd *sgd_new(size_t n, float momentum, float weight_decay);
void sgd_destroy(struct sgd **s);
/* One step on w (n) with gradients g (n). */
void sgd_step(struct sgd *s, float *w, const float *g, float lr);

enum lr_kind { LR_STEP = 0, LR_COSINE = 1 };
#define LR_MAX_MILESTONES 16

struct lr_schedule {
    int kind;                 /* enum lr_kind */
    double base;              /* peak learning rate */
    double epochs;            /* cosine: length of the schedule */
    double min;               /* cosine: final value */
    double warmup;            /* epochs of linear warm-up (0: none) */
    double gamma;             /* step: factor per milestone (0.1) */
    int n_milestones;
    double milestones[LR_MAX_MILESTONES];
};

double lr_at(const struct lr_schedule *s, double epoch);
/* Parses "120,160" into s->milestones; 0 or -1 on a bad list (too many, not increasing,
 * not numbers). */
int lr_parse_milestones(struct lr_schedule *s, const char *text);

#endif
