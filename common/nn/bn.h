/* Batch normalisation over CBHW activations, optionally fused with the ReLU that follows.
 *
 * x (C, N) with N = B*H*W floats per channel, contiguous. Training: batch mean and biased
 * variance normalise; the running statistics move by momentum 0.1 towards the batch mean and
 * the unbiased variance (as torch.nn.BatchNorm2d). Eval: running statistics. */
#ifndef NPID_NN_BN_H
#define NPID_NN_BN_H
#include <stddef.h>

struct bn {
    int C;
    float *gamma, *beta;      /* parameters (C) */
    float *dgamma, *dbeta;    /* gradients (C) */
    float *rmean, *rvar;      /* buffers (C): running statistics */
    float *mean, *invstd;     /* (C) statistics of the last training forward */
};

#define BN_EPS 1e-5f
#define BN_MOMENTUM 0.1f

/* y = [relu](gamma * (x - mean) * invstd + beta); y may alias x only when train == 0. */
void bn_forward(struct bn *b, const float *x, float *y, size_t N, int train, int relu);

/* y = relu(bn(x) + res): the residual join; res may alias y. */
void bn_forward_join(struct bn *b, const float *x, const float *res, float *y, size_t N,
                     int train);

/* Backward of the last training forward. x: that forward's input; y: its output when it
 * was fused with relu (dy is then masked by y > 0), else NULL. Writes dgamma, dbeta
 * (overwrite) and dx (C, N); dx may alias dy. */
void bn_backward(struct bn *b, const float *x, const float *y, const float *dy, float *dx,
                 size_t N);

#endif
