/* ZeroMQ helpers: one process-wide context, sockets with explicit options, loopback-only
 * binding by default, send/receive with timeouts, and a request client with bounded retries.
 *
 * Every socket gets LINGER, SNDHWM/RCVHWM, MAXMSGSIZE and ZMTP heartbeats set explicitly
 * (struct msg_opts; MSG_OPTS_DEFAULT), and CURVE server or client options when
 * msg_opts.curve is set (common/curve.h; a server process runs the ZAP handler). Waiting
 * functions poll with a timeout and take a stop flag (msg_stop; a request client holds
 * one): a signal that interrupts the wait while the flag is set makes them return -1 with
 * errno EINTR; other EINTRs, and every EINTR when the flag is NULL, are retried with the
 * remaining time. The library reads no process global:
 * a program passes its signal flag (common/sig.h's &sig_stop) where its waits should end.
 *
 * Request client (struct msg_client): a DEALER socket connected to one ROUTER server. The
 * caller encodes each request as one msgpack map carrying "cid" (msg_client_cid) and "seq"
 * (msg_client_next_seq), and the server echoes "seq" in its reply. One request is in flight
 * at a time. msg_client_send sends it now; msg_client_recv waits for the reply whose "seq"
 * matches, discarding stale replies (those answering an earlier request after a retry); if
 * no reply arrives within timeout_ms of the last send, it resends the identical bytes, up to
 * `retries` times, then fails with ETIMEDOUT. Servers must therefore treat a repeated
 * (cid, seq) as the same request (bankd answers it from a cache). A reply without "seq"
 * (a server that could not parse the request) is accepted as the answer.
 *
 * Sequence numbers start from the wall clock in microseconds, so a client restarted with
 * the same cid never reuses a recent seq. */
#ifndef NPID_MSG_H
#define NPID_MSG_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

/* A stop flag, set asynchronously (by a signal handler); NULL: not interruptible. */
typedef const volatile sig_atomic_t msg_stop;
#define MSG_STOPPED(stop) ((stop) != NULL && *(stop) != 0)

struct curve_sock;

struct msg_opts {
    int linger_ms;            /* ZMQ_LINGER: pending messages kept this long at close */
    int sndhwm, rcvhwm;       /* ZMQ_SNDHWM / ZMQ_RCVHWM, messages (0: unlimited) */
    int64_t maxmsgsize;       /* ZMQ_MAXMSGSIZE, bytes; -1 unlimited. A larger inbound
                                 message makes ZeroMQ drop the connection. */
    int heartbeat_ivl_ms;     /* ZMQ_HEARTBEAT_IVL (0: off) */
    int heartbeat_timeout_ms; /* ZMQ_HEARTBEAT_TIMEOUT */
    int heartbeat_ttl_ms;     /* ZMQ_HEARTBEAT_TTL */
    int immediate;            /* ZMQ_IMMEDIATE: queue only on completed connections */
    int sndbuf, rcvbuf;       /* ZMQ_SNDBUF / ZMQ_RCVBUF kernel buffers, bytes (0: OS default) */
    const struct curve_sock *curve; /* CURVE server or client options (common/curve.h), applied
                                       by msg_socket, so before bind or connect (read there
                                       only). NULL: no security (ZMQ_NULL) */
};

/* linger 0, HWM 1000, 64 MiB frames, heartbeat every 1 s, peer dead after 5 s, no CURVE */
#define MSG_OPTS_DEFAULT { 0, 1000, 1000, (int64_t)64 << 20, 1000, 5000, 5000, 0, 0, 0, NULL }

/* The process-wide context (created on first use; NULL on failure). */
void *msg_ctx(void);
/* Terminates the context; every socket must be closed first. */
void msg_ctx_term(void);

/* A socket of ZMQ type `type` with options o (NULL: MSG_OPTS_DEFAULT). NULL on failure
 * (errno set). */
void *msg_socket(int type, const struct msg_opts *o);
/* Closes *s (linger as configured) and sets it NULL; accepts NULL. */
void msg_close(void **s);

/* 1 when the endpoint is ipc://, inproc://, or tcp:// whose host is a loopback address
 * (127.0.0.0/8, ::1) or a name (such as "localhost") all of whose addresses (getaddrinfo)
 * are loopback; 0 otherwise (including wildcard "*", interface names, unknown names). */
int msg_endpoint_is_local(const char *ep);
/* Binds s. Non-local endpoints are refused (errno EPERM, reason logged) unless
 * allow_remote; one allowed on a socket without CURVE (ZMQ_MECHANISM ZMQ_NULL) logs a
 * warning that its traffic is unencrypted and unauthenticated. A loopback tcp:// host is
 * bound as its address (libzmq binds no host names): a name's first IPv4 address, else its
 * first IPv6 one; IPv6 addresses get ZMQ_IPV6 set on s. Returns 0 or -1 (errno set;
 * ZeroMQ failures are logged with the endpoint). */
int msg_bind(void *s, const char *ep, int allow_remote);
int msg_connect(void *s, const char *ep);

/* Waits up to timeout_ms (-1: forever) for events (ZMQ_POLLIN / ZMQ_POLLOUT) on s.
 * Returns 1 ready, 0 timed out, -1 error (EINTR when stop is set). */
int msg_wait(void *s, short events, int timeout_ms, msg_stop *stop);
/* Sends one frame (flags: 0 or ZMQ_SNDMORE), waiting up to timeout_ms for room.
 * Returns 0, or -1 with errno (EAGAIN on timeout, EINTR on stop). */
int msg_send(void *s, const void *buf, size_t len, int flags, int timeout_ms, msg_stop *stop);
/* Receives one frame into m (initialised by the caller with zmq_msg_init), waiting up to
 * timeout_ms. Returns 0, or -1 with errno (EAGAIN on timeout, EINTR on stop). */
int msg_recv(void *s, zmq_msg_t *m, int timeout_ms, msg_stop *stop);
/* Discards any remaining parts of a multipart message. */
void msg_drain_more(void *s);

/* ---- request client -------------------------------------------------------------------- */

struct msg_client;

/* Connects a DEALER to endpoint. cid NULL or "": a random 16-hex-digit id. timeout_ms > 0 is
 * the wait for each attempt; retries >= 0 extra attempts after the first. o NULL: defaults;
 * ZMQ_IMMEDIATE is always on: a request is handed only to a completed connection (an
 * attempt waits for the connection within its timeout). NULL on failure (errno). */
struct msg_client *msg_client_new(const char *endpoint, const char *cid, int timeout_ms,
                                  int retries, const struct msg_opts *o);
void msg_client_destroy(struct msg_client **c);
const char *msg_client_cid(const struct msg_client *c);
/* The seq the next request must carry (advances on every msg_client_send). */
uint64_t msg_client_next_seq(const struct msg_client *c);
/* Sends req (a msgpack map carrying cid and seq == msg_client_next_seq). The bytes are kept
 * for resending. Returns at once when connected; otherwise waits up to timeout_ms for the
 * connection (a request not sent by then counts as a lost attempt). -1 with EBUSY when a
 * request is outstanding, or a send error. */
int msg_client_send(struct msg_client *c, const void *req, size_t len);
/* Waits for the reply to the outstanding request (resending per the retry policy).
 * On 0, *reply and *len give the reply frame, valid until the next send/recv/destroy.
 * -1 with errno: ETIMEDOUT (all attempts timed out; the request is abandoned), EINTR
 * (the client's stop flag, during the wait or set when an attempt times out: the request stays
 * outstanding and recv may be called again), EPROTO never:
 * malformed replies are discarded like stale ones. */
int msg_client_recv(struct msg_client *c, const void **reply, size_t *len);
/* msg_client_send + msg_client_recv. */
int msg_client_call(struct msg_client *c, const void *req, size_t len, const void **reply,
                    size_t *reply_len);
/* 1 when a request is outstanding. */
int msg_client_busy(const struct msg_client *c);
/* The flag that interrupts this client's waits (msg_client_recv's EINTR); NULL (the default
 * from msg_client_new) makes them uninterruptible: e.g. a stopping process's last requests. */
void msg_client_set_stop(struct msg_client *c, msg_stop *stop);
/* Lowers the retry budget to at most retries resends, for the outstanding request too (e.g.
 * a process that is stopping and must not wait for a server forever). */
void msg_client_limit_retries(struct msg_client *c, int retries);
/* Abandons the outstanding request, if any (its late reply will be discarded). */
void msg_client_cancel(struct msg_client *c);
/* Counters for diagnostics: resends, and stale or malformed replies discarded. */
uint64_t msg_client_resends(const struct msg_client *c);
uint64_t msg_client_discarded(const struct msg_client *c);

#endif
