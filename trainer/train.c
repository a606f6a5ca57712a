/* The training run: see train.h. */
#include "trainer/train.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/augment.h"
#include "common/clock.h"
#include "common/curve.h"
#include "common/dataset.h"
#include "common/durable.h"
#include "common/log.h"
#include "common/nn/net.h"
#include "common/nn/sgd.h"
#include "common/pixnorm.h"
#include "common/sig.h"
#include "common/taskq.h"
#include "trainer/bankview.h"
#include "trainer/ckptr.h"
#include "trainer/metrics.h"
#include "trainer/objective.h"
#include "trainer/plan.h"
#include "trainer/warm.h"

enum draw_mode { DRAW_SHARED = 0, DRAW_SOFTMAX = 1 };

#define FINAL_RETRY_S 10.0


struct trainer {
    struct trainer_cfg cfg;
    char run[128];
    char cid[192];
    char config_json[8192];

    struct dataset *ds;
    size_t n;
    int dim;
    int size;
    int mode;                 /* enum draw_mode */
    int infonce;              /* DRAW_SHARED scored with InfoNCE instead of NCE (--loss infonce) */
    int views;                /* augmented views per image (--views; 2 only with infonce) */
    size_t m;                 /* negatives per step */

    struct net *net;
    struct sgd *opt;
    struct objective *obj;
    struct lr_schedule sched;
    struct bankview *bv;      /* the bank: client, negatives and positives, or the mirror */
    struct bankc *bank;       /* bankview_client(bv): the control requests */
    struct curve_sock bank_curve; /* CURVE client options for bankd (kept: the client's) */
    struct curve_sock tasks_curve; /* CURVE server options of the task socket (with zap) */
    struct curve_sock events_curve; /* the same for the events PUB socket */
    struct curve_zap *zap;    /* admits the loaders of --curve-allow; NULL: tasks in clear */
    struct ckptr *ck;         /* checkpoints and the resume */
    struct taskq *tq;
    struct metrics *mx;       /* events and metrics.jsonl */

    struct plan cur;          /* this epoch's plan */
    uint32_t steps_per_epoch;

    /* buffers, allocated once */
    float *x;                 /* (B, 3, S, S) normalised input */
    float *feat;              /* (B, d) this step's features (copied from the net) */
    float *df;                /* (B, d) */

    /* position: the next step to run */
    uint64_t step;            /* global steps done */
    uint32_t epoch, epoch_step;

    struct pixnorm norm;      /* the input normalisation */
    double run_start;
};

/* ---- helpers ----------------------------------------------------------------------------- */

static double now_s(void)
{
    return clock_seconds();
}

/* Converts count images of uint8 CHW pixels to the network's normalised float input. */
static void pixels_normalise(const struct trainer *t, const uint8_t *pix, uint32_t count, float *x)
{
    pixnorm_apply(&t->norm, pix, count, (size_t)t->size * (size_t)t->size, x);
}

static int all_finite(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i]))
            return 0;
    return 1;
}

/* Sends the sample request of the next step (t->epoch, t->epoch_step). */
static int bank_request_sample(struct trainer *t)
{
    uint32_t count;
    const uint32_t *idx = plan_step(&t->cur, t->epoch_step, &count);
    return bankview_request(t->bv, t->step, idx, count);
}

/* ---- checkpoints --------------------------------------------------------------------------- */

static struct ckptr_pos run_pos(const struct trainer *t)
{
    struct ckptr_pos p = { t->step, t->epoch, t->epoch_step };
    return p;
}

static struct metrics_pos metrics_pos_of(const struct trainer *t)
{
    struct metrics_pos p = { t->step, t->epoch, t->epoch_step, t->steps_per_epoch };
    return p;
}

/* A paired checkpoint of the current position, announced (event + metrics.jsonl). */
static int trainer_checkpoint(struct trainer *t, const char *why)
{
    struct ckptr_pos pos = run_pos(t);
    struct ckptr_written w;
    if (ckptr_save(t->ck, &pos, why, &w) != 0)
        return -1;
    struct metrics_pos mp = metrics_pos_of(t);
    metrics_checkpoint(t->mx, &mp, ckptr_path(t->ck), &w, why);
    return 0;
}

static void trainer_save_unpaired(struct trainer *t)
{
    struct ckptr_pos pos = run_pos(t);
    ckptr_save_unpaired(t->ck, &pos);
}

/* ---- data-dependent start: warm bank, centred output ------------------------------------- */

/* The in-process start (trainer/warm.h) over this run's network, data and buffers. */
static void service_tasks(void *tq)
{
    taskq_service(tq);
}

static struct warm_src warm_src_of(struct trainer *t)
{
    struct warm_src w = {
        .net = t->net, .ds = t->ds, .preset = t->cfg.aug, .size = t->size,
        .batch = (uint32_t)t->cfg.batch, .dim = t->dim, .seed = t->cfg.seed, .norm = &t->norm,
        .x = t->x, .feat = t->feat, .stop = &sig_stop, .idle = service_tasks, .idle_arg = t->tq,
    };
    return w;
}

/* ---- construction ---------------------------------------------------------------------------- */

static const char *path_base(const char *p)
{
    const char *s = strrchr(p, '/');
    while (s && s[1] == 0 && s != p) { /* trailing slash */
        const char *q = s - 1;
        while (q > p && *q != '/')
            q--;
        return *q == '/' ? q + 1 : q;
    }
    return s ? s + 1 : p;
}

/* --size 0, --stem auto and --epochs 0: the rules of docs/recipes.md ("Resolution, stem and
 * epochs from the data") on the dataset, logged with the reason; given values are kept. */
static int trainer_pick_input(struct trainer *t)
{
    int size = t->cfg.size;
    char why[256] = "";
    if (size == 0) {
        uint32_t sh, lo;
        size_t bad, got = dataset_probe_sides(t->ds, 200, &sh, &lo, &bad);
        if (got == 0) {
            log_error("--size 0: none of %zu sampled images has a readable header; give --size",
                      bad);
            return -1;
        }
        size = trainer_size_rule(sh);
        snprintf(why, sizeof why, "the median image of %zu sampled is %ux%u (short side %u%s)", got,
                 lo, sh, sh,
                 sh < 40 ? ": 32 px" : sh > 128 ? ", capped at 128" : ", to a multiple of 16");
    } else {
        snprintf(why, sizeof why, "--size %d given", size);
    }
    const char *stem = t->cfg.stem;
    int st = net_stem_parse(stem), auto_stem = st < 0;
    if (auto_stem) {
        st = trainer_stem_rule(size);
        stem = net_stem_name(st);
    }
    int epochs = t->cfg.epochs;
    if (epochs == 0) {
        int v = t->cfg.views;
        epochs = trainer_epochs_rule(t->n, v);
        log_info("epochs: %d, the fewest that show the network %d views (%zu training images, "
                 "%d view%s each an epoch; within %d..%d epochs)", epochs, TRAINER_IMAGES_SEEN,
                 t->n, v, v > 1 ? "s" : "", trainer_epochs_rule(0, v), 200 / (v > 1 ? v : 1));
    }
    trainer_cfg_set_input(&t->cfg, size, stem, epochs);
    int maps = (size + net_stem_stride(st) - 1) / net_stem_stride(st);
    log_info("input: %d px, stem %s (%dx%d feature maps): %s; %s", size, stem, maps, maps, why,
             auto_stem ? "the stem's stride brings the maps nearest 32 px" : "--stem given");
    return 0;
}

/* The training set, and the input size and stem it implies (trainer_pick_input). */
static int open_dataset(struct trainer *t)
{
    const struct trainer_cfg *cfg = &t->cfg;
    char err[DATASET_ERR_LEN];
    t->ds = dataset_open_opts(cfg->data, "train", &cfg->dso, err, sizeof err);
    if (!t->ds) {
        log_error("dataset: %s", err);
        return -1;
    }
    t->n = dataset_count(t->ds);
    log_info("dataset: %s: %zu training images in %zu classes (%zu other files skipped), "
             "manifest %.12s", dataset_root(t->ds), t->n, dataset_num_classes(t->ds),
             dataset_skipped(t->ds), dataset_manifest(t->ds));
    /* the layout, and when nothing is labelled the trainer still trains: NPID needs no labels */
    log_info("dataset layout: %s%s", dataset_describe(t->ds),
             dataset_labelled(t->ds) == 0 ? "; no labels: training unlabelled (kNN and linear "
                                            "evaluation need labels)" : "");
    if (trainer_pick_input(t) != 0)
        return -1;
    t->size = t->cfg.size;
    if (trainer_cfg_json(&t->cfg, t->config_json, sizeof t->config_json) < 0) {
        log_error("configuration too long to record");
        return -1;
    }
    return 0;
}

/* The network, the optimiser, the objective, the learning-rate schedule and the step's
 * buffers. */
static int build_model(struct trainer *t)
{
    const struct trainer_cfg *cfg = &t->cfg;
    t->mode = cfg->nce_k == 0 ? DRAW_SOFTMAX : DRAW_SHARED;
    t->m = cfg->nce_k == 0 ? t->n : (size_t)cfg->nce_k;
    t->infonce = strcmp(cfg->loss, "infonce") == 0; /* config.c: nce_k > 0 then */
    t->views = cfg->views; /* config.c: 2 only with infonce */
    int rows = cfg->batch * cfg->views;
    struct net_config nc = { cfg->model, cfg->low_dim, cfg->size, cfg->size, rows, cfg->seed,
                             net_init_parse(cfg->init), net_stem_parse(cfg->stem), cfg->head };
    t->net = cfg->threads > 0 ? net_new_threads(&nc, cfg->threads) : net_new(&nc);
    if (!t->net)
        return -1;
    log_info("network: %s", net_describe(t->net));
    t->opt = sgd_new(net_param_count(t->net), (float)cfg->momentum, (float)cfg->wd);
    struct objective_config oc = {
        .max_batch = rows, .dim = cfg->low_dim, .m = t->mode == DRAW_SHARED ? t->m : 0,
        .n = t->n, .tau = cfg->nce_t,
        .z_mode = !strcmp(cfg->z_mode, "ema") ? OBJ_Z_EMA : OBJ_Z_FROZEN,
        .z_momentum = cfg->z_momentum, .prox_lambda = cfg->prox_lambda,
        .softmax = t->mode == DRAW_SOFTMAX, .team = net_team(t->net),
    };
    t->obj = objective_new(&oc);
    if (!t->opt || !t->obj)
        return -1;
    if (cfg->nce_z > 0)
        objective_set_z(t->obj, cfg->nce_z);
    if (trainer_cfg_schedule(cfg, &t->sched) != 0)
        return -1;
    size_t px = (size_t)rows * 3 * (size_t)t->size * (size_t)t->size;
    t->x = malloc(px * sizeof(float));
    t->feat = malloc((size_t)rows * (size_t)t->dim * sizeof(float));
    t->df = malloc((size_t)rows * (size_t)t->dim * sizeof(float));
    if (!t->x || !t->feat || !t->df) {
        log_error("out of memory allocating training buffers");
        return -1;
    }
    if (plan_init(&t->cur, t->n, (uint32_t)cfg->batch, cfg->seed, cfg->drop_last) != 0) {
        log_error("cannot plan %zu images in batches of %d (--drop-last leaves no step?)", t->n,
                  cfg->batch);
        return -1;
    }
    t->steps_per_epoch = t->cur.steps;
    return 0;
}

/* The bank view with the run's write token, and the checkpoints that pair with its
 * snapshots. */
static int connect_bank(struct trainer *t)
{
    const struct trainer_cfg *cfg = &t->cfg;
    char cerr[PATH_MAX + 300];
    /* --curve-key alone may be for the task socket only (--curve-allow): no CURVE to bankd */
    int con = !cfg->bank_server_key[0] ? 0 :
              curve_sock_client_flags(&t->bank_curve, cfg->curve_key, cfg->bank_server_key,
                                      "bank-server-key", cerr, sizeof cerr);
    if (con < 0) {
        log_error("bank: %s", cerr);
        return -1;
    }
    if (con)
        log_info("bank: CURVE on (server key %s, this trainer's %s)", t->bank_curve.server_pub,
                 t->bank_curve.own.pub);
    struct bankview_cfg bc = {
        .endpoint = cfg->bank_ep, .cid = t->cid, .timeout_s = cfg->bank_timeout,
        .stop_timeout_s = cfg->stop_timeout, .seed = cfg->seed, .exclude_pos = cfg->exclude_pos,
        .n = t->n, .dim = t->dim, .m = t->mode == DRAW_SHARED ? t->m : 0,
        .max_batch = (uint32_t)cfg->batch, .momentum = (float)cfg->nce_m, .stop = &sig_stop,
        .curve = con ? &t->bank_curve : NULL,
    };
    t->bv = bankview_new(&bc);
    if (!t->bv)
        return -1;
    t->bank = bankview_client(t->bv);
    struct ckptr_parts cp = { t->net, t->opt, t->obj, t->bv, t->config_json, cfg->seed,
                              { "", (uint32_t)cfg->low_dim, (uint32_t)cfg->size,
                                (uint32_t)net_stem_parse(cfg->stem), (uint32_t)cfg->head } };
    snprintf(cp.model.name, sizeof cp.model.name, "%s", cfg->model);
    t->ck = ckptr_new(cfg->run_dir, &cp);
    if (!t->ck) {
        log_error("out of memory");
        return -1;
    }
    bankc_set_init_mode(t->bank,
                        !strcmp(cfg->bank_init, "unit") ? BANK_INIT_UNIT : BANK_INIT_UNIFORM);
    /* the run's write token: the bank this run creates (or claims) takes writes only with it,
       so no other client can overwrite rows or roll the bank back; kept across --resume in
       RUN_DIR/bank.token */
    char tok_path[4200], tok[BANKC_TOKEN_HEX + 1], terr[4400];
    int tok_new = 0;
    snprintf(tok_path, sizeof tok_path, "%s/bank.token", cfg->run_dir);
    if (bankc_token_file(tok_path, tok, &tok_new, terr, sizeof terr) != 0) {
        log_error("bank: %s", terr);
        return -1;
    }
    int trc = bankc_set_token(t->bank, tok);
    memset(tok, 0, sizeof tok);
    NPID_CHECK(trc == 0);
    log_info("bank: write token %s %s", tok_new ? "created in" : "read from", tok_path);
    return 0;
}

/* bankd's bank for this run: created, or found. Resuming on a bankd without a bank defers
 * (*deferred): the restore creates it from the snapshot (so a resume that fails leaves bankd
 * as it was), and init only checks it afterwards. */
static int init_bank(struct trainer *t, int resume, int *created, uint64_t *bstep, int *deferred)
{
    const struct trainer_cfg *cfg = &t->cfg;
    struct bankc_info binfo;
    *created = 0;
    *bstep = 0;
    *deferred = resume && bankc_info(t->bank, &binfo) != 0 &&
                strcmp(bankc_error_code(t->bank), "ENOBANK") == 0;
    log_info("bank: connecting to %s (%zu x %d)", cfg->bank_ep, t->n, cfg->low_dim);
    if (*deferred) {
        log_info("bank: bankd holds none; the resume restores it from the checkpoint's snapshot");
        return 0;
    }
    if (bankc_init(t->bank, t->n, (uint64_t)cfg->low_dim, cfg->seed, t->run,
                   dataset_manifest(t->ds), created, bstep) != 0) {
        log_error("bank: init failed: %s", bankc_error(t->bank));
        return -1;
    }
    bankview_set_step(t->bv, *bstep);
    log_info("bank: %s, at update %" PRIu64, *created ? "created" : "exists", *bstep);
    return 0;
}

/* The task queue the loaders connect to, and the event socket. */
static int open_sockets(struct trainer *t)
{
    const struct trainer_cfg *cfg = &t->cfg;
    struct taskq_opts to;
    trainer_cfg_task_opts(cfg, t->run, &to);
    to.stop = &sig_stop;
    char terr[PATH_MAX + 300];
    if (cfg->curve_allow[0]) {
        /* the ZAP handler runs before the task socket binds: no loader is admitted unchecked */
        if (curve_sock_server(&t->tasks_curve, cfg->curve_key, "tasks", terr, sizeof terr) != 0) {
            log_error("tasks: --curve-key: %s", terr);
            return -1;
        }
        t->zap = curve_zap_new(msg_ctx(), cfg->curve_allow, terr, sizeof terr);
        if (!t->zap) {
            log_error("tasks: --curve-allow: %s", terr);
            return -1;
        }
        to.curve = &t->tasks_curve;
        t->events_curve = t->tasks_curve;
        t->events_curve.domain = "events";
        log_info("tasks, events: CURVE on: public key %s, %zu client keys allowed (%s)",
                 t->tasks_curve.own.pub, curve_zap_allowed_keys(t->zap), cfg->curve_allow);
    }
    t->tq = taskq_new(cfg->tasks_ep, dataset_manifest(t->ds), &to, terr, sizeof terr);
    if (!t->tq) {
        log_error("tasks: %s", terr);
        return -1;
    }
    t->mx = metrics_new(cfg->events_ep, t->run, cfg->allow_remote,
                        t->zap ? &t->events_curve : NULL, t->n, cfg->progress);
    if (!t->mx)
        return -1;
    log_info("listening: tasks %s, events %s", taskq_endpoint(t->tq), cfg->events_ep);
    return 0;
}

/* Where the run starts: the checkpoint's position (resume), or step 0 after the in-process
 * start of a fresh run. */
static int start_position(struct trainer *t, int resume, int created, uint64_t bstep,
                          int deferred)
{
    const struct trainer_cfg *cfg = &t->cfg;
    if (resume) {
        struct ckptr_pos pos;
        if (ckptr_restore(t->ck, &pos) != 0)
            return -1;
        t->step = pos.step;
        t->epoch = pos.epoch;
        t->epoch_step = pos.epoch_step;
        if (deferred && bankc_init(t->bank, t->n, (uint64_t)cfg->low_dim, cfg->seed, t->run,
                                   dataset_manifest(t->ds), &created, &bstep) != 0) {
            log_error("bank: the restored bank does not fit this run: %s", bankc_error(t->bank));
            return -1;
        }
        return 0;
    }
    if (!created && bstep != 0) {
        log_error("bank: bankd already holds this run's bank at update %" PRIu64 "; pass --resume "
                  "to continue the run, or start bankd with an empty --dir for a new one", bstep);
        return -1;
    }
    struct warm_src ws = warm_src_of(t);
    if (cfg->center_init && warm_center(&ws) != 0)
        return -1;
    if (!strcmp(cfg->bank_init, "warm") && warm_bank(&ws, t->bv) != 0)
        return -1;
    return 0;
}

struct trainer *trainer_new(const struct trainer_cfg *cfg)
{
    struct trainer *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->cfg = *cfg;
    t->dim = cfg->low_dim;
    t->size = cfg->size;
    if (cfg->run_name && *cfg->run_name)
        snprintf(t->run, sizeof t->run, "%s", cfg->run_name);
    else
        snprintf(t->run, sizeof t->run, "%s", path_base(cfg->run_dir));
    /* a stable client id: the same run keeps its bankd request cache across restarts */
    snprintf(t->cid, sizeof t->cid, "trainer:%s", t->run);
    pixnorm_for(cfg->aug, &t->norm);
    char path[4096 + 32];
    snprintf(path, sizeof path, "%s/checkpoints", cfg->run_dir);
    if (mkdir_p(path) != 0) {
        log_error("cannot create %s: %s", path, strerror(errno));
        goto fail;
    }
    if (open_dataset(t) != 0 || build_model(t) != 0 || connect_bank(t) != 0)
        goto fail;
    int resume = t->cfg.resume == 1;
    if (t->cfg.resume == CFG_AUTO_VALUE) {
        /* auto: resume exactly when a checkpoint (or its .prev) is there to resume from */
        resume = ckptr_present(t->ck);
        log_info(resume ? "resume auto: %s holds a checkpoint; continuing the run"
                        : "resume auto: no checkpoint in %s; starting a fresh run", cfg->run_dir);
    }
    int created, deferred;
    uint64_t bstep;
    if (init_bank(t, resume, &created, &bstep, &deferred) != 0 || open_sockets(t) != 0 ||
        start_position(t, resume, created, bstep, deferred) != 0 ||
        bankview_load_mirror(t->bv) != 0)
        goto fail;
    snprintf(path, sizeof path, "%s/metrics.jsonl", cfg->run_dir);
    if (metrics_open(t->mx, path) != 0)
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
    metrics_destroy(&t->mx);
    taskq_destroy(&t->tq);
    curve_zap_destroy(&t->zap);
    ckptr_destroy(&t->ck);
    bankview_destroy(&t->bv);
    objective_destroy(&t->obj);
    sgd_destroy(&t->opt);
    net_destroy(&t->net);
    dataset_destroy(&t->ds);
    plan_deinit(&t->cur);
    free(t->x);
    free(t->feat);
    free(t->df);
    free(t);
    *tp = NULL;
}

/* ---- the loop ------------------------------------------------------------------------------ */

static void publish_metrics(struct trainer *t, double lr)
{
    struct taskq_stats ts;
    taskq_get_stats(t->tq, &ts);
    struct metrics_pos p = metrics_pos_of(t);
    metrics_publish(t->mx, &p, lr, objective_z(t->obj), objective_z_estimate(t->obj), &ts);
}

static void publish_epoch(struct trainer *t, uint32_t epoch, double secs)
{
    struct taskq_stats ts;
    taskq_get_stats(t->tq, &ts);
    struct metrics_pos p = metrics_pos_of(t);
    size_t expected = t->cfg.drop_last ? (size_t)t->steps_per_epoch * (size_t)t->cfg.batch : t->n;
    metrics_epoch(t->mx, &p, epoch, secs, expected, t->cfg.drop_last, &ts);
}

static void publish_end(struct trainer *t, const char *status, const char *reason)
{
    struct metrics_pos p = metrics_pos_of(t);
    metrics_end(t->mx, &p, status, reason);
}

/* Plans the current epoch and queues it from epoch_step (the loaders start on it at once;
 * the next epoch is planned at this one's end). */
static int plan_current_epoch(struct trainer *t)
{
    plan_epoch(&t->cur, t->epoch);
    if (taskq_plan(t->tq, t->epoch, t->cur.perm, t->n, (uint32_t)t->cfg.batch, t->epoch_step,
                   t->cfg.seed) < 0)
        return -1;
    return 0;
}

/* Alignment and uniformity, for the metrics: the mean cosine of each of the step's features
 * with its own bank row and with one other (a negative, or the next row of the mirror),
 * added to the window. */
static void window_cosines(const struct trainer *t, const uint32_t *idx, uint32_t count,
                           struct stage_times *w)
{
    const float *neg = bankview_neg(t->bv), *pos = bankview_pos(t->bv);
    const float *mirror = bankview_mirror(t->bv);
    size_t d = (size_t)t->dim;
    double ps = 0, ns = 0;
    for (uint32_t i = 0; i < count; i++) {
        const float *fi = t->feat + i * d;
        const float *p = t->mode == DRAW_SHARED ? pos + i * d : mirror + idx[i] * d;
        const float *q = t->mode == DRAW_SHARED ? neg + (i % t->m) * d
                                                : mirror + ((idx[i] + 1) % t->n) * d;
        double a = 0, c = 0;
        for (size_t k = 0; k < d; k++) {
            a += (double)fi[k] * p[k];
            c += (double)fi[k] * q[k];
        }
        ps += a;
        ns += c;
    }
    w->pos_sim += ps / (double)count;
    w->neg_sim += ns / (double)count;
}

/* One training step on batch b (which must be step (t->epoch, t->epoch_step)). */
static int train_step(struct trainer *t, const struct taskq_batch *b, double lr)
{
    struct stage_times *w = metrics_window(t->mx);
    double t0 = now_s();
    uint32_t count = b->count, rows = count * (uint32_t)t->views; /* views: view 0, then 1 */
    pixels_normalise(t, b->pixels, rows, t->x);
    const float *f = net_forward(t->net, t->x, (int)rows, 1);
    memcpy(t->feat, f, (size_t)rows * (size_t)t->dim * sizeof(float));
    double t1 = now_s();
    w->fwd += t1 - t0;

    if (bankview_collect(t->bv) != 0)
        return -1;
    double t2 = now_s();
    const float *neg = bankview_neg(t->bv), *pos = bankview_pos(t->bv);
    const float *mirror = bankview_mirror(t->bv);
    w->bank += t2 - t1;

    window_cosines(t, b->indices, count, w);
    double loss;
    if (t->views == 2)
        loss = objective_infonce_views(t->obj, t->feat, neg, (int)count, t->df);
    else if (t->mode == DRAW_SHARED && t->infonce)
        loss = objective_infonce_shared(t->obj, t->feat, pos, neg, (int)count, t->df);
    else if (t->mode == DRAW_SHARED)
        loss = objective_nce_shared(t->obj, t->feat, pos, neg, (int)count, t->df);
    else
        loss = objective_softmax(t->obj, t->feat, mirror, b->indices, (int)count, t->df);
    double t3 = now_s();
    w->loss += t3 - t2;
    if (!isfinite(loss) || !all_finite(t->df, (size_t)rows * (size_t)t->dim)) {
        log_error("step %" PRIu64 " (epoch %u, step %u): the loss is %g: stopping; the last "
                  "checkpoint (before this step) is kept in %s. Try a lower --lr or --warmup.",
                  t->step, t->epoch, t->epoch_step, loss, ckptr_path(t->ck));
        return -2;
    }

    /* two views: the bank row moves towards the normalised mean of the two views' features,
       written over view 0's rows of t->feat (the loss and df are done with them) */
    if (t->views == 2)
        objective_views_mean(t->feat, (int)count, t->dim, t->feat);
    /* the bank update, then the next step's sample request on the same connection */
    if (bankview_update(t->bv, b->indices, t->feat, count) != 0)
        return -1;
    metrics_trained(t->mx, b->indices, count, loss);
    t->step++;
    /* advance the position before requesting the next sample */
    t->epoch_step++;
    int more = 1;
    if (t->epoch_step >= t->steps_per_epoch)
        more = 0; /* the next epoch's first sample is requested after the epoch switch */
    if (more && (t->cfg.max_steps == 0 || t->step < (uint64_t)t->cfg.max_steps) &&
        bank_request_sample(t) != 0)
        return -1;
    double t4 = now_s();
    w->bank += t4 - t3;

    net_backward(t->net, t->df);
    double t5 = now_s();
    w->bwd += t5 - t4;
    sgd_step(t->opt, net_params(t->net), net_grads(t->net), (float)lr);
    double t6 = now_s();
    w->sgd += t6 - t5;
    w->loss_sum += loss;
    w->steps++;
    w->images += count;
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
        for (double w0 = now_s(); now_s() - w0 < FINAL_RETRY_S && !sig_stop;)
            taskq_service(t->tq), usleep(100000);
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
    if (t->epoch_step >= t->steps_per_epoch) { /* resumed exactly at an epoch end */
        t->epoch++;
        t->epoch_step = 0;
    }
    if (t->epoch >= (uint32_t)t->cfg.epochs) {
        log_info("nothing to do: %d epochs already trained", t->cfg.epochs);
        return END_OK;
    }
    if (plan_current_epoch(t) != 0) {
        log_error("tasks: cannot plan epoch %u", t->epoch);
        return END_FAIL;
    }
    for (uint32_t s = 0; s < t->epoch_step; s++) {
        uint32_t c;
        const uint32_t *idx = plan_step(&t->cur, s, &c);
        metrics_delivered(t->mx, idx, c);
    }
    if (bank_request_sample(t) != 0)
        return END_FAIL;
    log_info("training: %s, %zu images, batch %d, %u steps per epoch, epochs %u..%d, loss %s, "
             "views %d, m %zu, tau %g", net_describe(t->net), t->n, t->cfg.batch,
             t->steps_per_epoch, t->epoch, t->cfg.epochs - 1, t->cfg.loss, t->views,
             t->mode == DRAW_SHARED ? t->m : 0, t->cfg.nce_t);
    return GO_ON;
}

/* A stop signal: the sample in flight collected, then a paired checkpoint (or, failing
 * that, the unpaired weights). */
static enum next on_stop(struct trainer *t)
{
    log_info("signal %d: checkpointing and stopping", (int)sig_stop_signo);
    bankview_stopping(t->bv); /* the stop's requests wait out their retries */
    if (bankview_pending(t->bv) && bankview_collect(t->bv) != 0) {
        log_error("stopping without a paired checkpoint: bankd did not answer within "
                  "--stop-timeout %g s (the last checkpoint stands)", t->cfg.stop_timeout);
        trainer_save_unpaired(t);
        return END_FAIL;
    }
    if (trainer_checkpoint(t, "signal") != 0) {
        trainer_save_unpaired(t);
        return END_FAIL;
    }
    return END_OK;
}

/* The end of the current epoch: its events and checkpoint, then the next epoch planned. */
static enum next on_epoch_end(struct trainer *t, double lr, double secs, const char **reason)
{
    uint32_t done_epoch = t->epoch;
    publish_metrics(t, lr);
    publish_epoch(t, done_epoch, secs);
    t->epoch++;
    t->epoch_step = 0;
    int last = t->epoch >= (uint32_t)t->cfg.epochs;
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
    if (t->step % (uint64_t)t->cfg.metrics_every == 0)
        publish_metrics(t, lr);
    if (t->cfg.max_steps && t->step >= (uint64_t)t->cfg.max_steps) {
        publish_metrics(t, lr);
        *reason = "max-steps";
        return trainer_checkpoint(t, "max-steps") == 0 ? END_OK : END_FAIL;
    }
    if (t->cfg.ckpt_every && t->step % (uint64_t)t->cfg.ckpt_every == 0 &&
        t->epoch_step < t->steps_per_epoch) {
        /* the next sample is in flight: collect it first so the bank connection is idle,
           then re-request it after the snapshot (same rows: no update in between) */
        if (bankview_pending(t->bv) && bankview_collect(t->bv) != 0)
            return END_FAIL;
        if (trainer_checkpoint(t, "periodic") != 0)
            log_warn("periodic checkpoint failed; training continues");
        if (bank_request_sample(t) != 0)
            return END_FAIL;
    }
    return GO_ON;
}

/* One turn of the run loop: the next batch from the loaders, trained, or the epoch's end. */
static enum next run_turn(struct trainer *t, double *epoch_start, double *last_wait_log,
                          const char **reason)
{
    double lr = lr_at(&t->sched, (double)t->epoch + (double)t->epoch_step / t->steps_per_epoch);
    struct taskq_batch b;
    double w0 = now_s();
    int rc = taskq_next(t->tq, 1000, &b);
    metrics_window(t->mx)->data += now_s() - w0;
    if (rc == TASKQ_TIMEOUT) {
        if (now_s() - *last_wait_log > 10) {
            struct taskq_stats ts;
            taskq_get_stats(t->tq, &ts);
            int by_list = !t->cfg.data || !*t->cfg.data;
            log_info("waiting for loaders (%u connected, %u tasks in flight); start one with: "
                     "npid-loader %s %s --tasks %s", ts.loaders, ts.in_flight,
                     by_list ? "--list" : "--data", by_list ? t->cfg.dso.list : t->cfg.data,
                     taskq_endpoint(t->tq));
            *last_wait_log = now_s();
        }
        return GO_ON;
    }
    if (rc < 0) {
        if (sig_stop)
            return GO_ON;
        log_error("tasks: %s", taskq_error(t->tq));
        *reason = "loader failure";
        return END_FAIL;
    }
    if (rc == TASKQ_EPOCH_END || rc == TASKQ_IDLE) {
        if (rc == TASKQ_EPOCH_END && b.epoch != t->epoch)
            return GO_ON; /* the end of a plan we no longer follow */
        double secs = now_s() - *epoch_start;
        *epoch_start = now_s();
        return on_epoch_end(t, lr, secs, reason);
    }
    NPID_CHECK(rc == TASKQ_BATCH);
    NPID_CHECK(b.epoch == t->epoch && b.step == t->epoch_step);
    int src = train_step(t, &b, lr);
    if (src != 0) {
        *reason = src == -2 ? "non-finite loss" : "bank failure";
        if (src != -2 && sig_stop)
            trainer_save_unpaired(t); /* a signal inside the step's bank update */
        return END_FAIL;
    }
    enum next n = after_step(t, lr, reason);
    if (n == GO_ON)
        taskq_service(t->tq);
    return n;
}

int trainer_run(struct trainer *t)
{
    const char *reason = "done";
    t->run_start = now_s();
    if (t->cfg.init_only) {
        /* the initialised, untrained network and its bank: a baseline to evaluate */
        int rc = trainer_checkpoint(t, "init-only");
        publish_end(t, rc == 0 ? "ok" : "failed", "init-only");
        return rc == 0 ? EXIT_OK : EXIT_FAIL;
    }
    enum next n = run_begin(t);
    if (n == END_FAIL)
        return EXIT_FAIL;
    if (n == END_OK) {
        publish_end(t, "ok", "done");
        return EXIT_OK;
    }
    struct stage_times *win = metrics_window(t->mx);
    memset(win, 0, sizeof *win);
    win->start = now_s();
    double epoch_start = now_s(), last_wait_log = now_s();
    while (n == GO_ON) {
        if (sig_stop) {
            n = on_stop(t);
            reason = "signal";
        } else {
            n = run_turn(t, &epoch_start, &last_wait_log, &reason);
        }
    }
    int status = n == END_OK ? EXIT_OK : EXIT_FAIL;
    if (t->cfg.progress && isatty(STDERR_FILENO))
        fputc('\n', stderr);
    publish_end(t, status == EXIT_OK ? "ok" : "failed", reason);
    log_info("training %s after %" PRIu64 " steps (%s), %.1f s",
             status == EXIT_OK ? "ended" : "FAILED", t->step, reason, now_s() - t->run_start);
    return status;
}
