/* Direct 3x3 pad-1 convolution over CBHW activations (see tensor.h), stride 1 and 2, for
 * the channel counts where im2col + sgemm spends more time copying than multiplying.
 *
 * The output positions of a thread's images [b0, b1) are one contiguous run per channel; the
 * kernels walk that run in 16-float chunks (one AVX-512 register), with a per-chunk lane mask
 * for each of the nine taps that drops taps falling outside the image (so a chunk may span
 * rows and images, and any size and batch work). The run is cut into tiles; each tile's
 * input (plus a halo of one output row and one pixel either side) is copied into scratch at
 * a padded channel stride, because a channel stride of B*H*W floats, often a multiple of
 * 4 KB, maps every channel to the same cache sets. A stride-2 convolution on an even-sized
 * input reads four phase planes (even/odd rows x even/odd columns) at output resolution, in
 * which every tap is again a shift by -1 or 0 rows and columns.
 *   forward       out (K, B, Ho, Wo) = conv(in (C, B, H, W)); register block 8 output
 *                 channels x 3 chunks, weights broadcast from a (K/8, 9, C, 8) packed copy
 *   input grad    din = the forward kernel over dout with the weights packed transposed and
 *                 the taps reversed; for stride 2 one pass per phase plane of din, then
 *                 interleaved
 *   weight grad   dw (K, C, 3, 3) = sum over positions of dout[k] x shifted in[c]; register
 *                 block 2 (stride 1) or 3 (stride 2) output channels x 9 taps over aligned
 *                 loads (a tap one column over is the neighbouring chunks shifted by a lane),
 *                 reduced once per tile of up to 4096 positions
 * Compiled for AVX-512 whatever -march says (common/cpu.h) and run only on a CPU that has it:
 * conv3x3_available() says 0 elsewhere, and conv.c keeps im2col + sgemm. */
#ifndef NPID_NN_CONV3X3_H
#define NPID_NN_CONV3X3_H
#include <stddef.h>

struct conv;

/* 1 when the CPU runs AVX-512 (cpu_isa()) and c is 3x3 pad 1, stride 1, or stride 2 on an even
 * H x W input. */
int conv3x3_available(const struct conv *c, int H, int W);

/* Scratch floats the kernels need for c at H x W (independent of the batch). */
size_t conv3x3_scratch(const struct conv *c, int H, int W);

/* Images [b0, b1) of out (K, B, Ho, Wo) = conv(in (C, B, H, W)), added to out's contents
 * when accumulate is set. transposed = 1 computes the input gradient instead: in is dout
 * (K, B, Ho, Wo), out is din (C, B, H, W), w is still the layer's (K, C, 3, 3). H, W are the
 * layer's input size either way. */
void conv3x3_forward(const struct conv *c, int transposed, const float *in, int B, int H, int W,
                     int b0, int b1, float *out, int accumulate, float *scratch,
                     size_t scratch_floats);

/* dw (K, C, 3, 3) = the weight gradient over images [b0, b1) (overwritten), from
 * in (C, B, H, W) and dout (K, B, Ho, Wo). */
void conv3x3_weight_grad(const struct conv *c, const float *in, const float *dout, int B, int H,
                         int W, int b0, int b1, float *dw, float *scratch,
                         size_t scratch_floats);

#endif
