/* The data-dependent start of a fresh run, on the loaders' test-transform images (a feed: the
 * task queue's test passes, trainer/taskq.h; an undecodable image arrives mid-grey, flagged):
 *   warm_bank:   --bank-init warm: BN statistics recalibrated on the data, then every bank
 *                row set to the untrained network's eval-mode feature of its image;
 *   warm_center: --center-init: the output layer's bias shifted so the untrained network's
 *                pre-normalisation outputs have zero mean;
 * and the end of a run:
 *   warm_refresh: --refresh-bank: every bank row set to the trained network's eval-mode
 *                 feature of its image (BN running statistics as trained), as warm_bank does
 *                 for the untrained one. */
#ifndef NPID_TRAINER_WARM_H
#define NPID_TRAINER_WARM_H

#include <stdint.h>

#include "common/msg.h"
#include "common/nn/net.h"
#include "common/pixnorm.h"
#include "trainer/bankview.h"

/* Test-transform images in the order asked for. pass queues the images idx[0..n) in batches
 * of `batch`; next gives the next batch of the oldest pass: *pix (count images, uint8 CHW,
 * valid until the next call), *n_bad of them undecodable; 1 a batch, 0 the pass is over, -1
 * a failure or a stop (logged). */
struct warm_feed {
    int (*pass)(void *arg, const uint32_t *idx, size_t n, uint32_t batch);
    int (*next)(void *arg, const uint8_t **pix, uint32_t *count, uint32_t *n_bad);
    void *arg;
};

struct warm_src {
    struct net *net;
    size_t n;                 /* training images */
    int size;                 /* input side */
    uint32_t batch;           /* images per forward (<= the network's max batch) */
    int dim;                  /* feature dimension */
    uint64_t seed;
    const struct pixnorm *norm;
    float *x;                 /* (batch, 3, size, size) input buffer */
    float *feat;              /* (batch, dim) feature buffer */
    msg_stop *stop;           /* ends warm_bank early (-1) when set */
    struct warm_feed feed;
};

/* 0, or -1 (logged; stopped). */
int warm_bank(const struct warm_src *w, struct bankview *bv);
int warm_center(const struct warm_src *w);
int warm_refresh(const struct warm_src *w, struct bankview *bv);

#endif
