/* The trainer's checkpoints (see ckptr.h). */
#include "trainer/ckptr.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/ckpt.h"
#include "common/clock.h"
#include "common/durable.h"
#include "common/log.h"
#include "common/rng.h"
#include "common/sha256.h"

/* bankd writes the snapshots paired with checkpoints to DIR/bank-trainer.snap (and .prev,
   matching trainer.ckpt and its .prev); --keep-epochs adds bank-epoch-NNN.snap. */
#define TRAINER_SNAPSHOT "trainer"
/* the snapshot name while checkpoints fail: retries never rotate away the bank snapshot that
   pairs with the last good checkpoint (bankd keeps two per name) */
#define TRAINER_SNAPSHOT_RETRY "trainer-retry"

struct ckptr {
    struct ckptr_parts p;
    char dir[4096 + 16];      /* RUN_DIR/checkpoints */
    char path[4096 + 32];     /* .../trainer.ckpt */
    uint64_t failures;        /* saves failed since the last good one */
    uint64_t good_step;       /* step of the last good save (0: none yet) */
};

struct ckptr *ckptr_new(const char *run_dir, const struct ckptr_parts *p)
{
    struct ckptr *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->p = *p;
    snprintf(c->dir, sizeof c->dir, "%s/checkpoints", run_dir);
    snprintf(c->path, sizeof c->path, "%s/trainer.ckpt", c->dir);
    return c;
}

void ckptr_destroy(struct ckptr **c)
{
    if (!c)
        return;
    free(*c);
    *c = NULL;
}

const char *ckptr_path(const struct ckptr *c) { return c->path; }
uint64_t ckptr_failures(const struct ckptr *c) { return c->failures; }
uint64_t ckptr_good_step(const struct ckptr *c) { return c->good_step; }

int ckptr_present(const struct ckptr *c)
{
    char prev[sizeof c->path + 8];
    snprintf(prev, sizeof prev, "%s.prev", c->path);
    return access(c->path, F_OK) == 0 || access(prev, F_OK) == 0;
}

/* The training state as a checkpoint (pointers into the parts), paired with bank snapshot
 * snap at snap_step; snap "" marks weights that no snapshot pairs with. */
static void ckpt_fill(const struct ckptr *k, const struct run_pos *pos, struct ckpt *c,
                      char *snap, uint64_t snap_step)
{
    memset(c, 0, sizeof *c);
    c->model = k->p.model;
    c->config = (char *)k->p.config_json;
    c->step = pos->step;
    c->epoch = pos->epoch;
    c->epoch_pos = pos->epoch_step; /* in steps: batches of this epoch done */
    c->z = objective_z(k->p.obj);
    rng_seed(&c->rng, k->p.seed); /* every draw derives from (seed, stream, step) */
    c->params = net_params(k->p.net);
    c->n_params = net_param_count(k->p.net);
    c->buffers = net_buffers(k->p.net);
    c->n_buffers = net_buffer_count(k->p.net);
    c->momentum = k->p.opt->buf;
    c->n_momentum = net_param_count(k->p.net);
    c->bank_step = snap_step;
    c->bank_path = snap;
}

void ckptr_save_unpaired(struct ckptr *k, const struct run_pos *pos)
{
    char path[sizeof k->dir + 32], none[1] = "";
    snprintf(path, sizeof path, "%s/trainer.unpaired.ckpt", k->dir);
    struct ckpt c;
    ckpt_fill(k, pos, &c, none, 0);
    if (ckpt_save(path, &c) != 0)
        log_error("cannot keep the weights of step %" PRIu64 " in %s: %s", pos->step, path,
                  strerror(errno));
    else
        log_warn("weights of step %" PRIu64 " kept in %s without a paired bank snapshot "
                 "(evaluate them with npid-evald; --resume continues from the last paired "
                 "checkpoint, %s step %" PRIu64 ")", pos->step, path,
                 k->good_step ? "at" : "if any, at", k->good_step);
}

int ckptr_save(struct ckptr *k, const struct run_pos *pos, const char *why,
               struct ckptr_written *out)
{
    double t0 = clock_seconds();
    struct bankc *bank = bankview_client(k->p.bv);
    const char *name = k->failures ? TRAINER_SNAPSHOT_RETRY : TRAINER_SNAPSHOT;
    out->snap[0] = 0;
    out->snap_step = 0;
    if (bankc_snapshot_named(bank, name, out->snap, sizeof out->snap, &out->snap_step) != 0) {
        log_error("checkpoint (%s): bank snapshot failed: %s; no checkpoint written", why,
                  bankc_error(bank));
        k->failures++;
        return -1;
    }
    struct ckpt c;
    ckpt_fill(k, pos, &c, out->snap, out->snap_step);
    if (ckpt_save(k->path, &c) != 0) {
        log_error("checkpoint (%s): cannot write %s: %s", why, k->path, strerror(errno));
        k->failures++;
        return -1;
    }
    if (k->failures)
        log_warn("checkpoint (%s): written again after %" PRIu64 " failed attempt%s (bank "
                 "snapshot %s)", why, k->failures, k->failures > 1 ? "s" : "", name);
    k->failures = 0;
    k->good_step = pos->step;
    if (sha256_file_hex(k->path, out->sha256) != 0)
        snprintf(out->sha256, sizeof out->sha256, "unknown");
    log_info("checkpoint (%s): step %" PRIu64 " epoch %u+%u, bank snapshot at update %" PRIu64
             " (%s), %.2f s", why, pos->step, pos->epoch, pos->epoch_step, out->snap_step,
             out->snap, clock_seconds() - t0);
    return 0;
}

int ckptr_keep_epoch(struct ckptr *k, uint32_t epoch)
{
    char name[32], dst[sizeof k->dir + 48], snap[4096];
    snprintf(name, sizeof name, "epoch-%03u", epoch);
    snprintf(dst, sizeof dst, "%s/%s.ckpt", k->dir, name);
    void *buf = NULL;
    size_t len = 0;
    if (file_read_all(k->path, (size_t)1 << 34, &buf, &len) != 0)
        return -1;
    int rc = durable_write(dst, buf, len);
    free(buf);
    if (rc != 0)
        return -1;
    uint64_t step = 0;
    struct bankc *bank = bankview_client(k->p.bv);
    if (bankc_snapshot_named(bank, name, snap, sizeof snap, &step) != 0) {
        log_warn("--keep-epochs: bank snapshot failed: %s", bankc_error(bank));
        return -1;
    }
    log_info("kept epoch %u: %s and %s", epoch, dst, snap);
    return 0;
}

/* The bankd snapshot name in a recorded snapshot path (".../bank-NAME.snap"), or the
 * trainer's default when the path does not have that form. */
static const char *snapshot_name_of(const char *path, char *name, size_t cap)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t n = strlen(b);
    if (strncmp(b, "bank-", 5) != 0 || n <= 10 || n - 10 >= cap || strcmp(b + n - 5, ".snap") != 0)
        return TRAINER_SNAPSHOT;
    memcpy(name, b + 5, n - 10);
    name[n - 10] = 0;
    return name;
}

/* Brings bankd to the checkpoint's bank: restores its snapshot unless bankd is already at
 * that update count. *have: bankd's count afterwards. */
static int restore_bank(struct ckptr *k, const struct ckpt *c, uint64_t *have)
{
    struct bankc *bank = bankview_client(k->p.bv);
    struct bankc_info info;
    int nobank = 0;
    if (bankc_info(bank, &info) != 0) {
        nobank = strcmp(bankc_error_code(bank), "ENOBANK") == 0;
        if (!nobank) {
            log_error("resume: bank info failed: %s", bankc_error(bank));
            return -1;
        }
    }
    *have = nobank ? 0 : info.step;
    if (!nobank && *have == c->bank_step)
        return 0;
    if (nobank)
        log_info("resume: bankd holds no bank; restoring snapshot %s", c->bank_path);
    else
        log_info("resume: bankd is at update %" PRIu64 ", the checkpoint pairs with %" PRIu64
                 ": restoring snapshot %s", *have, c->bank_step, c->bank_path);
    char name[80];
    if (bankc_restore(bank, snapshot_name_of(c->bank_path, name, sizeof name), c->bank_step,
                      have) != 0) {
        log_error("resume: bank restore failed: %s", bankc_error(bank));
        return -1;
    }
    return 0;
}

int ckptr_restore(struct ckptr *k, struct run_pos *pos)
{
    struct ckpt c;
    char err[512];
    int used = 0;
    if (ckpt_load_latest(k->path, &c, &used, err, sizeof err) != 0) {
        log_error("resume: %s", err);
        return -1;
    }
    int rc = -1;
    struct net *net = k->p.net;
    if (used)
        log_warn("resume: %s was unreadable (%s); using the previous checkpoint", k->path, err);
    const struct ckpt_model *a = &c.model, *b = &k->p.model;
    if (strcmp(a->name, b->name) != 0 || a->low_dim != b->low_dim || a->size != b->size ||
        a->stem != b->stem || a->head != b->head) {
        log_error("resume: checkpoint %s is of %s (low-dim %u, %u px, stem %s, head %u), this "
                  "run builds %s (low-dim %u, %u px, stem %s, head %u): give the run's --model, "
                  "--low-dim, --size, --stem and --head", k->path, a->name, a->low_dim, a->size,
                  net_stem_name((int)a->stem), a->head, b->name, b->low_dim, b->size,
                  net_stem_name((int)b->stem), b->head);
        goto done;
    }
    if (c.n_params != net_param_count(net) || c.n_buffers != net_buffer_count(net) ||
        c.n_momentum != c.n_params) {
        log_error("resume: checkpoint %s holds %zu parameters / %zu buffers, the network has "
                  "%zu / %zu (different --model or --low-dim?)", k->path, c.n_params,
                  c.n_buffers, net_param_count(net), net_buffer_count(net));
        goto done;
    }
    memcpy(net_params(net), c.params, c.n_params * sizeof(float));
    memcpy(net_buffers(net), c.buffers, c.n_buffers * sizeof(float));
    memcpy(k->p.opt->buf, c.momentum, c.n_params * sizeof(float));
    if (c.z > 0)
        objective_set_z(k->p.obj, c.z);
    pos->step = c.step;
    pos->epoch = (uint32_t)c.epoch;
    pos->epoch_step = (uint32_t)c.epoch_pos;
    k->good_step = c.step;
    uint64_t have = 0;
    if (restore_bank(k, &c, &have) != 0)
        goto done;
    bankview_set_step(k->p.bv, have);
    log_info("resume: step %" PRIu64 ", epoch %u, step %u of the epoch, Z %.6g, bank update "
             "%" PRIu64, pos->step, pos->epoch, pos->epoch_step, c.z, have);
    rc = 0;
done:
    ckpt_free(&c);
    return rc;
}
