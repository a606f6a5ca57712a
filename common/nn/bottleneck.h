/* The ResNet bottleneck block as torchvision's ResNet50 has it ("v1.5", the stride on the 3x3):
 *   y = relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x))))))) + shortcut(x))
 * conv1 1x1 cin -> width, conv2 3x3 stride s pad 1 width -> width, conv3 1x1 width -> cout
 * (cout = 4 * width in the presets); shortcut = bn(1x1 conv stride s) when the shape changes
 * (s != 1 or cin != cout), else the identity. Activations are CBHW (see tensor.h), sized for
 * max_batch. Parameter order (what checkpoints store, torchvision's module order): conv1,
 * bn1, conv2, bn2, conv3, bn3, [shortcut conv, shortcut bn]. */
#ifndef NPID_NN_BOTTLENECK_H
#define NPID_NN_BOTTLENECK_H
#include <stddef.h>

#include "common/nn/bn.h"
#include "common/nn/conv.h"
#include "common/nn/team.h"
#include "common/nn/tensor.h"
#include "common/rng.h"

struct bottleneck {
    int cin, width, cout, stride, H, W, Ho, Wo, max_batch, has_sc;
    struct conv c1, c2, c3, cs;
    struct bn b1, b2, b3, bs;
    /* saved activations */
    float *z1, *a1;        /* (width, B, H, W): conv1, after bn1 + ReLU */
    float *z2, *a2;        /* (width, B, Ho, Wo): conv2, after bn2 + ReLU */
    float *z3, *zs, *y;    /* (cout, B, Ho, Wo): conv3, the shortcut conv, the output */
};

/* Lays the block out in L (a counting pass when L's bases are NULL). */
void bottleneck_init(struct bottleneck *k, int cin, int width, int cout, int stride, int H,
                     int W, int max_batch, struct nn_layout *L);
/* Conv weights drawn by init (enum net_init, net.h), BN gamma 1 beta 0, running mean 0 var 1;
 * conv1, conv2, conv3, then the shortcut, in parameter order. */
void bottleneck_init_weights(struct bottleneck *k, struct rng *r, int init);
/* Floats of the largest activation of the block at max_batch: the size of each of the two
 * work buffers bottleneck_backward takes. */
size_t bottleneck_act_floats(const struct bottleneck *k);
/* Scratch floats one image of the block's convolutions needs (conv_scratch_min). */
size_t bottleneck_scratch_min(const struct bottleneck *k);
/* Forward multiply-adds x 2 per image. */
double bottleneck_flops(const struct bottleneck *k);
/* Trainable scalars (no padding). */
size_t bottleneck_scalars(const struct bottleneck *k);
/* This thread's images: x (cin, B, H, W) -> k->y (cout, B, Ho, Wo). */
void bottleneck_forward(struct bottleneck *k, const float *x, int train, const struct nn_ctx *c);
/* Backward of the last training forward on x, this thread's images. dy (cout, B, Ho, Wo) is
 * only read; dx (cin, B, H, W) is overwritten; t1, t2: bottleneck_act_floats each, clobbered.
 * Parameter gradients go to nn_ctx_grad (overwritten). A work buffer changes layout only
 * after a batch-norm barrier, so the threads of a team never see each other's images in it. */
void bottleneck_backward(struct bottleneck *k, const float *x, const float *dy, float *dx,
                         float *t1, float *t2, const struct nn_ctx *c);

#endif
