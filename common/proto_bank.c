/* The bankd wire protocol codec: see proto_bank.h and docs/protocol.md. */
#include "common/proto_bank.h"

#include <stdarg.h>
#include <stdio.h>

static const char *const op_names[] = {
    [BANK_OP_INIT] = "init", [BANK_OP_INFO] = "info", [BANK_OP_SAMPLE] = "sample",
    [BANK_OP_UPDATE] = "update", [BANK_OP_SET] = "set", [BANK_OP_GET] = "get",
    [BANK_OP_SNAPSHOT] = "snapshot", [BANK_OP_STATS] = "stats", [BANK_OP_RESTORE] = "restore",
};
#define OP_COUNT (sizeof op_names / sizeof op_names[0])

const char *proto_bank_op_name(enum bank_op op)
{
    return (op > BANK_OP_NONE && (size_t)op < OP_COUNT) ? op_names[op] : NULL;
}

int bank_err_set(struct bank_err *e, const char *code, const char *fmt, ...)
{
    snprintf(e->code, sizeof e->code, "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- field readers with protocol errors ----------------------------------------------------- */

static int field_err(struct bank_err *e, const char *key, int rc, const char *want)
{
    if (rc == MP_MISSING)
        return bank_err_set(e, BANK_EPROTO, "field '%s' missing", key);
    return bank_err_set(e, BANK_EPROTO, "field '%s' must be %s", key, want);
}

static int need_u64(const struct mp_map *m, const char *key, uint64_t *out, struct bank_err *e)
{
    int rc = mp_get_u64(m, key, out);
    return rc == MP_OK ? 0 : field_err(e, key, rc, "uint");
}

static int opt_u64(const struct mp_map *m, const char *key, uint64_t *out, uint64_t def,
                   struct bank_err *e)
{
    int rc = mp_get_u64(m, key, out);
    if (rc == MP_MISSING) {
        *out = def;
        return 0;
    }
    return rc == MP_OK ? 0 : field_err(e, key, rc, "uint");
}

static int need_f64(const struct mp_map *m, const char *key, double *out, struct bank_err *e)
{
    int rc = mp_get_double(m, key, out);
    return rc == MP_OK ? 0 : field_err(e, key, rc, "a number");
}

static int need_bool(const struct mp_map *m, const char *key, int *out, struct bank_err *e)
{
    int rc = mp_get_bool(m, key, out);
    return rc == MP_OK ? 0 : field_err(e, key, rc, "bool");
}

/* A bool, or absent giving 0. */
static int opt_bool(const struct mp_map *m, const char *key, int *out, struct bank_err *e)
{
    *out = 0;
    int rc = mp_get_bool(m, key, out);
    if (rc == MP_MISSING) {
        *out = 0;
        return 0;
    }
    return rc == MP_OK ? 0 : field_err(e, key, rc, "bool");
}

/* A str, or (nullable) nil/absent giving NULL. */
static int opt_str(const struct mp_map *m, const char *key, const char **p, size_t *len,
                   int nullable, struct bank_err *e)
{
    struct mp_obj o;
    *p = NULL;
    *len = 0;
    int rc = mp_get_obj(m, key, &o);
    if (rc == MP_MISSING)
        return 0;
    if (o.type == MP_STR) {
        *p = o.ptr;
        *len = o.len;
        return 0;
    }
    if (o.type == MP_NIL && nullable)
        return 0;
    return field_err(e, key, MP_WRONG_TYPE, nullable ? "str or nil" : "str");
}

static int need_str(const struct mp_map *m, const char *key, const char **p, size_t *len,
                    struct bank_err *e)
{
    int rc = mp_get_str(m, key, p, len);
    return rc == MP_OK ? 0 : field_err(e, key, rc, "str");
}

/* A bin of whole 4-byte elements. */
static int need_bin4(const struct mp_map *m, const char *key, const void **p, size_t *n,
                     struct bank_err *e)
{
    size_t len;
    int rc = mp_get_bin(m, key, p, &len);
    if (rc != MP_OK)
        return field_err(e, key, rc, "bin");
    if (len % 4 != 0)
        return bank_err_set(e, BANK_EINVAL, "field '%s': bin length %zu is not a multiple of 4",
                            key, len);
    *n = len / 4;
    return 0;
}

/* A bin of whole 4-byte elements, or absent (*present 0). */
static int opt_bin4(const struct mp_map *m, const char *key, const void **p, size_t *n,
                    int *present, struct bank_err *e)
{
    struct mp_obj o;
    *present = 0;
    *p = NULL;
    *n = 0;
    if (mp_get_obj(m, key, &o) == MP_MISSING)
        return 0;
    if (need_bin4(m, key, p, n, e) != 0)
        return -1;
    *present = 1;
    return 0;
}

static int name_char_ok(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
}

int proto_bank_name_ok(const char *name, size_t len)
{
    if (!name || len == 0 || len > BANK_SNAP_NAME_MAX || name[0] == '_' || name[0] == '-')
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!name_char_ok(name[i]))
            return 0;
    return 1;
}

char *proto_bank_escape(char *out, size_t cap, const void *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = s;
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = p[i];
        int plain = c >= 0x20 && c < 0x7f;
        if (n + (plain ? 1 : 4) >= cap)
            break;
        if (plain) {
            out[n++] = (char)c;
        } else {
            out[n++] = '\\';
            out[n++] = 'x';
            out[n++] = hex[c >> 4];
            out[n++] = hex[c & 15];
        }
    }
    out[n] = 0;
    return out;
}

/* 1 when s (len bytes) is well-formed UTF-8 (no overlong forms, surrogates or code points
 * above U+10FFFF) without NUL bytes. */
static int utf8_ok(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        unsigned c = p[i];
        size_t n = c < 0x80 ? 0 : c >= 0xc2 && c < 0xe0 ? 1 : c >= 0xe0 && c < 0xf0 ? 2 :
                   c >= 0xf0 && c < 0xf5 ? 3 : 9;
        if (c == 0 || n == 9 || n > len - i - 1)
            return 0;
        unsigned lo = 0x80, hi = 0xbf; /* allowed range of the second byte */
        if (c == 0xe0)
            lo = 0xa0;
        else if (c == 0xed)
            hi = 0x9f;
        else if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f;
        for (size_t k = 1; k <= n; k++) {
            unsigned b = p[i + k];
            if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xbf))
                return 0;
        }
        i += n + 1;
    }
    return 1;
}

/* ---- requests ------------------------------------------------------------------------------ */

static int decode_init(const struct mp_map *m, struct bank_init_req *r, struct bank_err *e)
{
    const char *mode;
    size_t mode_len;
    if (need_u64(m, "rows", &r->rows, e) || need_u64(m, "dim", &r->dim, e) ||
        opt_u64(m, "seed", &r->seed, 0, e) ||
        opt_str(m, "run", &r->run, &r->run_len, 0, e) ||
        opt_str(m, "manifest", &r->manifest, &r->manifest_len, 1, e) ||
        opt_str(m, "init", &mode, &mode_len, 0, e))
        return -1;
    if (!utf8_ok(r->run, r->run_len) || !utf8_ok(r->manifest, r->manifest_len))
        return bank_err_set(e, BANK_EINVAL, "run and manifest must be UTF-8 without NUL bytes");
    if (r->rows == 0 || r->rows > UINT32_MAX)
        return bank_err_set(e, BANK_ERANGE, "rows must be in 1..%u", UINT32_MAX);
    if (r->dim == 0 || r->dim > BANK_MAX_DIM)
        return bank_err_set(e, BANK_ERANGE, "dim must be in 1..%u", BANK_MAX_DIM);
    r->mode = BANK_INIT_UNIFORM;
    if (mode && mode_len == 4 && !memcmp(mode, "unit", 4))
        r->mode = BANK_INIT_UNIT;
    else if (mode && !(mode_len == 7 && !memcmp(mode, "uniform", 7)))
        return bank_err_set(e, BANK_EINVAL, "init must be \"uniform\" or \"unit\"");
    return 0;
}

static int decode_sample(const struct mp_map *m, struct bank_sample_req *r, struct bank_err *e)
{
    int rc;
    size_t nneg;
    if (opt_bin4(m, "neg_idx", &r->neg_idx, &nneg, &r->has_neg_idx, e) ||
        need_bin4(m, "pos", &r->pos, &r->npos, e))
        return -1;
    if (r->has_neg_idx) {
        rc = mp_get_u64(m, "k", &r->k);
        if (rc == MP_WRONG_TYPE)
            return field_err(e, "k", rc, "uint");
        if (rc == MP_OK && r->k != nneg)
            return bank_err_set(e, BANK_EINVAL, "k = %llu but neg_idx holds %zu indices",
                                (unsigned long long)r->k, nneg);
        if (nneg == 0)
            return bank_err_set(e, BANK_EINVAL, "neg_idx must hold at least one index");
        r->k = nneg;
    } else if (need_u64(m, "k", &r->k, e)) {
        return -1;
    }
    r->exclude_pos = 0;
    rc = mp_get_bool(m, "exclude_pos", &r->exclude_pos);
    if (rc == MP_WRONG_TYPE)
        return field_err(e, "exclude_pos", rc, "bool");
    if (r->has_neg_idx)
        r->exclude_pos = 0;
    if (r->k == 0)
        return bank_err_set(e, BANK_EINVAL, "k must be > 0");
    return 0;
}

/* "name": a valid snapshot name (required, or optional giving NULL). */
static int decode_name(const struct mp_map *m, const char **name, size_t *len, int required,
                       struct bank_err *e)
{
    if ((required ? need_str(m, "name", name, len, e) : opt_str(m, "name", name, len, 0, e)) != 0)
        return -1;
    if (*name && !proto_bank_name_ok(*name, *len))
        return bank_err_set(e, BANK_EINVAL, "name must be 1..%d characters of [A-Za-z0-9_-] "
                            "starting with a letter or digit", BANK_SNAP_NAME_MAX);
    return 0;
}

static int decode_update(const struct mp_map *m, struct bank_update_req *r, int with_momentum,
                         struct bank_err *e)
{
    if (need_bin4(m, "idx", &r->idx, &r->nidx, e) || need_bin4(m, "feat", &r->feat, &r->nfeat, e))
        return -1;
    r->momentum = 0;
    if (with_momentum) {
        if (need_f64(m, "momentum", &r->momentum, e))
            return -1;
        if (!(r->momentum >= 0 && r->momentum <= 1))
            return bank_err_set(e, BANK_EINVAL, "momentum must be in [0, 1]");
    }
    return 0;
}

int proto_bank_decode_req(const void *buf, size_t len, struct bank_req *req, struct bank_err *e)
{
    struct mp_map m;
    const char *why;
    memset(req, 0, sizeof *req);
    if (mp_map_open(&m, buf, len, MP_MAX_DEPTH, &why) != 0)
        return bank_err_set(e, BANK_EPROTO, "malformed request: %s", why);
    int rc = mp_get_u64(&m, "seq", &req->h.seq);
    if (rc == MP_WRONG_TYPE)
        return field_err(e, "seq", rc, "uint");
    req->h.has_seq = rc == MP_OK;
    uint64_t v;
    rc = mp_get_u64(&m, "v", &v);
    if (rc == MP_MISSING)
        return field_err(e, "v", rc, "uint");
    if (rc != MP_OK || v != BANK_PROTO_VERSION)
        return bank_err_set(e, BANK_EVERSION, "protocol version not supported (bankd speaks v=%d)",
                            BANK_PROTO_VERSION);
    const char *op;
    size_t op_len;
    if (need_str(&m, "op", &op, &op_len, e) ||
        opt_str(&m, "cid", &req->h.cid, &req->h.cid_len, 0, e) ||
        opt_str(&m, "token", &req->h.token, &req->h.token_len, 0, e))
        return -1;
    /* the message never quotes the token */
    if (req->h.token && (req->h.token_len < BANK_TOKEN_MIN || req->h.token_len > BANK_TOKEN_MAX))
        return bank_err_set(e, BANK_EINVAL, "token must be %d..%d bytes", BANK_TOKEN_MIN,
                            BANK_TOKEN_MAX);
    for (size_t i = 1; i < OP_COUNT; i++)
        if (strlen(op_names[i]) == op_len && !memcmp(op_names[i], op, op_len))
            req->h.op = (enum bank_op)i;
    switch (req->h.op) {
    case BANK_OP_INIT: return decode_init(&m, &req->u.init, e);
    case BANK_OP_SAMPLE: return decode_sample(&m, &req->u.sample, e);
    case BANK_OP_UPDATE: return decode_update(&m, &req->u.update, 1, e);
    case BANK_OP_SET: return decode_update(&m, &req->u.update, 0, e);
    case BANK_OP_GET:
        return need_u64(&m, "start", &req->u.get.start, e) ||
               need_u64(&m, "count", &req->u.get.count, e) ? -1 : 0;
    case BANK_OP_SNAPSHOT:
        return decode_name(&m, &req->u.snapshot.name, &req->u.snapshot.name_len, 0, e);
    case BANK_OP_RESTORE:
        return decode_name(&m, &req->u.restore.name, &req->u.restore.name_len, 1, e) ||
               need_u64(&m, "step", &req->u.restore.step, e) ? -1 : 0;
    case BANK_OP_INFO:
    case BANK_OP_STATS:
        return 0;
    case BANK_OP_NONE:
        break;
    }
    char shown[PROTO_BANK_ESCAPED(32)];
    return bank_err_set(e, BANK_EINVAL, "unknown op '%s'",
                        proto_bank_escape(shown, sizeof shown, op, op_len));
}

/* v, op, [cid], [seq], [token] plus nfields more pairs. */
static int enc_req_hdr(msgpack_packer *pk, const struct bank_hdr *h, enum bank_op op,
                       size_t nfields)
{
    size_t n = 2 + (h->cid ? 1 : 0) + (h->has_seq ? 1 : 0) + (h->token ? 1 : 0) + nfields;
    if (msgpack_pack_map(pk, n) || mp_pack_kv_u64(pk, "v", BANK_PROTO_VERSION) ||
        mp_pack_kv_str(pk, "op", proto_bank_op_name(op)))
        return -1;
    if (h->cid && mp_pack_kv_strn(pk, "cid", h->cid, h->cid_len))
        return -1;
    if (h->has_seq && mp_pack_kv_u64(pk, "seq", h->seq))
        return -1;
    if (h->token && mp_pack_kv_strn(pk, "token", h->token, h->token_len))
        return -1;
    return 0;
}

int proto_bank_encode_init_req(msgpack_packer *pk, const struct bank_hdr *h,
                               const struct bank_init_req *r)
{
    return enc_req_hdr(pk, h, BANK_OP_INIT, 6) || mp_pack_kv_u64(pk, "rows", r->rows) ||
        mp_pack_kv_u64(pk, "dim", r->dim) || mp_pack_kv_u64(pk, "seed", r->seed) ||
        mp_pack_kv_strn(pk, "run", r->run ? r->run : "", r->run ? r->run_len : 0) ||
        mp_pack_kv_strn(pk, "manifest", r->manifest, r->manifest_len) ||
        mp_pack_kv_str(pk, "init", r->mode == BANK_INIT_UNIT ? "unit" : "uniform") ? -1 : 0;
}

int proto_bank_encode_info_req(msgpack_packer *pk, const struct bank_hdr *h)
{
    return enc_req_hdr(pk, h, BANK_OP_INFO, 0);
}

int proto_bank_encode_snapshot_req(msgpack_packer *pk, const struct bank_hdr *h)
{
    return enc_req_hdr(pk, h, BANK_OP_SNAPSHOT, 0);
}

int proto_bank_encode_snapshot_named_req(msgpack_packer *pk, const struct bank_hdr *h,
                                         const struct bank_snapshot_req *r)
{
    if (!r->name)
        return enc_req_hdr(pk, h, BANK_OP_SNAPSHOT, 0);
    return enc_req_hdr(pk, h, BANK_OP_SNAPSHOT, 1) ||
           mp_pack_kv_strn(pk, "name", r->name, r->name_len) ? -1 : 0;
}

int proto_bank_encode_restore_req(msgpack_packer *pk, const struct bank_hdr *h,
                                  const struct bank_restore_req *r)
{
    return enc_req_hdr(pk, h, BANK_OP_RESTORE, 2) ||
           mp_pack_kv_strn(pk, "name", r->name, r->name_len) ||
           mp_pack_kv_u64(pk, "step", r->step) ? -1 : 0;
}

int proto_bank_encode_stats_req(msgpack_packer *pk, const struct bank_hdr *h)
{
    return enc_req_hdr(pk, h, BANK_OP_STATS, 0);
}

int proto_bank_encode_sample_req(msgpack_packer *pk, const struct bank_hdr *h,
                                 const struct bank_sample_req *r)
{
    if (r->has_neg_idx)
        return enc_req_hdr(pk, h, BANK_OP_SAMPLE, 3) || mp_pack_kv_u64(pk, "k", r->k) ||
               mp_pack_kv_bin(pk, "neg_idx", r->neg_idx, 4 * r->k) ||
               mp_pack_kv_bin(pk, "pos", r->pos, 4 * r->npos) ? -1 : 0;
    return enc_req_hdr(pk, h, BANK_OP_SAMPLE, 3) || mp_pack_kv_u64(pk, "k", r->k) ||
           mp_pack_kv_bin(pk, "pos", r->pos, 4 * r->npos) ||
           mp_pack_kv_bool(pk, "exclude_pos", r->exclude_pos) ? -1 : 0;
}

int proto_bank_encode_update_req(msgpack_packer *pk, const struct bank_hdr *h,
                                 const struct bank_update_req *r)
{
    return enc_req_hdr(pk, h, BANK_OP_UPDATE, 3) || mp_pack_kv_bin(pk, "idx", r->idx, 4 * r->nidx) ||
           mp_pack_kv_bin(pk, "feat", r->feat, 4 * r->nfeat) ||
           mp_pack_kv_double(pk, "momentum", r->momentum) ? -1 : 0;
}

int proto_bank_encode_set_req(msgpack_packer *pk, const struct bank_hdr *h,
                              const struct bank_update_req *r)
{
    return enc_req_hdr(pk, h, BANK_OP_SET, 2) || mp_pack_kv_bin(pk, "idx", r->idx, 4 * r->nidx) ||
           mp_pack_kv_bin(pk, "feat", r->feat, 4 * r->nfeat) ? -1 : 0;
}

int proto_bank_encode_get_req(msgpack_packer *pk, const struct bank_hdr *h,
                              const struct bank_get_req *r)
{
    return enc_req_hdr(pk, h, BANK_OP_GET, 2) || mp_pack_kv_u64(pk, "start", r->start) ||
           mp_pack_kv_u64(pk, "count", r->count) ? -1 : 0;
}

/* ---- replies ------------------------------------------------------------------------------- */

/* v, ok, [seq] plus nfields more pairs. */
static int enc_rep_hdr(msgpack_packer *pk, const struct bank_rep_hdr *h, int ok, size_t nfields)
{
    size_t n = 2 + (h->has_seq ? 1 : 0) + nfields;
    if (msgpack_pack_map(pk, n) || mp_pack_kv_u64(pk, "v", BANK_PROTO_VERSION) ||
        mp_pack_kv_bool(pk, "ok", ok))
        return -1;
    return h->has_seq ? mp_pack_kv_u64(pk, "seq", h->seq) : 0;
}

/* "msg" is escaped once more (printable ASCII is unchanged): whatever a message quotes, the
 * reply's str is valid UTF-8 for strict decoders. */
int proto_bank_encode_err_rep(msgpack_packer *pk, const struct bank_rep_hdr *h,
                              const struct bank_err *e)
{
    char msg[PROTO_BANK_ESCAPED(sizeof e->msg)];
    proto_bank_escape(msg, sizeof msg, e->msg, strnlen(e->msg, sizeof e->msg));
    return enc_rep_hdr(pk, h, 0, 2) || mp_pack_kv_str(pk, "err", e->code) ||
           mp_pack_kv_str(pk, "msg", msg) ? -1 : 0;
}

int proto_bank_encode_init_rep(msgpack_packer *pk, const struct bank_rep_hdr *h,
                               const struct bank_init_rep *r)
{
    return enc_rep_hdr(pk, h, 1, 4) || mp_pack_kv_u64(pk, "rows", r->rows) ||
           mp_pack_kv_u64(pk, "dim", r->dim) || mp_pack_kv_u64(pk, "step", r->step) ||
           mp_pack_kv_bool(pk, "created", r->created) ? -1 : 0;
}

int proto_bank_encode_info_rep(msgpack_packer *pk, const struct bank_rep_hdr *h,
                               const struct bank_info_rep *r)
{
    int sharded = r->shards > 1;
    if (enc_rep_hdr(pk, h, 1, sharded ? 10 : 6) || mp_pack_kv_u64(pk, "rows", r->rows) ||
        mp_pack_kv_u64(pk, "dim", r->dim) || mp_pack_kv_u64(pk, "step", r->step) ||
        mp_pack_kv_strn(pk, "run", r->run ? r->run : "", r->run ? r->run_len : 0) ||
        mp_pack_kv_strn(pk, "manifest", r->manifest, r->manifest_len) ||
        mp_pack_kv_bool(pk, "has_token", r->has_token))
        return -1;
    if (!sharded)
        return 0;
    return mp_pack_kv_u64(pk, "shard", r->shard) || mp_pack_kv_u64(pk, "shards", r->shards) ||
           mp_pack_kv_u64(pk, "shard_start", r->shard_start) ||
           mp_pack_kv_u64(pk, "shard_end", r->shard_end) ? -1 : 0;
}

int proto_bank_encode_step_rep(msgpack_packer *pk, const struct bank_rep_hdr *h,
                               const struct bank_step_rep *r)
{
    return enc_rep_hdr(pk, h, 1, 1) || mp_pack_kv_u64(pk, "step", r->step) ? -1 : 0;
}

int proto_bank_encode_snapshot_rep(msgpack_packer *pk, const struct bank_rep_hdr *h,
                                   const struct bank_snapshot_rep *r)
{
    return enc_rep_hdr(pk, h, 1, 2) || mp_pack_kv_strn(pk, "path", r->path, r->path_len) ||
           mp_pack_kv_u64(pk, "step", r->step) ? -1 : 0;
}

int proto_bank_encode_stats_rep(msgpack_packer *pk, const struct bank_rep_hdr *h,
                                const struct bank_stats_rep *r)
{
    if (enc_rep_hdr(pk, h, 1, 18) || mp_pack_kv_u64(pk, "rows", r->rows) ||
        mp_pack_kv_u64(pk, "dim", r->dim) || mp_pack_kv_u64(pk, "step", r->step) ||
        mp_pack_kv_double(pk, "norm_min", r->norm_min) ||
        mp_pack_kv_double(pk, "norm_mean", r->norm_mean) ||
        mp_pack_kv_double(pk, "norm_max", r->norm_max) || mp_pack_kv_u64(pk, "writes", r->writes) ||
        mp_pack_kv_u64(pk, "rows_written", r->rows_written) ||
        mp_pack_kv_u64(pk, "upd_min", r->upd_min) || mp_pack_kv_u64(pk, "upd_max", r->upd_max) ||
        mp_pack_kv_double(pk, "stale_mean", r->stale_mean) ||
        mp_pack_kv_u64(pk, "stale_max", r->stale_max) ||
        mp_pack_kv_u64(pk, "snapshot_step", r->snapshot_step) ||
        mp_pack_kv_u64(pk, "requests", r->requests) || mp_pack_kv_u64(pk, "errors", r->errors) ||
        mp_pack_kv_u64(pk, "cache_hits", r->cache_hits) ||
        mp_pack_kv_u64(pk, "stale_buckets", BANK_STALE_BUCKETS) ||
        mp_pack_key(pk, "stale_hist") || msgpack_pack_array(pk, BANK_STALE_BUCKETS))
        return -1;
    for (int i = 0; i < BANK_STALE_BUCKETS; i++)
        if (msgpack_pack_uint64(pk, r->stale_hist[i]))
            return -1;
    return 0;
}

/* key bytes (fixstr) + value bytes */
#define KV(klen, vbytes) (1 + (klen) + (vbytes))

static size_t rep_hdr_size(const struct bank_rep_hdr *h, size_t nfields)
{
    size_t n = 2 + (h->has_seq ? 1 : 0) + nfields;
    return mp_size_map(n) + KV(1, 1) + KV(2, 1) + (h->has_seq ? KV(3, mp_size_uint(h->seq)) : 0);
}

size_t proto_bank_sample_rep_size(const struct bank_rep_hdr *h, uint64_t step, size_t k,
                                  size_t npos, size_t dim)
{
    return rep_hdr_size(h, 4) + KV(4, mp_size_uint(step)) + KV(7, mp_size_bin(4 * k)) +
           KV(3, mp_size_bin(4 * k * dim)) + KV(3, mp_size_bin(4 * npos * dim));
}

static void *bin_area(msgpack_packer *pk, struct mp_fixbuf *fb, const char *key, size_t bytes)
{
    if (mp_pack_key(pk, key) || msgpack_pack_bin(pk, bytes))
        return NULL;
    return mp_fixbuf_reserve(fb, bytes);
}

int proto_bank_encode_sample_rep(struct mp_fixbuf *fb, const struct bank_rep_hdr *h,
                                 uint64_t step, size_t k, size_t npos, size_t dim,
                                 void **neg_idx, void **neg, void **pos)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, fb, mp_fixbuf_write);
    if (enc_rep_hdr(&pk, h, 1, 4) || mp_pack_kv_u64(&pk, "step", step))
        return -1;
    *neg_idx = bin_area(&pk, fb, "neg_idx", 4 * k);
    *neg = *neg_idx ? bin_area(&pk, fb, "neg", 4 * k * dim) : NULL;
    *pos = *neg ? bin_area(&pk, fb, "pos", 4 * npos * dim) : NULL;
    return *pos ? 0 : -1;
}

size_t proto_bank_get_rep_size(const struct bank_rep_hdr *h, uint64_t start, size_t nfloats)
{
    return rep_hdr_size(h, 2) + KV(5, mp_size_uint(start)) + KV(4, mp_size_bin(4 * nfloats));
}

int proto_bank_encode_get_rep(struct mp_fixbuf *fb, const struct bank_rep_hdr *h,
                              uint64_t start, size_t nfloats, void **rows)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, fb, mp_fixbuf_write);
    if (enc_rep_hdr(&pk, h, 1, 2) || mp_pack_kv_u64(&pk, "start", start))
        return -1;
    *rows = bin_area(&pk, fb, "rows", 4 * nfloats);
    return *rows ? 0 : -1;
}

/* ---- reply decoding ------------------------------------------------------------------------ */

static int rep_bin4(const struct mp_map *m, const char *key, const void **p, size_t *n,
                    struct bank_err *e)
{
    if (need_bin4(m, key, p, n, e) == 0)
        return 0;
    snprintf(e->code, sizeof e->code, "%s", BANK_EPROTO);
    return -1;
}

static int decode_stats_rep(const struct mp_map *m, struct bank_stats_rep *r, struct bank_err *e)
{
    if (need_u64(m, "rows", &r->rows, e) || need_u64(m, "dim", &r->dim, e) ||
        need_u64(m, "step", &r->step, e) || need_f64(m, "norm_min", &r->norm_min, e) ||
        need_f64(m, "norm_mean", &r->norm_mean, e) || need_f64(m, "norm_max", &r->norm_max, e) ||
        need_u64(m, "writes", &r->writes, e) || need_u64(m, "rows_written", &r->rows_written, e) ||
        need_u64(m, "upd_min", &r->upd_min, e) || need_u64(m, "upd_max", &r->upd_max, e) ||
        need_f64(m, "stale_mean", &r->stale_mean, e) ||
        need_u64(m, "stale_max", &r->stale_max, e) ||
        opt_u64(m, "snapshot_step", &r->snapshot_step, 0, e) ||
        opt_u64(m, "requests", &r->requests, 0, e) || opt_u64(m, "errors", &r->errors, 0, e) ||
        opt_u64(m, "cache_hits", &r->cache_hits, 0, e))
        return -1;
    struct mp_obj arr, el;
    struct mp_iter it;
    memset(r->stale_hist, 0, sizeof r->stale_hist);
    int rc = mp_get_array(m, "stale_hist", &arr);
    if (rc != MP_OK)
        return field_err(e, "stale_hist", rc, "array");
    mp_iter_init(&it, &arr);
    for (int i = 0; mp_iter_next(&it, &el); i++) {
        if (el.type != MP_UINT)
            return field_err(e, "stale_hist", MP_WRONG_TYPE, "an array of uint");
        if (i < BANK_STALE_BUCKETS)
            r->stale_hist[i] = el.v.u;
        else
            r->stale_hist[BANK_STALE_BUCKETS - 1] += el.v.u;
    }
    return 0;
}

int proto_bank_decode_rep(const void *buf, size_t len, enum bank_op op, union bank_rep_u *r,
                          struct bank_err *e)
{
    struct mp_map m;
    const char *why;
    memset(r, 0, sizeof *r);
    if (mp_map_open(&m, buf, len, MP_MAX_DEPTH, &why) != 0)
        return bank_err_set(e, BANK_EPROTO, "malformed reply: %s", why);
    uint64_t v;
    if (need_u64(&m, "v", &v, e))
        return -1;
    if (v != BANK_PROTO_VERSION)
        return bank_err_set(e, BANK_EVERSION, "reply has protocol version %llu, expected %d",
                            (unsigned long long)v, BANK_PROTO_VERSION);
    int ok;
    if (need_bool(&m, "ok", &ok, e))
        return -1;
    if (!ok) {
        const char *code = NULL, *msg = NULL;
        size_t code_len = 0, msg_len = 0;
        if (need_str(&m, "err", &code, &code_len, e))
            return -1;
        if (mp_get_str(&m, "msg", &msg, &msg_len) != MP_OK)
            msg = "", msg_len = 0;
        /* a code is 1..15 of [A-Z0-9_] (BANK_E*): anything else, an embedded NUL included,
         * is not a bankd error but a malformed reply */
        int code_ok = code_len > 0 && code_len < sizeof e->code;
        for (size_t i = 0; code_ok && i < code_len; i++)
            code_ok = (code[i] >= 'A' && code[i] <= 'Z') || (code[i] >= '0' && code[i] <= '9') ||
                      code[i] == '_';
        if (!code_ok)
            return bank_err_set(e, BANK_EPROTO, "reply has a malformed error code (%zu bytes)",
                                code_len);
        snprintf(e->code, sizeof e->code, "%.*s", (int)code_len, code);
        snprintf(e->msg, sizeof e->msg, "%.*s", (int)msg_len, msg);
        return -1;
    }
    switch (op) {
    case BANK_OP_INIT:
        return need_u64(&m, "rows", &r->init.rows, e) || need_u64(&m, "dim", &r->init.dim, e) ||
               need_u64(&m, "step", &r->init.step, e) ||
               need_bool(&m, "created", &r->init.created, e) ? -1 : 0;
    case BANK_OP_INFO:
        return need_u64(&m, "rows", &r->info.rows, e) || need_u64(&m, "dim", &r->info.dim, e) ||
               need_u64(&m, "step", &r->info.step, e) ||
               opt_str(&m, "run", &r->info.run, &r->info.run_len, 1, e) ||
               opt_str(&m, "manifest", &r->info.manifest, &r->info.manifest_len, 1, e) ||
               opt_bool(&m, "has_token", &r->info.has_token, e) ||
               opt_u64(&m, "shard", &r->info.shard, 0, e) ||
               opt_u64(&m, "shards", &r->info.shards, 1, e) ||
               opt_u64(&m, "shard_start", &r->info.shard_start, 0, e) ||
               opt_u64(&m, "shard_end", &r->info.shard_end, r->info.rows, e) ? -1 : 0;
    case BANK_OP_SAMPLE: {
        struct bank_sample_rep *s = &r->sample;
        return opt_u64(&m, "step", &s->step, 0, e) ||
               rep_bin4(&m, "neg_idx", &s->neg_idx, &s->k, e) ||
               rep_bin4(&m, "neg", &s->neg, &s->nneg, e) ||
               rep_bin4(&m, "pos", &s->pos, &s->npos, e) ? -1 : 0;
    }
    case BANK_OP_UPDATE:
    case BANK_OP_SET:
    case BANK_OP_RESTORE:
        return need_u64(&m, "step", &r->step.step, e);
    case BANK_OP_GET:
        return opt_u64(&m, "start", &r->get.start, 0, e) ||
               rep_bin4(&m, "rows", &r->get.rows, &r->get.nrows_f, e) ? -1 : 0;
    case BANK_OP_SNAPSHOT:
        return need_str(&m, "path", &r->snapshot.path, &r->snapshot.path_len, e) ||
               need_u64(&m, "step", &r->snapshot.step, e) ? -1 : 0;
    case BANK_OP_STATS:
        return decode_stats_rep(&m, &r->stats, e);
    case BANK_OP_NONE:
        break;
    }
    return bank_err_set(e, BANK_EINVAL, "no reply format for op %d", (int)op);
}
