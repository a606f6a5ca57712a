/* libFuzzer target: the bankd wire codec (common/proto_bank.c), both directions. Requests
 * are untrusted input to npid-bankd (proto_bank_decode_req, bankd/server.c); replies are
 * untrusted input to every bank client (proto_bank_decode_rep, common/bankc.c), so each
 * input is tried as a request and as the reply to every op. Built and run by `make fuzz` and
 * `make fuzz-ci` (mk/fuzz.mk), seeded with frames captured between real processes
 * (fuzz/capture.sh).
 *
 * Beyond "no crash, no leak, no undefined behaviour", every result must hold up:
 *  - a decoded request re-encodes (proto_bank_encode_*_req) to a frame that decodes to the
 *    same request;
 *  - a rejected request has a code, and the error reply bankd would send for it
 *    (proto_bank_encode_err_rep) decodes on the client side to that code;
 *  - every pointer a decoder hands back lies inside the frame, whole elements included;
 *  - an ok sample or get reply re-encodes into exactly proto_bank_*_rep_size bytes (what
 *    bankd sizes its zmq_msg_t with).
 * A broken one aborts, which libFuzzer reports as a crash with the input saved. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/proto_bank.h"
#include "fuzz/fuzz_util.h"

static int same_bytes(const void *a, size_t na, const void *b, size_t nb)
{
    return na == nb && (na == 0 || memcmp(a, b, na) == 0);
}

/* An optional str: both absent, or both present with the same bytes. */
static int same_opt(const char *a, size_t na, const char *b, size_t nb)
{
    return (a == NULL) == (b == NULL) && same_bytes(a, na, b, nb);
}

/* Re-encodes request q, decodes the result and checks it is q again. */
static void check_req_roundtrip(const struct bank_req *q)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    const struct bank_hdr *h = &q->h;
    int rc = -1;
    switch (h->op) {
    case BANK_OP_INIT: rc = proto_bank_encode_init_req(&pk, h, &q->u.init); break;
    case BANK_OP_INFO: rc = proto_bank_encode_info_req(&pk, h); break;
    case BANK_OP_SAMPLE: rc = proto_bank_encode_sample_req(&pk, h, &q->u.sample); break;
    case BANK_OP_UPDATE: rc = proto_bank_encode_update_req(&pk, h, &q->u.update); break;
    case BANK_OP_SET: rc = proto_bank_encode_set_req(&pk, h, &q->u.update); break;
    case BANK_OP_GET: rc = proto_bank_encode_get_req(&pk, h, &q->u.get); break;
    case BANK_OP_SNAPSHOT:
        rc = proto_bank_encode_snapshot_named_req(&pk, h, &q->u.snapshot);
        break;
    case BANK_OP_STATS: rc = proto_bank_encode_stats_req(&pk, h); break;
    case BANK_OP_RESTORE: rc = proto_bank_encode_restore_req(&pk, h, &q->u.restore); break;
    case BANK_OP_NONE: break;
    }
    CHECK(rc == 0);
    struct bank_req r;
    struct bank_err e;
    CHECK(proto_bank_decode_req(sb.data, sb.size, &r, &e) == 0);
    CHECK(r.h.op == h->op && r.h.has_seq == h->has_seq && (!h->has_seq || r.h.seq == h->seq));
    CHECK(same_opt(r.h.cid, r.h.cid_len, h->cid, h->cid_len));
    switch (h->op) {
    case BANK_OP_INIT: {
        const struct bank_init_req *a = &q->u.init, *b = &r.u.init;
        CHECK(a->rows == b->rows && a->dim == b->dim && a->seed == b->seed && a->mode == b->mode);
        CHECK(same_bytes(a->run, a->run_len, b->run, b->run_len)); /* absent is sent as "" */
        CHECK(same_opt(a->manifest, a->manifest_len, b->manifest, b->manifest_len));
        break;
    }
    case BANK_OP_SAMPLE: {
        const struct bank_sample_req *a = &q->u.sample, *b = &r.u.sample;
        CHECK(a->k == b->k && a->has_neg_idx == b->has_neg_idx && a->exclude_pos == b->exclude_pos);
        CHECK(same_bytes(a->pos, 4 * a->npos, b->pos, 4 * b->npos));
        CHECK(!a->has_neg_idx || same_bytes(a->neg_idx, 4 * a->k, b->neg_idx, 4 * b->k));
        break;
    }
    case BANK_OP_UPDATE:
    case BANK_OP_SET: {
        const struct bank_update_req *a = &q->u.update, *b = &r.u.update;
        CHECK(memcmp(&a->momentum, &b->momentum, sizeof a->momentum) == 0);
        CHECK(same_bytes(a->idx, 4 * a->nidx, b->idx, 4 * b->nidx));
        CHECK(same_bytes(a->feat, 4 * a->nfeat, b->feat, 4 * b->nfeat));
        break;
    }
    case BANK_OP_GET:
        CHECK(q->u.get.start == r.u.get.start && q->u.get.count == r.u.get.count);
        break;
    case BANK_OP_SNAPSHOT:
        CHECK(same_opt(q->u.snapshot.name, q->u.snapshot.name_len, r.u.snapshot.name,
                       r.u.snapshot.name_len));
        break;
    case BANK_OP_RESTORE:
        CHECK(q->u.restore.step == r.u.restore.step);
        CHECK(same_bytes(q->u.restore.name, q->u.restore.name_len, r.u.restore.name,
                         r.u.restore.name_len));
        break;
    default:
        break;
    }
    msgpack_sbuffer_destroy(&sb);
}

/* What bankd answers a request it could not decode must read back as that error. */
static void check_err_reply(const struct bank_req *q, const struct bank_err *e)
{
    CHECK(e->code[0] != 0 && memchr(e->code, 0, sizeof e->code) &&
          memchr(e->msg, 0, sizeof e->msg));
    struct bank_rep_hdr rh = { q->h.seq, q->h.has_seq };
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    CHECK(proto_bank_encode_err_rep(&pk, &rh, e) == 0);
    union bank_rep_u r;
    struct bank_err got;
    CHECK(proto_bank_decode_rep(sb.data, sb.size, BANK_OP_INFO, &r, &got) == -1);
    CHECK(strcmp(got.code, e->code) == 0);
    msgpack_sbuffer_destroy(&sb);
}

static void check_sample_rep(const struct bank_sample_rep *s)
{
    CHECK(in_frame(s->neg_idx, 4 * s->k) && in_frame(s->neg, 4 * s->nneg) &&
          in_frame(s->pos, 4 * s->npos));
    /* the shape bankd would have sent: k rows of dim floats, then the positives */
    if (s->k == 0 || s->nneg == 0 || s->nneg % s->k != 0)
        return;
    size_t dim = s->nneg / s->k;
    if (s->npos % dim != 0)
        return;
    struct bank_rep_hdr rh = { 0, 0 };
    size_t npos = s->npos / dim;
    size_t size = proto_bank_sample_rep_size(&rh, s->step, s->k, npos, dim);
    char *buf = malloc(size);
    CHECK(buf != NULL);
    struct mp_fixbuf fb;
    void *neg_idx, *neg, *pos;
    mp_fixbuf_init(&fb, buf, size);
    CHECK(proto_bank_encode_sample_rep(&fb, &rh, s->step, s->k, npos, dim, &neg_idx, &neg,
                                       &pos) == 0);
    CHECK(fb.len == size && !fb.overflow);
    memcpy(neg_idx, s->neg_idx, 4 * s->k);
    memcpy(neg, s->neg, 4 * s->nneg);
    memcpy(pos, s->pos, 4 * s->npos);
    union bank_rep_u r;
    struct bank_err e;
    CHECK(proto_bank_decode_rep(buf, size, BANK_OP_SAMPLE, &r, &e) == 0);
    CHECK(r.sample.step == s->step && r.sample.k == s->k && r.sample.nneg == s->nneg &&
          r.sample.npos == s->npos);
    free(buf);
}

static void check_get_rep(const struct bank_get_rep *g)
{
    CHECK(in_frame(g->rows, 4 * g->nrows_f));
    struct bank_rep_hdr rh = { 0, 0 };
    size_t size = proto_bank_get_rep_size(&rh, g->start, g->nrows_f);
    char *buf = malloc(size);
    CHECK(buf != NULL);
    struct mp_fixbuf fb;
    void *rows;
    mp_fixbuf_init(&fb, buf, size);
    CHECK(proto_bank_encode_get_rep(&fb, &rh, g->start, g->nrows_f, &rows) == 0);
    CHECK(fb.len == size && !fb.overflow);
    memcpy(rows, g->rows, 4 * g->nrows_f);
    union bank_rep_u r;
    struct bank_err e;
    CHECK(proto_bank_decode_rep(buf, size, BANK_OP_GET, &r, &e) == 0);
    CHECK(r.get.start == g->start && r.get.nrows_f == g->nrows_f);
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    frame_lo = data;
    frame_hi = data + size;

    struct bank_req q;
    struct bank_err e;
    if (proto_bank_decode_req(data, size, &q, &e) == 0) {
        CHECK(proto_bank_op_name(q.h.op) != NULL);
        CHECK(in_frame(q.h.cid, q.h.cid_len));
        if (q.h.op == BANK_OP_SAMPLE)
            CHECK(in_frame(q.u.sample.pos, 4 * q.u.sample.npos) &&
                  (!q.u.sample.has_neg_idx || in_frame(q.u.sample.neg_idx, 4 * q.u.sample.k)));
        if (q.h.op == BANK_OP_UPDATE || q.h.op == BANK_OP_SET)
            CHECK(in_frame(q.u.update.idx, 4 * q.u.update.nidx) &&
                  in_frame(q.u.update.feat, 4 * q.u.update.nfeat));
        check_req_roundtrip(&q);
    } else {
        check_err_reply(&q, &e);
    }

    for (int op = BANK_OP_INIT; op <= BANK_OP_RESTORE; op++) {
        union bank_rep_u r;
        if (proto_bank_decode_rep(data, size, (enum bank_op)op, &r, &e) != 0) {
            /* the server's own "err" (ok false) is passed on as sent, cut to the buffer and
             * at a NUL byte, so it may be empty: only its termination is the codec's */
            CHECK(memchr(e.code, 0, sizeof e.code) && memchr(e.msg, 0, sizeof e.msg));
            continue;
        }
        switch (op) {
        case BANK_OP_INFO:
            CHECK(in_frame(r.info.run, r.info.run_len) &&
                  in_frame(r.info.manifest, r.info.manifest_len));
            break;
        case BANK_OP_SAMPLE: check_sample_rep(&r.sample); break;
        case BANK_OP_GET: check_get_rep(&r.get); break;
        case BANK_OP_SNAPSHOT: CHECK(in_frame(r.snapshot.path, r.snapshot.path_len)); break;
        default: break;
        }
    }
    return 0;
}
