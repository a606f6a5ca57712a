/* Unit tests for common/proto_bank: a round trip for every request and reply, exact reply
 * sizing, and the error each kind of malformed request gets. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/proto_bank.h"

struct buf {
    msgpack_sbuffer sb;
    msgpack_packer pk;
};

static void buf_init(struct buf *b)
{
    msgpack_sbuffer_init(&b->sb);
    msgpack_packer_init(&b->pk, &b->sb, msgpack_sbuffer_write);
}

static const struct bank_hdr hdr = { BANK_OP_NONE, "client-7", 8, 123456789012ull, 1,
                                      NULL, 0 };

static void check_hdr(const struct bank_req *q, enum bank_op op)
{
    ck_assert_int_eq(q->h.op, op);
    ck_assert_uint_eq(q->h.cid_len, 8);
    ck_assert(!memcmp(q->h.cid, "client-7", 8));
    ck_assert(q->h.has_seq && q->h.seq == 123456789012ull);
}

/* Encodes with enc_rc already done into b, decodes into q. */
static void decode_ok(struct buf *b, struct bank_req *q)
{
    struct bank_err e;
    int rc = proto_bank_decode_req(b->sb.data, b->sb.size, q, &e);
    ck_assert_msg(rc == 0, "decode failed: %s %s", e.code, e.msg);
}

START_TEST(test_requests_roundtrip)
{
    struct buf b;
    struct bank_req q;
    buf_init(&b);

    struct bank_init_req in = { 50000, 128, 42, "run-a", 5, "abc123", 6, BANK_INIT_UNIT };
    ck_assert_int_eq(proto_bank_encode_init_req(&b.pk, &hdr, &in), 0);
    decode_ok(&b, &q);
    check_hdr(&q, BANK_OP_INIT);
    ck_assert(q.u.init.rows == 50000 && q.u.init.dim == 128 && q.u.init.seed == 42);
    ck_assert(q.u.init.run_len == 5 && !memcmp(q.u.init.run, "run-a", 5));
    ck_assert(q.u.init.manifest_len == 6 && !memcmp(q.u.init.manifest, "abc123", 6));
    ck_assert_int_eq(q.u.init.mode, BANK_INIT_UNIT);
    msgpack_sbuffer_clear(&b.sb);
    struct bank_init_req in2 = { 10, 4, 0, NULL, 0, NULL, 0, BANK_INIT_UNIFORM };
    ck_assert_int_eq(proto_bank_encode_init_req(&b.pk, &hdr, &in2), 0);
    decode_ok(&b, &q);
    ck_assert_ptr_null(q.u.init.manifest);
    ck_assert_int_eq(q.u.init.mode, BANK_INIT_UNIFORM);

    msgpack_sbuffer_clear(&b.sb);
    ck_assert_int_eq(proto_bank_encode_info_req(&b.pk, &hdr), 0);
    decode_ok(&b, &q);
    check_hdr(&q, BANK_OP_INFO);
    msgpack_sbuffer_clear(&b.sb);
    ck_assert_int_eq(proto_bank_encode_snapshot_req(&b.pk, &hdr), 0);
    decode_ok(&b, &q);
    check_hdr(&q, BANK_OP_SNAPSHOT);
    msgpack_sbuffer_clear(&b.sb);
    ck_assert_int_eq(proto_bank_encode_stats_req(&b.pk, &hdr), 0);
    decode_ok(&b, &q);
    check_hdr(&q, BANK_OP_STATS);

    uint32_t pos[3] = { 1, 70000, 4 };
    struct bank_sample_req sr = { 4096, pos, 3, 1, NULL, 0 };
    msgpack_sbuffer_clear(&b.sb);
    ck_assert_int_eq(proto_bank_encode_sample_req(&b.pk, &hdr, &sr), 0);
    decode_ok(&b, &q);
    check_hdr(&q, BANK_OP_SAMPLE);
    ck_assert(q.u.sample.k == 4096 && q.u.sample.npos == 3 && q.u.sample.exclude_pos == 1);
    ck_assert_uint_eq(proto_bank_u32(q.u.sample.pos, 1), 70000);

    float feat[6] = { 1, 2, 3, 4, 5, -6 };
    uint32_t idx[2] = { 9, 8 };
    struct bank_update_req ur = { idx, 2, feat, 6, 0.5 };
    msgpack_sbuffer_clear(&b.sb);
    ck_assert_int_eq(proto_bank_encode_update_req(&b.pk, &hdr, &ur), 0);
    decode_ok(&b, &q);
    check_hdr(&q, BANK_OP_UPDATE);
    ck_assert(q.u.update.nidx == 2 && q.u.update.nfeat == 6 && q.u.update.momentum == 0.5);
    ck_assert(proto_bank_u32(q.u.update.idx, 1) == 8 && proto_bank_f32(q.u.update.feat, 5) == -6);
    msgpack_sbuffer_clear(&b.sb);
    ck_assert_int_eq(proto_bank_encode_set_req(&b.pk, &hdr, &ur), 0);
    decode_ok(&b, &q);
    check_hdr(&q, BANK_OP_SET);
    ck_assert(q.u.update.nidx == 2 && q.u.update.nfeat == 6);

    struct bank_get_req gr = { 1000, 2048 };
    msgpack_sbuffer_clear(&b.sb);
    ck_assert_int_eq(proto_bank_encode_get_req(&b.pk, &hdr, &gr), 0);
    decode_ok(&b, &q);
    check_hdr(&q, BANK_OP_GET);
    ck_assert(q.u.get.start == 1000 && q.u.get.count == 2048);

    /* sample with the negatives given: k and neg_idx travel, exclude_pos does not */
    uint32_t given[4] = { 7, 0, 7, 4000000000u };
    struct bank_sample_req gr2 = { 4, pos, 3, 1, given, 1 };
    msgpack_sbuffer_clear(&b.sb);
    ck_assert_int_eq(proto_bank_encode_sample_req(&b.pk, &hdr, &gr2), 0);
    decode_ok(&b, &q);
    check_hdr(&q, BANK_OP_SAMPLE);
    ck_assert(q.u.sample.has_neg_idx && q.u.sample.k == 4 && q.u.sample.npos == 3);
    ck_assert_int_eq(q.u.sample.exclude_pos, 0);
    for (int i = 0; i < 4; i++)
        ck_assert_uint_eq(proto_bank_u32(q.u.sample.neg_idx, (size_t)i), given[i]);
    /* ... and a drawing sample says it has none */
    msgpack_sbuffer_clear(&b.sb);
    ck_assert_int_eq(proto_bank_encode_sample_req(&b.pk, &hdr, &sr), 0);
    decode_ok(&b, &q);
    ck_assert(!q.u.sample.has_neg_idx && q.u.sample.neg_idx == NULL);

    /* named snapshot, unnamed snapshot through the named encoder, restore */
    struct bank_snapshot_req sn = { "epoch-3_b_1", 11 };
    msgpack_sbuffer_clear(&b.sb);
    ck_assert_int_eq(proto_bank_encode_snapshot_named_req(&b.pk, &hdr, &sn), 0);
    decode_ok(&b, &q);
    check_hdr(&q, BANK_OP_SNAPSHOT);
    ck_assert(q.u.snapshot.name_len == 11 && !memcmp(q.u.snapshot.name, "epoch-3_b_1", 11));
    struct bank_snapshot_req unnamed = { NULL, 0 };
    msgpack_sbuffer_clear(&b.sb);
    ck_assert_int_eq(proto_bank_encode_snapshot_named_req(&b.pk, &hdr, &unnamed), 0);
    decode_ok(&b, &q);
    check_hdr(&q, BANK_OP_SNAPSHOT);
    ck_assert_ptr_null(q.u.snapshot.name);
    struct bank_restore_req rr = { "ckpt", 4, 1ull << 35 };
    msgpack_sbuffer_clear(&b.sb);
    ck_assert_int_eq(proto_bank_encode_restore_req(&b.pk, &hdr, &rr), 0);
    decode_ok(&b, &q);
    check_hdr(&q, BANK_OP_RESTORE);
    ck_assert(q.u.restore.name_len == 4 && !memcmp(q.u.restore.name, "ckpt", 4));
    ck_assert(q.u.restore.step == 1ull << 35);
    ck_assert_str_eq(proto_bank_op_name(BANK_OP_RESTORE), "restore");

    /* names: [A-Za-z0-9_-]{1,64}, starting with a letter or digit */
    char name65[66];
    memset(name65, 'a', 65);
    ck_assert(proto_bank_name_ok(name65, 64));
    ck_assert(!proto_bank_name_ok(name65, 65));
    ck_assert(!proto_bank_name_ok(name65, 0));
    static const char *const good[] = { "A-z_09", "9", "a", "epoch-001", "Z_-" };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        ck_assert_msg(proto_bank_name_ok(good[i], strlen(good[i])), "'%s' refused", good[i]);
    static const char *const bad[] = { ".", "..", "...", ".a", "-a", "_a", "a.b", "a.", "a/b",
                                       "a b", "\xff\xfe", "a\xc3\xa9", "a:b", "a\\b", "~a" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(!proto_bank_name_ok(bad[i], strlen(bad[i])), "'%s' accepted", bad[i]);
    ck_assert(!proto_bank_name_ok("a\0b", 3));

    /* no cid, no seq */
    struct bank_hdr bare = { BANK_OP_NONE, NULL, 0, 0, 0, NULL, 0 };
    msgpack_sbuffer_clear(&b.sb);
    ck_assert_int_eq(proto_bank_encode_info_req(&b.pk, &bare), 0);
    decode_ok(&b, &q);
    ck_assert(q.h.cid == NULL && !q.h.has_seq);
    msgpack_sbuffer_destroy(&b.sb);
}
END_TEST

static void decode_rep_ok(struct buf *b, enum bank_op op, union bank_rep_u *r)
{
    struct bank_err e;
    int rc = proto_bank_decode_rep(b->sb.data, b->sb.size, op, r, &e);
    ck_assert_msg(rc == 0, "decode failed: %s %s", e.code, e.msg);
}

START_TEST(test_replies_roundtrip)
{
    struct buf b;
    union bank_rep_u r;
    struct bank_err e;
    struct bank_rep_hdr rh = { 77, 1 };
    buf_init(&b);

    struct bank_init_rep ir = { 50000, 128, 9, 1 };
    ck_assert_int_eq(proto_bank_encode_init_rep(&b.pk, &rh, &ir), 0);
    decode_rep_ok(&b, BANK_OP_INIT, &r);
    ck_assert(r.init.rows == 50000 && r.init.dim == 128 && r.init.step == 9 && r.init.created);

    struct bank_info_rep nr = { 5, 3, 2, "run", 3, NULL, 0, 0, 0, 1, 0, 5 };
    msgpack_sbuffer_clear(&b.sb);
    ck_assert_int_eq(proto_bank_encode_info_rep(&b.pk, &rh, &nr), 0);
    decode_rep_ok(&b, BANK_OP_INFO, &r);
    ck_assert(r.info.rows == 5 && r.info.dim == 3 && r.info.step == 2 && r.info.run_len == 3);
    ck_assert_ptr_null(r.info.manifest);
    ck_assert_int_eq(r.info.has_token, 0);
    nr.has_token = 1;
    msgpack_sbuffer_clear(&b.sb);
    ck_assert_int_eq(proto_bank_encode_info_rep(&b.pk, &rh, &nr), 0);
    decode_rep_ok(&b, BANK_OP_INFO, &r);
    ck_assert_int_eq(r.info.has_token, 1);
    /* unsharded: no shard keys on the wire, read back as shard 0 of 1 holding every row */
    ck_assert_uint_eq(r.info.shard, 0);
    ck_assert_uint_eq(r.info.shards, 1);
    ck_assert_uint_eq(r.info.shard_start, 0);
    ck_assert_uint_eq(r.info.shard_end, 5);
    size_t unsharded_len = b.sb.size;
    struct bank_info_rep shr = { 5, 3, 2, "run", 3, NULL, 0, 0, 2, 3, 3, 5 };
    msgpack_sbuffer_clear(&b.sb);
    ck_assert_int_eq(proto_bank_encode_info_rep(&b.pk, &rh, &shr), 0);
    ck_assert_uint_gt(b.sb.size, unsharded_len);
    decode_rep_ok(&b, BANK_OP_INFO, &r);
    ck_assert(r.info.shard == 2 && r.info.shards == 3 && r.info.shard_start == 3 &&
              r.info.shard_end == 5 && r.info.rows == 5);
    /* an info reply of an older bankd (no has_token) reads as a bank without a token */
    {
        unsigned char old[64];
        static const char lit[] = "\x86\xa1v\x01\xa2ok\xc3\xa4rows\x05\xa3" "dim\x03\xa4step\x02"
                                  "\xa3run\xa0";
        memcpy(old, lit, sizeof lit - 1);
        ck_assert_int_eq(proto_bank_decode_rep(old, sizeof lit - 1, BANK_OP_INFO, &r, &e), 0);
        ck_assert(r.info.rows == 5 && r.info.has_token == 0);
    }

    struct bank_step_rep st = { 31 };
    msgpack_sbuffer_clear(&b.sb);
    ck_assert_int_eq(proto_bank_encode_step_rep(&b.pk, &rh, &st), 0);
    decode_rep_ok(&b, BANK_OP_UPDATE, &r);
    ck_assert(r.step.step == 31);
    decode_rep_ok(&b, BANK_OP_RESTORE, &r);
    ck_assert(r.step.step == 31);
    ck_assert_int_eq(proto_bank_decode_rep("\x82\xa1v\x01\xa2ok\xc3", 8, BANK_OP_RESTORE, &r, &e), -1);
    ck_assert_str_eq(e.code, BANK_EPROTO); /* restore reply without step */
    struct bank_err enosnap;
    bank_err_set(&enosnap, BANK_ENOSNAP, "no valid snapshot 'x' at step %d", 4);
    msgpack_sbuffer_clear(&b.sb);
    ck_assert_int_eq(proto_bank_encode_err_rep(&b.pk, &rh, &enosnap), 0);
    ck_assert_int_eq(proto_bank_decode_rep(b.sb.data, b.sb.size, BANK_OP_RESTORE, &r, &e), -1);
    ck_assert_str_eq(e.code, "ENOSNAP");
    /* an error code that is empty, cut by a NUL, lower-case or too long is a malformed reply */
    {
        static const char *bad[] = { "", "E\0X", "enosnap", "EXXXXXXXXXXXXXXXX" };
        static const size_t bad_len[] = { 0, 3, 7, 17 };
        for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
            unsigned char f[64];
            size_t n = 0;
            memcpy(f, "\x84\xa1v\x01\xa2ok\xc2\xa3" "err", 12);
            n = 12;
            f[n++] = (unsigned char)(0xa0 | bad_len[i]);
            memcpy(f + n, bad[i], bad_len[i]);
            n += bad_len[i];
            memcpy(f + n, "\xa3msg\xa1m", 6);
            n += 6;
            ck_assert_int_eq(proto_bank_decode_rep(f, n, BANK_OP_RESTORE, &r, &e), -1);
            ck_assert_str_eq(e.code, BANK_EPROTO);
        }
    }

    struct bank_snapshot_rep sn = { "/x/bank.snap", 12, 31 };
    msgpack_sbuffer_clear(&b.sb);
    ck_assert_int_eq(proto_bank_encode_snapshot_rep(&b.pk, &rh, &sn), 0);
    decode_rep_ok(&b, BANK_OP_SNAPSHOT, &r);
    ck_assert(r.snapshot.step == 31 && r.snapshot.path_len == 12);

    struct bank_stats_rep sr;
    memset(&sr, 0, sizeof sr);
    sr.rows = 10;
    sr.dim = 2;
    sr.norm_min = 0.5;
    sr.norm_max = 1;
    sr.stale_mean = 2.5;
    for (int i = 0; i < BANK_STALE_BUCKETS; i++)
        sr.stale_hist[i] = (uint64_t)i * 3;
    sr.cache_hits = 4;
    msgpack_sbuffer_clear(&b.sb);
    ck_assert_int_eq(proto_bank_encode_stats_rep(&b.pk, &rh, &sr), 0);
    decode_rep_ok(&b, BANK_OP_STATS, &r);
    ck_assert(r.stats.rows == 10 && r.stats.norm_min == 0.5 && r.stats.stale_mean == 2.5);
    ck_assert(r.stats.stale_hist[BANK_STALE_BUCKETS - 1] == 3 * (BANK_STALE_BUCKETS - 1));
    ck_assert(r.stats.cache_hits == 4);

    struct bank_err er;
    bank_err_set(&er, BANK_EMISMATCH, "shape %d", 3);
    msgpack_sbuffer_clear(&b.sb);
    ck_assert_int_eq(proto_bank_encode_err_rep(&b.pk, &rh, &er), 0);
    ck_assert_int_eq(proto_bank_decode_rep(b.sb.data, b.sb.size, BANK_OP_INIT, &r, &e), -1);
    ck_assert_str_eq(e.code, "EMISMATCH");
    ck_assert_str_eq(e.msg, "shape 3");
    msgpack_sbuffer_destroy(&b.sb);

    /* sample and get: built in place in an exactly sized buffer */
    size_t k = 5, npos = 2, dim = 3;
    struct bank_rep_hdr hs[2] = { { 0, 0 }, { 1ull << 40, 1 } };
    for (int h = 0; h < 2; h++) {
        size_t size = proto_bank_sample_rep_size(&hs[h], 300, k, npos, dim);
        char *mem = malloc(size + 1);
        struct mp_fixbuf fb;
        void *ni, *nv, *pv;
        mp_fixbuf_init(&fb, mem, size);
        ck_assert_int_eq(proto_bank_encode_sample_rep(&fb, &hs[h], 300, k, npos, dim, &ni, &nv, &pv), 0);
        ck_assert_uint_eq(fb.len, size);
        for (uint32_t i = 0; i < k; i++)
            memcpy((char *)ni + 4 * i, &i, 4);
        for (size_t i = 0; i < k * dim; i++) {
            float x = (float)i;
            memcpy((char *)nv + 4 * i, &x, 4);
        }
        for (size_t i = 0; i < npos * dim; i++) {
            float x = -(float)i;
            memcpy((char *)pv + 4 * i, &x, 4);
        }
        ck_assert_int_eq(proto_bank_decode_rep(mem, size, BANK_OP_SAMPLE, &r, &e), 0);
        ck_assert(r.sample.step == 300 && r.sample.k == k && r.sample.nneg == k * dim &&
                  r.sample.npos == npos * dim);
        ck_assert(proto_bank_u32(r.sample.neg_idx, 4) == 4);
        ck_assert(proto_bank_f32(r.sample.neg, 14) == 14);
        ck_assert(proto_bank_f32(r.sample.pos, 5) == -5);
        /* one byte short does not fit */
        mp_fixbuf_init(&fb, mem, size - 1);
        ck_assert_int_eq(proto_bank_encode_sample_rep(&fb, &hs[h], 300, k, npos, dim, &ni, &nv, &pv), -1);

        size_t gsize = proto_bank_get_rep_size(&hs[h], 1u << 20, 6);
        ck_assert_uint_le(gsize, size + 1);
        mp_fixbuf_init(&fb, mem, gsize);
        void *rows;
        ck_assert_int_eq(proto_bank_encode_get_rep(&fb, &hs[h], 1u << 20, 6, &rows), 0);
        ck_assert_uint_eq(fb.len, gsize);
        memset(rows, 0, 24);
        ck_assert_int_eq(proto_bank_decode_rep(mem, gsize, BANK_OP_GET, &r, &e), 0);
        ck_assert(r.get.start == 1u << 20 && r.get.nrows_f == 6);
        free(mem);
    }
}
END_TEST

/* A map built from raw key/value fragments: n pairs, bytes already msgpack. */
static size_t raw_map(unsigned char *out, int n, const char *frag, size_t frag_len)
{
    out[0] = (unsigned char)(0x80 | n);
    memcpy(out + 1, frag, frag_len);
    return 1 + frag_len;
}

/* Expects the frame to be refused with code; checks the seq was recovered when present. */
static void expect_err(const void *buf, size_t len, const char *code, int want_seq)
{
    struct bank_req q;
    struct bank_err e;
    int rc = proto_bank_decode_req(buf, len, &q, &e);
    ck_assert_msg(rc == -1, "decoded (op %s, k %llu, given %d) though %s was expected",
                  proto_bank_op_name(q.h.op), (unsigned long long)q.u.sample.k,
                  q.u.sample.has_neg_idx, code);
    ck_assert_msg(!strcmp(e.code, code), "want %s, got %s (%s)", code, e.code, e.msg);
    ck_assert(e.msg[0]);
    if (want_seq)
        ck_assert(q.h.has_seq && q.h.seq == 5);
}

#define RAW(out, n, lit) raw_map(out, n, lit, sizeof(lit) - 1)
#define KV_V1 "\xa1v\x01"
#define KV_SEQ "\xa3seq\x05"

START_TEST(test_malformed_requests)
{
    unsigned char m[256];
    size_t n;
    /* 1 empty */
    expect_err("", 0, BANK_EPROTO, 0);
    /* 2 not a map */
    expect_err("\x93\x01\x02\x03", 4, BANK_EPROTO, 0);
    /* 3 0xc1 */
    expect_err("\x81\xa1v\xc1", 4, BANK_EPROTO, 0);
    /* 4 truncated */
    n = RAW(m, 3, KV_V1 KV_SEQ "\xa2op\xa4info");
    expect_err(m, n - 2, BANK_EPROTO, 0);
    /* 5 trailing bytes */
    m[n] = 0;
    expect_err(m, n + 1, BANK_EPROTO, 0);
    /* 6 huge map count */
    expect_err("\xdf\xff\xff\xff\xff\xa1v\x01", 8, BANK_EPROTO, 0);
    /* 7 huge bin length */
    n = RAW(m, 3, KV_V1 "\xa2op\xa3get" "\xa3pos\xc6\xff\xff\xff\xff");
    expect_err(m, n, BANK_EPROTO, 0);
    /* 8 missing v */
    n = RAW(m, 2, KV_SEQ "\xa2op\xa4info");
    expect_err(m, n, BANK_EPROTO, 1);
    /* 9 wrong version */
    n = RAW(m, 3, "\xa1v\x02" KV_SEQ "\xa2op\xa4info");
    expect_err(m, n, BANK_EVERSION, 1);
    /* 10 v of the wrong type */
    n = RAW(m, 3, "\xa1v\xa1" "1" KV_SEQ "\xa2op\xa4info");
    expect_err(m, n, BANK_EVERSION, 1);
    /* 11 unknown op */
    n = RAW(m, 3, KV_V1 KV_SEQ "\xa2op\xa4zzzz");
    expect_err(m, n, BANK_EINVAL, 1);
    /* 12 op not a string */
    n = RAW(m, 3, KV_V1 KV_SEQ "\xa2op\x07");
    expect_err(m, n, BANK_EPROTO, 1);
    /* 13 seq of the wrong type */
    n = RAW(m, 3, KV_V1 "\xa3seq\xa1x" "\xa2op\xa4info");
    expect_err(m, n, BANK_EPROTO, 0);
    /* 14 sample without k */
    n = RAW(m, 4, KV_V1 KV_SEQ "\xa2op\xa6sample" "\xa3pos\xc4\x00");
    expect_err(m, n, BANK_EPROTO, 1);
    /* 15 sample with k as a string */
    n = RAW(m, 5, KV_V1 KV_SEQ "\xa2op\xa6sample" "\xa3pos\xc4\x00" "\xa1k\xa1" "9");
    expect_err(m, n, BANK_EPROTO, 1);
    /* 16 pos bin not a multiple of 4 */
    n = RAW(m, 5, KV_V1 KV_SEQ "\xa2op\xa6sample" "\xa3pos\xc4\x03\x01\x02\x03" "\xa1k\x10");
    expect_err(m, n, BANK_EINVAL, 1);
    /* 17 k = 0 */
    n = RAW(m, 5, KV_V1 KV_SEQ "\xa2op\xa6sample" "\xa3pos\xc4\x00" "\xa1k\x00");
    expect_err(m, n, BANK_EINVAL, 1);
    /* 18 update: momentum out of range */
    n = RAW(m, 6, KV_V1 KV_SEQ "\xa2op\xa6update" "\xa3idx\xc4\x00" "\xa4" "feat\xc4\x00"
                "\xa8momentum\x02");
    expect_err(m, n, BANK_EINVAL, 1);
    /* 19 update: idx as an array instead of bin */
    n = RAW(m, 6, KV_V1 KV_SEQ "\xa2op\xa6update" "\xa3idx\x91\x01" "\xa4" "feat\xc4\x00"
                "\xa8momentum\x00");
    expect_err(m, n, BANK_EPROTO, 1);
    /* 20 init: dim 0 */
    n = RAW(m, 5, KV_V1 KV_SEQ "\xa2op\xa4init" "\xa4rows\x0a" "\xa3" "dim\x00");
    expect_err(m, n, BANK_ERANGE, 1);
    /* 21 deep nesting inside an ignored key */
    n = RAW(m, 4, KV_V1 KV_SEQ "\xa2op\xa4info" "\xa1x"
                "\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\xc0");
    expect_err(m, n, BANK_EPROTO, 0);
    /* 22 neg_idx and k disagree */
    n = RAW(m, 6, KV_V1 KV_SEQ "\xa2op\xa6sample" "\xa3pos\xc4\x00" "\xa1k\x02"
                "\xa7neg_idx\xc4\x04\x01\x00\x00\x00");
    expect_err(m, n, BANK_EINVAL, 1);
    /* 23 neg_idx not a multiple of 4 */
    n = RAW(m, 5, KV_V1 KV_SEQ "\xa2op\xa6sample" "\xa3pos\xc4\x00"
                "\xa7neg_idx\xc4\x05\x01\x00\x00\x00\x00");
    expect_err(m, n, BANK_EINVAL, 1);
    /* 24 neg_idx as an array */
    n = RAW(m, 5, KV_V1 KV_SEQ "\xa2op\xa6sample" "\xa3pos\xc4\x00" "\xa7neg_idx\x91\x01");
    expect_err(m, n, BANK_EPROTO, 1);
    /* 25 neg_idx empty */
    n = RAW(m, 5, KV_V1 KV_SEQ "\xa2op\xa6sample" "\xa3pos\xc4\x00" "\xa7neg_idx\xc4\x00");
    expect_err(m, n, BANK_EINVAL, 1);
    /* 26 neg_idx with k of the wrong type */
    n = RAW(m, 6, KV_V1 KV_SEQ "\xa2op\xa6sample" "\xa3pos\xc4\x00" "\xa1k\xa1" "1"
                "\xa7neg_idx\xc4\x04\x01\x00\x00\x00");
    expect_err(m, n, BANK_EPROTO, 1);
    /* 27 neg_idx without pos */
    n = RAW(m, 4, KV_V1 KV_SEQ "\xa2op\xa6sample" "\xa7neg_idx\xc4\x04\x01\x00\x00\x00");
    expect_err(m, n, BANK_EPROTO, 1);
    /* 28 snapshot names: a slash, empty, 65 characters, not a str */
    n = RAW(m, 4, KV_V1 KV_SEQ "\xa2op\xa8snapshot" "\xa4name\xa5../ab");
    expect_err(m, n, BANK_EINVAL, 1);
    n = RAW(m, 4, KV_V1 KV_SEQ "\xa2op\xa8snapshot" "\xa4name\xa0");
    expect_err(m, n, BANK_EINVAL, 1);
    n = RAW(m, 4, KV_V1 KV_SEQ "\xa2op\xa8snapshot" "\xa4name\xd9\x41"
                "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    expect_err(m, n, BANK_EINVAL, 1);
    n = RAW(m, 4, KV_V1 KV_SEQ "\xa2op\xa8snapshot" "\xa4name\x07");
    expect_err(m, n, BANK_EPROTO, 1);
    /* 29 restore without step, without name, bad name, step not a uint */
    n = RAW(m, 4, KV_V1 KV_SEQ "\xa2op\xa7restore" "\xa4name\xa2" "ck");
    expect_err(m, n, BANK_EPROTO, 1);
    n = RAW(m, 4, KV_V1 KV_SEQ "\xa2op\xa7restore" "\xa4step\x05");
    expect_err(m, n, BANK_EPROTO, 1);
    n = RAW(m, 5, KV_V1 KV_SEQ "\xa2op\xa7restore" "\xa4name\xa2" "c:" "\xa4step\x05");
    expect_err(m, n, BANK_EINVAL, 1);
    n = RAW(m, 5, KV_V1 KV_SEQ "\xa2op\xa7restore" "\xa4name\xa2" "ck" "\xa4step\xff");
    expect_err(m, n, BANK_EPROTO, 1);
    /* neg_idx without k is a complete request; a 64-character name is fine */
    {
        struct bank_req q2;
        struct bank_err e2;
        n = RAW(m, 5, KV_V1 KV_SEQ "\xa2op\xa6sample" "\xa3pos\xc4\x00"
                    "\xa7neg_idx\xc4\x08\x01\x00\x00\x00\x02\x00\x00\x00");
        ck_assert_int_eq(proto_bank_decode_req(m, n, &q2, &e2), 0);
        ck_assert(q2.u.sample.has_neg_idx && q2.u.sample.k == 2);
        ck_assert_uint_eq(proto_bank_u32(q2.u.sample.neg_idx, 1), 2);
        n = RAW(m, 4, KV_V1 KV_SEQ "\xa2op\xa8snapshot" "\xa4name\xd9\x40"
                    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
        ck_assert_int_eq(proto_bank_decode_req(m, n, &q2, &e2), 0);
        ck_assert_uint_eq(q2.u.snapshot.name_len, 64);
        n = RAW(m, 5, KV_V1 KV_SEQ "\xa2op\xa7restore" "\xa4name\xa2" "ck" "\xa4step\x05");
        ck_assert_int_eq(proto_bank_decode_req(m, n, &q2, &e2), 0);
        ck_assert(q2.u.restore.step == 5 && q2.u.restore.name_len == 2);
    }
    /* unknown keys are ignored */
    n = RAW(m, 4, KV_V1 KV_SEQ "\xa2op\xa4info" "\xa5" "extra\x91\xc0");
    struct bank_req q;
    struct bank_err e;
    ck_assert_int_eq(proto_bank_decode_req(m, n, &q, &e), 0);
    ck_assert_int_eq(q.h.op, BANK_OP_INFO);
}
END_TEST

/* The write token: carried by every encoder when the header has one, decoded for any op,
 * 16..256 bytes (else EINVAL, the message never quoting it), a str (else EPROTO). */
START_TEST(test_token)
{
    static const char tok[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    struct bank_hdr h = { BANK_OP_NONE, "trainer:r", 9, 77, 1, tok, 64 };
    struct buf b;
    struct bank_req q;
    buf_init(&b);
    uint32_t idx[1] = { 3 };
    float feat[2] = { 1, 0 };
    struct bank_init_req in = { 10, 2, 1, "r", 1, NULL, 0, BANK_INIT_UNIFORM };
    struct bank_update_req up = { idx, 1, feat, 2, 0.5 };
    struct bank_snapshot_req sn = { "ck", 2 };
    struct bank_restore_req rs = { "ck", 2, 4 };
    for (int k = 0; k < 6; k++) {
        msgpack_sbuffer_clear(&b.sb);
        int rc = k == 0 ? proto_bank_encode_init_req(&b.pk, &h, &in)
               : k == 1 ? proto_bank_encode_update_req(&b.pk, &h, &up)
               : k == 2 ? proto_bank_encode_set_req(&b.pk, &h, &up)
               : k == 3 ? proto_bank_encode_snapshot_named_req(&b.pk, &h, &sn)
               : k == 4 ? proto_bank_encode_restore_req(&b.pk, &h, &rs)
                        : proto_bank_encode_info_req(&b.pk, &h);
        ck_assert_int_eq(rc, 0);
        decode_ok(&b, &q);
        ck_assert_uint_eq(q.h.token_len, 64);
        ck_assert(!memcmp(q.h.token, tok, 64));
        ck_assert(q.h.has_seq && q.h.seq == 77);
    }
    ck_assert(q.h.op == BANK_OP_INFO);
    /* without a token in the header none is sent */
    struct bank_hdr none = { BANK_OP_NONE, "x", 1, 1, 1, NULL, 0 };
    msgpack_sbuffer_clear(&b.sb);
    ck_assert_int_eq(proto_bank_encode_update_req(&b.pk, &none, &up), 0);
    decode_ok(&b, &q);
    ck_assert_ptr_null(q.h.token);
    /* bounds: 16 and 256 bytes decode, 15 and 257 do not, and the message does not quote it */
    static char longtok[258];
    memset(longtok, 'k', sizeof longtok - 1);
    size_t lens[] = { 16, 256, 15, 257, 0 };
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        struct bank_hdr t = { BANK_OP_NONE, NULL, 0, 0, 0, longtok, lens[i] };
        msgpack_sbuffer_clear(&b.sb);
        ck_assert_int_eq(proto_bank_encode_set_req(&b.pk, &t, &up), 0);
        struct bank_err e;
        int rc = proto_bank_decode_req(b.sb.data, b.sb.size, &q, &e);
        if (lens[i] >= BANK_TOKEN_MIN && lens[i] <= BANK_TOKEN_MAX) {
            ck_assert_int_eq(rc, 0);
            ck_assert_uint_eq(q.h.token_len, lens[i]);
        } else {
            ck_assert_int_eq(rc, -1);
            ck_assert_str_eq(e.code, BANK_EINVAL);
            ck_assert_ptr_null(strstr(e.msg, "kkkk"));
        }
    }
    /* not a str */
    unsigned char m[64];
    size_t n = RAW(m, 3, KV_V1 "\xa2op\xa4info" "\xa5token\xc4\x10" "0123456789abcdef");
    expect_err(m, n, BANK_EPROTO, 0);
    n = RAW(m, 3, KV_V1 "\xa2op\xa4info" "\xa5token\x07");
    expect_err(m, n, BANK_EPROTO, 0);
    msgpack_sbuffer_destroy(&b.sb);
}
END_TEST

/* Request bytes quoted in messages come out as printable ASCII with \xNN escapes. */
START_TEST(test_escape)
{
    char out[64];
    ck_assert_str_eq(proto_bank_escape(out, sizeof out, "a\xff\n\\b\x7f ", 7),
                     "a\\xff\\x0a\\b\\x7f ");
    ck_assert_str_eq(proto_bank_escape(out, sizeof out, "x\0y", 3), "x\\x00y");
    ck_assert_str_eq(proto_bank_escape(out, sizeof out, NULL, 0), "");
    /* too small: ends at the last whole character */
    ck_assert_str_eq(proto_bank_escape(out, 6, "ab\xff" "cd", 5), "ab");
    ck_assert_str_eq(proto_bank_escape(out, 7, "ab\xff" "cd", 5), "ab\\xff");
    ck_assert_str_eq(proto_bank_escape(out, 1, "ab", 2), "");
}
END_TEST

/* A bin of raw bytes posing as a str: header for len < 32 */
static size_t put_fixstr(unsigned char *p, const char *s, size_t len)
{
    p[0] = (unsigned char)(0xa0 | len);
    memcpy(p + 1, s, len);
    return 1 + len;
}

/* Hostile strings: an op that is not UTF-8 is quoted escaped; init's run and manifest must
 * be UTF-8 without NUL; an error reply's msg is ASCII whatever the message holds. */
START_TEST(test_hostile_strings)
{
    unsigned char m[256];
    struct bank_req q;
    struct bank_err e;
    size_t n = RAW(m, 3, KV_V1 KV_SEQ "\xa2op\xa2\xff\xfe");
    ck_assert_int_eq(proto_bank_decode_req(m, n, &q, &e), -1);
    ck_assert_str_eq(e.code, BANK_EINVAL);
    ck_assert_msg(strstr(e.msg, "'\\xff\\xfe'"), "msg: %s", e.msg);
    static const struct { const char *s; size_t len; int ok; } ids[] = {
        { "run-1", 5, 1 }, { "\xc3\xa9t\xc3\xa9", 5, 1 }, { "\xf0\x9f\x98\x80", 4, 1 },
        { "", 0, 1 }, { "\xff\xfe", 2, 0 }, { "a\0b", 3, 0 }, { "\xc3", 1, 0 },
        { "\xc0\xaf", 2, 0 }, { "\xed\xa0\x80", 3, 0 }, { "\xf4\x90\x80\x80", 4, 0 },
        { "\xe2\x82", 2, 0 }, { "\x80", 1, 0 },
    };
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
        for (int field = 0; field < 2; field++) {
            unsigned char *p = m;
            static const char head[] = "\x85\xa1v\x01\xa2op\xa4init\xa4rows\x05\xa3" "dim\x04";
            memcpy(p, head, sizeof head - 1);
            p += sizeof head - 1;
            p += put_fixstr(p, field ? "manifest" : "run", field ? 8 : 3);
            p += put_fixstr(p, ids[i].s, ids[i].len);
            int rc = proto_bank_decode_req(m, (size_t)(p - m), &q, &e);
            ck_assert_msg(rc == (ids[i].ok ? 0 : -1), "id %zu field %d: rc %d (%s)", i, field,
                          rc, e.msg);
            if (!ids[i].ok)
                ck_assert_str_eq(e.code, BANK_EINVAL);
        }
    }
    /* a message holding any byte is sent escaped */
    struct buf b;
    buf_init(&b);
    struct bank_err raw;
    struct bank_rep_hdr rh = { 1, 1 };
    bank_err_set(&raw, BANK_EMISMATCH, "names %s and %s", "\xc3\xa9", "\xff\n");
    ck_assert_int_eq(proto_bank_encode_err_rep(&b.pk, &rh, &raw), 0);
    union bank_rep_u r;
    ck_assert_int_eq(proto_bank_decode_rep(b.sb.data, b.sb.size, BANK_OP_INIT, &r, &e), -1);
    ck_assert_str_eq(e.msg, "names \\xc3\\xa9 and \\xff\\x0a");
    msgpack_sbuffer_destroy(&b.sb);
}
END_TEST

START_TEST(test_malformed_replies)
{
    union bank_rep_u r;
    struct bank_err e;
    ck_assert_int_eq(proto_bank_decode_rep("\x82\xa1v\x01\xa2ok\xc3", 8, BANK_OP_UPDATE, &r, &e), -1);
    ck_assert_str_eq(e.code, BANK_EPROTO); /* step missing */
    ck_assert_int_eq(proto_bank_decode_rep("\x82\xa1v\x02\xa2ok\xc3", 8, BANK_OP_INFO, &r, &e), -1);
    ck_assert_str_eq(e.code, BANK_EVERSION);
    ck_assert_int_eq(proto_bank_decode_rep("\x82\xa1v\x01\xa2ok\xc3\x00", 9, BANK_OP_INFO, &r, &e), -1);
    ck_assert_str_eq(e.code, BANK_EPROTO);
    ck_assert_int_eq(proto_bank_decode_rep("\x82\xa1v\x01\xa2ok\xc2", 8, BANK_OP_INFO, &r, &e), -1);
    ck_assert_str_eq(e.code, BANK_EPROTO); /* error without err */
    ck_assert_str_eq(proto_bank_op_name(BANK_OP_SET), "set");
    ck_assert_ptr_null(proto_bank_op_name(BANK_OP_NONE));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("proto_bank");
    TCase *tc = tcase_create("codec");
    tcase_add_test(tc, test_requests_roundtrip);
    tcase_add_test(tc, test_replies_roundtrip);
    tcase_add_test(tc, test_malformed_requests);
    tcase_add_test(tc, test_malformed_replies);
    tcase_add_test(tc, test_escape);
    tcase_add_test(tc, test_hostile_strings);
    tcase_add_test(tc, test_token);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
