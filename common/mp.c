/* msgpack helpers: see mp.h. The validator and the readers share one header parser
 * (mp_hdr); the readers run only on bytes mp_validate accepted, so they do not re-check
 * bounds. */
#include "common/mp.h"

#include <string.h>

/* ---- encoding ---------------------------------------------------------------------------- */

void mp_fixbuf_init(struct mp_fixbuf *fb, void *mem, size_t cap)
{
    fb->data = mem;
    fb->len = 0;
    fb->cap = cap;
    fb->overflow = 0;
}

int mp_fixbuf_write(void *data, const char *buf, size_t len)
{
    struct mp_fixbuf *fb = data;
    if (len > fb->cap - fb->len) {
        fb->overflow = 1;
        return -1;
    }
    memcpy(fb->data + fb->len, buf, len);
    fb->len += len;
    return 0;
}

void *mp_fixbuf_reserve(struct mp_fixbuf *fb, size_t n)
{
    if (n > fb->cap - fb->len) {
        fb->overflow = 1;
        return NULL;
    }
    void *p = fb->data + fb->len;
    fb->len += n;
    return p;
}

int mp_pack_strn(msgpack_packer *pk, const char *s, size_t len)
{
    if (msgpack_pack_str(pk, len) != 0)
        return -1;
    return msgpack_pack_str_body(pk, s, len);
}

int mp_pack_key(msgpack_packer *pk, const char *key)
{
    return mp_pack_strn(pk, key, strlen(key));
}

int mp_pack_kv_u64(msgpack_packer *pk, const char *key, uint64_t v)
{
    return mp_pack_key(pk, key) || msgpack_pack_uint64(pk, v) ? -1 : 0;
}

int mp_pack_kv_i64(msgpack_packer *pk, const char *key, int64_t v)
{
    return mp_pack_key(pk, key) || msgpack_pack_int64(pk, v) ? -1 : 0;
}

int mp_pack_kv_double(msgpack_packer *pk, const char *key, double v)
{
    return mp_pack_key(pk, key) || msgpack_pack_double(pk, v) ? -1 : 0;
}

int mp_pack_kv_bool(msgpack_packer *pk, const char *key, int v)
{
    if (mp_pack_key(pk, key))
        return -1;
    return (v ? msgpack_pack_true(pk) : msgpack_pack_false(pk)) ? -1 : 0;
}

int mp_pack_kv_nil(msgpack_packer *pk, const char *key)
{
    return mp_pack_key(pk, key) || msgpack_pack_nil(pk) ? -1 : 0;
}

int mp_pack_kv_strn(msgpack_packer *pk, const char *key, const char *s, size_t len)
{
    if (mp_pack_key(pk, key))
        return -1;
    if (!s)
        return msgpack_pack_nil(pk) ? -1 : 0;
    return mp_pack_strn(pk, s, len);
}

int mp_pack_kv_str(msgpack_packer *pk, const char *key, const char *s)
{
    return mp_pack_kv_strn(pk, key, s, s ? strlen(s) : 0);
}

int mp_pack_kv_bin(msgpack_packer *pk, const char *key, const void *p, size_t len)
{
    if (mp_pack_key(pk, key) || msgpack_pack_bin(pk, len))
        return -1;
    return len ? msgpack_pack_bin_body(pk, p, len) : 0;
}

size_t mp_size_str(size_t len)
{
    return len + (len < 32 ? 1 : len < 256 ? 2 : len < 65536 ? 3 : 5);
}

size_t mp_size_bin(size_t len)
{
    return len + (len < 256 ? 2 : len < 65536 ? 3 : 5);
}

size_t mp_size_uint(uint64_t v)
{
    return v < 128 ? 1 : v < 256 ? 2 : v < 65536 ? 3 : v <= 0xffffffffu ? 5 : 9;
}

size_t mp_size_map(size_t n)
{
    return n < 16 ? 1 : n < 65536 ? 3 : 5;
}

/* ---- header parsing ----------------------------------------------------------------------- */

static uint16_t be16(const unsigned char *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint64_t be64(const unsigned char *p) { return (uint64_t)be32(p) << 32 | be32(p + 4); }

/* One value's header: hlen bytes of header (scalar values and the ext type byte included),
 * then plen payload bytes (str/bin/ext), or count child values (array: n, map: 2n). */
struct mp_hdr {
    enum mp_type type;
    size_t hlen;
    uint64_t plen;
    uint64_t count;
    uint32_t n;
};

/* Parses the header at p with avail bytes available. Returns 0, or -1 with *why. Payload
 * and child counts are not checked here. */
static int mp_hdr(const unsigned char *p, size_t avail, struct mp_hdr *h, const char **why)
{
    static const unsigned char need[32] = {
        /* c0 */ 1, 1, 1, 1, 2, 3, 5, 3, 4, 6, 5, 9, 2, 3, 5, 9,
        /* d0 */ 2, 3, 5, 9, 2, 2, 2, 2, 2, 2, 3, 5, 3, 5, 3, 5,
    };
    if (avail == 0) {
        *why = "truncated: value expected";
        return -1;
    }
    unsigned b = p[0];
    memset(h, 0, sizeof *h);
    h->hlen = 1;
    if (b <= 0x7f) { h->type = MP_UINT; return 0; }
    if (b >= 0xe0) { h->type = MP_INT; return 0; }
    if (b <= 0x8f) { h->type = MP_MAP; h->n = b & 0x0f; h->count = 2u * h->n; return 0; }
    if (b <= 0x9f) { h->type = MP_ARRAY; h->n = b & 0x0f; h->count = h->n; return 0; }
    if (b <= 0xbf) { h->type = MP_STR; h->plen = b & 0x1f; return 0; }
    if (b == 0xc1) {
        *why = "invalid byte 0xc1";
        return -1;
    }
    h->hlen = need[b - 0xc0];
    if (avail < h->hlen) {
        *why = "truncated: header";
        return -1;
    }
    const unsigned char *q = p + 1;
    switch (b) {
    case 0xc0: h->type = MP_NIL; break;
    case 0xc2: case 0xc3: h->type = MP_BOOL; break;
    case 0xc4: h->type = MP_BIN; h->plen = q[0]; break;
    case 0xc5: h->type = MP_BIN; h->plen = be16(q); break;
    case 0xc6: h->type = MP_BIN; h->plen = be32(q); break;
    case 0xc7: h->type = MP_EXT; h->plen = q[0]; break;
    case 0xc8: h->type = MP_EXT; h->plen = be16(q); break;
    case 0xc9: h->type = MP_EXT; h->plen = be32(q); break;
    case 0xca: case 0xcb: h->type = MP_FLOAT; break;
    case 0xcc: case 0xcd: case 0xce: case 0xcf: h->type = MP_UINT; break;
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: h->type = MP_INT; break;
    case 0xd4: h->type = MP_EXT; h->plen = 1; break;
    case 0xd5: h->type = MP_EXT; h->plen = 2; break;
    case 0xd6: h->type = MP_EXT; h->plen = 4; break;
    case 0xd7: h->type = MP_EXT; h->plen = 8; break;
    case 0xd8: h->type = MP_EXT; h->plen = 16; break;
    case 0xd9: h->type = MP_STR; h->plen = q[0]; break;
    case 0xda: h->type = MP_STR; h->plen = be16(q); break;
    case 0xdb: h->type = MP_STR; h->plen = be32(q); break;
    case 0xdc: h->type = MP_ARRAY; h->n = be16(q); h->count = h->n; break;
    case 0xdd: h->type = MP_ARRAY; h->n = be32(q); h->count = h->n; break;
    case 0xde: h->type = MP_MAP; h->n = be16(q); h->count = 2ull * h->n; break;
    case 0xdf: h->type = MP_MAP; h->n = be32(q); h->count = 2ull * h->n; break;
    default: *why = "invalid type byte"; return -1;
    }
    return 0;
}

#define MP_DEPTH_CAP 64

int mp_validate(const void *buf, size_t len, int max_depth, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    *why = NULL;
    if (!buf || len == 0) {
        *why = "empty frame";
        return -1;
    }
    if (max_depth > MP_DEPTH_CAP)
        max_depth = MP_DEPTH_CAP;
    if (max_depth < 0)
        max_depth = 0;
    /* left[d]: values still to read at nesting level d (level 0 holds the one top value) */
    uint64_t left[MP_DEPTH_CAP + 1];
    int level = 0;
    left[0] = 1;
    const unsigned char *p = buf, *end = p + len;
    while (level >= 0) {
        if (left[level] == 0) {
            level--;
            continue;
        }
        left[level]--;
        struct mp_hdr h;
        if (mp_hdr(p, (size_t)(end - p), &h, why) != 0)
            return -1;
        p += h.hlen;
        size_t rest = (size_t)(end - p);
        if (h.type == MP_ARRAY || h.type == MP_MAP) {
            /* every child takes at least one byte */
            if (h.count > rest) {
                *why = h.type == MP_MAP ? "map count exceeds the bytes that remain"
                                        : "array count exceeds the bytes that remain";
                return -1;
            }
            if (h.count == 0)
                continue;
            if (level + 1 > max_depth) {
                *why = "nesting too deep";
                return -1;
            }
            left[++level] = h.count;
        } else {
            uint64_t need = h.plen;
            if (need > rest) {
                *why = h.type == MP_STR ? "str length exceeds the bytes that remain"
                     : h.type == MP_BIN ? "bin length exceeds the bytes that remain"
                                        : "ext length exceeds the bytes that remain";
                return -1;
            }
            p += need;
        }
    }
    if (p != end) {
        *why = "trailing bytes after the value";
        return -1;
    }
    return 0;
}

/* ---- reading validated bytes --------------------------------------------------------------- */

/* Skips one value (and its children) in validated bytes. */
static const char *mp_skip(const char *p)
{
    uint64_t pending = 1;
    const char *why;
    while (pending) {
        struct mp_hdr h;
        /* validated: the header is complete, so a generous avail is safe */
        (void)mp_hdr((const unsigned char *)p, 16, &h, &why);
        pending--;
        p += h.hlen;
        if (h.type == MP_ARRAY || h.type == MP_MAP)
            pending += h.count;
        else
            p += h.plen;
    }
    return p;
}

void mp_obj_decode(const char *p, struct mp_obj *o)
{
    const unsigned char *u = (const unsigned char *)p;
    struct mp_hdr h;
    const char *why;
    (void)mp_hdr(u, 16, &h, &why);
    memset(o, 0, sizeof *o);
    o->type = h.type;
    unsigned b = u[0];
    const unsigned char *q = u + 1;
    switch (h.type) {
    case MP_NIL:
        break;
    case MP_BOOL:
        o->v.b = b == 0xc3;
        break;
    case MP_UINT:
        o->v.u = b <= 0x7f ? b : b == 0xcc ? q[0] : b == 0xcd ? be16(q) : b == 0xce ? be32(q) : be64(q);
        break;
    case MP_INT:
        if (b >= 0xe0)
            o->v.i = (int8_t)b;
        else if (b == 0xd0)
            o->v.i = (int8_t)q[0];
        else if (b == 0xd1)
            o->v.i = (int16_t)be16(q);
        else if (b == 0xd2)
            o->v.i = (int32_t)be32(q);
        else
            o->v.i = (int64_t)be64(q);
        /* a signed encoding of a non-negative value is an unsigned integer to callers */
        if (o->v.i >= 0) {
            o->type = MP_UINT;
            o->v.u = (uint64_t)o->v.i;
        }
        break;
    case MP_FLOAT:
        if (b == 0xca) {
            uint32_t bits = be32(q);
            float f;
            memcpy(&f, &bits, 4);
            o->v.f = f;
        } else {
            uint64_t bits = be64(q);
            memcpy(&o->v.f, &bits, 8);
        }
        break;
    case MP_STR:
    case MP_BIN:
        o->ptr = p + h.hlen;
        o->len = (size_t)h.plen;
        break;
    case MP_EXT:
        o->ext_type = (int8_t)u[h.hlen - 1];
        o->ptr = p + h.hlen;
        o->len = (size_t)h.plen;
        break;
    case MP_ARRAY:
    case MP_MAP:
        o->n = h.n;
        o->ptr = p + h.hlen;
        break;
    }
    o->end = mp_skip(p);
}

int mp_map_from_obj(struct mp_map *m, const struct mp_obj *o)
{
    if (o->type != MP_MAP)
        return -1;
    m->first = o->ptr;
    m->end = o->end;
    m->n = o->n;
    return 0;
}

int mp_map_open(struct mp_map *m, const void *buf, size_t len, int max_depth, const char **why)
{
    const char *dummy;
    if (!why)
        why = &dummy;
    memset(m, 0, sizeof *m);
    if (mp_validate(buf, len, max_depth, why) != 0)
        return -1;
    struct mp_obj o;
    mp_obj_decode(buf, &o);
    if (mp_map_from_obj(m, &o) != 0) {
        *why = "top-level value is not a map";
        return -1;
    }
    return 0;
}

int mp_get_obj(const struct mp_map *m, const char *key, struct mp_obj *out)
{
    size_t klen = strlen(key);
    const char *p = m->first;
    for (uint32_t i = 0; i < m->n; i++) {
        const unsigned char *u = (const unsigned char *)p;
        struct mp_hdr h;
        const char *why;
        (void)mp_hdr(u, 16, &h, &why);
        if (h.type == MP_STR && h.plen == klen && memcmp(p + h.hlen, key, klen) == 0) {
            mp_obj_decode(p + h.hlen + klen, out);
            return MP_OK;
        }
        p = mp_skip(mp_skip(p));
    }
    return MP_MISSING;
}

int mp_get_u64(const struct mp_map *m, const char *key, uint64_t *out)
{
    struct mp_obj o;
    int rc = mp_get_obj(m, key, &o);
    if (rc != MP_OK)
        return rc;
    if (o.type != MP_UINT)
        return MP_WRONG_TYPE;
    *out = o.v.u;
    return MP_OK;
}

int mp_get_i64(const struct mp_map *m, const char *key, int64_t *out)
{
    struct mp_obj o;
    int rc = mp_get_obj(m, key, &o);
    if (rc != MP_OK)
        return rc;
    if (o.type == MP_INT) {
        *out = o.v.i;
        return MP_OK;
    }
    if (o.type == MP_UINT && o.v.u <= (uint64_t)INT64_MAX) {
        *out = (int64_t)o.v.u;
        return MP_OK;
    }
    return MP_WRONG_TYPE;
}

int mp_get_double(const struct mp_map *m, const char *key, double *out)
{
    struct mp_obj o;
    int rc = mp_get_obj(m, key, &o);
    if (rc != MP_OK)
        return rc;
    switch (o.type) {
    case MP_FLOAT: *out = o.v.f; return MP_OK;
    case MP_UINT: *out = (double)o.v.u; return MP_OK;
    case MP_INT: *out = (double)o.v.i; return MP_OK;
    default: return MP_WRONG_TYPE;
    }
}

int mp_get_bool(const struct mp_map *m, const char *key, int *out)
{
    struct mp_obj o;
    int rc = mp_get_obj(m, key, &o);
    if (rc != MP_OK)
        return rc;
    if (o.type != MP_BOOL)
        return MP_WRONG_TYPE;
    *out = o.v.b;
    return MP_OK;
}

int mp_get_str(const struct mp_map *m, const char *key, const char **p, size_t *len)
{
    struct mp_obj o;
    int rc = mp_get_obj(m, key, &o);
    if (rc != MP_OK)
        return rc;
    if (o.type != MP_STR)
        return MP_WRONG_TYPE;
    *p = o.ptr;
    *len = o.len;
    return MP_OK;
}

int mp_get_bin(const struct mp_map *m, const char *key, const void **p, size_t *len)
{
    struct mp_obj o;
    int rc = mp_get_obj(m, key, &o);
    if (rc != MP_OK)
        return rc;
    if (o.type != MP_BIN)
        return MP_WRONG_TYPE;
    *p = o.ptr;
    *len = o.len;
    return MP_OK;
}

int mp_get_map(const struct mp_map *m, const char *key, struct mp_map *out)
{
    struct mp_obj o;
    int rc = mp_get_obj(m, key, &o);
    if (rc != MP_OK)
        return rc;
    return mp_map_from_obj(out, &o) == 0 ? MP_OK : MP_WRONG_TYPE;
}

int mp_get_array(const struct mp_map *m, const char *key, struct mp_obj *out)
{
    int rc = mp_get_obj(m, key, out);
    if (rc != MP_OK)
        return rc;
    return out->type == MP_ARRAY ? MP_OK : MP_WRONG_TYPE;
}

int mp_iter_init(struct mp_iter *it, const struct mp_obj *o)
{
    if (o->type != MP_ARRAY && o->type != MP_MAP)
        return -1;
    it->p = o->ptr;
    it->left = o->type == MP_MAP ? 2 * (uint64_t)o->n : o->n;
    return 0;
}

int mp_iter_next(struct mp_iter *it, struct mp_obj *out)
{
    if (it->left == 0)
        return 0;
    mp_obj_decode(it->p, out);
    it->p = out->end;
    it->left--;
    return 1;
}

const char *mp_type_name(enum mp_type t)
{
    switch (t) {
    case MP_NIL: return "nil";
    case MP_BOOL: return "bool";
    case MP_UINT: return "uint";
    case MP_INT: return "int";
    case MP_FLOAT: return "float";
    case MP_STR: return "str";
    case MP_BIN: return "bin";
    case MP_ARRAY: return "array";
    case MP_MAP: return "map";
    case MP_EXT: return "ext";
    }
    return "?";
}
