/* The trainer's view of the memory bank: its bankd client and what the objective reads.
 *
 * Shared negatives (m > 0): each step's m negatives are drawn here, deterministically in
 * (seed, step), and a sample request fetches their rows and the batch's own rows (positives)
 * ahead of the step: bankview_request when the step's indices are known, bankview_collect
 * when the step needs them (the round trip overlaps the forward pass). Full softmax (m == 0):
 * a local mirror of the whole bank, read once (bankview_load_mirror) and kept equal to bankd's
 * by applying every update with the bank's own row rule (common/bankrow.h).
 *
 * Two connections to bankd: the data one (samples, updates, sets, the mirror's read), with at
 * most one sample outstanding, and the control one (bankview_client: init, info, snapshots,
 * restore), so a checkpoint's snapshot goes out while the next step's sample is in flight.
 * bankd serves them in arrival order; an update's reply has come back before any later
 * snapshot is sent, so the snapshot holds it. */
#ifndef NPID_TRAINER_BANKVIEW_H
#define NPID_TRAINER_BANKVIEW_H

#include <stddef.h>
#include <stdint.h>

#include "common/bankc.h"
#include "common/msg.h"

struct bankview_cfg {
    const char *endpoint;
    const char *cid;          /* stable across restarts: bankd's reply cache survives them */
    double timeout_s;         /* each attempt's wait; retries are unbounded until stopping */
    double stop_timeout_s;    /* the most each request waits once bankview_stopping was called */
    uint64_t seed;            /* negatives come from (seed, "neg", step) */
    int exclude_pos;          /* never draw one of the batch's own indices as a negative */
    size_t n;                 /* bank rows */
    int dim;
    size_t m;                 /* negatives per step; 0: the full softmax (a mirror) */
    uint32_t max_batch;       /* rows of a step */
    float momentum;           /* the row update's */
    msg_stop *stop;           /* interrupts waits (EINTR) until bankview_stopping; may be NULL */
    const struct curve_sock *curve; /* CURVE client options for a CURVE bankd (NULL: none;
                                       read by bankview_new only) */
};

struct bankview;

/* NULL on failure (logged). */
struct bankview *bankview_new(const struct bankview_cfg *c);
void bankview_destroy(struct bankview **bv);

/* The control client. */
struct bankc *bankview_client(struct bankview *bv);
/* The run's write token (hex) on both connections. 0, or -1 for a malformed token. */
int bankview_set_token(struct bankview *bv, const char *hex);
/* bankd's update count as last reported (set, update, init, restore); set by the owner of
 * the control requests that report one. */
uint64_t bankview_step(const struct bankview *bv);
void bankview_set_step(struct bankview *bv, uint64_t step);

/* Shared negatives: draws the negatives of global step `step` for the batch idx (count rows)
 * and sends the sample request. 0 at once when one is already outstanding or in softmax mode;
 * -1 on a send failure (logged). */
int bankview_request(struct bankview *bv, uint64_t step, const uint32_t *idx, uint32_t count);
int bankview_pending(const struct bankview *bv);
/* Waits for the outstanding sample. A stop signal during the wait does not abandon it: the
 * rows are still collected (within the stop timeout) so the step can finish. 0 in softmax
 * mode; -1 when bankd did not answer (logged). */
int bankview_collect(struct bankview *bv);
/* The rows of the last collected sample: negatives (m, dim) and positives (count, dim), and
 * the mirror (n, dim) in softmax mode; NULL where the mode has none. */
const float *bankview_neg(const struct bankview *bv);
const float *bankview_pos(const struct bankview *bv);
const float *bankview_mirror(const struct bankview *bv);
size_t bankview_m(const struct bankview *bv);
/* The buffers of bankview_neg and bankview_pos, writable: the trainer's other ranks receive
 * rank 0's collected rows into them (trainer/dp.h). NULL in softmax mode. */
void bankview_rows(struct bankview *bv, float **neg, float **pos);

/* Writes count features (rows of feat, which is modified: subnormal values become 0, as
 * bankd requires) into rows idx with the momentum update; checks bankd's update count against
 * the expected one (a restarted bankd is reported, not fatal) and applies the update to the
 * mirror. -1 on failure (logged). */
int bankview_update(struct bankview *bv, const uint32_t *idx, float *feat, uint32_t count);
/* Overwrites rows idx with count features (feat modified as for update): the warm start.
 * bankd counts a set as an update; the mirror follows. -1 on failure (logged). */
int bankview_set(struct bankview *bv, const uint32_t *idx, float *feat, uint32_t count);
/* Alignment and uniformity, for the metrics: the mean cosine of each of count features (rows
 * of feat, batch indices idx) with its own bank row and with one other (a negative of the
 * last collected sample, or the next row of the mirror). */
void bankview_cosines(const struct bankview *bv, const float *feat, const uint32_t *idx,
                      uint32_t count, double *pos_sim, double *neg_sim);
/* Softmax mode: reads the whole bank into the mirror. 0 otherwise. */
int bankview_load_mirror(struct bankview *bv);

/* From now on every request waits at most the stop timeout, and no longer ends early on the
 * stop flag: a stopping trainer's last requests (the sample in flight, the checkpoint's
 * snapshot) get out, or fail in bounded time. */
void bankview_stopping(struct bankview *bv);

#endif
