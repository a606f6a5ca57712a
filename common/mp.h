/* msgpack helpers: packing through msgpack-c's msgpack_packer, and strict zero-copy decoding.
 *
 * Encoding: use a msgpack_packer over a msgpack_sbuffer (growing; msgpack_sbuffer_write) or
 * over a struct mp_fixbuf (a caller-provided buffer such as the data of a zmq_msg_t, never
 * reallocated; mp_fixbuf_write). The mp_pack_kv_* helpers write one "key": value pair of a
 * map whose header the caller packed with msgpack_pack_map(pk, n). All return 0 or -1 (the
 * packer's write callback failed, e.g. a full mp_fixbuf).
 *
 *   struct mp_fixbuf fb; msgpack_packer pk;
 *   mp_fixbuf_init(&fb, zmq_msg_data(&m), zmq_msg_size(&m));
 *   msgpack_packer_init(&pk, &fb, mp_fixbuf_write);
 *   msgpack_pack_map(&pk, 3);
 *   mp_pack_kv_u64(&pk, "v", 1);
 *   mp_pack_kv_bool(&pk, "ok", 1);
 *   mp_pack_key(&pk, "rows"); msgpack_pack_bin(&pk, n);
 *   float *dst = mp_fixbuf_reserve(&fb, n);   // fill in place: no intermediate copy
 *
 * Decoding: untrusted bytes are first walked by mp_validate, which checks every count and
 * length against the bytes that remain, so nothing is allocated or read out of bounds on
 * account of a lying header. A validated top-level map is then read in place with
 * mp_map_open and the typed getters: strings and bins are returned as pointers into the
 * frame (valid while the frame is), nothing is allocated. Unknown keys are ignored; when a
 * key occurs twice the first occurrence is used.
 *
 * Getter results: MP_OK (0), MP_MISSING (-1: no such key), MP_WRONG_TYPE (-2: present but of
 * another type or out of the target's range), so callers can say
 * "EPROTO: field 'k' must be uint". Integers: mp_get_u64 accepts any msgpack integer >= 0,
 * mp_get_i64 any integer in int64 range; mp_get_double accepts float32, float64 and integers.
 * A nil value is MP_WRONG_TYPE for every getter except mp_get_obj (type MP_NIL). */
#ifndef NPID_MP_H
#define NPID_MP_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

enum { MP_OK = 0, MP_MISSING = -1, MP_WRONG_TYPE = -2 };

/* Default nesting limit for frames on npid sockets (a top-level map is depth 1). */
#define MP_MAX_DEPTH 16

/* ---- encoding ---------------------------------------------------------------------------- */

/* A fixed, caller-owned output buffer for msgpack_packer. Writes past cap fail (the packer
 * call returns -1) and set overflow; len never exceeds cap. */
struct mp_fixbuf {
    char *data;
    size_t len;
    size_t cap;
    int overflow;
};

void mp_fixbuf_init(struct mp_fixbuf *fb, void *mem, size_t cap);
/* msgpack_packer_write callback; data is a struct mp_fixbuf *. */
int mp_fixbuf_write(void *data, const char *buf, size_t len);
/* Claims the next n bytes of the buffer for the caller to fill (after msgpack_pack_bin or
 * msgpack_pack_str put the header); NULL and overflow set when fewer than n remain. */
void *mp_fixbuf_reserve(struct mp_fixbuf *fb, size_t n);

/* Packs a NUL-terminated string as a msgpack str (used for keys). */
int mp_pack_key(msgpack_packer *pk, const char *key);
int mp_pack_strn(msgpack_packer *pk, const char *s, size_t len);
int mp_pack_kv_u64(msgpack_packer *pk, const char *key, uint64_t v);
int mp_pack_kv_i64(msgpack_packer *pk, const char *key, int64_t v);
int mp_pack_kv_double(msgpack_packer *pk, const char *key, double v);
int mp_pack_kv_bool(msgpack_packer *pk, const char *key, int v);
int mp_pack_kv_nil(msgpack_packer *pk, const char *key);
/* s may be NULL: packs nil. */
int mp_pack_kv_str(msgpack_packer *pk, const char *key, const char *s);
int mp_pack_kv_strn(msgpack_packer *pk, const char *key, const char *s, size_t len);
int mp_pack_kv_bin(msgpack_packer *pk, const char *key, const void *p, size_t len);

/* Exact encoded sizes, for sizing a zmq_msg_t before packing into it. */
size_t mp_size_str(size_t len);    /* header + len */
size_t mp_size_bin(size_t len);    /* header + len */
size_t mp_size_uint(uint64_t v);
size_t mp_size_map(size_t n);      /* map header only */

/* ---- strict decoding ----------------------------------------------------------------------- */

/* Checks that buf[0..len) is exactly one well-formed msgpack object: every str/bin/ext length
 * and array/map count fits in the bytes that remain, no 0xc1 byte in type position, nesting
 * no deeper than max_depth (a scalar is depth 0, a map of scalars depth 1), no trailing
 * bytes, not empty. Returns 0, or -1 with *why (static text) set. why may be NULL. */
int mp_validate(const void *buf, size_t len, int max_depth, const char **why);

enum mp_type {
    MP_NIL = 1, MP_BOOL, MP_UINT, MP_INT /* negative */, MP_FLOAT, MP_STR, MP_BIN,
    MP_ARRAY, MP_MAP, MP_EXT
};

/* A decoded value pointing into a validated buffer. For MP_UINT u holds the value, for
 * MP_INT i, for MP_FLOAT f (float32 widened), for MP_BOOL b. For MP_STR/MP_BIN/MP_EXT, ptr
 * and len give the payload (ext: ext_type holds the type byte). For MP_ARRAY/MP_MAP, n is
 * the element / pair count and ptr the first byte after the header. */
struct mp_obj {
    enum mp_type type;
    union { uint64_t u; int64_t i; double f; int b; } v;
    const char *ptr;
    size_t len;
    uint32_t n;
    int8_t ext_type;
    const char *end;   /* first byte after the whole value */
};

/* A map read in place. */
struct mp_map {
    const char *first;  /* first key */
    const char *end;
    uint32_t n;         /* number of pairs */
};

/* Validates buf (mp_validate with max_depth) and opens its top-level value, which must be a
 * map. Returns 0, or -1 with *why set ("not a map", or mp_validate's reason). */
int mp_map_open(struct mp_map *m, const void *buf, size_t len, int max_depth, const char **why);
/* Opens a map value found inside a validated buffer (o->type must be MP_MAP); 0 or -1. */
int mp_map_from_obj(struct mp_map *m, const struct mp_obj *o);

/* Finds key (str key equal to the NUL-terminated key) and decodes its value. */
int mp_get_obj(const struct mp_map *m, const char *key, struct mp_obj *out);
int mp_get_u64(const struct mp_map *m, const char *key, uint64_t *out);
int mp_get_i64(const struct mp_map *m, const char *key, int64_t *out);
int mp_get_double(const struct mp_map *m, const char *key, double *out);
int mp_get_bool(const struct mp_map *m, const char *key, int *out);
int mp_get_str(const struct mp_map *m, const char *key, const char **p, size_t *len);
int mp_get_bin(const struct mp_map *m, const char *key, const void **p, size_t *len);
int mp_get_map(const struct mp_map *m, const char *key, struct mp_map *out);
/* An array value: out->n elements; read them with mp_iter_*. */
int mp_get_array(const struct mp_map *m, const char *key, struct mp_obj *out);

/* Sequential reading of the elements of an array, or of the keys and values of a map
 * (key, value, key, value, ...), inside a validated buffer. */
struct mp_iter {
    const char *p;
    uint64_t left;
};
/* o must be MP_ARRAY or MP_MAP; returns 0 or -1. */
int mp_iter_init(struct mp_iter *it, const struct mp_obj *o);
/* Decodes the next element; returns 1 when one was read, 0 at the end. */
int mp_iter_next(struct mp_iter *it, struct mp_obj *out);

/* Decodes one value starting at p (inside a validated buffer). */
void mp_obj_decode(const char *p, struct mp_obj *out);
/* Name of a type for messages: "uint", "int", "float", "str", ... */
const char *mp_type_name(enum mp_type t);

#endif
