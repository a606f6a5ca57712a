/* The trainer's view of the memory bank (see bankview.h). */
#include "trainer/bankview.h"

#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/bankrow.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/rng.h"

struct bankview {
    struct bankview_cfg cfg;
    struct bankc *bank;       /* the data: sample, update, set, get */
    struct bankc *ctl;        /* the control: init, info, snapshots, restore */
    uint32_t *neg_idx;        /* (m) */
    float *neg;               /* (m, dim) */
    float *pos;               /* (max_batch, dim) */
    float *mirror;            /* (n, dim), softmax mode */
    uint64_t step;            /* bankd's update count as last reported */
    int pending;              /* a sample request is outstanding */
    int stopping;
};

struct bankview *bankview_new(const struct bankview_cfg *c)
{
    struct bankview *bv = calloc(1, sizeof *bv);
    if (!bv)
        goto oom;
    bv->cfg = *c;
    size_t d = (size_t)c->dim;
    if (c->m > 0) {
        bv->neg_idx = malloc(c->m * sizeof *bv->neg_idx);
        bv->neg = malloc(c->m * d * sizeof(float));
        bv->pos = malloc((size_t)c->max_batch * d * sizeof(float));
        if (!bv->neg_idx || !bv->neg || !bv->pos)
            goto oom;
    } else {
        bv->mirror = malloc(c->n * d * sizeof(float));
        if (!bv->mirror)
            goto oom;
    }
    struct msg_opts mo = MSG_OPTS_DEFAULT;
    mo.curve = c->curve;
    /* the control client's id is the data client's with "/control": each has its own
       (cid, seq) sequence and reply cache entry at bankd */
    char ctl_cid[512];
    snprintf(ctl_cid, sizeof ctl_cid, "%s/control", c->cid ? c->cid : "trainer");
    bv->bank = bankc_new_opts(c->endpoint, c->cid, (int)(c->timeout_s * 1000), 1000000, &mo);
    bv->ctl = bv->bank ? bankc_new_opts(c->endpoint, c->cid ? ctl_cid : NULL,
                                        (int)(c->timeout_s * 1000), 1000000, &mo) : NULL;
    if (!bv->bank || !bv->ctl) {
        log_error("bank: cannot connect to %s: %s", c->endpoint, strerror(errno));
        bankview_destroy(&bv);
        return NULL;
    }
    bankc_set_stop(bv->bank, c->stop);
    bankc_set_stop(bv->ctl, c->stop);
    return bv;
oom:
    log_error("out of memory allocating the bank view (%zu rows of %d)", c->m ? c->m : c->n,
              c->dim);
    bankview_destroy(&bv);
    return NULL;
}

void bankview_destroy(struct bankview **bvp)
{
    if (!bvp || !*bvp)
        return;
    struct bankview *bv = *bvp;
    bankc_destroy(&bv->ctl);
    bankc_destroy(&bv->bank);
    free(bv->neg_idx);
    free(bv->neg);
    free(bv->pos);
    free(bv->mirror);
    free(bv);
    *bvp = NULL;
}

struct bankc *bankview_client(struct bankview *bv) { return bv->ctl; }
uint64_t bankview_step(const struct bankview *bv) { return bv->step; }
void bankview_set_step(struct bankview *bv, uint64_t step) { bv->step = step; }
int bankview_pending(const struct bankview *bv) { return bv->pending; }
const float *bankview_neg(const struct bankview *bv) { return bv->neg; }
const float *bankview_pos(const struct bankview *bv) { return bv->pos; }
void bankview_rows(struct bankview *bv, float **neg, float **pos)
{
    *neg = bv->neg;
    *pos = bv->pos;
}
const float *bankview_mirror(const struct bankview *bv) { return bv->mirror; }
size_t bankview_m(const struct bankview *bv) { return bv->cfg.m; }

/* The m negative indices of global step `step`; with exclude_pos never one of pos. */
static void draw_negatives(const struct bankview *bv, uint64_t step, const uint32_t *pos,
                           uint32_t count)
{
    struct rng r = rng_derive(bv->cfg.seed, 0x6e6567ull /* "neg" */, step);
    for (size_t j = 0; j < bv->cfg.m; j++) {
        uint32_t v;
        for (;;) {
            v = (uint32_t)rng_below(&r, bv->cfg.n);
            if (!bv->cfg.exclude_pos)
                break;
            int clash = 0;
            for (uint32_t i = 0; i < count && !clash; i++)
                clash = pos[i] == v;
            if (!clash)
                break;
        }
        bv->neg_idx[j] = v;
    }
}

int bankview_request(struct bankview *bv, uint64_t step, const uint32_t *idx, uint32_t count)
{
    if (bv->cfg.m == 0 || bv->pending)
        return 0;
    draw_negatives(bv, step, idx, count);
    if (bankc_rows_send(bv->bank, bv->neg_idx, bv->cfg.m, idx, count) != 0) {
        log_error("bank: sample request failed: %s", bankc_error(bv->bank));
        return -1;
    }
    bv->pending = 1;
    return 0;
}

void bankview_stopping(struct bankview *bv)
{
    if (!bv->stopping)
        log_info("stopping: each bank request now waits at most %g s (--stop-timeout) for "
                 "bankd at %s", bv->cfg.stop_timeout_s, bv->cfg.endpoint);
    bv->stopping = 1;
    int retries = (int)(bv->cfg.stop_timeout_s / bv->cfg.timeout_s);
    bankc_limit_retries(bv->bank, retries);
    bankc_limit_retries(bv->ctl, retries);
    bankc_set_stop(bv->bank, NULL);
    bankc_set_stop(bv->ctl, NULL);
}

int bankview_collect(struct bankview *bv)
{
    if (bv->cfg.m == 0)
        return 0;
    NPID_CHECK(bv->pending);
    uint64_t step = 0;
    int rc = bankc_sample_recv(bv->bank, bv->neg_idx, bv->neg, bv->pos, &step);
    if (rc != 0 && errno == EINTR && !bv->stopping) {
        /* a stop signal: the sample is still outstanding; finish it (within the stop
           timeout) so that this step completes and the stop checkpoint follows it */
        bankview_stopping(bv);
        rc = bankc_sample_recv(bv->bank, bv->neg_idx, bv->neg, bv->pos, &step);
    }
    bv->pending = 0;
    if (rc != 0) {
        log_error("bank: sample failed: %s", bankc_error(bv->bank));
        return -1;
    }
    return 0;
}

/* bankd refuses subnormal values (docs/protocol.md); they carry nothing: zeros instead */
static void flush_subnormal(float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (fabsf(v[i]) < FLT_MIN)
            v[i] = 0.0f;
}

static void mirror_write(struct bankview *bv, const uint32_t *idx, const float *feat,
                         uint32_t count, float a, float c)
{
    size_t d = (size_t)bv->cfg.dim;
    if (bv->mirror)
        for (uint32_t i = 0; i < count; i++)
            bankrow_write(bv->mirror + (size_t)idx[i] * d, feat + (size_t)i * d, d, a, c);
}

int bankview_set(struct bankview *bv, const uint32_t *idx, float *feat, uint32_t count)
{
    flush_subnormal(feat, (size_t)count * (size_t)bv->cfg.dim);
    uint64_t step = 0;
    if (bankc_set(bv->bank, idx, feat, count, &step) != 0) {
        log_error("bank: set failed: %s", bankc_error(bv->bank));
        return -1;
    }
    bv->step = step; /* bankd counts set requests as updates */
    mirror_write(bv, idx, feat, count, 0.0f, 1.0f);
    return 0;
}

int bankview_update(struct bankview *bv, const uint32_t *idx, float *feat, uint32_t count)
{
    flush_subnormal(feat, (size_t)count * (size_t)bv->cfg.dim);
    uint64_t step = 0, want = bv->step + 1;
    int rc = bankc_update(bv->bank, idx, feat, count, bv->cfg.momentum, &step);
    if (rc != 0 && errno == EINTR && !bv->stopping) {
        /* a stop signal: the step's update is still outstanding; finish it (within the stop
           timeout) so that this step completes and the stop checkpoint follows it */
        bankview_stopping(bv);
        rc = bankc_update_finish(bv->bank, &step);
    }
    if (rc != 0) {
        log_error("bank: update failed: %s", bankc_error(bv->bank));
        return -1;
    }
    if (step < want)
        log_warn("bank: bankd is at update %" PRIu64 ", expected %" PRIu64 " (it restarted from an "
                 "older snapshot: %" PRIu64 " updates lost, those rows are staler; continuing)",
                 step, want, want - step);
    else if (step > want)
        log_warn("bank: bankd is at update %" PRIu64 ", expected %" PRIu64 ": %" PRIu64
                 " update(s) applied more than once or by another client (bankd restarted from "
                 "a snapshot written after it applied a request whose reply was lost); continuing",
                 step, want, step - want);
    bv->step = step;
    mirror_write(bv, idx, feat, count, bv->cfg.momentum, 1.0f - bv->cfg.momentum);
    return 0;
}

int bankview_set_token(struct bankview *bv, const char *hex)
{
    return bankc_set_token(bv->bank, hex) != 0 || bankc_set_token(bv->ctl, hex) != 0 ? -1 : 0;
}

int bankview_load_mirror(struct bankview *bv)
{
    if (!bv->mirror)
        return 0;
    double t0 = clock_seconds();
    if (bankc_get(bv->bank, 0, bv->cfg.n, bv->mirror) != 0) {
        log_error("bank: reading the bank for the softmax mirror failed: %s",
                  bankc_error(bv->bank));
        return -1;
    }
    log_info("bank: local mirror of %zu rows read in %.2f s", bv->cfg.n, clock_seconds() - t0);
    return 0;
}

void bankview_cosines(const struct bankview *bv, const float *feat, const uint32_t *idx,
                      uint32_t count, double *pos_sim, double *neg_sim)
{
    size_t d = (size_t)bv->cfg.dim, m = bv->cfg.m, n = bv->cfg.n;
    double ps = 0, ns = 0;
    for (uint32_t i = 0; i < count; i++) {
        const float *fi = feat + i * d;
        const float *p = m ? bv->pos + i * d : bv->mirror + idx[i] * d;
        const float *q = m ? bv->neg + (i % m) * d : bv->mirror + ((idx[i] + 1) % n) * d;
        double a = 0, c = 0;
        for (size_t k = 0; k < d; k++) {
            a += (double)fi[k] * p[k];
            c += (double)fi[k] * q[k];
        }
        ps += a;
        ns += c;
    }
    *pos_sim = count ? ps / (double)count : 0;
    *neg_sim = count ? ns / (double)count : 0;
}
