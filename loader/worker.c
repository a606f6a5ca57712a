/* The loader process: a single-threaded poll loop around one DEALER socket connected to the
 * trainer's task endpoint (docs/protocol.md, "loader <-> trainer").
 *
 * It sends "hello" (manifest, dataset size, capacity) at start and every --heartbeat-ms,
 * also between the images of a long batch, so the trainer can tell a busy loader from a
 * dead one. Tasks are queued (the trainer sends at most `capacity` at a time) and run in
 * arrival order; each becomes one "batch" frame. A "refuse" (manifest or version mismatch)
 * ends the process with exit status 1 and the trainer's reason. Scale by starting more
 * processes; any of them may be killed at any time. */
#include "loader/loader.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "common/batcher.h"
#include "common/cfg.h"
#include "common/clock.h"
#include "common/curve.h"
#include "common/dataset.h"
#include "common/log.h"
#include "common/msg.h"
#include "common/proto_task.h"
#include "common/rng.h"
#include "common/sig.h"

#define QUEUE_MAX 64

struct queued_task {
    uint64_t run;
    uint32_t epoch, step, count, size;
    uint32_t *idx;
    uint64_t seed;
    uint32_t views;
    char preset[32];
    char aug[TASK_MAX_AUG + 1];
    int train;
    enum augment_layout layout;
};

struct worker {
    void *sock;
    struct dataset *ds;
    struct batcher *bat;
    uint32_t capacity;
    uint64_t hb_ns, next_hello_ns;
    char name[96];
    struct queued_task q[QUEUE_MAX];
    size_t q_head, q_len;
    uint64_t run;             /* of the last welcome */
    int welcomed;
    int refused;
    uint64_t max_tasks;       /* exit after this many tasks (0: never); for tests */
    uint64_t done_tasks, done_images, bad_images;
    uint8_t *pix;
    size_t pix_cap;
    uint32_t *labels;
    uint8_t *bad;
    size_t per_cap;
};

static void free_zmq_data(void *data, void *hint)
{
    (void)hint;
    free(data);
}

/* Sends a packed sbuffer (ownership passes to ZeroMQ on success). Waits up to timeout_ms for
 * room; on failure the buffer is freed and -1 returned. */
static int send_sbuf(struct worker *w, msgpack_sbuffer *sb, int timeout_ms)
{
    zmq_msg_t m;
    size_t len = sb->size;
    char *data = msgpack_sbuffer_release(sb);
    if (zmq_msg_init_data(&m, data, len, free_zmq_data, NULL) != 0) {
        free(data);
        return -1;
    }
    uint64_t end = clock_now_ns() + (uint64_t)timeout_ms * 1000000ull;
    for (;;) {
        if (zmq_msg_send(&m, w->sock, ZMQ_DONTWAIT) >= 0)
            return 0;
        if (errno != EAGAIN && errno != EINTR)
            break;
        if (clock_now_ns() >= end || sig_stop)
            break;
        (void)msg_wait(w->sock, ZMQ_POLLOUT, 50, &sig_stop);
    }
    zmq_msg_close(&m);
    return -1;
}

static void send_hello(struct worker *w)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    const char *man = dataset_manifest(w->ds);
    struct task_hello h = {
        .manifest = { man, strlen(man) }, .count = dataset_count(w->ds),
        .capacity = w->capacity, .held = (uint32_t)w->q_len, .name = { w->name, strlen(w->name) },
    };
    if (proto_task_encode_hello(&pk, &h) == 0)
        (void)send_sbuf(w, &sb, 0); /* a heartbeat that finds no room is simply skipped */
    msgpack_sbuffer_destroy(&sb);
    w->next_hello_ns = clock_now_ns() + w->hb_ns;
}

static void tick(void *ctx)
{
    struct worker *w = ctx;
    if (clock_now_ns() >= w->next_hello_ns)
        send_hello(w);
}

static void on_message(struct worker *w, const void *buf, size_t len)
{
    union task_msg u;
    char why[256];
    enum task_msg_type t = proto_task_decode(buf, len, &u, why, sizeof why);
    switch (t) {
    case TASK_MSG_WELCOME:
        if (!w->welcomed || u.welcome.run != w->run) {
            log_info("connected to trainer (run %016llx)", (unsigned long long)u.welcome.run);
            /* a restarted trainer: tasks of the previous one would only come back stale */
            size_t kept = 0;
            for (size_t k = 0; k < w->q_len; k++) {
                struct queued_task *q = &w->q[(w->q_head + k) % QUEUE_MAX];
                if (q->run != u.welcome.run)
                    continue;
                /* swap whole entries so every idx buffer keeps exactly one owner */
                struct queued_task *dst = &w->q[(w->q_head + kept) % QUEUE_MAX];
                if (dst != q) {
                    struct queued_task tmp = *dst;
                    *dst = *q;
                    *q = tmp;
                }
                kept++;
            }
            if (kept < w->q_len)
                log_info("dropped %zu queued task(s) of the previous trainer", w->q_len - kept);
            w->q_len = kept;
        }
        w->welcomed = 1;
        w->run = u.welcome.run;
        break;
    case TASK_MSG_REFUSE:
        log_error("the trainer refused this loader: %.*s: %.*s", (int)u.refuse.code.len,
                  u.refuse.code.p, (int)(u.refuse.msg.len > 400 ? 400 : u.refuse.msg.len),
                  u.refuse.msg.p);
        w->refused = 1;
        break;
    case TASK_MSG_TASK: {
        if (w->q_len == QUEUE_MAX) {
            log_warn("task queue full (%d); dropping epoch %u step %u (the trainer re-issues it)",
                     QUEUE_MAX, u.task.epoch, u.task.step);
            break;
        }
        struct queued_task *q = &w->q[(w->q_head + w->q_len) % QUEUE_MAX];
        uint32_t *idx = realloc(q->idx, (size_t)u.task.count * 4);
        if (!idx) {
            log_warn("out of memory queueing a task of %u images", u.task.count);
            break;
        }
        q->idx = idx;
        memcpy(q->idx, u.task.idx, (size_t)u.task.count * 4);
        q->run = u.task.run;
        q->epoch = u.task.epoch;
        q->step = u.task.step;
        q->count = u.task.count;
        q->size = u.task.size;
        q->seed = u.task.seed;
        q->views = u.task.views;
        q->train = u.task.train;
        q->layout = u.task.layout;
        snprintf(q->preset, sizeof q->preset, "%.*s",
                 (int)(u.task.preset.len < 31 ? u.task.preset.len : 31), u.task.preset.p);
        snprintf(q->aug, sizeof q->aug, "%.*s", (int)u.task.aug.len, u.task.aug.p);
        w->q_len++;
        break;
    }
    case TASK_MSG_NONE:
        log_warn("dropped a malformed frame from the trainer: %s", why);
        break;
    default:
        log_warn("dropped an unexpected '%s' message from the trainer", proto_task_type_name(t));
        break;
    }
}

static int grow_buffers(struct worker *w, uint32_t count, uint32_t size, uint32_t views)
{
    size_t need = (size_t)views * count * size * size * 3;
    if (need > w->pix_cap) {
        uint8_t *p = realloc(w->pix, need);
        if (!p)
            return -1;
        w->pix = p;
        w->pix_cap = need;
    }
    if (count > w->per_cap) {
        uint32_t *l = realloc(w->labels, (size_t)count * 4);
        if (!l)
            return -1;
        w->labels = l;
        uint8_t *b = realloc(w->bad, count);
        if (!b)
            return -1;
        w->bad = b;
        w->per_cap = count;
    }
    return 0;
}

static void send_fail(struct worker *w, const struct queued_task *q, const char *reason)
{
    /* reason: "CODE: text" */
    char code[16] = "EINVAL";
    const char *colon = strchr(reason, ':');
    if (colon && colon - reason < (long)sizeof code) {
        memcpy(code, reason, (size_t)(colon - reason));
        code[colon - reason] = 0;
        reason = colon + 1;
        while (*reason == ' ')
            reason++;
    }
    log_error("cannot run epoch %u step %u: %s: %s", q->epoch, q->step, code, reason);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    struct task_fail f = { q->run, q->epoch, q->step, { code, strlen(code) },
                           { reason, strlen(reason) } };
    if (proto_task_encode_fail(&pk, &f) == 0)
        (void)send_sbuf(w, &sb, 1000);
    msgpack_sbuffer_destroy(&sb);
}

static void run_task(struct worker *w, const struct queued_task *q)
{
    if ((uint64_t)q->views * q->count * q->size * q->size * 3 > ((uint64_t)1 << 30)) {
        send_fail(w, q, "EINVAL: the batch would exceed 1 GiB of pixels");
        return;
    }
    if (grow_buffers(w, q->count, q->size, q->views)) {
        send_fail(w, q, "ENOMEM: out of memory for the batch");
        return;
    }
    struct batch_job job = {
        .ds = w->ds, .idx = q->idx, .count = q->count, .preset = q->preset, .aug = q->aug,
        .train = q->train, .own_rows = !q->train, .size = q->size, .layout = q->layout,
        .seed = q->seed, .epoch = q->epoch, .views = q->views, .tick = tick, .tick_ctx = w,
    };
    struct batch_out out = { .pix = w->pix, .labels = w->labels, .bad = w->bad };
    char why[256];
    if (batcher_run(w->bat, &job, &out, why, sizeof why)) {
        send_fail(w, q, why);
        return;
    }
    const char *const *errs;
    uint32_t n_err = batcher_errors(w->bat, &errs);
    for (uint32_t i = 0; i < n_err; i++)
        log_warn("bad image %s: %s", q->train ? "substituted" : "replaced by mid grey", errs[i]);
    struct task_batch b = {
        .run = q->run, .epoch = q->epoch, .step = q->step, .count = q->count, .size = q->size,
        .layout = q->layout, .views = q->views, .idx = q->idx, .labels = w->labels, .bad = w->bad,
        .pix = w->pix,
        .decode_ns = out.decode_ns, .augment_ns = out.augment_ns,
        .n_errors = n_err, .errors_list = errs,
    };
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    if (proto_task_encode_batch(&pk, &b) != 0 || send_sbuf(w, &sb, 2000) != 0)
        log_warn("could not send epoch %u step %u (the trainer will re-issue it)", q->epoch,
                 q->step);
    msgpack_sbuffer_destroy(&sb);
    w->done_tasks++;
    w->done_images += q->count;
    w->bad_images += out.n_bad;
}

int loader_worker_main(int argc, char **argv)
{
    const char *data, *split, *endpoint, *level, *name_opt, *server_key, *curve_key;
    uint64_t capacity, hb_ms, max_tasks;
    int dct;
    struct dataset_opts dso = { 0 };
    struct cfg_opt opts[] = {
        { "data", "NPID_DATA", CFG_STR, &data, NULL, 0, 0,
          "dataset root (ImageFolder or flat tree, binary directory; or a file list)", 0 },
        { "split", NULL, CFG_STR, &split, "train", 0, 0, "split to serve: train or test", 0 },
        DATASET_CFG_OPTS(&dso),
        { "tasks", "NPID_TASKS", CFG_STR, &endpoint, "tcp://127.0.0.1:5558", 0, 0,
          "the trainer's task endpoint to connect to (default port: NPID_PORT_BASE + 1)", 0 },
        { "tasks-server-key", "NPID_TASKS_SERVER_KEY", CFG_STR, &server_key, "", 0, 0,
          "public key file (.pub) of a CURVE trainer's --tasks (needs --curve-key)", 0 },
        { "curve-key", "NPID_CURVE_KEY", CFG_STR, &curve_key, "", 0, 0,
          "this loader's CURVE key pair file (npid-bankd keygen; mode 0600), its .pub in the "
          "trainer's --curve-allow", 0 },
        { "capacity", NULL, CFG_U64, &capacity, "2", 1, 64,
          "tasks to hold at once (one running, the rest queued)", 0 },
        { "heartbeat-ms", NULL, CFG_U64, &hb_ms, "500", 10, 60000,
          "interval between hello/heartbeat messages", 0 },
        { "dct-scale", NULL, CFG_BOOL, &dct, "1", 0, 0,
          "decode each JPEG at 1/2, 1/4 or 1/8 size when its drawn crop (test: its resize) "
          "keeps the output's resolution there", 0 },
        { "name", NULL, CFG_STR, &name_opt, "", 0, 0, "name in the trainer's logs (default host:pid)",
          0 },
        { "max-tasks", NULL, CFG_U64, &max_tasks, "0", 0, 0,
          "exit after this many tasks (0: run until stopped; for tests)", 0 },
        { "log-level", "NPID_LOG_LEVEL", CFG_STR, &level, "info", 0, 0,
          "debug, info, warn or error", 0 },
        { 0 }
    };
    int npos;
    static char ep_def[32];
    if (cfg_endpoint_default(opts, "tasks", 1, "npid-loader", ep_def, sizeof ep_def) != 0)
        return EXIT_USAGE;
    int rc = cfg_parse("npid-loader", "[run] [options]", opts, argc, argv, &npos);
    if (rc == CFG_HELP)
        return EXIT_OK;
    if (rc != CFG_OK)
        return EXIT_USAGE;
    if (npos > 0) {
        fprintf(stderr, "npid-loader: unexpected argument '%s' (try --help)\n", argv[1]);
        return EXIT_USAGE;
    }
    int lvl = log_level_parse(level);
    if (lvl < 0) {
        fprintf(stderr, "npid-loader: --log-level: unknown level '%s'\n", level);
        return EXIT_USAGE;
    }
    log_set_level(lvl);
    if ((!data || !*data) && !dso.list) {
        fprintf(stderr, "npid-loader: --data DIR (or NPID_DATA) is required\n");
        return EXIT_USAGE;
    }
    char err[DATASET_ERR_LEN];
    if (dataset_opts_check(&dso, err, sizeof err) != 0) {
        fprintf(stderr, "npid-loader: %s\n", err);
        return EXIT_USAGE;
    }
    struct curve_sock cs;
    int curve = curve_sock_client_flags(&cs, curve_key, server_key, "tasks-server-key", err,
                                        sizeof err);
    if (curve < 0) {
        fprintf(stderr, "npid-loader: %s\n", err);
        return curve == -2 ? EXIT_USAGE : EXIT_FAIL;
    }
    cfg_log(opts);
    if (sig_install() != 0)
        npid_fatal("cannot install signal handlers");

    struct worker w;
    memset(&w, 0, sizeof w);
    int status = EXIT_FAIL;
    w.ds = dataset_open_opts(data, split, &dso, err, sizeof err);
    if (!w.ds) {
        log_error("%s", err);
        return EXIT_FAIL;
    }
    log_info("dataset %s (%s): %zu images, %zu classes, manifest %.16s..., %zu files skipped",
             dataset_root(w.ds), dataset_split(w.ds), dataset_count(w.ds),
             dataset_num_classes(w.ds), dataset_manifest(w.ds), dataset_skipped(w.ds));
    log_info("layout: %s", dataset_describe(w.ds));
    w.bat = batcher_new(dct);
    if (!w.bat) {
        log_error("out of memory");
        goto out;
    }
    w.capacity = (uint32_t)capacity;
    w.hb_ns = hb_ms * 1000000ull;
    w.max_tasks = max_tasks;
    char host[64] = "localhost";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = 0;
    if (name_opt && *name_opt)
        snprintf(w.name, sizeof w.name, "%s", name_opt);
    else
        snprintf(w.name, sizeof w.name, "%s:%d", host, (int)getpid());

    struct msg_opts mo = MSG_OPTS_DEFAULT;
    mo.sndhwm = 64;
    mo.rcvhwm = 1000;
    mo.maxmsgsize = (int64_t)64 << 20;
    mo.linger_ms = 1000; /* flush the last batch on a clean exit */
    mo.curve = curve ? &cs : NULL;
    w.sock = msg_socket(ZMQ_DEALER, &mo);
    if (!w.sock) {
        log_error("cannot create a ZeroMQ socket: %s", zmq_strerror(errno));
        goto out;
    }
    /* a routing id unique to this process, so a restarted loader is a new peer */
    uint8_t rid[16];
    uint64_t r1 = rng_mix64(clock_now_ns() ^ (uint64_t)getpid() << 40);
    uint64_t r2 = rng_mix64(r1 ^ (uint64_t)(uintptr_t)&w);
    memcpy(rid, &r1, 8);
    memcpy(rid + 8, &r2, 8);
    rid[0] |= 1; /* ids must not start with a zero byte */
    zmq_setsockopt(w.sock, ZMQ_ROUTING_ID, rid, sizeof rid);
    if (msg_connect(w.sock, endpoint)) {
        log_error("cannot connect to %s: %s", endpoint, zmq_strerror(errno));
        goto out;
    }
    log_info("loader %s connecting to %s (capacity %u%s)", w.name, endpoint, w.capacity,
             curve ? ", CURVE" : "");
    send_hello(&w);
    uint64_t waited_since = clock_now_ns();
    int warned_wait = 0;
    while (!sig_stop && !w.refused) {
        int timeout = 0;
        if (w.q_len == 0) {
            uint64_t now = clock_now_ns();
            timeout = w.next_hello_ns > now ? (int)((w.next_hello_ns - now) / 1000000ull) + 1 : 0;
        }
        zmq_pollitem_t it = { w.sock, 0, ZMQ_POLLIN, 0 };
        int pr = zmq_poll(&it, 1, timeout);
        if (pr < 0 && errno != EINTR) {
            log_error("poll failed: %s", zmq_strerror(errno));
            goto out;
        }
        for (int k = 0; k < 1000; k++) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, w.sock, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&m);
                break;
            }
            if (zmq_msg_more(&m)) {
                msg_drain_more(w.sock);
                log_warn("dropped a multipart message from the trainer");
            } else {
                on_message(&w, zmq_msg_data(&m), zmq_msg_size(&m));
            }
            zmq_msg_close(&m);
        }
        if (w.refused)
            break;
        if (clock_now_ns() >= w.next_hello_ns)
            send_hello(&w);
        if (!w.welcomed && !warned_wait && clock_now_ns() - waited_since > 5000000000ull) {
            log_info("no answer from a trainer at %s yet; still trying (if it uses CURVE, check "
                     "--tasks-server-key/--curve-key)", endpoint);
            warned_wait = 1;
        }
        if (w.q_len > 0) {
            struct queued_task *q = &w.q[w.q_head];
            run_task(&w, q);
            w.q_head = (w.q_head + 1) % QUEUE_MAX;
            w.q_len--;
            if (w.max_tasks && w.done_tasks >= w.max_tasks) {
                log_info("done: %llu tasks (--max-tasks)", (unsigned long long)w.done_tasks);
                break;
            }
        }
    }
    status = w.refused ? EXIT_FAIL : EXIT_OK;
    log_info("exiting: %llu tasks, %llu images, %llu bad images replaced",
             (unsigned long long)w.done_tasks, (unsigned long long)w.done_images,
             (unsigned long long)w.bad_images);
out:
    for (size_t i = 0; i < QUEUE_MAX; i++)
        free(w.q[i].idx);
    free(w.pix);
    free(w.labels);
    free(w.bad);
    msg_close(&w.sock);
    batcher_destroy(&w.bat);
    dataset_destroy(&w.ds);
    msg_ctx_term();
    return status;
}
