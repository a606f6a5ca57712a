/* A team of threads that run the same layer sequence, each on its own slice of the batch.
 *
 * With CBHW activations (tensor.h) every layer but batch norm is local to a slice of
 * images: thread t computes its images' columns of every convolution with single-threaded
 * sgemm, and the threads meet only at batch-norm statistics (a barrier per BN layer and
 * pass) and at the final sum of per-thread weight gradients. This keeps both cores busy
 * through the element-wise work as well as the matrix products, and no BLAS thread spins.
 *
 * struct nn_ctx is what a layer sees: its thread id, the batch slice, its scratch and where
 * its weight gradients go (thread 0 writes the net's gradient block, thread t > 0 a private
 * block of the same layout that is summed in at the end). */
#ifndef NPID_NN_TEAM_H
#define NPID_NN_TEAM_H
#include <stddef.h>

struct nn_team;

/* n >= 1 threads in total (the caller is thread 0; n - 1 workers). NULL on failure. */
struct nn_team *nn_team_new(int n);
void nn_team_destroy(struct nn_team **t);
/* Runs fn(arg, tid) on every thread of the team and returns when all have finished. */
void nn_team_run(struct nn_team *t, void (*fn)(void *arg, int tid), void *arg);
/* The number of threads (1 for a NULL team). */
int nn_team_size(const struct nn_team *t);
/* Waits until every thread of the team arrives (no-op for a NULL team). */
void nn_team_barrier(struct nn_team *t);

struct nn_ctx {
    int tid, nt;              /* thread id, team size */
    struct nn_team *team;     /* NULL when nt == 1 */
    int B, b0, b1;            /* batch size and this thread's images [b0, b1) */
    float *scratch;           /* this thread's im2col scratch */
    size_t scratch_floats;
    float *wt;                /* this thread's room for a transposed conv weight */
    size_t chunk_cols;        /* output positions per im2col chunk */
    int direct_max;           /* 3x3 stride-1 convolutions with C and K <= this run direct */
    float *grads0, *grads;    /* the net's gradient block and this thread's; NULL: direct */
};

/* Where this thread writes the gradient whose home in the net's block is g. */
static inline float *nn_ctx_grad(const struct nn_ctx *c, float *g)
{
    return c->grads0 ? c->grads + (g - c->grads0) : g;
}

/* A one-thread context over the whole batch (tests and simple callers). */
/* Default im2col chunk: 512 output positions. Measured on OpenBLAS 0.3.21 (SkylakeX kernel,
 * one thread), 512 columns beat both 256 and 1024..16384 for K = 16..512, forward and
 * weight-gradient products alike: the chunk and its packed copy stay in L2. */
#define NN_CHUNK_COLS 512

/* Default for nn_ctx.direct_max: the direct 3x3 kernels (conv3x3.h) run every 3x3 pad-1
 * convolution of the presets (16..512 channels). Measured on this project's 2-core AVX-512
 * machine, training steps against im2col + sgemm everywhere: resnet20 0.70x the CPU time,
 * resnet18-half 0.75x, resnet18 0.80x. */
#define NN_DIRECT_MAX 512

static inline struct nn_ctx nn_ctx_single(int B, float *scratch, size_t scratch_floats,
                                          float *wt)
{
    struct nn_ctx c = { 0, 1, NULL, B, 0, B, scratch, scratch_floats, wt, NN_CHUNK_COLS,
                        NN_DIRECT_MAX, NULL, NULL };
    return c;
}

#endif
