/* Dataset indices to transformed uint8 images: the one loop from an index list to pixels,
 * shared by the loader (its tasks) and evald (test features and linear --train-views).
 *
 * Bad images, one policy. An image that cannot be read or decoded is flagged (bad[j] = 1),
 * counted (n_bad) and its reason ("path: reason") kept, for the first BATCH_MAX_ERRORS of a
 * run (batcher_errors). What takes its place depends on what the rows are for:
 * - rows a network trains on (own_rows = 0: the loader's training tasks): the next index
 *   (i+1, i+2, ... modulo n, up to BATCH_SUBST_TRIES) that decodes, transformed with the
 *   random stream of the ORIGINAL index i, so that a training batch keeps real image
 *   statistics; if none decodes, a uniform mid-grey image;
 * - rows that stand for their image (own_rows = 1: evaluation under either transform, with
 *   the image's own label; the loader's test-transform tasks, the trainer's warm start): a
 *   uniform mid-grey image, because a neighbour's pixels would give index i another image's
 *   feature. The test transform maps a constant image to itself, so this is also what a grey
 *   source image would give.
 * A uniform mid-grey image is every byte 128, in every view. The label is always index i's.
 * The output therefore depends only on (dataset, indices, transform, policy, seed, epoch,
 * views, view seeding).
 *
 * Views: a job with views = V produces V transformed copies of every image, view by view
 * (all count images of view 0, then of view 1, ...). View 0 of image i is transformed with
 * rng_derive(seed, epoch, i), exactly as a one-view job; view v >= 1 as view_seeding says
 * (enum batch_view_seeding). A replaced image is replaced in every view.
 *
 * A batcher owns a decoder, the transform of its last job and the reasons of its last run;
 * one thread uses it at a time. */
#ifndef NPID_COMMON_BATCHER_H
#define NPID_COMMON_BATCHER_H

#include <stddef.h>
#include <stdint.h>

#include "common/augment.h"
#include "common/dataset.h"

#define BATCH_SUBST_TRIES 16
#define BATCH_MAX_ERRORS 16
#define BATCH_ERR_LEN 384
#define BATCH_MAX_VIEWS 64
#define BATCH_GREY 128

struct batcher;

/* dct_scale: decode each JPEG at the largest DCT scale (1/2, 1/4, 1/8) that keeps the
 * resolution its transform takes from it: every view's geometry is drawn on the size in the
 * file, as at full size, and the smallest of their augment_scale_denom is used, so a view's
 * box and draws do not depend on dct_scale (its pixels do, slightly). 0: always full size.
 * Either way the train transform decodes only the rows and columns of the union of the
 * views' crop boxes (jpeg_dec_decode_pick's region; the same pixels as a full decode).
 * NULL on allocation failure. */
struct batcher *batcher_new(int dct_scale);
void batcher_destroy(struct batcher **b);

/* The random stream of view v >= 1 of index i (view 0: rng_derive(seed, epoch, i)). */
enum batch_view_seeding {
    BATCH_VIEWS_TASK = 0,     /* rng_derive(batch_view_seed(seed, v), epoch, i): the task
                               * protocol's (docs/protocol.md, "Views") */
    BATCH_VIEWS_EPOCH,        /* rng_derive(seed, epoch + v, i): evald's --train-views */
};

struct batch_job {
    const struct dataset *ds; /* the images; the batcher keeps no pointer after the run */
    const uint32_t *idx;      /* count indices (aligned copy) */
    uint32_t count;
    const char *preset;       /* augment_preset name */
    const char *aug;          /* augment_override spec on the preset (train only); NULL or
                               * "": none */
    int train;                /* 1: training transform, 0: test transform */
    int own_rows;             /* the bad-image policy: 1 mid-grey, 0 the next that decodes */
    uint32_t size;
    enum augment_layout layout;
    uint64_t seed;
    uint32_t epoch;
    uint32_t views;           /* transformed views per image, 0..BATCH_MAX_VIEWS (0 means 1) */
    enum batch_view_seeding view_seeding;
    /* called between images (heartbeats during long batches); may be NULL */
    void (*tick)(void *ctx);
    void *tick_ctx;
};

struct batch_out {
    uint8_t *pix;             /* views * count * size * size * 3, caller-provided */
    uint32_t *labels;         /* count */
    uint8_t *bad;             /* count: 1 = not decodable, replaced (see the file head) */
    uint32_t n_bad;
    uint64_t decode_ns, augment_ns;
};

/* The augmentation seed of view v >= 1 of a job seeded with seed under BATCH_VIEWS_TASK:
 * rng_u64(rng_derive(seed, 0x76696577 ("view"), v)). View 0 uses seed itself. */
uint64_t batch_view_seed(uint64_t seed, uint32_t v);

/* Runs a job. Returns 0, or -1 with a reason in err when the job itself is invalid (an index
 * >= the dataset size: reason starts with "ERANGE"; unknown preset, bad size or override,
 * too many views: "EINVAL"). Bad images are not failures. */
int batcher_run(struct batcher *b, const struct batch_job *job, struct batch_out *out, char *err,
                size_t err_len);
/* Messages ("path: reason") of the bad images of the last run, at most BATCH_MAX_ERRORS;
 * valid until the next run. */
uint32_t batcher_errors(const struct batcher *b, const char *const **list);

#endif
