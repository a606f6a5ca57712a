/* 2-D convolution without bias over CBHW activations (see tensor.h): direct kernels for 3x3
 * stride-1 pad-1 convolutions with at most nn_ctx.direct_max channels in and out
 * (conv3x3.h), im2col + sgemm for everything else.
 *
 * in (C, B, H, W), w (K, C, R, S), out (K, B, Ho, Wo), Ho = (H + 2*pad - R)/stride + 1.
 * For im2col, the batch is processed in chunks of images so that one chunk's im2col matrix
 * (C*R*S, nb*Ho*Wo) fits the caller's scratch; each chunk is one sgemm writing straight into
 * its columns of out. A 1x1, stride-1, pad-0 convolution reads the input in place. */
#ifndef NPID_NN_CONV_H
#define NPID_NN_CONV_H
#include <stddef.h>

struct conv {
    int C, K, R, S, stride, pad;
    float *w;   /* (K, C, R, S) */
    float *dw;  /* same shape */
};

static inline int conv_out_dim(int in, int k, int stride, int pad)
{
    return (in + 2 * pad - k) / stride + 1;
}

static inline size_t conv_weight_count(const struct conv *c)
{
    return (size_t)c->K * c->C * c->R * c->S;
}

struct nn_ctx;

/* Scratch floats one image needs (im2col of the input, or of dout for the backward pass of
 * a stride-1 "same" convolution); a chunk of nb images needs nb times this. */
size_t conv_scratch_min(const struct conv *c, int H, int W);

/* This thread's images of out (K, B, Ho, Wo) = conv(in (C, B, H, W)); B and the slice come
 * from x. */
void conv_forward_ctx(const struct conv *c, const float *in, int H, int W, float *out,
                      const struct nn_ctx *x);

/* Given dout (K, B, Ho, Wo): writes this thread's share of dw (overwrites
 * nn_ctx_grad(x, dw)) and, when din is not NULL, its images of the input gradient
 * (C, B, H, W), added to din's contents when accumulate is set, else overwriting. A
 * stride-1 convolution with Ho == H and Wo == W computes din as a convolution of dout with
 * the flipped, transposed weights (x->wt, conv_weight_count floats); others use col2im. */
void conv_backward_ctx(const struct conv *c, const float *in, const float *dout, int H, int W,
                       float *din, int accumulate, const struct nn_ctx *x);

/* One-thread forms over the whole batch. scratch: at least conv_scratch_min floats for
 * conv_forward, conv_weight_count + conv_scratch_min for conv_backward. */
void conv_forward(const struct conv *c, const float *in, int B, int H, int W, float *out,
                  float *scratch, size_t scratch_floats);
void conv_backward(const struct conv *c, const float *in, const float *dout, int B, int H,
                   int W, float *din, int accumulate, float *scratch, size_t scratch_floats);

/* Plain nested-loop references (tests): same contract as conv_forward; and the weight
 * gradient dw (K, C, R, S) and input gradient din (C, B, H, W), both overwritten, of
 * dout (K, B, Ho, Wo). */
void conv_forward_naive(const struct conv *c, const float *in, int B, int H, int W, float *out);
void conv_backward_naive(const struct conv *c, const float *in, const float *dout, int B, int H,
                         int W, float *dw, float *din);

#endif
