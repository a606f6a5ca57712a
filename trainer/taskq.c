/* The trainer's task dispatcher: see taskq.h for the contract, docs/protocol.md for the wire.
 *
 * Steps of all queued plans are numbered by one global sequence. The window is a ring of
 * `window` slots: slot seq % window belongs to seq for every seq in [next_seq, next_seq +
 * window). A slot is EMPTY (to be issued), ISSUED (sent to a loader at a time, with a deadline)
 * or DONE (the batch frame is held, decoded in place). taskq_next returns the slot of next_seq
 * once it is DONE; the frame stays alive until the following call.
 *
 * Loaders are identified by their ROUTER routing id. A loader's `held` counts tasks sent to
 * it and not yet answered (by a batch, even a duplicate) or written off (deadline); credit is
 * capacity - held. Liveness is judged only right after the socket has been drained, so time
 * the trainer spent away from the socket never counts against a loader. */
#include "trainer/taskq.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "common/clock.h"
#include "common/log.h"
#include "common/msg.h"
#include "common/proto_task.h"
#include "common/rng.h"

#define MAX_ID 255
#define DRAIN_MAX 4096
#define POLL_SLICE_MS 50
#define SLOT_HOLDERS 16       /* loaders a slot remembers having been issued to */

enum slot_state { SLOT_EMPTY = 0, SLOT_ISSUED, SLOT_DONE };

struct tq_loader {
    uint8_t id[MAX_ID];
    size_t id_len;
    char name[64];
    uint32_t capacity, held;
    uint32_t strikes;         /* deadlines missed since its last valid batch */
    uint64_t last_seen_ns;
    uint64_t gen;             /* registration number; 0 = never */
    int alive;
};

/* A loader a slot was issued to; outstanding while its credit is still taken by the task. */
struct tq_holder {
    size_t loader;
    uint64_t gen;
    int outstanding;
};

struct tq_slot {
    uint64_t seq;
    enum slot_state state;
    uint32_t attempts;
    struct tq_holder holders[SLOT_HOLDERS]; /* every issue of this seq (a ring past 16); while
                                               ISSUED, slot_holder() is the current one */
    uint32_t n_holders;       /* issues recorded, up to SLOT_HOLDERS */
    uint32_t holder_next;     /* ring position of the next record */
    uint64_t issued_ns;
    zmq_msg_t msg;
    int has_msg;
    struct task_batch b;      /* DONE: decoded, pointers into msg */
    uint32_t *idx, *labels;   /* aligned copies, batch entries */
    uint64_t received_ns;
    uint32_t nbad;
};

struct tq_plan {
    uint32_t epoch;
    uint32_t *perm;
    size_t n;
    uint32_t batch;
    uint32_t first_step;
    uint32_t total_steps;     /* steps of the whole epoch */
    uint32_t steps;           /* steps delivered: total_steps - first_step */
    uint64_t seed;
    uint64_t base;            /* global seq of first_step */
    int train;                /* the transform of its tasks: 1 train, 0 test */
    uint32_t views;           /* views per image of its tasks */
};

struct taskq {
    void *sock;
    char endpoint[256];
    char manifest[65];
    char preset[32];
    char aug[TASK_MAX_AUG + 1];
    char run_name[64];
    struct taskq_opts o;
    uint64_t run;
    struct tq_plan *plans;    /* queue: plans[0] is the head */
    size_t n_plans, plans_cap;
    int have_last_epoch;
    uint32_t last_epoch;
    uint64_t next_seq, end_seq;
    struct tq_slot *slots;
    uint32_t batch_cap;       /* size of slot idx/labels arrays */
    struct tq_loader *loaders;
    size_t n_loaders, loaders_cap;
    uint64_t gen_counter;
    struct tq_slot *cur;      /* delivered slot awaiting release */
    struct taskq_stats st;
    msgpack_sbuffer sb;
    int fatal;
    char err[512];
    uint64_t log_budget;      /* warnings about malformed frames still to log */
    uint64_t last_valid_ns;   /* when the last valid batch was accepted */
};

void taskq_opts_default(struct taskq_opts *o)
{
    memset(o, 0, sizeof *o);
    o->window = 8;
    o->deadline_ms = 30000;
    o->max_attempts = 10;
    o->loader_timeout_ms = 3000;
    o->drop_last = 0;
    o->preset = "cifar";
    o->train = 1;
    o->size = 32;
    o->layout = AUGMENT_CHW;
    o->views = 1;
    o->allow_remote = 0;
    o->max_frame = (uint64_t)256 << 20;
    o->run = "";
    o->stop = NULL;
}


static int fatal(struct taskq *tq, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fatal(struct taskq *tq, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tq->err, sizeof tq->err, fmt, ap);
    va_end(ap);
    tq->fatal = 1;
    return -1;
}

/* ---- slots --------------------------------------------------------------------------------- */

static struct tq_slot *slot_of(struct taskq *tq, uint64_t seq)
{
    struct tq_slot *s = &tq->slots[seq % tq->o.window];
    return s->seq == seq ? s : NULL;
}

static struct tq_loader *loader_by_gen(struct taskq *tq, size_t idx, uint64_t gen);

/* Gives back the credit a holder's task took (the task was answered, expired or is no longer
 * needed); its later answer, if any, is then only accepted or dropped. */
static void holder_release(struct taskq *tq, struct tq_holder *h)
{
    if (!h->outstanding)
        return;
    h->outstanding = 0;
    struct tq_loader *l = loader_by_gen(tq, h->loader, h->gen);
    if (l && l->held > 0)
        l->held--;
}

/* The record of l among s's holders, or NULL: l was never issued s's task. */
static struct tq_holder *holder_of(struct tq_slot *s, const struct taskq *tq,
                                   const struct tq_loader *l)
{
    size_t idx = (size_t)(l - tq->loaders);
    for (uint32_t i = 0; i < s->n_holders; i++)
        if (s->holders[i].loader == idx && s->holders[i].gen == l->gen)
            return &s->holders[i];
    return NULL;
}

/* The holder of the latest issue of s (its current one while s is ISSUED); NULL if none. */
static struct tq_holder *slot_holder(struct tq_slot *s)
{
    return s->n_holders ? &s->holders[(s->holder_next + SLOT_HOLDERS - 1) % SLOT_HOLDERS] : NULL;
}

static void slot_clear(struct taskq *tq, struct tq_slot *s, uint64_t seq)
{
    for (uint32_t i = 0; i < s->n_holders; i++)
        holder_release(tq, &s->holders[i]);
    s->n_holders = 0;
    s->holder_next = 0;
    if (s->has_msg) {
        zmq_msg_close(&s->msg);
        s->has_msg = 0;
    }
    s->seq = seq;
    s->state = SLOT_EMPTY;
    s->attempts = 0;
    s->issued_ns = 0;
    s->nbad = 0;
    memset(&s->b, 0, sizeof s->b);
}

static void slots_reset(struct taskq *tq)
{
    for (uint64_t q = tq->next_seq; q < tq->next_seq + tq->o.window; q++)
        slot_clear(tq, &tq->slots[q % tq->o.window], q);
}

static void release_cur(struct taskq *tq)
{
    if (!tq->cur)
        return;
    /* the delivered slot now belongs to seq + window */
    slot_clear(tq, tq->cur, tq->cur->seq + tq->o.window);
    tq->cur = NULL;
}

static int ensure_batch_cap(struct taskq *tq, uint32_t batch)
{
    if (batch <= tq->batch_cap)
        return 0;
    for (uint32_t i = 0; i < tq->o.window; i++) {
        struct tq_slot *s = &tq->slots[i];
        uint32_t *a = realloc(s->idx, (size_t)batch * 4);
        if (!a)
            return -1;
        s->idx = a;
        uint32_t *b = realloc(s->labels, (size_t)batch * 4);
        if (!b)
            return -1;
        s->labels = b;
    }
    tq->batch_cap = batch;
    return 0;
}

/* ---- plans --------------------------------------------------------------------------------- */

static struct tq_plan *plan_of_seq(struct taskq *tq, uint64_t seq)
{
    for (size_t i = 0; i < tq->n_plans; i++)
        if (seq >= tq->plans[i].base && seq < tq->plans[i].base + tq->plans[i].steps)
            return &tq->plans[i];
    return NULL;
}

static struct tq_plan *plan_of_epoch(struct taskq *tq, uint32_t epoch)
{
    for (size_t i = 0; i < tq->n_plans; i++)
        if (tq->plans[i].epoch == epoch)
            return &tq->plans[i];
    return NULL;
}

static void plan_step_range(const struct tq_plan *p, uint32_t step, size_t *off, uint32_t *count)
{
    size_t o = (size_t)step * p->batch;
    size_t c = p->n - o < p->batch ? p->n - o : p->batch;
    *off = o;
    *count = (uint32_t)c;
}

static void plan_pop(struct taskq *tq)
{
    free(tq->plans[0].perm);
    memmove(tq->plans, tq->plans + 1, (tq->n_plans - 1) * sizeof *tq->plans);
    tq->n_plans--;
}

/* ---- loaders ------------------------------------------------------------------------------- */

static struct tq_loader *loader_find(struct taskq *tq, const void *id, size_t len)
{
    for (size_t i = 0; i < tq->n_loaders; i++)
        if (tq->loaders[i].gen && tq->loaders[i].id_len == len &&
            memcmp(tq->loaders[i].id, id, len) == 0)
            return &tq->loaders[i];
    return NULL;
}

static struct tq_loader *loader_by_gen(struct taskq *tq, size_t idx, uint64_t gen)
{
    if (idx < tq->n_loaders && tq->loaders[idx].gen == gen && tq->loaders[idx].alive)
        return &tq->loaders[idx];
    return NULL;
}

static struct tq_loader *loader_add(struct taskq *tq, const void *id, size_t len)
{
    struct tq_loader *l = NULL;
    for (size_t i = 0; i < tq->n_loaders && !l; i++)
        if (!tq->loaders[i].alive)
            l = &tq->loaders[i];
    if (!l) {
        if (tq->n_loaders == tq->loaders_cap) {
            size_t c = tq->loaders_cap ? tq->loaders_cap * 2 : 8;
            struct tq_loader *p = realloc(tq->loaders, c * sizeof *p);
            if (!p)
                return NULL;
            tq->loaders = p;
            tq->loaders_cap = c;
        }
        l = &tq->loaders[tq->n_loaders++];
    }
    memset(l, 0, sizeof *l);
    memcpy(l->id, id, len);
    l->id_len = len;
    return l;
}

/* Drops a loader: its issued tasks go back to EMPTY to be re-issued elsewhere. */
static void loader_lost(struct taskq *tq, struct tq_loader *l, const char *why)
{
    size_t idx = (size_t)(l - tq->loaders);
    uint32_t back = 0;
    for (uint32_t i = 0; i < tq->o.window; i++) {
        struct tq_slot *s = &tq->slots[i];
        struct tq_holder *cur = slot_holder(s);
        if (s->state == SLOT_ISSUED && cur->loader == idx && cur->gen == l->gen) {
            s->state = SLOT_EMPTY;
            back++;
        }
        struct tq_holder *h = holder_of(s, tq, l);
        if (h)
            h->outstanding = 0; /* held is reset below */
    }
    l->alive = 0;
    l->held = 0;
    tq->st.loaders_lost++;
    log_warn("loader %s lost (%s); %u task(s) to re-issue", l->name, why, back);
}

/* ---- sending ------------------------------------------------------------------------------- */

/* Sends the packed sbuffer to a routing id. 0, or -1 with errno (EHOSTUNREACH: peer gone,
 * EAGAIN: its queue is full). */
static int send_to(struct taskq *tq, const void *id, size_t id_len)
{
    if (zmq_send(tq->sock, id, id_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return -1;
    if (zmq_send(tq->sock, tq->sb.data, tq->sb.size, ZMQ_DONTWAIT) < 0)
        return -1;
    return 0;
}

static void reply_refuse(struct taskq *tq, const void *id, size_t id_len, const char *code,
                         const char *msg)
{
    msgpack_packer pk;
    msgpack_sbuffer_clear(&tq->sb);
    msgpack_packer_init(&pk, &tq->sb, msgpack_sbuffer_write);
    struct task_refuse r = { { code, strlen(code) }, { msg, strlen(msg) } };
    if (proto_task_encode_refuse(&pk, &r) == 0)
        (void)send_to(tq, id, id_len);
}

static int issue_one(struct taskq *tq, struct tq_slot *s, struct tq_loader *l)
{
    struct tq_plan *p = plan_of_seq(tq, s->seq);
    NPID_CHECK(p != NULL);
    uint32_t step = p->first_step + (uint32_t)(s->seq - p->base);
    size_t off;
    uint32_t count;
    plan_step_range(p, step, &off, &count);
    struct task_task t = {
        .run = tq->run, .epoch = p->epoch, .step = step, .idx = p->perm + off, .count = count,
        .seed = p->seed, .preset = { tq->preset, strlen(tq->preset) }, .train = p->train,
        .size = tq->o.size, .layout = tq->o.layout, .views = p->views,
        .aug = { tq->aug, strlen(tq->aug) },
    };
    msgpack_packer pk;
    msgpack_sbuffer_clear(&tq->sb);
    msgpack_packer_init(&pk, &tq->sb, msgpack_sbuffer_write);
    if (proto_task_encode_task(&pk, &t))
        return fatal(tq, "out of memory encoding a task");
    if (send_to(tq, l->id, l->id_len)) {
        if (errno == EAGAIN)
            return 1; /* its queue is full: try later */
        loader_lost(tq, l, errno == EHOSTUNREACH ? "disconnected" : zmq_strerror(errno));
        return 1;
    }
    uint64_t now = clock_now_ns();
    if (s->attempts > 0)
        tq->st.reissued++;
    s->attempts++;
    s->state = SLOT_ISSUED;
    s->issued_ns = now;
    struct tq_holder *h = &s->holders[s->holder_next];
    if (s->n_holders == SLOT_HOLDERS)
        holder_release(tq, h); /* the ring's oldest record makes room */
    *h = (struct tq_holder){ (size_t)(l - tq->loaders), l->gen, 1 };
    s->holder_next = (s->holder_next + 1) % SLOT_HOLDERS;
    s->n_holders += s->n_holders < SLOT_HOLDERS;
    l->held++;
    tq->st.issued++;
    return 0;
}

/* Free credit of l for s: a loader that missed deadlines since its last valid batch (a
 * silent or stalled one) is allowed one task at a time, as a probe. */
static uint32_t loader_credit(const struct tq_loader *l)
{
    uint32_t cap = l->strikes ? 1 : l->capacity;
    return l->alive && l->held < cap ? cap - l->held : 0;
}

/* The loader to issue s to: fewest strikes first, then one that was not issued s before,
 * then the most free credit; NULL when no loader has credit. */
static struct tq_loader *pick_loader(struct taskq *tq, struct tq_slot *s)
{
    struct tq_loader *best = NULL;
    int best_seen = 0;
    for (size_t i = 0; i < tq->n_loaders; i++) {
        struct tq_loader *l = &tq->loaders[i];
        uint32_t c = loader_credit(l);
        if (!c)
            continue;
        int seen = holder_of(s, tq, l) != NULL;
        if (!best || l->strikes < best->strikes ||
            (l->strikes == best->strikes &&
             (seen < best_seen || (seen == best_seen && c > loader_credit(best))))) {
            best = l;
            best_seen = seen;
        }
    }
    return best;
}

/* Issues EMPTY slots of the window, lowest seq first (pick_loader chooses where). A step
 * fails the run after max_attempts issues only if no valid batch at all arrived since its
 * last issue: while any loader delivers, a step is retried. */
static int issue(struct taskq *tq)
{
    uint64_t end = tq->next_seq + tq->o.window;
    if (end > tq->end_seq)
        end = tq->end_seq;
    for (uint64_t q = tq->next_seq; q < end; q++) {
        struct tq_slot *s = slot_of(tq, q);
        NPID_CHECK(s != NULL);
        if (s->state != SLOT_EMPTY)
            continue;
        if (s->attempts >= tq->o.max_attempts && tq->last_valid_ns <= s->issued_ns) {
            struct tq_plan *p = plan_of_seq(tq, q);
            return fatal(tq, "epoch %u step %u was issued %u times without a valid batch",
                         p ? p->epoch : 0, p ? p->first_step + (uint32_t)(q - p->base) : 0,
                         s->attempts);
        }
        for (;;) {
            struct tq_loader *best = pick_loader(tq, s);
            if (!best)
                return 0; /* no credit anywhere */
            int rc = issue_one(tq, s, best);
            if (rc < 0)
                return -1;
            if (rc == 0)
                break;
            if (best->alive) /* EAGAIN: leave this loader for now */
                return 0;
        }
    }
    return 0;
}

/* ---- receiving ----------------------------------------------------------------------------- */

static void log_malformed(struct taskq *tq, const char *who, const char *why)
{
    tq->st.rejected++;
    if (tq->log_budget > 0) {
        tq->log_budget--;
        log_warn("dropped a frame from %s: %s%s", who, why,
                 tq->log_budget == 0 ? " (further such warnings suppressed)" : "");
    }
}

static void on_hello(struct taskq *tq, const uint8_t *id, size_t id_len,
                     const struct task_hello *h)
{
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)(h->name.len < 60 ? h->name.len : 60),
             h->name.p ? h->name.p : "");
    if (h->manifest.len != strlen(tq->manifest) ||
        memcmp(h->manifest.p, tq->manifest, h->manifest.len) != 0) {
        char msg[400];
        snprintf(msg, sizeof msg,
                 "manifest mismatch: loader dataset %.*s (%llu images), trainer dataset %s; "
                 "point both at the same data",
                 (int)(h->manifest.len < 64 ? h->manifest.len : 64), h->manifest.p,
                 (unsigned long long)h->count, tq->manifest);
        tq->st.loaders_refused++;
        log_warn("refused loader %s: %s", name, msg);
        reply_refuse(tq, id, id_len, TASK_EMISMATCH, msg);
        return;
    }
    struct tq_loader *l = loader_find(tq, id, id_len);
    int joined = 0;
    if (!l || !l->alive) {
        if (!l)
            l = loader_add(tq, id, id_len);
        if (!l) {
            log_warn("out of memory registering loader %s", name);
            return;
        }
        l->gen = ++tq->gen_counter;
        l->alive = 1;
        l->held = 0;
        joined = 1;
    }
    snprintf(l->name, sizeof l->name, "%s", name[0] ? name : "?");
    l->capacity = h->capacity;
    l->last_seen_ns = clock_now_ns();
    if (joined) {
        tq->st.loaders_joined++;
        log_info("loader %s joined (capacity %u)", l->name, l->capacity);
    }
    /* welcome on every hello: cheap, and lets a loader notice a restarted trainer's run */
    msgpack_packer pk;
    msgpack_sbuffer_clear(&tq->sb);
    msgpack_packer_init(&pk, &tq->sb, msgpack_sbuffer_write);
    struct task_welcome w = { tq->run };
    if (proto_task_encode_welcome(&pk, &w) == 0 && send_to(tq, id, id_len) != 0 &&
        errno == EHOSTUNREACH)
        loader_lost(tq, l, "disconnected");
}

/* Takes ownership of *m when the batch is stored (returns 1), else leaves it (returns 0). */
static int on_batch(struct taskq *tq, struct tq_loader *l, const struct task_batch *b,
                    zmq_msg_t *m)
{
    if (b->run != tq->run) {
        tq->st.stale++;
        return 0;
    }
    struct tq_plan *p = plan_of_epoch(tq, b->epoch);
    if (!p || b->step < p->first_step || b->step >= p->total_steps) {
        tq->st.stale++;
        return 0;
    }
    uint64_t seq = p->base + (b->step - p->first_step);
    if (seq < tq->next_seq) {
        tq->st.duplicates++;
        return 0;
    }
    struct tq_slot *s = slot_of(tq, seq);
    if (!s || (s->state == SLOT_EMPTY && s->attempts == 0)) {
        tq->st.stale++;
        return 0;
    }
    char why[160];
    /* only a loader the task was issued to may answer it */
    struct tq_holder *h = l ? holder_of(s, tq, l) : NULL;
    if (!h) {
        tq->st.foreign++;
        snprintf(why, sizeof why, "a batch for epoch %u step %u, which was not issued to it",
                 b->epoch, b->step);
        log_malformed(tq, l ? l->name : "an unregistered peer", why);
        return 0;
    }
    holder_release(tq, h);
    if (s->state == SLOT_ISSUED && slot_holder(s) == h)
        s->state = SLOT_EMPTY; /* answered: if invalid, re-issued at once below */
    if (s->state == SLOT_DONE) {
        tq->st.duplicates++;
        return 0;
    }
    size_t off;
    uint32_t count;
    plan_step_range(p, b->step, &off, &count);
    if (b->count != count) {
        snprintf(why, sizeof why, "epoch %u step %u: %u images, expected %u", b->epoch,
                 b->step, b->count, count);
        goto reject;
    }
    if (b->size != tq->o.size || b->layout != tq->o.layout) {
        snprintf(why, sizeof why, "epoch %u step %u: size %u %s, expected %u %s", b->epoch,
                 b->step, b->size, proto_task_layout_name(b->layout), tq->o.size,
                 proto_task_layout_name(tq->o.layout));
        goto reject;
    }
    if (b->views != p->views) {
        snprintf(why, sizeof why, "epoch %u step %u: %u views per image, expected %u (a loader "
                 "older than the views field?)", b->epoch, b->step, b->views, p->views);
        goto reject;
    }
    if (memcmp(b->idx, p->perm + off, (size_t)count * 4) != 0) {
        snprintf(why, sizeof why, "epoch %u step %u: indices differ from the plan", b->epoch,
                 b->step);
        goto reject;
    }
    memcpy(s->idx, b->idx, (size_t)count * 4);
    memcpy(s->labels, b->labels, (size_t)count * 4);
    zmq_msg_init(&s->msg);
    zmq_msg_move(&s->msg, m);
    s->has_msg = 1;
    /* decode again from the frame's new owner, so every pointer refers to s->msg */
    union task_msg u;
    if (proto_task_decode(zmq_msg_data(&s->msg), zmq_msg_size(&s->msg), &u, why, sizeof why) !=
        TASK_MSG_BATCH) {
        zmq_msg_close(&s->msg);
        s->has_msg = 0;
        goto reject;
    }
    s->b = u.batch;
    b = &s->b;
    s->state = SLOT_DONE;
    s->received_ns = clock_now_ns();
    tq->last_valid_ns = s->received_ns;
    l->strikes = 0;
    uint32_t nbad = 0;
    for (uint32_t i = 0; i < count; i++)
        nbad += b->bad[i] != 0;
    s->nbad = nbad;
    if (nbad && b->errors.type == MP_ARRAY) {
        struct mp_iter it;
        struct mp_obj o;
        mp_iter_init(&it, &b->errors);
        int k = 0;
        while (mp_iter_next(&it, &o) && k++ < 8)
            log_warn("bad image (epoch %u step %u; %s): %.*s", b->epoch, b->step,
                     p->train ? "substituted by the next that decodes" : "mid-grey",
                     (int)(o.len > 300 ? 300 : o.len), o.ptr);
    }
    return 1;
reject:
    l->strikes++; /* its answers are not trusted with more than a probe's credit */
    log_malformed(tq, l->name, why);
    return 0;
}

/* A loader's "this task can never succeed": fatal, but only from a loader the task is
 * outstanding at (anyone else, or an answer after the deadline, is dropped and counted). */
static void on_fail(struct taskq *tq, struct tq_loader *l, const struct task_fail *f)
{
    struct tq_plan *p = f->run == tq->run ? plan_of_epoch(tq, f->epoch) : NULL;
    if (!p || f->step < p->first_step || f->step >= p->total_steps) {
        tq->st.stale++;
        return;
    }
    struct tq_slot *s = slot_of(tq, p->base + (f->step - p->first_step));
    struct tq_holder *h = s && l ? holder_of(s, tq, l) : NULL;
    if (!h || !h->outstanding) {
        char why[160];
        tq->st.foreign++;
        snprintf(why, sizeof why, "a fail for epoch %u step %u, which it does not hold",
                 f->epoch, f->step);
        log_malformed(tq, l ? l->name : "an unregistered peer", why);
        return;
    }
    fatal(tq, "loader %s cannot run epoch %u step %u: %.*s: %.*s", l->name, f->epoch, f->step,
          (int)f->code.len, f->code.p, (int)(f->msg.len > 300 ? 300 : f->msg.len), f->msg.p);
}

static void on_frame(struct taskq *tq, const uint8_t *id, size_t id_len, zmq_msg_t *m)
{
    union task_msg u;
    char why[256];
    struct tq_loader *l = loader_find(tq, id, id_len);
    if (l && l->alive)
        l->last_seen_ns = clock_now_ns();
    enum task_msg_type t = proto_task_decode(zmq_msg_data(m), zmq_msg_size(m), &u, why,
                                             sizeof why);
    const char *who = l ? l->name : "an unregistered peer";
    switch (t) {
    case TASK_MSG_HELLO:
        on_hello(tq, id, id_len, &u.hello);
        break;
    case TASK_MSG_BATCH:
        on_batch(tq, l, &u.batch, m);
        break;
    case TASK_MSG_FAIL:
        on_fail(tq, l, &u.fail);
        break;
    case TASK_MSG_NONE:
        if (strncmp(why, "EVERSION", 8) == 0) {
            tq->st.loaders_refused++;
            reply_refuse(tq, id, id_len, TASK_EVERSION, why);
        }
        log_malformed(tq, who, why);
        break;
    default:
        snprintf(why, sizeof why, "unexpected message type '%s'", proto_task_type_name(t));
        log_malformed(tq, who, why);
        break;
    }
}

/* Receives everything queued (bounded). 0, or -1 on a socket failure. */
static int drain(struct taskq *tq)
{
    for (int k = 0; k < DRAIN_MAX; k++) {
        zmq_msg_t idm, m;
        zmq_msg_init(&idm);
        if (zmq_msg_recv(&idm, tq->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&idm);
            if (errno == EAGAIN)
                return 0;
            if (errno == EINTR)
                continue;
            return fatal(tq, "receive on %s failed: %s", tq->endpoint, zmq_strerror(errno));
        }
        if (!zmq_msg_more(&idm)) {
            zmq_msg_close(&idm);
            continue;
        }
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, tq->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            zmq_msg_close(&idm);
            continue;
        }
        if (zmq_msg_more(&m)) {
            msg_drain_more(tq->sock);
            log_malformed(tq, "a peer", "multipart message");
        } else if (zmq_msg_size(&idm) <= MAX_ID) {
            on_frame(tq, zmq_msg_data(&idm), zmq_msg_size(&idm), &m);
        }
        zmq_msg_close(&m);
        zmq_msg_close(&idm);
    }
    return 0;
}

static void check_liveness(struct taskq *tq)
{
    uint64_t now = clock_now_ns();
    uint64_t lt = (uint64_t)tq->o.loader_timeout_ms * 1000000ull;
    for (size_t i = 0; i < tq->n_loaders; i++) {
        struct tq_loader *l = &tq->loaders[i];
        if (l->alive && now - l->last_seen_ns > lt)
            loader_lost(tq, l, "no heartbeat");
    }
    uint64_t dl = (uint64_t)tq->o.deadline_ms * 1000000ull;
    for (uint32_t i = 0; i < tq->o.window; i++) {
        struct tq_slot *s = &tq->slots[i];
        if (s->state == SLOT_ISSUED && now - s->issued_ns > dl) {
            struct tq_holder *h = slot_holder(s);
            struct tq_loader *l = loader_by_gen(tq, h->loader, h->gen);
            holder_release(tq, h);
            if (l)
                l->strikes++;
            s->state = SLOT_EMPTY;
            tq->st.deadline_expired++;
            log_warn("task %llu missed its %u ms deadline; re-issuing",
                     (unsigned long long)s->seq, tq->o.deadline_ms);
        }
    }
}

int taskq_service(struct taskq *tq)
{
    /* the last delivered batch is invalidated by this call (taskq.h): its slot returns to
       the window before issuing */
    release_cur(tq);
    if (tq->fatal)
        return -1;
    if (drain(tq))
        return -1;
    if (tq->fatal)
        return -1;
    check_liveness(tq);
    return issue(tq);
}

/* ---- public -------------------------------------------------------------------------------- */

struct taskq *taskq_new(const char *endpoint, const char *manifest, const struct taskq_opts *o,
                        char *err, size_t err_len)
{
    struct taskq_opts def;
    if (!o) {
        taskq_opts_default(&def);
        o = &def;
    }
    if (!endpoint || !*endpoint) {
        err_set(err, err_len, "no task endpoint given");
        return NULL;
    }
    if (!manifest || strlen(manifest) != 64) {
        err_set(err, err_len, "manifest must be 64 hex digits");
        return NULL;
    }
    if (o->window < 1 || o->window > 4096 || o->max_attempts < 1 || o->deadline_ms < 1 ||
        o->loader_timeout_ms < 1 || o->size < 1 || o->size > TASK_MAX_SIZE || o->views < 1 ||
        o->views > TASK_MAX_VIEWS) {
        err_set(err, err_len, "invalid taskq options (window 1..4096, size 1..%u, views 1..%u, "
                              "positive timeouts and attempts)", TASK_MAX_SIZE, TASK_MAX_VIEWS);
        return NULL;
    }
    struct augment_params ap;
    const char *preset = o->preset ? o->preset : "cifar";
    if (strlen(preset) >= 32 || augment_preset(preset, o->train, o->size, o->layout, &ap)) {
        err_set(err, err_len, "unknown augmentation preset '%s' (cifar, imagenet, none)", preset);
        return NULL;
    }
    const char *aug = o->aug ? o->aug : "";
    if (strlen(aug) > TASK_MAX_AUG) {
        err_set(err, err_len, "augmentation override longer than %u bytes", TASK_MAX_AUG);
        return NULL;
    }
    if (augment_override(&ap, aug, err, err_len) != 0)
        return NULL;
    struct taskq *tq = calloc(1, sizeof *tq);
    if (!tq) {
        err_set(err, err_len, "out of memory");
        return NULL;
    }
    tq->o = *o;
    snprintf(tq->preset, sizeof tq->preset, "%s", preset);
    snprintf(tq->aug, sizeof tq->aug, "%s", aug);
    tq->o.aug = tq->aug;
    snprintf(tq->run_name, sizeof tq->run_name, "%s", o->run ? o->run : "");
    tq->o.preset = tq->preset;
    tq->o.run = tq->run_name;
    snprintf(tq->manifest, sizeof tq->manifest, "%s", manifest);
    tq->run = rng_mix64(clock_now_ns() ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)tq) >> 1;
    tq->log_budget = 20;
    msgpack_sbuffer_init(&tq->sb);
    tq->slots = calloc(o->window, sizeof *tq->slots);
    if (!tq->slots) {
        err_set(err, err_len, "out of memory");
        goto fail;
    }
    slots_reset(tq);
    struct msg_opts mo = MSG_OPTS_DEFAULT;
    mo.maxmsgsize = (int64_t)o->max_frame;
    mo.rcvhwm = 10000;
    mo.sndhwm = 10000;
    mo.curve = o->curve;
    tq->sock = msg_socket(ZMQ_ROUTER, &mo);
    if (!tq->sock) {
        err_set(err, err_len, "cannot create a ZeroMQ socket: %s", zmq_strerror(errno));
        goto fail;
    }
    int one = 1;
    zmq_setsockopt(tq->sock, ZMQ_ROUTER_MANDATORY, &one, sizeof one);
    /* a loader keeps its routing id across reconnects (after a heartbeat timeout, say); the
     * new connection must replace the old one, which libzmq would otherwise keep while
     * silently dropping everything the new one sends (tests/it_trainer_reconnect.sh) */
    zmq_setsockopt(tq->sock, ZMQ_ROUTER_HANDOVER, &one, sizeof one);
    if (msg_bind(tq->sock, endpoint, o->allow_remote)) {
        err_set(err, err_len, "cannot bind task endpoint %s: %s%s", endpoint,
                errno == EPERM ? "not a loopback address" : zmq_strerror(errno),
                errno == EPERM ? " (use --allow-remote to accept remote loaders)" : "");
        goto fail;
    }
    size_t len = sizeof tq->endpoint;
    if (zmq_getsockopt(tq->sock, ZMQ_LAST_ENDPOINT, tq->endpoint, &len) != 0)
        snprintf(tq->endpoint, sizeof tq->endpoint, "%s", endpoint);
    snprintf(tq->err, sizeof tq->err, "no error");
    return tq;
fail:
    taskq_destroy(&tq);
    return NULL;
}

void taskq_destroy(struct taskq **tqp)
{
    if (!tqp || !*tqp)
        return;
    struct taskq *tq = *tqp;
    if (tq->slots) {
        for (uint32_t i = 0; i < tq->o.window; i++) {
            if (tq->slots[i].has_msg)
                zmq_msg_close(&tq->slots[i].msg);
            free(tq->slots[i].idx);
            free(tq->slots[i].labels);
        }
        free(tq->slots);
    }
    for (size_t i = 0; i < tq->n_plans; i++)
        free(tq->plans[i].perm);
    free(tq->plans);
    free(tq->loaders);
    msgpack_sbuffer_destroy(&tq->sb);
    msg_close(&tq->sock);
    free(tq);
    *tqp = NULL;
}

/* A plan of tasks with the transform train, views views per image, drop_last as given. */
static int64_t plan_add(struct taskq *tq, uint32_t epoch, const uint32_t *perm, size_t n,
                        uint32_t batch, uint32_t first_step, uint64_t aug_seed, int train,
                        uint32_t views, int drop_last)
{
    if (n == 0 || batch == 0 || batch > TASK_MAX_COUNT || !perm ||
        (tq->have_last_epoch && epoch <= tq->last_epoch)) {
        errno = EINVAL;
        return -1;
    }
    /* a batch frame must fit the socket's frame limit, or it could never be received */
    uint64_t frame = (uint64_t)views * batch * tq->o.size * tq->o.size * 3 +
                     (uint64_t)batch * 9 + 65536;
    if (frame > tq->o.max_frame) {
        errno = EMSGSIZE;
        return -1;
    }
    uint64_t total = n / batch + (n % batch && !drop_last ? 1 : 0);
    if (total > UINT32_MAX) {
        errno = EINVAL;
        return -1;
    }
    if (ensure_batch_cap(tq, batch)) {
        errno = ENOMEM;
        return -1;
    }
    if (tq->n_plans == tq->plans_cap) {
        size_t c = tq->plans_cap ? tq->plans_cap * 2 : 4;
        struct tq_plan *p = realloc(tq->plans, c * sizeof *p);
        if (!p) {
            errno = ENOMEM;
            return -1;
        }
        tq->plans = p;
        tq->plans_cap = c;
    }
    struct tq_plan *p = &tq->plans[tq->n_plans];
    memset(p, 0, sizeof *p);
    p->perm = malloc(n * sizeof *p->perm);
    if (!p->perm) {
        errno = ENOMEM;
        return -1;
    }
    memcpy(p->perm, perm, n * sizeof *perm);
    p->epoch = epoch;
    p->n = n;
    p->batch = batch;
    p->total_steps = (uint32_t)total;
    p->first_step = first_step < total ? first_step : (uint32_t)total;
    p->steps = p->total_steps - p->first_step;
    p->seed = aug_seed;
    p->train = train;
    p->views = views;
    p->base = tq->end_seq;
    tq->end_seq += p->steps;
    tq->n_plans++;
    tq->have_last_epoch = 1;
    tq->last_epoch = epoch;
    return p->steps;
}

int64_t taskq_plan(struct taskq *tq, uint32_t epoch, const uint32_t *perm, size_t n,
                   uint32_t batch, uint32_t first_step, uint64_t aug_seed)
{
    return plan_add(tq, epoch, perm, n, batch, first_step, aug_seed, tq->o.train, tq->o.views,
                    tq->o.drop_last);
}

int64_t taskq_plan_test(struct taskq *tq, uint32_t epoch, const uint32_t *idx, size_t n,
                        uint32_t batch)
{
    return plan_add(tq, epoch, idx, n, batch, 0, 0, 0, 1, 0);
}

int taskq_next(struct taskq *tq, int timeout_ms, struct taskq_batch *out)
{
    release_cur(tq);
    if (tq->fatal)
        return -1;
    if (tq->n_plans == 0) {
        if (taskq_service(tq))
            return -1;
        return TASKQ_IDLE;
    }
    struct tq_plan *head = &tq->plans[0];
    if (tq->next_seq == head->base + head->steps) {
        memset(out, 0, sizeof *out);
        out->epoch = head->epoch;
        out->step = head->total_steps;
        plan_pop(tq);
        return TASKQ_EPOCH_END;
    }
    uint64_t t0 = clock_now_ns();
    uint64_t limit = timeout_ms < 0 ? UINT64_MAX : t0 + (uint64_t)timeout_ms * 1000000ull;
    for (;;) {
        if (taskq_service(tq))
            return -1;
        struct tq_slot *s = slot_of(tq, tq->next_seq);
        NPID_CHECK(s != NULL);
        if (s->state == SLOT_DONE) {
            uint64_t now = clock_now_ns();
            memset(out, 0, sizeof *out);
            out->epoch = s->b.epoch;
            out->step = s->b.step;
            out->count = s->b.count;
            out->size = s->b.size;
            out->layout = s->b.layout;
            out->views = s->b.views;
            out->indices = s->idx;
            out->labels = s->labels;
            out->pixels = s->b.pix;
            out->bad = s->b.bad;
            out->n_bad = s->nbad;
            out->attempts = s->attempts;
            out->wait_ns = now - t0;
            out->latency_ns = s->received_ns > s->issued_ns ? s->received_ns - s->issued_ns : 0;
            out->decode_ns = s->b.decode_ns;
            out->augment_ns = s->b.augment_ns;
            tq->st.wait_ns += now - t0;
            tq->st.delivered++;
            tq->st.bad_images += out->n_bad;
            tq->st.loader_decode_ns += out->decode_ns;
            tq->st.loader_augment_ns += out->augment_ns;
            tq->st.latency_ns += out->latency_ns;
            tq->cur = s;
            tq->next_seq++;
            return TASKQ_BATCH;
        }
        if (MSG_STOPPED(tq->o.stop)) {
            tq->st.wait_ns += clock_now_ns() - t0;
            errno = EINTR;
            snprintf(tq->err, sizeof tq->err, "interrupted");
            return -1;
        }
        uint64_t now = clock_now_ns();
        if (now >= limit) {
            tq->st.wait_ns += now - t0;
            return TASKQ_TIMEOUT;
        }
        uint64_t left_ms = limit == UINT64_MAX ? POLL_SLICE_MS : (limit - now) / 1000000ull + 1;
        zmq_pollitem_t it = { tq->sock, 0, ZMQ_POLLIN, 0 };
        (void)zmq_poll(&it, 1, (long)(left_ms < POLL_SLICE_MS ? left_ms : POLL_SLICE_MS));
    }
}

void taskq_cancel(struct taskq *tq)
{
    release_cur(tq);
    for (size_t i = 0; i < tq->n_plans; i++)
        free(tq->plans[i].perm);
    tq->n_plans = 0;
    tq->have_last_epoch = 0;
    tq->next_seq = tq->end_seq;
    slots_reset(tq);
}

void taskq_get_stats(const struct taskq *tq, struct taskq_stats *s)
{
    *s = tq->st;
    s->loaders = 0;
    for (size_t i = 0; i < tq->n_loaders; i++)
        s->loaders += tq->loaders[i].alive != 0;
    s->in_flight = s->buffered = 0;
    for (uint32_t i = 0; i < tq->o.window; i++) {
        if (tq->slots[i].state == SLOT_ISSUED)
            s->in_flight++;
        else if (tq->slots[i].state == SLOT_DONE && &tq->slots[i] != tq->cur)
            s->buffered++;
    }
}

const char *taskq_error(const struct taskq *tq)
{
    return tq->err;
}

const char *taskq_endpoint(const struct taskq *tq)
{
    return tq->endpoint;
}
