/* Pooling over CBHW activations (see tensor.h): global average pooling to batch-major
 * features, and the k x k max pool of the ImageNet stem. */
#ifndef NPID_NN_POOL_H
#define NPID_NN_POOL_H
#include <stddef.h>
#include <stdint.h>

/* in (C, B, HW) -> out (B, C): mean over the HW positions. */
void avgpool_forward(const float *in, int C, int B, size_t HW, float *out);
/* dout (B, C) -> din (C, B, HW) (overwrites): each position gets dout/HW. */
void avgpool_backward(const float *dout, int C, int B, size_t HW, float *din);

/* The same for images [b0, b1) only (rows b0..b1-1 of out, their columns of din). */
void avgpool_forward_range(const float *in, int C, int B, size_t HW, int b0, int b1,
                           float *out);
void avgpool_backward_range(const float *dout, int C, int B, size_t HW, int b0, int b1,
                            float *din);

/* Max pooling as torch.nn.MaxPool2d(k, stride, pad): k x k windows, padding that never wins
 * (-inf), 0 <= pad < k so every window holds an input; the first maximum in row-major window
 * order is the one kept (and a NaN wins, as in torch). */
struct maxpool {
    int k, stride, pad;
};

static inline int maxpool_out_dim(const struct maxpool *p, int in)
{
    return (in + 2 * p->pad - p->k) / p->stride + 1;
}

/* in (C, B, H, W) -> out (C, B, Ho, Wo), Ho = maxpool_out_dim(H); arg (C, B, Ho, Wo) gets the
 * position of each maximum within its image plane (h * W + w). Images [b0, b1) only. */
void maxpool_forward_range(const struct maxpool *p, const float *in, int C, int B, int H, int W,
                           int b0, int b1, float *out, int32_t *arg);
/* dout (C, B, Ho, Wo) -> din (C, B, H, W), overwritten for images [b0, b1): each output's
 * gradient added at its arg position, zero elsewhere. */
void maxpool_backward_range(const struct maxpool *p, const float *dout, const int32_t *arg,
                            int C, int B, int H, int W, int b0, int b1, float *din);

#endif
