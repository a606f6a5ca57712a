/* The ResNet BasicBlock: y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), conv1 3x3
 * stride s, conv2 3x3 stride 1, shortcut = bn(1x1 conv stride s) when the shape changes,
 * else the identity. Activations are CBHW (see tensor.h), sized for max_batch. */
#ifndef NPID_NN_BLOCK_H
#define NPID_NN_BLOCK_H
#include <stddef.h>

#include "common/nn/bn.h"
#include "common/nn/conv.h"
#include "common/nn/team.h"
#include "common/nn/tensor.h"
#include "common/rng.h"

struct block {
    int cin, cout, stride, H, W, Ho, Wo, max_batch, has_sc;
    struct conv c1, c2, cs;
    struct bn b1, b2, bs;
    /* saved activations, (cout, B, Ho, Wo) each */
    float *z1, *a1, *z2, *zs, *y;
};

/* Lays the block out in L (a counting pass when L's bases are NULL). */
void block_init(struct block *k, int cin, int cout, int stride, int H, int W, int max_batch,
                struct nn_layout *L);
/* He-normal conv weights, BN gamma 1 beta 0, running mean 0 var 1. */
void block_init_weights(struct block *k, struct rng *r, int init);
/* Largest activation (floats) of the block at max_batch, and the scratch its convs need. */
size_t block_act_floats(const struct block *k);
size_t block_scratch_min(const struct block *k);
/* This thread's images: x (cin, B, H, W) -> k->y (cout, B, Ho, Wo). */
void block_forward(struct block *k, const float *x, int train, const struct nn_ctx *c);
/* Backward of the last training forward on x, this thread's images. dy (cout, B, Ho, Wo) is
 * only read. t1, t2: block_act_floats each. dx (cin, B, H, W) is overwritten. Parameter
 * gradients go to nn_ctx_grad (overwritten). */
void block_backward(struct block *k, const float *x, const float *dy, float *dx, float *t1,
                    float *t2, const struct nn_ctx *c);

/* Parameter initialisation and layout helpers shared with net.c. */
void conv_layout(struct conv *c, int C, int K, int R, int stride, int pad, struct nn_layout *L);
void bn_layout(struct bn *b, int C, struct nn_layout *L);
/* init: enum net_init (net.h) */
void conv_init_weights(struct conv *c, struct rng *r, int init);
void bn_init_params(struct bn *b);

#endif
