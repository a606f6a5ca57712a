/* The trainer-side task dispatcher against protocol peers: DEALER sockets in this process that
 * speak the real loader protocol (common/proto_task) over inproc://, scripted to misbehave:
 * answering out of order, twice, never, going silent, sending garbage, wrong manifests and
 * wrong batches. Checked: in-order exactly-once delivery, re-issue on deadline and on loader
 * loss, duplicate dropping, refusals, rejection counts, plan options (drop_last, resume,
 * queued plans), failure reporting, loopback-only binding. Real loader processes are
 * exercised by tests/it_loader_*.sh. */
#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "common/clock.h"
#include "common/msg.h"
#include "common/proto_task.h"
#include "trainer/taskq.h"

static const char *MAN = "1111111111111111111111111111111111111111111111111111111111111111";
static const char *OTHER = "2222222222222222222222222222222222222222222222222222222222222222";
static int ep_counter;

struct held_task {
    struct task_task t;
    uint32_t idx[64];
    char aug[TASK_MAX_AUG + 1];
};

struct peer {
    void *sock;
    struct held_task q[64];
    int n;
    int refused;
    char refuse_code[16];
    uint64_t last_hello;
};

static void next_ep(char *ep, size_t len)
{
    snprintf(ep, len, "inproc://taskq-test-%d-%d", (int)getpid(), ++ep_counter);
}

static struct peer *peer_new(const char *ep)
{
    struct peer *p = calloc(1, sizeof *p);
    p->sock = msg_socket(ZMQ_DEALER, NULL);
    ck_assert_ptr_nonnull(p->sock);
    ck_assert_int_eq(msg_connect(p->sock, ep), 0);
    return p;
}

static void peer_free(struct peer *p)
{
    msg_close(&p->sock);
    free(p);
}

static void send_sb(struct peer *p, msgpack_sbuffer *sb)
{
    ck_assert_int_eq(msg_send(p->sock, sb->data, sb->size, 0, 1000, NULL), 0);
}

static void peer_hello(struct peer *p, const char *manifest, uint32_t cap)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    struct task_hello h = { { manifest, 64 }, 100, cap, 0, { "peer", 4 } };
    ck_assert_int_eq(proto_task_encode_hello(&pk, &h), 0);
    send_sb(p, &sb);
    msgpack_sbuffer_destroy(&sb);
    p->last_hello = clock_now_ns();
}

/* Receives whatever arrived: tasks are queued, refusals noted. */
static void peer_poll(struct peer *p)
{
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, p->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        union task_msg u;
        char err[256];
        enum task_msg_type t = proto_task_decode(zmq_msg_data(&m), zmq_msg_size(&m), &u, err,
                                                 sizeof err);
        if (t == TASK_MSG_TASK) {
            ck_assert_int_lt(p->n, 64);
            ck_assert_uint_le(u.task.count, 64);
            struct held_task *h = &p->q[p->n++];
            h->t = u.task;
            memcpy(h->idx, u.task.idx, (size_t)u.task.count * 4);
            h->t.idx = h->idx;
            h->t.preset.p = NULL; /* points into the frame */
            snprintf(h->aug, sizeof h->aug, "%.*s", (int)u.task.aug.len, u.task.aug.p);
            h->t.aug.p = h->aug;
        } else if (t == TASK_MSG_REFUSE) {
            p->refused = 1;
            snprintf(p->refuse_code, sizeof p->refuse_code, "%.*s", (int)u.refuse.code.len,
                     u.refuse.code.p);
        }
        zmq_msg_close(&m);
    }
}

/* Pixels of index i: byte k of the image is (i * 7 + k) & 255. */
static void peer_answer(struct peer *p, const struct task_task *t, int corrupt_idx)
{
    size_t img = (size_t)t->size * t->size * 3;
    uint8_t *pix = malloc(img * t->count);
    uint32_t labels[64], idx[64];
    uint8_t bad[64] = { 0 };
    for (uint32_t j = 0; j < t->count; j++) {
        uint32_t i = proto_task_u32(t->idx, j);
        idx[j] = i + (corrupt_idx && j == 0 ? 1 : 0);
        labels[j] = i % 10;
        for (size_t k = 0; k < img; k++)
            pix[j * img + k] = (uint8_t)(i * 7 + k);
    }
    const char *errs[1] = { "x.jpg: test" };
    struct task_batch b = { .run = t->run, .epoch = t->epoch, .step = t->step, .count = t->count,
                            .size = t->size, .layout = t->layout, .idx = idx, .labels = labels,
                            .bad = bad, .pix = pix, .n_errors = 0, .errors_list = errs };
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    ck_assert_int_eq(proto_task_encode_batch(&pk, &b), 0);
    send_sb(p, &sb);
    msgpack_sbuffer_destroy(&sb);
    free(pix);
}

static void peer_pop(struct peer *p, int i)
{
    memmove(&p->q[i], &p->q[i + 1], sizeof p->q[0] * (size_t)(p->n - i - 1));
    p->n--;
    for (int k = i; k < p->n; k++)
        p->q[k].t.idx = p->q[k].idx;
}

/* Checks a delivered batch against the plan and the peers' pixel rule. */
static void check_batch(const struct taskq_batch *b, const uint32_t *perm, uint32_t batch)
{
    for (uint32_t j = 0; j < b->count; j++) {
        uint32_t i = perm[(size_t)b->step * batch + j];
        ck_assert_uint_eq(b->indices[j], i);
        ck_assert_uint_eq(b->labels[j], i % 10);
        size_t img = (size_t)b->size * b->size * 3;
        for (size_t k = 0; k < img; k += 37)
            ck_assert_uint_eq(b->pixels[j * img + k], (uint8_t)(i * 7 + k));
    }
}

static struct taskq *new_tq(char *ep, uint32_t window, uint32_t deadline, uint32_t lt,
                            int drop_last)
{
    next_ep(ep, 128);
    struct taskq_opts o;
    taskq_opts_default(&o);
    o.window = window;
    o.deadline_ms = deadline;
    o.loader_timeout_ms = lt;
    o.drop_last = drop_last;
    o.size = 4;
    char err[256];
    struct taskq *tq = taskq_new(ep, MAN, &o, err, sizeof err);
    ck_assert_msg(tq != NULL, "%s", err);
    return tq;
}

static void fill_perm(uint32_t *perm, size_t n, uint32_t mul)
{
    for (size_t i = 0; i < n; i++)
        perm[i] = (uint32_t)((i * mul + 3) % n);
}

START_TEST(test_in_order_two_peers)
{
    char ep[128];
    struct taskq *tq = new_tq(ep, 4, 30000, 3000, 0);
    struct peer *a = peer_new(ep), *b = peer_new(ep);
    peer_hello(a, MAN, 2);
    peer_hello(b, MAN, 2);
    uint32_t perm[43];
    fill_perm(perm, 43, 7);
    ck_assert_int_eq(taskq_plan(tq, 0, perm, 43, 5, 0, 9), 9);
    uint32_t expect = 0;
    uint64_t end = clock_now_ns() + 10000000000ull;
    struct taskq_batch bt;
    for (;;) {
        ck_assert_msg(clock_now_ns() < end, "stuck at step %u", expect);
        int rc = taskq_next(tq, 5, &bt);
        ck_assert_int_ge(rc, 0);
        if (rc == TASKQ_EPOCH_END)
            break;
        if (rc == TASKQ_BATCH) {
            ck_assert_uint_eq(bt.step, expect);
            ck_assert_uint_eq(bt.count, expect == 8 ? 3 : 5);
            check_batch(&bt, perm, 5);
            expect++;
        }
        peer_poll(a);
        peer_poll(b);
        /* a answers newest first, b oldest first */
        while (a->n) {
            peer_answer(a, &a->q[a->n - 1].t, 0);
            peer_pop(a, a->n - 1);
        }
        while (b->n) {
            peer_answer(b, &b->q[0].t, 0);
            peer_pop(b, 0);
        }
    }
    ck_assert_uint_eq(expect, 9);
    ck_assert_uint_eq(bt.epoch, 0);
    struct taskq_stats st;
    taskq_get_stats(tq, &st);
    ck_assert_uint_eq(st.delivered, 9);
    ck_assert_uint_eq(st.issued, 9);
    ck_assert_uint_eq(st.reissued, 0);
    ck_assert_uint_eq(st.duplicates, 0);
    ck_assert_uint_eq(st.loaders, 2);
    ck_assert_uint_eq(st.loaders_joined, 2);
    ck_assert_int_eq(taskq_next(tq, 0, &bt), TASKQ_IDLE);
    peer_free(a);
    peer_free(b);
    taskq_destroy(&tq);
    ck_assert_ptr_null(tq);
}
END_TEST

START_TEST(test_deadline_duplicates_and_loss)
{
    char ep[128];
    struct taskq *tq = new_tq(ep, 4, 300, 600, 0);
    struct peer *slow = peer_new(ep), *dup = peer_new(ep), *dies = peer_new(ep);
    peer_hello(slow, MAN, 1);
    peer_hello(dies, MAN, 1);
    uint32_t perm[40];
    fill_perm(perm, 40, 3);
    ck_assert_int_eq(taskq_plan(tq, 5, perm, 40, 4, 0, 1), 10);
    struct taskq_batch bt;
    /* let slow and dies take a task each, then dies vanishes and dup joins */
    for (int k = 0; k < 20 && (slow->n == 0 || dies->n == 0); k++) {
        ck_assert_int_ge(taskq_next(tq, 5, &bt), 0);
        peer_poll(slow);
        peer_poll(dies);
    }
    ck_assert_int_eq(slow->n, 1);
    ck_assert_int_eq(dies->n, 1);
    peer_free(dies);
    peer_hello(dup, MAN, 2);
    uint32_t expect = 0;
    uint64_t end = clock_now_ns() + 15000000000ull;
    for (;;) {
        ck_assert_msg(clock_now_ns() < end, "stuck at step %u", expect);
        int rc = taskq_next(tq, 20, &bt);
        ck_assert_int_ge(rc, 0);
        if (rc == TASKQ_EPOCH_END)
            break;
        if (rc == TASKQ_BATCH) {
            ck_assert_uint_eq(bt.epoch, 5);
            ck_assert_uint_eq(bt.step, expect);
            check_batch(&bt, perm, 4);
            expect++;
        }
        /* slow: heartbeats, never answers; dup: answers everything twice */
        if (clock_now_ns() - slow->last_hello > 100000000ull)
            peer_hello(slow, MAN, 1);
        if (clock_now_ns() - dup->last_hello > 100000000ull)
            peer_hello(dup, MAN, 2);
        peer_poll(slow);
        peer_poll(dup);
        while (dup->n) {
            peer_answer(dup, &dup->q[0].t, 0);
            peer_answer(dup, &dup->q[0].t, 0);
            peer_pop(dup, 0);
        }
    }
    ck_assert_uint_eq(expect, 10);
    struct taskq_stats st;
    taskq_get_stats(tq, &st);
    ck_assert_uint_eq(st.delivered, 10);
    ck_assert_uint_ge(st.reissued, 2);       /* the slow one's and the dead one's */
    ck_assert_uint_ge(st.deadline_expired, 1);
    ck_assert_uint_ge(st.duplicates, 9);
    /* the dead loader is dropped at its heartbeat timeout, which may come after the last
       step now that re-issues avoid the silent loader */
    for (int k = 0; k < 100 && st.loaders_lost == 0; k++) {
        if (clock_now_ns() - slow->last_hello > 100000000ull)
            peer_hello(slow, MAN, 1);
        if (clock_now_ns() - dup->last_hello > 100000000ull)
            peer_hello(dup, MAN, 2);
        ck_assert_int_eq(taskq_service(tq), 0);
        usleep(20000);
        taskq_get_stats(tq, &st);
    }
    ck_assert_uint_eq(st.loaders_lost, 1);
    peer_free(slow);
    peer_free(dup);
    taskq_destroy(&tq);
}
END_TEST

START_TEST(test_refusals_and_malformed)
{
    char ep[128];
    struct taskq *tq = new_tq(ep, 2, 30000, 3000, 0);
    struct peer *wrong = peer_new(ep), *junk = peer_new(ep), *good = peer_new(ep);
    peer_hello(wrong, OTHER, 2);
    /* garbage, wrong version, wrong types, unknown type, multipart */
    ck_assert_int_eq(msg_send(junk->sock, "\xc1\xc1", 2, 0, 1000, NULL), 0);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    mp_pack_kv_u64(&pk, "v", 2);
    mp_pack_kv_str(&pk, "t", "hello");
    ck_assert_int_eq(msg_send(junk->sock, sb.data, sb.size, 0, 1000, NULL), 0);
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 3);
    mp_pack_kv_u64(&pk, "v", 1);
    mp_pack_kv_str(&pk, "t", "hello");
    mp_pack_kv_u64(&pk, "manifest", 5);
    ck_assert_int_eq(msg_send(junk->sock, sb.data, sb.size, 0, 1000, NULL), 0);
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 2);
    mp_pack_kv_u64(&pk, "v", 1);
    mp_pack_kv_str(&pk, "t", "nonsense");
    ck_assert_int_eq(msg_send(junk->sock, sb.data, sb.size, 0, 1000, NULL), 0);
    ck_assert_int_eq(msg_send(junk->sock, "a", 1, ZMQ_SNDMORE, 1000, NULL), 0);
    ck_assert_int_eq(msg_send(junk->sock, "b", 1, 0, 1000, NULL), 0);
    msgpack_sbuffer_destroy(&sb);
    peer_hello(good, MAN, 1);
    uint32_t perm[8];
    fill_perm(perm, 8, 5);
    ck_assert_int_eq(taskq_plan(tq, 1, perm, 8, 4, 0, 1), 2);
    struct taskq_batch bt;
    uint32_t expect = 0;
    int corrupted = 0;
    uint64_t end = clock_now_ns() + 10000000000ull;
    for (;;) {
        ck_assert(clock_now_ns() < end);
        int rc = taskq_next(tq, 5, &bt);
        ck_assert_int_ge(rc, 0);
        if (rc == TASKQ_EPOCH_END)
            break;
        if (rc == TASKQ_BATCH) {
            ck_assert_uint_eq(bt.step, expect++);
            check_batch(&bt, perm, 4);
        }
        peer_poll(wrong);
        peer_poll(junk);
        peer_poll(good);
        ck_assert_int_eq(wrong->n, 0);
        while (good->n) {
            /* the first answer carries a wrong index and must be rejected */
            if (!corrupted) {
                peer_answer(good, &good->q[0].t, 1);
                corrupted = 1;
            }
            peer_answer(good, &good->q[0].t, 0);
            peer_pop(good, 0);
        }
    }
    ck_assert_uint_eq(expect, 2);
    ck_assert_int_eq(wrong->refused, 1);
    ck_assert_str_eq(wrong->refuse_code, "EMISMATCH");
    ck_assert_int_eq(junk->refused, 1);
    ck_assert_str_eq(junk->refuse_code, "EVERSION");
    struct taskq_stats st;
    taskq_get_stats(tq, &st);
    ck_assert_uint_eq(st.loaders_refused, 2);
    ck_assert_uint_ge(st.rejected, 5);
    ck_assert_uint_eq(st.delivered, 2);
    ck_assert_uint_eq(st.loaders, 1);
    peer_free(wrong);
    peer_free(junk);
    peer_free(good);
    taskq_destroy(&tq);
}
END_TEST

/* Serves every task with one peer until the plan(s) are done; returns steps seen per epoch. */
static void serve(struct taskq *tq, struct peer *p, int max_events, int *events, uint32_t *epochs,
                  uint32_t *steps, uint32_t *counts)
{
    struct taskq_batch bt;
    uint64_t end = clock_now_ns() + 10000000000ull;
    int n = 0;
    while (n < max_events) {
        ck_assert(clock_now_ns() < end);
        int rc = taskq_next(tq, 5, &bt);
        ck_assert_int_ge(rc, 0);
        if (rc == TASKQ_BATCH || rc == TASKQ_EPOCH_END) {
            events[n] = rc;
            epochs[n] = bt.epoch;
            steps[n] = bt.step;
            counts[n] = rc == TASKQ_BATCH ? bt.count : 0;
            n++;
        }
        peer_poll(p);
        while (p->n) {
            peer_answer(p, &p->q[0].t, 0);
            peer_pop(p, 0);
        }
    }
}

START_TEST(test_plans)
{
    char ep[128];
    struct taskq *tq = new_tq(ep, 3, 30000, 3000, 1);
    struct peer *p = peer_new(ep);
    peer_hello(p, MAN, 3);
    uint32_t perm[10];
    fill_perm(perm, 10, 3);
    struct taskq_batch bt;
    ck_assert_int_eq(taskq_next(tq, 0, &bt), TASKQ_IDLE);
    /* drop_last: 10 / 4 -> 2 steps; resume at step 1 -> 1 step; then epoch 3 queued too */
    ck_assert_int_eq(taskq_plan(tq, 2, perm, 10, 4, 1, 1), 1);
    ck_assert_int_eq(taskq_plan(tq, 3, perm, 10, 4, 0, 1), 2);
    ck_assert_int_eq(taskq_plan(tq, 3, perm, 10, 4, 0, 1), -1);
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_int_eq(taskq_plan(tq, 9, perm, 0, 4, 0, 1), -1);
    ck_assert_int_eq(taskq_plan(tq, 9, perm, 10, 0, 0, 1), -1);
    int ev[5];
    uint32_t e[5], s[5], c[5];
    serve(tq, p, 5, ev, e, s, c);
    ck_assert(ev[0] == TASKQ_BATCH && e[0] == 2 && s[0] == 1 && c[0] == 4);
    ck_assert(ev[1] == TASKQ_EPOCH_END && e[1] == 2);
    ck_assert(ev[2] == TASKQ_BATCH && e[2] == 3 && s[2] == 0);
    ck_assert(ev[3] == TASKQ_BATCH && e[3] == 3 && s[3] == 1 && c[3] == 4);
    ck_assert(ev[4] == TASKQ_EPOCH_END && e[4] == 3);
    taskq_destroy(&tq);
    /* without drop_last the partial batch is kept; a plan past its end still ends once */
    tq = new_tq(ep, 3, 30000, 3000, 0);
    peer_free(p);
    p = peer_new(ep);
    peer_hello(p, MAN, 3);
    ck_assert_int_eq(taskq_plan(tq, 0, perm, 10, 4, 0, 1), 3);
    ck_assert_int_eq(taskq_plan(tq, 1, perm, 10, 4, 7, 1), 0);
    serve(tq, p, 5, ev, e, s, c);
    ck_assert(ev[2] == TASKQ_BATCH && s[2] == 2 && c[2] == 2);
    ck_assert(ev[3] == TASKQ_EPOCH_END && e[3] == 0);
    ck_assert(ev[4] == TASKQ_EPOCH_END && e[4] == 1);
    /* cancel drops queued work; planning the same epoch again is then allowed */
    ck_assert_int_eq(taskq_plan(tq, 2, perm, 10, 4, 0, 1), 3);
    taskq_cancel(tq);
    ck_assert_int_eq(taskq_next(tq, 0, &bt), TASKQ_IDLE);
    ck_assert_int_eq(taskq_plan(tq, 2, perm, 10, 4, 0, 1), 3);
    serve(tq, p, 4, ev, e, s, c);
    ck_assert(ev[0] == TASKQ_BATCH && e[0] == 2 && s[0] == 0);
    ck_assert(ev[3] == TASKQ_EPOCH_END);
    peer_free(p);
    taskq_destroy(&tq);
}
END_TEST

START_TEST(test_failures)
{
    char ep[128], err[256];
    /* a loader that cannot run a task makes taskq_next fail with its reason */
    struct taskq *tq = new_tq(ep, 2, 30000, 3000, 0);
    struct peer *p = peer_new(ep);
    peer_hello(p, MAN, 1);
    uint32_t perm[4] = { 0, 1, 2, 3 };
    ck_assert_int_eq(taskq_plan(tq, 0, perm, 4, 4, 0, 1), 1);
    struct taskq_batch bt;
    int rc = 0;
    uint64_t end = clock_now_ns() + 5000000000ull;
    while (rc >= 0 && clock_now_ns() < end) {
        rc = taskq_next(tq, 5, &bt);
        peer_poll(p);
        if (p->n) {
            msgpack_sbuffer sb;
            msgpack_packer pk;
            msgpack_sbuffer_init(&sb);
            msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
            struct task_fail f = { p->q[0].t.run, 0, 0, { "ERANGE", 6 }, { "index 3 beyond", 14 } };
            ck_assert_int_eq(proto_task_encode_fail(&pk, &f), 0);
            send_sb(p, &sb);
            msgpack_sbuffer_destroy(&sb);
            peer_pop(p, 0);
        }
    }
    ck_assert_int_eq(rc, -1);
    ck_assert_ptr_nonnull(strstr(taskq_error(tq), "ERANGE: index 3 beyond"));
    ck_assert_int_eq(taskq_next(tq, 0, &bt), -1);
    peer_free(p);
    taskq_destroy(&tq);
    /* non-loopback endpoints and bad arguments are refused */
    ck_assert_ptr_null(taskq_new("tcp://10.1.2.3:5558", MAN, NULL, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "loopback"));
    ck_assert_ptr_null(taskq_new("inproc://x", "abc", NULL, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "manifest"));
    struct taskq_opts o;
    taskq_opts_default(&o);
    o.size = 4096; /* 6 images of 4096^2 px exceed the 256 MiB frame limit */
    tq = taskq_new("inproc://z", MAN, &o, err, sizeof err);
    ck_assert_ptr_nonnull(tq);
    ck_assert_int_eq(taskq_plan(tq, 0, perm, 4, 5, 0, 1), 1);
    ck_assert_int_eq(taskq_plan(tq, 1, perm, 4, 6, 0, 1), -1);
    ck_assert_int_eq(errno, EMSGSIZE);
    taskq_destroy(&tq);
    o.preset = "bogus";
    ck_assert_ptr_null(taskq_new("inproc://y", MAN, &o, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "preset"));
    o.preset = "cifar";
    o.aug = "solarize=1";
    ck_assert_ptr_null(taskq_new("inproc://y", MAN, &o, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "unknown key 'solarize'"));
    taskq_destroy(&tq);
}
END_TEST

static void peer_fail(struct peer *p, const struct task_task *t)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    struct task_fail f = { t->run, t->epoch, t->step, { "ERANGE", 6 }, { "forged", 6 } };
    ck_assert_int_eq(proto_task_encode_fail(&pk, &f), 0);
    send_sb(p, &sb);
    msgpack_sbuffer_destroy(&sb);
}

/* Only the loader a task was issued to may answer it: another registered loader's batch or
 * fail for it, and an unregistered peer's, are dropped and counted; the run goes on. */
START_TEST(test_only_holders_answer)
{
    char ep[128];
    struct taskq *tq = new_tq(ep, 2, 30000, 3000, 0);
    struct peer *a = peer_new(ep), *f = peer_new(ep), *stranger = peer_new(ep);
    peer_hello(a, MAN, 1);
    peer_hello(f, MAN, 1);
    uint32_t perm[8];
    fill_perm(perm, 8, 3);
    ck_assert_int_eq(taskq_plan(tq, 0, perm, 8, 4, 0, 1), 2);
    struct taskq_batch bt;
    for (int k = 0; k < 200 && (a->n == 0 || f->n == 0); k++) {
        ck_assert_int_ge(taskq_next(tq, 5, &bt), 0);
        peer_poll(a);
        peer_poll(f);
    }
    ck_assert_int_eq(a->n, 1);
    ck_assert_int_eq(f->n, 1);
    peer_answer(f, &a->q[0].t, 0);        /* f answers a's task */
    peer_fail(f, &a->q[0].t);             /* and fails it */
    peer_answer(stranger, &a->q[0].t, 0); /* a peer that never said hello */
    peer_fail(stranger, &a->q[0].t);
    struct taskq_stats st = { 0 };
    for (int k = 0; k < 200 && st.foreign < 4; k++) {
        ck_assert_int_ge(taskq_next(tq, 5, &bt), 0);
        taskq_get_stats(tq, &st);
    }
    ck_assert_uint_eq(st.foreign, 4);
    ck_assert_uint_eq(st.delivered, 0);
    peer_answer(a, &a->q[0].t, 0);
    peer_answer(f, &f->q[0].t, 0);
    uint32_t got = 0;
    for (int k = 0; k < 400 && got < 2; k++) {
        int rc = taskq_next(tq, 5, &bt);
        ck_assert_msg(rc >= 0, "%s", taskq_error(tq));
        if (rc == TASKQ_BATCH) {
            ck_assert_uint_eq(bt.step, got++);
            check_batch(&bt, perm, 4);
        }
    }
    ck_assert_uint_eq(got, 2);
    /* the holder's own fail still stops the run */
    ck_assert_int_eq(taskq_plan(tq, 1, perm, 8, 4, 0, 1), 2);
    a->n = f->n = 0;
    int rc = 0;
    for (int k = 0; k < 400 && rc >= 0; k++) {
        rc = taskq_next(tq, 5, &bt);
        peer_poll(a);
        if (a->n) {
            peer_fail(a, &a->q[0].t);
            peer_pop(a, 0);
        }
    }
    ck_assert_int_eq(rc, -1);
    ck_assert_ptr_nonnull(strstr(taskq_error(tq), "ERANGE: forged"));
    peer_free(a);
    peer_free(f);
    peer_free(stranger);
    taskq_destroy(&tq);
}
END_TEST

/* A silent loader (heartbeats, never answers) with the most credit does not stall or fail
 * the run while a healthy one delivers: after a missed deadline it gets one task at a time
 * and re-issues prefer the loader that delivers. */
START_TEST(test_silent_loader)
{
    char ep[128];
    struct taskq *tq = new_tq(ep, 8, 150, 3000, 0);
    struct peer *silent = peer_new(ep), *ok = peer_new(ep);
    peer_hello(silent, MAN, 8);
    peer_hello(ok, MAN, 1);
    uint32_t perm[160];
    fill_perm(perm, 160, 7);
    ck_assert_int_eq(taskq_plan(tq, 0, perm, 160, 4, 0, 1), 40);
    struct taskq_batch bt;
    uint32_t expect = 0;
    int silent_tasks = 0;
    uint64_t end = clock_now_ns() + 60000000000ull;
    for (;;) {
        ck_assert_msg(clock_now_ns() < end, "stuck at step %u", expect);
        int rc = taskq_next(tq, 5, &bt);
        ck_assert_msg(rc >= 0, "%s", taskq_error(tq));
        if (rc == TASKQ_EPOCH_END)
            break;
        if (rc == TASKQ_BATCH) {
            ck_assert_uint_eq(bt.step, expect++);
            check_batch(&bt, perm, 4);
        }
        if (clock_now_ns() - silent->last_hello > 100000000ull)
            peer_hello(silent, MAN, 8);
        if (clock_now_ns() - ok->last_hello > 100000000ull)
            peer_hello(ok, MAN, 1);
        peer_poll(silent);
        silent_tasks += silent->n;
        silent->n = 0;
        peer_poll(ok);
        while (ok->n) {
            peer_answer(ok, &ok->q[0].t, 0);
            peer_pop(ok, 0);
        }
    }
    ck_assert_uint_eq(expect, 40);
    struct taskq_stats st;
    taskq_get_stats(tq, &st);
    /* its first 8, then one probe per missed deadline at most */
    ck_assert_int_le(silent_tasks, 8 + (int)st.deadline_expired);
    ck_assert_uint_le(st.deadline_expired, 8 + 40 / 2);
    peer_free(silent);
    peer_free(ok);
    taskq_destroy(&tq);
}
END_TEST

/* The augmentation override travels with every task; none is sent when it is empty. */
START_TEST(test_aug_override)
{
    for (int k = 0; k < 2; k++) {
        char ep[128], err[256];
        next_ep(ep, sizeof ep);
        struct taskq_opts o;
        taskq_opts_default(&o);
        o.size = 4;
        o.aug = k ? "crop=0.08-1,flip=1" : "";
        struct taskq *tq = taskq_new(ep, MAN, &o, err, sizeof err);
        ck_assert_msg(tq != NULL, "%s", err);
        struct peer *a = peer_new(ep);
        peer_hello(a, MAN, 2);
        uint32_t perm[10];
        fill_perm(perm, 10, 3);
        ck_assert_int_eq(taskq_plan(tq, 0, perm, 10, 5, 0, 2), 2);
        struct taskq_batch bt;
        uint64_t end = clock_now_ns() + 5000000000ull;
        while (a->n < 2 && clock_now_ns() < end) {
            ck_assert_int_ge(taskq_next(tq, 5, &bt), 0);
            peer_poll(a);
        }
        ck_assert_int_eq(a->n, 2);
        for (int i = 0; i < 2; i++)
            ck_assert_str_eq(a->q[i].aug, k ? "crop=0.08-1,flip=1" : "");
        peer_free(a);
        taskq_destroy(&tq);
    }
}
END_TEST

/* A test pass (the warm start's): tasks with the test transform, one view and every image
 * (the queue's two views and drop_last are for training plans), delivered in order; after
 * taskq_cancel the training epochs start from 0 again. */
START_TEST(test_test_pass)
{
    char ep[128], err[256];
    next_ep(ep, sizeof ep);
    struct taskq_opts o;
    taskq_opts_default(&o);
    o.size = 4;
    o.views = 2;
    o.drop_last = 1;
    struct taskq *tq = taskq_new(ep, MAN, &o, err, sizeof err);
    ck_assert_msg(tq != NULL, "%s", err);
    struct peer *a = peer_new(ep);
    peer_hello(a, MAN, 4);
    uint32_t idx[7];
    fill_perm(idx, 7, 3);
    ck_assert_int_eq(taskq_plan_test(tq, TASKQ_EPOCH_TEST, idx, 7, 5), 2);
    struct taskq_batch bt;
    int got = 0, rc = 0;
    uint64_t end = clock_now_ns() + 10000000000ull;
    while (rc != TASKQ_EPOCH_END && clock_now_ns() < end) {
        rc = taskq_next(tq, 5, &bt);
        ck_assert_int_ge(rc, 0);
        if (rc == TASKQ_BATCH) {
            ck_assert_uint_eq(bt.step, (uint32_t)got);
            ck_assert_uint_eq(bt.views, 1);
            check_batch(&bt, idx, 5);
            got++;
        }
        peer_poll(a);
        while (a->n > 0) {
            ck_assert_int_eq(a->q[0].t.train, 0);
            ck_assert_uint_le(a->q[0].t.views, 1);
            peer_answer(a, &a->q[0].t, 0);
            peer_pop(a, 0);
        }
    }
    ck_assert_int_eq(rc, TASKQ_EPOCH_END);
    ck_assert_int_eq(got, 2); /* 5 + 2 images: the partial batch too */
    ck_assert_int_eq(taskq_plan(tq, 0, idx, 7, 5, 0, 1), -1); /* epochs only grow ... */
    taskq_cancel(tq);
    ck_assert_int_eq(taskq_plan(tq, 0, idx, 7, 5, 0, 1), 1); /* ... until a cancel */
    peer_free(a);
    taskq_destroy(&tq);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("taskq");
    TCase *tc = tcase_create("taskq");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_in_order_two_peers);
    tcase_add_test(tc, test_aug_override);
    tcase_add_test(tc, test_test_pass);
    tcase_add_test(tc, test_deadline_duplicates_and_loss);
    tcase_add_test(tc, test_refusals_and_malformed);
    tcase_add_test(tc, test_plans);
    tcase_add_test(tc, test_failures);
    tcase_add_test(tc, test_only_holders_answer);
    tcase_add_test(tc, test_silent_loader);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
