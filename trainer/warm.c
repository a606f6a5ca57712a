/* The data-dependent start of a fresh run (see warm.h). */
#include "trainer/warm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/nn/bn.h"
#include "trainer/plan.h"

/* The next batch of the feed's oldest pass, normalised into w->x: its image count (its
 * undecodable images added to *bad), 0 at the end of the pass, -1 on a failure or a stop. */
static int feed_fill(const struct warm_src *w, size_t *bad)
{
    const uint8_t *pix;
    uint32_t count, n_bad;
    int rc = w->feed.next(w->feed.arg, &pix, &count, &n_bad);
    if (rc <= 0)
        return rc;
    *bad += n_bad;
    pixnorm_apply(w->norm, pix, count, (size_t)w->size * (size_t)w->size, w->x);
    return (int)count;
}

/* BN recalibration: sets every BN layer's running statistics to the average of the batch
 * statistics of training-mode forwards over the feed's current pass (test-transform
 * batches), as torch's BatchNorm with momentum=None would. An untrained network's running
 * statistics are the initial 0 / 1, under which its eval-mode features have nothing to do
 * with its training-mode ones; after this, eval mode (evald's recomputed features) and
 * training mode agree. Each forward moves a running value r by r' = (1-m) r + m b with
 * m = BN_MOMENTUM, so the batch statistic is recovered as b = (r' - (1-m) r) / m. 0 at the
 * end of the pass, -1 on a failure. */
static int bn_recalibrate(const struct warm_src *w, size_t *bad, double *acc, float *prev)
{
    size_t nbuf = net_buffer_count(w->net);
    float *buf = net_buffers(w->net);
    memset(acc, 0, nbuf * sizeof *acc);
    uint32_t done = 0;
    int count;
    while ((count = feed_fill(w, bad)) > 0) {
        memcpy(prev, buf, nbuf * sizeof(float));
        net_forward(w->net, w->x, count, 1);
        for (size_t i = 0; i < nbuf; i++)
            acc[i] += ((double)buf[i] - (1.0 - BN_MOMENTUM) * prev[i]) / BN_MOMENTUM;
        done++;
    }
    for (size_t i = 0; i < nbuf && done; i++)
        buf[i] = (float)(acc[i] / done);
    return count;
}

/* Sets the bank rows of the feed's current pass (the test-transform images of order's steps,
 * in order) to the network's eval-mode features: the features an evaluation of the same
 * weights recomputes. Undecodable images are added to *bad. 0, or -1 (logged; stopped). */
static int fill_rows(const struct warm_src *w, struct bankview *bv, const struct plan *order,
                     size_t *bad)
{
    for (uint32_t s = 0; s < order->steps; s++) {
        uint32_t count;
        const uint32_t *idx = plan_step(order, s, &count);
        int got = feed_fill(w, bad);
        if (got < 0 || MSG_STOPPED(w->stop))
            return -1;
        NPID_CHECK(got == (int)count); /* the feed keeps the batches of the pass */
        size_t nf = (size_t)count * (size_t)w->dim;
        memcpy(w->feat, net_forward(w->net, w->x, (int)count, 0), nf * sizeof(float));
        if (bankview_set(bv, idx, w->feat, count) != 0)
            return -1;
    }
    return feed_fill(w, bad) == 0 ? 0 : -1; /* the pass's end */
}

/* A seeded permutation of the n training images in batches of w->batch, so that each batch
 * holds a mix of classes. 0, or -1 (logged). */
static int mixed_order(const struct warm_src *w, struct plan *order)
{
    memset(order, 0, sizeof *order);
    if (plan_init(order, w->n, w->batch, w->seed ^ 0x7761726dull /* "warm" */, 0) != 0) {
        log_error("out of memory");
        return -1;
    }
    plan_epoch(order, 0);
    return 0;
}

/* Fills the bank with the untrained network's features of every training image under the
 * test transform, decoded in-process: the BN running statistics are first recalibrated on
 * the data (bn_recalibrate, up to 4096 images) and kept, then every row is the
 * eval-mode feature, the same an evaluation of the untrained checkpoint recomputes (so the
 * untrained network's kNN against its bank equals the recomputed one). */
int warm_bank(const struct warm_src *w, struct bankview *bv)
{
    double t0 = clock_seconds();
    struct plan order;
    size_t n = w->n, nbuf = net_buffer_count(w->net), bad = 0;
    double *acc = malloc(nbuf * sizeof *acc);
    float *prev = malloc(nbuf * sizeof *prev);
    int rc = -1;
    if (mixed_order(w, &order) != 0)
        goto done;
    if (!acc || !prev) {
        log_error("out of memory");
        goto done;
    }
    size_t calib = (size_t)((4096 + w->batch - 1) / w->batch) * w->batch;
    calib = calib < n ? calib : n;
    /* both passes queued at once: the loaders run ahead of the recalibration */
    if (w->feed.pass(w->feed.arg, order.perm, calib, w->batch) != 0 ||
        w->feed.pass(w->feed.arg, order.perm, n, w->batch) != 0 ||
        bn_recalibrate(w, &bad, acc, prev) != 0)
        goto done;
    size_t calib_bad = bad;
    bad = 0;
    if (fill_rows(w, bv, &order, &bad) != 0)
        goto done;
    log_info("warm start: BN statistics recalibrated on %zu images; bank filled with the untrained "
             "network's features of %zu images (%zu undecodable, mid-grey) in %.1f s", calib, n,
             bad > calib_bad ? bad : calib_bad, clock_seconds() - t0);
    rc = 0;
done:
    plan_deinit(&order);
    free(acc);
    free(prev);
    return rc;
}

int warm_refresh(const struct warm_src *w, struct bankview *bv)
{
    double t0 = clock_seconds();
    struct plan order;
    size_t bad = 0;
    int rc = -1;
    if (mixed_order(w, &order) == 0 &&
        w->feed.pass(w->feed.arg, order.perm, w->n, w->batch) == 0 &&
        fill_rows(w, bv, &order, &bad) == 0) {
        log_info("refresh: bank rows set to the trained network's features of %zu images under "
                 "the test transform (%zu undecodable, mid-grey) in %.1f s", w->n, bad,
                 clock_seconds() - t0);
        rc = 0;
    }
    plan_deinit(&order);
    return rc;
}

/* --center-init: shifts the output layer's bias so that the untrained network's
 * pre-normalisation outputs have zero mean over a fixed sample of training images (training
 * mode, as the loss sees them). An untrained ResNet maps every image to nearly the same
 * direction (mean cosine about 0.99: pooled ReLU features share a large positive mean),
 * which makes the instance-discrimination gradient tiny at the start; centring removes that
 * shared component. BN running statistics are left as they were. */
int warm_center(const struct warm_src *w)
{
    uint32_t *idx = malloc(1024 * sizeof *idx);
    size_t n = w->n, nbuf = net_buffer_count(w->net), d = (size_t)w->dim, bad = 0;
    float *saved = malloc(nbuf * sizeof(float));
    double *mean = calloc(d, sizeof(double));
    int rc = -1, count;
    if (!idx || !saved || !mean) {
        log_error("out of memory");
        goto done;
    }
    memcpy(saved, net_buffers(w->net), nbuf * sizeof(float));
    size_t want = n < 1024 ? n : 1024, seen = 0;
    for (size_t i = 0; i < want; i++) /* evenly spread over the dataset (all classes) */
        idx[i] = (uint32_t)((i * n) / want);
    if (w->feed.pass(w->feed.arg, idx, want, w->batch) != 0)
        goto done;
    while ((count = feed_fill(w, &bad)) > 0) {
        net_forward(w->net, w->x, count, 1);
        const float *u = net_output_raw(w->net);
        for (int i = 0; i < count; i++)
            for (size_t k = 0; k < d; k++)
                mean[k] += u[(size_t)i * d + k];
        seen += (size_t)count;
    }
    if (count < 0)
        goto done;
    memcpy(net_buffers(w->net), saved, nbuf * sizeof(float));
    float *bias = net_fc_bias(w->net);
    double norm = 0;
    for (size_t k = 0; k < d; k++) {
        mean[k] /= (double)seen;
        bias[k] -= (float)mean[k];
        norm += mean[k] * mean[k];
    }
    log_info("center-init: output mean of %zu images (norm %.3g) moved into the output bias", seen,
             sqrt(norm));
    rc = 0;
done:
    free(idx);
    free(saved);
    free(mean);
    return rc;
}
