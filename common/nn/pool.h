/* Global average pooling from CBHW activations to batch-major features. */
#ifndef NPID_NN_POOL_H
#define NPID_NN_POOL_H
#include <stddef.h>

/* in (C, B, HW) -> out (B, C): mean over the HW positions. */
void avgpool_forward(const float *in, int C, int B, size_t HW, float *out);
/* dout (B, C) -> din (C, B, HW) (overwrites): each position gets dout/HW. */
void avgpool_backward(const float *dout, int C, int B, size_t HW, float *din);

#endif
