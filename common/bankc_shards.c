/* bankd client over a bank sharded by row range: see bankc.h ("Shards") and
 * docs/protocol.md ("Shards").
 *
 * Each call is one round: its requests are encoded and sent to every shard concerned, and
 * only then are the replies collected, in shard order (each shard with its own retries), so
 * the round trips overlap. A reply frame stays in its msg_client until that client's next
 * request, so the round's replies are decoded in place and reassembled after the last one.
 * A round waits for every reply it sent for, also after a failure, and reports the first
 * failure with its shard and endpoint; nothing is copied to the caller unless every shard
 * answered. */
#include "common/bankc_impl.h"

#include "common/bankrow.h"
#include "common/msg.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define SHARDS_GET_CHUNK_BYTES ((size_t)4 << 20)

/* ---- lifecycle ------------------------------------------------------------------------------ */

int bankc_shards_open(struct bankc *c, const char *endpoints, const char *cid, int timeout_ms,
                      int retries, const struct msg_opts *o)
{
    size_t n = 1;
    for (const char *p = endpoints; *p; p++)
        n += *p == ',';
    if (n > BANK_MAX_SHARDS) {
        errno = EINVAL;
        return -1;
    }
    char base[65];
    if (cid && *cid) {
        if (strlen(cid) + 7 > 64) { /* "/s" and up to 5 digits must fit in a 64-byte cid */
            errno = EINVAL;
            return -1;
        }
        snprintf(base, sizeof base, "%s", cid);
    } else {
        uint64_t r = 0;
        if (getrandom(&r, sizeof r, 0) != (ssize_t)sizeof r)
            r = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)c;
        snprintf(base, sizeof base, "%016llx", (unsigned long long)r);
    }
    c->sh = calloc(n, sizeof *c->sh);
    if (!c->sh)
        return -1;
    c->nsh = n;
    const char *p = endpoints;
    for (size_t i = 0; i < n; i++) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        struct bankc_shard *s = &c->sh[i];
        if (len == 0 || len >= sizeof s->ep) {
            errno = EINVAL;
            goto fail_shards;
        }
        memcpy(s->ep, p, len);
        s->ep[len] = 0;
        char scid[96]; /* at most 64 used: checked above */
        snprintf(scid, sizeof scid, "%s/s%zu", base, i);
        s->mc = msg_client_new(s->ep, scid, timeout_ms, retries, o);
        if (!s->mc)
            goto fail_shards;
        p = end ? end + 1 : p + len;
    }
    return 0;
fail_shards:;
    int saved = errno;
    bankc_shards_close(c);
    errno = saved;
    return -1;
}

void bankc_shards_close(struct bankc *c)
{
    for (size_t i = 0; c->sh && i < c->nsh; i++) {
        struct bankc_shard *s = &c->sh[i];
        msg_client_destroy(&s->mc);
        free(s->idx);
        free(s->feat);
        free(s->pos);
    }
    free(c->sh);
    c->sh = NULL;
    c->nsh = 0;
    c->mc = NULL;
}

void bankc_shards_cancel(struct bankc *c)
{
    for (size_t i = 0; i < c->nsh; i++) {
        msg_client_cancel(c->sh[i].mc);
        c->sh[i].sent = 0;
    }
}

/* ---- one round ------------------------------------------------------------------------------ */

/* Starts a call: EBUSY while a sample is outstanding; otherwise whatever an earlier call
 * left outstanding (an interrupted update nobody finished, the rest of a blocking call the
 * stop flag interrupted) is abandoned, as bankc.c does, and no shard holds a reply of this
 * call yet. */
static int shards_begin(struct bankc *c)
{
    if (c->sample_busy)
        return bankc_fail(c, EBUSY, BANK_EBUSY, "a sample request is outstanding");
    bankc_shards_cancel(c);
    c->update_busy = 0;
    for (size_t i = 0; i < c->nsh; i++)
        c->sh[i].got = c->sh[i].failed = 0;
    return 0;
}

/* Starts a request to shard s: clears the encoding buffer, fills the header (the shard's cid
 * and seq; the token when write and one is set) and forgets the shard's previous round. */
static struct bank_hdr shard_hdr(struct bankc *c, struct bankc_shard *s, int write)
{
    msgpack_sbuffer_clear(&c->sb);
    const char *cid = msg_client_cid(s->mc);
    struct bank_hdr h = { BANK_OP_NONE, cid, strlen(cid), msg_client_next_seq(s->mc), 1,
                          write && c->token_len ? c->token : NULL,
                          write && c->token_len ? c->token_len : 0 };
    s->sent = s->got = s->failed = 0;
    return h;
}

/* Sends the request encoded for shard s (enc_rc: the encoder's result). On failure the
 * requests already sent this round are abandoned. */
static int shard_send(struct bankc *c, struct bankc_shard *s, int enc_rc)
{
    if (enc_rc != 0) {
        bankc_shards_cancel(c);
        return bankc_fail(c, ENOMEM, BANK_ENOMEM, "cannot encode the request");
    }
    if (msg_client_send(s->mc, c->sb.data, c->sb.size) != 0) {
        int err = errno;
        bankc_shards_cancel(c);
        return bankc_fail(c, err, "ESEND", "shard %zu (%s): send failed: %s",
                          (size_t)(s - c->sh), s->ep, strerror(err));
    }
    s->sent = 1;
    return 0;
}

/* Collects the replies of every shard sent to and not yet answered, decoding each for op.
 * -1 with EINTR (the stop flag) leaves the rest outstanding, to be collected by another
 * call; any other failure is reported after every reply was waited for (the first failure's
 * code and message, prefixed with its shard). */
static int shards_collect(struct bankc *c, enum bank_op op)
{
    int first_err = 0;
    char code[16] = "", msg[600] = "";
    for (size_t i = 0; i < c->nsh; i++) {
        struct bankc_shard *s = &c->sh[i];
        if (!s->sent || s->got)
            continue;
        const void *buf;
        size_t len;
        if (msg_client_recv(s->mc, &buf, &len) != 0) {
            if (errno == EINTR)
                return bankc_fail(c, EINTR, "ERECV", "interrupted waiting for shard %zu (%s)",
                                  i, s->ep);
            int err = errno;
            s->sent = 0;
            if (!first_err) {
                first_err = err;
                snprintf(code, sizeof code, "%s", err == ETIMEDOUT ? BANK_ETIMEDOUT : "ERECV");
                snprintf(msg, sizeof msg, "shard %zu (%s): %s", i, s->ep, err == ETIMEDOUT ?
                         "no reply from bankd (if the server uses CURVE, check "
                         "--bank-server-key/--curve-key)" : strerror(err));
            }
            continue;
        }
        s->got = 1;
        struct bank_err e;
        if (proto_bank_decode_rep(buf, len, op, &s->rep, &e) != 0) {
            s->failed = 1;
            if (!first_err) {
                first_err = EPROTO;
                snprintf(code, sizeof code, "%s", e.code);
                snprintf(msg, sizeof msg, "shard %zu (%s): %s: %s", i, s->ep,
                         proto_bank_op_name(op), e.msg);
            }
        }
    }
    for (size_t i = 0; i < c->nsh; i++)
        c->sh[i].sent = c->sh[i].sent && !c->sh[i].got; /* the round is over for the answered */
    if (first_err)
        return bankc_fail(c, first_err, code, "%s", msg);
    c->code[0] = 0;
    c->err[0] = 0;
    return 0;
}

/* The step every shard answering this round reports (step_of reads it from a reply); -1 with
 * EPROTO when they differ. what names the call. */
static int shards_same_step(struct bankc *c, uint64_t (*step_of)(const union bank_rep_u *),
                            const char *what, uint64_t *step)
{
    size_t first = c->nsh;
    *step = 0;
    for (size_t i = 0; i < c->nsh; i++) {
        if (!c->sh[i].got)
            continue;
        uint64_t st = step_of(&c->sh[i].rep);
        if (first == c->nsh) {
            first = i;
            *step = st;
        } else if (st != *step) {
            return bankc_fail(c, EPROTO, BANK_EPROTO, "shards disagree on the bank step after "
                              "%s: shard %zu (%s) at %llu, shard %zu (%s) at %llu (restore them "
                              "to one snapshot)", what, first, c->sh[first].ep,
                              (unsigned long long)*step, i, c->sh[i].ep, (unsigned long long)st);
        }
    }
    return 0;
}

static uint64_t step_of_step(const union bank_rep_u *r) { return r->step.step; }
static uint64_t step_of_init(const union bank_rep_u *r) { return r->init.step; }
static uint64_t step_of_info(const union bank_rep_u *r) { return r->info.step; }
static uint64_t step_of_sample(const union bank_rep_u *r) { return r->sample.step; }
static uint64_t step_of_snapshot(const union bank_rep_u *r) { return r->snapshot.step; }
static uint64_t step_of_stats(const union bank_rep_u *r) { return r->stats.step; }

/* Sets every shard's range from the global rows n. */
static void shards_set_rows(struct bankc *c, uint64_t n)
{
    c->rows = n;
    for (size_t i = 0; i < c->nsh; i++) {
        c->sh[i].lo = proto_bank_shard_start(n, i, c->nsh);
        c->sh[i].hi = proto_bank_shard_start(n, i + 1, c->nsh);
    }
}

/* The shard holding global row r (< c->rows). */
static size_t shard_of(const struct bankc *c, uint32_t r)
{
    size_t lo = 0, hi = c->nsh - 1;
    while (lo < hi) { /* the last shard whose first row is <= r */
        size_t mid = lo + (hi - lo + 1) / 2;
        if (c->sh[mid].lo <= r)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* ---- init / info ---------------------------------------------------------------------------- */

/* Equal strings of lengths la and lb (NULL: absent, equal only to absent). */
static int same_str(const char *a, size_t la, const char *b, size_t lb)
{
    if (!a || !b)
        return !a == !b;
    return la == lb && !memcmp(a, b, la);
}

/* Checks the info replies of every shard: each is the shard its place in the list says,
 * holds the range the rows give it, and agrees with shard 0 on rows, dim, run, manifest,
 * token state and step. */
static int shards_check_info(struct bankc *c)
{
    const struct bank_info_rep *r0 = &c->sh[0].rep.info;
    for (size_t i = 0; i < c->nsh; i++) {
        const struct bank_info_rep *r = &c->sh[i].rep.info;
        const char *ep = c->sh[i].ep;
        uint64_t lo = proto_bank_shard_start(r0->rows, i, c->nsh);
        uint64_t hi = proto_bank_shard_start(r0->rows, i + 1, c->nsh);
        if (r->shard != i || r->shards != c->nsh)
            return bankc_fail(c, EPROTO, BANK_EMISMATCH, "%s is shard %llu/%llu, expected "
                              "%zu/%zu (the endpoints are listed in shard order)", ep,
                              (unsigned long long)r->shard, (unsigned long long)r->shards, i,
                              c->nsh);
        if (r->rows != r0->rows || r->dim != r0->dim)
            return bankc_fail(c, EPROTO, BANK_EMISMATCH, "%s holds a %llu x %llu bank, %s "
                              "%llu x %llu", ep, (unsigned long long)r->rows,
                              (unsigned long long)r->dim, c->sh[0].ep,
                              (unsigned long long)r0->rows, (unsigned long long)r0->dim);
        if (r->shard_start != lo || r->shard_end != hi)
            return bankc_fail(c, EPROTO, BANK_EMISMATCH, "%s holds rows [%llu, %llu), shard %zu "
                              "of %zu should hold [%llu, %llu)", ep,
                              (unsigned long long)r->shard_start,
                              (unsigned long long)r->shard_end, i, c->nsh,
                              (unsigned long long)lo, (unsigned long long)hi);
        if (!same_str(r->run, r->run_len, r0->run, r0->run_len) ||
            !same_str(r->manifest, r->manifest_len, r0->manifest, r0->manifest_len))
            return bankc_fail(c, EPROTO, BANK_EMISMATCH, "%s holds another run or manifest than "
                              "%s", ep, c->sh[0].ep);
        if (r->has_token != r0->has_token)
            return bankc_fail(c, EPROTO, BANK_EMISMATCH, "%s %s a write token, %s %s", ep,
                              r->has_token ? "has" : "has no", c->sh[0].ep,
                              r0->has_token ? "has" : "has none");
    }
    uint64_t step;
    if (shards_same_step(c, step_of_info, "info", &step) != 0)
        return -1;
    c->dim = r0->dim;
    shards_set_rows(c, r0->rows);
    return 0;
}

/* One info round, checked; the replies stay in c->sh[i].rep.info. */
/* Sends a request that is its header alone (info, stats) to every shard and collects the
 * replies of operation op. */
static int shards_hdr_round(struct bankc *c,
                            int (*enc)(msgpack_packer *pk, const struct bank_hdr *h),
                            enum bank_op op)
{
    if (shards_begin(c) != 0)
        return -1;
    for (size_t i = 0; i < c->nsh; i++) {
        struct bankc_shard *s = &c->sh[i];
        struct bank_hdr h = shard_hdr(c, s, 0);
        if (shard_send(c, s, enc(&c->pk, &h)) != 0)
            return -1;
    }
    return shards_collect(c, op);
}

static int shards_info_round(struct bankc *c)
{
    if (shards_hdr_round(c, proto_bank_encode_info_req, BANK_OP_INFO) != 0)
        return -1;
    return shards_check_info(c);
}

int bankc_shards_info(struct bankc *c, struct bankc_info *out)
{
    if (shards_info_round(c) != 0)
        return -1;
    if (out) {
        const struct bank_info_rep *r = &c->sh[0].rep.info;
        memset(out, 0, sizeof *out);
        out->rows = r->rows;
        out->dim = r->dim;
        out->step = r->step;
        if (r->run)
            snprintf(out->run, sizeof out->run, "%.*s", (int)r->run_len, r->run);
        out->has_token = r->has_token;
        if (r->manifest) {
            out->has_manifest = 1;
            snprintf(out->manifest, sizeof out->manifest, "%.*s", (int)r->manifest_len,
                     r->manifest);
        }
    }
    return 0;
}

int bankc_shards_init(struct bankc *c, const struct bank_init_req *q, int *created,
                      uint64_t *step)
{
    if (shards_begin(c) != 0)
        return -1;
    for (size_t i = 0; i < c->nsh; i++) {
        struct bankc_shard *s = &c->sh[i];
        struct bank_hdr h = shard_hdr(c, s, 1);
        if (shard_send(c, s, proto_bank_encode_init_req(&c->pk, &h, q)) != 0)
            return -1;
    }
    if (shards_collect(c, BANK_OP_INIT) != 0)
        return -1;
    int any_created = 0;
    for (size_t i = 0; i < c->nsh; i++)
        any_created |= c->sh[i].rep.init.created;
    uint64_t st;
    if (shards_same_step(c, step_of_init, "init", &st) != 0 || shards_info_round(c) != 0)
        return -1;
    if (created)
        *created = any_created;
    if (step)
        *step = st;
    return 0;
}

/* ---- rows sample ---------------------------------------------------------------------------- */

int bankc_shards_rows_send(struct bankc *c, const uint32_t *neg_idx, size_t k,
                           const uint32_t *pos_idx, size_t B)
{
    if (shards_begin(c) != 0)
        return -1;
    for (size_t j = 0; j < k; j++)
        if (neg_idx[j] >= c->rows)
            return bankc_fail(c, EINVAL, BANK_ERANGE, "rows: neg_idx[%zu] = %u out of range "
                              "(rows %llu)", j, neg_idx[j], (unsigned long long)c->rows);
    for (size_t j = 0; j < B; j++)
        if (pos_idx[j] >= c->rows)
            return bankc_fail(c, EINVAL, BANK_ERANGE, "rows: pos[%zu] = %u out of range "
                              "(rows %llu)", j, pos_idx[j], (unsigned long long)c->rows);
    if (bankc_grow((void **)&c->given, &c->given_cap, k, sizeof *c->given) != 0 ||
        bankc_grow((void **)&c->given_pos, &c->given_pos_cap, B, sizeof *c->given_pos) != 0)
        return bankc_fail(c, ENOMEM, BANK_ENOMEM, "rows: out of memory");
    for (size_t i = 0; i < c->nsh; i++) {
        struct bankc_shard *s = &c->sh[i];
        s->nidx = s->npos = 0;
        /* one more than needed: a shard with positives only gets one of them as its negative */
        if (bankc_grow((void **)&s->idx, &s->idx_cap, k + 1, sizeof *s->idx) != 0 ||
            bankc_grow((void **)&s->pos, &s->pos_cap, B, sizeof *s->pos) != 0)
            return bankc_fail(c, ENOMEM, BANK_ENOMEM, "rows: out of memory");
    }
    memcpy(c->given, neg_idx, k * sizeof *neg_idx);
    if (B)
        memcpy(c->given_pos, pos_idx, B * sizeof *pos_idx);
    for (size_t j = 0; j < k; j++) {
        struct bankc_shard *s = &c->sh[shard_of(c, neg_idx[j])];
        s->idx[s->nidx++] = neg_idx[j];
    }
    for (size_t j = 0; j < B; j++) {
        struct bankc_shard *s = &c->sh[shard_of(c, pos_idx[j])];
        s->pos[s->npos++] = pos_idx[j];
    }
    for (size_t i = 0; i < c->nsh; i++) {
        struct bankc_shard *s = &c->sh[i];
        if (!s->nidx && !s->npos) {
            s->sent = s->got = s->failed = 0;
            continue;
        }
        if (!s->nidx) /* a rows request names at least one negative; this one is dropped */
            s->idx[s->nidx++] = s->pos[0];
        struct bank_hdr h = shard_hdr(c, s, 0);
        struct bank_sample_req q = { s->nidx, s->pos, s->npos, 0, s->idx, 1 };
        if (shard_send(c, s, proto_bank_encode_sample_req(&c->pk, &h, &q)) != 0)
            return -1;
    }
    c->sample_busy = 1;
    c->sample_k = k;
    c->sample_b = B;
    c->sample_given = 1;
    return 0;
}

int bankc_shards_sample_recv(struct bankc *c, uint32_t *neg_idx, float *neg, float *pos,
                             uint64_t *step)
{
    int rc = shards_collect(c, BANK_OP_SAMPLE);
    if (rc != 0 && errno == EINTR)
        return -1; /* still outstanding: may be collected again */
    c->sample_busy = 0;
    if (rc != 0)
        return -1;
    size_t k = c->sample_k, B = c->sample_b, dim = (size_t)c->dim;
    for (size_t i = 0; i < c->nsh; i++) {
        struct bankc_shard *s = &c->sh[i];
        const struct bank_sample_rep *r = &s->rep.sample;
        if (!s->got)
            continue;
        if (r->k != s->nidx || r->nneg != s->nidx * dim || r->npos != s->npos * dim)
            return bankc_fail(c, EPROTO, BANK_EPROTO, "shard %zu (%s): sample reply has %zu "
                              "negatives / %zu + %zu floats, expected %zu (dim %zu, B %zu)", i,
                              s->ep, r->k, r->nneg, r->npos, s->nidx, dim, s->npos);
        if (memcmp(r->neg_idx, s->idx, 4 * s->nidx) != 0)
            return bankc_fail(c, EPROTO, BANK_EPROTO, "shard %zu (%s): rows reply echoes other "
                              "negatives than asked", i, s->ep);
    }
    uint64_t st = 0;
    if (shards_same_step(c, step_of_sample, "sample", &st) != 0)
        return -1;
    /* every shard's rows come in the caller's order within it: one cursor each */
    for (size_t i = 0; i < c->nsh; i++)
        c->sh[i].nidx = c->sh[i].npos = 0;
    size_t row = 4 * dim;
    for (size_t j = 0; j < k; j++) {
        struct bankc_shard *s = &c->sh[shard_of(c, c->given[j])];
        memcpy((char *)neg + j * row, (const char *)s->rep.sample.neg + s->nidx++ * row, row);
    }
    for (size_t j = 0; j < B; j++) {
        struct bankc_shard *s = &c->sh[shard_of(c, c->given_pos[j])];
        memcpy((char *)pos + j * row, (const char *)s->rep.sample.pos + s->npos++ * row, row);
    }
    memcpy(neg_idx, c->given, 4 * k);
    if (step)
        *step = st;
    return 0;
}

/* ---- update / set --------------------------------------------------------------------------- */

/* What bankd would refuse in feature row j (dim values): non-finite, subnormal, zero norm.
 * 0, or -1 with EINVAL. */
static int check_feat(struct bankc *c, const char *what, const float *f, size_t dim, size_t j)
{
    double ss = 0;
    for (size_t d = 0; d < dim; d++) {
        int k = fpclassify(f[d]);
        if (k == FP_NAN || k == FP_INFINITE || k == FP_SUBNORMAL)
            return bankc_fail(c, EINVAL, BANK_EINVAL, "%s: feat row %zu has a %s value", what, j,
                              k == FP_SUBNORMAL ? "subnormal" : "non-finite");
        ss += (double)f[d] * f[d];
    }
    if (!(sqrt(ss) >= BANKROW_MIN_NORM))
        return bankc_fail(c, EINVAL, BANK_EINVAL, "%s: feat row %zu has zero norm", what, j);
    return 0;
}

int bankc_shards_write_send(struct bankc *c, enum bank_op op, const uint32_t *idx,
                            const float *feat, size_t B, float momentum)
{
    if (shards_begin(c) != 0)
        return -1;
    const char *what = op == BANK_OP_SET ? "set" : "update";
    size_t dim = (size_t)c->dim;
    /* everything bankd checks is checked here first, so no shard applies a write another
       refuses: the write stays all or nothing across the shards */
    if (op == BANK_OP_UPDATE && !(momentum >= 0 && momentum <= 1))
        return bankc_fail(c, EINVAL, BANK_EINVAL, "update: momentum %g outside [0, 1]",
                          (double)momentum);
    for (size_t j = 0; j < B; j++) {
        if (idx[j] >= c->rows)
            return bankc_fail(c, EINVAL, BANK_ERANGE, "%s: idx[%zu] = %u out of range (rows "
                              "%llu)", what, j, idx[j], (unsigned long long)c->rows);
        if (check_feat(c, what, feat + j * dim, dim, j) != 0)
            return -1;
    }
    for (size_t i = 0; i < c->nsh; i++) {
        struct bankc_shard *s = &c->sh[i];
        s->nidx = 0;
        if (bankc_grow((void **)&s->idx, &s->idx_cap, B, sizeof *s->idx) != 0 ||
            bankc_grow((void **)&s->feat, &s->feat_cap, B * dim, sizeof *s->feat) != 0)
            return bankc_fail(c, ENOMEM, BANK_ENOMEM, "%s: out of memory", what);
    }
    for (size_t j = 0; j < B; j++) { /* in order: a repeated index stays in order */
        struct bankc_shard *s = &c->sh[shard_of(c, idx[j])];
        s->idx[s->nidx] = idx[j];
        memcpy(s->feat + s->nidx * dim, feat + j * dim, dim * sizeof *feat);
        s->nidx++;
    }
    /* every shard counts every write (an empty one where it holds none of the rows), so the
       shards' steps stay equal */
    for (size_t i = 0; i < c->nsh; i++) {
        struct bankc_shard *s = &c->sh[i];
        struct bank_hdr h = shard_hdr(c, s, 1);
        struct bank_update_req q = { s->idx, s->nidx, s->feat, s->nidx * dim, momentum };
        int enc = op == BANK_OP_SET ? proto_bank_encode_set_req(&c->pk, &h, &q)
                                    : proto_bank_encode_update_req(&c->pk, &h, &q);
        if (shard_send(c, s, enc) != 0)
            return -1;
    }
    c->update_busy = 1;
    c->update_op = op;
    return 0;
}

int bankc_shards_write_finish(struct bankc *c, uint64_t *step)
{
    int rc = shards_collect(c, c->update_op);
    if (rc != 0 && errno == EINTR)
        return -1; /* still outstanding: finish it, or the next request abandons it */
    c->update_busy = 0;
    if (rc != 0)
        return -1;
    uint64_t st;
    if (shards_same_step(c, step_of_step, c->update_op == BANK_OP_SET ? "set" : "update",
                         &st) != 0)
        return -1;
    if (step)
        *step = st;
    return 0;
}

/* ---- get ------------------------------------------------------------------------------------ */

int bankc_shards_get(struct bankc *c, uint64_t start, uint64_t count, float *out)
{
    if (shards_begin(c) != 0)
        return -1;
    if (start > c->rows || count > c->rows - start)
        return bankc_fail(c, EINVAL, BANK_ERANGE, "get: rows [%llu, %llu + %llu) outside the "
                          "bank (rows %llu)", (unsigned long long)start,
                          (unsigned long long)start, (unsigned long long)count,
                          (unsigned long long)c->rows);
    size_t dim = (size_t)c->dim;
    uint64_t per = SHARDS_GET_CHUNK_BYTES / (4 * dim), end = start + count;
    if (per == 0)
        per = 1;
    /* shard i's part is [a, b) = [lo, hi) within [start, end); each round asks every shard
       with rows left for its next chunk of at most per rows */
    for (size_t i = 0; i < c->nsh; i++)
        c->sh[i].chunks = 0;
    uint64_t done = 0;
    while (done < count) {
        for (size_t i = 0; i < c->nsh; i++) {
            struct bankc_shard *s = &c->sh[i];
            uint64_t a = s->lo > start ? s->lo : start, b = s->hi < end ? s->hi : end;
            uint64_t from = a + s->chunks * per;
            s->sent = s->got = 0;
            if (a >= b || from >= b)
                continue;
            uint64_t n = b - from < per ? b - from : per;
            struct bank_hdr h = shard_hdr(c, s, 0);
            struct bank_get_req q = { from, n };
            if (shard_send(c, s, proto_bank_encode_get_req(&c->pk, &h, &q)) != 0)
                return -1;
        }
        if (shards_collect(c, BANK_OP_GET) != 0)
            return -1;
        for (size_t i = 0; i < c->nsh; i++) {
            struct bankc_shard *s = &c->sh[i];
            if (!s->got)
                continue;
            uint64_t a = s->lo > start ? s->lo : start, b = s->hi < end ? s->hi : end;
            uint64_t from = a + s->chunks * per;
            uint64_t n = b - from < per ? b - from : per;
            if (s->rep.get.nrows_f != n * dim || s->rep.get.start != from)
                return bankc_fail(c, EPROTO, BANK_EPROTO, "shard %zu (%s): get reply has %zu "
                                  "floats from row %llu, expected %llu from %llu", i, s->ep,
                                  s->rep.get.nrows_f, (unsigned long long)s->rep.get.start,
                                  (unsigned long long)(n * dim), (unsigned long long)from);
            memcpy(out + (from - start) * dim, s->rep.get.rows, 4 * n * dim);
            s->chunks++;
            done += n;
        }
    }
    return 0;
}

/* ---- snapshot / restore / stats ------------------------------------------------------------ */

int bankc_shards_snapshot(struct bankc *c, const char *name, char *path, size_t path_cap,
                          uint64_t *step)
{
    if (shards_begin(c) != 0)
        return -1;
    for (size_t i = 0; i < c->nsh; i++) {
        struct bankc_shard *s = &c->sh[i];
        struct bank_hdr h = shard_hdr(c, s, 1);
        struct bank_snapshot_req q = { name, name ? strlen(name) : 0 };
        if (shard_send(c, s, proto_bank_encode_snapshot_named_req(&c->pk, &h, &q)) != 0)
            return -1;
    }
    uint64_t st;
    if (shards_collect(c, BANK_OP_SNAPSHOT) != 0 ||
        shards_same_step(c, step_of_snapshot, "snapshot", &st) != 0)
        return -1;
    const struct bank_snapshot_rep *r = &c->sh[0].rep.snapshot;
    if (path && path_cap)
        snprintf(path, path_cap, "%.*s", (int)r->path_len, r->path);
    if (step)
        *step = st;
    return 0;
}

int bankc_shards_restore(struct bankc *c, const char *name, uint64_t step, uint64_t *step_out)
{
    if (shards_begin(c) != 0)
        return -1;
    for (size_t i = 0; i < c->nsh; i++) {
        struct bankc_shard *s = &c->sh[i];
        struct bank_hdr h = shard_hdr(c, s, 1);
        struct bank_restore_req q = { name, strlen(name), step };
        if (shard_send(c, s, proto_bank_encode_restore_req(&c->pk, &h, &q)) != 0)
            return -1;
    }
    uint64_t st;
    if (shards_collect(c, BANK_OP_RESTORE) != 0 ||
        shards_same_step(c, step_of_step, "restore", &st) != 0)
        return -1;
    if (step_out)
        *step_out = st;
    return 0;
}

int bankc_shards_stats(struct bankc *c, struct bank_stats_rep *out)
{
    uint64_t st;
    if (shards_hdr_round(c, proto_bank_encode_stats_req, BANK_OP_STATS) != 0 ||
        shards_same_step(c, step_of_stats, "stats", &st) != 0)
        return -1;
    /* the whole bank's: sums, extremes, row-weighted means; snapshot_step the oldest */
    *out = c->sh[0].rep.stats;
    double nsum = out->norm_mean * (double)out->rows, ssum = out->stale_mean * (double)out->rows;
    for (size_t i = 1; i < c->nsh; i++) {
        const struct bank_stats_rep *r = &c->sh[i].rep.stats;
        out->rows += r->rows;
        nsum += r->norm_mean * (double)r->rows;
        ssum += r->stale_mean * (double)r->rows;
        out->norm_min = r->norm_min < out->norm_min ? r->norm_min : out->norm_min;
        out->norm_max = r->norm_max > out->norm_max ? r->norm_max : out->norm_max;
        out->writes += r->writes;
        out->rows_written += r->rows_written;
        out->upd_min = r->upd_min < out->upd_min ? r->upd_min : out->upd_min;
        out->upd_max = r->upd_max > out->upd_max ? r->upd_max : out->upd_max;
        out->stale_max = r->stale_max > out->stale_max ? r->stale_max : out->stale_max;
        for (int b = 0; b < BANK_STALE_BUCKETS; b++)
            out->stale_hist[b] += r->stale_hist[b];
        out->snapshot_step = r->snapshot_step < out->snapshot_step ? r->snapshot_step
                                                                   : out->snapshot_step;
        out->requests += r->requests;
        out->errors += r->errors;
        out->cache_hits += r->cache_hits;
    }
    out->norm_mean = nsum / (double)out->rows;
    out->stale_mean = ssum / (double)out->rows;
    return 0;
}
