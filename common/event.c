/* Events on a PUB socket: see event.h. */
#include "common/event.h"
#include "common/clock.h"
#include "common/json.h"
#include "common/log.h"
#include "common/msg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct event_pub {
    void *sock;
    uint64_t seq;
    char run[256];
    char type[64];
    msgpack_sbuffer sb;
    msgpack_packer pk;
};

struct event_pub *event_pub_new(const char *endpoint, const char *run, int allow_remote)
{
    return event_pub_new_curve(endpoint, run, allow_remote, NULL);
}

struct event_pub *event_pub_new_curve(const char *endpoint, const char *run, int allow_remote,
                                      const struct curve_sock *curve)
{
    struct event_pub *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    snprintf(p->run, sizeof p->run, "%s", run ? run : "");
    msgpack_sbuffer_init(&p->sb);
    msgpack_packer_init(&p->pk, &p->sb, msgpack_sbuffer_write);
    if (endpoint && *endpoint) {
        struct msg_opts o = MSG_OPTS_DEFAULT;
        o.sndhwm = 10000;
        o.curve = curve;
        p->sock = msg_socket(ZMQ_PUB, &o);
        if (!p->sock || msg_bind(p->sock, endpoint, allow_remote) != 0) {
            log_error("events: cannot publish on %s: %s", endpoint, zmq_strerror(zmq_errno()));
            msg_close(&p->sock);
            msgpack_sbuffer_destroy(&p->sb);
            free(p);
            return NULL;
        }
    }
    return p;
}

void event_pub_destroy(struct event_pub **pp)
{
    if (!pp || !*pp)
        return;
    struct event_pub *p = *pp;
    msg_close(&p->sock);
    msgpack_sbuffer_destroy(&p->sb);
    free(p);
    *pp = NULL;
}

uint64_t event_pub_seq(const struct event_pub *p)
{
    return p->seq;
}

msgpack_packer *event_begin(struct event_pub *p, const char *type, uint32_t nfields)
{
    msgpack_sbuffer_clear(&p->sb);
    snprintf(p->type, sizeof p->type, "%s", type);
    p->seq++;
    msgpack_pack_map(&p->pk, nfields + 5);
    mp_pack_kv_u64(&p->pk, "v", 1);
    mp_pack_kv_str(&p->pk, "type", type);
    mp_pack_kv_u64(&p->pk, "seq", p->seq);
    mp_pack_kv_str(&p->pk, "run", p->run);
    mp_pack_kv_u64(&p->pk, "time", clock_wall_ms());
    return &p->pk;
}

int event_end(struct event_pub *p)
{
    const char *why = NULL;
    if (mp_validate(p->sb.data, p->sb.size, MP_MAX_DEPTH, &why) != 0) {
        log_error("events: internal: malformed %s event: %s", p->type, why);
        return -1;
    }
    if (!p->sock)
        return 0;
    if (zmq_send(p->sock, p->type, strlen(p->type), ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
        zmq_send(p->sock, p->sb.data, p->sb.size, ZMQ_DONTWAIT) < 0) {
        if (zmq_errno() == EAGAIN)
            return 0; /* PUB drops when a subscriber's queue is full: seq shows the gap */
        log_warn("events: send failed: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}

int event_json_line(struct event_pub *p, FILE *f)
{
    if (mp_write_json(f, p->sb.data, p->sb.size) != 0 || fputc('\n', f) == EOF)
        return -1;
    return fflush(f) == 0 ? 0 : -1;
}

int event_decode(const void *buf, size_t len, struct event *e, const char **why)
{
    memset(e, 0, sizeof *e);
    if (mp_map_open(&e->map, buf, len, MP_MAX_DEPTH, why) != 0)
        return -1;
    uint64_t v = 0;
    if (mp_get_u64(&e->map, "v", &v) != MP_OK) {
        *why = "field 'v' must be uint";
        return -1;
    }
    if (v != 1) {
        *why = "unsupported event version";
        return -1;
    }
    if (mp_get_str(&e->map, "type", &e->type, &e->type_len) != MP_OK) {
        *why = "field 'type' must be str";
        return -1;
    }
    if (mp_get_u64(&e->map, "seq", &e->seq) != MP_OK) {
        *why = "field 'seq' must be uint";
        return -1;
    }
    if (mp_get_str(&e->map, "run", &e->run, &e->run_len) != MP_OK) {
        *why = "field 'run' must be str";
        return -1;
    }
    if (mp_get_u64(&e->map, "time", &e->time) != MP_OK)
        e->time = 0;
    return 0;
}

int mp_write_json(FILE *f, const void *buf, size_t len)
{
    return json_write_mp(f, buf, len, 0);
}
