/* The data-dependent start of a fresh run (see warm.h). */
#include "trainer/warm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/augment.h"
#include "common/clock.h"
#include "common/jpeg.h"
#include "common/log.h"
#include "common/nn/bn.h"
#include "trainer/plan.h"

/* In-process loading of training images with the test transform (for the warm start and
 * the output centring, which run before any loader is needed). */
struct test_loader {
    struct augment *aug;
    struct jpeg_dec *dec;
    uint8_t *pix;              /* (batch, 3, S, S) */
    size_t img_bytes;
    uint32_t min_side;
    size_t bad;
};

static int test_loader_init(struct test_loader *l, const struct warm_src *w)
{
    memset(l, 0, sizeof *l);
    struct augment_params ap;
    if (augment_preset(w->preset, 0, (uint32_t)w->size, AUGMENT_CHW, &ap) != 0)
        return -1;
    l->aug = augment_new(&ap);
    l->dec = jpeg_dec_new(NULL);
    l->pix = malloc((size_t)w->batch * 3 * (size_t)w->size * (size_t)w->size);
    if (!l->aug || !l->dec || !l->pix) {
        log_error("out of memory");
        return -1;
    }
    l->img_bytes = augment_out_bytes(l->aug);
    l->min_side = augment_min_source_side(&ap); /* how far the decoder may downscale */
    return 0;
}

static void test_loader_deinit(struct test_loader *l)
{
    augment_destroy(&l->aug);
    jpeg_dec_destroy(&l->dec);
    free(l->pix);
}

/* Decodes and transforms images idx[0..count) into w->x (normalised); a bad image becomes
 * mid-grey and is counted. */
static void test_loader_fill(struct test_loader *l, const struct warm_src *w, const uint32_t *idx,
                             uint32_t count)
{
    for (uint32_t i = 0; i < count; i++) {
        struct jpeg_image img;
        char err[512];
        if (dataset_decode(w->ds, idx[i], l->dec, l->min_side, &img, err,
                           sizeof err) != 0) {
            memset(l->pix + i * l->img_bytes, 128, l->img_bytes);
            if (l->bad++ < 10)
                log_warn("%s", err);
            continue;
        }
        augment_apply(l->aug, img.pix, img.w, img.h, NULL, l->pix + i * l->img_bytes, NULL);
    }
    pixnorm_apply(w->norm, l->pix, count, (size_t)w->size * (size_t)w->size, w->x);
}

/* BN recalibration: sets every BN layer's running statistics to the average of the batch
 * statistics of `steps` training-mode forwards over the first batches of `order` (the test
 * transform), as torch's BatchNorm with momentum=None would. An untrained network's running
 * statistics are the initial 0 / 1, under which its eval-mode features have nothing to do
 * with its training-mode ones; after this, eval mode (evald's recomputed features) and
 * training mode agree. Each forward moves a running value r by r' = (1-m) r + m b with
 * m = BN_MOMENTUM, so the batch statistic is recovered as b = (r' - (1-m) r) / m. */
static void bn_recalibrate(const struct warm_src *w, struct test_loader *l, struct plan *order,
                           uint32_t steps, double *acc, float *prev)
{
    size_t nbuf = net_buffer_count(w->net);
    float *buf = net_buffers(w->net);
    memset(acc, 0, nbuf * sizeof *acc);
    uint32_t done = 0;
    for (uint32_t s = 0; s < steps && s < order->steps; s++, done++) {
        uint32_t count;
        const uint32_t *idx = plan_step(order, s, &count);
        test_loader_fill(l, w, idx, count);
        memcpy(prev, buf, nbuf * sizeof(float));
        net_forward(w->net, w->x, (int)count, 1);
        for (size_t i = 0; i < nbuf; i++)
            acc[i] += ((double)buf[i] - (1.0 - BN_MOMENTUM) * prev[i]) / BN_MOMENTUM;
    }
    for (size_t i = 0; i < nbuf && done; i++)
        buf[i] = (float)(acc[i] / done);
}

/* Fills the bank with the untrained network's features of every training image under the
 * test transform, decoded in-process: the BN running statistics are first recalibrated on
 * the data (bn_recalibrate, up to 4096 images) and kept, then every row is the
 * eval-mode feature, the same an evaluation of the untrained checkpoint recomputes (so the
 * untrained network's kNN against its bank equals the recomputed one). The batches follow a
 * seeded permutation so that each holds a mix of classes. */
int warm_bank(const struct warm_src *w, struct bankview *bv)
{
    double t0 = clock_seconds();
    struct test_loader l = { 0 };
    struct plan order;
    size_t n = dataset_count(w->ds), nbuf = net_buffer_count(w->net);
    double *acc = malloc(nbuf * sizeof *acc);
    float *prev = malloc(nbuf * sizeof *prev);
    int rc = -1;
    memset(&order, 0, sizeof order);
    if (!acc || !prev || test_loader_init(&l, w) != 0 ||
        plan_init(&order, n, w->batch, w->seed ^ 0x7761726dull /* "warm" */, 0) != 0)
        goto done;
    plan_epoch(&order, 0);
    uint32_t calib = (4096 + w->batch - 1) / w->batch;
    bn_recalibrate(w, &l, &order, calib, acc, prev);
    for (uint32_t s = 0; s < order.steps; s++) {
        if (MSG_STOPPED(w->stop))
            goto done;
        uint32_t count;
        const uint32_t *idx = plan_step(&order, s, &count);
        test_loader_fill(&l, w, idx, count);
        size_t nf = (size_t)count * (size_t)w->dim;
        memcpy(w->feat, net_forward(w->net, w->x, (int)count, 0), nf * sizeof(float));
        if (bankview_set(bv, idx, w->feat, count) != 0)
            goto done;
        if (w->idle)
            w->idle(w->idle_arg);
    }
    log_info("warm start: BN statistics recalibrated on %zu images; bank filled with the untrained "
             "network's features of %zu images (%zu undecodable) in %.1f s",
             (size_t)calib * w->batch < n ? (size_t)calib * w->batch : n, n, l.bad,
             clock_seconds() - t0);
    rc = 0;
done:
    test_loader_deinit(&l);
    plan_deinit(&order);
    free(acc);
    free(prev);
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
    struct test_loader l = { 0 };
    uint32_t *idx = malloc((size_t)w->batch * sizeof *idx);
    size_t n = dataset_count(w->ds), nbuf = net_buffer_count(w->net), d = (size_t)w->dim;
    float *saved = malloc(nbuf * sizeof(float));
    double *mean = calloc(d, sizeof(double));
    int rc = -1;
    if (!idx || !saved || !mean || test_loader_init(&l, w) != 0)
        goto done;
    memcpy(saved, net_buffers(w->net), nbuf * sizeof(float));
    size_t want = n < 1024 ? n : 1024, seen = 0;
    for (size_t start = 0; start < want; start += w->batch) {
        uint32_t count = (uint32_t)(want - start < w->batch ? want - start : w->batch);
        for (uint32_t i = 0; i < count; i++) /* evenly spread over the dataset (all classes) */
            idx[i] = (uint32_t)(((start + i) * n) / want);
        test_loader_fill(&l, w, idx, count);
        net_forward(w->net, w->x, (int)count, 1);
        const float *u = net_output_raw(w->net);
        for (uint32_t i = 0; i < count; i++)
            for (size_t k = 0; k < d; k++)
                mean[k] += u[i * d + k];
        seen += count;
    }
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
    test_loader_deinit(&l);
    free(idx);
    free(saved);
    free(mean);
    return rc;
}
