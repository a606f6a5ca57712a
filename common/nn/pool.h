/* Global average pooling from CBHW activations to batch-major features. */
#ifndef NPID_NN_POOL_H
#define NPID_NN_POOL_H
#include <stddef.h>

/* in (C, B, HW) -> out (B, C): mean over the HW positions. */
void avgpool_forward(const float *in, int C, int B, size_t HW, float *out);
/* dout (B, C) -> din (C, B, HW) (overwrites): each position gets dout/HW. */
void avgpool_backward(const float *dout, int C, int B, size_t HW, float *din);

/* The same for images [b0, b1) only (rows b0..b1-1 of out, their columns of din). */
void avgpool_forward_range(const float *in, int C, int B, size_t HW, int b0, int b1,
                           float *out);
void avgpool_backward_range(const float *dout, int C, int B, size_t HW, int b0, int b1,
                            float *din);

#endif
