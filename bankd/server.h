/* npid-bankd's request loop: one ROUTER socket served by a single thread, with periodic
 * snapshots and a per-client reply cache that makes retried writes idempotent.
 *
 * Envelope: [identity, body] from DEALER clients, [identity, "", body] from REQ clients
 * (the empty delimiter is echoed). Any other shape, an empty body, or a body that does not
 * decode gets an error reply.
 *
 * Frame sizes: the protocol limit is max_frame (requests and replies). The socket's
 * ZMQ_MAXMSGSIZE, the transport limit, is SERVER_TRANSPORT_FACTOR times that, so a request a
 * little too large still arrives and is answered EMSGSIZE ("request of N bytes exceeds the
 * 64 MiB frame limit") instead of vanishing; only a frame over the transport limit makes
 * ZeroMQ drop the connection, unanswered. Memory stays bounded: a connection holds at most
 * SERVER_RCVHWM + 1 frames of at most the transport limit each (16 + 1 of 256 MiB by
 * default; ZeroMQ checks the size in the frame header, before allocating). */
#ifndef NPID_BANKD_SERVER_H
#define NPID_BANKD_SERVER_H

#include "common/curve.h"
#include "common/proto_bank.h"

#include <stdint.h>

#define SERVER_TRANSPORT_FACTOR 4 /* transport limit / max_frame */
#define SERVER_RCVHWM 16          /* frames queued per connection (a client has one request in
                                     flight; more wait in TCP and the client's queue) */

struct server_cfg {
    const char *bind;          /* endpoint */
    int allow_remote;          /* allow non-loopback binds */
    const char *dir;           /* snapshot directory; NULL or "": snapshots disabled */
    double snapshot_every;     /* seconds between periodic snapshots (0: off) */
    uint64_t rows, dim, seed;  /* create a bank at start when rows and dim are set (rows:
                                  global, of which this bankd holds its shard's) */
    uint32_t shard, shards;    /* this bankd is shard `shard` of `shards` (0 of 1: the whole
                                  bank); banks, snapshots and restores of another are refused */
    enum bank_init_mode mode;
    uint64_t max_frame;        /* bytes, for requests and replies */
    uint64_t max_bytes;        /* largest bank (bank_bytes) init or rows/dim may create */
    int cache_clients;         /* reply-cache entries (clients remembered) */
    const struct curve_sock *curve; /* CURVE server options (common/curve.h; the process runs
                                       a ZAP handler); NULL: none. Read by server_new only. */
};

struct server;

/* The socket's ZMQ_MAXMSGSIZE for protocol limit max_frame: SERVER_TRANSPORT_FACTOR times it. */
uint64_t server_transport_limit(uint64_t max_frame);

/* Loads the newest valid snapshot from dir (a corrupt newest falls back to the previous),
 * or creates the bank from rows/dim, then binds. NULL on failure (reason logged). */
struct server *server_new(const struct server_cfg *cfg);
void server_destroy(struct server **s);

/* Serves until sig_stop, then writes a final snapshot (when a bank exists and a directory
 * is set). Returns 0, or -1 when the final snapshot failed (logged). */
int server_run(struct server *s);

#endif
