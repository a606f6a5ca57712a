/* The trainer's connections: see links.h. */
#include "trainer/links.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/msg.h"
#include "common/sig.h"

/* The run's write token: the bank this run creates (or claims) takes writes only with it, so
 * no other client can overwrite rows or roll the bank back; kept across --resume in
 * RUN_DIR/bank.token. */
static int claim_token(struct bankview *bv, const char *run_dir)
{
    char tok_path[4200], tok[BANKC_TOKEN_HEX + 1], terr[4400];
    int tok_new = 0;
    snprintf(tok_path, sizeof tok_path, "%s/bank.token", run_dir);
    if (bankc_token_file(tok_path, tok, &tok_new, terr, sizeof terr) != 0) {
        log_error("bank: %s", terr);
        return -1;
    }
    int trc = bankview_set_token(bv, tok);
    memset(tok, 0, sizeof tok);
    NPID_CHECK(trc == 0);
    log_info("bank: write token %s %s", tok_new ? "created in" : "read from", tok_path);
    return 0;
}

int links_open_bank(struct links *l, const struct trainer_cfg *cfg, const char *cid, size_t n,
                    size_t m)
{
    memset(l, 0, sizeof *l);
    char cerr[PATH_MAX + 300];
    /* --curve-key alone may be for the task socket only (--curve-allow): no CURVE to bankd */
    int con = !cfg->bank_server_key[0] ? 0 :
              curve_sock_client_flags(&l->bank_curve, cfg->curve_key, cfg->bank_server_key,
                                      "bank-server-key", cerr, sizeof cerr);
    if (con < 0) {
        log_error("bank: %s", cerr);
        return -1;
    }
    if (con)
        log_info("bank: CURVE on (server key %s, this trainer's %s)", l->bank_curve.server_pub,
                 l->bank_curve.own.pub);
    struct bankview_cfg bc = {
        .endpoint = cfg->bank_ep, .cid = cid, .timeout_s = cfg->bank_timeout,
        .stop_timeout_s = cfg->stop_timeout, .seed = cfg->seed, .exclude_pos = cfg->exclude_pos,
        .n = n, .dim = cfg->low_dim, .m = m, .max_batch = (uint32_t)cfg->batch,
        .momentum = (float)cfg->nce_m, .stop = &sig_stop, .curve = con ? &l->bank_curve : NULL,
    };
    l->bv = bankview_new(&bc);
    if (!l->bv)
        return -1;
    l->bank = bankview_client(l->bv);
    bankc_set_init_mode(l->bank,
                        !strcmp(cfg->bank_init, "unit") ? BANK_INIT_UNIT : BANK_INIT_UNIFORM);
    return claim_token(l->bv, cfg->run_dir);
}

int links_open_tasks(struct links *l, const struct trainer_cfg *cfg, const char *run,
                     const char *manifest, size_t n)
{
    struct taskq_opts to;
    trainer_cfg_task_opts(cfg, run, &to);
    to.stop = &sig_stop;
    char terr[PATH_MAX + 300];
    if (cfg->curve_allow[0]) {
        /* the ZAP handler runs before the task socket binds: no loader is admitted unchecked */
        if (curve_sock_server(&l->tasks_curve, cfg->curve_key, "tasks", terr, sizeof terr) != 0) {
            log_error("tasks: --curve-key: %s", terr);
            return -1;
        }
        l->zap = curve_zap_new(msg_ctx(), cfg->curve_allow, terr, sizeof terr);
        if (!l->zap) {
            log_error("tasks: --curve-allow: %s", terr);
            return -1;
        }
        to.curve = &l->tasks_curve;
        l->events_curve = l->tasks_curve;
        l->events_curve.domain = "events";
        log_info("tasks, events: CURVE on: public key %s, %zu client keys allowed (%s)",
                 l->tasks_curve.own.pub, curve_zap_allowed_keys(l->zap), cfg->curve_allow);
    }
    l->cfg = cfg;
    l->tq = taskq_new(cfg->tasks_ep, manifest, &to, terr, sizeof terr);
    if (!l->tq) {
        log_error("tasks: %s", terr);
        return -1;
    }
    l->mx = metrics_new(cfg->events_ep, run, cfg->allow_remote, l->zap ? &l->events_curve : NULL,
                        n, cfg->progress);
    if (!l->mx)
        return -1;
    log_info("listening: tasks %s, events %s", taskq_endpoint(l->tq), cfg->events_ep);
    return 0;
}

void links_log_waiting(const struct links *l, const struct trainer_cfg *cfg, const char *what)
{
    struct taskq_stats ts;
    taskq_get_stats(l->tq, &ts);
    int by_list = !cfg->data || !*cfg->data;
    log_info("%s: waiting for loaders (%u connected, %u tasks in flight); start one with: "
             "npid-loader %s %s --tasks %s", what, ts.loaders, ts.in_flight,
             by_list ? "--list" : "--data", by_list ? cfg->dso.list : cfg->data,
             taskq_endpoint(l->tq));
}

static int feed_pass(void *arg, const uint32_t *idx, size_t n, uint32_t batch)
{
    struct links *l = arg;
    if (taskq_plan_test(l->tq, l->test_epoch++, idx, n, batch) < 0) {
        log_error("tasks: cannot queue the warm start's images: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static int feed_next(void *arg, const uint8_t **pix, uint32_t *count, uint32_t *n_bad)
{
    struct links *l = arg;
    double last_log = clock_seconds();
    for (;;) {
        struct taskq_batch b;
        int rc = taskq_next(l->tq, 1000, &b);
        if (rc == TASKQ_TIMEOUT) {
            if (clock_seconds() - last_log > 10) {
                links_log_waiting(l, l->cfg, "warm start");
                last_log = clock_seconds();
            }
            continue;
        }
        if (rc < 0) {
            if (errno == EINTR)
                log_info("warm start: stopped by a signal");
            else
                log_error("tasks: %s", taskq_error(l->tq));
            return -1;
        }
        if (rc != TASKQ_BATCH)
            return 0; /* the pass's end */
        *pix = b.pixels;
        *count = b.count;
        *n_bad = b.n_bad;
        return 1;
    }
}

struct warm_feed links_warm_feed(struct links *l)
{
    if (l->test_epoch < TASKQ_EPOCH_TEST)
        l->test_epoch = TASKQ_EPOCH_TEST; /* later feeds go on numbering */
    struct warm_feed f = { feed_pass, feed_next, l };
    return f;
}

void links_warm_done(struct links *l)
{
    taskq_cancel(l->tq);
}

void links_close(struct links *l)
{
    metrics_destroy(&l->mx);
    taskq_destroy(&l->tq);
    curve_zap_destroy(&l->zap);
    bankview_destroy(&l->bv);
    l->bank = NULL;
}
