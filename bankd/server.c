/* npid-bankd's request loop: see server.h.
 *
 * Replies that carry bank rows (sample, get) are built directly in a zmq_msg_t of the exact
 * size and the rows gathered into it, so each row is copied once on its way out. Every
 * request with a client id and a seq is recorded in the reply cache (replies.h), with the
 * reply for writing ops (init, update, set, snapshot, restore): a retry of one is answered
 * from the cache and never applied twice. Read-only ops are re-executed on a retry (their
 * replies can be megabytes and repeating them changes nothing). Snapshots: snapsched.h.
 *
 * Write tokens: a bank with a token (bank.h) refuses every writing op that does not carry it
 * with EPERM before anything else is looked at, and such a refusal touches nothing, not even
 * the reply cache; it is logged within limits (refusals.h).
 *
 * Shards (--shard i/N): the bank held is always the configured shard's (bank.h); init
 * carries the global row count, info reports the shard, and a snapshot of another shard or
 * another N is refused (EMISMATCH on restore, exit at start). */
#include "bankd/server.h"

#include "bankd/bank.h"
#include "bankd/refusals.h"
#include "bankd/replies.h"
#include "bankd/snapsched.h"
#include "bankd/snapshot.h"
#include "common/clock.h"
#include "common/durable.h"
#include "common/log.h"
#include "common/mp.h"
#include "common/msg.h"
#include "common/sig.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Request bytes (ids, names) and ids the bank holds go into messages and log lines only
 * through ESC: printable ASCII as is, other bytes as \xNN (proto_bank_escape). ESC_ID is
 * the room for one id in a message (struct bank_err's msg holds two). */
enum { ESC_ID = 96 };
#define ESC(buf, p, len) proto_bank_escape(buf, sizeof buf, p, len)

#define EPERM_MSG "this bank takes writes only with its run's token (the trainer that " \
                  "created it keeps it in RUN_DIR/bank.token)"

struct server {
    struct server_cfg cfg;
    void *sock;
    struct bank *bank;
    struct snapsched snap;     /* its dir is the snapshot directory ("": none) */
    struct replies replies;
    msgpack_sbuffer sb;        /* small replies */
    msgpack_packer pk;
    uint64_t requests, errors, cache_hits;
    struct refusals refusals;
};

/* ", shard i/N, rows [lo, hi)" for a shard's log lines, "" for an unsharded bank (static
 * buffer: one use per statement). */
static const char *shard_desc(const struct bank *b)
{
    static char buf[96];
    if (b->shards <= 1)
        return "";
    snprintf(buf, sizeof buf, ", shard %u/%u, rows [%llu, %llu)", b->shard, b->shards,
             (unsigned long long)b->lo, (unsigned long long)(b->lo + b->rows));
    return buf;
}

/* ---- replies ------------------------------------------------------------------------------- */

/* Sends [id, (delimiter,) msg]; msg is consumed. */
static void server_send(struct server *s, zmq_msg_t *id, int delim, zmq_msg_t *msg)
{
    zmq_msg_t idc;
    zmq_msg_init(&idc);
    zmq_msg_copy(&idc, id);
    if (zmq_msg_send(&idc, s->sock, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&idc);
        zmq_msg_close(msg);
        log_debug("reply dropped: %s", zmq_strerror(errno));
        return;
    }
    if (delim && zmq_send(s->sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        log_debug("reply delimiter dropped: %s", zmq_strerror(errno));
    if (zmq_msg_send(msg, s->sock, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(msg);
        log_debug("reply dropped: %s", zmq_strerror(errno));
    }
}

/* Turns the small-reply buffer into a message. */
static int sb_to_msg(struct server *s, zmq_msg_t *out)
{
    if (zmq_msg_init_size(out, s->sb.size) != 0)
        return -1;
    memcpy(zmq_msg_data(out), s->sb.data, s->sb.size);
    return 0;
}

static void encode_err(struct server *s, const struct bank_rep_hdr *rh, const struct bank_err *e)
{
    msgpack_sbuffer_clear(&s->sb);
    proto_bank_encode_err_rep(&s->pk, rh, e);
    s->errors++;
}

/* ---- ops ----------------------------------------------------------------------------------- */

/* init against a bank of the same shape: succeeds unless the request's run or manifest
 * contradicts a non-empty one the bank holds (EMISMATCH); adopts those the bank lacks, and
 * the request's token when the bank has none (the caller checked a token the bank has). */
static int op_init_existing(struct server *s, const struct bank_hdr *h,
                            const struct bank_init_req *q, struct bank_err *e)
{
    struct bank *b = s->bank;
    char have[ESC_ID], want[ESC_ID];
    if (q->manifest && b->has_manifest &&
        (strlen(b->manifest) != q->manifest_len ||
         memcmp(b->manifest, q->manifest, q->manifest_len)))
        return bank_err_set(e, BANK_EMISMATCH, "bank holds manifest %s, init names %s",
                            ESC(have, b->manifest, strlen(b->manifest)),
                            ESC(want, q->manifest, q->manifest_len));
    if (q->run && q->run_len && b->run[0] &&
        (strlen(b->run) != q->run_len || memcmp(b->run, q->run, q->run_len)))
        return bank_err_set(e, BANK_EMISMATCH, "bank belongs to run %s, init names %s",
                            ESC(have, b->run, strlen(b->run)), ESC(want, q->run, q->run_len));
    int adopt_run = q->run && q->run_len && !b->run[0];
    int adopt_man = q->manifest && !b->has_manifest;
    if (adopt_run || adopt_man) {
        if (bank_set_ids(b, adopt_run ? q->run : b->run, adopt_run ? q->run_len : strlen(b->run),
                         adopt_man ? q->manifest : (b->has_manifest ? b->manifest : NULL),
                         adopt_man ? q->manifest_len : strlen(b->manifest)) != 0)
            return bank_err_set(e, BANK_EINVAL, "run and manifest must be < 256 bytes");
        s->snap.stale = 1;
    }
    if (h->token && !b->has_token) {
        bank_set_token(b, h->token, h->token_len);
        s->snap.stale = 1;
        log_info("the bank adopted the write token of init (it had none): writes need it now");
    }
    return 0;
}

/* init creating the bank (none held), with the request's token if any. Its size was
 * checked against --max-bytes. */
static int op_init_create(struct server *s, const struct bank_hdr *h,
                          const struct bank_init_req *q, struct bank_err *e)
{
    if (q->run_len > 255 || q->manifest_len > 255)
        return bank_err_set(e, BANK_EINVAL, "run and manifest must be < 256 bytes");
    if (q->rows < s->cfg.shards)
        return bank_err_set(e, BANK_EINVAL, "a bank of %llu rows cannot be split in %u shards "
                            "(each needs at least one row)", (unsigned long long)q->rows,
                            s->cfg.shards);
    double t0 = clock_seconds();
    struct bank *b = bank_new_shard(q->rows, (size_t)q->dim, q->seed, q->mode, s->cfg.shard,
                                    s->cfg.shards);
    if (!b)
        return bank_err_set(e, BANK_ENOMEM, "cannot allocate a %llu x %llu bank",
                            (unsigned long long)q->rows, (unsigned long long)q->dim);
    bank_set_ids(b, q->run, q->run_len, q->manifest, q->manifest_len);
    if (h->token)
        bank_set_token(b, h->token, h->token_len);
    s->bank = b;
    s->snap.valid = 0;
    char run[ESC_ID], man[ESC_ID];
    log_info("bank created: %llu x %zu%s (%s init, seed %llu, run '%s', manifest %s, %s) in "
             "%.2f s", (unsigned long long)b->total, b->dim, shard_desc(b),
             q->mode == BANK_INIT_UNIT ? "unit" : "uniform", (unsigned long long)q->seed,
             ESC(run, b->run, strlen(b->run)),
             b->has_manifest ? ESC(man, b->manifest, strlen(b->manifest)) : "none",
             b->has_token ? "writes need its token" : "no write token", clock_seconds() - t0);
    return 0;
}

/* init: an existing bank of the same shape is kept; otherwise a bank larger than
 * --max-bytes is ENOMEM (before anything is allocated, whatever bank is held), another
 * shape than the bank held EMISMATCH, and with no bank one is created. */
static int op_init(struct server *s, const struct bank_hdr *h, const struct bank_init_req *q,
                   const struct bank_rep_hdr *rh, struct bank_err *e)
{
    struct bank_init_rep r = { q->rows, q->dim, 0, 0 };
    struct bank *b = s->bank;
    if (b && b->total == q->rows && b->dim == q->dim) {
        if (op_init_existing(s, h, q, e) != 0)
            return -1;
        r.step = b->step;
    } else {
        uint64_t lo = proto_bank_shard_start(q->rows, s->cfg.shard, s->cfg.shards);
        uint64_t need = bank_bytes(proto_bank_shard_start(q->rows, s->cfg.shard + 1ull,
                                                          s->cfg.shards) - lo, q->dim);
        if (need > s->cfg.max_bytes)
            return bank_err_set(e, BANK_ENOMEM, "a %llu x %llu bank needs %llu bytes, more than "
                                "--max-bytes %llu%s", (unsigned long long)q->rows,
                                (unsigned long long)q->dim, (unsigned long long)need,
                                (unsigned long long)s->cfg.max_bytes,
                                b ? "; the bank held is unchanged" : "");
        if (b)
            return bank_err_set(e, BANK_EMISMATCH, "bank is %llu x %zu, init asks %llu x %llu",
                                (unsigned long long)b->total, b->dim,
                                (unsigned long long)q->rows, (unsigned long long)q->dim);
        if (op_init_create(s, h, q, e) != 0)
            return -1;
        r.created = 1;
    }
    msgpack_sbuffer_clear(&s->sb);
    proto_bank_encode_init_rep(&s->pk, rh, &r);
    return 0;
}

static int op_info(struct server *s, const struct bank_rep_hdr *rh, struct bank_err *e)
{
    struct bank *b = s->bank;
    if (!b)
        return bank_err_set(e, BANK_ENOBANK, "no bank: send init first");
    struct bank_info_rep r = { b->total, b->dim, b->step, b->run, strlen(b->run),
                               b->has_manifest ? b->manifest : NULL,
                               b->has_manifest ? strlen(b->manifest) : 0, b->has_token,
                               b->shard, b->shards, b->lo, b->lo + b->rows };
    msgpack_sbuffer_clear(&s->sb);
    proto_bank_encode_info_rep(&s->pk, rh, &r);
    return 0;
}

/* Builds a sample reply in *out. */
static int op_sample(struct server *s, const struct bank_sample_req *q,
                     const struct bank_rep_hdr *rh, zmq_msg_t *out, struct bank_err *e)
{
    struct bank *b = s->bank;
    if (!b)
        return bank_err_set(e, BANK_ENOBANK, "no bank: send init first");
    uint64_t row_bytes = 4 * (uint64_t)b->dim;
    if (q->k > s->cfg.max_frame / row_bytes || q->npos > s->cfg.max_frame / row_bytes ||
        (q->k + q->npos) * row_bytes + 64 > s->cfg.max_frame)
        return bank_err_set(e, BANK_ERANGE, "reply for k=%llu, B=%zu would exceed --max-frame %llu",
                            (unsigned long long)q->k, q->npos,
                            (unsigned long long)s->cfg.max_frame);
    size_t k = (size_t)q->k, dim = b->dim;
    size_t size = proto_bank_sample_rep_size(rh, b->step, k, q->npos, dim);
    if (size > s->cfg.max_frame) /* the exact reply, neg_idx and envelope included */
        return bank_err_set(e, BANK_ERANGE, "reply for k=%llu, B=%zu is %zu bytes, over "
                            "--max-frame %llu", (unsigned long long)q->k, q->npos, size,
                            (unsigned long long)s->cfg.max_frame);
    if (zmq_msg_init_size(out, size) != 0)
        return bank_err_set(e, BANK_ENOMEM, "cannot allocate a %zu-byte reply", size);
    struct mp_fixbuf fb;
    void *ni, *nv, *pv;
    mp_fixbuf_init(&fb, zmq_msg_data(out), size);
    NPID_CHECK(proto_bank_encode_sample_rep(&fb, rh, b->step, k, q->npos, dim, &ni, &nv, &pv) == 0);
    NPID_CHECK(fb.len == size);
    int rc = q->has_neg_idx ? bank_rows(b, q->neg_idx, k, q->pos, q->npos, ni, nv, pv, e)
                            : bank_sample(b, k, q->pos, q->npos, q->exclude_pos, ni, nv, pv, e);
    if (rc != 0) {
        zmq_msg_close(out);
        return -1;
    }
    return 0;
}

static int op_get(struct server *s, const struct bank_get_req *q, const struct bank_rep_hdr *rh,
                  zmq_msg_t *out, struct bank_err *e)
{
    struct bank *b = s->bank;
    if (!b)
        return bank_err_set(e, BANK_ENOBANK, "no bank: send init first");
    uint64_t row_bytes = 4 * (uint64_t)b->dim;
    if (q->count > s->cfg.max_frame / row_bytes || q->count * row_bytes + 64 > s->cfg.max_frame)
        return bank_err_set(e, BANK_ERANGE, "get of %llu rows would exceed --max-frame %llu; "
                            "read in chunks", (unsigned long long)q->count,
                            (unsigned long long)s->cfg.max_frame);
    if (bank_check_range(b, q->start, q->count, e) != 0)
        return -1;
    size_t nf = (size_t)q->count * b->dim;
    size_t size = proto_bank_get_rep_size(rh, q->start, nf);
    if (zmq_msg_init_size(out, size) != 0)
        return bank_err_set(e, BANK_ENOMEM, "cannot allocate a %zu-byte reply", size);
    struct mp_fixbuf fb;
    void *rows;
    mp_fixbuf_init(&fb, zmq_msg_data(out), size);
    NPID_CHECK(proto_bank_encode_get_rep(&fb, rh, q->start, nf, &rows) == 0);
    NPID_CHECK(fb.len == size);
    NPID_CHECK(bank_get(b, q->start, q->count, rows, e) == 0);
    return 0;
}

static int op_write(struct server *s, enum bank_op op, const struct bank_update_req *q,
                    const struct bank_rep_hdr *rh, struct bank_err *e)
{
    struct bank *b = s->bank;
    if (!b)
        return bank_err_set(e, BANK_ENOBANK, "no bank: send init first");
    if (q->nidx > b->rows * 64 + 1024)
        return bank_err_set(e, BANK_ERANGE, "too many rows in one request");
    int rc = op == BANK_OP_SET ? bank_set(b, q->idx, q->nidx, q->feat, q->nfeat, e)
                               : bank_update(b, q->idx, q->nidx, q->feat, q->nfeat,
                                             (float)q->momentum, e);
    if (rc != 0)
        return -1;
    struct bank_step_rep r = { b->step };
    msgpack_sbuffer_clear(&s->sb);
    proto_bank_encode_step_rep(&s->pk, rh, &r);
    return 0;
}

static int op_snapshot(struct server *s, const struct bank_snapshot_req *q,
                       const struct bank_rep_hdr *rh, struct bank_err *e)
{
    char path[PATH_MAX];
    if (snapsched_write(&s->snap, s->bank, &s->replies, q->name, q->name_len, path, sizeof path,
                        e) != 0)
        return -1;
    struct bank_snapshot_rep r = { path, strlen(path), s->bank->step };
    msgpack_sbuffer_clear(&s->sb);
    proto_bank_encode_snapshot_rep(&s->pk, rh, &r);
    return 0;
}

/* Reads the snapshot a restore names into *nb: DIR/bank-<name>.snap, else its .prev, the
 * first at the step asked for that reads back valid; file (file_cap bytes) receives its path.
 * A file at that step ends the search with EPERM when it has a token and the request's is not
 * it, EMISMATCH when its shape or manifest is not the bank held's, ENOMEM when no bank is held
 * and it exceeds --max-bytes. 0, or -1 with e filled (ENOSNAP: none found). */
static int op_restore_read(struct server *s, const struct bank_hdr *h,
                           const struct bank_restore_req *q, char *file, size_t file_cap,
                           struct bank **nb, struct bank_err *e)
{
    struct bank *b = s->bank;
    unsigned long long want = (unsigned long long)q->step;
    char seen[200] = "";
    size_t used = 0;
    *nb = NULL;
    for (int i = 0; i < 2 && !*nb; i++) {
        char base[96];
        snprintf(base, sizeof base, "bank-%.*s.snap%s", (int)q->name_len, q->name,
                 i ? ".prev" : "");
        snprintf(file, file_cap, "%s/%s", s->snap.dir, base);
        struct snapshot_info info;
        const char *why = NULL;
        char what[64];
        if (snapshot_peek(file, &info, &why) != 0) {
            snprintf(what, sizeof what, "%s", why);
        } else if (info.step != q->step) {
            snprintf(what, sizeof what, "step %llu", (unsigned long long)info.step);
        } else if (info.has_token &&
                   !bank_token_matches(info.token_hash, h->token, h->token_len)) {
            return bank_err_set(e, BANK_EPERM, "%s: " EPERM_MSG, base);
        } else if (info.shard != s->cfg.shard || info.shards != s->cfg.shards) {
            return bank_err_set(e, BANK_EMISMATCH, "%s holds shard %u/%u (rows [%llu, %llu) of "
                                "%llu), this bankd is shard %u/%u", base, info.shard,
                                info.shards, (unsigned long long)info.lo,
                                (unsigned long long)(info.lo + info.rows),
                                (unsigned long long)info.total, s->cfg.shard, s->cfg.shards);
        } else if (b && (info.total != b->total || info.dim != b->dim)) {
            return bank_err_set(e, BANK_EMISMATCH, "%s holds a %llu x %llu bank, bankd holds "
                                "%llu x %zu", base, (unsigned long long)info.total,
                                (unsigned long long)info.dim, (unsigned long long)b->total,
                                b->dim);
        } else if (!b && bank_bytes(info.rows, info.dim) > s->cfg.max_bytes) {
            return bank_err_set(e, BANK_ENOMEM, "%s holds a %llu x %llu bank, more than "
                                "--max-bytes %llu", base, (unsigned long long)info.rows,
                                (unsigned long long)info.dim,
                                (unsigned long long)s->cfg.max_bytes);
        } else if (b && info.has_manifest && b->has_manifest &&
                   strcmp(info.manifest, b->manifest)) {
            return bank_err_set(e, BANK_EMISMATCH, "%s has manifest %.64s, the bank %.64s", base,
                                info.manifest, b->manifest);
        } else if (!(*nb = snapshot_read(file, &why))) {
            snprintf(what, sizeof what, "step %llu but %s", want, why);
        }
        if (!*nb) {
            int n = snprintf(seen + used, sizeof seen - used, "%s%s: %s", used ? "; " : "",
                             base, what);
            if (n > 0)
                used += (size_t)n < sizeof seen - used ? (size_t)n : sizeof seen - used - 1;
            if (strcmp(what, "no such file"))
                log_warn("restore: %s: %s", file, what);
        }
    }
    if (!*nb)
        return bank_err_set(e, BANK_ENOSNAP, "no valid snapshot '%.*s' at step %llu (%s)",
                            (int)q->name_len, q->name, want, seen);
    return 0;
}

/* restore: the caller checked the token of the bank held; a file with a token also needs
 * that one (EPERM), and a file without one adopts the request's. */
static int op_restore(struct server *s, const struct bank_hdr *h, const struct bank_restore_req *q,
                      const struct bank_rep_hdr *rh, struct bank_err *e)
{
    /* without a bank, the snapshot's shape is adopted: a client resuming on a restarted
       bankd restores before anything else, and a restore that fails leaves no bank */
    struct bank *b = s->bank;
    if (!s->snap.dir[0])
        return bank_err_set(e, BANK_EINVAL, "snapshots disabled (bankd started without --dir)");
    struct bank *nb;
    char file[PATH_MAX + 128];
    if (op_restore_read(s, h, q, file, sizeof file, &nb, e) != 0)
        return -1;
    snapsched_reap(&s->snap, 1); /* no writer of bank.snap runs while it is renamed */
    snapsched_abandon_newer(&s->snap, q->step);
    uint64_t old_step = b ? b->step : 0;
    bank_destroy(&s->bank);
    s->bank = nb;
    free(nb->extra); /* the cache is cleared below: replies of another timeline */
    nb->extra = NULL;
    nb->extra_len = 0;
    if (!nb->has_token && h->token)
        bank_set_token(nb, h->token, h->token_len);
    s->snap.stale = 1; /* bank.snap does not hold this bank */
    s->snap.stat_step = nb->step;
    char run[ESC_ID];
    log_info("restored %s: step %llu (was %llu), run '%s', %s", file, (unsigned long long)q->step,
             (unsigned long long)old_step, ESC(run, nb->run, strlen(nb->run)),
             nb->has_token ? "writes need its token" : "no write token");
    struct bank_step_rep r = { nb->step };
    msgpack_sbuffer_clear(&s->sb);
    proto_bank_encode_step_rep(&s->pk, rh, &r);
    return 0;
}

static int op_stats(struct server *s, const struct bank_rep_hdr *rh, struct bank_err *e)
{
    if (!s->bank)
        return bank_err_set(e, BANK_ENOBANK, "no bank: send init first");
    struct bank_stats_rep r;
    memset(&r, 0, sizeof r);
    bank_stats(s->bank, &r);
    r.snapshot_step = s->snap.stat_step;
    r.requests = s->requests;
    r.errors = s->errors;
    r.cache_hits = s->cache_hits;
    msgpack_sbuffer_clear(&s->sb);
    proto_bank_encode_stats_rep(&s->pk, rh, &r);
    return 0;
}

static int op_writes_state(enum bank_op op)
{
    return op == BANK_OP_INIT || op == BANK_OP_UPDATE || op == BANK_OP_SET ||
           op == BANK_OP_SNAPSHOT || op == BANK_OP_RESTORE;
}

/* Runs the op of request q: its reply is then in *out when *have_out (sample, get), else in
 * s->sb. A restore that took place forgets the reply cache but for ce's client (ce may be
 * NULL). 0, or -1 with e filled (the caller encodes the error reply). */
static int server_dispatch(struct server *s, const struct bank_req *q, struct reply_entry *ce,
                           const struct bank_rep_hdr *rh, zmq_msg_t *out, int *have_out,
                           struct bank_err *e)
{
    int rc;
    switch (q->h.op) {
    case BANK_OP_INIT: rc = op_init(s, &q->h, &q->u.init, rh, e); break;
    case BANK_OP_INFO: rc = op_info(s, rh, e); break;
    case BANK_OP_SAMPLE: rc = op_sample(s, &q->u.sample, rh, out, e); *have_out = rc == 0; break;
    case BANK_OP_GET: rc = op_get(s, &q->u.get, rh, out, e); *have_out = rc == 0; break;
    case BANK_OP_UPDATE:
    case BANK_OP_SET: rc = op_write(s, q->h.op, &q->u.update, rh, e); break;
    case BANK_OP_SNAPSHOT: rc = op_snapshot(s, &q->u.snapshot, rh, e); break;
    case BANK_OP_STATS: rc = op_stats(s, rh, e); break;
    case BANK_OP_RESTORE:
        rc = op_restore(s, &q->h, &q->u.restore, rh, e);
        if (rc == 0)
            replies_clear(&s->replies, ce); /* replies of the replaced bank's timeline */
        break;
    default: rc = bank_err_set(e, BANK_EINVAL, "unknown op"); break;
    }
    return rc;
}

/* "64 MiB" for a multiple of 1 MiB, else "N-byte" (static buffer: one use per statement). */
static const char *server_size_name(uint64_t n)
{
    static char buf[32];
    if (n % (1u << 20) == 0)
        snprintf(buf, sizeof buf, "%llu MiB", (unsigned long long)(n >> 20));
    else
        snprintf(buf, sizeof buf, "%llu-byte", (unsigned long long)n);
    return buf;
}

/* Handles one request body from client id. */
static void server_handle(struct server *s, zmq_msg_t *id, int delim, const void *body,
                          size_t len)
{
    struct bank_req q;
    struct bank_err e;
    struct bank_rep_hdr rh = { 0, 0 };
    zmq_msg_t out;
    int have_out = 0;
    s->requests++;
    if (len > s->cfg.max_frame) {
        /* received only because the transport limit is higher: refused unread but for the
           seq to echo (a strict walk: lengths and counts are checked, bins are skipped) */
        struct mp_map m;
        if (mp_map_open(&m, body, len, MP_MAX_DEPTH, NULL) == 0 &&
            mp_get_u64(&m, "seq", &rh.seq) == MP_OK)
            rh.has_seq = 1;
        bank_err_set(&e, BANK_EMSGSIZE, "request of %zu bytes exceeds the %s frame limit "
                     "(--max-frame %llu)", len, server_size_name(s->cfg.max_frame),
                     (unsigned long long)s->cfg.max_frame);
        log_debug("refused: %s", e.msg);
        encode_err(s, &rh, &e);
        goto reply;
    }
    if (proto_bank_decode_req(body, len, &q, &e) != 0) {
        rh.seq = q.h.seq;
        rh.has_seq = q.h.has_seq;
        log_debug("bad request (%zu bytes): %s %s", len, e.code, e.msg);
        encode_err(s, &rh, &e);
        goto reply;
    }
    rh.seq = q.h.seq;
    rh.has_seq = q.h.has_seq;
    if (op_writes_state(q.h.op) && s->bank && !bank_token_ok(s->bank, q.h.token, q.h.token_len)) {
        bank_err_set(&e, BANK_EPERM, EPERM_MSG);
        refusals_log(&s->refusals, &q.h);
        encode_err(s, &rh, &e);
        goto reply;
    }
    /* the entry is looked up here and created only once the request is not refused */
    struct reply_entry *ce = NULL;
    uint32_t crc = 0;
    int cacheable = q.h.cid && q.h.has_seq;
    if (cacheable) {
        crc = crc32c(0, body, len);
        ce = replies_find(&s->replies, q.h.cid, q.h.cid_len, 0);
        if (replies_hit(ce, q.h.seq, crc)) {
            s->cache_hits++;
            char cid[PROTO_BANK_ESCAPED(sizeof ce->cid)];
            log_debug("retry of %s seq %llu from %s answered from the cache",
                      proto_bank_op_name(q.h.op), (unsigned long long)q.h.seq,
                      ESC(cid, ce->cid, strlen(ce->cid)));
            zmq_msg_init(&out);
            zmq_msg_copy(&out, &ce->reply);
            server_send(s, id, delim, &out);
            return;
        }
    }
    int rc = server_dispatch(s, &q, ce, &rh, &out, &have_out, &e);
    if (rc != 0 && !strcmp(e.code, BANK_EPERM)) { /* restore of another run's snapshot */
        refusals_log(&s->refusals, &q.h);
        encode_err(s, &rh, &e);
        goto reply;
    }
    if (rc != 0) {
        log_debug("%s failed: %s %s", proto_bank_op_name(q.h.op), e.code, e.msg);
        encode_err(s, &rh, &e);
    }
    if (cacheable)
        ce = replies_find(&s->replies, q.h.cid, q.h.cid_len, 1);
    if (ce) {
        if (op_writes_state(q.h.op) && !have_out && sb_to_msg(s, &out) == 0) {
            replies_record(ce, q.h.seq, crc, &out);
            server_send(s, id, delim, &out);
            return;
        }
        replies_record(ce, q.h.seq, crc, NULL);
    }
reply:
    if (!have_out && sb_to_msg(s, &out) != 0) {
        log_error("cannot allocate a reply");
        return;
    }
    server_send(s, id, delim, &out);
}

/* Receives one message from the ROUTER (identity + parts) and handles it. */
static void server_recv_one(struct server *s)
{
    zmq_msg_t parts[3];
    int n = 0, more = 1;
    while (more && n < 3) {
        zmq_msg_init(&parts[n]);
        if (zmq_msg_recv(&parts[n], s->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&parts[n]);
            break;
        }
        more = zmq_msg_more(&parts[n]);
        n++;
    }
    if (more && n == 3) {
        msg_drain_more(s->sock);
        n = 4; /* too many parts */
    }
    if (n >= 2) {
        struct bank_err e;
        struct bank_rep_hdr rh = { 0, 0 };
        int delim = 0;
        zmq_msg_t *body = &parts[1];
        if (n == 3 && zmq_msg_size(&parts[1]) == 0) {
            delim = 1;
            body = &parts[2];
        } else if (n != 2) {
            s->requests++;
            bank_err_set(&e, BANK_EPROTO, "a request is one frame (after the routing envelope)");
            encode_err(s, &rh, &e);
            zmq_msg_t out;
            if (sb_to_msg(s, &out) == 0)
                server_send(s, &parts[0], 0, &out);
            goto done;
        }
        server_handle(s, &parts[0], delim, zmq_msg_data(body), zmq_msg_size(body));
    }
done:
    for (int i = 0; i < n && i < 3; i++)
        zmq_msg_close(&parts[i]);
}

/* ---- lifecycle ----------------------------------------------------------------------------- */

uint64_t server_transport_limit(uint64_t max_frame)
{
    return max_frame * SERVER_TRANSPORT_FACTOR;
}

/* Creates the bank --rows/--dim ask for, within --max-bytes; 0, or -1 (reason logged). */
static int server_bank_from_flags(struct server *s, const struct server_cfg *cfg)
{
    if (cfg->rows < cfg->shards) {
        log_error("a bank of %llu rows cannot be split in %u shards (each needs at least one "
                  "row)", (unsigned long long)cfg->rows, cfg->shards);
        return -1;
    }
    uint64_t lo = proto_bank_shard_start(cfg->rows, cfg->shard, cfg->shards);
    uint64_t need = bank_bytes(proto_bank_shard_start(cfg->rows, cfg->shard + 1ull, cfg->shards) -
                               lo, cfg->dim);
    if (need > cfg->max_bytes) {
        log_error("a %llu x %llu bank needs %llu bytes, more than --max-bytes %llu; raise "
                  "--max-bytes or ask for a smaller bank", (unsigned long long)cfg->rows,
                  (unsigned long long)cfg->dim, (unsigned long long)need,
                  (unsigned long long)cfg->max_bytes);
        return -1;
    }
    s->bank = bank_new_shard(cfg->rows, (size_t)cfg->dim, cfg->seed, cfg->mode, cfg->shard,
                             cfg->shards);
    if (!s->bank) {
        log_error("cannot allocate a %llu x %llu bank", (unsigned long long)cfg->rows,
                  (unsigned long long)cfg->dim);
        return -1;
    }
    log_info("bank created from flags: %llu x %llu%s, seed %llu", (unsigned long long)cfg->rows,
             (unsigned long long)cfg->dim, shard_desc(s->bank), (unsigned long long)cfg->seed);
    return 0;
}

struct server *server_new(const struct server_cfg *cfg)
{
    struct server *s = calloc(1, sizeof *s);
    if (!s) {
        log_error("out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    msgpack_sbuffer_init(&s->sb);
    msgpack_packer_init(&s->pk, &s->sb, msgpack_sbuffer_write);
    if (replies_init(&s->replies, cfg->cache_clients) != 0) {
        log_error("out of memory");
        goto fail_server;
    }
    if (snapsched_init(&s->snap, cfg->dir, cfg->snapshot_every) != 0)
        goto fail_server; /* logged */
    const char *dir = s->snap.dir;
    if (dir[0]) {
        int found = 0;
        char path[PATH_MAX];
        errno = 0;
        s->bank = snapshot_load_newest(dir, cfg->max_bytes, &found, path, sizeof path);
        if (!s->bank && errno == EFBIG)
            goto fail_server; /* logged: a snapshot larger than --max-bytes */
        if (s->bank) {
            s->snap.step = s->bank->step;
            s->snap.valid = 1;
            s->snap.stat_step = s->bank->step;
            char run[ESC_ID];
            log_info("loaded snapshot %s: %llu x %zu%s, step %llu, run '%s', %s", path,
                     (unsigned long long)s->bank->total, s->bank->dim, shard_desc(s->bank),
                     (unsigned long long)s->bank->step,
                     ESC(run, s->bank->run, strlen(s->bank->run)),
                     s->bank->has_token ? "writes need its token" : "no write token");
            replies_load(&s->replies, s->bank);
        } else if (found) {
            log_error("no usable snapshot in %s; starting without a bank", dir);
        }
    } else {
        log_warn("no --dir: snapshots disabled, the bank lives in memory only");
    }
    if (s->bank && (s->bank->shard != cfg->shard || s->bank->shards != cfg->shards)) {
        log_error("the snapshot in %s holds shard %u/%u (rows [%llu, %llu) of %llu) but this "
                  "bankd is --shard %u/%u; give each shard its own --dir", dir, s->bank->shard,
                  s->bank->shards, (unsigned long long)s->bank->lo,
                  (unsigned long long)(s->bank->lo + s->bank->rows),
                  (unsigned long long)s->bank->total, cfg->shard, cfg->shards);
        goto fail_server;
    }
    if (s->bank && cfg->rows && (s->bank->total != cfg->rows || s->bank->dim != cfg->dim)) {
        log_error("snapshot in %s holds a %llu x %zu bank but --rows/--dim ask %llu x %llu; "
                  "move the snapshot away or fix the flags", dir,
                  (unsigned long long)s->bank->total, s->bank->dim,
                  (unsigned long long)cfg->rows, (unsigned long long)cfg->dim);
        goto fail_server;
    }
    if (!s->bank && cfg->rows && cfg->dim && server_bank_from_flags(s, cfg) != 0)
        goto fail_server;
    struct msg_opts o = MSG_OPTS_DEFAULT;
    o.maxmsgsize = (int64_t)server_transport_limit(cfg->max_frame);
    o.sndhwm = 100;
    o.rcvhwm = SERVER_RCVHWM;
    o.curve = cfg->curve;
    s->sock = msg_socket(ZMQ_ROUTER, &o);
    if (!s->sock) {
        log_error("cannot create the socket: %s", zmq_strerror(errno));
        goto fail_server;
    }
    if (msg_bind(s->sock, cfg->bind, cfg->allow_remote) != 0)
        goto fail_server;
    snapsched_start(&s->snap);
    return s;
fail_server:
    server_destroy(&s);
    return NULL;
}

void server_destroy(struct server **sp)
{
    if (!sp || !*sp)
        return;
    struct server *s = *sp;
    msg_close(&s->sock);
    replies_deinit(&s->replies);
    bank_destroy(&s->bank);
    msgpack_sbuffer_destroy(&s->sb);
    free(s);
    *sp = NULL;
}

int server_run(struct server *s)
{
    if (s->cfg.shards > 1)
        log_info("serving on %s as shard %u/%u", s->cfg.bind, s->cfg.shard, s->cfg.shards);
    else
        log_info("serving on %s", s->cfg.bind);
    while (!sig_stop) {
        int timeout = snapsched_timeout(&s->snap, 1000);
        int rc = msg_wait(s->sock, ZMQ_POLLIN, timeout, &sig_stop);
        if (rc < 0) {
            if (errno == EINTR)
                break;
            log_error("poll failed: %s", zmq_strerror(errno));
            return -1;
        }
        /* drain what is queued, then look at the clock */
        for (int i = 0; rc > 0 && i < 64 && !sig_stop; i++) {
            server_recv_one(s);
            zmq_pollitem_t it = { s->sock, 0, ZMQ_POLLIN, 0 };
            rc = zmq_poll(&it, 1, 0);
        }
        snapsched_tick(&s->snap, s->bank, &s->replies);
    }
    log_info("stopping (signal %d)", (int)sig_stop_signo);
    return snapsched_final(&s->snap, s->bank, &s->replies);
}
