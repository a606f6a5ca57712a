/* Element-wise layers: ReLU and the residual add. Counts are floats. */
#ifndef NPID_NN_ACT_H
#define NPID_NN_ACT_H
#include <stddef.h>

void relu_forward(const float *x, float *y, size_t n);            /* y may alias x */
/* dx = dy where y > 0, else 0; dx may alias dy. */
void relu_backward(const float *y, const float *dy, float *dx, size_t n);
/* y = a + b (any aliasing). The backward of an add is the identity to both inputs. */
void add_forward(const float *a, const float *b, float *y, size_t n);
/* y = relu(a + b): the residual join of a BasicBlock. */
void add_relu_forward(const float *a, const float *b, float *y, size_t n);

/* This thread's images of (C, B, HW): dx += dy where y > 0. */
struct nn_ctx;
void add_masked_ctx(float *dx, const float *dy, const float *y, int C, size_t HW,
                    const struct nn_ctx *c);

#endif
