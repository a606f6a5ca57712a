/* The training run's account of itself: the events it publishes on its PUB socket and
 * appends, the same lines, to RUN_DIR/metrics.jsonl (docs/events.md): "metrics" (a window
 * of steps: loss, cosines, rates, per-stage times), "epoch" (with the exactly-once ledger:
 * every training image trained once per epoch), "checkpoint" and "end". */
#ifndef NPID_TRAINER_METRICS_H
#define NPID_TRAINER_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "trainer/taskq.h"
#include "trainer/plan.h"
#include "trainer/ckptr.h"

/* Per-stage time accumulated over a metrics window, seconds; the step adds to it. */
struct stage_times {
    double data, bank, fwd, loss, bwd, sgd;
    double loss_sum;
    double pos_sim, neg_sim;  /* sums of per-step mean cosines: feature vs own row, vs others */
    uint32_t steps, images;
    double start;
};

struct metrics;

/* Binds the PUB socket (events_ep; non-loopback only with allow_remote; a CURVE server with
 * curve, NULL: none, see event_pub_new_curve) for a run of n training images; progress: a
 * live line on stderr when it is a terminal. NULL on failure (logged). */
struct metrics *metrics_new(const char *events_ep, const char *run, int allow_remote,
                            const struct curve_sock *curve, size_t n, int progress);
/* Starts appending to path (opened without following a link planted at its name). Events
 * before this go to the socket only. 0 or -1 (logged). */
int metrics_open(struct metrics *m, const char *path);
void metrics_destroy(struct metrics **m);

/* The current window (cleared by metrics_publish). */
struct stage_times *metrics_window(struct metrics *m);
/* count images of rows idx were trained in one step whose loss was loss. */
void metrics_trained(struct metrics *m, const uint32_t *idx, uint32_t count, double loss);
/* A resumed epoch's first steps (trained before the checkpoint) count as delivered. */
void metrics_delivered(struct metrics *m, const uint32_t *idx, uint32_t count);

/* "metrics" for the window so far (nothing when it is empty); starts a new window. */
void metrics_publish(struct metrics *m, const struct run_pos *pos, double lr, double z,
                     double z_est, const struct taskq_stats *ts);
/* "epoch": epoch ended after secs seconds; expected images (the epoch's batches); logs the
 * ledger (an error when an image was never trained or twice, unless drop_last) and resets it. */
void metrics_epoch(struct metrics *m, const struct run_pos *pos, uint32_t epoch, double secs,
                   size_t expected, int drop_last, const struct taskq_stats *ts);
void metrics_checkpoint(struct metrics *m, const struct run_pos *pos, const char *path,
                        const struct ckptr_written *w, const char *why);
void metrics_end(struct metrics *m, const struct run_pos *pos, const char *status,
                 const char *reason);

#endif
