/* Dataset indices to transformed images, with the one bad-image policy: see batcher.h. */
#include "common/batcher.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/rng.h"

struct batcher {
    int dct_scale;
    struct jpeg_dec *dec;
    struct augment *aug;
    struct augment_params ap;   /* params of aug */
    char ap_preset[32];
    char errors[BATCH_MAX_ERRORS][BATCH_ERR_LEN];
    const char *error_ptrs[BATCH_MAX_ERRORS];
    uint32_t n_errors;
    /* the image being decoded (pick_scale): its views' streams, each past the geometry it
     * drew for the size in the file, and that geometry */
    uint32_t views;
    uint64_t index;
    uint64_t vseed[BATCH_MAX_VIEWS], vepoch[BATCH_MAX_VIEWS];   /* view v's rng_derive */
    struct rng vrng[BATCH_MAX_VIEWS];
    struct augment_draw vdraw[BATCH_MAX_VIEWS];
};

struct batcher *batcher_new(int dct_scale)
{
    struct batcher *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->dct_scale = dct_scale;
    b->dec = jpeg_dec_new(NULL);
    if (!b->dec) {
        free(b);
        return NULL;
    }
    for (int i = 0; i < BATCH_MAX_ERRORS; i++)
        b->error_ptrs[i] = b->errors[i];
    return b;
}

void batcher_destroy(struct batcher **bp)
{
    if (!bp || !*bp)
        return;
    jpeg_dec_destroy(&(*bp)->dec);
    augment_destroy(&(*bp)->aug);
    free(*bp);
    *bp = NULL;
}

uint32_t batcher_errors(const struct batcher *b, const char *const **list)
{
    *list = b->error_ptrs;
    return b->n_errors;
}

/* jpeg_denom_fn of the image being decoded: draws every view's geometry on the w x h of the
 * file and returns the smallest of their scales (1 when DCT scaling is off), so the decode
 * has the resolution each view takes from it; the train transform reads only the union of
 * the views' crop boxes (augment_apply_scaled reads no pixel outside its box's span). */
static uint32_t pick_scale(void *ctx, uint32_t w, uint32_t h, struct jpeg_region *roi)
{
    struct batcher *b = ctx;
    uint32_t denom = 8;
    struct jpeg_region u = { w, h, 0, 0 };
    for (uint32_t v = 0; v < b->views; v++) {
        struct augment_draw *d = &b->vdraw[v];
        b->vrng[v] = rng_derive(b->vseed[v], b->vepoch[v], b->index);
        augment_geometry(&b->ap, &b->vrng[v], w, h, d);
        uint32_t k = augment_scale_denom(&b->ap, d, w, h);
        denom = k < denom ? k : denom;
        u.x0 = d->crop_x < u.x0 ? d->crop_x : u.x0;
        u.y0 = d->crop_y < u.y0 ? d->crop_y : u.y0;
        u.x1 = d->crop_x + d->crop_w > u.x1 ? d->crop_x + d->crop_w : u.x1;
        u.y1 = d->crop_y + d->crop_h > u.y1 ? d->crop_y + d->crop_h : u.y1;
    }
    if (b->ap.train)
        *roi = u;
    return b->dct_scale ? denom : 1;
}

/* Makes b->aug match the job's transform. */
static int ensure_aug(struct batcher *b, const struct batch_job *job, char *err, size_t err_len)
{
    struct augment_params p;
    if (strlen(job->preset) >= sizeof b->ap_preset ||
        augment_preset(job->preset, job->train, job->size, job->layout, &p)) {
        err_set(err, err_len, "EINVAL: unknown augmentation preset '%s'", job->preset);
        return -1;
    }
    char why[300];
    if (job->train && augment_override(&p, job->aug, why, sizeof why) != 0) {
        err_set(err, err_len, "EINVAL: %s", why);
        return -1;
    }
    if (b->aug && strcmp(b->ap_preset, job->preset) == 0 && memcmp(&p, &b->ap, sizeof p) == 0)
        return 0;
    if (augment_params_check(&p, why, sizeof why)) {
        err_set(err, err_len, "EINVAL: %s", why);
        return -1;
    }
    augment_destroy(&b->aug);
    b->aug = augment_new(&p);
    if (!b->aug) {
        err_set(err, err_len, "EINVAL: cannot create the augmentation (out of memory)");
        return -1;
    }
    b->ap = p;
    snprintf(b->ap_preset, sizeof b->ap_preset, "%s", job->preset);
    return 0;
}

uint64_t batch_view_seed(uint64_t seed, uint32_t v)
{
    struct rng r = rng_derive(seed, 0x76696577ull /* "view" */, v);
    return rng_u64(&r);
}

int batcher_run(struct batcher *b, const struct batch_job *job, struct batch_out *out, char *err,
                size_t err_len)
{
    size_t n = dataset_count(job->ds);
    for (uint32_t j = 0; j < job->count; j++)
        if (job->idx[j] >= n) {
            err_set(err, err_len, "ERANGE: index %u beyond the dataset (%zu images)", job->idx[j],
                    n);
            return -1;
        }
    if (job->views > BATCH_MAX_VIEWS) {
        err_set(err, err_len, "EINVAL: %u views per image (at most %u)", job->views,
                BATCH_MAX_VIEWS);
        return -1;
    }
    if (ensure_aug(b, job, err, err_len))
        return -1;
    b->n_errors = 0;
    out->n_bad = 0;
    out->decode_ns = out->augment_ns = 0;
    size_t img_bytes = augment_out_bytes(b->aug);
    char why[BATCH_ERR_LEN];
    uint32_t views = job->views > 1 ? job->views : 1;
    /* view v's (seed, epoch) for rng_derive(seed, epoch, i) */
    for (uint32_t v = 0; v < views; v++) {
        int task = job->view_seeding == BATCH_VIEWS_TASK;
        b->vseed[v] = v == 0 || !task ? job->seed : batch_view_seed(job->seed, v);
        b->vepoch[v] = (uint64_t)job->epoch + (task ? 0 : v);
    }
    size_t view_bytes = (size_t)job->count * img_bytes;
    b->views = views;
    for (uint32_t j = 0; j < job->count; j++) {
        uint32_t i = job->idx[j];
        uint8_t *dst = out->pix + (size_t)j * img_bytes;
        out->labels[j] = dataset_label(job->ds, i);
        out->bad[j] = 0;
        uint64_t t0 = clock_now_ns();
        struct jpeg_image img;
        b->index = i; /* a substitute is transformed with index i's streams too */
        int ok = dataset_decode_pick(job->ds, i, b->dec, pick_scale, b, &img, why,
                                     sizeof why) == 0;
        if (!ok) {
            out->bad[j] = 1;
            out->n_bad++;
            if (b->n_errors < BATCH_MAX_ERRORS)
                snprintf(b->errors[b->n_errors++], BATCH_ERR_LEN, "%s", why);
            /* the policy (batcher.h): training substitutes a neighbour, test stays grey */
            for (uint32_t k = 1; !job->own_rows && k <= BATCH_SUBST_TRIES && k < n && !ok; k++) {
                size_t alt = (i + (size_t)k) % n;
                ok = dataset_decode_pick(job->ds, alt, b->dec, pick_scale, b, &img, why,
                                         sizeof why) == 0;
            }
        }
        uint64_t t1 = clock_now_ns();
        for (uint32_t v = 0; v < views; v++) {
            if (ok)
                augment_apply_scaled(b->aug, img.pix, img.w, img.h, img.scale_denom, img.src_w,
                                     img.src_h, &b->vrng[v], dst + v * view_bytes,
                                     &b->vdraw[v]);
            else
                memset(dst + v * view_bytes, BATCH_GREY, img_bytes);
        }
        uint64_t t2 = clock_now_ns();
        out->decode_ns += t1 - t0;
        out->augment_ns += t2 - t1;
        if (job->tick)
            job->tick(job->tick_ctx);
    }
    return 0;
}
