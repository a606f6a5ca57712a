/* The loader <-> trainer wire protocol codec: see proto_task.h and docs/protocol.md. */
#include "common/proto_task.h"

#include <stdarg.h>
#include <stdio.h>

static const char *const type_names[] = {
    [TASK_MSG_HELLO] = "hello", [TASK_MSG_WELCOME] = "welcome", [TASK_MSG_REFUSE] = "refuse",
    [TASK_MSG_TASK] = "task",   [TASK_MSG_BATCH] = "batch",     [TASK_MSG_FAIL] = "fail",
};
#define TYPE_COUNT (sizeof type_names / sizeof type_names[0])

const char *proto_task_type_name(enum task_msg_type t)
{
    return (t > TASK_MSG_NONE && (size_t)t < TYPE_COUNT) ? type_names[t] : NULL;
}

const char *proto_task_layout_name(enum augment_layout l)
{
    return l == AUGMENT_CHW ? "chw" : "hwc";
}

static enum task_msg_type fail_msg(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static enum task_msg_type fail_msg(char *err, size_t err_len, const char *fmt, ...)
{
    if (err && err_len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_len, fmt, ap);
        va_end(ap);
    }
    return TASK_MSG_NONE;
}

/* Field readers: 0, or -1 with err describing the field. */
#define NEED(expr, key, want)                                                                   \
    do {                                                                                        \
        int rc_ = (expr);                                                                       \
        if (rc_ != MP_OK)                                                                       \
            return fail_msg(err, err_len, "field '%s' %s", key,                                 \
                            rc_ == MP_MISSING ? "missing" : "must be " want);                   \
    } while (0)

static int get_u32(const struct mp_map *m, const char *key, uint32_t *out)
{
    uint64_t v;
    int rc = mp_get_u64(m, key, &v);
    if (rc != MP_OK)
        return rc;
    if (v > UINT32_MAX)
        return MP_WRONG_TYPE;
    *out = (uint32_t)v;
    return MP_OK;
}

static int get_str(const struct mp_map *m, const char *key, struct task_str *s)
{
    return mp_get_str(m, key, &s->p, &s->len);
}

static int get_layout(const struct mp_map *m, enum augment_layout *l)
{
    struct task_str s;
    int rc = get_str(m, "layout", &s);
    if (rc != MP_OK)
        return rc;
    if (s.len == 3 && memcmp(s.p, "chw", 3) == 0)
        *l = AUGMENT_CHW;
    else if (s.len == 3 && memcmp(s.p, "hwc", 3) == 0)
        *l = AUGMENT_HWC;
    else
        return MP_WRONG_TYPE;
    return MP_OK;
}

/* "views": 1 when absent; 0, or -1 when present but not a uint in 1..TASK_MAX_VIEWS. */
static int get_views(const struct mp_map *m, uint32_t *views)
{
    uint32_t v = 1;
    int rc = get_u32(m, "views", &v);
    if (rc == MP_MISSING)
        v = 1;
    else if (rc != MP_OK || v < 1 || v > TASK_MAX_VIEWS)
        return -1;
    *views = v;
    return 0;
}

/* A bin of u32 elements: count = len / 4 in [1, TASK_MAX_COUNT]. */
static int get_u32_list(const struct mp_map *m, const char *key, const void **p, uint32_t *count)
{
    size_t len;
    int rc = mp_get_bin(m, key, p, &len);
    if (rc != MP_OK)
        return rc;
    if (len == 0 || len % 4 != 0 || len / 4 > TASK_MAX_COUNT)
        return MP_WRONG_TYPE;
    *count = (uint32_t)(len / 4);
    return MP_OK;
}

enum task_msg_type proto_task_decode(const void *buf, size_t len, union task_msg *u, char *err,
                                     size_t err_len)
{
    struct mp_map m;
    const char *why = NULL;
    memset(u, 0, sizeof *u);
    if (mp_map_open(&m, buf, len, 4, &why))
        return fail_msg(err, err_len, "malformed frame (%zu bytes): %s", len, why ? why : "?");
    uint64_t v;
    NEED(mp_get_u64(&m, "v", &v), "v", "uint");
    if (v != TASK_PROTO_VERSION)
        return fail_msg(err, err_len, "EVERSION: protocol version %llu, expected %d",
                        (unsigned long long)v, TASK_PROTO_VERSION);
    struct task_str t;
    NEED(get_str(&m, "t", &t), "t", "str");
    enum task_msg_type type = TASK_MSG_NONE;
    for (size_t i = 1; i < TYPE_COUNT; i++)
        if (strlen(type_names[i]) == t.len && memcmp(type_names[i], t.p, t.len) == 0)
            type = (enum task_msg_type)i;
    switch (type) {
    case TASK_MSG_HELLO: {
        struct task_hello *h = &u->hello;
        NEED(get_str(&m, "manifest", &h->manifest), "manifest", "str");
        NEED(mp_get_u64(&m, "count", &h->count), "count", "uint");
        NEED(get_u32(&m, "capacity", &h->capacity), "capacity", "uint32");
        if (h->capacity == 0 || h->capacity > 1024)
            return fail_msg(err, err_len, "field 'capacity' must be in 1..1024");
        int rc = get_u32(&m, "held", &h->held);
        if (rc == MP_WRONG_TYPE)
            return fail_msg(err, err_len, "field 'held' must be uint32");
        rc = get_str(&m, "name", &h->name);
        if (rc == MP_WRONG_TYPE)
            return fail_msg(err, err_len, "field 'name' must be str");
        break;
    }
    case TASK_MSG_WELCOME:
        NEED(mp_get_u64(&m, "run", &u->welcome.run), "run", "uint");
        break;
    case TASK_MSG_REFUSE:
        NEED(get_str(&m, "err", &u->refuse.code), "err", "str");
        NEED(get_str(&m, "msg", &u->refuse.msg), "msg", "str");
        break;
    case TASK_MSG_TASK: {
        struct task_task *k = &u->task;
        NEED(mp_get_u64(&m, "run", &k->run), "run", "uint");
        NEED(get_u32(&m, "epoch", &k->epoch), "epoch", "uint32");
        NEED(get_u32(&m, "step", &k->step), "step", "uint32");
        NEED(get_u32_list(&m, "idx", &k->idx, &k->count), "idx",
             "bin of 1..65536 little-endian u32");
        NEED(mp_get_u64(&m, "seed", &k->seed), "seed", "uint");
        NEED(get_str(&m, "preset", &k->preset), "preset", "str");
        NEED(mp_get_bool(&m, "train", &k->train), "train", "bool");
        NEED(get_u32(&m, "size", &k->size), "size", "uint32");
        if (k->size == 0 || k->size > TASK_MAX_SIZE)
            return fail_msg(err, err_len, "field 'size' must be in 1..%u", TASK_MAX_SIZE);
        NEED(get_layout(&m, &k->layout), "layout", "\"chw\" or \"hwc\"");
        if (get_views(&m, &k->views) != 0)
            return fail_msg(err, err_len, "field 'views' must be in 1..%u", TASK_MAX_VIEWS);
        k->aug.p = "";
        k->aug.len = 0;
        int arc = get_str(&m, "aug", &k->aug);
        if (arc == MP_MISSING) {
            k->aug.p = "";
            k->aug.len = 0;
        } else if (arc != MP_OK || k->aug.len > TASK_MAX_AUG) {
            return fail_msg(err, err_len, "field 'aug' must be a str of at most %u bytes", TASK_MAX_AUG);
        }
        break;
    }
    case TASK_MSG_BATCH: {
        struct task_batch *b = &u->batch;
        NEED(mp_get_u64(&m, "run", &b->run), "run", "uint");
        NEED(get_u32(&m, "epoch", &b->epoch), "epoch", "uint32");
        NEED(get_u32(&m, "step", &b->step), "step", "uint32");
        NEED(get_u32_list(&m, "idx", &b->idx, &b->count), "idx",
             "bin of 1..65536 little-endian u32");
        uint32_t nl;
        NEED(get_u32_list(&m, "labels", &b->labels, &nl), "labels",
             "bin of little-endian u32");
        if (nl != b->count)
            return fail_msg(err, err_len, "field 'labels' has %u entries for %u images", nl,
                            b->count);
        const void *p;
        size_t blen;
        NEED(mp_get_bin(&m, "bad", &p, &blen), "bad", "bin");
        if (blen != b->count)
            return fail_msg(err, err_len, "field 'bad' has %zu bytes for %u images", blen,
                            b->count);
        b->bad = p;
        NEED(get_u32(&m, "size", &b->size), "size", "uint32");
        if (b->size == 0 || b->size > TASK_MAX_SIZE)
            return fail_msg(err, err_len, "field 'size' must be in 1..%u", TASK_MAX_SIZE);
        NEED(get_layout(&m, &b->layout), "layout", "\"chw\" or \"hwc\"");
        if (get_views(&m, &b->views) != 0)
            return fail_msg(err, err_len, "field 'views' must be in 1..%u", TASK_MAX_VIEWS);
        NEED(mp_get_bin(&m, "pix", &p, &blen), "pix", "bin");
        uint64_t want = (uint64_t)b->views * b->count * b->size * b->size * 3;
        if (blen != want)
            return fail_msg(err, err_len, "field 'pix' has %zu bytes, expected %llu", blen,
                            (unsigned long long)want);
        b->pix = p;
        if (mp_get_u64(&m, "decode_ns", &b->decode_ns) == MP_WRONG_TYPE ||
            mp_get_u64(&m, "augment_ns", &b->augment_ns) == MP_WRONG_TYPE)
            return fail_msg(err, err_len, "fields 'decode_ns', 'augment_ns' must be uint");
        int rc = mp_get_array(&m, "errors", &b->errors);
        if (rc == MP_WRONG_TYPE)
            return fail_msg(err, err_len, "field 'errors' must be an array of str");
        if (rc == MP_OK) {
            struct mp_iter it;
            struct mp_obj o;
            mp_iter_init(&it, &b->errors);
            while (mp_iter_next(&it, &o))
                if (o.type != MP_STR)
                    return fail_msg(err, err_len, "field 'errors' must be an array of str");
            b->n_errors = b->errors.n;
        }
        break;
    }
    case TASK_MSG_FAIL: {
        struct task_fail *f = &u->fail;
        NEED(mp_get_u64(&m, "run", &f->run), "run", "uint");
        NEED(get_u32(&m, "epoch", &f->epoch), "epoch", "uint32");
        NEED(get_u32(&m, "step", &f->step), "step", "uint32");
        NEED(get_str(&m, "err", &f->code), "err", "str");
        NEED(get_str(&m, "msg", &f->msg), "msg", "str");
        break;
    }
    default:
        return fail_msg(err, err_len, "unknown message type '%.*s'", (int)(t.len > 32 ? 32 : t.len),
                        t.p);
    }
    return type;
}

/* ---- encoders ------------------------------------------------------------------------------- */

static int hdr(msgpack_packer *pk, size_t n, const char *type)
{
    return msgpack_pack_map(pk, n + 2) || mp_pack_kv_u64(pk, "v", TASK_PROTO_VERSION) ||
           mp_pack_kv_str(pk, "t", type);
}

int proto_task_encode_hello(msgpack_packer *pk, const struct task_hello *h)
{
    return hdr(pk, 5, "hello") ||
           mp_pack_kv_strn(pk, "manifest", h->manifest.p, h->manifest.len) ||
           mp_pack_kv_u64(pk, "count", h->count) || mp_pack_kv_u64(pk, "capacity", h->capacity) ||
           mp_pack_kv_u64(pk, "held", h->held) ||
           mp_pack_kv_strn(pk, "name", h->name.p ? h->name.p : "", h->name.len)
               ? -1 : 0;
}

int proto_task_encode_welcome(msgpack_packer *pk, const struct task_welcome *w)
{
    return hdr(pk, 1, "welcome") || mp_pack_kv_u64(pk, "run", w->run) ? -1 : 0;
}

int proto_task_encode_refuse(msgpack_packer *pk, const struct task_refuse *r)
{
    return hdr(pk, 2, "refuse") || mp_pack_kv_strn(pk, "err", r->code.p, r->code.len) ||
           mp_pack_kv_strn(pk, "msg", r->msg.p, r->msg.len)
               ? -1 : 0;
}

int proto_task_encode_task(msgpack_packer *pk, const struct task_task *t)
{
    int views = t->views > 1, aug = t->aug.len > 0;
    return hdr(pk, 9 + (size_t)views + (size_t)aug, "task") ||
           (views && mp_pack_kv_u64(pk, "views", t->views)) ||
           (aug && mp_pack_kv_strn(pk, "aug", t->aug.p, t->aug.len)) || mp_pack_kv_u64(pk, "run", t->run) ||
           mp_pack_kv_u64(pk, "epoch", t->epoch) || mp_pack_kv_u64(pk, "step", t->step) ||
           mp_pack_kv_bin(pk, "idx", t->idx, (size_t)t->count * 4) ||
           mp_pack_kv_u64(pk, "seed", t->seed) ||
           mp_pack_kv_strn(pk, "preset", t->preset.p, t->preset.len) ||
           mp_pack_kv_bool(pk, "train", t->train) || mp_pack_kv_u64(pk, "size", t->size) ||
           mp_pack_kv_str(pk, "layout", proto_task_layout_name(t->layout))
               ? -1 : 0;
}

int proto_task_encode_batch(msgpack_packer *pk, const struct task_batch *b)
{
    uint32_t nv = b->views > 1 ? b->views : 1;
    size_t pix = (size_t)nv * b->count * b->size * b->size * 3;
    if (hdr(pk, 12 + (nv > 1), "batch") || (nv > 1 && mp_pack_kv_u64(pk, "views", nv)) || mp_pack_kv_u64(pk, "run", b->run) ||
        mp_pack_kv_u64(pk, "epoch", b->epoch) || mp_pack_kv_u64(pk, "step", b->step) ||
        mp_pack_kv_bin(pk, "idx", b->idx, (size_t)b->count * 4) ||
        mp_pack_kv_bin(pk, "labels", b->labels, (size_t)b->count * 4) ||
        mp_pack_kv_bin(pk, "bad", b->bad, b->count) || mp_pack_kv_u64(pk, "size", b->size) ||
        mp_pack_kv_str(pk, "layout", proto_task_layout_name(b->layout)) ||
        mp_pack_kv_bin(pk, "pix", b->pix, pix) || mp_pack_kv_u64(pk, "decode_ns", b->decode_ns) ||
        mp_pack_kv_u64(pk, "augment_ns", b->augment_ns) || mp_pack_key(pk, "errors") ||
        msgpack_pack_array(pk, b->n_errors))
        return -1;
    for (uint32_t i = 0; i < b->n_errors; i++)
        if (mp_pack_strn(pk, b->errors_list[i], strlen(b->errors_list[i])))
            return -1;
    return 0;
}

int proto_task_encode_fail(msgpack_packer *pk, const struct task_fail *f)
{
    return hdr(pk, 5, "fail") || mp_pack_kv_u64(pk, "run", f->run) ||
           mp_pack_kv_u64(pk, "epoch", f->epoch) || mp_pack_kv_u64(pk, "step", f->step) ||
           mp_pack_kv_strn(pk, "err", f->code.p, f->code.len) ||
           mp_pack_kv_strn(pk, "msg", f->msg.p, f->msg.len)
               ? -1 : 0;
}
