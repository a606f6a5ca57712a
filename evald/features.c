/* Checkpoint -> eval-mode network, images -> features: see features.h. */
#include "evald/features.h"

#include "common/ckpt.h"
#include "common/log.h"
#include "common/sig.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The decoders and the batch buffers for m->batch images of m->size px. 0, or -1 (out of
 * memory; feat_model_deinit frees what was allocated). */
static int feat_buffers_init(struct feat_model *m)
{
    size_t px = (size_t)m->size * m->size * 3, nb = (size_t)m->batch;
    m->dec = jpeg_dec_new(NULL);
    m->bat = batcher_new(1);
    m->x = malloc(nb * px * sizeof *m->x);
    m->pix = malloc(nb * px);
    m->idx = malloc(nb * sizeof *m->idx);
    m->labels = malloc(nb * sizeof *m->labels);
    m->bad = malloc(nb);
    return m->dec && m->bat && m->x && m->pix && m->idx && m->labels && m->bad ? 0 : -1;
}

int feat_model_init(struct feat_model *m, const char *path, int batch, char *err, size_t err_len)
{
    struct ckpt c;
    int used = 0;
    memset(m, 0, sizeof *m);
    if (ckpt_load_latest(path, &c, &used, err, err_len) != 0)
        return -1;
    if (used)
        log_warn("checkpoint %s unusable, using %s.prev", path, path);
    /* the network from the checkpoint's model fields (checked by ckpt_load); the transform
       and the run's name from its config */
    snprintf(m->model, sizeof m->model, "%s", c.model.name);
    m->low_dim = (int)c.model.low_dim;
    m->size = (int)c.model.size;
    if (ckpt_config_str(c.config, "aug", m->aug_name, sizeof m->aug_name) != 0)
        snprintf(m->aug_name, sizeof m->aug_name, "cifar");
    if (ckpt_config_str(c.config, "run", m->run, sizeof m->run) != 0) {
        /* the trainer names an unnamed run after its directory */
        char dir[4096];
        m->run[0] = 0;
        if (ckpt_config_str(c.config, "run-dir", dir, sizeof dir) == 0) {
            size_t n = strlen(dir);
            while (n > 1 && dir[n - 1] == '/')
                dir[--n] = 0;
            const char *b = strrchr(dir, '/');
            snprintf(m->run, sizeof m->run, "%s", b ? b + 1 : dir);
        }
    }
    m->batch = batch;
    m->step = c.step;
    m->epoch = c.epoch;
    pixnorm_for(m->aug_name, &m->norm);
    struct net_config nc = { m->model, m->low_dim, m->size, m->size, batch, 0, NET_INIT_HE,
                             (int)c.model.stem, (int)c.model.head };
    m->net = net_new(&nc);
    if (!m->net) {
        snprintf(err, err_len, "checkpoint %s: cannot build network %s (low-dim %d, %d px)", path,
                 m->model, m->low_dim, m->size);
        goto fail;
    }
    if (c.n_params != net_param_count(m->net) || c.n_buffers != net_buffer_count(m->net)) {
        snprintf(err, err_len,
                 "checkpoint %s: %zu parameters and %zu BN buffers, network %s needs %zu and %zu",
                 path, c.n_params, c.n_buffers, m->model, net_param_count(m->net),
                 net_buffer_count(m->net));
        goto fail;
    }
    m->config = strdup(c.config);
    if (!m->config) {
        snprintf(err, err_len, "out of memory reading the checkpoint's config");
        goto fail;
    }
    memcpy(net_params(m->net), c.params, c.n_params * sizeof *c.params);
    memcpy(net_buffers(m->net), c.buffers, c.n_buffers * sizeof *c.buffers);
    struct augment_params ap;
    if (augment_preset(m->aug_name, 0, (uint32_t)m->size, AUGMENT_CHW, &ap) != 0) {
        snprintf(err, err_len, "checkpoint %s: unknown augmentation preset \"%s\"", path,
                 m->aug_name);
        goto fail;
    }
    m->aug = augment_new(&ap);
    if (feat_buffers_init(m) != 0) {
        snprintf(err, err_len, "out of memory building the network");
        goto fail;
    }
    ckpt_free(&c);
    return 0;
fail:
    ckpt_free(&c);
    feat_model_deinit(m);
    return -1;
}

int feat_pixels_init(struct feat_model *m, int size, int batch, char *err, size_t err_len)
{
    memset(m, 0, sizeof *m);
    snprintf(m->model, sizeof m->model, "pixels");
    snprintf(m->aug_name, sizeof m->aug_name, "cifar");
    m->size = size;
    m->low_dim = 3 * size * size;
    m->batch = batch;
    pixnorm_for(m->aug_name, &m->norm);
    struct augment_params ap;
    NPID_CHECK(augment_preset(m->aug_name, 0, (uint32_t)size, AUGMENT_CHW, &ap) == 0);
    m->aug = augment_new(&ap);
    if (!m->aug || feat_buffers_init(m) != 0) {
        snprintf(err, err_len, "out of memory");
        feat_model_deinit(m);
        return -1;
    }
    return 0;
}

/* The pixels model's output: the nb staged images, each L2-normalised, into out. */
static void feat_pixels_out(const struct feat_model *m, int nb, float *out)
{
    size_t d = (size_t)m->low_dim;
    for (int b = 0; b < nb; b++) {
        const float *x = m->x + (size_t)b * d;
        float *o = out + (size_t)b * d;
        double norm = 0;
        for (size_t i = 0; i < d; i++)
            norm += (double)x[i] * x[i];
        float inv = norm > 0 ? (float)(1.0 / sqrt(norm)) : 0.0f;
        for (size_t i = 0; i < d; i++)
            o[i] = x[i] * inv;
    }
}

void feat_model_deinit(struct feat_model *m)
{
    net_destroy(&m->net);
    augment_destroy(&m->aug);
    free(m->config);
    m->config = NULL;
    jpeg_dec_destroy(&m->dec);
    batcher_destroy(&m->bat);
    free(m->x);
    free(m->pix);
    free(m->idx);
    free(m->labels);
    free(m->bad);
    m->x = NULL;
    m->pix = NULL;
    m->idx = m->labels = NULL;
    m->bad = NULL;
}

uint32_t feat_scale(void *ctx, uint32_t w, uint32_t h, struct jpeg_region *roi)
{
    (void)roi; /* the test transform reads all of it */
    struct feat_model *m = ctx;
    const struct augment_params *p = augment_get_params(m->aug);
    struct augment_draw d;
    augment_geometry(p, NULL, w, h, &d);
    return augment_scale_denom(p, &d, w, h);
}

void feat_image(struct feat_model *m, const struct jpeg_image *img, float *out)
{
    struct augment_draw d;
    augment_geometry(augment_get_params(m->aug), NULL, img->src_w, img->src_h, &d);
    augment_apply_scaled(m->aug, img->pix, img->w, img->h, img->scale_denom, img->src_w,
                         img->src_h, NULL, m->pix, &d);
    pixnorm_apply(&m->norm, m->pix, 1, (size_t)m->size * m->size, m->x);
    if (!m->net) {
        feat_pixels_out(m, 1, out);
        return;
    }
    const float *f = net_forward(m->net, m->x, 1, 0);
    memcpy(out, m->pool ? net_pooled(m->net) : f, (size_t)m->low_dim * sizeof *out);
}

int feat_use_pool(struct feat_model *m)
{
    if (!m->net)
        return -1;
    m->pool = 1;
    m->low_dim = net_pool_dim(m->net);
    return 0;
}

/* Runs m->bat on dataset images first .. first+count-1 (count <= m->batch) with the test
 * transform (train = 0) or the train one (train = 1, `views` views drawn from seed as
 * feat_dataset_views says) into pix (views * count images, view-major), a bad image mid-grey
 * in every view (each row stands for its image, with its label); logs the bad images
 * (reasons of the first BATCH_MAX_ERRORS, then their number) and counts them in
 * m->bad_images. 0, or -1 (logged; errno EINVAL or EOVERFLOW). */
static int feat_batch(struct feat_model *m, const struct dataset *ds, size_t first,
                      uint32_t count, int train, int views, uint64_t seed, uint8_t *pix)
{
    if (first + count > (size_t)UINT32_MAX + 1) {
        log_error("dataset image %zu: indices beyond 2^32 - 1 are not supported",
                  first + count - 1);
        errno = EOVERFLOW;
        return -1;
    }
    for (uint32_t j = 0; j < count; j++)
        m->idx[j] = (uint32_t)(first + j);
    struct batch_job job = {
        .ds = ds, .idx = m->idx, .count = count, .preset = m->aug_name,
        .aug = train ? m->train_spec : NULL, .train = train, .own_rows = 1,
        .size = (uint32_t)m->size,
        .layout = AUGMENT_CHW, .seed = seed, .epoch = 0, .views = (uint32_t)views,
        .view_seeding = BATCH_VIEWS_EPOCH,
    };
    struct batch_out bo = { .pix = pix, .labels = m->labels, .bad = m->bad };
    char err[512];
    if (batcher_run(m->bat, &job, &bo, err, sizeof err) != 0) {
        log_error("images %zu..%zu: %s", first, first + count - 1, err);
        errno = EINVAL;
        return -1;
    }
    const char *const *why;
    uint32_t n_why = batcher_errors(m->bat, &why);
    for (uint32_t k = 0; k < n_why; k++)
        log_warn("%s; using a grey image", why[k]);
    if (bo.n_bad > n_why)
        log_warn("%u more bad images among images %zu..%zu", bo.n_bad - n_why, first,
                 first + count - 1);
    m->bad_images += bo.n_bad;
    return 0;
}

int feat_dataset(struct feat_model *m, const struct dataset *ds, size_t first, size_t count,
                 float *out)
{
    size_t hw = (size_t)m->size * m->size;
    for (size_t s = 0; s < count; s += (size_t)m->batch) {
        if (sig_stop) {
            errno = EINTR;
            return -1;
        }
        int nb = (int)(count - s < (size_t)m->batch ? count - s : (size_t)m->batch);
        if (feat_batch(m, ds, first + s, (uint32_t)nb, 0, 1, 0, m->pix) != 0)
            return -1;
        pixnorm_apply(&m->norm, m->pix, (size_t)nb, hw, m->x);
        if (!m->net) {
            feat_pixels_out(m, nb, out + s * (size_t)m->low_dim);
            continue;
        }
        const float *f = net_forward(m->net, m->x, nb, 0);
        if (m->pool)
            f = net_pooled(m->net);
        memcpy(out + s * (size_t)m->low_dim, f, (size_t)nb * m->low_dim * sizeof *out);
    }
    return 0;
}

/* The trainer's augmentation flags recorded in config (trainer/config.c: "crop-scale",
 * "jitter", "gray", "flip" as true/false, "blur"; empty or absent: the preset's) as one
 * augment_override spec into spec. NULL config: an empty spec. 0, or -1 when it does not fit. */
static int feat_aug_spec(const char *config, char *spec, size_t cap)
{
    static const char *const key[][2] = {
        { "crop-scale", "crop" }, { "jitter", "jitter" }, { "gray", "gray" },
        { "flip", "flip" }, { "blur", "blur" },
    };
    size_t n = 0;
    spec[0] = 0;
    for (size_t k = 0; config && k < sizeof key / sizeof key[0]; k++) {
        char v[64];
        if (ckpt_config_str(config, key[k][0], v, sizeof v) != 0 || !v[0])
            continue;
        const char *val = !strcmp(v, "true") ? "1" : !strcmp(v, "false") ? "0" : v;
        int w = snprintf(spec + n, cap - n, "%s%s=%s", n ? "," : "", key[k][1], val);
        if (w < 0 || (size_t)w >= cap - n)
            return -1;
        n += (size_t)w;
    }
    return 0;
}

int feat_train_aug_init(struct feat_model *m, char *err, size_t err_len)
{
    char why[320];
    m->train_ready = 0;
    if (feat_aug_spec(m->config, m->train_spec, sizeof m->train_spec) != 0) {
        snprintf(err, err_len, "checkpoint config: the augmentation flags are too long");
        return -1;
    }
    if (augment_preset(m->aug_name, 1, (uint32_t)m->size, AUGMENT_CHW, &m->train_ap) != 0) {
        snprintf(err, err_len, "unknown augmentation preset \"%s\"", m->aug_name);
        return -1;
    }
    if (augment_override(&m->train_ap, m->train_spec, why, sizeof why) != 0) {
        snprintf(err, err_len, "checkpoint's augmentation flags \"%s\": %s", m->train_spec,
                 why);
        return -1;
    }
    m->train_ready = 1;
    return 0;
}

/* Features of the ns staged slots added to out's rows: slot j to row row[j] (out (rows,
 * low_dim)). */
static void feat_flush(struct feat_model *m, int ns, const size_t *row, float *out)
{
    const float *f = m->x;
    if (!m->net) {
        feat_pixels_out(m, ns, m->x); /* in place: each value read before it is written */
    } else {
        f = net_forward(m->net, m->x, ns, 0);
        if (m->pool)
            f = net_pooled(m->net);
    }
    size_t d = (size_t)m->low_dim;
    for (int j = 0; j < ns; j++) {
        float *o = out + row[j] * d;
        const float *x = f + (size_t)j * d;
        for (size_t k = 0; k < d; k++)
            o[k] += x[k];
    }
}

int feat_dataset_views(struct feat_model *m, const struct dataset *ds, size_t first,
                       size_t count, int views, uint64_t seed, float *out)
{
    NPID_CHECK(m->train_ready && views >= 1 && views <= FEAT_MAX_VIEWS);
    size_t d = (size_t)m->low_dim, hw = (size_t)m->size * m->size, px = 3 * hw;
    /* images per batcher job: their views fill about one forward */
    size_t per = views <= m->batch ? (size_t)(m->batch / views) : 1;
    size_t *row = malloc((size_t)m->batch * sizeof *row);
    uint8_t *pix = malloc(per * (size_t)views * px);
    if (!row || !pix) {
        free(row);
        free(pix);
        errno = ENOMEM;
        return -1;
    }
    memset(out, 0, count * d * sizeof *out);
    int rc = 0, ns = 0; /* slots staged; the views of one image may span two forwards */
    for (size_t s = 0; s < count; s += per) {
        if (sig_stop) {
            errno = EINTR;
            rc = -1;
            break;
        }
        size_t c = count - s < per ? count - s : per;
        if (feat_batch(m, ds, first + s, (uint32_t)c, 1, views, seed, pix) != 0) {
            rc = -1;
            break;
        }
        /* slots image by image, view by view: view v of image j is pix image v c + j */
        for (size_t j = 0; j < c; j++)
            for (int v = 0; v < views; v++) {
                pixnorm_apply(&m->norm, pix + ((size_t)v * c + j) * px, 1, hw,
                              m->x + (size_t)ns * px);
                row[ns++] = s + j;
                if (ns == m->batch) {
                    feat_flush(m, ns, row, out);
                    ns = 0;
                }
            }
    }
    if (rc == 0) {
        if (ns > 0)
            feat_flush(m, ns, row, out);
        for (size_t k = 0; k < count * d; k++)
            out[k] /= (float)views;
    }
    free(row);
    free(pix);
    return rc;
}
