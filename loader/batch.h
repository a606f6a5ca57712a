/* Turning a list of dataset indices into augmented uint8 images: the loader's inner loop.
 *
 * An image that cannot be read or decoded is reported (path and reason, kept in the batcher
 * for the batch's "errors" list) and replaced by a deterministic substitute: the next index
 * (i+1, i+2, ... modulo n, up to BATCH_SUBST_TRIES) that decodes, augmented with the random
 * stream of the ORIGINAL index; if none decodes, a mid-grey image. Its flag is set to 1.
 * The output therefore depends only on (dataset, indices, preset, seed, epoch, views).
 *
 * Views: a job with views = V produces V independently augmented copies of every image, view
 * by view (all count images of view 0, then of view 1, ...). View 0 of image i in epoch e is
 * augmented with rng_derive(seed, e, i), exactly as a one-view job; view v >= 1 with
 * rng_derive(batch_view_seed(seed, v), e, i). A substituted image is substituted in every
 * view. */
#ifndef NPID_LOADER_BATCH_H
#define NPID_LOADER_BATCH_H

#include <stddef.h>
#include <stdint.h>

#include "common/augment.h"
#include "common/dataset.h"

#define BATCH_SUBST_TRIES 16
#define BATCH_MAX_ERRORS 16
#define BATCH_ERR_LEN 384

struct batcher;

/* dct_scale: let the decoder downscale large JPEGs in the DCT domain when the output is much
 * smaller (see batcher_min_side). NULL on allocation failure. */
struct batcher *batcher_new(const struct dataset *ds, int dct_scale);
void batcher_destroy(struct batcher **b);

struct batch_job {
    const uint32_t *idx;      /* count indices (aligned copy) */
    uint32_t count;
    const char *preset;       /* augment_preset name */
    const char *aug;          /* augment_override spec on the preset; NULL or "": none */
    int train;
    uint32_t size;
    enum augment_layout layout;
    uint64_t seed;
    uint32_t epoch;
    uint32_t views;           /* augmented views per image (0 means 1) */
    /* called between images (heartbeats during long batches); may be NULL */
    void (*tick)(void *ctx);
    void *tick_ctx;
};

struct batch_out {
    uint8_t *pix;             /* views * count * size * size * 3, caller-provided */
    uint32_t *labels;         /* count */
    uint8_t *bad;             /* count */
    uint32_t n_bad;
    uint64_t decode_ns, augment_ns;
};

/* The augmentation seed of view v >= 1 of a job seeded with seed:
 * rng_u64(rng_derive(seed, 0x76696577 ("view"), v)). View 0 uses seed itself. */
uint64_t batch_view_seed(uint64_t seed, uint32_t v);

/* Runs a job. Returns 0, or -1 with a reason in err when the job itself is invalid (an index
 * >= the dataset size: reason starts with "ERANGE"; unknown preset or bad size: "EINVAL").
 * Bad images are not failures. */
int batcher_run(struct batcher *b, const struct batch_job *job, struct batch_out *out, char *err,
                size_t err_len);
/* Messages ("path: reason") of the bad images of the last run, at most BATCH_MAX_ERRORS. */
uint32_t batcher_errors(const struct batcher *b, const char *const **list);
/* The min_side passed to the decoder for given params (0 when DCT scaling is off). */
uint32_t batcher_min_side(const struct batcher *b, const struct augment_params *p);

#endif
