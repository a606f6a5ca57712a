/* fuzz-capture: a recording relay that seeds the network-decoder fuzzers with real traffic.
 *
 *   fuzz-capture --out DIR [--relay NAME FRONT BACK]... [--sub NAME EP]...
 *                [--max-frames N] [--max-bytes N]
 *
 * --relay binds a ROUTER at FRONT for one client (a DEALER: the trainer's or evald's bank
 * client, a loader) and connects a DEALER to BACK (the real server's ROUTER: bankd, the
 * trainer's task socket). Every frame is forwarded unchanged both ways; replies get the
 * client's routing id back (one client per relay: the last one heard from). --sub subscribes
 * to every topic of a PUB socket at EP (the trainer's events, evald's results).
 *
 * Each distinct non-empty frame (bodies: routing ids and REQ delimiters are not written; a
 * topic frame is not written) goes to DIR/NAME-up-NNNNN (client to server),
 * DIR/NAME-down-NNNNN (server to client) or DIR/NAME-NNNNN (a subscription): at most
 * --max-frames (256) per stream, none longer than --max-bytes (65536; longer ones are
 * forwarded, counted, not written). Retries and heartbeats that repeat a frame byte for byte
 * are written once.
 *
 * Runs until SIGTERM or SIGINT, then prints one line per stream on stderr
 * ("capture: bank-up: 57 frames written, 3 repeated, 0 too long, 0 over the quota") and
 * exits 0. Usage errors
 * exit 2; a socket or file failure exits 1. Built and run by mk/fuzz.mk (fuzz/capture.sh
 * starts it between real processes); a tool for the fuzz rule, not part of any program. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define MAX_STREAMS 16

/* One direction of a relay, or one subscription: what has been written so far. */
struct stream {
    char name[80];            /* file name prefix: "bank-up" */
    uint64_t *seen;           /* FNV-1a hashes of the frames written (max_frames, allocated
                                 once the options are read) */
    size_t written, repeated, too_long, over;  /* over: beyond max_frames, not written */
};

struct relay {
    void *front, *back;
    zmq_msg_t client_id;      /* routing id of the last client heard from (size 0: none) */
    struct stream *up, *down;
};

struct capture {
    const char *dir;
    size_t max_frames, max_bytes;
    struct stream streams[MAX_STREAMS];
    size_t nstreams;
    struct relay relays[MAX_STREAMS / 2];
    size_t nrelays;
    void *subs[MAX_STREAMS];
    struct stream *sub_stream[MAX_STREAMS];
    size_t nsubs;
};

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static uint64_t fnv1a(const void *p, size_t n)
{
    const unsigned char *b = p;
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static struct stream *stream_add(struct capture *c, const char *name, const char *suffix)
{
    if (c->nstreams == MAX_STREAMS)
        return NULL;
    struct stream *s = &c->streams[c->nstreams];
    snprintf(s->name, sizeof s->name, "%s%s", name, suffix);
    c->nstreams++;
    return s;
}

/* Writes frame (len bytes) to the stream's next file unless it is empty, a repeat, too
 * long or beyond the stream's quota. Returns 0, or -1 when the file could not be written. */
static int stream_record(struct capture *c, struct stream *s, const void *frame, size_t len)
{
    if (len == 0)
        return 0;
    if (len > c->max_bytes) {
        s->too_long++;
        return 0;
    }
    uint64_t h = fnv1a(frame, len);
    for (size_t i = 0; i < s->written; i++)
        if (s->seen[i] == h) {
            s->repeated++;
            return 0;
        }
    if (s->written >= c->max_frames) {
        s->over++;
        return 0;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s-%05zu", c->dir, s->name, s->written);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(frame, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "fuzz-capture: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    s->seen[s->written++] = h;
    return 0;
}

/* A socket that drops what is unsent at close and waits at most 5 s to send (a server that
 * is restarting: its DEALER queues until it is back). */
static void *socket_new(void *ctx, int type)
{
    void *s = zmq_socket(ctx, type);
    int zero = 0, sndtimeo = 5000;
    if (s) {
        zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
        zmq_setsockopt(s, ZMQ_SNDTIMEO, &sndtimeo, sizeof sndtimeo);
    }
    return s;
}

/* Moves one whole message from `from` to `to`. from_front: the message came from a relay's
 * ROUTER, its first frame is the client's routing id (kept in r->client_id, not forwarded);
 * to_front: the client's routing id is sent first. Every frame is recorded on s (NULL: not
 * recorded) except a subscription's topic (skip_first). Returns 0, or -1 on a write failure;
 * a message that cannot be forwarded (no client yet, no server within the send timeout) is
 * dropped, as the network would. */
static int forward(struct capture *c, void *from, void *to, struct relay *r, int from_front,
                   int to_front, int skip_first, struct stream *s)
{
    int more = 1, first = 1, rc = 0, sending = to != NULL;
    if (to_front) {
        if (zmq_msg_size(&r->client_id) == 0) {
            sending = 0;
        } else {
            zmq_msg_t id;
            zmq_msg_init(&id);
            zmq_msg_copy(&id, &r->client_id);
            if (zmq_msg_send(&id, to, ZMQ_SNDMORE) < 0) {
                zmq_msg_close(&id);
                sending = 0;
            }
        }
    }
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, from, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return rc;
        }
        more = zmq_msg_more(&m);
        if (first && from_front) {
            zmq_msg_close(&r->client_id);
            zmq_msg_init(&r->client_id);
            zmq_msg_copy(&r->client_id, &m);
            zmq_msg_close(&m);
            first = 0;
            continue;
        }
        if (s && !(first && skip_first) && rc == 0)
            rc = stream_record(c, s, zmq_msg_data(&m), zmq_msg_size(&m));
        first = 0;
        if (sending && zmq_msg_send(&m, to, more ? ZMQ_SNDMORE : 0) >= 0)
            continue;
        sending = 0;
        zmq_msg_close(&m);
    }
    return rc;
}

static int usage(void)
{
    fprintf(stderr, "usage: fuzz-capture --out DIR [--relay NAME FRONT BACK]... [--sub NAME EP]... "
            "[--max-frames N] [--max-bytes N]\n");
    return 2;
}

int main(int argc, char **argv)
{
    static struct capture c = { .max_frames = 256, .max_bytes = 65536 };
    int ret = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: fuzz-capture --out DIR [--relay NAME FRONT BACK]... [--sub NAME EP]... "
                   "[--max-frames N] [--max-bytes N]\n"
                   "Relays and records real traffic as fuzzer seeds (see fuzz/capture.c).\n");
            return 0;
        }
    }
    void *ctx = zmq_ctx_new();
    if (!ctx) {
        fprintf(stderr, "fuzz-capture: no ZeroMQ context: %s\n", zmq_strerror(zmq_errno()));
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--out") && i + 1 < argc) {
            c.dir = argv[++i];
        } else if ((!strcmp(a, "--max-frames") || !strcmp(a, "--max-bytes")) && i + 1 < argc) {
            char *end;
            unsigned long long v = strtoull(argv[++i], &end, 10);
            if (*end || end == argv[i]) {
                ret = usage();
                goto done;
            }
            if (!strcmp(a, "--max-frames"))
                c.max_frames = (size_t)v;
            else
                c.max_bytes = (size_t)v;
        } else if (!strcmp(a, "--relay") && i + 3 < argc && c.nrelays < MAX_STREAMS / 2) {
            struct relay *r = &c.relays[c.nrelays++];
            zmq_msg_init(&r->client_id);
            r->up = stream_add(&c, argv[i + 1], "-up");
            r->down = stream_add(&c, argv[i + 1], "-down");
            r->front = socket_new(ctx, ZMQ_ROUTER);
            r->back = socket_new(ctx, ZMQ_DEALER);
            if (!r->up || !r->down || !r->front || !r->back ||
                zmq_bind(r->front, argv[i + 2]) != 0 || zmq_connect(r->back, argv[i + 3]) != 0) {
                fprintf(stderr, "fuzz-capture: relay %s %s -> %s: %s\n", argv[i + 1], argv[i + 2],
                        argv[i + 3], zmq_strerror(zmq_errno()));
                goto done;
            }
            i += 3;
        } else if (!strcmp(a, "--sub") && i + 2 < argc && c.nsubs < MAX_STREAMS) {
            void *s = socket_new(ctx, ZMQ_SUB);
            c.subs[c.nsubs] = s;
            c.sub_stream[c.nsubs] = stream_add(&c, argv[i + 1], "");
            if (!s || !c.sub_stream[c.nsubs] || zmq_setsockopt(s, ZMQ_SUBSCRIBE, "", 0) != 0 ||
                zmq_connect(s, argv[i + 2]) != 0) {
                fprintf(stderr, "fuzz-capture: sub %s %s: %s\n", argv[i + 1], argv[i + 2],
                        zmq_strerror(zmq_errno()));
                c.nsubs++;
                goto done;
            }
            c.nsubs++;
            i += 2;
        } else {
            ret = usage();
            goto done;
        }
    }
    if (!c.dir || c.nrelays + c.nsubs == 0) {
        ret = usage();
        goto done;
    }
    for (size_t i = 0; i < c.nstreams; i++)
        if (!(c.streams[i].seen = calloc(c.max_frames + 1, sizeof *c.streams[i].seen))) {
            fprintf(stderr, "fuzz-capture: out of memory\n");
            goto done;
        }
    struct sigaction sa = { 0 };
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    zmq_pollitem_t items[MAX_STREAMS * 2];
    size_t n = 0;
    for (size_t i = 0; i < c.nrelays; i++) {
        items[n++] = (zmq_pollitem_t){ c.relays[i].front, 0, ZMQ_POLLIN, 0 };
        items[n++] = (zmq_pollitem_t){ c.relays[i].back, 0, ZMQ_POLLIN, 0 };
    }
    for (size_t i = 0; i < c.nsubs; i++)
        items[n++] = (zmq_pollitem_t){ c.subs[i], 0, ZMQ_POLLIN, 0 };
    while (!stop) {
        if (zmq_poll(items, (int)n, 200) < 0) {
            if (zmq_errno() == EINTR)
                continue;
            fprintf(stderr, "fuzz-capture: poll: %s\n", zmq_strerror(zmq_errno()));
            goto done;
        }
        for (size_t i = 0; i < c.nrelays; i++) {
            struct relay *r = &c.relays[i];
            if ((items[2 * i].revents & ZMQ_POLLIN) &&
                forward(&c, r->front, r->back, r, 1, 0, 0, r->up) != 0)
                goto done;
            if ((items[2 * i + 1].revents & ZMQ_POLLIN) &&
                forward(&c, r->back, r->front, r, 0, 1, 0, r->down) != 0)
                goto done;
        }
        for (size_t i = 0; i < c.nsubs; i++)
            if ((items[2 * c.nrelays + i].revents & ZMQ_POLLIN) &&
                forward(&c, c.subs[i], NULL, NULL, 0, 0, 1, c.sub_stream[i]) != 0)
                goto done;
    }
    for (size_t i = 0; i < c.nstreams; i++)
        fprintf(stderr, "capture: %s: %zu frames written, %zu repeated, %zu too long, %zu over "
                "the quota\n", c.streams[i].name, c.streams[i].written, c.streams[i].repeated,
                c.streams[i].too_long, c.streams[i].over);
    ret = 0;
done:
    for (size_t i = 0; i < c.nrelays; i++) {
        zmq_close(c.relays[i].front);
        zmq_close(c.relays[i].back);
        zmq_msg_close(&c.relays[i].client_id);
    }
    for (size_t i = 0; i < c.nsubs; i++)
        zmq_close(c.subs[i]);
    for (size_t i = 0; i < c.nstreams; i++)
        free(c.streams[i].seen);
    zmq_ctx_term(ctx);
    return ret;
}
