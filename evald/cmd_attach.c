/* npid-evald attach (the default command) and --once: weighted kNN of a checkpoint's test
 * features against the bank's rows and/or the train features recomputed with the same
 * network, one JSON line per "against" and --k value on stdout, the same maps as "eval"
 * events on --pub. Attached, evald subscribes to the trainer's events and always evaluates
 * the newest announced checkpoint, skipping those it fell behind on; it only reads
 * (checkpoint files, bank rows through `get`), so attaching and detaching never disturbs
 * training. --once evaluates --checkpoint (or, with --pixels, raw pixels) and exits. */
#include "evald/evald.h"

#include "common/clock.h"
#include "common/curve.h"
#include "common/event.h"
#include "common/log.h"
#include "common/mp.h"
#include "common/msg.h"
#include "common/sig.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

/* Parses --k ("200" or "10,20,100,200") into o->ks, ascending. 0, or -1 with the reason on
 * stderr. */
static int attach_parse_ks(struct evald_opts *o)
{
    static const char bad[] = "expected numbers in 1..100000 separated by commas";
    const char *s = o->k_list, *p = s;
    o->n_ks = 0;
    while (*p) {
        char *end;
        errno = 0;
        unsigned long long v = strtoull(p, &end, 10);
        if (end == p || errno || v < 1 || v > 100000 || (*end && *end != ',') || *p == '-') {
            fprintf(stderr, "npid-evald: --k %s: %s\n", s, bad);
            return -1;
        }
        if (o->n_ks == EVALD_MAX_KS) {
            fprintf(stderr, "npid-evald: --k %s: at most %d values\n", s, EVALD_MAX_KS);
            return -1;
        }
        size_t i = o->n_ks++;
        while (i > 0 && o->ks[i - 1] > v) {
            o->ks[i] = o->ks[i - 1];
            i--;
        }
        o->ks[i] = (size_t)v;
        if (i > 0 && o->ks[i - 1] == v) {
            fprintf(stderr, "npid-evald: --k %s: %llu given twice\n", s, v);
            return -1;
        }
        p = *end ? end + 1 : end;
        if (*end == ',' && !*p) {
            fprintf(stderr, "npid-evald: --k %s: %s\n", s, bad);
            return -1;
        }
    }
    if (o->n_ks == 0) {
        fprintf(stderr, "npid-evald: --k is empty\n");
        return -1;
    }
    return 0;
}

/* Publishes and prints one result. */
static void attach_emit(struct evald *ev, const struct feat_model *m, const char *path,
                        const char *against, const struct knn_result *r, uint64_t bank_step,
                        uint64_t n_bank, double secs)
{
    int with_confusion = r->nclass <= 100;
    msgpack_packer *pk = event_begin(ev->pub, "eval", 17 + (uint32_t)with_confusion);
    mp_pack_kv_u64(pk, "step", m->step);
    mp_pack_kv_u64(pk, "epoch", m->epoch);
    mp_pack_kv_str(pk, "against", against);
    mp_pack_kv_str(pk, "checkpoint", path);
    mp_pack_kv_str(pk, "train_run", m->run);
    mp_pack_kv_str(pk, "model", m->model);
    mp_pack_kv_u64(pk, "k", r->k);
    mp_pack_kv_double(pk, "sigma", r->sigma);
    mp_pack_kv_double(pk, "top1", r->top1);
    mp_pack_kv_double(pk, "top5", r->top5);
    mp_pack_kv_double(pk, "nn1", r->nn1);
    mp_pack_kv_u64(pk, "n_query", r->nq);
    mp_pack_kv_u64(pk, "n_bank", n_bank);
    if (strcmp(against, "bank") == 0)
        mp_pack_kv_u64(pk, "bank_step", bank_step);
    else
        mp_pack_kv_nil(pk, "bank_step");
    mp_pack_kv_u64(pk, "bad_images", m->bad_images);
    mp_pack_kv_double(pk, "seconds", secs);
    mp_pack_key(pk, "per_class");
    msgpack_pack_map(pk, r->nclass);
    for (size_t c = 0; c < r->nclass; c++)
        mp_pack_kv_double(pk, dataset_class_name(ev->train, c), knn_result_class_acc(r, c));
    if (with_confusion) {
        mp_pack_key(pk, "confusion");
        msgpack_pack_array(pk, r->nclass);
        for (size_t a = 0; a < r->nclass; a++) {
            msgpack_pack_array(pk, r->nclass);
            for (size_t b = 0; b < r->nclass; b++)
                msgpack_pack_uint64(pk, r->confusion[a * r->nclass + b]);
        }
    }
    if (event_end(ev->pub) != 0)
        log_warn("eval event not published");
    if (event_json_line(ev->pub, stdout) != 0)
        log_error("cannot write the result to stdout: %s", strerror(errno));
    log_info("step %" PRIu64 " against %s: top1 %.2f%% top5 %.2f%% 1-NN %.2f%% (k %zu, %zu "
             "queries, %.1f s)", m->step, against, 100 * r->top1, 100 * r->top5, 100 * r->nn1,
             r->k, r->nq, secs);
}

/* Evaluates one checkpoint against the bank and/or recomputed features. 0 or -1. */
static int attach_eval(struct evald *ev, const char *path)
{
    const struct evald_opts *o = ev->o;
    char err[1024];
    struct feat_model m;
    double t0 = clock_seconds();
    if ((o->pixels ? feat_pixels_init(&m, o->size, o->batch, err, sizeof err)
                   : feat_model_init(&m, path, o->batch, err, sizeof err)) != 0) {
        log_error("%s", err);
        return -1;
    }
    int rc = -1;
    float *q = malloc(ev->nq * (size_t)m.low_dim * sizeof *q);
    if (!q)
        goto out;
    log_info("checkpoint %s: step %" PRIu64 ", %s; %zu test images", path, m.step, m.model,
             ev->nq);
    if (feat_dataset(&m, ev->test, 0, ev->nq, q) != 0)
        goto out;
    double tq = clock_seconds() - t0;
    int both = strcmp(o->against, "both") == 0;
    for (int pass = 0; pass < 2; pass++) {
        const char *against = pass == 0 ? "bank" : "recomputed";
        if (!both && strcmp(o->against, against) != 0)
            continue;
        double t1 = clock_seconds();
        struct knn *kn = knn_new(q, ev->nq, (size_t)m.low_dim, o->ks[o->n_ks - 1]);
        if (!kn) {
            log_error("kNN: %s", strerror(errno));
            goto out;
        }
        uint64_t bank_step = 0;
        int arc = pass == 0 ? evald_add_bank(ev, kn, (size_t)m.low_dim, &bank_step)
                            : evald_add_recomputed(ev, &m, kn);
        /* one neighbour search, a vote (and a result line) per --k value, ascending */
        for (size_t i = 0; arc == 0 && i < o->n_ks; i++) {
            uint64_t n_bank = knn_rows_seen(kn);
            struct knn_result *r = knn_classify(kn, ev->train_labels, ev->n_train,
                                                ev->test_labels, ev->nclass, o->ks[i], o->sigma);
            if (r)
                attach_emit(ev, &m, path, against, r, bank_step, n_bank, tq + clock_seconds() - t1);
            else
                log_error("kNN classification failed: %s", strerror(errno));
            knn_result_destroy(&r);
        }
        knn_destroy(&kn);
        if (arc != 0 || sig_stop)
            goto out;
    }
    rc = 0;
    ev->evals++;
out:
    free(q);
    feat_model_deinit(&m);
    return rc;
}

/* The subscription: a checkpoint announced by the trainer and not evaluated yet, and the
 * counts the detach line reports. */
struct attach_sub {
    void *sock;
    void *mon;                 /* PAIR receiving sock's connection events (NULL: none) */
    uint64_t lost_ns;          /* when the connection dropped with no retry seen yet; 0 */
    uint64_t remade;           /* connections evald re-made itself */
    int set;                   /* path holds a checkpoint to evaluate */
    uint64_t step, seq;
    char path[4096];
    uint64_t last_seq, skipped, malformed, failed, announced;
};

/* Acts on one decoded event: returns 2 on "end", 1 when a checkpoint was noted (newer than
 * the one pending), 0 otherwise. */
static int attach_event(const struct evald_opts *o, struct attach_sub *s, struct event *e)
{
    const char *path;
    size_t path_len;
    uint64_t step = 0;
    if (s->last_seq && e->seq > s->last_seq + 1)
        log_info("events: missed %" PRIu64 " (seq %" PRIu64 " after %" PRIu64 ")",
                 e->seq - s->last_seq - 1, e->seq, s->last_seq);
    s->last_seq = e->seq;
    if (e->type_len == 3 && memcmp(e->type, "end", 3) == 0)
        return 2;
    if (!(e->type_len == 10 && memcmp(e->type, "checkpoint", 10) == 0))
        return 0;
    if (mp_get_str(&e->map, "path", &path, &path_len) != MP_OK || path_len == 0 ||
        path_len >= sizeof s->path || memchr(path, 0, path_len)) {
        log_warn("malformed checkpoint event (seq %" PRIu64 "): no usable \"path\"", e->seq);
        s->malformed++;
        return 0;
    }
    if (mp_get_u64(&e->map, "step", &step) != MP_OK) {
        log_warn("malformed checkpoint event (seq %" PRIu64 "): no \"step\"", e->seq);
        s->malformed++;
        return 0;
    }
    s->announced++;
    if (o->every == 0 || s->announced % (uint64_t)o->every != 0) {
        log_debug("checkpoint step %" PRIu64 " not evaluated (--every %d)", step, o->every);
        return 0;
    }
    if (s->set) {
        s->skipped++;
        log_info("skipping checkpoint step %" PRIu64 ": step %" PRIu64 " is newer", s->step, step);
    }
    s->set = 1;
    s->step = step;
    s->seq = e->seq;
    memcpy(s->path, path, path_len);
    s->path[path_len] = 0;
    return 1;
}

/* Reads one event (topic + body) if one is waiting within timeout_ms. Returns 1 when a
 * checkpoint was noted (newer than the pending one), 2 on "end", 0 otherwise; -1 on EINTR. */
static int attach_poll(const struct evald_opts *o, struct attach_sub *s, int timeout_ms)
{
    zmq_msg_t topic, body;
    zmq_msg_init(&topic);
    if (msg_recv(s->sock, &topic, timeout_ms, &sig_stop) != 0) {
        zmq_msg_close(&topic);
        return errno == EINTR ? -1 : 0;
    }
    if (!zmq_msg_more(&topic)) {
        log_warn("malformed event: one frame of %zu bytes (expected topic + msgpack map)",
                 zmq_msg_size(&topic));
        s->malformed++;
        zmq_msg_close(&topic);
        return 0;
    }
    zmq_msg_init(&body);
    if (msg_recv(s->sock, &body, 1000, &sig_stop) != 0) {
        zmq_msg_close(&topic);
        zmq_msg_close(&body);
        return errno == EINTR ? -1 : 0;
    }
    if (zmq_msg_more(&body))
        msg_drain_more(s->sock);
    struct event e;
    const char *why = NULL;
    int ret = 0;
    if (event_decode(zmq_msg_data(&body), zmq_msg_size(&body), &e, &why) != 0) {
        size_t tn = zmq_msg_size(&topic);
        log_warn("malformed event (topic \"%.*s\"): %s", (int)(tn > 32 ? 32 : tn),
                 (const char *)zmq_msg_data(&topic), why);
        s->malformed++;
    } else {
        ret = attach_event(o, s, &e);
    }
    zmq_msg_close(&topic);
    zmq_msg_close(&body);
    return ret;
}

/* The connection watch. libzmq 4.3.4 gives up an endpoint for good after a protocol error on
 * its connection: a frame over ZMQ_MAXMSGSIZE (64 MiB) from the publisher, a ZMTP violation,
 * a failed CURVE handshake. Any other loss is followed at once by a reconnect attempt
 * (ZMQ_EVENT_CONNECT_RETRIED). So a disconnect with no attempt, retry or connection seen for
 * ATTACH_REMAKE_MS means evald would never hear from the publisher again: it connects anew.
 * tests/it_evald_flood.sh. */
#define ATTACH_REMAKE_MS 1000
#define ATTACH_MON_EVENTS (ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_CONNECT_DELAYED | \
                           ZMQ_EVENT_CONNECT_RETRIED | ZMQ_EVENT_CONNECTED)

/* Starts the watch on s->sock (before it connects). 0, or -1 (errno; evald then runs
 * without it). */
static int attach_watch(struct attach_sub *s)
{
    char ep[64];
    snprintf(ep, sizeof ep, "inproc://npid-evald-events-%p", (void *)s);
    if (zmq_socket_monitor(s->sock, ep, ATTACH_MON_EVENTS) != 0)
        return -1;
    s->mon = msg_socket(ZMQ_PAIR, NULL);
    if (!s->mon || zmq_connect(s->mon, ep) != 0) {
        int saved = errno;
        msg_close(&s->mon);
        zmq_socket_monitor(s->sock, NULL, 0);
        errno = saved;
        return -1;
    }
    return 0;
}

/* Reads the connection events waiting and re-connects an endpoint libzmq gave up. */
static void attach_watch_tick(const struct evald_opts *o, struct attach_sub *s)
{
    for (int k = 0; s->mon && k < 64; k++) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, s->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            break;
        }
        /* frame 1: u16 event, u32 value (native order); frame 2: the endpoint */
        uint16_t ev = 0;
        if (zmq_msg_size(&m) >= 2)
            memcpy(&ev, zmq_msg_data(&m), 2);
        int more = zmq_msg_more(&m);
        zmq_msg_close(&m);
        if (more)
            msg_drain_more(s->mon);
        if (ev == ZMQ_EVENT_DISCONNECTED)
            s->lost_ns = clock_now_ns();
        else
            s->lost_ns = 0;
    }
    if (!s->lost_ns || clock_now_ns() - s->lost_ns < (uint64_t)ATTACH_REMAKE_MS * 1000000u)
        return;
    s->lost_ns = 0;
    if (s->remade++ < 10)
        log_warn("events %s: the connection was dropped and libzmq will not retry it (a frame "
                 "over the 64 MiB limit, a protocol error or a refused CURVE handshake); "
                 "connecting again%s", o->events_ep,
                 s->remade == 10 ? " (further such warnings suppressed)" : "");
    zmq_disconnect(s->sock, o->events_ep); /* may be gone already */
    if (msg_connect(s->sock, o->events_ep) != 0)
        log_error("events %s: cannot connect again: %s", o->events_ep, strerror(errno));
}

/* Closes the watch and the subscription; accepts either NULL. */
static void attach_unsubscribe(struct attach_sub *s)
{
    if (s->mon && s->sock)
        zmq_socket_monitor(s->sock, NULL, 0);
    msg_close(&s->mon);
    msg_close(&s->sock);
}

/* Subscribes to --events (CURVE with --events-server-key): 0, or an exit status (logged). */
static int attach_subscribe(const struct evald_opts *o, struct attach_sub *s)
{
    struct curve_sock cs;
    char cerr[4400];
    int con = !o->events_server_key[0] ? 0 :
              curve_sock_client_flags(&cs, o->curve_key, o->events_server_key,
                                      "events-server-key", cerr, sizeof cerr);
    if (con < 0) {
        log_error("events %s: %s", o->events_ep, cerr);
        return con == -2 ? EXIT_USAGE : EXIT_FAIL;
    }
    struct msg_opts mo = MSG_OPTS_DEFAULT;
    mo.curve = con ? &cs : NULL;
    /* No ZMTP heartbeats of our own. evald reads nothing while it evaluates: RCVHWM events
     * published meanwhile fill the pipe and the engine stops reading the connection. A
     * heartbeat timeout would then reconnect, libzmq 4.3.4 would hand the full pipe to the
     * new connection, and draining it would abort the process ("Assertion failed:
     * _input_stopped (src/stream_engine_base.cpp:417)": restart_input on an engine that never
     * stopped; tests/it_evald_flood.sh). Without them a stopped connection stays until evald
     * drains it; one that died meanwhile is seen then and re-made. A publisher that sends
     * heartbeats with a TTL (the trainer's PUB) still makes a silent peer time out here. */
    mo.heartbeat_ivl_ms = 0;
    s->sock = msg_socket(ZMQ_SUB, &mo);
    if (s->sock && attach_watch(s) != 0)
        log_warn("events %s: no connection watch (%s): a publisher that breaks the protocol "
                 "may leave evald deaf", o->events_ep, zmq_strerror(errno));
    if (!s->sock || msg_connect(s->sock, o->events_ep) != 0) {
        log_error("events %s: cannot subscribe: %s", o->events_ep, strerror(errno));
        attach_unsubscribe(s);
        return EXIT_FAIL;
    }
    /* every topic, so that a gap in seq means events were really lost; only "checkpoint"
     * and "end" are acted on */
    zmq_setsockopt(s->sock, ZMQ_SUBSCRIBE, "", 0);
    return 0;
}

/* Attached: evaluates --checkpoint first, then the newest announced checkpoint each time,
 * until a signal, --max-evals or (with --exit-on-end) the trainer's "end". */
static int attach_run(struct evald *ev)
{
    const struct evald_opts *o = ev->o;
    struct attach_sub s;
    memset(&s, 0, sizeof s);
    int rc = attach_subscribe(o, &s);
    if (rc != 0)
        return rc;
    if (o->checkpoint) {
        s.set = 1;
        snprintf(s.path, sizeof s.path, "%s", o->checkpoint);
    }
    log_info("attached to %s (bank %s); waiting for checkpoints", o->events_ep, o->bank_ep);
    int end = 0;
    while (!sig_stop) {
        /* take everything that is waiting: the newest checkpoint wins */
        while ((rc = attach_poll(o, &s, s.set ? 0 : 200)) > 0) {
            if (rc == 2) {
                log_info("trainer published \"end\"");
                end = 1;
            }
        }
        if (rc < 0)
            break;
        attach_watch_tick(o, &s);
        if (s.set) {
            s.set = 0;
            if (attach_eval(ev, s.path) != 0 && !sig_stop) {
                s.failed++;
                log_error("evaluation of %s failed; still attached", s.path);
            }
            if (o->max_evals && ev->evals >= (uint64_t)o->max_evals)
                break;
        } else if (end && o->exit_on_end) {
            break;
        }
    }
    log_info("detached: %" PRIu64 " evaluations, %" PRIu64 " skipped, %" PRIu64 " failed, %"
             PRIu64 " malformed events", ev->evals, s.skipped, s.failed, s.malformed);
    attach_unsubscribe(&s);
    return EXIT_OK;
}

/* The flags attached evaluation reads and --once does not. */
static const char *const attach_only[] = { "events", "events-server-key", "max-evals", "every",
                                           "exit-on-end", NULL };

/* The checks of --once, --pixels and --against (o->against and o->checkpoint resolved for
 * --pixels). 0, or EXIT_USAGE after the reason. */
static int attach_check(struct evald_opts *o, struct cfg_opt *opts)
{
    for (int i = 0; o->once && attach_only[i]; i++) {
        if (cfg_find(opts, attach_only[i])->set_by == 2) {
            fprintf(stderr, "npid-evald: --%s is read when attached, not with --once\n",
                    attach_only[i]);
            return EXIT_USAGE;
        }
    }
    if (evald_check_data(o) != 0 || evald_check_against(o) != 0)
        return EXIT_USAGE;
    if (o->pixels) {
        if (!o->once || o->checkpoint) {
            fprintf(stderr, "npid-evald: --pixels goes with --once and without --checkpoint\n");
            return EXIT_USAGE;
        }
        if (cfg_find(opts, "against")->set_by == 0)
            o->against = "recomputed";
        if (strcmp(o->against, "recomputed")) {
            fprintf(stderr, "npid-evald: --pixels: raw pixels have no bank; --against "
                    "recomputed\n");
            return EXIT_USAGE;
        }
        o->checkpoint = "pixels";
    }
    if (o->once && !o->checkpoint) {
        fprintf(stderr, "npid-evald: --once needs --checkpoint PATH\n");
        return EXIT_USAGE;
    }
    return 0;
}

int evald_attach_main(struct evald_opts *o, struct cfg_opt *opts, int nargs, char **args)
{
    if (attach_parse_ks(o) != 0 || evald_no_args(nargs, args) != 0)
        return EXIT_USAGE;
    int rc = attach_check(o, opts);
    if (rc != 0)
        return rc;
    struct evald ev;
    rc = evald_open_results(&ev, o, opts);
    if (rc == 0 && o->once)
        rc = attach_eval(&ev, o->checkpoint) == 0 ? EXIT_OK : EXIT_FAIL;
    else if (rc == 0)
        rc = attach_run(&ev);
    evald_close(&ev);
    return rc;
}
