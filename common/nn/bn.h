/* Batch normalisation over CBHW activations, optionally fused with the ReLU that follows or
 * with the residual join of a BasicBlock.
 *
 * x (C, B, HW): channel c holds B*HW floats, a thread's images [b0, b1) one contiguous run
 * of it. Training: batch mean and biased variance normalise; the running statistics move by
 * momentum 0.1 towards the batch mean and the unbiased variance (as torch.nn.BatchNorm2d).
 * Eval: running statistics. Under a team (team.h) the threads exchange per-channel sums at
 * one barrier per call; thread 0 writes the statistics, running averages and the gamma and
 * beta gradients. Sums are taken about the running mean in float lanes and combined in
 * double. */
#ifndef NPID_NN_BN_H
#define NPID_NN_BN_H
#include <stddef.h>

struct nn_ctx;

struct bn {
    int C;
    float *gamma, *beta;      /* parameters (C) */
    float *dgamma, *dbeta;    /* gradients (C) */
    float *rmean, *rvar;      /* buffers (C): running statistics */
    float *mean, *invstd;     /* (C) statistics of the last training forward */
    double *part;             /* (nt, 2, C) per-thread sums; NULL for one thread */
    float *scratch;           /* (nt, BN_SCRATCH, C) per-thread working space (nt >= 1) */
    double *sync;             /* (2C + 2) the sums handed to the bn_set_sync function */
};
#define BN_SCRATCH 12         /* floats per channel: 2 x (2 doubles) sums + 3 floats, aligned */

#define BN_EPS 1e-5f
#define BN_MOMENTUM 0.1f

/* y = relu?(bn(x) [+ res]) for this thread's images; res (same shape) or NULL; relu is
 * implied by res. y may alias res, and may alias x when train == 0. */
void bn_forward_ctx(struct bn *b, const float *x, const float *res, float *y, size_t HW,
                    int train, int relu, const struct nn_ctx *c);

/* Backward of the last training forward for this thread's images. x: that forward's input;
 * y: its output when it ended in a ReLU (dy is then taken as 0 where y <= 0), else NULL.
 * dx may alias dy. */
void bn_backward_ctx(struct bn *b, const float *x, const float *y, const float *dy, float *dx,
                     size_t HW, const struct nn_ctx *c);

/* Synchronised BN over data-parallel processes. sum replaces v (n doubles) by its sum over
 * the processes, in place, the same on every one. While it is set, every training forward and
 * backward of every BN layer calls it once, from thread 0 (the team's caller), with the
 * layer's per-channel sums and its element count, in the same order on every process: the
 * batch statistics and dx are those of all the processes' rows, and the running statistics
 * stay equal on every process that started with equal ones (the sums are shifted by the
 * running mean). The gamma and beta gradients stay this process's: their sum over the
 * processes is the gradient. NULL, the default: statistics per process. Process-wide. */
typedef void (*bn_sync_fn)(double *v, int n, void *arg);
void bn_set_sync(bn_sync_fn sum, void *arg);

/* One-thread forms with x (C, N), N = B*HW. */
void bn_forward(struct bn *b, const float *x, float *y, size_t N, int train, int relu);
/* y = relu(bn(x) + res): the residual join; res may alias y. */
void bn_forward_join(struct bn *b, const float *x, const float *res, float *y, size_t N,
                     int train);
void bn_backward(struct bn *b, const float *x, const float *y, const float *dy, float *dx,
                 size_t N);

#endif
