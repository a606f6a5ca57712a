/* The training run: see train.h. */
#include "trainer/train.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/dataset.h"
#include "common/durable.h"
#include "common/log.h"
#include "common/nn/bn.h"
#include "common/sig.h"
#include "trainer/bankview.h"
#include "trainer/ckptr.h"
#include "trainer/dp.h"
#include "trainer/learner.h"
#include "trainer/links.h"
#include "trainer/metrics.h"
#include "trainer/plan.h"
#include "trainer/start.h"
#include "trainer/taskq.h"
#include "trainer/warm.h"

#define FINAL_RETRY_S 10.0

struct trainer {
    struct trainer_cfg cfg;
    char run[128];
    char cid[192];
    char config_json[8192];

    struct dataset *ds;
    size_t n;
    size_t m;                 /* negatives per step; 0: the full softmax's mirror */
    struct learner learn;     /* the network, the objective, SGD and the step's buffers */
    struct links ln;          /* bankd, the loaders' tasks, the events */
    struct ckptr *ck;         /* checkpoints and the resume */

    struct plan cur;          /* this epoch's plan (every rank's steps) */
    uint32_t *mine;           /* with ranks: this rank's share of each step of it, in order */
    char tasks_ep[512];       /* this rank's task endpoint */
    struct run_pos pos;       /* the next step to run */
    double run_start;
};

/* ---- helpers ----------------------------------------------------------------------------- */

/* Sends the sample request of the next step (t->pos.epoch, t->pos.epoch_step). */
static int bank_request_sample(struct trainer *t)
{
    if (dp_rank() != 0)
        return 0; /* rank 0 reads the bank for every rank */
    uint32_t count;
    const uint32_t *idx = plan_step(&t->cur, t->pos.epoch_step, &count);
    return bankview_request(t->ln.bv, t->pos.step, idx, count);
}

/* ---- ranks (trainer/dp.h) --------------------------------------------------------------- */

/* What a data-parallel job needs: every rank takes batch / ranks images of every step (the
 * last, partial step split as evenly), and rank 0 reads the bank rows for all. */
static int ranks_check(const struct trainer *t)
{
    int ranks = dp_size();
    size_t last = t->n % (size_t)t->cfg.batch;
    if (ranks == 1)
        return 0;
    if (t->cfg.batch % ranks != 0) {
        log_error("--batch %d is not a multiple of the %d ranks (each rank trains batch / ranks "
                  "images of every step)", t->cfg.batch, ranks);
        return -1;
    }
    if (t->m == 0) {
        log_error("the full softmax (--nce-k 0) runs on one trainer only: give --nce-k > 0 "
                  "with %d ranks", ranks);
        return -1;
    }
    if (t->cfg.sync_bn && t->learn.micro < t->cfg.batch / ranks * t->learn.views) {
        log_error("--sync-bn needs each rank's share of a step in one forward (%d rows), but "
                  "it runs in forwards of %d (--micro-batch or --memory)",
                  t->cfg.batch / ranks * t->learn.views, t->learn.micro);
        return -1;
    }
    if (!t->cfg.drop_last && last != 0 && last < (size_t)ranks) {
        log_error("the last step of an epoch has %zu images, fewer than the %d ranks: pass "
                  "--drop-last or another --batch", last, ranks);
        return -1;
    }
    return 0;
}

/* Rank rank's task endpoint (of ranks): the rank-th of a comma-separated list of one endpoint
 * per rank, or the one endpoint given with its port + 100 rank. -1 when neither applies
 * (logged). */
static int rank_tasks_ep(const char *list, int rank, int ranks, char *out, size_t cap)
{
    int items = 1;
    for (const char *c = list; *c; c++)
        items += *c == ',';
    if (items == ranks) {
        const char *a = list;
        for (int i = 0; i < rank; i++)
            a = strchr(a, ',') + 1;
        size_t len = strcspn(a, ",");
        if (len == 0 || len >= cap)
            goto bad;
        memcpy(out, a, len);
        out[len] = '\0';
        return 0;
    }
    if (items == 1) {
        const char *colon = strrchr(list, ':');
        char *end = NULL;
        long port = colon ? strtol(colon + 1, &end, 10) : -1;
        if (strncmp(list, "tcp://", 6) != 0 || !end || *end || port <= 0 ||
            port + 100L * rank > 65535)
            goto bad;
        int len = (int)(colon - list);
        if (snprintf(out, cap, "%.*s:%ld", len, list, port + 100L * rank) >= (int)cap)
            goto bad;
        return 0;
    }
bad:
    log_error("--tasks %s: give one tcp://host:port (rank r listens on port + 100 r) or a "
              "comma-separated list of %d endpoints, one per rank", list, ranks);
    return -1;
}

/* Every rank starts where rank 0 does: its weights, BN statistics, momentum, Z and position
 * (rank 0 initialised or restored them, and owns the bank). */
static void ranks_share_start(struct trainer *t)
{
    struct learner *l = &t->learn;
    size_t np = net_param_count(l->net);
    dp_bcast(&t->pos, sizeof t->pos, 0);
    dp_bcast(net_params(l->net), np * sizeof(float), 0);
    dp_bcast(net_buffers(l->net), net_buffer_count(l->net) * sizeof(float), 0);
    dp_bcast(l->opt->buf, np * sizeof(float), 0);
    double z = objective_z(l->obj);
    dp_bcast(&z, sizeof z, 0);
    if (z > 0 && dp_rank() != 0)
        objective_set_z(l->obj, z);
}

static void sum_over_ranks(double *v, int n, void *arg)
{
    (void)arg;
    dp_sum_f64(v, n);
}

/* The step's bank rows, collected by rank 0 and sent to every rank (count positives). */
static int bank_collect(struct trainer *t, uint32_t count)
{
    if (dp_rank() == 0 && bankview_collect(t->ln.bv) != 0)
        return -1;
    if (dp_active()) {
        float *neg, *pos;
        bankview_rows(t->ln.bv, &neg, &pos);
        size_t d = (size_t)t->learn.dim;
        dp_bcast(neg, t->m * d * sizeof(float), 0);
        dp_bcast(pos, count * d * sizeof(float), 0);
    }
    return 0;
}

/* --dp-check: every rank's weights hash the same (logged by rank 0); -1 otherwise (logged). */
static int check_weights(struct trainer *t)
{
    const unsigned char *p = (const unsigned char *)net_params(t->learn.net);
    size_t bytes = net_param_count(t->learn.net) * sizeof(float);
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < bytes; i++)
        h = (h ^ p[i]) * 0x100000001b3ull;
    if (!dp_same_u64(h)) {
        log_error("dp-check: step %" PRIu64 ": the ranks' weights differ (this rank's hash "
                  "%016" PRIx64 ")", t->pos.step, h);
        return -1;
    }
    if (dp_rank() == 0)
        log_info("dp-check: step %" PRIu64 ": weights hash %016" PRIx64 " on %d rank%s",
                 t->pos.step, h, dp_size(), dp_size() == 1 ? "" : "s");
    return 0;
}

/* ---- checkpoints --------------------------------------------------------------------------- */

/* A paired checkpoint of the current position, announced (event + metrics.jsonl). */
static int trainer_checkpoint(struct trainer *t, const char *why)
{
    if (dp_rank() != 0)
        return 0; /* rank 0 writes the run's checkpoints */
    struct ckptr_written w;
    if (ckptr_save(t->ck, &t->pos, why, &w) != 0)
        return -1;
    metrics_checkpoint(t->ln.mx, &t->pos, ckptr_path(t->ck), &w, why);
    return 0;
}

static void trainer_save_unpaired(struct trainer *t)
{
    if (dp_rank() == 0)
        ckptr_save_unpaired(t->ck, &t->pos);
}

/* ---- data-dependent start: warm bank, centred output ------------------------------------- */

/* The data-dependent start (trainer/warm.h) over this run's network and buffers, fed by the
 * loaders. */
static struct warm_src warm_src_of(struct trainer *t)
{
    int batch = t->learn.micro < t->cfg.batch ? t->learn.micro : t->cfg.batch; /* one view */
    struct warm_src w = {
        .net = t->learn.net, .n = t->n, .size = t->cfg.size, .batch = (uint32_t)batch,
        .dim = t->cfg.low_dim, .seed = t->cfg.seed, .norm = &t->learn.norm, .x = t->learn.x,
        .feat = t->learn.feat, .stop = &sig_stop, .feed = links_warm_feed(&t->ln),
    };
    return w;
}

/* ---- construction ---------------------------------------------------------------------------- */

/* The learner and the epoch plan. */
static int build_model(struct trainer *t)
{
    const struct trainer_cfg *cfg = &t->cfg;
    t->m = cfg->nce_k == 0 ? 0 : (size_t)cfg->nce_k;
    if (learner_init(&t->learn, cfg, t->n) != 0)
        return -1;
    if (plan_init(&t->cur, t->n, (uint32_t)cfg->batch, cfg->seed, cfg->drop_last) != 0) {
        log_error("cannot plan %zu images in batches of %d (--drop-last leaves no step?)", t->n,
                  cfg->batch);
        return -1;
    }
    t->pos.steps_per_epoch = t->cur.steps;
    return 0;
}

/* The bank view and the checkpoints that pair with its snapshots. */
static int connect_bank(struct trainer *t)
{
    const struct trainer_cfg *cfg = &t->cfg;
    if (links_open_bank(&t->ln, cfg, t->cid, t->n, t->m) != 0)
        return -1;
    struct ckptr_parts cp = { t->learn.net, t->learn.opt, t->learn.obj, t->ln.bv, t->config_json,
                              cfg->seed,
                              { "", (uint32_t)cfg->low_dim, (uint32_t)cfg->size,
                                (uint32_t)net_stem_parse(cfg->stem), (uint32_t)cfg->head } };
    snprintf(cp.model.name, sizeof cp.model.name, "%s", cfg->model);
    t->ck = ckptr_new(cfg->run_dir, &cp);
    if (!t->ck) {
        log_error("out of memory");
        return -1;
    }
    return 0;
}

struct trainer *trainer_new(const struct trainer_cfg *cfg)
{
    struct trainer *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->cfg = *cfg;
    trainer_cfg_run_name(cfg, t->run, sizeof t->run);
    /* a stable client id: the same run keeps its bankd request cache across restarts */
    snprintf(t->cid, sizeof t->cid, "trainer:%s", t->run);
    char path[4096 + 32];
    struct warm_src ws;
    snprintf(path, sizeof path, "%s/checkpoints", cfg->run_dir);
    if (mkdir_p(path) != 0) {
        log_error("cannot create %s: %s", path, strerror(errno));
        goto fail;
    }
    t->ds = trainer_cfg_open_data(&t->cfg, t->config_json, sizeof t->config_json);
    if (!t->ds)
        goto fail;
    t->n = dataset_count(t->ds);
    if (build_model(t) != 0 || ranks_check(t) != 0 || connect_bank(t) != 0)
        goto fail;
    if (dp_active()) {
        /* rank 0 alone talks to bankd, writes the run directory and publishes the events */
        t->mine = malloc(t->n * sizeof *t->mine);
        if (!t->mine ||
            rank_tasks_ep(cfg->tasks_ep, dp_rank(), dp_size(), t->tasks_ep,
                          sizeof t->tasks_ep) != 0)
            goto fail;
        t->cfg.tasks_ep = t->tasks_ep;
        if (dp_rank() != 0) {
            t->cfg.events_ep = "inproc://npid-trainer-rank-events";
            t->cfg.progress = 0;
        }
        log_info("rank %d of %d: %d images of every step of %d, tasks on %s", dp_rank(),
                 dp_size(), cfg->batch / dp_size(), cfg->batch, t->tasks_ep);
    }
    struct start st = { .cfg = &t->cfg, .run = t->run, .manifest = dataset_manifest(t->ds),
                        .n = t->n, .bv = t->ln.bv, .ck = t->ck };
    if ((dp_rank() == 0 && start_bank(&st) != 0) ||
        links_open_tasks(&t->ln, &t->cfg, t->run, dataset_manifest(t->ds), t->n) != 0)
        goto fail;
    ws = warm_src_of(t);
    if ((dp_rank() == 0 && start_position(&st, &ws, &t->pos) != 0) ||
        bankview_load_mirror(t->ln.bv) != 0)
        goto fail;
    ranks_share_start(t);
    if (t->cfg.sync_bn && dp_active()) /* after the warm start, which rank 0 runs alone */
        bn_set_sync(sum_over_ranks, NULL);
    links_warm_done(&t->ln);
    snprintf(path, sizeof path, "%s/metrics.jsonl", cfg->run_dir);
    if (dp_rank() == 0 && metrics_open(t->ln.mx, path) != 0)
        goto fail;
    return t;
fail:
    trainer_destroy(&t);
    return NULL;
}

void trainer_destroy(struct trainer **tp)
{
    if (!tp || !*tp)
        return;
    struct trainer *t = *tp;
    ckptr_destroy(&t->ck);
    links_close(&t->ln);
    learner_deinit(&t->learn);
    dataset_destroy(&t->ds);
    plan_deinit(&t->cur);
    free(t->mine);
    free(t);
    *tp = NULL;
}

/* ---- the loop ------------------------------------------------------------------------------ */

static void publish_metrics(struct trainer *t, double lr)
{
    struct taskq_stats ts;
    taskq_get_stats(t->ln.tq, &ts);
    const struct objective *o = t->learn.obj;
    metrics_publish(t->ln.mx, &t->pos, lr, objective_z(o), objective_z_estimate(o), &ts);
}

static void publish_epoch(struct trainer *t, uint32_t epoch, double secs)
{
    struct taskq_stats ts;
    taskq_get_stats(t->ln.tq, &ts);
    size_t expected = t->cfg.drop_last ? (size_t)t->pos.steps_per_epoch * (size_t)t->cfg.batch
                                       : t->n;
    metrics_epoch(t->ln.mx, &t->pos, epoch, secs, expected, t->cfg.drop_last, &ts);
}

/* Plans the current epoch and queues it from epoch_step (the loaders start on it at once;
 * the next epoch is planned at this one's end). */
static int plan_current_epoch(struct trainer *t)
{
    plan_epoch(&t->cur, t->pos.epoch);
    const uint32_t *perm = t->cur.perm;
    size_t len = t->n;
    if (dp_active()) { /* this rank's share of each step, so its steps are the plan's */
        len = 0;
        for (uint32_t s = 0; s < t->cur.steps; s++) {
            uint32_t c, lo, k;
            const uint32_t *idx = plan_step(&t->cur, s, &c);
            dp_slice(c, dp_rank(), dp_size(), &lo, &k);
            memcpy(t->mine + len, idx + lo, k * sizeof *idx);
            len += k;
        }
        perm = t->mine;
    }
    if (taskq_plan(t->ln.tq, t->pos.epoch, perm, len, (uint32_t)(t->cfg.batch / dp_size()),
                   t->pos.epoch_step, t->cfg.seed) < 0)
        return -1;
    return 0;
}

/* What train_step ends with besides 0: the ranks agreed to stop before the step, a bank
 * failure, a non-finite loss, ranks whose weights differ (--dp-check). */
enum { STEP_STOPPED = 1, STEP_BANK = -1, STEP_NONFINITE = -2, STEP_DIVERGED = -3 };

/* One training step on batch b, this rank's share of step (t->pos.epoch, t->pos.epoch_step):
 * with ranks, the loss is the whole step's on every rank, the gradients are summed over them,
 * and rank 0 alone reads and writes the bank. */
static int train_step(struct trainer *t, const struct taskq_batch *b, double lr)
{
    struct stage_times *w = metrics_window(t->ln.mx);
    double t0 = clock_seconds();
    uint32_t count; /* the step's images over all ranks; views * count rows: view 0, then 1 */
    const uint32_t *idx = plan_step(&t->cur, t->pos.epoch_step, &count);
    if (dp_active() && dp_any(sig_stop))
        return STEP_STOPPED; /* every rank stops before this step (its forward has
                                collectives with --sync-bn) */
    learner_forward(&t->learn, b->pixels, b->count * (uint32_t)t->learn.views);
    learner_gather(&t->learn, count);
    double t1 = clock_seconds();
    w->fwd += t1 - t0;

    if (bank_collect(t, count) != 0)
        return STEP_BANK;
    double t2 = clock_seconds();
    const float *neg = bankview_neg(t->ln.bv), *pos = bankview_pos(t->ln.bv);
    const float *mirror = bankview_mirror(t->ln.bv);
    w->bank += t2 - t1;

    double ps, ns;
    bankview_cosines(t->ln.bv, t->learn.feat, idx, count, &ps, &ns);
    w->pos_sim += ps;
    w->neg_sim += ns;
    int finite;
    double loss = learner_loss(&t->learn, pos, neg, mirror, idx, count, &finite);
    double t3 = clock_seconds();
    w->loss += t3 - t2;
    if (!finite) {
        log_error("step %" PRIu64 " (epoch %u, step %u): the loss is %g: stopping; the last "
                  "checkpoint (before this step) is kept in %s. Try a lower --lr or --warmup.",
                  t->pos.step, t->pos.epoch, t->pos.epoch_step, loss, ckptr_path(t->ck));
        return STEP_NONFINITE;
    }

    /* two views: the bank row moves towards the normalised mean of the two views' features,
       written over view 0's rows of the features (the loss and df are done with them) */
    if (t->learn.views == 2)
        objective_views_mean(t->learn.feat, (int)count, t->learn.dim, t->learn.feat);
    /* the bank update, then the next step's sample request on the same connection */
    if (dp_rank() == 0 && bankview_update(t->ln.bv, idx, t->learn.feat, count) != 0)
        return STEP_BANK;
    metrics_trained(t->ln.mx, idx, count, loss);
    t->pos.step++;
    /* advance the position before requesting the next sample */
    t->pos.epoch_step++;
    int more = 1;
    if (t->pos.epoch_step >= t->pos.steps_per_epoch)
        more = 0; /* the next epoch's first sample is requested after the epoch switch */
    if (more && (t->cfg.max_steps == 0 || t->pos.step < (uint64_t)t->cfg.max_steps) &&
        bank_request_sample(t) != 0)
        return STEP_BANK;
    double t4 = clock_seconds();
    w->bank += t4 - t3;

    learner_backward(&t->learn);
    double t5 = clock_seconds();
    w->bwd += t5 - t4;
    learner_sgd(&t->learn, lr);
    double t6 = clock_seconds();
    w->sgd += t6 - t5;
    w->loss_sum += loss;
    w->steps++;
    w->images += count;
    if (t->cfg.dp_check && t->pos.step % (uint64_t)t->cfg.dp_check == 0 &&
        check_weights(t) != 0)
        return STEP_DIVERGED;
    return 0;
}

/* The last epoch's checkpoint failed: nothing after it would save the run, so wait for the
 * disk and retry every FINAL_RETRY_S seconds until it is written (0) or a signal gives up
 * (-1). Loaders and bankd keep their connections meanwhile. */
static int trainer_final_checkpoint(struct trainer *t)
{
    while (!sig_stop) {
        log_warn("CHECKPOINT FAILED at the end of training: retrying every %.0f s until it is "
                 "written (free space in %s and the bank directory; SIGTERM gives up, the last "
                 "good checkpoint is step %" PRIu64 ")", FINAL_RETRY_S, t->cfg.run_dir,
                 ckptr_good_step(t->ck));
        for (double w0 = clock_seconds(); clock_seconds() - w0 < FINAL_RETRY_S && !sig_stop;)
            taskq_service(t->ln.tq), usleep(100000);
        if (!sig_stop && trainer_checkpoint(t, "epoch") == 0)
            return 0;
    }
    return -1;
}

/* What the run loop does after an event: go on, end well, or end failed. */
enum next { GO_ON, END_OK, END_FAIL };

/* The run's start: the current epoch planned (a resumed epoch's first steps counted as
 * trained) and the first sample requested. END_OK when every epoch is already trained. */
static enum next run_begin(struct trainer *t)
{
    if (t->pos.epoch_step >= t->pos.steps_per_epoch) { /* resumed exactly at an epoch end */
        t->pos.epoch++;
        t->pos.epoch_step = 0;
    }
    if (t->pos.epoch >= (uint32_t)t->cfg.epochs) {
        log_info("nothing to do: %d epochs already trained", t->cfg.epochs);
        return END_OK;
    }
    if (plan_current_epoch(t) != 0) {
        log_error("tasks: cannot plan epoch %u", t->pos.epoch);
        return END_FAIL;
    }
    for (uint32_t s = 0; s < t->pos.epoch_step; s++) {
        uint32_t c;
        const uint32_t *idx = plan_step(&t->cur, s, &c);
        metrics_delivered(t->ln.mx, idx, c);
    }
    if (bank_request_sample(t) != 0)
        return END_FAIL;
    log_info("training: %s, %zu images, batch %d, %u steps per epoch, epochs %u..%d, loss %s, "
             "views %d, m %zu, tau %g", net_describe(t->learn.net), t->n, t->cfg.batch,
             t->pos.steps_per_epoch, t->pos.epoch, t->cfg.epochs - 1, t->cfg.loss,
             t->learn.views, t->m, t->cfg.nce_t);
    return GO_ON;
}

/* A stop signal: a paired checkpoint (or, failing that, the unpaired weights); the next
 * step's sample, in flight on the data connection, is left unread. */
static enum next on_stop(struct trainer *t)
{
    log_info("signal %d: checkpointing and stopping", (int)sig_stop_signo);
    if (dp_rank() != 0)
        return END_OK; /* rank 0 checkpoints for every rank */
    bankview_stopping(t->ln.bv); /* the stop's requests wait out their retries */
    if (trainer_checkpoint(t, "signal") != 0) {
        log_error("stopping without a paired checkpoint (bankd did not answer within "
                  "--stop-timeout %g s, or the disk failed): the last checkpoint stands",
                  t->cfg.stop_timeout);
        trainer_save_unpaired(t);
        return END_FAIL;
    }
    return END_OK;
}

/* The end of the current epoch: its events and checkpoint, then the next epoch planned. */
static enum next on_epoch_end(struct trainer *t, double lr, double secs, const char **reason)
{
    uint32_t done_epoch = t->pos.epoch;
    publish_metrics(t, lr);
    publish_epoch(t, done_epoch, secs);
    t->pos.epoch++;
    t->pos.epoch_step = 0;
    int last = t->pos.epoch >= (uint32_t)t->cfg.epochs;
    if (last && t->cfg.refresh_bank && dp_rank() == 0) {
        struct warm_src ws = warm_src_of(t);
        /* a failed or stopped refresh leaves trained rows, some refreshed: still checkpointed */
        if (warm_refresh(&ws, t->ln.bv) != 0) {
            log_warn("refresh: not completed; the bank keeps its trained rows, some refreshed");
            if (sig_stop)
                return on_stop(t);
        }
    }
    int saved = trainer_checkpoint(t, "epoch") == 0 || (last && trainer_final_checkpoint(t) == 0);
    if (!saved && last) {
        *reason = "checkpoint failed";
        return END_FAIL;
    }
    if (!saved)
        log_warn("CHECKPOINT FAILED at the end of epoch %u (%" PRIu64 " in a row): training "
                 "continues and tries again at every epoch end; a crash now resumes from step "
                 "%" PRIu64 " (free space in %s and the bank directory)", done_epoch,
                 ckptr_failures(t->ck), ckptr_good_step(t->ck), t->cfg.run_dir);
    if (saved && t->cfg.keep_epochs && ckptr_keep_epoch(t->ck, done_epoch) != 0)
        log_warn("--keep-epochs: could not keep epoch %u's checkpoint pair", done_epoch);
    if (last)
        return END_OK;
    if (plan_current_epoch(t) != 0 || bank_request_sample(t) != 0) {
        *reason = "planning failed";
        return END_FAIL;
    }
    return GO_ON;
}

/* After a trained step: metrics, --max-steps, the periodic checkpoint. */
static enum next after_step(struct trainer *t, double lr, const char **reason)
{
    if (t->pos.step % (uint64_t)t->cfg.metrics_every == 0)
        publish_metrics(t, lr);
    if (t->cfg.max_steps && t->pos.step >= (uint64_t)t->cfg.max_steps) {
        publish_metrics(t, lr);
        *reason = "max-steps";
        return trainer_checkpoint(t, "max-steps") == 0 ? END_OK : END_FAIL;
    }
    if (t->cfg.ckpt_every && t->pos.step % (uint64_t)t->cfg.ckpt_every == 0 &&
        t->pos.epoch_step < t->pos.steps_per_epoch) {
        /* on the control connection: the next step's sample stays in flight */
        if (trainer_checkpoint(t, "periodic") != 0)
            log_warn("periodic checkpoint failed; training continues");
    }
    return GO_ON;
}

/* One turn of the run loop: the next batch from the loaders, trained, or the epoch's end. */
static enum next run_turn(struct trainer *t, double *epoch_start, double *last_wait_log,
                          const char **reason)
{
    const struct run_pos *p = &t->pos;
    double lr = lr_at(&t->learn.sched,
                      (double)p->epoch + (double)p->epoch_step / p->steps_per_epoch);
    struct taskq_batch b;
    double w0 = clock_seconds();
    int rc = taskq_next(t->ln.tq, 1000, &b);
    metrics_window(t->ln.mx)->data += clock_seconds() - w0;
    if (dp_active() && sig_stop && rc != TASKQ_BATCH) {
        dp_any(1); /* the ranks stop together: the others learn it in their next step */
        *reason = "signal";
        return on_stop(t);
    }
    if (rc == TASKQ_TIMEOUT) {
        if (clock_seconds() - *last_wait_log > 10) {
            links_log_waiting(&t->ln, &t->cfg, "training");
            *last_wait_log = clock_seconds();
        }
        return GO_ON;
    }
    if (rc < 0) {
        if (sig_stop)
            return GO_ON;
        log_error("tasks: %s", taskq_error(t->ln.tq));
        *reason = "loader failure";
        return END_FAIL;
    }
    if (rc == TASKQ_EPOCH_END || rc == TASKQ_IDLE) {
        if (rc == TASKQ_EPOCH_END && b.epoch != t->pos.epoch)
            return GO_ON; /* the end of a plan we no longer follow */
        double secs = clock_seconds() - *epoch_start;
        *epoch_start = clock_seconds();
        return on_epoch_end(t, lr, secs, reason);
    }
    NPID_CHECK(rc == TASKQ_BATCH);
    NPID_CHECK(b.epoch == t->pos.epoch && b.step == t->pos.epoch_step);
    int src = train_step(t, &b, lr);
    if (src == STEP_STOPPED) {
        *reason = "signal";
        return on_stop(t);
    }
    if (src != 0) {
        *reason = src == STEP_NONFINITE ? "non-finite loss" :
                  src == STEP_DIVERGED ? "ranks' weights differ" : "bank failure";
        if (src == STEP_BANK && sig_stop)
            trainer_save_unpaired(t); /* a signal inside the step's bank update */
        return END_FAIL;
    }
    enum next n = after_step(t, lr, reason);
    if (n == GO_ON)
        taskq_service(t->ln.tq);
    return n;
}

int trainer_run(struct trainer *t)
{
    const char *reason = "done";
    t->run_start = clock_seconds();
    if (t->cfg.init_only) {
        /* the initialised, untrained network and its bank: a baseline to evaluate */
        int rc = trainer_checkpoint(t, "init-only");
        metrics_end(t->ln.mx, &t->pos, rc == 0 ? "ok" : "failed", "init-only");
        return rc == 0 ? EXIT_OK : EXIT_FAIL;
    }
    enum next n = run_begin(t);
    if (n == END_FAIL)
        return EXIT_FAIL;
    if (n == END_OK) {
        metrics_end(t->ln.mx, &t->pos, "ok", "done");
        return EXIT_OK;
    }
    struct stage_times *win = metrics_window(t->ln.mx);
    memset(win, 0, sizeof *win);
    win->start = clock_seconds();
    double epoch_start = clock_seconds(), last_wait_log = clock_seconds();
    while (n == GO_ON) {
        if (sig_stop && !dp_active()) { /* with ranks, they agree on it in the step */
            n = on_stop(t);
            reason = "signal";
        } else {
            n = run_turn(t, &epoch_start, &last_wait_log, &reason);
        }
    }
    int status = n == END_OK ? EXIT_OK : EXIT_FAIL;
    if (t->cfg.progress && isatty(STDERR_FILENO))
        fputc('\n', stderr);
    metrics_end(t->ln.mx, &t->pos, status == EXIT_OK ? "ok" : "failed", reason);
    log_info("training %s after %" PRIu64 " steps (%s), %.1f s",
             status == EXIT_OK ? "ended" : "FAILED", t->pos.step, reason,
             clock_seconds() - t->run_start);
    return status;
}
