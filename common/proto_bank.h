/* The bankd wire protocol, version 1 (docs/protocol.md is the grammar; this is its codec).
 *
 * A request is one msgpack map {"v": 1, "op": <str>, "cid": <str>?, "seq": <uint>?, ...};
 * a reply is one map {"v": 1, "ok": <bool>, "seq": <uint> (echoed when the request had
 * one), ...} and on error "err": <code>, "msg": <text>. Vectors and index lists are bin
 * payloads of little-endian float32 / uint32, row-major.
 *
 * Decoders validate the whole frame first (mp_validate), check every field's type, and check
 * bin lengths are whole elements; shape checks that need the bank's dim (feat length equals
 * B x dim) are the server's. Decoded bins point into the frame and may be unaligned:
 * read them with memcpy (or through proto_bank_u32/f32), never by casting. Unknown keys are
 * ignored.
 *
 * Encoders write through a msgpack_packer. Replies carrying bank rows (sample, get) are
 * written into a caller-sized struct mp_fixbuf (for bankd: the data of a zmq_msg_t) and
 * hand back pointers where the caller gathers rows in place, so rows are copied once. */
#ifndef NPID_PROTO_BANK_H
#define NPID_PROTO_BANK_H

#include "common/mp.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define BANK_PROTO_VERSION 1

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the bank protocol carries little-endian payloads; add byte swapping for this target"
#endif

enum bank_op {
    BANK_OP_NONE = 0, BANK_OP_INIT, BANK_OP_INFO, BANK_OP_SAMPLE, BANK_OP_UPDATE, BANK_OP_SET,
    BANK_OP_GET, BANK_OP_SNAPSHOT, BANK_OP_STATS, BANK_OP_RESTORE
};
/* "init", "info", ...; NULL for BANK_OP_NONE. */
const char *proto_bank_op_name(enum bank_op op);

/* Error codes carried in "err". */
#define BANK_EPROTO    "EPROTO"    /* malformed frame, wrong field types */
#define BANK_EVERSION  "EVERSION"  /* "v" is not 1 */
#define BANK_EINVAL    "EINVAL"    /* unknown op, bad values (non-finite, subnormal, zero norm,
                                      bad bin length, bad snapshot name) */
#define BANK_ERANGE    "ERANGE"    /* index or size out of range */
#define BANK_ENOBANK   "ENOBANK"   /* no bank yet: send init */
#define BANK_EMISMATCH "EMISMATCH" /* init with another shape, run or manifest */
#define BANK_ENOSPC    "ENOSPC"    /* snapshot could not be written: disk full */
#define BANK_EIO       "EIO"       /* snapshot could not be written: other error */
#define BANK_ENOMEM    "ENOMEM"    /* the bank exceeds --max-bytes or could not be allocated */
#define BANK_ENOSNAP   "ENOSNAP"   /* restore: no valid snapshot of that name holds that step */
#define BANK_EMSGSIZE  "EMSGSIZE"  /* the request frame is larger than --max-frame */
#define BANK_EPERM     "EPERM"     /* a write without the bank's token (or with another) */
#define BANK_EBUSY     "EBUSY"     /* client side: a request is outstanding */
#define BANK_ETIMEDOUT "ETIMEDOUT" /* client side: no reply after all retries */

/* An error: a code above and a human-readable message. */
struct bank_err {
    char code[16];
    char msg[240];
};
/* Fills e (printf-style message); returns -1 for `return bank_err_set(...)`. */
int bank_err_set(struct bank_err *e, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Reads element i of an unaligned little-endian payload. */
static inline uint32_t proto_bank_u32(const void *p, size_t i)
{
    uint32_t v;
    memcpy(&v, (const char *)p + 4 * i, 4);
    return v;
}
static inline float proto_bank_f32(const void *p, size_t i)
{
    float v;
    memcpy(&v, (const char *)p + 4 * i, 4);
    return v;
}

/* ---- requests ---------------------------------------------------------------------------- */

/* Write token: "token" str of BANK_TOKEN_MIN..BANK_TOKEN_MAX bytes (a shorter or longer one
 * is EINVAL). A bank created by an init with a token takes the writing ops (init of the
 * existing bank, update, set, snapshot, restore) only with the same token (else EPERM);
 * readers need none. The codec carries the token in the header of any request; encoders
 * write it when h->token is set. Never log or echo it. */
#define BANK_TOKEN_MIN 16
#define BANK_TOKEN_MAX 256

/* Fields common to every request. cid and token point into the frame (not NUL-terminated). */
struct bank_hdr {
    enum bank_op op;
    const char *cid;
    size_t cid_len;
    uint64_t seq;
    int has_seq;
    const char *token;        /* NULL: absent */
    size_t token_len;
};

enum bank_init_mode { BANK_INIT_UNIFORM = 0, BANK_INIT_UNIT = 1 };

/* init: rows > 0, dim > 0 (<= BANK_MAX_DIM); seed, run (default ""), manifest (default nil),
 * "init": "uniform" (each coordinate uniform in [-s, s], s = 1/sqrt(dim/3); the reference)
 * or "unit" (random unit vectors). run and manifest must be valid UTF-8 without NUL bytes
 * (EINVAL): they are stored in the bank and echoed by info. The header's token, if any,
 * becomes the token of the bank this init creates (or of a held bank that has none). */
#define BANK_MAX_DIM 65536u

/* Sharding by row range: shard i of N (0 <= i < N <= BANK_MAX_SHARDS) owns the global rows
 * [proto_bank_shard_start(n, i, N), proto_bank_shard_start(n, i + 1, N)) of an n-row bank
 * (n < 2^32), i.e. [floor(i n / N), floor((i + 1) n / N)) computed in 64 bits. */
#define BANK_MAX_SHARDS 65536u
static inline uint64_t proto_bank_shard_start(uint64_t n, uint64_t i, uint64_t shards)
{
    return i * n / shards;
}
struct bank_init_req {
    uint64_t rows, dim, seed;
    const char *run;          /* may be NULL when absent */
    size_t run_len;
    const char *manifest;     /* NULL: nil / absent */
    size_t manifest_len;
    enum bank_init_mode mode;
};

/* sample: k negatives (> 0) uniform with replacement over the rows; with exclude_pos, never
 * one of the B positives. pos: u32 x B (B may be 0).
 * With neg_idx (has_neg_idx; u32 x k, k > 0) the server draws nothing and returns exactly
 * those rows in that order; "k" is then optional on the wire (when both are sent they must
 * agree, else EINVAL; the decoder sets k to the neg_idx count) and exclude_pos is ignored. */
struct bank_sample_req {
    uint64_t k;
    const void *pos;          /* u32 x npos, unaligned */
    size_t npos;
    int exclude_pos;
    const void *neg_idx;      /* u32 x k, unaligned; meaningful when has_neg_idx */
    int has_neg_idx;
};

/* update: v <- normalize(momentum v + (1 - momentum) f) per row, momentum in [0, 1].
 * set: v <- normalize(f). idx: u32 x B; feat: f32 x (feat_len / 4), must be B x dim. */
struct bank_update_req {
    const void *idx;
    size_t nidx;
    const void *feat;
    size_t nfeat;             /* float count */
    double momentum;          /* update only */
};

/* get: rows [start, start + count). */
struct bank_get_req {
    uint64_t start, count;
};

/* Snapshot names: 1..BANK_SNAP_NAME_MAX characters of [A-Za-z0-9_-], the first a letter or
 * a digit (the file is DIR/bank-<name>.snap; no name is "." or "..", starts like an option
 * or holds a dot that would make file names ambiguous). */
#define BANK_SNAP_NAME_MAX 64
/* 1 when name (len bytes) is a valid snapshot name. */
int proto_bank_name_ok(const char *name, size_t len);

/* Writes len bytes of untrusted s (a name, an id, an op from a request) to out as text that
 * is valid UTF-8 and safe in a log line: printable ASCII (0x20..0x7e) as is, every other
 * byte as \xNN. Always NUL-terminates (cap > 0); when out is too small the text ends at the
 * last whole character that fits. Returns out, for use as a printf argument. */
char *proto_bank_escape(char *out, size_t cap, const void *s, size_t len);
/* Room for the escape of n bytes, NUL included. */
#define PROTO_BANK_ESCAPED(n) (4 * (n) + 1)

/* snapshot: name NULL (absent): the daemon's own DIR/bank.snap; else DIR/bank-<name>.snap. */
struct bank_snapshot_req {
    const char *name;         /* points into the frame, not NUL-terminated */
    size_t name_len;
};

/* restore: replace the bank with DIR/bank-<name>.snap or its .prev, whichever holds step. */
struct bank_restore_req {
    const char *name;
    size_t name_len;
    uint64_t step;
};

struct bank_req {
    struct bank_hdr h;
    union {
        struct bank_init_req init;
        struct bank_sample_req sample;
        struct bank_update_req update;  /* update and set */
        struct bank_get_req get;
        struct bank_snapshot_req snapshot;
        struct bank_restore_req restore;
    } u;
};

/* Decodes a request frame. Returns 0, or -1 with e filled (EPROTO, EVERSION, EINVAL for an
 * unknown op); on failure req->h still holds the seq when it could be read, for the reply. */
int proto_bank_decode_req(const void *buf, size_t len, struct bank_req *req, struct bank_err *e);

/* Request encoders: one map; h supplies op-independent fields (cid may be NULL, seq is
 * written when has_seq). Return 0 or -1 (packer write failure). */
int proto_bank_encode_init_req(msgpack_packer *pk, const struct bank_hdr *h,
                               const struct bank_init_req *r);
int proto_bank_encode_info_req(msgpack_packer *pk, const struct bank_hdr *h);
int proto_bank_encode_sample_req(msgpack_packer *pk, const struct bank_hdr *h,
                                 const struct bank_sample_req *r);
int proto_bank_encode_update_req(msgpack_packer *pk, const struct bank_hdr *h,
                                 const struct bank_update_req *r);
int proto_bank_encode_set_req(msgpack_packer *pk, const struct bank_hdr *h,
                              const struct bank_update_req *r);
int proto_bank_encode_get_req(msgpack_packer *pk, const struct bank_hdr *h,
                              const struct bank_get_req *r);
int proto_bank_encode_snapshot_req(msgpack_packer *pk, const struct bank_hdr *h);
/* snapshot with a name (r->name NULL: same as proto_bank_encode_snapshot_req). */
int proto_bank_encode_snapshot_named_req(msgpack_packer *pk, const struct bank_hdr *h,
                                         const struct bank_snapshot_req *r);
int proto_bank_encode_restore_req(msgpack_packer *pk, const struct bank_hdr *h,
                                  const struct bank_restore_req *r);
int proto_bank_encode_stats_req(msgpack_packer *pk, const struct bank_hdr *h);

/* ---- replies ----------------------------------------------------------------------------- */

/* Reply header input for encoders: the request's seq to echo. */
struct bank_rep_hdr {
    uint64_t seq;
    int has_seq;
};

struct bank_init_rep {
    uint64_t rows, dim, step;
    int created;
};

struct bank_info_rep {
    uint64_t rows, dim, step; /* rows: the whole bank's (global) row count, also on a shard */
    const char *run;          /* points into the frame / the bank; NULL when absent */
    size_t run_len;
    const char *manifest;     /* NULL: nil */
    size_t manifest_len;
    int has_token;            /* writes need the bank's token (absent in older replies: 0) */
    /* shard i of N holding the global rows [shard_start, shard_end): encoded only when
       shards > 1; decoded as 0, 1, 0, rows when absent (0 shards encodes as 1) */
    uint64_t shard, shards, shard_start, shard_end;
};

/* sample reply: neg_idx u32 x k, neg f32 k x dim, pos f32 B x dim; step at sampling time. */
struct bank_sample_rep {
    uint64_t step;
    const void *neg_idx;
    size_t k;
    const void *neg;
    size_t nneg;              /* float count: k x dim */
    const void *pos;
    size_t npos;              /* float count: B x dim */
};

struct bank_step_rep {        /* update, set and restore */
    uint64_t step;
};

struct bank_get_rep {
    uint64_t start;
    const void *rows;         /* f32 x nrows_f */
    size_t nrows_f;           /* float count: count x dim */
};

struct bank_snapshot_rep {
    const char *path;
    size_t path_len;
    uint64_t step;
};

/* Staleness histogram buckets: bucket 0 counts rows written in the current step
 * (staleness 0), bucket b >= 1 staleness in [2^(b-1), 2^b); the last bucket is open. */
#define BANK_STALE_BUCKETS 24
struct bank_stats_rep {
    uint64_t rows, dim, step;
    double norm_min, norm_mean, norm_max;
    uint64_t writes;          /* row writes applied since the bank was created */
    uint64_t rows_written;    /* rows written at least once */
    uint64_t upd_min, upd_max;   /* per-row write counts */
    double stale_mean;
    uint64_t stale_max;
    uint64_t stale_hist[BANK_STALE_BUCKETS];
    uint64_t snapshot_step;   /* step of the newest snapshot written or loaded (0: none) */
    uint64_t requests, errors, cache_hits;
};

union bank_rep_u {
    struct bank_init_rep init;
    struct bank_info_rep info;
    struct bank_sample_rep sample;
    struct bank_step_rep step;
    struct bank_get_rep get;
    struct bank_snapshot_rep snapshot;
    struct bank_stats_rep stats;
};

/* Reply encoders (ok replies). */
int proto_bank_encode_err_rep(msgpack_packer *pk, const struct bank_rep_hdr *h,
                              const struct bank_err *e);
int proto_bank_encode_init_rep(msgpack_packer *pk, const struct bank_rep_hdr *h,
                               const struct bank_init_rep *r);
int proto_bank_encode_info_rep(msgpack_packer *pk, const struct bank_rep_hdr *h,
                               const struct bank_info_rep *r);
int proto_bank_encode_step_rep(msgpack_packer *pk, const struct bank_rep_hdr *h,
                               const struct bank_step_rep *r);
int proto_bank_encode_snapshot_rep(msgpack_packer *pk, const struct bank_rep_hdr *h,
                                   const struct bank_snapshot_rep *r);
int proto_bank_encode_stats_rep(msgpack_packer *pk, const struct bank_rep_hdr *h,
                                const struct bank_stats_rep *r);

/* Exact size of a sample reply with k negatives, npos positives, dim floats per row. */
size_t proto_bank_sample_rep_size(const struct bank_rep_hdr *h, uint64_t step, size_t k,
                                  size_t npos, size_t dim);
/* Writes a sample reply's framing into fb (sized with proto_bank_sample_rep_size) and sets
 * *neg_idx (k u32), *neg (k x dim f32) and *pos (npos x dim f32) to the payload areas for
 * the caller to fill (unaligned: write with memcpy). Returns 0 or -1 (fb too small). */
int proto_bank_encode_sample_rep(struct mp_fixbuf *fb, const struct bank_rep_hdr *h,
                                 uint64_t step, size_t k, size_t npos, size_t dim,
                                 void **neg_idx, void **neg, void **pos);
size_t proto_bank_get_rep_size(const struct bank_rep_hdr *h, uint64_t start, size_t nfloats);
/* As above for get: *rows receives the nfloats x f32 area. */
int proto_bank_encode_get_rep(struct mp_fixbuf *fb, const struct bank_rep_hdr *h,
                              uint64_t start, size_t nfloats, void **rows);

/* Decodes a reply to a request of type op. Returns 0 (ok reply, r filled; pointers into the
 * frame), or -1 with e filled: the server's "err"/"msg" when ok is false, else EPROTO or
 * EVERSION for a reply that does not follow the protocol. */
int proto_bank_decode_rep(const void *buf, size_t len, enum bank_op op, union bank_rep_u *r,
                          struct bank_err *e);

#endif
