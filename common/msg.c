/* ZeroMQ helpers and the retrying request client: see msg.h. */
#include "common/msg.h"

#include "common/clock.h"
#include "common/curve.h"
#include "common/log.h"
#include "common/mp.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

static void *msg_ctx_ptr;
static pthread_mutex_t msg_ctx_lock = PTHREAD_MUTEX_INITIALIZER;

void *msg_ctx(void)
{
    pthread_mutex_lock(&msg_ctx_lock);
    if (!msg_ctx_ptr)
        msg_ctx_ptr = zmq_ctx_new();
    void *c = msg_ctx_ptr;
    pthread_mutex_unlock(&msg_ctx_lock);
    return c;
}

void msg_ctx_term(void)
{
    pthread_mutex_lock(&msg_ctx_lock);
    if (msg_ctx_ptr) {
        while (zmq_ctx_term(msg_ctx_ptr) != 0 && errno == EINTR)
            ;
        msg_ctx_ptr = NULL;
    }
    pthread_mutex_unlock(&msg_ctx_lock);
}

void *msg_socket(int type, const struct msg_opts *o)
{
    static const struct msg_opts defaults = MSG_OPTS_DEFAULT;
    if (!o)
        o = &defaults;
    void *ctx = msg_ctx();
    if (!ctx)
        return NULL;
    void *s = zmq_socket(ctx, type);
    if (!s)
        return NULL;
    if (zmq_setsockopt(s, ZMQ_LINGER, &o->linger_ms, sizeof o->linger_ms) != 0 ||
        zmq_setsockopt(s, ZMQ_SNDHWM, &o->sndhwm, sizeof o->sndhwm) != 0 ||
        zmq_setsockopt(s, ZMQ_RCVHWM, &o->rcvhwm, sizeof o->rcvhwm) != 0 ||
        zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &o->maxmsgsize, sizeof o->maxmsgsize) != 0 ||
        zmq_setsockopt(s, ZMQ_IMMEDIATE, &o->immediate, sizeof o->immediate) != 0)
        goto fail_socket;
    if ((o->sndbuf > 0 && zmq_setsockopt(s, ZMQ_SNDBUF, &o->sndbuf, sizeof(int)) != 0) ||
        (o->rcvbuf > 0 && zmq_setsockopt(s, ZMQ_RCVBUF, &o->rcvbuf, sizeof(int)) != 0))
        goto fail_socket;
    if (o->heartbeat_ivl_ms > 0) {
        if (zmq_setsockopt(s, ZMQ_HEARTBEAT_IVL, &o->heartbeat_ivl_ms, sizeof(int)) != 0 ||
            zmq_setsockopt(s, ZMQ_HEARTBEAT_TIMEOUT, &o->heartbeat_timeout_ms, sizeof(int)) != 0 ||
            zmq_setsockopt(s, ZMQ_HEARTBEAT_TTL, &o->heartbeat_ttl_ms, sizeof(int)) != 0)
            goto fail_socket;
    }
    if (o->curve && curve_sock_apply(s, o->curve) != 0)
        goto fail_socket;
    return s;
fail_socket:;
    int saved = errno;
    zmq_close(s);
    errno = saved;
    return NULL;
}

void msg_close(void **s)
{
    if (s && *s) {
        zmq_close(*s);
        *s = NULL;
    }
}

/* Splits a tcp:// endpoint: host (brackets of an IPv6 literal removed) into host, *rest at
 * what follows it (":port"; for the connect-only "tcp://source;dest" form, the source
 * part's). 0, or -1 when ep is not tcp:// or the host does not fit. */
static int msg_tcp_split(const char *ep, char *host, size_t cap, const char **rest)
{
    if (!ep || strncmp(ep, "tcp://", 6) != 0)
        return -1;
    const char *h = ep + 6, *end;
    const char *semi = strchr(h, ';');
    size_t n;
    if (h[0] == '[') {
        const char *close = strchr(h, ']');
        if (!close)
            return -1;
        n = (size_t)(close - h - 1);
        h++;
        end = close + 1;
    } else {
        const char *colon = strrchr(h, ':');
        if (!colon || (semi && colon > semi))
            colon = semi ? semi : h + strlen(h);
        n = (size_t)(colon - h);
        end = colon;
    }
    if (n >= cap)
        return -1;
    memcpy(host, h, n);
    host[n] = 0;
    *rest = end;
    return 0;
}

static int msg_addr_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
    }
    return 0;
}

/* Resolves host (an address literal or a name, through getaddrinfo) for a loopback bind:
 * 1 when it resolves and every address is loopback, with the address to bind written to
 * numeric (may be NULL): the first IPv4 one, else the first IPv6 one (*v6 set); 0
 * otherwise (a non-loopback address among them, "*", an interface name, no such host). */
static int msg_host_loopback(const char *host, char *numeric, size_t cap, int *v6)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (!host[0] || getaddrinfo(host, NULL, &hints, &res) != 0 || !res)
        return 0;
    const struct addrinfo *pick = NULL;
    int ok = 1;
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (!msg_addr_loopback(ai->ai_addr))
            ok = 0;
        else if (!pick || (pick->ai_family != AF_INET && ai->ai_family == AF_INET))
            pick = ai;
    }
    if (ok && pick && numeric &&
        getnameinfo(pick->ai_addr, pick->ai_addrlen, numeric, (socklen_t)cap, NULL, 0,
                    NI_NUMERICHOST) != 0)
        ok = 0;
    if (ok && v6)
        *v6 = pick->ai_family == AF_INET6;
    freeaddrinfo(res);
    return ok;
}

int msg_endpoint_is_local(const char *ep)
{
    if (!ep)
        return 0;
    if (!strncmp(ep, "ipc://", 6) || !strncmp(ep, "inproc://", 9))
        return 1;
    char host[256];
    const char *rest;
    return msg_tcp_split(ep, host, sizeof host, &rest) == 0 &&
           msg_host_loopback(host, NULL, 0, NULL);
}

/* zmq_bind with ZMQ_IPV6 set when the address is IPv6; failures logged with ep. */
static int msg_bind_as(void *s, const char *ep, const char *as, int v6)
{
    int one = 1;
    if (v6 && zmq_setsockopt(s, ZMQ_IPV6, &one, sizeof one) != 0) {
        int saved = errno;
        log_error("cannot enable IPv6 to bind %s: %s", ep, zmq_strerror(saved));
        errno = saved;
        return -1;
    }
    if (zmq_bind(s, as) != 0) {
        int saved = errno;
        if (strcmp(ep, as))
            log_error("cannot bind %s (as %s): %s", ep, as, zmq_strerror(saved));
        else
            log_error("cannot bind %s: %s", ep, zmq_strerror(saved));
        errno = saved;
        return -1;
    }
    return 0;
}

int msg_bind(void *s, const char *ep, int allow_remote)
{
    char host[256], num[INET6_ADDRSTRLEN + 8], as[sizeof num + 300];
    const char *rest;
    int v6 = 0;
    if (msg_tcp_split(ep, host, sizeof host, &rest) == 0) {
        if (msg_host_loopback(host, num, sizeof num, &v6)) {
            /* libzmq binds only address literals and interface names: bind the address */
            if ((size_t)snprintf(as, sizeof as, "tcp://%s%s%s%s", v6 ? "[" : "", num,
                                 v6 ? "]" : "", rest) >= sizeof as) {
                errno = EINVAL;
                return -1;
            }
            return msg_bind_as(s, ep, as, v6);
        }
        v6 = strchr(host, ':') != NULL; /* an IPv6 literal (with allow_remote) */
    }
    if (!allow_remote && !msg_endpoint_is_local(ep)) {
        log_error("refusing to bind %s: not a loopback or ipc endpoint (pass --allow-remote to "
                  "expose it)", ep);
        errno = EPERM;
        return -1;
    }
    int mech = ZMQ_NULL;
    size_t mech_len = sizeof mech;
    if (!msg_endpoint_is_local(ep) &&
        (zmq_getsockopt(s, ZMQ_MECHANISM, &mech, &mech_len) != 0 || mech == ZMQ_NULL))
        log_warn("%s: traffic is unencrypted and unauthenticated (--allow-remote without CURVE "
                 "keys: any host that reaches it may connect; see docs/protocol.md)", ep);
    return msg_bind_as(s, ep, ep, v6);
}

int msg_connect(void *s, const char *ep)
{
    if (zmq_connect(s, ep) != 0) {
        int saved = errno;
        log_error("cannot connect %s: %s", ep, zmq_strerror(saved));
        errno = saved;
        return -1;
    }
    return 0;
}

int msg_wait(void *s, short events, int timeout_ms, msg_stop *stop)
{
    uint64_t deadline = timeout_ms < 0 ? 0 : clock_now_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        zmq_pollitem_t it = { s, 0, events, 0 };
        int rc = zmq_poll(&it, 1, timeout_ms);
        if (rc > 0)
            return 1;
        if (rc == 0)
            return 0;
        if (errno != EINTR)
            return -1;
        if (MSG_STOPPED(stop))
            return -1;
        if (timeout_ms >= 0) {
            uint64_t now = clock_now_ns();
            if (now >= deadline)
                return 0;
            timeout_ms = (int)((deadline - now + 999999) / 1000000);
        }
    }
}

int msg_send(void *s, const void *buf, size_t len, int flags, int timeout_ms, msg_stop *stop)
{
    for (;;) {
        if (zmq_send(s, buf, len, flags | ZMQ_DONTWAIT) >= 0)
            return 0;
        if (errno != EAGAIN && errno != EINTR)
            return -1;
        if (errno == EINTR && MSG_STOPPED(stop))
            return -1;
        int rc = msg_wait(s, ZMQ_POLLOUT, timeout_ms, stop);
        if (rc < 0)
            return -1;
        if (rc == 0) {
            errno = EAGAIN;
            return -1;
        }
    }
}

int msg_recv(void *s, zmq_msg_t *m, int timeout_ms, msg_stop *stop)
{
    uint64_t deadline = timeout_ms < 0 ? 0 : clock_now_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        if (zmq_msg_recv(m, s, ZMQ_DONTWAIT) >= 0)
            return 0;
        if (errno != EAGAIN && errno != EINTR)
            return -1;
        if (errno == EINTR && MSG_STOPPED(stop))
            return -1;
        int left = -1;
        if (timeout_ms >= 0) {
            uint64_t now = clock_now_ns();
            if (now >= deadline) {
                errno = EAGAIN;
                return -1;
            }
            left = (int)((deadline - now + 999999) / 1000000);
        }
        int rc = msg_wait(s, ZMQ_POLLIN, left, stop);
        if (rc < 0)
            return -1;
        if (rc == 0) {
            errno = EAGAIN;
            return -1;
        }
    }
}

void msg_drain_more(void *s)
{
    int more = 0;
    size_t sz = sizeof more;
    while (zmq_getsockopt(s, ZMQ_RCVMORE, &more, &sz) == 0 && more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        int rc = zmq_msg_recv(&m, s, ZMQ_DONTWAIT);
        zmq_msg_close(&m);
        if (rc < 0)
            break;
        sz = sizeof more;
    }
}

/* ---- request client ------------------------------------------------------------------------ */

struct msg_client {
    void *sock;
    char cid[65];
    int timeout_ms;
    int retries;
    uint64_t seq_next;     /* seq for the next request */
    uint64_t seq_out;      /* seq of the outstanding request */
    int busy;
    int tries_left;
    uint64_t deadline_ns;  /* when the current attempt times out */
    zmq_msg_t req;         /* the outstanding request, kept for resending */
    zmq_msg_t reply;       /* the last reply handed out */
    uint64_t resends, discarded;
    msg_stop *stop;        /* NULL: waits are not interruptible */
};

struct msg_client *msg_client_new(const char *endpoint, const char *cid, int timeout_ms,
                                  int retries, const struct msg_opts *o)
{
    if (!endpoint || timeout_ms <= 0 || retries < 0 || (cid && strlen(cid) > 64)) {
        errno = EINVAL;
        return NULL;
    }
    struct msg_client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    zmq_msg_init(&c->req);
    zmq_msg_init(&c->reply);
    c->timeout_ms = timeout_ms;
    c->retries = retries;
    if (cid && *cid) {
        snprintf(c->cid, sizeof c->cid, "%s", cid);
    } else {
        uint64_t r = 0;
        if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
            r = clock_now_ns() ^ ((uint64_t)getpid() << 32);
        snprintf(c->cid, sizeof c->cid, "%016llx", (unsigned long long)r);
    }
    c->seq_next = clock_wall_ms() * 1000u + (clock_now_ns() / 1000u) % 1000u;
    struct msg_opts opts = MSG_OPTS_DEFAULT;
    if (o)
        opts = *o;
    opts.immediate = 1;
    c->sock = msg_socket(ZMQ_DEALER, &opts);
    if (!c->sock)
        goto fail_client;
    if (msg_connect(c->sock, endpoint) != 0)
        goto fail_client;
    return c;
fail_client:;
    int saved = errno;
    msg_client_destroy(&c);
    errno = saved;
    return NULL;
}

void msg_client_destroy(struct msg_client **cp)
{
    if (!cp || !*cp)
        return;
    struct msg_client *c = *cp;
    msg_close(&c->sock);
    zmq_msg_close(&c->req);
    zmq_msg_close(&c->reply);
    free(c);
    *cp = NULL;
}

const char *msg_client_cid(const struct msg_client *c)
{
    return c->cid;
}

uint64_t msg_client_next_seq(const struct msg_client *c)
{
    return c->seq_next;
}

int msg_client_busy(const struct msg_client *c)
{
    return c->busy;
}

void msg_client_set_stop(struct msg_client *c, msg_stop *stop)
{
    c->stop = stop;
}

void msg_client_limit_retries(struct msg_client *c, int retries)
{
    if (retries < 0)
        retries = 0;
    if (c->retries > retries)
        c->retries = retries;
    if (c->tries_left > retries)
        c->tries_left = retries;
}

void msg_client_cancel(struct msg_client *c)
{
    c->busy = 0;
}

uint64_t msg_client_resends(const struct msg_client *c)
{
    return c->resends;
}

uint64_t msg_client_discarded(const struct msg_client *c)
{
    return c->discarded;
}

/* Sends a reference-counted copy of the stored request and starts the attempt's clock.
 * The client socket queues only on completed connections (ZMQ_IMMEDIATE), so while the
 * server is unreachable this waits for the connection within the attempt. */
static int msg_client_transmit(struct msg_client *c)
{
    uint64_t start = clock_now_ns();
    c->deadline_ns = start + (uint64_t)c->timeout_ms * 1000000u;
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_copy(&m, &c->req) != 0) {
        zmq_msg_close(&m);
        return -1;
    }
    int rc;
    for (;;) {
        rc = zmq_msg_send(&m, c->sock, ZMQ_DONTWAIT);
        if (rc >= 0)
            break;
        if (errno == EINTR && !MSG_STOPPED(c->stop))
            continue;
        if (errno != EAGAIN)
            break;
        uint64_t now = clock_now_ns();
        if (now >= c->deadline_ns)
            break;
        int w = msg_wait(c->sock, ZMQ_POLLOUT, (int)((c->deadline_ns - now + 999999) / 1000000),
                         c->stop);
        if (w <= 0) {
            if (w == 0)
                errno = EAGAIN;
            break;
        }
    }
    int saved = errno;
    if (rc < 0)
        zmq_msg_close(&m);
    errno = saved;
    /* EAGAIN: not sent within the attempt; it times out like a lost one */
    return rc < 0 ? -1 : 0;
}

int msg_client_send(struct msg_client *c, const void *req, size_t len)
{
    if (c->busy) {
        errno = EBUSY;
        return -1;
    }
    zmq_msg_close(&c->req);
    if (zmq_msg_init_size(&c->req, len) != 0) {
        zmq_msg_init(&c->req);
        return -1;
    }
    memcpy(zmq_msg_data(&c->req), req, len);
    c->seq_out = c->seq_next++;
    c->busy = 1;
    c->tries_left = c->retries;
    if (msg_client_transmit(c) != 0 && errno != EAGAIN) {
        int saved = errno;
        c->busy = 0;
        errno = saved;
        return -1;
    }
    /* EAGAIN: nothing could be queued; the retry loop in recv will try again */
    return 0;
}

/* 1 when the reply answers the outstanding request, 0 when it is stale or malformed. */
static int msg_client_matches(const struct msg_client *c, const void *buf, size_t len)
{
    struct mp_map m;
    if (mp_map_open(&m, buf, len, MP_MAX_DEPTH, NULL) != 0)
        return 0;
    uint64_t seq;
    int rc = mp_get_u64(&m, "seq", &seq);
    if (rc == MP_MISSING)
        return 1;
    return rc == MP_OK && seq == c->seq_out;
}

int msg_client_recv(struct msg_client *c, const void **reply, size_t *len)
{
    if (!c->busy) {
        errno = EINVAL;
        return -1;
    }
    for (;;) {
        uint64_t now = clock_now_ns();
        int wait_ms = c->deadline_ns > now ? (int)((c->deadline_ns - now + 999999) / 1000000) : 0;
        int rc = msg_wait(c->sock, ZMQ_POLLIN, wait_ms, c->stop);
        if (rc < 0)
            return -1;
        if (rc > 0) {
            zmq_msg_close(&c->reply);
            zmq_msg_init(&c->reply);
            if (zmq_msg_recv(&c->reply, c->sock, ZMQ_DONTWAIT) < 0) {
                if (errno == EAGAIN || (errno == EINTR && !MSG_STOPPED(c->stop)))
                    continue;
                return -1;
            }
            int more = zmq_msg_more(&c->reply);
            if (more)
                msg_drain_more(c->sock);
            const void *data = zmq_msg_data(&c->reply);
            size_t size = zmq_msg_size(&c->reply);
            if (more || !msg_client_matches(c, data, size)) {
                c->discarded++;
                continue;
            }
            c->busy = 0;
            *reply = data;
            *len = size;
            return 0;
        }
        /* this attempt timed out; a stop signal taken outside the wait (no EINTR then) ends
           the retries here, so a stopping process never waits on a dead peer for ever */
        if (MSG_STOPPED(c->stop)) {
            errno = EINTR;
            return -1;
        }
        if (c->tries_left <= 0) {
            c->busy = 0;
            errno = ETIMEDOUT;
            return -1;
        }
        c->tries_left--;
        c->resends++;
        if (msg_client_transmit(c) != 0 && errno != EAGAIN)
            return -1;
    }
}

int msg_client_call(struct msg_client *c, const void *req, size_t len, const void **reply,
                    size_t *reply_len)
{
    if (msg_client_send(c, req, len) != 0)
        return -1;
    return msg_client_recv(c, reply, reply_len);
}
