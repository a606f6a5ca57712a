/* Events: what the trainer (and evald) publish on a PUB socket for anyone to watch.
 *
 * Each event is two frames: the topic (the event type as text: "metrics", "checkpoint",
 * "epoch", "end", "eval", ...; subscribers filter on it) and one msgpack map holding at least
 *   "v": 1, "type": <same as topic>, "seq": <uint, +1 per event of this publisher>,
 *   "run": <str>, "time": <uint, wall-clock ms>
 * plus the type's own fields (docs/protocol.md, "Events"). A gap in seq means the subscriber
 * missed events (PUB drops when a subscriber is slow or not yet connected).
 *
 * Publishing: msgpack_packer *pk = event_begin(p, "metrics", 3); then pack exactly 3
 * key/value pairs (mp_pack_kv_*); event_end(p) sends it. event_json_line renders the last
 * event as one JSON line (for metrics.jsonl and stdout). */
#ifndef NPID_EVENT_H
#define NPID_EVENT_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include "common/mp.h"

struct event_pub;
struct curve_sock;

/* Binds a PUB socket at endpoint (NULL or "": no socket; events are still encoded, so
 * event_json_line works). NULL on failure (reason logged). */
struct event_pub *event_pub_new(const char *endpoint, const char *run, int allow_remote);
/* event_pub_new with CURVE server options for the PUB socket (common/curve.h: the process
 * runs a ZAP handler; subscribers are the CURVE clients); curve NULL: none. */
struct event_pub *event_pub_new_curve(const char *endpoint, const char *run, int allow_remote,
                                      const struct curve_sock *curve);
void event_pub_destroy(struct event_pub **p);
/* Starts an event with nfields type-specific fields; returns the packer to pack them. */
msgpack_packer *event_begin(struct event_pub *p, const char *type, uint32_t nfields);
/* Sends the event started by event_begin (non-blocking; PUB drops when nobody listens).
 * Returns 0, or -1 on an encoding error (a broken caller) or a send failure. */
int event_end(struct event_pub *p);
/* Writes the last event as a JSON line to f (fflush'd); 0 or -1. */
int event_json_line(struct event_pub *p, FILE *f);
uint64_t event_pub_seq(const struct event_pub *p);

/* A decoded event; fields point into the frame. */
struct event {
    const char *type; size_t type_len;
    const char *run; size_t run_len;
    uint64_t seq, time;
    struct mp_map map;      /* the whole map, for type-specific fields */
};
/* Decodes and checks an event body: returns 0, or -1 with *why set (not msgpack, not a map,
 * wrong version, missing or mistyped common field). */
int event_decode(const void *buf, size_t len, struct event *e, const char **why);

/* Renders a validated msgpack value as JSON (bin as an array of numbers when short, else
 * {"bin": <length>}); 0 or -1 on write error. */
int mp_write_json(FILE *f, const void *buf, size_t len);

#endif
