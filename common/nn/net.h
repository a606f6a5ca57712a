/* The encoder network: ResNets ending in Linear(low_dim) and L2 normalisation.
 *
 * Presets (with the default stem, 3x3 conv stride 1 + BN + ReLU, no max-pool; other stems
 * below; BasicBlocks (block.h) or bottlenecks (bottleneck.h) with a 1x1 conv + BN projection
 * shortcut where the shape changes; global average pool; Linear with bias):
 *   resnet18       widths 64/128/256/512, two blocks per stage, strides 1/2/2/2
 *                  (the reference's CIFAR ResNet18: 11.2 M parameters)
 *   resnet18-half  widths 32/64/128/256, same depth
 *   resnet18-quarter widths 16/32/64/128, same depth: about resnet20's multiply-adds per
 *                  image (0.04 G at 32 px) with 2.5 times its parameters and 128 pooled
 *                  features
 *   resnet20       widths 16/32/64, three blocks per stage, strides 1/2/2 (projection
 *                  shortcuts, not the zero-padding "option A" of He et al.)
 *   resnet34       widths 64/128/256/512, 3/4/6/3 BasicBlocks, strides 1/2/2/2
 *   resnet50       3/4/6/3 bottlenecks of 3x3 widths 64/128/256/512 and outputs four times
 *                  that (2048 pooled features), strides 1/2/2/2 on the 3x3 (torchvision's
 *                  "v1.5"); 23.8 M parameters with low_dim 128
 * With --stem imagenet (NET_STEM_IMAGENET) resnet18, resnet34 and resnet50 are torchvision's
 * resnet18/34/50 module for module, the fc layer Linear(C, low_dim), in the same parameter
 * order (bench/peer/step_parity.py loads one into the other); with NET_INIT_HE_OUT they are
 * also initialised as torchvision initialises them.
 * Any input size of at least 8x8 works (the pool is global). Everything is allocated in
 * net_new: one block each for parameters, gradients, BN buffers and activations + scratch;
 * forward and backward allocate nothing.
 *
 * Threads: forward and backward run on a team (team.h) that splits the batch; each thread
 * calls single-threaded sgemm, so while they run the net sets OpenBLAS to one thread and
 * restores the previous count afterwards. Results are deterministic for a given thread
 * count; different counts agree to float rounding.
 *
 * Parameter block order (what checkpoints store): stem conv, stem BN (gamma, beta), then per
 * block conv1, bn1, conv2, bn2, [conv3, bn3 in a bottleneck], [shortcut conv, shortcut bn],
 * then fc weight (low_dim, C),
 * fc bias; with a two-layer head (net_config.head = H > 0: pooled -> Linear(H) -> ReLU ->
 * Linear(low_dim), SimCLR's projection head) the hidden layer's weight (H, C) and bias come
 * before them, and fc is (low_dim, H). Each run is padded to a multiple of 16 floats;
 * padding is zero in params and grads, so optimisers may treat the block as one flat
 * vector. */
#ifndef NPID_NN_NET_H
#define NPID_NN_NET_H
#include <stddef.h>
#include <stdint.h>

struct net_config {
    const char *model;   /* "resnet18" | "resnet18-half" | "resnet18-quarter" | "resnet20" |
                            "resnet34" | "resnet50" */
    int low_dim;         /* feature dimension, e.g. 128 */
    int in_h, in_w;      /* input size, >= 8 */
    int max_batch;       /* activations and scratch are sized for this */
    uint64_t seed;       /* weight initialisation, deterministic */
    int init;            /* enum net_init: how convolution weights are drawn */
    int stem;            /* enum net_stem: the layers before the first stage (0: CIFAR's) */
    int head;            /* hidden width of a two-layer head (0: the single Linear) */
};

/* The stem, the layers before the first residual stage (docs/recipes.md,
 * "Resolution, stem and epochs from the data"):
 *   NET_STEM_CIFAR  3x3 convolution, stride 1: the feature maps keep the input size
 *   NET_STEM_S2     3x3 convolution, stride 2: maps of half the input size, so a 64 px
 *                   input costs what a 32 px one costs with the CIFAR stem
 *   NET_STEM_S4     3x3 convolution, stride 2, and the first stage at stride 2 (its first
 *                   block then has a projection shortcut): maps of a quarter of the input
 *   NET_STEM_IMAGENET torchvision's ResNet stem: 7x7 convolution stride 2 pad 3, BN, ReLU,
 *                   3x3 max pool stride 2 pad 1 (padding never wins), the first stage at
 *                   stride 1: maps of a quarter of the input, ceil(ceil(H/2)/2)
 * Every stem is followed by BN and ReLU; the enum values are what checkpoints store. */
enum net_stem { NET_STEM_CIFAR = 0, NET_STEM_S2 = 1, NET_STEM_S4 = 2, NET_STEM_IMAGENET = 3 };

/* The enum for "cifar" | "s2" | "s4" | "imagenet"; -1 for anything else. */
int net_stem_parse(const char *name);
/* The name of a stem enum ("cifar" for anything unknown). */
const char *net_stem_name(int stem);
/* The total stride of a stem: 1, 2 or 4 (imagenet: 4). */
int net_stem_stride(int stem);

/* Convolution weight initialisation (the BN layers start at gamma 1, beta 0, and the output
 * Linear layer as torch.nn.Linear: weight and bias U(-1/sqrt(in), 1/sqrt(in)), in every case).
 *   NET_INIT_HE     N(0, 2/fan_in), fan_in = C*R*S (He et al.)
 *   NET_INIT_TORCH  U(-1/sqrt(fan_in), 1/sqrt(fan_in)): torch.nn.Conv2d's default
 *                   (kaiming_uniform_ with a = sqrt(5)), what the reference CIFAR ResNet uses
 *   NET_INIT_HE_OUT N(0, 2/fan_out), fan_out = K*R*S: torchvision's ResNet (the reference's
 *                   ImageNet network) */
enum net_init { NET_INIT_HE = 0, NET_INIT_TORCH = 1, NET_INIT_HE_OUT = 2 };

/* The enum for "he" | "torch" | "he-out"; -1 for anything else. */
int net_init_parse(const char *name);

struct net;
struct nn_team;

/* 1 when name is one of the presets net_new builds, else 0 (NULL included). */
int net_model_known(const char *name);
/* NULL on failure (unknown model, bad sizes, out of memory), with the reason logged. */
struct net *net_new(const struct net_config *cfg);
/* The same with the team size: threads splitting the batch; 0 means the online CPUs (or
 * NPID_NN_THREADS when set); capped at 64 and at max_batch. net_new uses 0. */
struct net *net_new_threads(const struct net_config *cfg, int threads);
/* The team size in use. */
int net_threads(const struct net *n);
/* The team itself, for callers that split other per-batch work the same way between
 * forward and backward (the trainer's softmax). Never run it from inside a net call. */
struct nn_team *net_team(struct net *n);
void net_destroy(struct net **n);

/* What net_new_threads(cfg, threads) allocates, in bytes, without allocating it: parameters
 * (and as much again for their gradients), the other threads' weight gradients, BN buffers,
 * activations + scratch (the part that grows with max_batch, about linearly). */
struct net_memory {
    size_t params, thread_grads, buffers, acts, total;
    int threads;
};
/* 0, or -1 when net_new_threads would refuse cfg (logged). */
int net_memory(const struct net_config *cfg, int threads, struct net_memory *m);

/* x (B, 3, H, W) float32, already normalised; 1 <= B <= max_batch. train = 1: BN uses batch
 * statistics and updates its running statistics; train = 0: running statistics. Returns
 * (B, low_dim) L2-normalised features, owned by the net, valid until the next forward. */
const float *net_forward(struct net *n, const float *x, int B, int train);

/* dfeat (B, low_dim): dLoss/d(normalised features) of the last train forward (same B).
 * Writes every parameter gradient (overwrites, no accumulation). */
void net_backward(struct net *n, const float *dfeat);

/* Flat blocks (including zero padding, see above); same layout for params and grads. */
size_t net_param_count(const struct net *n);
float *net_params(struct net *n);
float *net_grads(struct net *n);
/* BN running mean and variance of every BN layer, in layer order (mean then var). */
size_t net_buffer_count(const struct net *n);
float *net_buffers(struct net *n);

/* Trainable scalars without padding (11.2 M for resnet18). */
size_t net_param_scalars(const struct net *n);
/* Forward multiply-adds per image x 2 (a training step is about 3x this). */
double net_flops_per_image(const struct net *n);
/* The same for the network cfg describes, without building it (a counting layout pass,
 * nothing allocated; cfg->max_batch is not used); -1 for an unknown model, stem or a size
 * net_new would refuse. */
double net_config_flops(const struct net_config *cfg);
/* One line: model, parameters, input size, low_dim, max batch. */
const char *net_describe(const struct net *n);
int net_low_dim(const struct net *n);
/* Pre-normalisation outputs u (B, low_dim) of the last forward, f = u / ||u|| (valid until
 * the next forward); and the final Linear layer's bias (low_dim floats inside the parameter
 * block), for data-dependent initialisation of the output layer. */
const float *net_output_raw(const struct net *n);
float *net_fc_bias(struct net *n);
int net_max_batch(const struct net *n);
/* The globally average-pooled features (B, net_pool_dim) of the last forward: the input of
 * the final Linear layer (512 for resnet18, 64 for resnet20, 2048 for resnet50), valid until
 * the next forward. */
const float *net_pooled(const struct net *n);
int net_pool_dim(const struct net *n);

#endif
