/* Unit tests for common/mp (msgpack helpers, strict validation) and common/msg (ZeroMQ
 * helpers, the retrying request client against a scripted ROUTER peer on inproc). */
#include <check.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/mp.h"
#include "common/msg.h"
#include "common/rng.h"

/* ---- helpers -------------------------------------------------------------------------------- */

struct buf {
    msgpack_sbuffer sb;
    msgpack_packer pk;
};

static void buf_init(struct buf *b)
{
    msgpack_sbuffer_init(&b->sb);
    msgpack_packer_init(&b->pk, &b->sb, msgpack_sbuffer_write);
}

static void buf_free(struct buf *b)
{
    msgpack_sbuffer_destroy(&b->sb);
}

/* A map with one field of every kind. */
static void pack_sample(struct buf *b)
{
    static const float f[3] = { 1, 2, 3 };
    buf_init(b);
    msgpack_pack_map(&b->pk, 12);
    mp_pack_kv_u64(&b->pk, "u", 1234567890123ull);
    mp_pack_kv_i64(&b->pk, "i", -42);
    mp_pack_kv_double(&b->pk, "d", 0.25);
    mp_pack_kv_bool(&b->pk, "t", 1);
    mp_pack_kv_nil(&b->pk, "nil");
    mp_pack_kv_str(&b->pk, "s", "hello");
    mp_pack_kv_bin(&b->pk, "b", f, sizeof f);
    mp_pack_key(&b->pk, "f32");
    msgpack_pack_float(&b->pk, 1.5f);
    mp_pack_key(&b->pk, "arr");
    msgpack_pack_array(&b->pk, 3);
    msgpack_pack_uint8(&b->pk, 1);
    msgpack_pack_str(&b->pk, 2);
    msgpack_pack_str_body(&b->pk, "xy", 2);
    msgpack_pack_array(&b->pk, 0);
    mp_pack_key(&b->pk, "m");
    msgpack_pack_map(&b->pk, 1);
    mp_pack_kv_u64(&b->pk, "inner", 9);
    mp_pack_kv_i64(&b->pk, "pos_as_int", 5); /* msgpack-c packs this as a positive fixint */
    mp_pack_key(&b->pk, "int8pos");
    const char raw[2] = { (char)0xd0, 0x05 }; /* int 8 encoding of +5 */
    msgpack_pack_str_body(&b->pk, raw, 2);    /* append raw bytes */
}

/* ---- mp ------------------------------------------------------------------------------------- */

START_TEST(test_mp_roundtrip)
{
    struct buf b;
    pack_sample(&b);
    struct mp_map m;
    const char *why = NULL;
    ck_assert_int_eq(mp_map_open(&m, b.sb.data, b.sb.size, 4, &why), 0);
    ck_assert_uint_eq(m.n, 12);
    uint64_t u;
    int64_t i;
    double d;
    int t;
    const char *s;
    const void *p;
    size_t n;
    ck_assert_int_eq(mp_get_u64(&m, "u", &u), MP_OK);
    ck_assert(u == 1234567890123ull);
    ck_assert_int_eq(mp_get_i64(&m, "i", &i), MP_OK);
    ck_assert(i == -42);
    ck_assert_int_eq(mp_get_u64(&m, "i", &u), MP_WRONG_TYPE);
    ck_assert_int_eq(mp_get_i64(&m, "u", &i), MP_OK);
    ck_assert_int_eq(mp_get_double(&m, "d", &d), MP_OK);
    ck_assert(d == 0.25);
    ck_assert_int_eq(mp_get_double(&m, "f32", &d), MP_OK);
    ck_assert(d == 1.5);
    ck_assert_int_eq(mp_get_double(&m, "i", &d), MP_OK);
    ck_assert(d == -42);
    ck_assert_int_eq(mp_get_bool(&m, "t", &t), MP_OK);
    ck_assert_int_eq(t, 1);
    ck_assert_int_eq(mp_get_bool(&m, "nil", &t), MP_WRONG_TYPE);
    ck_assert_int_eq(mp_get_str(&m, "s", &s, &n), MP_OK);
    ck_assert_uint_eq(n, 5);
    ck_assert(!memcmp(s, "hello", 5));
    ck_assert_int_eq(mp_get_bin(&m, "s", &p, &n), MP_WRONG_TYPE);
    ck_assert_int_eq(mp_get_bin(&m, "b", &p, &n), MP_OK);
    ck_assert_uint_eq(n, 12);
    float f[3];
    memcpy(f, p, 12);
    ck_assert(f[0] == 1 && f[1] == 2 && f[2] == 3);
    ck_assert_int_eq(mp_get_u64(&m, "missing", &u), MP_MISSING);
    ck_assert_int_eq(mp_get_u64(&m, "pos_as_int", &u), MP_OK);
    ck_assert(u == 5);
    ck_assert_int_eq(mp_get_u64(&m, "int8pos", &u), MP_OK);
    ck_assert(u == 5);
    /* a key that is a prefix of another must not match */
    ck_assert_int_eq(mp_get_u64(&m, "in", &u), MP_MISSING);

    struct mp_obj arr, el;
    struct mp_iter it;
    ck_assert_int_eq(mp_get_array(&m, "arr", &arr), MP_OK);
    ck_assert_uint_eq(arr.n, 3);
    ck_assert_int_eq(mp_iter_init(&it, &arr), 0);
    ck_assert_int_eq(mp_iter_next(&it, &el), 1);
    ck_assert(el.type == MP_UINT && el.v.u == 1);
    ck_assert_int_eq(mp_iter_next(&it, &el), 1);
    ck_assert(el.type == MP_STR && el.len == 2 && !memcmp(el.ptr, "xy", 2));
    ck_assert_int_eq(mp_iter_next(&it, &el), 1);
    ck_assert(el.type == MP_ARRAY && el.n == 0);
    ck_assert_int_eq(mp_iter_next(&it, &el), 0);
    struct mp_map inner;
    ck_assert_int_eq(mp_get_map(&m, "m", &inner), MP_OK);
    ck_assert_int_eq(mp_get_u64(&inner, "inner", &u), MP_OK);
    ck_assert(u == 9);
    ck_assert_int_eq(mp_get_map(&m, "arr", &inner), MP_WRONG_TYPE);
    ck_assert_str_eq(mp_type_name(MP_BIN), "bin");
    buf_free(&b);
}
END_TEST

START_TEST(test_mp_sizes_and_fixbuf)
{
    static const uint64_t vals[] = { 0, 127, 128, 255, 256, 65535, 65536, 0xffffffffull,
                                     0x100000000ull, UINT64_MAX };
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        struct buf b;
        buf_init(&b);
        msgpack_pack_uint64(&b.pk, vals[i]);
        ck_assert_uint_eq(b.sb.size, mp_size_uint(vals[i]));
        buf_free(&b);
    }
    static const size_t lens[] = { 0, 31, 32, 255, 256, 65535, 65536, 100000 };
    char *junk = calloc(1, 100000);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        struct buf b;
        buf_init(&b);
        mp_pack_strn(&b.pk, junk, lens[i]);
        ck_assert_uint_eq(b.sb.size, mp_size_str(lens[i]));
        msgpack_sbuffer_clear(&b.sb);
        msgpack_pack_bin(&b.pk, lens[i]);
        msgpack_pack_bin_body(&b.pk, junk, lens[i]);
        ck_assert_uint_eq(b.sb.size, mp_size_bin(lens[i]));
        msgpack_sbuffer_clear(&b.sb);
        msgpack_pack_map(&b.pk, lens[i]);
        ck_assert_uint_eq(b.sb.size, mp_size_map(lens[i]));
        buf_free(&b);
    }
    free(junk);
    /* a fixed buffer refuses to overflow */
    char mem[8];
    struct mp_fixbuf fb;
    msgpack_packer pk;
    mp_fixbuf_init(&fb, mem, sizeof mem);
    msgpack_packer_init(&pk, &fb, mp_fixbuf_write);
    ck_assert_int_eq(mp_pack_kv_u64(&pk, "ab", 1), 0); /* 3 + 1 bytes */
    ck_assert_int_eq(fb.overflow, 0);
    ck_assert_int_ne(mp_pack_kv_str(&pk, "abc", "def"), 0);
    ck_assert_int_eq(fb.overflow, 1);
    ck_assert_uint_le(fb.len, sizeof mem);
    mp_fixbuf_init(&fb, mem, sizeof mem);
    ck_assert_ptr_nonnull(mp_fixbuf_reserve(&fb, 8));
    ck_assert_ptr_null(mp_fixbuf_reserve(&fb, 1));
}
END_TEST

static int invalid(const void *p, size_t n, int depth)
{
    const char *why = NULL;
    int rc = mp_validate(p, n, depth, &why);
    if (rc != 0)
        ck_assert_ptr_nonnull(why);
    return rc != 0;
}

START_TEST(test_mp_validate_rejects)
{
    struct buf b;
    pack_sample(&b);
    const unsigned char *d = (const unsigned char *)b.sb.data;
    ck_assert(!invalid(d, b.sb.size, 4));
    /* every strict prefix is truncated */
    for (size_t n = 0; n < b.sb.size; n++)
        ck_assert_msg(invalid(d, n, 4), "prefix %zu accepted", n);
    /* trailing bytes */
    unsigned char *t = malloc(b.sb.size + 1);
    memcpy(t, d, b.sb.size);
    t[b.sb.size] = 0xc0;
    ck_assert(invalid(t, b.sb.size + 1, 4));
    free(t);
    /* depth: the sample is depth 2 */
    ck_assert(invalid(d, b.sb.size, 1));
    ck_assert(!invalid(d, b.sb.size, 2));
    buf_free(&b);

    const unsigned char c1[] = { 0x81, 0xa1, 'k', 0xc1 };
    ck_assert(invalid(c1, sizeof c1, 4));
    ck_assert(invalid(NULL, 0, 4));
    const unsigned char arr32[] = { 0xdd, 0xff, 0xff, 0xff, 0xff, 1, 2, 3 };
    ck_assert(invalid(arr32, sizeof arr32, 4));
    const unsigned char map32[] = { 0xdf, 0x7f, 0xff, 0xff, 0xff, 1, 2 };
    ck_assert(invalid(map32, sizeof map32, 4));
    const unsigned char map16[] = { 0xde, 0x00, 0x02, 0xa1, 'a', 1 }; /* 2 pairs, 1 given */
    ck_assert(invalid(map16, sizeof map16, 4));
    const unsigned char bin32[] = { 0xc6, 0xff, 0xff, 0xff, 0xf0, 0, 0 };
    ck_assert(invalid(bin32, sizeof bin32, 4));
    const unsigned char str8[] = { 0xd9, 10, 'a', 'b' };
    ck_assert(invalid(str8, sizeof str8, 4));
    const unsigned char ext32[] = { 0xc9, 0, 0, 0, 4, 1, 0, 0, 0 }; /* needs type + 4 */
    ck_assert(invalid(ext32, sizeof ext32, 4));
    const unsigned char fixext[] = { 0xd8, 1, 0, 0 };
    ck_assert(invalid(fixext, sizeof fixext, 4));
    const unsigned char u64[] = { 0xcf, 0, 0, 0 };
    ck_assert(invalid(u64, sizeof u64, 4));
    const unsigned char ok_ext[] = { 0xd4, 7, 42 };
    ck_assert(!invalid(ok_ext, sizeof ok_ext, 4));
    /* deep nesting, far beyond any limit */
    unsigned char deep[200];
    memset(deep, 0x91, sizeof deep);
    deep[sizeof deep - 1] = 0xc0;
    ck_assert(invalid(deep, sizeof deep, MP_MAX_DEPTH));
    ck_assert(invalid(deep, sizeof deep, 1000));
    ck_assert(!invalid(deep + sizeof deep - 5, 5, 4));
    /* a top-level value that is not a map */
    struct mp_map m;
    const char *why;
    ck_assert_int_eq(mp_map_open(&m, ok_ext, sizeof ok_ext, 4, &why), -1);
    ck_assert_str_eq(why, "top-level value is not a map");
}
END_TEST

/* Whatever mp_validate accepts, msgpack-c's own parser must accept with the same length. */
START_TEST(test_mp_validate_vs_msgpack_c)
{
    struct buf b;
    pack_sample(&b);
    size_t n = b.sb.size;
    unsigned char *m = malloc(n);
    struct rng r;
    rng_seed(&r, 1);
    int accepted = 0;
    for (int iter = 0; iter < 20000; iter++) {
        memcpy(m, b.sb.data, n);
        int flips = 1 + (int)rng_below(&r, 3);
        for (int f = 0; f < flips; f++)
            m[rng_below(&r, n)] = (unsigned char)rng_u32(&r);
        size_t len = rng_below(&r, 4) == 0 ? rng_below(&r, n + 1) : n;
        if (mp_validate(m, len, 8, NULL) != 0)
            continue;
        accepted++;
        msgpack_zone z;
        msgpack_zone_init(&z, 2048);
        msgpack_object obj;
        size_t off = 0;
        msgpack_unpack_return ur = msgpack_unpack((const char *)m, len, &off, &z, &obj);
        ck_assert_msg(ur == MSGPACK_UNPACK_SUCCESS && off == len,
                      "iteration %d: validated but msgpack-c says %d (off %zu of %zu)", iter,
                      (int)ur, off, len);
        msgpack_zone_destroy(&z);
        /* reading every field of a validated map must stay in bounds (ASan checks) */
        struct mp_map mm;
        if (mp_map_open(&mm, m, len, 8, NULL) == 0) {
            struct mp_obj o;
            struct mp_iter it;
            struct mp_obj whole;
            mp_obj_decode((const char *)m, &whole);
            ck_assert_ptr_eq(whole.end, (const char *)m + len);
            mp_iter_init(&it, &whole);
            while (mp_iter_next(&it, &o))
                ck_assert(o.end <= (const char *)m + len);
        }
    }
    ck_assert_int_gt(accepted, 100);
    free(m);
    buf_free(&b);
}
END_TEST

/* ---- msg ------------------------------------------------------------------------------------ */

START_TEST(test_msg_endpoints)
{
    ck_assert(msg_endpoint_is_local("tcp://127.0.0.1:5557"));
    ck_assert(msg_endpoint_is_local("tcp://127.1.2.3:1"));
    ck_assert(msg_endpoint_is_local("tcp://localhost:5557"));
    ck_assert(msg_endpoint_is_local("tcp://[::1]:5557"));
    ck_assert(msg_endpoint_is_local("ipc:///tmp/x"));
    ck_assert(msg_endpoint_is_local("inproc://x"));
    ck_assert(!msg_endpoint_is_local("tcp://*:5557"));
    ck_assert(!msg_endpoint_is_local("tcp://0.0.0.0:5557"));
    ck_assert(!msg_endpoint_is_local("tcp://10.1.2.3:5557"));
    ck_assert(!msg_endpoint_is_local("tcp://[::]:5557"));
    ck_assert(!msg_endpoint_is_local("tcp://eth0:5557"));
    ck_assert(!msg_endpoint_is_local("udp://127.0.0.1:1"));
    ck_assert(!msg_endpoint_is_local(NULL));
    void *s = msg_socket(ZMQ_ROUTER, NULL);
    ck_assert_ptr_nonnull(s);
    errno = 0;
    ck_assert_int_eq(msg_bind(s, "tcp://0.0.0.0:0", 0), -1);
    ck_assert_int_eq(errno, EPERM);
    ck_assert_int_eq(msg_bind(s, "tcp://127.0.0.1:*", 0), 0);
    zmq_msg_t m;
    zmq_msg_init(&m);
    ck_assert_int_eq(msg_recv(s, &m, 50, NULL), -1);
    ck_assert_int_eq(errno, EAGAIN);
    zmq_msg_close(&m);
    msg_close(&s);
    ck_assert_ptr_null(s);
}
END_TEST

static volatile sig_atomic_t alarm_flag;
static void on_alarm(int sig)
{
    (void)sig;
    alarm_flag = 1;
}

/* One SIGALRM 50 ms from now; its handler sets alarm_flag. */
static void alarm_in_50ms(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    ck_assert_int_eq(sigaction(SIGALRM, &sa, NULL), 0);
    alarm_flag = 0;
    struct itimerval it = { { 0, 0 }, { 0, 50000 } };
    ck_assert_int_eq(setitimer(ITIMER_REAL, &it, NULL), 0);
}

/* Waits end early (EINTR) on a signal only when their stop flag is set by then; with no flag
 * (NULL) the signal is retried and the wait runs its course, so does the client's. */
START_TEST(test_msg_wait_stop_flag)
{
    void *s = msg_socket(ZMQ_ROUTER, NULL);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(msg_bind(s, "tcp://127.0.0.1:*", 0), 0);
    alarm_in_50ms();
    uint64_t t0 = clock_now_ns();
    errno = 0;
    ck_assert_int_eq(msg_wait(s, ZMQ_POLLIN, 3000, &alarm_flag), -1);
    ck_assert_int_eq(errno, EINTR);
    ck_assert_msg(clock_now_ns() - t0 < 2000000000ull, "the flag did not end the wait early");

    alarm_in_50ms();
    t0 = clock_now_ns();
    ck_assert_int_eq(msg_wait(s, ZMQ_POLLIN, 300, NULL), 0);
    ck_assert_int_eq(alarm_flag, 1);
    ck_assert_uint_ge(clock_now_ns() - t0, 299000000ull);

    zmq_msg_t m;
    zmq_msg_init(&m);
    alarm_in_50ms();
    errno = 0;
    ck_assert_int_eq(msg_recv(s, &m, 3000, &alarm_flag), -1);
    ck_assert_int_eq(errno, EINTR);
    zmq_msg_close(&m);

    /* a client to nobody: its stop flag ends the retries; without one they all run */
    char ep[64];
    size_t len = sizeof ep;
    ck_assert_int_eq(zmq_getsockopt(s, ZMQ_LAST_ENDPOINT, ep, &len), 0);
    msg_close(&s);
    struct msg_client *c = msg_client_new(ep, NULL, 200, 5, NULL);
    ck_assert_ptr_nonnull(c);
    msg_client_set_stop(c, &alarm_flag);
    alarm_in_50ms();
    t0 = clock_now_ns();
    const void *reply;
    size_t rlen;
    errno = 0;
    ck_assert_int_eq(msg_client_call(c, "\x80", 1, &reply, &rlen), -1);
    ck_assert_int_eq(errno, EINTR);
    ck_assert_msg(clock_now_ns() - t0 < 1000000000ull, "the flag did not end the retries");
    msg_client_cancel(c);
    msg_client_set_stop(c, NULL);
    msg_client_limit_retries(c, 1);
    alarm_in_50ms();
    errno = 0;
    ck_assert_int_eq(msg_client_call(c, "\x80", 1, &reply, &rlen), -1);
    ck_assert_int_eq(errno, ETIMEDOUT);
    msg_client_destroy(&c);
}
END_TEST

/* A scripted ROUTER peer: for request number i (counting every arrival, resends
 * included) it does script[i]: 'd' drop, 'r' reply with the request's seq, 'o' reply
 * with the previous request's seq (a stale reply) then the right one, 'j' reply with
 * garbage then the right one. */
struct peer {
    const char *ep;
    const char *script;
    int arrivals;
    uint64_t seqs[32];
};

static void peer_reply(void *s, zmq_msg_t *id, uint64_t seq, int garbage)
{
    struct buf b;
    buf_init(&b);
    if (garbage) {
        msgpack_pack_array(&b.pk, 1); /* not a map */
        msgpack_pack_nil(&b.pk);
    } else {
        msgpack_pack_map(&b.pk, 2);
        mp_pack_kv_u64(&b.pk, "seq", seq);
        mp_pack_kv_u64(&b.pk, "answer", seq * 2);
    }
    zmq_msg_t idc;
    zmq_msg_init(&idc);
    zmq_msg_copy(&idc, id);
    zmq_msg_send(&idc, s, ZMQ_SNDMORE);
    zmq_send(s, b.sb.data, b.sb.size, 0);
    buf_free(&b);
}

static void *peer_main(void *arg)
{
    struct peer *p = arg;
    void *s = msg_socket(ZMQ_ROUTER, NULL);
    zmq_bind(s, p->ep);
    for (const char *c = p->script; *c; c++) {
        zmq_msg_t id, body;
        zmq_msg_init(&id);
        zmq_msg_init(&body);
        if (msg_recv(s, &id, 5000, NULL) != 0 || msg_recv(s, &body, 1000, NULL) != 0)
            break;
        struct mp_map m;
        uint64_t seq = 0;
        if (mp_map_open(&m, zmq_msg_data(&body), zmq_msg_size(&body), 4, NULL) == 0)
            mp_get_u64(&m, "seq", &seq);
        p->seqs[p->arrivals++] = seq;
        if (*c == 'o' || *c == 'j')
            peer_reply(s, &id, *c == 'o' ? seq - 1 : 0, *c == 'j');
        if (*c != 'd')
            peer_reply(s, &id, seq, 0);
        zmq_msg_close(&id);
        zmq_msg_close(&body);
    }
    usleep(100000);
    msg_close(&s);
    return NULL;
}

static size_t make_req(struct msg_client *c, char *out, size_t cap)
{
    struct mp_fixbuf fb;
    msgpack_packer pk;
    mp_fixbuf_init(&fb, out, cap);
    msgpack_packer_init(&pk, &fb, mp_fixbuf_write);
    msgpack_pack_map(&pk, 2);
    mp_pack_kv_str(&pk, "cid", msg_client_cid(c));
    mp_pack_kv_u64(&pk, "seq", msg_client_next_seq(c));
    return fb.len;
}

static uint64_t reply_answer(const void *rep, size_t len)
{
    struct mp_map m;
    uint64_t a = 0;
    ck_assert_int_eq(mp_map_open(&m, rep, len, 4, NULL), 0);
    ck_assert_int_eq(mp_get_u64(&m, "answer", &a), MP_OK);
    return a;
}

START_TEST(test_msg_client_retries)
{
    /* request 1: dropped once, answered on the resend; request 2: a stale reply and a
     * garbage reply arrive before the right one; request 3: dropped on every attempt */
    struct peer p = { "inproc://peer-retry", "dr" "o" "j" "ddd", 0, { 0 } };
    pthread_t th;
    pthread_create(&th, NULL, peer_main, &p);
    usleep(50000);
    struct msg_client *c = msg_client_new(p.ep, "tester", 200, 2, NULL);
    ck_assert_ptr_nonnull(c);
    ck_assert_str_eq(msg_client_cid(c), "tester");
    char req[128];
    const void *rep;
    size_t len;
    uint64_t seq1 = msg_client_next_seq(c);
    size_t n = make_req(c, req, sizeof req);
    ck_assert_int_eq(msg_client_call(c, req, n, &rep, &len), 0);
    ck_assert(reply_answer(rep, len) == seq1 * 2);
    ck_assert_uint_eq(msg_client_resends(c), 1);
    ck_assert(p.seqs[0] == seq1 && p.seqs[1] == seq1); /* identical request resent */

    uint64_t seq2 = msg_client_next_seq(c);
    ck_assert(seq2 == seq1 + 1);
    n = make_req(c, req, sizeof req);
    ck_assert_int_eq(msg_client_call(c, req, n, &rep, &len), 0);
    ck_assert(reply_answer(rep, len) == seq2 * 2);
    uint64_t seq3 = msg_client_next_seq(c);
    n = make_req(c, req, sizeof req);
    ck_assert_int_eq(msg_client_call(c, req, n, &rep, &len), 0);
    ck_assert(reply_answer(rep, len) == seq3 * 2);
    ck_assert_uint_eq(msg_client_discarded(c), 2); /* the stale and the garbage reply */

    /* async: send, then a second send is refused until the reply is collected */
    n = make_req(c, req, sizeof req);
    ck_assert_int_eq(msg_client_send(c, req, n), 0);
    ck_assert_int_eq(msg_client_send(c, req, n), -1);
    ck_assert_int_eq(errno, EBUSY);
    ck_assert_int_eq(msg_client_recv(c, &rep, &len), -1);
    ck_assert_int_eq(errno, ETIMEDOUT);
    ck_assert_int_eq(msg_client_busy(c), 0);
    ck_assert_int_eq(p.arrivals, 7);
    pthread_join(th, NULL);
    msg_client_destroy(&c);
    ck_assert_ptr_null(c);
    msg_client_destroy(&c); /* accepts NULL */

    struct msg_client *r1 = msg_client_new("inproc://none", NULL, 100, 0, NULL);
    struct msg_client *r2 = msg_client_new("inproc://none", "", 100, 0, NULL);
    ck_assert_uint_eq(strlen(msg_client_cid(r1)), 16);
    ck_assert_str_ne(msg_client_cid(r1), msg_client_cid(r2));
    msg_client_destroy(&r1);
    msg_client_destroy(&r2);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("mp");
    TCase *tc = tcase_create("mp");
    tcase_add_test(tc, test_mp_roundtrip);
    tcase_add_test(tc, test_mp_sizes_and_fixbuf);
    tcase_add_test(tc, test_mp_validate_rejects);
    tcase_add_test(tc, test_mp_validate_vs_msgpack_c);
    suite_add_tcase(s, tc);
    TCase *tm = tcase_create("msg");
    tcase_set_timeout(tm, 30);
    tcase_add_test(tm, test_msg_endpoints);
    tcase_add_test(tm, test_msg_wait_stop_flag);
    tcase_add_test(tm, test_msg_client_retries);
    suite_add_tcase(s, tm);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
