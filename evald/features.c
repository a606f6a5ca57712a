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
    m->min_side = ap.test_resize ? ap.test_resize : (uint32_t)m->size;
    m->aug = augment_new(&ap);
    m->dec = jpeg_dec_new(NULL);
    size_t px = (size_t)m->size * m->size * 3;
    m->x = malloc((size_t)batch * px * sizeof *m->x);
    m->pix = malloc(px);
    if (!m->aug || !m->dec || !m->x || !m->pix) {
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
    m->min_side = (uint32_t)size;
    m->aug = augment_new(&ap);
    m->dec = jpeg_dec_new(NULL);
    size_t px = (size_t)size * size * 3;
    m->x = malloc((size_t)batch * px * sizeof *m->x);
    m->pix = malloc(px);
    if (!m->aug || !m->dec || !m->x || !m->pix) {
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
    augment_destroy(&m->train_aug);
    free(m->config);
    m->config = NULL;
    jpeg_dec_destroy(&m->dec);
    free(m->x);
    free(m->pix);
    m->x = NULL;
    m->pix = NULL;
}

/* Test transform of one RGB image into slot b of the input batch (normalised CHW). */
static void feat_stage(struct feat_model *m, const uint8_t *rgb, uint32_t w, uint32_t h, int b)
{
    augment_apply(m->aug, rgb, w, h, NULL, m->pix, NULL);
    size_t hw = (size_t)m->size * m->size;
    pixnorm_apply(&m->norm, m->pix, 1, hw, m->x + (size_t)b * 3 * hw);
}

void feat_rgb(struct feat_model *m, const uint8_t *rgb, uint32_t w, uint32_t h, float *out)
{
    feat_stage(m, rgb, w, h, 0);
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

int feat_dataset(struct feat_model *m, const struct dataset *ds, size_t first, size_t count,
                 float *out)
{
    char err[DATASET_ERR_LEN];
    uint8_t grey[8 * 8 * 3];
    memset(grey, 128, sizeof grey);
    for (size_t s = 0; s < count; s += (size_t)m->batch) {
        if (sig_stop) {
            errno = EINTR;
            return -1;
        }
        int nb = (int)(count - s < (size_t)m->batch ? count - s : (size_t)m->batch);
        for (int b = 0; b < nb; b++) {
            struct jpeg_image img;
            size_t i = first + s + (size_t)b;
            /* min_side: let the decoder downscale large images, never below the crop size */
            if (dataset_decode(ds, i, m->dec, m->min_side, &img, err, sizeof err) != 0) {
                log_warn("%s; using a grey image", err);
                m->bad_images++;
                feat_stage(m, grey, 8, 8, b);
            } else {
                feat_stage(m, img.pix, img.w, img.h, b);
            }
        }
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
    char spec[320], why[320];
    struct augment_params ap;
    if (feat_aug_spec(m->config, spec, sizeof spec) != 0) {
        snprintf(err, err_len, "checkpoint config: the augmentation flags are too long");
        return -1;
    }
    if (augment_preset(m->aug_name, 1, (uint32_t)m->size, AUGMENT_CHW, &ap) != 0) {
        snprintf(err, err_len, "unknown augmentation preset \"%s\"", m->aug_name);
        return -1;
    }
    if (augment_override(&ap, spec, why, sizeof why) != 0) {
        snprintf(err, err_len, "checkpoint's augmentation flags \"%s\": %s", spec, why);
        return -1;
    }
    augment_destroy(&m->train_aug);
    m->train_aug = augment_new(&ap);
    if (!m->train_aug) {
        snprintf(err, err_len, "out of memory building the train transform");
        return -1;
    }
    m->train_min_side = augment_min_source_side(&ap);
    return 0;
}

/* View `view` of dataset image `index` (train transform, seeded) into slot b of the batch. */
static void feat_stage_view(struct feat_model *m, const uint8_t *rgb, uint32_t w, uint32_t h,
                            uint64_t seed, int view, size_t index, int b)
{
    augment_apply_seeded(m->train_aug, rgb, w, h, seed, (uint64_t)view, index, m->pix, NULL);
    size_t hw = (size_t)m->size * m->size;
    pixnorm_apply(&m->norm, m->pix, 1, hw, m->x + (size_t)b * 3 * hw);
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
    NPID_CHECK(m->train_aug && views >= 1 && views <= FEAT_MAX_VIEWS);
    char err[DATASET_ERR_LEN];
    uint8_t grey[8 * 8 * 3];
    memset(grey, 128, sizeof grey);
    size_t d = (size_t)m->low_dim, *row = malloc((size_t)m->batch * sizeof *row);
    if (!row) {
        errno = ENOMEM;
        return -1;
    }
    memset(out, 0, count * d * sizeof *out);
    int ns = 0; /* slots staged; the views of one image may span two forwards */
    for (size_t s = 0; s < count; s++) {
        if (sig_stop) {
            free(row);
            errno = EINTR;
            return -1;
        }
        struct jpeg_image img;
        if (dataset_decode(ds, first + s, m->dec, m->train_min_side, &img, err, sizeof err)) {
            log_warn("%s; using a grey image", err);
            m->bad_images++;
            img = (struct jpeg_image){ .pix = grey, .w = 8, .h = 8 };
        }
        for (int v = 0; v < views; v++) {
            feat_stage_view(m, img.pix, img.w, img.h, seed, v, first + s, ns);
            row[ns++] = s;
            if (ns == m->batch) {
                feat_flush(m, ns, row, out);
                ns = 0;
            }
        }
    }
    if (ns > 0)
        feat_flush(m, ns, row, out);
    for (size_t k = 0; k < count * d; k++)
        out[k] /= (float)views;
    free(row);
    return 0;
}
