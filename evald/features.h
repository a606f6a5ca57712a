/* Features for evaluation: a trainer checkpoint turned into an eval-mode network, and images
 * turned into L2-normalised features with the test transform.
 *
 * The checkpoint's config JSON (trainer/config.c, trainer_cfg_json) gives the network
 * ("model", "low-dim") and the transform ("aug" preset, "size"); the normalisation is the
 * trainer's: ImageNet mean/std for the imagenet preset, the reference's CIFAR values otherwise.
 * Parameters and BN running statistics are copied from the checkpoint after checking that
 * their counts match the network built from the config. The forward runs with train = 0. */
#ifndef NPID_EVALD_FEATURES_H
#define NPID_EVALD_FEATURES_H
#include <stddef.h>
#include <stdint.h>

#include "common/augment.h"
#include "common/dataset.h"
#include "common/jpeg.h"
#include "common/nn/net.h"
#include "common/pixnorm.h"

struct feat_model {
    struct net *net;
    struct augment *aug;       /* test transform, CHW output */
    struct jpeg_dec *dec;
    struct pixnorm norm;      /* the input normalisation (common/pixnorm.h) */
    int size, low_dim, batch;  /* low_dim: the output dimension (the pool's with feat_use_pool) */
    int pool;                  /* outputs are the pooled features, not the embedding */
    uint32_t min_side;         /* smallest side the decoder may downscale to */
    uint64_t step, epoch;
    char model[32], aug_name[32], run[128];
    float *x;                  /* (batch, 3, size, size) normalised input */
    uint8_t *pix;              /* (size * size * 3) one transformed image */
    uint64_t bad_images;       /* images that failed to decode (replaced by mid grey) */
};

/* Loads the checkpoint at path (falling back to path.prev when path is corrupt or missing)
 * and builds the network for batches of up to `batch` images. Returns 0, or -1 with a
 * one-line reason in err. On success free with feat_model_deinit. */
int feat_model_init(struct feat_model *m, const char *path, int batch, char *err, size_t err_len);
void feat_model_deinit(struct feat_model *m);
/* From now on feat_dataset and feat_rgb output the average-pooled features before the head
 * (net_pool_dim values, not normalised) and m->low_dim is that dimension. Not for the pixels
 * model (-1 there, 0 otherwise). */
int feat_use_pool(struct feat_model *m);

/* The raw-pixel "model" (no network): features are the test-transformed size x size image,
 * normalised with the CIFAR mean/std as the trainer's input, flattened (3 size^2 values,
 * low_dim set to that) and L2-normalised. model is "pixels", step 0. 0 or -1 with err. */
int feat_pixels_init(struct feat_model *m, int size, int batch, char *err, size_t err_len);

/* Features of dataset images first .. first+count-1 into out (count, low_dim). Images that
 * cannot be decoded are logged, counted in m->bad_images and replaced by a mid-grey image.
 * Returns 0, or -1 (sig_stop: errno EINTR). */
int feat_dataset(struct feat_model *m, const struct dataset *ds, size_t first, size_t count,
                 float *out);

/* Features of one packed RGB image (w x h) into out (low_dim). */
void feat_rgb(struct feat_model *m, const uint8_t *rgb, uint32_t w, uint32_t h, float *out);

/* Reads "key":"value" (string) or "key":number from a flat JSON object. Returns 0 or -1
 * when the key is absent or has another type. */
int feat_json_str(const char *json, const char *key, char *out, size_t cap);
int feat_json_num(const char *json, const char *key, double *out);

#endif
