/* Features for evaluation: a trainer checkpoint turned into an eval-mode network, and images
 * turned into L2-normalised features with the test transform (or, for the linear probe's
 * train features, averaged over views drawn with the checkpoint's train transform).
 *
 * The checkpoint's model fields (common/ckpt.h: preset, low_dim, size, stem, head) give the
 * network and the input size; its config JSON (trainer/config.c, trainer_cfg_json) gives the
 * transform ("aug" preset) and the run's name; the normalisation is the trainer's: ImageNet
 * mean/std for the imagenet preset, the reference's CIFAR values otherwise. Parameters and BN
 * running statistics are copied from the checkpoint after checking that their counts match
 * the network built from the model fields. The forward runs with train = 0. The
 * train transform is the "aug" preset's at "size" with the trainer's --crop-scale, --jitter,
 * --gray, --flip and --blur as the config records them (empty or absent: the preset's).
 * Dataset images go to pixels through the common batcher (common/batcher.h), so they are
 * decoded, transformed and, when bad, replaced exactly as the loader would with the same
 * transform. */
#ifndef NPID_EVALD_FEATURES_H
#define NPID_EVALD_FEATURES_H
#include <stddef.h>
#include <stdint.h>

#include "common/augment.h"
#include "common/batcher.h"
#include "common/dataset.h"
#include "common/jpeg.h"
#include "common/nn/net.h"
#include "common/pixnorm.h"

struct feat_model {
    struct net *net;
    struct augment *aug;       /* test transform, CHW output (feat_image) */
    struct batcher *bat;       /* dataset images to pixels (common/batcher.h), DCT scaling on */
    char *config;              /* the checkpoint's config JSON (owned; NULL for pixels) */
    struct jpeg_dec *dec;      /* for callers decoding files themselves (evald/files.h) */
    struct pixnorm norm;      /* the input normalisation (common/pixnorm.h) */
    int size, low_dim, batch;  /* low_dim: the output dimension (the pool's with feat_use_pool) */
    int pool;                  /* outputs are the pooled features, not the embedding */
    uint64_t step, epoch;
    char model[32], aug_name[32], run[128];
    int train_ready;           /* feat_train_aug_init succeeded: train_ap, train_spec set */
    struct augment_params train_ap; /* the train transform, CHW output */
    char train_spec[320];      /* its augment_override spec on the aug_name preset */
    float *x;                  /* (batch, 3, size, size) normalised input */
    uint8_t *pix;              /* (batch, 3, size, size) transformed images */
    uint32_t *idx, *labels;    /* batch: the batcher's job and output */
    uint8_t *bad;              /* batch */
    uint64_t bad_images;       /* images that failed to decode (common/batcher.h's policy) */
};

/* Loads the checkpoint at path (falling back to path.prev when path is corrupt or missing)
 * and builds the network for batches of up to `batch` images. Returns 0, or -1 with a
 * one-line reason in err. On success free with feat_model_deinit. */
int feat_model_init(struct feat_model *m, const char *path, int batch, char *err, size_t err_len);
void feat_model_deinit(struct feat_model *m);
/* From now on feat_dataset and feat_image output the average-pooled features before the head
 * (net_pool_dim values, not normalised) and m->low_dim is that dimension. Not for the pixels
 * model (-1 there, 0 otherwise). */
int feat_use_pool(struct feat_model *m);

/* The raw-pixel "model" (no network): features are the test-transformed size x size image,
 * normalised with the CIFAR mean/std as the trainer's input, flattened (3 size^2 values,
 * low_dim set to that) and L2-normalised. model is "pixels", step 0. 0 or -1 with err. */
int feat_pixels_init(struct feat_model *m, int size, int batch, char *err, size_t err_len);

/* Features of dataset images first .. first+count-1 into out (count, low_dim), through
 * m->bat with the test transform. Images that cannot be decoded are logged, counted in
 * m->bad_images and, the batcher's test-transform policy, replaced by a uniform mid-grey
 * image. Returns 0, or -1 (sig_stop: errno EINTR; EINVAL, logged: the batcher refused the
 * job; EOVERFLOW: an index beyond 2^32 - 1). */
int feat_dataset(struct feat_model *m, const struct dataset *ds, size_t first, size_t count,
                 float *out);

/* Most views feat_dataset_views averages. */
#define FEAT_MAX_VIEWS BATCH_MAX_VIEWS

/* Sets m->train_ap and m->train_spec: the checkpoint's train transform (see the file head);
 * for the pixels model the cifar preset's at m->size, no overrides. Returns 0, or -1 with a
 * one-line reason in err (an unknown preset, an override the checkpoint records that
 * augment_override rejects). */
int feat_train_aug_init(struct feat_model *m, char *err, size_t err_len);

/* feat_dataset, except that each image's feature is the mean of `views` (1..FEAT_MAX_VIEWS)
 * features of views drawn with the train transform (feat_train_aug_init first): view v of
 * dataset image i with rng_derive(seed, v, i) (the batcher's BATCH_VIEWS_EPOCH at epoch 0),
 * so the views drawn depend on neither the batch size nor the thread count. The mean is not
 * renormalised (embeddings and pixel vectors are L2-normalised per view, their mean is at
 * most 1 long). An image that cannot be decoded is logged and counts once in m->bad_images;
 * under the batcher's training-transform policy its views are those of the next image that
 * decodes (i+1, i+2, ...), drawn with i's streams. Returns 0, or -1 (sig_stop: errno EINTR;
 * ENOMEM; EINVAL, EOVERFLOW as feat_dataset). */
int feat_dataset_views(struct feat_model *m, const struct dataset *ds, size_t first,
                       size_t count, int views, uint64_t seed, float *out);

/* The DCT scale at which m decodes a w x h file (a jpeg_denom_fn, ctx m): the test
 * transform's augment_scale_denom, as feat_dataset's batcher chooses it. */
uint32_t feat_scale(void *m, uint32_t w, uint32_t h, struct jpeg_region *roi);
/* Features of one decoded image (packed RGB, decoded at img->scale_denom; decoded with
 * feat_scale, it gives what feat_dataset gives the same file) into out (low_dim). */
void feat_image(struct feat_model *m, const struct jpeg_image *img, float *out);

#endif
