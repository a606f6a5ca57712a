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

/* Finds the value text after "key": in a flat JSON object; NULL when absent. */
static const char *feat_json_find(const char *json, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = json; (p = strchr(p, '"')) != NULL; p++) {
        if (strncmp(p + 1, key, kl) == 0 && p[1 + kl] == '"') {
            const char *v = p + 2 + kl;
            while (*v == ' ')
                v++;
            if (*v != ':')
                continue;
            v++;
            while (*v == ' ')
                v++;
            return v;
        }
    }
    return NULL;
}

int feat_json_str(const char *json, const char *key, char *out, size_t cap)
{
    const char *v = feat_json_find(json, key);
    if (!v || *v != '"' || cap == 0)
        return -1;
    size_t n = 0;
    for (v++; *v && *v != '"'; v++) {
        if (*v == '\\' && v[1])
            v++;
        if (n + 1 >= cap)
            return -1;
        out[n++] = *v;
    }
    if (*v != '"')
        return -1;
    out[n] = 0;
    return 0;
}

int feat_json_num(const char *json, const char *key, double *out)
{
    const char *v = feat_json_find(json, key);
    if (!v)
        return -1;
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (end == v || errno || !isfinite(d))
        return -1;
    *out = d;
    return 0;
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
    double low_dim = 128, size = 32;
    if (feat_json_str(c.config, "model", m->model, sizeof m->model) != 0) {
        snprintf(err, err_len, "checkpoint %s: config has no \"model\"", path);
        goto fail;
    }
    if (feat_json_str(c.config, "aug", m->aug_name, sizeof m->aug_name) != 0)
        snprintf(m->aug_name, sizeof m->aug_name, "cifar");
    if (feat_json_str(c.config, "run", m->run, sizeof m->run) != 0) {
        /* the trainer names an unnamed run after its directory */
        char dir[4096];
        m->run[0] = 0;
        if (feat_json_str(c.config, "run-dir", dir, sizeof dir) == 0) {
            size_t n = strlen(dir);
            while (n > 1 && dir[n - 1] == '/')
                dir[--n] = 0;
            const char *b = strrchr(dir, '/');
            snprintf(m->run, sizeof m->run, "%s", b ? b + 1 : dir);
        }
    }
    feat_json_num(c.config, "low-dim", &low_dim);
    feat_json_num(c.config, "size", &size);
    if (low_dim < 1 || low_dim > 4096 || size < 8 || size > 1024) {
        snprintf(err, err_len, "checkpoint %s: config low-dim %g or size %g out of range", path,
                 low_dim, size);
        goto fail;
    }
    m->low_dim = (int)low_dim;
    m->size = (int)size;
    m->batch = batch;
    m->step = c.step;
    m->epoch = c.epoch;
    pixnorm_for(m->aug_name, &m->norm);
    /* checkpoints from before --stem have the CIFAR stem */
    char stem[16] = "cifar";
    if (feat_json_str(c.config, "stem", stem, sizeof stem) != 0)
        snprintf(stem, sizeof stem, "cifar");
    if (net_stem_parse(stem) < 0) {
        snprintf(err, err_len, "checkpoint %s: unknown stem \"%s\"", path, stem);
        goto fail;
    }
    /* checkpoints from before --head have the single Linear */
    double head = 0;
    feat_json_num(c.config, "head", &head);
    if (head < 0 || head > 8192) {
        snprintf(err, err_len, "checkpoint %s: config head %g out of range", path, head);
        goto fail;
    }
    struct net_config nc = { m->model, m->low_dim, m->size, m->size, batch, 0, NET_INIT_HE,
                             net_stem_parse(stem), (int)head };
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
