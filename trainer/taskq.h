/* The trainer's side of the loader <-> trainer protocol: a task dispatcher that hands the
 * batches of an epoch plan to any number of npid-loader processes and returns the decoded,
 * augmented batches to the trainer IN STEP ORDER, each exactly once.
 *
 * The trainer binds one ROUTER socket (default tcp://127.0.0.1:5558, env NPID_TASKS);
 * loaders connect with DEALER sockets, announce themselves (manifest hash, capacity) and are
 * sent tasks up to their capacity (credit-based flow control). docs/protocol.md ("loader <->
 * trainer") has the message grammar. The dispatcher:
 *  - keeps at most `window` steps in flight (issued to a loader, or received and waiting in
 *    the reorder buffer), lowest steps first, so memory is bounded by window batches;
 *  - re-issues a task when its deadline passes, when its loader stops sending heartbeats, or
 *    when a send to its loader fails, preferring loaders without strikes (missed deadlines,
 *    invalid batches) and ones not tried for it; a loader with strikes holds one task at most;
 *  - accepts a batch or a fail only from a loader the task was issued to (others are counted
 *    as foreign and dropped); the first valid batch for an (epoch, step) wins and later
 *    copies are dropped and counted as duplicates; a step fails the run after max_attempts
 *    issues only when no valid batch at all arrived since its last issue;
 *  - refuses loaders whose manifest differs from the trainer's (the loader is told why and
 *    exits; the refusal is counted and logged once per loader);
 *  - validates every frame (malformed frames are counted and dropped, never trusted);
 *  - checks each batch against its task (run, indices equal to the planned ones, pixel byte
 *    count = count * size * size * 3, one flag per image) and drops it otherwise.
 * Loaders may join and leave at any time; while none is connected, taskq_next just waits.
 *
 * Single-threaded: the socket is serviced only inside taskq_next / taskq_service, so call
 * one of them at least every few hundred milliseconds in long phases if loaders should keep
 * working (batches received meanwhile are queued by ZeroMQ; liveness is judged only after
 * the queue has been drained, so a busy trainer never declares a healthy loader dead).
 *
 * Typical trainer loop:
 *
 *   struct taskq_opts o; taskq_opts_default(&o);
 *   struct taskq *tq = taskq_new(endpoint, dataset_manifest(ds), &o, err, sizeof err);
 *   for (epoch = start_epoch; epoch < epochs; epoch++) {
 *       plan_epoch(&plan, epoch);
 *       taskq_plan(tq, epoch, plan.perm, plan.n, batch, epoch == start_epoch ? start_step : 0,
 *                  seed);
 *       struct taskq_batch b;
 *       for (;;) {
 *           int rc = taskq_next(tq, 1000, &b);
 *           if (rc == TASKQ_EPOCH_END) break;
 *           if (rc == TASKQ_TIMEOUT) { log "waiting for loaders" ; if (stopping) ...; continue; }
 *           if (rc < 0) fail(taskq_error(tq));
 *           train_step(b.pixels, b.count, b.indices, ...);   // valid until the next call
 *       }
 *   }
 *   taskq_destroy(&tq);
 *
 * taskq_plan may be called again before the current epoch is finished (e.g. when the last
 * batch of epoch e has been returned, or earlier, to overlap the epoch boundary): plans are
 * queued and their steps are handed out after the previous plan's, and taskq_next reports
 * TASKQ_EPOCH_END once at the end of each plan. */
#ifndef NPID_TASKQ_H
#define NPID_TASKQ_H

#include <stddef.h>
#include <stdint.h>

#include "common/augment.h"
#include "common/msg.h"

struct taskq_opts {
    uint32_t window;          /* steps in flight (issued + waiting in order), default 8 */
    uint32_t deadline_ms;     /* re-issue a task not answered within this, default 30000 */
    uint32_t max_attempts;    /* an (epoch, step) issued this many times without success
                                 makes taskq_next fail, default 10 */
    uint32_t loader_timeout_ms; /* a loader silent this long is dropped and its tasks
                                 re-issued, default 3000 (loaders send heartbeats every
                                 500 ms) */
    int drop_last;            /* drop the last partial batch of each epoch, default 0 (the
                                 reference trains on it) */
    const char *preset;       /* augmentation preset sent with tasks ("cifar", "imagenet",
                                 "none"), default "cifar" */
    const char *aug;          /* augment_override spec applied to the preset in the loaders
                                 (e.g. "crop=0.08-1,flip=1"), default "" (the preset as is) */
    int train;                /* 1 train transform (default), 0 test transform */
    uint32_t size;            /* output side in pixels, default 32 */
    enum augment_layout layout; /* default AUGMENT_CHW */
    uint32_t views;           /* augmented views of every image, 1 (default) ..
                                 TASK_MAX_VIEWS; view 0 is the one-view image (common/batcher.h) */
    int allow_remote;         /* allow binding a non-loopback endpoint, default 0 */
    const struct curve_sock *curve; /* CURVE server options (common/curve.h: the process runs
                                 a ZAP handler), default NULL (no CURVE); read by taskq_new */
    uint64_t max_frame;       /* largest inbound frame in bytes, default 256 MiB */
    const char *run;          /* run name carried in tasks (informational), default "" */
    msg_stop *stop;           /* ends taskq_next's wait with EINTR when set (a signal flag),
                                 default NULL (waits its timeout out) */
};

/* Statistics, cumulative since taskq_new. Times in nanoseconds. */
struct taskq_stats {
    uint64_t issued;          /* tasks sent (first sends + re-issues) */
    uint64_t reissued;        /* re-sends after a deadline, a lost loader or a failed send */
    uint64_t deadline_expired;
    uint64_t delivered;       /* batches returned by taskq_next */
    uint64_t duplicates;      /* batches for an (epoch, step) already received */
    uint64_t stale;           /* batches from another run or for steps no longer planned */
    uint64_t foreign;         /* batches and fails from a peer the task was not issued to
                                 (dropped; never trained on, never fatal) */
    uint64_t rejected;        /* batches that did not match their task (wrong indices,
                                 sizes) or malformed frames */
    uint64_t bad_images;      /* images the loaders could not decode (common/batcher.h:
                                 substituted, or mid-grey in a test pass) */
    uint64_t loaders_joined;  /* accepted hellos from loaders not currently connected */
    uint64_t loaders_lost;    /* loaders dropped after loader_timeout_ms of silence or a
                                 failed send */
    uint64_t loaders_refused; /* hellos refused (manifest or protocol version mismatch) */
    uint64_t wait_ns;         /* time taskq_next spent waiting for the next in-order batch */
    uint64_t loader_decode_ns;  /* sums reported by loaders for delivered batches */
    uint64_t loader_augment_ns;
    uint64_t latency_ns;      /* sum over delivered batches of (received - last issued) */
    uint32_t loaders;         /* loaders connected now */
    uint32_t in_flight;       /* tasks issued and not yet answered now */
    uint32_t buffered;        /* batches received and waiting for their turn now */
};

/* One batch, in the layout of the options: pixels holds count images of size x size x 3
 * bytes each (CHW: 3 planes per image; HWC: packed RGB). All pointers are valid until the
 * next taskq_next / taskq_service / taskq_plan / taskq_destroy call. */
struct taskq_batch {
    uint32_t epoch, step;
    uint32_t count;           /* images; == batch except possibly the last step */
    uint32_t size;            /* output side */
    enum augment_layout layout;
    const uint32_t *indices;  /* count dataset indices (== the planned ones, in order) */
    const uint32_t *labels;   /* count labels from the loader's dataset index */
    uint32_t views;           /* the options' views */
    const uint8_t *pixels;    /* views * count * size * size * 3 bytes: view 0's count images,
                                 then view 1's */
    const uint8_t *bad;       /* count flags: 1 when the image at that position could not
                                 be decoded and was replaced (common/batcher.h) */
    uint32_t n_bad;
    uint32_t attempts;        /* times this step was issued */
    uint64_t wait_ns;         /* time this taskq_next call waited for the batch */
    uint64_t latency_ns;      /* received - last issued */
    uint64_t decode_ns, augment_ns; /* reported by the loader */
};

enum {
    TASKQ_TIMEOUT = 0,        /* no in-order batch within timeout_ms */
    TASKQ_BATCH = 1,          /* *out holds the next batch */
    TASKQ_EPOCH_END = 2,      /* every batch of a plan has been returned; out->epoch says
                                 which; call again for the next plan's batches */
    TASKQ_IDLE = 3,           /* no plan is queued */
};

void taskq_opts_default(struct taskq_opts *o);

/* Binds endpoint (refusing non-loopback unless o->allow_remote), for a dataset with the given
 * manifest (64 hex digits, as dataset_manifest). o NULL: defaults. The options' strings are
 * copied. Returns NULL on failure with a one-line reason in err (bad options, address in use,
 * non-local endpoint refused). */
struct taskq *taskq_new(const char *endpoint, const char *manifest, const struct taskq_opts *o,
                        char *err, size_t err_len);
/* Closes the socket, frees everything, sets *tq NULL; accepts NULL. */
void taskq_destroy(struct taskq **tq);

/* Queues the plan of one epoch: batch s holds perm[s*batch .. min(n, (s+1)*batch)-1]
 * (the last batch is partial unless drop_last); steps before first_step are skipped (resume).
 * perm is copied. aug_seed seeds the augmentation of every image of the epoch
 * (rng_derive(aug_seed, epoch, index) in the loader). Indices must be < the dataset size
 * (loaders reject tasks with out-of-range indices; taskq_next then fails).
 * Returns the number of steps that will be delivered for this plan (0 when first_step is past
 * the end: TASKQ_EPOCH_END is still reported once), or -1 (EINVAL: n == 0, batch == 0 or >
 * 65536, epoch not greater than the last planned one; EMSGSIZE: a batch of this size would
 * exceed max_frame; ENOMEM). */
int64_t taskq_plan(struct taskq *tq, uint32_t epoch, const uint32_t *perm, size_t n,
                   uint32_t batch, uint32_t first_step, uint64_t aug_seed);
/* A pass with the test transform (the preset's, one view, every image, no drop_last; the
 * loaders' policy for an undecodable image is a mid-grey one, flagged): batch s holds
 * idx[s*batch ..], in order. Otherwise as taskq_plan (epoch numbers are shared with it: the
 * trainer's warm start numbers its passes from TASKQ_EPOCH_TEST and cancels after them). */
#define TASKQ_EPOCH_TEST 0xfff00000u
int64_t taskq_plan_test(struct taskq *tq, uint32_t epoch, const uint32_t *idx, size_t n,
                        uint32_t batch);

/* Services the socket and waits up to timeout_ms (-1: forever, 0: poll) for the next
 * in-order batch. Returns TASKQ_BATCH, TASKQ_EPOCH_END, TASKQ_TIMEOUT, TASKQ_IDLE, or -1 on a
 * fatal error (taskq_error: a step failed max_attempts times, a loader rejected a task as
 * invalid, socket failure) or EINTR when the stop flag (taskq_opts.stop) was set. */
int taskq_next(struct taskq *tq, int timeout_ms, struct taskq_batch *out);

/* Services the socket without waiting and without returning a batch: receives what arrived,
 * answers hellos and heartbeats, issues tasks into free credit, re-issues late ones. Lets a
 * trainer keep loaders busy during a long step. 0, or -1 on a fatal error. */
int taskq_service(struct taskq *tq);

/* Drops every queued plan and outstanding task (late batches are counted as stale); the
 * next plan may have any epoch number. */
void taskq_cancel(struct taskq *tq);

void taskq_get_stats(const struct taskq *tq, struct taskq_stats *s);
/* Reason of the last failure (static or owned by tq; never NULL). */
const char *taskq_error(const struct taskq *tq);
/* The bound endpoint (with the real port when bound to port 0 / "*"). */
const char *taskq_endpoint(const struct taskq *tq);

#endif
