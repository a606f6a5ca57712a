/* Tensor shapes, aligned memory and the arena carver the network uses to lay out its blocks.
 *
 * Activation layout: every activation inside the network is stored channel-major over the
 * whole batch, (C, B, H, W) ("CBHW"): channel c of image b starts at ((c*B + b)*H)*W. With
 * this layout a convolution over the whole batch is one matrix product
 * W (K, C*R*S) x col (C*R*S, B*Ho*Wo) whose result is already the next layer's input, a 1x1
 * stride-1 convolution needs no im2col at all, and batch norm reads each channel as one
 * contiguous run of B*H*W floats. The network's input and output are batch-major.
 *
 * Parameters, gradients, buffers and activations are carved out of one allocation each: a
 * first pass with NULL bases only counts (nn_carve returns NULL and advances), a second
 * pass with real bases assigns the same offsets, so the parameter and gradient blocks have
 * the same layout. Every carved run starts on a 64-byte boundary. */
#ifndef NPID_NN_TENSOR_H
#define NPID_NN_TENSOR_H
#include <stddef.h>
#include <stdint.h>

struct shape4 { int n, c, h, w; };

static inline size_t shape4_numel(struct shape4 s)
{
    return (size_t)s.n * (size_t)s.c * (size_t)s.h * (size_t)s.w;
}

/* A bump allocator over one float block; base NULL means "count only". */
struct nn_carver { float *base; size_t used; };

float *nn_carve(struct nn_carver *c, size_t n);

/* The four blocks a network is carved from. params and grads are always carved together
 * (nn_carve_param) so their layouts match. stats (per-step BN batch statistics) and
 * activations share the acts block. */
struct nn_layout {
    struct nn_carver params, grads, buffers, acts;
    int threads;   /* team size the layers are laid out for (per-thread BN sums) */
};

/* Carves n parameters and their gradients: *p, *g (NULL in a counting pass). */
void nn_carve_param(struct nn_layout *L, size_t n, float **p, float **g);

/* 64-byte aligned, zeroed allocation of n floats; NULL on failure. Free with nn_free. */
float *nn_alloc(size_t n);
void nn_free(float *p);

#endif
