/* The trainer's connections and their security: the bank view on bankd (with the bankd
 * CURVE options and the run's write token), the task queue the loaders connect to and the
 * event socket (both with CURVE and a ZAP allow-list under --curve-allow).
 *
 * links_open_bank first (the checkpoints pair with its snapshots), links_open_tasks once the
 * bank is known; links_close releases whatever was opened, in reverse. */
#ifndef NPID_TRAINER_LINKS_H
#define NPID_TRAINER_LINKS_H
#include <stddef.h>
#include "common/curve.h"
#include "trainer/bankview.h"
#include "trainer/config.h"
#include "trainer/metrics.h"
#include "trainer/taskq.h"
#include "trainer/warm.h"

struct links {
    struct bankview *bv;      /* the bank: client, negatives and positives, or the mirror */
    struct bankc *bank;       /* bankview_client(bv): the control requests */
    struct taskq *tq;         /* the loaders' tasks */
    struct metrics *mx;       /* events and metrics.jsonl */
    struct curve_zap *zap;    /* admits the loaders of --curve-allow; NULL: tasks in clear */
    struct curve_sock bank_curve;   /* CURVE client options for bankd (the client keeps them) */
    struct curve_sock tasks_curve;  /* CURVE server options of the task socket */
    struct curve_sock events_curve; /* the same for the events PUB socket */
    const struct trainer_cfg *cfg;  /* links_open_tasks's */
    uint32_t test_epoch;      /* the next test pass's epoch number (links_warm_feed) */
};

/* The bank view for n rows, m negatives per step (0: the full softmax's mirror), client id
 * cid, with the write token of cfg->run_dir/bank.token (created on a first run). -1 on
 * failure (logged); l is zeroed first. */
int links_open_bank(struct links *l, const struct trainer_cfg *cfg, const char *cid, size_t n,
                    size_t m);
/* The task queue for the dataset with the given manifest and the event socket of a run of n
 * images. -1 on failure (logged). */
int links_open_tasks(struct links *l, const struct trainer_cfg *cfg, const char *run,
                     const char *manifest, size_t n);
/* Logs, prefixed with what, that the run waits for loaders, how many are connected and how to
 * start one. */
void links_log_waiting(const struct links *l, const struct trainer_cfg *cfg, const char *what);
/* The warm start's images: the loaders' test-transform passes (taskq_plan_test); then
 * links_warm_done, before the first training plan. */
struct warm_feed links_warm_feed(struct links *l);
void links_warm_done(struct links *l);
void links_close(struct links *l);
#endif
