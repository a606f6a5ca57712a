/* The data-dependent start of a fresh run, before any loader is needed: training images
 * decoded in this process under the test transform (a bad image becomes mid-grey, counted).
 *   warm_bank:   --bank-init warm: BN statistics recalibrated on the data, then every bank
 *                row set to the untrained network's eval-mode feature of its image;
 *   warm_center: --center-init: the output layer's bias shifted so the untrained network's
 *                pre-normalisation outputs have zero mean. */
#ifndef NPID_TRAINER_WARM_H
#define NPID_TRAINER_WARM_H

#include <stdint.h>

#include "common/dataset.h"
#include "common/msg.h"
#include "common/nn/net.h"
#include "common/pixnorm.h"
#include "trainer/bankview.h"

struct warm_src {
    struct net *net;
    struct dataset *ds;
    const char *preset;       /* augmentation preset: its test transform */
    int size;                 /* input side */
    uint32_t batch;           /* images per forward (<= the network's max batch) */
    int dim;                  /* feature dimension */
    uint64_t seed;
    const struct pixnorm *norm;
    float *x;                 /* (batch, 3, size, size) input buffer */
    float *feat;              /* (batch, dim) feature buffer */
    msg_stop *stop;           /* ends warm_bank early (-1) when set */
    void (*idle)(void *arg);  /* called between batches (the task socket's service), or NULL */
    void *idle_arg;
};

/* 0, or -1 (logged; stopped). */
int warm_bank(const struct warm_src *w, struct bankview *bv);
int warm_center(const struct warm_src *w);

#endif
