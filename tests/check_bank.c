/* Tests for the memory bank and npid-bankd.
 *
 * "bank": bankd/bank.c against a plain-C reference (initialisation, update, set, sample,
 * all-or-nothing rejection of hostile values: NaN, +-Inf, subnormal, zero and tiny norms;
 * no zero-norm row from init, statistics) and snapshot files (bit-exact round trip,
 * corruption detection, fallback to the previous file, a write failing on a file size limit).
 * "daemon": a real npid-bankd ($NPID_BIN/npid-bankd) on an ipc:// endpoint: malformed frames,
 * idempotent retries, the bankc client end to end, SIGKILL and restart, corrupt newest
 * snapshot, snapshots failing on a full "disk" while serving continues, sample with given
 * negatives, named snapshots and restore, the startup choice among snapshot files, write
 * tokens (EPERM without one, the reply cache untouched by a refusal, adoption, restore).
 * The run's token file (bankc_token_file) is checked in "bank".
 * ping's JSON rendering is checked here too; its exit codes in tests/it_bankd_ping.sh. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bankd/bank.h"
#include "bankd/ping.h"
#include "bankd/snapshot.h"
#include "common/bankc.h"
#include "common/durable.h"
#include "common/msg.h"
#include "common/rng.h"

/* ---- plain-C reference ---------------------------------------------------------------------- */

static void ref_normalize(const double *x, float *out, size_t dim)
{
    double ss = 0;
    for (size_t j = 0; j < dim; j++)
        ss += x[j] * x[j];
    for (size_t j = 0; j < dim; j++)
        out[j] = (float)(x[j] / sqrt(ss));
}

/* v <- normalize(m v + (1 - m) f) in double precision */
static void ref_update(float *bank, size_t dim, const uint32_t *idx, size_t n, const float *feat,
                       double m)
{
    double x[512];
    for (size_t i = 0; i < n; i++) {
        float *v = bank + (size_t)idx[i] * dim;
        for (size_t j = 0; j < dim; j++)
            x[j] = m * v[j] + (1 - m) * feat[i * dim + j];
        ref_normalize(x, v, dim);
    }
}

static float max_abs_diff(const float *a, const float *b, size_t n)
{
    float d = 0;
    for (size_t i = 0; i < n; i++)
        d = fmaxf(d, fabsf(a[i] - b[i]));
    return d;
}

static void fill_normal(float *x, size_t n, uint64_t seed)
{
    struct rng r;
    rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)rng_normal(&r);
}

/* ---- bank unit tests ------------------------------------------------------------------------ */

START_TEST(test_bank_init)
{
    size_t dim = 12;
    struct bank *b = bank_new(100, dim, 5, BANK_INIT_UNIFORM);
    ck_assert_ptr_nonnull(b);
    float s = 1.0f / sqrtf((float)dim / 3.0f);
    for (uint64_t i = 0; i < 100; i++) {
        struct rng r = rng_derive(5, 1, i);
        for (size_t j = 0; j < dim; j++) {
            float want = (2.0f * rng_float(&r) - 1.0f) * s;
            ck_assert(b->v[i * dim + j] == want);
            ck_assert(fabsf(want) <= s);
        }
    }
    struct bank *b2 = bank_new(100, dim, 5, BANK_INIT_UNIFORM);
    ck_assert(!memcmp(b->v, b2->v, 100 * dim * 4));
    bank_destroy(&b2);
    struct bank *u = bank_new(50, dim, 5, BANK_INIT_UNIT);
    for (size_t i = 0; i < 50; i++) {
        double ss = 0;
        for (size_t j = 0; j < dim; j++)
            ss += (double)u->v[i * dim + j] * u->v[i * dim + j];
        ck_assert(fabs(ss - 1) < 1e-5);
    }
    bank_destroy(&u);
    bank_destroy(&b);
    ck_assert_ptr_null(b);
    bank_destroy(&b);
    ck_assert_ptr_null(bank_new(0, 4, 0, BANK_INIT_UNIFORM));
}
END_TEST

START_TEST(test_bank_update_vs_reference)
{
    size_t rows = 64, dim = 32, n = 40;
    struct bank *b = bank_new(rows, dim, 1, BANK_INIT_UNIFORM);
    float *ref = malloc(rows * dim * 4);
    memcpy(ref, b->v, rows * dim * 4);
    float *feat = malloc(n * dim * 4);
    uint32_t idx[40];
    struct rng r;
    rng_seed(&r, 9);
    struct bank_err e;
    for (int round = 0; round < 5; round++) {
        for (size_t i = 0; i < n; i++)
            idx[i] = (uint32_t)rng_below(&r, rows); /* with repeats */
        fill_normal(feat, n * dim, 100 + (uint64_t)round);
        double m = round == 4 ? 0 : 0.5;
        /* unaligned inputs, as they arrive inside frames */
        char *uidx = malloc(4 * n + 1), *ufeat = malloc(4 * n * dim + 3);
        memcpy(uidx + 1, idx, 4 * n);
        memcpy(ufeat + 3, feat, 4 * n * dim);
        ck_assert_int_eq(bank_update(b, uidx + 1, n, ufeat + 3, n * dim, (float)m, &e), 0);
        free(uidx);
        free(ufeat);
        ref_update(ref, dim, idx, n, feat, m);
        ck_assert_msg(max_abs_diff(b->v, ref, rows * dim) < 2e-6, "round %d differs by %g", round,
                      max_abs_diff(b->v, ref, rows * dim));
        ck_assert_uint_eq(b->step, (uint64_t)round + 1);
    }
    ck_assert_uint_eq(b->writes, 5 * n);
    /* set = normalize(f) */
    uint32_t one = 3;
    ck_assert_int_eq(bank_set(b, &one, 1, feat, dim, &e), 0);
    double x[64];
    for (size_t j = 0; j < dim; j++)
        x[j] = feat[j];
    ref_normalize(x, ref + 3 * dim, dim);
    ck_assert(max_abs_diff(b->v, ref, rows * dim) < 2e-6);
    ck_assert_uint_eq(b->step, 6);
    /* an exactly cancelling mix falls back to normalize(f) */
    float neg[64];
    for (size_t j = 0; j < dim; j++)
        neg[j] = -b->v[3 * dim + j];
    ck_assert_int_eq(bank_update(b, &one, 1, neg, dim, 0.5f, &e), 0);
    for (size_t j = 0; j < dim; j++)
        ck_assert(fabsf(b->v[3 * dim + j] - neg[j]) < 1e-6f);
    free(feat);
    free(ref);
    bank_destroy(&b);
}
END_TEST

START_TEST(test_bank_rejects_all_or_nothing)
{
    size_t rows = 20, dim = 8, n = 4;
    struct bank *b = bank_new(rows, dim, 2, BANK_INIT_UNIFORM);
    float *before = malloc(rows * dim * 4);
    memcpy(before, b->v, rows * dim * 4);
    float feat[32];
    fill_normal(feat, n * dim, 3);
    uint32_t idx[4] = { 1, 2, 3, 4 };
    struct bank_err e;
    float bad[32];
    /* NaN, +Inf and a zero row in the LAST row: the earlier rows must not be applied */
    const float poison[3] = { NAN, INFINITY, 0 };
    for (int p = 0; p < 3; p++) {
        memcpy(bad, feat, sizeof bad);
        if (p < 2)
            bad[3 * dim + 5] = poison[p];
        else
            memset(bad + 3 * dim, 0, dim * 4);
        ck_assert_int_eq(bank_update(b, idx, n, bad, n * dim, 0.5f, &e), -1);
        ck_assert_str_eq(e.code, BANK_EINVAL);
        ck_assert_int_eq(bank_set(b, idx, n, bad, n * dim, &e), -1);
    }
    uint32_t oob[4] = { 1, 2, 3, 20 };
    ck_assert_int_eq(bank_update(b, oob, n, feat, n * dim, 0.5f, &e), -1);
    ck_assert_str_eq(e.code, BANK_ERANGE);
    ck_assert_int_eq(bank_update(b, idx, n, feat, n * dim - 1, 0.5f, &e), -1);
    ck_assert_str_eq(e.code, BANK_EINVAL);
    ck_assert(!memcmp(before, b->v, rows * dim * 4));
    ck_assert_uint_eq(b->step, 0);
    ck_assert_uint_eq(b->writes, 0);
    /* huge finite values are fine (norms computed in double) */
    for (size_t j = 0; j < dim; j++)
        bad[j] = 3e38f;
    ck_assert_int_eq(bank_update(b, idx, 1, bad, dim, 0.5f, &e), 0);
    for (size_t j = 0; j < dim; j++)
        ck_assert(isfinite(b->v[dim + j]));
    free(before);
    bank_destroy(&b);
}
END_TEST

/* 1 when every value of the bank is finite and none is subnormal. */
static int bank_values_ok(const struct bank *b)
{
    for (size_t i = 0; i < b->rows * b->dim; i++)
        if (!isfinite(b->v[i]) || fpclassify(b->v[i]) == FP_SUBNORMAL)
            return 0;
    return 1;
}

/* Hostile values: subnormal, NaN, +-Inf, -0.0 everywhere, norm 1e-30 or just below
 * BANK_MIN_NORM, in the last row of a request, refused by set and update with nothing
 * written; a norm just above the bound, huge values and a tiny coordinate next to a huge
 * one are accepted and leave unit rows without subnormal values. */
START_TEST(test_bank_rejects_hostile_values)
{
    size_t rows = 16, dim = 8, n = 3;
    struct bank *b = bank_new(rows, dim, 4, BANK_INIT_UNIFORM);
    float *before = malloc(rows * dim * 4), feat[24], bad[24];
    memcpy(before, b->v, rows * dim * 4);
    fill_normal(feat, n * dim, 5);
    uint32_t idx[3] = { 2, 9, 15 };
    struct bank_err e;
    enum { SUBNORMAL_ONE, SUBNORMAL_ALL, NAN_ONE, INF_ONE, NINF_ONE, NEG_ZERO, TINY, BELOW, KINDS };
    for (int kind = 0; kind < KINDS; kind++) {
        memcpy(bad, feat, sizeof bad);
        float *last = bad + (n - 1) * dim;
        for (size_t j = 0; j < dim; j++) {
            switch (kind) {
            case SUBNORMAL_ONE: if (j == 3) last[j] = 1e-40f; break;
            case SUBNORMAL_ALL: last[j] = FLT_MIN / 4; break;
            case NAN_ONE: if (j == 1) last[j] = NAN; break;
            case INF_ONE: if (j == 7) last[j] = INFINITY; break;
            case NINF_ONE: if (j == 0) last[j] = -INFINITY; break;
            case NEG_ZERO: last[j] = -0.0f; break;
            case TINY: last[j] = j == 5 ? 1e-30f : 0.0f; break;                 /* norm 1e-30 */
            case BELOW: last[j] = (float)(BANK_MIN_NORM / 2 / sqrt((double)dim)); break;
            }
        }
        ck_assert(fpclassify(1e-40f) == FP_SUBNORMAL && fpclassify(FLT_MIN / 4) == FP_SUBNORMAL);
        ck_assert_msg(bank_set(b, idx, n, bad, n * dim, &e) == -1, "set accepted kind %d", kind);
        ck_assert_str_eq(e.code, BANK_EINVAL);
        ck_assert_ptr_nonnull(strstr(e.msg, "feat row 2"));
        ck_assert_msg(bank_update(b, idx, n, bad, n * dim, 0.5f, &e) == -1, "update kind %d",
                      kind);
        ck_assert_str_eq(e.code, BANK_EINVAL);
        ck_assert(!memcmp(before, b->v, rows * dim * 4));
        ck_assert_uint_eq(b->step, 0);
        ck_assert_uint_eq(b->writes, 0);
    }
    /* just above the bound: accepted, stored as a unit vector */
    for (size_t j = 0; j < dim; j++)
        bad[j] = (float)(BANK_MIN_NORM * 2 / sqrt((double)dim));
    ck_assert_int_eq(bank_set(b, idx, 1, bad, dim, &e), 0);
    /* a tiny coordinate beside a huge one: its normalised value underflows, stored as 0 */
    for (size_t j = 0; j < dim; j++)
        bad[dim + j] = j == 0 ? 3e38f : (j == 1 ? 1e-30f : 2e-38f);
    ck_assert_int_eq(bank_set(b, idx + 1, 1, bad + dim, dim, &e), 0);
    ck_assert(b->v[9 * dim + 1] == 0.0f);
    /* huge everywhere: the inverse norm is below FLT_MIN, computed in double */
    for (size_t j = 0; j < dim; j++)
        bad[2 * dim + j] = (j & 1 ? -3e38f : 3e38f);
    ck_assert_int_eq(bank_update(b, idx + 2, 1, bad + 2 * dim, dim, 0.0f, &e), 0);
    ck_assert(bank_values_ok(b));
    for (int r = 0; r < 3; r++) {
        double ss = 0;
        for (size_t j = 0; j < dim; j++)
            ss += (double)b->v[idx[r] * dim + j] * b->v[idx[r] * dim + j];
        ck_assert_msg(fabs(ss - 1) < 1e-6, "row %u has squared norm %g", idx[r], ss);
    }
    free(before);
    bank_destroy(&b);
}
END_TEST

/* The rows init makes have norm >= BANK_MIN_NORM: with dim 1 a uniform row is exactly 0
 * when its draw is 0.5, and is then drawn again from its stream. */
START_TEST(test_bank_init_no_zero_rows)
{
    uint64_t seed = 0, row = 0;
    int found = 0;
    for (uint64_t i = 0; i < (1ull << 27) && !found; i++) {
        struct rng r = rng_derive(i >> 20, 1, i & 0xfffff);
        if (rng_float(&r) == 0.5f) {
            seed = i >> 20;
            row = i & 0xfffff;
            found = 1;
        }
    }
    ck_assert_msg(found, "no draw of exactly 0.5 found");
    struct bank *b = bank_new(row + 1, 1, seed, BANK_INIT_UNIFORM);
    ck_assert_ptr_nonnull(b);
    ck_assert_msg(fabsf(b->v[row]) >= BANK_MIN_NORM, "row %llu of seed %llu is %g",
                  (unsigned long long)row, (unsigned long long)seed, b->v[row]);
    struct rng r = rng_derive(seed, 1, row);
    rng_float(&r);
    /* the next draw of its stream */
    ck_assert(b->v[row] == (2.0f * rng_float(&r) - 1.0f) * (1.0f / sqrtf(1.0f / 3.0f)));
    ck_assert(bank_values_ok(b));
    bank_destroy(&b);
}
END_TEST

START_TEST(test_bank_sample)
{
    size_t rows = 10, dim = 4, k = 100000;
    struct bank *b = bank_new(rows, dim, 3, BANK_INIT_UNIFORM);
    uint32_t *ni = malloc(4 * k);
    float *nv = malloc(4 * k * dim);
    float pv[3 * 4];
    uint32_t pos[3] = { 9, 0, 9 };
    struct bank_err e;
    ck_assert_int_eq(bank_sample(b, k, pos, 3, 0, ni, nv, pv, &e), 0);
    size_t count[10] = { 0 };
    for (size_t j = 0; j < k; j++) {
        ck_assert_uint_lt(ni[j], rows);
        count[ni[j]]++;
        ck_assert(!memcmp(nv + j * dim, b->v + ni[j] * dim, dim * 4));
    }
    for (size_t i = 0; i < rows; i++) /* expected 10000, sd ~95 */
        ck_assert_msg(count[i] > 9500 && count[i] < 10500, "row %zu drawn %zu times", i, count[i]);
    for (size_t i = 0; i < 3; i++)
        ck_assert(!memcmp(pv + i * dim, b->v + pos[i] * dim, dim * 4));
    ck_assert_int_eq(bank_sample(b, k, pos, 3, 1, ni, nv, pv, &e), 0);
    for (size_t j = 0; j < k; j++)
        ck_assert(ni[j] != 9 && ni[j] != 0);
    uint32_t all[10] = { 0, 1, 2, 3, 4, 5, 6, 7, 8, 9 };
    ck_assert_int_eq(bank_sample(b, 5, all, 10, 1, ni, nv, pv, &e), -1);
    ck_assert_str_eq(e.code, BANK_ERANGE);
    uint32_t badpos[1] = { 10 };
    ck_assert_int_eq(bank_sample(b, 5, badpos, 1, 0, ni, nv, pv, &e), -1);
    ck_assert_str_eq(e.code, BANK_ERANGE);
    /* more than half excluded: drawn from the complement, uniformly */
    uint32_t six[6] = { 8, 1, 3, 4, 6, 0 };
    float pv6[6 * 4];
    ck_assert_int_eq(bank_sample(b, k, six, 6, 1, ni, nv, pv6, &e), 0);
    memset(count, 0, sizeof count);
    for (size_t j = 0; j < k; j++)
        count[ni[j]]++;
    for (size_t i = 0; i < rows; i++) {
        int kept = i == 2 || i == 5 || i == 7 || i == 9; /* expected 25000, sd ~137 */
        ck_assert_msg(kept ? count[i] > 24300 && count[i] < 25700 : count[i] == 0,
                      "row %zu drawn %zu times", i, count[i]);
    }
    free(ni);
    free(nv);
    bank_destroy(&b);
}
END_TEST

/* All rows but two excluded and the largest k: bounded work (this took 39 s with rejection
 * sampling, stalling bankd for every client), every draw one of the two. */
START_TEST(test_bank_sample_exclude_nearly_all)
{
    size_t rows = 2000, dim = 4, k = 131071;
    struct bank *b = bank_new(rows, dim, 5, BANK_INIT_UNIFORM);
    uint32_t *ni = malloc(4 * k), *pos = malloc(4 * rows);
    float *nv = malloc(4 * k * dim), *pv = malloc(4 * rows * dim);
    size_t np = 0;
    for (uint32_t i = 0; i < rows; i++)
        if (i != 7 && i != 1500)
            pos[np++] = i;
    struct bank_err e;
    ck_assert_int_eq(bank_sample(b, k, pos, np, 1, ni, nv, pv, &e), 0);
    size_t a = 0;
    for (size_t j = 0; j < k; j++) {
        ck_assert(ni[j] == 7 || ni[j] == 1500);
        a += ni[j] == 7;
    }
    ck_assert_msg(a > k / 2 - 2000 && a < k / 2 + 2000, "row 7 drawn %zu of %zu", a, k);
    free(ni);
    free(pos);
    free(nv);
    free(pv);
    bank_destroy(&b);
}
END_TEST

START_TEST(test_bank_stats)
{
    size_t rows = 8, dim = 4;
    struct bank *b = bank_new(rows, dim, 4, BANK_INIT_UNIFORM);
    float f[4] = { 1, 0, 0, 0 };
    struct bank_err e;
    uint32_t r0 = 0, r1 = 1;
    bank_update(b, &r0, 1, f, 4, 0.5f, &e); /* step 1: row 0 */
    bank_update(b, &r1, 1, f, 4, 0.5f, &e); /* step 2: row 1 */
    bank_update(b, &r1, 1, f, 4, 0.5f, &e); /* step 3: row 1 */
    bank_update(b, &r1, 1, f, 4, 0.5f, &e); /* step 4: row 1 */
    struct bank_stats_rep st;
    memset(&st, 0, sizeof st);
    bank_stats(b, &st);
    ck_assert_uint_eq(st.step, 4);
    ck_assert_uint_eq(st.writes, 4);
    ck_assert_uint_eq(st.rows_written, 2);
    ck_assert_uint_eq(st.upd_min, 0);
    ck_assert_uint_eq(st.upd_max, 3);
    /* staleness: row 1 -> 0, row 0 -> 3, six rows never written -> 4 */
    ck_assert_uint_eq(st.stale_max, 4);
    ck_assert(fabs(st.stale_mean - (0 + 3 + 6 * 4) / 8.0) < 1e-12);
    ck_assert_uint_eq(st.stale_hist[0], 1);
    ck_assert_uint_eq(st.stale_hist[2], 1); /* 3 in [2, 4) */
    ck_assert_uint_eq(st.stale_hist[3], 6); /* 4 in [4, 8) */
    ck_assert(fabs(st.norm_max - 1) < 1e-6 || st.norm_max > 1);
    bank_destroy(&b);
}
END_TEST

/* ping's JSON rendering of replies: escapes, nesting, every msgpack type. */
START_TEST(test_ping_json)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 8);
    mp_pack_kv_u64(&pk, "v", 1);
    mp_pack_kv_str(&pk, "msg", "a \"q\"\\\n\x01");
    mp_pack_kv_i64(&pk, "neg", -5);
    mp_pack_kv_double(&pk, "x", 0.5);
    mp_pack_kv_double(&pk, "nan", NAN);
    mp_pack_kv_bin(&pk, "b", "abc", 3);
    mp_pack_key(&pk, "arr");
    msgpack_pack_array(&pk, 3);
    msgpack_pack_nil(&pk);
    msgpack_pack_true(&pk);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_uint64(&pk, 7);
    msgpack_pack_false(&pk);
    mp_pack_kv_bool(&pk, "ok", 0);
    char *txt = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&txt, &len);
    ck_assert_int_eq(ping_print_json(f, sb.data, sb.size), 0);
    fclose(f);
    ck_assert_str_eq(txt, "{\"v\": 1, \"msg\": \"a \\\"q\\\"\\\\\\n\\u0001\", \"neg\": -5, "
                          "\"x\": 0.5, \"nan\": null, \"b\": {\"bin\": 3}, "
                          "\"arr\": [null, true, {\"7\": false}], \"ok\": false}\n");
    free(txt);
    f = open_memstream(&txt, &len);
    ck_assert_int_eq(ping_print_json(f, sb.data, sb.size - 1), -1); /* truncated */
    fclose(f);
    free(txt);
    msgpack_sbuffer_destroy(&sb);
}
END_TEST

/* ---- snapshot files ------------------------------------------------------------------------- */

static char tmp_root[256];

static const char *tmpdir_new(const char *tag)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s-XXXXXX", tmp_root, tag);
    ck_assert_ptr_nonnull(mkdtemp(path));
    return path;
}

static struct bank *bank_with_writes(uint64_t rows, size_t dim)
{
    struct bank *b = bank_new(rows, dim, 11, BANK_INIT_UNIFORM);
    bank_set_ids(b, "run-x", 5, "manifest-y", 10);
    float *f = malloc(4 * dim * 5);
    fill_normal(f, dim * 5, 12);
    uint32_t idx[5] = { 0, 7, 7, 2, (uint32_t)rows - 1 };
    struct bank_err e;
    ck_assert_int_eq(bank_update(b, idx, 5, f, 5 * dim, 0.5f, &e), 0);
    free(f);
    return b;
}

static void assert_banks_equal(const struct bank *a, const struct bank *b)
{
    ck_assert(a->rows == b->rows && a->dim == b->dim && a->step == b->step &&
              a->writes == b->writes && a->seed == b->seed);
    ck_assert(!memcmp(a->v, b->v, a->rows * a->dim * 4));
    ck_assert(!memcmp(a->last_write, b->last_write, a->rows * 8));
    ck_assert(!memcmp(a->writes_row, b->writes_row, a->rows * 4));
    ck_assert_str_eq(a->run, b->run);
    ck_assert_int_eq(a->has_manifest, b->has_manifest);
    ck_assert_str_eq(a->manifest, b->manifest);
    ck_assert_int_eq(a->has_token, b->has_token);
    ck_assert(!a->has_token || !memcmp(a->token_hash, b->token_hash, 32));
}

/* Rewrites the current-version snapshot src as a version 1 (64-byte fixed header, no extra
 * section) or version 2 (72 bytes, no token hash) file at dst. The bank must have no extra
 * section (version 1) and no token: those versions cannot say so. */
static void snapshot_downgrade(const char *src, const char *dst, uint32_t ver)
{
    void *raw;
    size_t rawlen;
    ck_assert_int_eq(file_read_all(src, 1 << 24, &raw, &rawlen), 0);
    unsigned char *v3 = raw;
    uint32_t hlen3, flags, cur;
    memcpy(&cur, v3 + 8, 4);
    ck_assert_uint_eq(cur, 3);
    memcpy(&hlen3, v3 + 12, 4);
    memcpy(&flags, v3 + 56, 4);
    ck_assert_uint_eq(flags & 4, 0);
    size_t fixed = ver == 1 ? 64 : 72, drop = 104 - fixed;
    uint32_t hlen = hlen3 - (uint32_t)drop, hcrc;
    unsigned char *old = malloc(rawlen - drop);
    memcpy(old, v3, fixed);                             /* the fixed header both share */
    memcpy(old + 8, &ver, 4);
    memcpy(old + 12, &hlen, 4);
    memcpy(old + fixed, v3 + 104, rawlen - 104);        /* run, manifest, crcs, payload */
    hcrc = crc32c(crc32c(0, old, hlen), old + hlen, 4);
    memcpy(old + hlen + 4, &hcrc, 4);
    ck_assert_int_eq(durable_write(dst, old, rawlen - drop), 0);
    free(old);
    free(raw);
}

static void flip_byte(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    ck_assert_int_ge(fd, 0);
    unsigned char c;
    ck_assert_int_eq(pread(fd, &c, 1, off), 1);
    c ^= 0x10;
    ck_assert_int_eq(pwrite(fd, &c, 1, off), 1);
    close(fd);
}

START_TEST(test_snapshot_roundtrip_and_corruption)
{
    const char *dir = tmpdir_new("snap");
    struct bank *b = bank_with_writes(300, 16);
    char path[1024], prev[1100];
    ck_assert_int_eq(snapshot_write(b, dir, path, sizeof path), 0);
    const char *why = NULL;
    struct bank *r = snapshot_read(path, &why);
    ck_assert_msg(r != NULL, "read failed: %s", why);
    assert_banks_equal(b, r);
    bank_destroy(&r);

    /* the extra section round trips, and corruption in it is caught */
    b->extra = malloc(5);
    memcpy(b->extra, "cache", 5);
    b->extra_len = 5;
    ck_assert_int_eq(snapshot_write_as(b, dir, "bank-x.snap", prev, sizeof prev), 0);
    r = snapshot_read(prev, &why);
    ck_assert_msg(r != NULL, "read failed: %s", why);
    assert_banks_equal(b, r);
    ck_assert_uint_eq(r->extra_len, 5);
    ck_assert(!memcmp(r->extra, "cache", 5));
    bank_destroy(&r);
    struct stat xst;
    stat(prev, &xst);
    flip_byte(prev, xst.st_size - 2);
    ck_assert_ptr_null(snapshot_read(prev, &why));
    ck_assert_str_eq(why, "payload checksum mismatch");
    free(b->extra);
    b->extra = NULL;
    b->extra_len = 0;
    unlink(prev);

    /* version 1 (64-byte fixed header, no extra section) and version 2 files (72 bytes, no
     * token hash) still load, as banks without a token */
    ck_assert_int_eq(snapshot_write(b, dir, path, sizeof path), 0);
    for (uint32_t ver = 1; ver <= 2; ver++) {
        snprintf(prev, sizeof prev, "%s/v%u.snap", dir, ver);
        snapshot_downgrade(path, prev, ver);
        struct snapshot_info info;
        ck_assert_int_eq(snapshot_peek(prev, &info, &why), 0);
        ck_assert(info.version == ver && !info.has_token);
        r = snapshot_read(prev, &why);
        ck_assert_msg(r != NULL, "version %u read failed: %s", ver, why);
        assert_banks_equal(b, r);
        ck_assert_uint_eq(r->extra_len, 0);
        ck_assert_int_eq(r->has_token, 0);
        bank_destroy(&r);
        unlink(prev);
    }

    /* a token's hash round trips (the token itself is nowhere in the file) and a bank read
     * back takes that token only */
    static const char tok[] = "5f2b8a9c0d1e2f30415263748596a7b8c9dae0f102132435465768798a9bacbd";
    static const char other[] = "5f2b8a9c0d1e2f30415263748596a7b8c9dae0f102132435465768798a9bacbe";
    bank_set_token(b, tok, 64);
    ck_assert(bank_token_ok(b, tok, 64) && !bank_token_ok(b, other, 64) &&
              !bank_token_ok(b, NULL, 0) && !bank_token_ok(b, tok, 63));
    ck_assert_int_eq(snapshot_write_as(b, dir, "bank-tok.snap", prev, sizeof prev), 0);
    {
        struct snapshot_info info;
        ck_assert_int_eq(snapshot_peek(prev, &info, &why), 0);
        ck_assert(info.version == SNAPSHOT_VERSION && info.has_token);
        ck_assert(!memcmp(info.token_hash, b->token_hash, 32));
        void *raw;
        size_t rawlen;
        ck_assert_int_eq(file_read_all(prev, 1 << 24, &raw, &rawlen), 0);
        ck_assert_ptr_null(memmem(raw, rawlen, tok, 16));
        free(raw);
    }
    r = snapshot_read(prev, &why);
    ck_assert_msg(r != NULL, "read failed: %s", why);
    assert_banks_equal(b, r);
    ck_assert(bank_token_ok(r, tok, 64) && !bank_token_ok(r, other, 64) &&
              !bank_token_ok(r, NULL, 0));
    bank_destroy(&r);
    flip_byte(prev, 72 + 5); /* inside the hash: the header checksum catches it */
    ck_assert_ptr_null(snapshot_read(prev, &why));
    ck_assert_str_eq(why, "header checksum mismatch");
    unlink(prev);
    b->has_token = 0;
    memset(b->token_hash, 0, 32);

    /* second snapshot: the first becomes .prev */
    struct bank_err e;
    uint32_t i5 = 5;
    float f[16];
    fill_normal(f, 16, 77);
    ck_assert_int_eq(bank_set(b, &i5, 1, f, 16, &e), 0);
    ck_assert_int_eq(snapshot_write(b, dir, path, sizeof path), 0);
    snprintf(prev, sizeof prev, "%s.prev", path);
    r = snapshot_read(prev, &why);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->step, b->step - 1);
    bank_destroy(&r);

    /* corruption anywhere is detected: header, strings, payload rows, bookkeeping */
    struct stat st;
    stat(path, &st);
    off_t spots[] = { 20, 66, 200, st.st_size / 2, st.st_size - 1 };
    for (size_t s = 0; s < sizeof spots / sizeof spots[0]; s++) {
        flip_byte(path, spots[s]);
        ck_assert_ptr_null(snapshot_read(path, &why));
        flip_byte(path, spots[s]);
    }
    r = snapshot_read(path, &why);
    ck_assert_ptr_nonnull(r);
    bank_destroy(&r);
    /* truncation */
    ck_assert_int_eq(truncate(path, st.st_size - 4), 0);
    ck_assert_ptr_null(snapshot_read(path, &why));
    ck_assert_str_eq(why, "truncated file");
    /* the newest being bad, the previous one is loaded */
    int found = 0;
    char loaded[1100];
    r = snapshot_load_newest(dir, 0, &found, loaded, sizeof loaded);
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(loaded, prev);
    ck_assert_uint_eq(r->step, b->step - 1);
    bank_destroy(&r);
    /* a bank larger than max_bytes loads nothing, and nothing older is tried instead */
    errno = 0;
    ck_assert_ptr_null(snapshot_load_newest(dir, bank_bytes(b->rows, b->dim) - 1, &found,
                                            loaded, sizeof loaded));
    ck_assert_int_eq(errno, EFBIG);
    r = snapshot_load_newest(dir, bank_bytes(b->rows, b->dim), &found, loaded, sizeof loaded);
    ck_assert_ptr_nonnull(r);
    bank_destroy(&r);
    /* not a snapshot at all */
    ck_assert_int_eq(durable_write(path, "hello", 5), 0);
    ck_assert_ptr_null(snapshot_read(path, &why));
    bank_destroy(&b);
}
END_TEST

START_TEST(test_snapshot_write_fails_cleanly)
{
    const char *dir = tmpdir_new("full");
    struct bank *small = bank_with_writes(10, 4);
    char path[1024];
    ck_assert_int_eq(snapshot_write(small, dir, path, sizeof path), 0);
    struct bank *big = bank_with_writes(100000, 16); /* 7.6 MB */
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = { 1 << 20, 1 << 20 };
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0); /* this forked test process only */
    errno = 0;
    ck_assert_int_eq(snapshot_write(big, dir, path, sizeof path), -1);
    ck_assert_int_eq(errno, EFBIG);
    /* the last good snapshot is intact and no temp file is left */
    const char *why;
    struct bank *r = snapshot_read(path, &why);
    ck_assert_ptr_nonnull(r);
    assert_banks_equal(small, r);
    bank_destroy(&r);
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    ck_assert_int_ne(access(tmp, F_OK), 0);
    bank_destroy(&big);
    bank_destroy(&small);
}
END_TEST

/* ---- the daemon ----------------------------------------------------------------------------- */

struct daemon {
    pid_t pid;
    char ep[600];
    char dir[512];
    char log[600];
};

static const char *bin_dir(void)
{
    const char *b = getenv("NPID_BIN");
    return b && *b ? b : "build";
}

/* Forks npid-bankd with extra args (NULL-terminated), exec'd after delay_us. */
static void daemon_spawn(struct daemon *d, const char *dir, const char *const *extra,
                         useconds_t delay_us, const char *ep)
{
    snprintf(d->dir, sizeof d->dir, "%s", dir);
    if (ep)
        snprintf(d->ep, sizeof d->ep, "%s", ep);
    else
        snprintf(d->ep, sizeof d->ep, "ipc://%s/bankd.sock", dir);
    snprintf(d->log, sizeof d->log, "%s/bankd.log", dir);
    char exe[512];
    snprintf(exe, sizeof exe, "%s/npid-bankd", bin_dir());
    ck_assert_msg(access(exe, X_OK) == 0, "%s not built", exe);
    const char *argv[32] = { exe, "--bind", d->ep, "--dir", d->dir, "--snapshot-every", "0" };
    int n = 7;
    for (; extra && *extra && n < 30; extra++)
        argv[n++] = *extra;
    argv[n] = NULL;
    d->pid = fork();
    ck_assert_int_ge(d->pid, 0);
    if (d->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive a failed test */
        if (delay_us)
            usleep(delay_us);
        int fd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fd, 2);
        execv(exe, (char *const *)argv);
        _exit(127);
    }
}

/* Starts npid-bankd with extra args (NULL-terminated) and waits until it answers. */
static void daemon_start(struct daemon *d, const char *dir, const char *const *extra)
{
    daemon_spawn(d, dir, extra, 0, NULL);
    /* wait for an answer: ENOBANK or a bank */
    struct bankc *c = bankc_new(d->ep, NULL, 100, 0);
    for (int i = 0; i < 100; i++) {
        struct bankc_info info;
        if (bankc_info(c, &info) == 0 || strcmp(bankc_error_code(c), BANK_ENOBANK) == 0)
            break;
        int st;
        ck_assert_msg(waitpid(d->pid, &st, WNOHANG) == 0, "bankd exited at start");
    }
    bankc_destroy(&c);
}

/* Sends sig and returns the exit status (or 128 + signal). */
static int daemon_stop(struct daemon *d, int sig)
{
    kill(d->pid, sig);
    int st = 0;
    for (int i = 0; i < 200; i++) {
        if (waitpid(d->pid, &st, WNOHANG) == d->pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(50000);
    }
    kill(d->pid, SIGKILL);
    waitpid(d->pid, &st, 0);
    ck_abort_msg("bankd did not stop within 10 s");
    return -1;
}

static int log_contains(const struct daemon *d, const char *needle)
{
    void *buf;
    size_t len;
    if (file_read_all(d->log, 1 << 24, &buf, &len) != 0)
        return 0;
    char *s = realloc(buf, len + 1);
    s[len] = 0;
    int found = strstr(s, needle) != NULL;
    free(s);
    return found;
}

/* A raw DEALER for sending hand-made frames. */
static void *raw_socket(const struct daemon *d)
{
    struct msg_opts o = MSG_OPTS_DEFAULT;
    o.maxmsgsize = -1;
    void *s = msg_socket(ZMQ_DEALER, &o);
    ck_assert_int_eq(msg_connect(s, d->ep), 0);
    return s;
}

/* Receives one reply (up to timeout_ms) into the map; returns 0 or -1 when none came. */
static int raw_reply(void *s, zmq_msg_t *m, int timeout_ms, struct mp_map *map)
{
    zmq_msg_init(m);
    if (msg_recv(s, m, timeout_ms, NULL) != 0)
        return -1;
    ck_assert_int_eq(mp_map_open(map, zmq_msg_data(m), zmq_msg_size(m), 8, NULL), 0);
    return 0;
}

static void expect_err_reply(void *s, const char *code)
{
    zmq_msg_t m;
    struct mp_map map;
    ck_assert_msg(raw_reply(s, &m, 3000, &map) == 0, "no reply (wanted %s)", code);
    int ok = 1;
    const char *err;
    size_t len;
    ck_assert_int_eq(mp_get_bool(&map, "ok", &ok), MP_OK);
    ck_assert_int_eq(ok, 0);
    ck_assert_int_eq(mp_get_str(&map, "err", &err, &len), MP_OK);
    ck_assert_msg(len == strlen(code) && !memcmp(err, code, len), "want %s got %.*s", code,
                  (int)len, err);
    zmq_msg_close(&m);
}

static void expect_info_ok(void *s, uint64_t rows)
{
    const char req[] = "\x82\xa1v\x01\xa2op\xa4info";
    ck_assert_int_eq(zmq_send(s, req, sizeof req - 1, 0), (int)sizeof req - 1);
    zmq_msg_t m;
    struct mp_map map;
    ck_assert_msg(raw_reply(s, &m, 3000, &map) == 0, "no info reply");
    uint64_t got = 0;
    int ok = 0;
    ck_assert_int_eq(mp_get_bool(&map, "ok", &ok), MP_OK);
    ck_assert_int_eq(ok, 1);
    ck_assert_int_eq(mp_get_u64(&map, "rows", &got), MP_OK);
    ck_assert_uint_eq(got, rows);
    zmq_msg_close(&m);
}

START_TEST(test_daemon_malformed_frames)
{
    struct daemon d;
    const char *extra[] = { "--rows", "1000", "--dim", "8", "--max-frame", "65536", NULL };
    daemon_start(&d, tmpdir_new("malformed"), extra);
    void *s = raw_socket(&d);
#define C(lit, code) { lit, sizeof(lit) - 1, code }
    static const struct { const char *bytes; size_t len; const char *code; } cases[] = {
        C("", BANK_EPROTO),                                            /* empty frame */
        C("\x82\xa1v\x01\xa2op", BANK_EPROTO),                         /* truncated */
        C("\x82\xa1v\x01\xa2op\xa4info\x00", BANK_EPROTO),            /* trailing bytes */
        C("\x81\xa1v\xc1", BANK_EPROTO),                               /* 0xc1 */
        C("\xdf\xff\xff\xff\xff\xa1v\x01", BANK_EPROTO),               /* huge map count */
        C("\x82\xa1v\x01\xa2op\xdb\xff\xff\xff\xf0x", BANK_EPROTO),   /* huge str length */
        C("\x93\x01\x02\x03", BANK_EPROTO),                            /* not a map */
        C("\x81\xa2op\xa4info", BANK_EPROTO),                          /* no version */
        C("\x82\xa1v\x02\xa2op\xa4info", BANK_EVERSION),              /* wrong version */
        C("\x82\xa1v\x01\xa2op\xa4nope", BANK_EINVAL),                /* unknown op */
        C("\x82\xa1v\x01\xa2op\x2a", BANK_EPROTO),                     /* op not a str */
        C("\x83\xa1v\x01\xa2op\xa3get\xa5start\xa1x", BANK_EPROTO),   /* wrong types */
        C("\x84\xa1v\x01\xa2op\xa6sample\xa1k\x05\xa3pos\xc4\x02\x00\x00", BANK_EINVAL),
        C("\x84\xa1v\x01\xa2op\xa6sample\xa1k\x05\xa3pos\xc4\x04\xff\xff\x00\x00", BANK_ERANGE),
        C("\x84\xa1v\x01\xa2op\xa3get\xa5start\x00\xa5" "count\xce\x00\x10\x00\x00", BANK_ERANGE),
        C("\x85\xa1v\x01\xa2op\xa6update\xa3idx\xc4\x04\x01\x00\x00\x00\xa4" "feat\xc4\x04\x00\x00\x80\x3f\xa8momentum\xcb\x3f\xe0\x00\x00\x00\x00\x00\x00", BANK_EINVAL),                                               /* feat not B x dim */
        C("\x84\xa1v\x01\xa2op\xa4init\xa4rows\x05\xa3" "dim\x08", BANK_EMISMATCH),
        C("\x82\xa1v\x01\xa1x\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\xc0", BANK_EPROTO),                                                   /* nesting too deep */
    };
#undef C
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_int_eq(zmq_send(s, cases[i].bytes, cases[i].len, 0), (int)cases[i].len);
        expect_err_reply(s, cases[i].code);
        expect_info_ok(s, 1000);
    }
    /* two body frames */
    zmq_send(s, "\x80", 1, ZMQ_SNDMORE);
    zmq_send(s, "\x80", 1, 0);
    expect_err_reply(s, BANK_EPROTO);
    expect_info_ok(s, 1000);
    /* a REQ-style envelope (empty delimiter) is accepted and the delimiter echoed */
    zmq_send(s, "", 0, ZMQ_SNDMORE);
    zmq_send(s, "\x82\xa1v\x01\xa2op\xa4info", 12, 0);
    zmq_msg_t m;
    zmq_msg_init(&m);
    ck_assert_int_eq(msg_recv(s, &m, 3000, NULL), 0);
    ck_assert_uint_eq(zmq_msg_size(&m), 0);
    ck_assert(zmq_msg_more(&m));
    msg_drain_more(s);
    zmq_msg_close(&m);
    /* a frame over --max-frame is answered EMSGSIZE; one over the transport limit (4 x
     * --max-frame) drops the connection, no reply; bankd lives on */
    size_t big = 300000;
    char *junk = calloc(1, big);
    junk[0] = (char)0x80;
    zmq_send(s, junk, 100000, 0);
    expect_err_reply(s, BANK_EMSGSIZE);
    zmq_send(s, junk, big, 0);
    free(junk);
    struct mp_map map;
    ck_assert_int_eq(raw_reply(s, &m, 500, &map), -1);
    zmq_msg_close(&m);
    msg_close(&s);
    s = raw_socket(&d);
    expect_info_ok(s, 1000);
    msg_close(&s);
    ck_assert_int_eq(daemon_stop(&d, SIGTERM), 0);
}
END_TEST

/* Encodes an update with a fixed cid/seq into sb. */
static void encode_update(msgpack_sbuffer *sb, const char *cid, uint64_t seq, const uint32_t *idx,
                          size_t n, const float *feat, size_t dim)
{
    msgpack_packer pk;
    msgpack_sbuffer_clear(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    struct bank_hdr h = { BANK_OP_UPDATE, cid, strlen(cid), seq, 1, NULL, 0 };
    struct bank_update_req q = { idx, n, feat, n * dim, 0.5 };
    ck_assert_int_eq(proto_bank_encode_update_req(&pk, &h, &q), 0);
}

static uint64_t reply_step(void *s)
{
    zmq_msg_t m;
    struct mp_map map;
    ck_assert_int_eq(raw_reply(s, &m, 3000, &map), 0);
    uint64_t step = 0;
    ck_assert_int_eq(mp_get_u64(&map, "step", &step), MP_OK);
    zmq_msg_close(&m);
    return step;
}

START_TEST(test_daemon_retry_applied_once)
{
    struct daemon d;
    daemon_start(&d, tmpdir_new("retry"), NULL);
    size_t rows = 500, dim = 16, n = 8;
    struct bankc *c = bankc_new(d.ep, "trainer-1", 2000, 2);
    int created = 0;
    uint64_t step = 99;
    ck_assert_int_eq(bankc_init(c, rows, dim, 3, "r", "m", &created, &step), 0);
    ck_assert(created == 1 && step == 0);
    float *ref = malloc(rows * dim * 4), *got = malloc(rows * dim * 4);
    ck_assert_int_eq(bankc_get(c, 0, rows, ref), 0);
    float feat[8 * 16];
    fill_normal(feat, n * dim, 5);
    uint32_t idx[8] = { 1, 2, 3, 4, 5, 6, 7, 1 };

    /* the same bytes three times: applied once, identical replies */
    void *s = raw_socket(&d);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    encode_update(&sb, "raw-1", 42, idx, n, feat, dim);
    for (int i = 0; i < 3; i++) {
        zmq_send(s, sb.data, sb.size, 0);
        ck_assert_uint_eq(reply_step(s), 1);
    }
    ref_update(ref, dim, idx, n, feat, 0.5);
    ck_assert_int_eq(bankc_get(c, 0, rows, got), 0);
    ck_assert(max_abs_diff(got, ref, rows * dim) < 2e-6);
    /* same cid and seq but different bytes: a new request, applied */
    feat[0] += 1;
    encode_update(&sb, "raw-1", 42, idx, n, feat, dim);
    zmq_send(s, sb.data, sb.size, 0);
    ck_assert_uint_eq(reply_step(s), 2);
    ref_update(ref, dim, idx, n, feat, 0.5);
    /* another client with the same seq is not confused with raw-1 */
    encode_update(&sb, "raw-2", 42, idx, n, feat, dim);
    zmq_send(s, sb.data, sb.size, 0);
    ck_assert_uint_eq(reply_step(s), 3);
    ref_update(ref, dim, idx, n, feat, 0.5);

    /* a real timeout: bankd stopped while the request is in flight; bankc resends; the
     * copies all arrive after SIGCONT and are applied once */
    struct bankc *slow = bankc_new(d.ep, "trainer-2", 300, 5);
    ck_assert_int_eq(bankc_info(slow, NULL), 0);
    kill(d.pid, SIGSTOP);
    pid_t waker = fork();
    if (waker == 0) {
        usleep(800000);
        kill(d.pid, SIGCONT);
        _exit(0);
    }
    feat[1] -= 1;
    ck_assert_int_eq(bankc_update(slow, idx, feat, n, 0.5f, &step), 0);
    ck_assert_uint_eq(step, 4);
    ref_update(ref, dim, idx, n, feat, 0.5);
    waitpid(waker, NULL, 0);
    ck_assert_uint_ge(msg_client_resends(bankc_msg_client(slow)), 1);
    struct bank_stats_rep st;
    usleep(100000);
    ck_assert_int_eq(bankc_stats(c, &st), 0);
    ck_assert_uint_eq(st.step, 4);
    ck_assert_uint_ge(st.cache_hits, 3); /* two raw repeats + at least one resend */
    ck_assert_int_eq(bankc_get(c, 0, rows, got), 0);
    ck_assert(max_abs_diff(got, ref, rows * dim) < 2e-6);
    msgpack_sbuffer_destroy(&sb);
    msg_close(&s);
    bankc_destroy(&slow);
    bankc_destroy(&c);
    free(ref);
    free(got);
    ck_assert_int_eq(daemon_stop(&d, SIGTERM), 0);
}
END_TEST

/* An update applied, then snapshotted (in the foreground on request, and by the periodic
 * background writer), then bankd SIGKILLed: the same request retried against the restarted
 * daemon is answered from the reply cache saved in the snapshot, not applied a second time. */
START_TEST(test_daemon_retry_after_restart)
{
    const char *dir = tmpdir_new("retry-restart");
    struct daemon d;
    const char *periodic[] = { "--snapshot-every", "0.2", NULL };
    size_t rows = 300, dim = 8, n = 4;
    float feat[4 * 8], *ref = malloc(rows * dim * 4), *got = malloc(rows * dim * 4);
    uint32_t idx[4] = { 3, 1, 4, 1 };
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    for (int bg = 0; bg < 2; bg++) {
        daemon_start(&d, dir, bg ? periodic : NULL);
        struct bankc *c = bankc_new(d.ep, "observer", 3000, 1);
        if (!bg)
            ck_assert_int_eq(bankc_init(c, rows, dim, 4, "run", NULL, NULL, NULL), 0);
        ck_assert_int_eq(bankc_get(c, 0, rows, ref), 0);
        void *s = raw_socket(&d);
        fill_normal(feat, n * dim, 70 + (uint64_t)bg);
        encode_update(&sb, "trainer-r", 10 + (uint64_t)bg, idx, n, feat, dim);
        zmq_send(s, sb.data, sb.size, 0);
        ck_assert_uint_eq(reply_step(s), 1 + (uint64_t)bg);
        ref_update(ref, dim, idx, n, feat, 0.5);
        if (!bg) {
            ck_assert_int_eq(bankc_snapshot(c, NULL, 0, NULL), 0);
        } else {
            for (int i = 0; i < 100 && !log_contains(&d, "step 2 written"); i++)
                usleep(50000);
            ck_assert(log_contains(&d, "step 2 written"));
        }
        bankc_destroy(&c);
        msg_close(&s);
        ck_assert_int_eq(daemon_stop(&d, SIGKILL), 128 + SIGKILL);

        daemon_start(&d, dir, NULL);
        ck_assert(log_contains(&d, "client(s) restored from the snapshot"));
        s = raw_socket(&d);
        zmq_send(s, sb.data, sb.size, 0); /* the retry, same bytes */
        ck_assert_uint_eq(reply_step(s), 1 + (uint64_t)bg);
        c = bankc_new(d.ep, "observer", 3000, 1);
        struct bank_stats_rep st;
        ck_assert_int_eq(bankc_stats(c, &st), 0);
        ck_assert_uint_eq(st.step, 1 + (uint64_t)bg);
        ck_assert_uint_eq(st.cache_hits, 1);
        ck_assert_int_eq(bankc_get(c, 0, rows, got), 0);
        ck_assert(max_abs_diff(got, ref, rows * dim) < 2e-6);
        bankc_destroy(&c);
        msg_close(&s);
        ck_assert_int_eq(daemon_stop(&d, SIGTERM), 0);
    }
    msgpack_sbuffer_destroy(&sb);
    free(ref);
    free(got);
}
END_TEST

/* Sends one raw request map built by the caller with pk (v, op, ... already packed). */
static void raw_send(void *s, const msgpack_sbuffer *sb)
{
    ck_assert_int_eq(zmq_send(s, sb->data, sb->size, 0), (int)sb->size);
}

/* sample with the negatives given: exactly those rows in that order, the positives, the
 * indices echoed; bad indices ERANGE; k and neg_idx must agree; exclude_pos is ignored. */
START_TEST(test_daemon_rows)
{
    struct daemon d;
    daemon_start(&d, tmpdir_new("rows"), NULL);
    size_t rows = 3000, dim = 16;
    struct bankc *c = bankc_new(d.ep, NULL, 3000, 1);
    ck_assert_int_eq(bankc_init(c, rows, dim, 5, "run", NULL, NULL, NULL), 0);
    struct bank *ref = bank_new(rows, dim, 5, BANK_INIT_UNIFORM);
    struct bank_err e;
    /* move the bank away from its initial state so stale rows would show */
    uint32_t upd[3] = { 7, 2999, 7 };
    float f[3 * 16];
    fill_normal(f, 3 * dim, 9);
    uint64_t step;
    ck_assert_int_eq(bankc_update(c, upd, f, 3, 0.5f, &step), 0);
    ck_assert_int_eq(bank_update(ref, upd, 3, f, 3 * dim, 0.5f, &e), 0);

    /* a local draw from the caller's own seed, as the trainer does */
    size_t k = 512, B = 5;
    uint32_t *want = malloc(4 * k), *ni = malloc(4 * k), pos[5] = { 3, 7, 2999, 0, 7 };
    float *nv = malloc(4 * k * dim), *pv = malloc(4 * B * dim);
    struct rng r = rng_derive(77, 1, 2);
    for (size_t j = 0; j < k; j++)
        want[j] = (uint32_t)rng_below(&r, rows);
    want[0] = 2999;
    want[1] = 7;
    want[2] = 7; /* repeats allowed */
    for (int rep = 0; rep < 2; rep++) {
        memset(ni, 0xff, 4 * k);
        ck_assert_int_eq(bankc_rows_send(c, want, k, pos, B), 0);
        ck_assert_int_eq(bankc_info(c, NULL), -1); /* in flight */
        ck_assert_int_eq(errno, EBUSY);
        ck_assert_int_eq(bankc_sample_recv(c, ni, nv, pv, &step), 0);
        ck_assert_uint_eq(step, 1);
        ck_assert(!memcmp(ni, want, 4 * k));
        for (size_t j = 0; j < k; j++)
            ck_assert_msg(!memcmp(nv + j * dim, ref->v + (size_t)want[j] * dim, 4 * dim),
                          "negative %zu (row %u) differs", j, want[j]);
        for (size_t i = 0; i < B; i++)
            ck_assert(!memcmp(pv + i * dim, ref->v + (size_t)pos[i] * dim, 4 * dim));
    }
    /* B = 0 works too */
    ck_assert_int_eq(bankc_rows_send(c, want, 3, NULL, 0), 0);
    ck_assert_int_eq(bankc_sample_recv(c, ni, nv, NULL, NULL), 0);
    ck_assert(!memcmp(nv + 2 * dim, ref->v + 7 * dim, 4 * dim));
    /* an index past the end: ERANGE, and the client goes on */
    uint32_t bad[2] = { 5, (uint32_t)rows };
    ck_assert_int_eq(bankc_rows_send(c, bad, 2, pos, B), 0);
    ck_assert_int_eq(bankc_sample_recv(c, ni, nv, pv, NULL), -1);
    ck_assert_str_eq(bankc_error_code(c), BANK_ERANGE);
    ck_assert_ptr_nonnull(strstr(bankc_error(c), "neg_idx[1]"));
    ck_assert_int_eq(bankc_rows_send(c, want, k, pos, B), 0);
    ck_assert_int_eq(bankc_sample_recv(c, ni, nv, pv, NULL), 0);
    ck_assert_int_eq(bankc_rows_send(c, want, 0, pos, B), -1);
    ck_assert_int_eq(errno, EINVAL);

    /* raw: exclude_pos is ignored, k must agree, k may be left out */
    void *s = raw_socket(&d);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    uint32_t two[2] = { 3, 4 };
    msgpack_pack_map(&pk, 5);
    mp_pack_kv_u64(&pk, "v", 1);
    mp_pack_kv_str(&pk, "op", "sample");
    mp_pack_kv_bin(&pk, "neg_idx", two, 8);
    mp_pack_kv_bin(&pk, "pos", two, 8);
    mp_pack_kv_bool(&pk, "exclude_pos", 1);
    raw_send(s, &sb);
    zmq_msg_t m;
    struct mp_map map;
    ck_assert_int_eq(raw_reply(s, &m, 3000, &map), 0);
    const void *p;
    size_t len;
    ck_assert_int_eq(mp_get_bin(&map, "neg_idx", &p, &len), MP_OK);
    ck_assert(len == 8 && !memcmp(p, two, 8));
    ck_assert_int_eq(mp_get_bin(&map, "neg", &p, &len), MP_OK);
    ck_assert(len == 8 * dim && !memcmp(p, ref->v + 3 * dim, 8 * dim));
    zmq_msg_close(&m);
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 5);
    mp_pack_kv_u64(&pk, "v", 1);
    mp_pack_kv_str(&pk, "op", "sample");
    mp_pack_kv_u64(&pk, "k", 3);
    mp_pack_kv_bin(&pk, "neg_idx", two, 8);
    mp_pack_kv_bin(&pk, "pos", two, 0);
    raw_send(s, &sb);
    expect_err_reply(s, BANK_EINVAL);
    expect_info_ok(s, rows);
    msgpack_sbuffer_destroy(&sb);
    msg_close(&s);
    /* given negatives do not touch the bank's own stream: a drawing sample still works */
    ck_assert_int_eq(bankc_sample(c, 16, pos, B, 1, ni, nv, pv, NULL), 0);
    for (size_t j = 0; j < 16; j++)
        ck_assert(ni[j] < rows && ni[j] != 3 && ni[j] != 7 && ni[j] != 2999 && ni[j] != 0);
    free(want);
    free(ni);
    free(nv);
    free(pv);
    bank_destroy(&ref);
    bankc_destroy(&c);
    ck_assert_int_eq(daemon_stop(&d, SIGTERM), 0);
}
END_TEST

/* Encodes a request with cid/seq through an encoder callback into sb. */
static void encode_restore(msgpack_sbuffer *sb, const char *cid, uint64_t seq, const char *name,
                           uint64_t step)
{
    msgpack_packer pk;
    msgpack_sbuffer_clear(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    struct bank_hdr h = { BANK_OP_RESTORE, cid, strlen(cid), seq, 1, NULL, 0 };
    struct bank_restore_req q = { name, strlen(name), step };
    ck_assert_int_eq(proto_bank_encode_restore_req(&pk, &h, &q), 0);
}

/* Named snapshots and restore: back to an older step bit for bit (rows, per-row
 * bookkeeping, step), ENOSNAP for a step no file holds, EMISMATCH for another shape or
 * manifest, retries answered from the cache, the cache cleared by a restore. */
START_TEST(test_daemon_restore)
{
    const char *dir = tmpdir_new("restore");
    struct daemon d;
    daemon_start(&d, dir, NULL);
    size_t rows = 4000, dim = 32, B = 64;
    struct bankc *c = bankc_new(d.ep, "trainer-r", 3000, 1);
    ck_assert_int_eq(bankc_init(c, rows, dim, 3, "run", "mf", NULL, NULL), 0);
    float *feat = malloc(4 * B * dim), *at3 = malloc(4 * rows * dim);
    float *at5 = malloc(4 * rows * dim), *got = malloc(4 * rows * dim);
    uint32_t idx[64];
    uint64_t step = 0;
    char path[1100], want_path[1100];
    for (int it = 0; it < 7; it++) {
        for (size_t i = 0; i < B; i++)
            idx[i] = (uint32_t)((i * 53 + (size_t)it * 11) % rows);
        fill_normal(feat, B * dim, 100 + (uint64_t)it);
        ck_assert_int_eq(bankc_update(c, idx, feat, B, 0.5f, &step), 0);
        if (step == 3 || step == 5) {
            ck_assert_int_eq(bankc_snapshot_named(c, "ck", path, sizeof path, &step), 0);
            snprintf(want_path, sizeof want_path, "%s/bank-ck.snap", dir);
            ck_assert_str_eq(path, want_path);
            ck_assert_int_eq(bankc_get(c, 0, rows, step == 3 ? at3 : at5), 0);
        }
    }
    ck_assert_uint_eq(step, 7);
    /* the daemon's own snapshot at step 7: a future the restore gives up */
    ck_assert_int_eq(bankc_snapshot(c, NULL, 0, NULL), 0);
    ck_assert_int_eq(bankc_snapshot_named(c, "bad/name", NULL, 0, NULL), -1);
    ck_assert_int_eq(errno, EINVAL);

    /* an update from another client, to be resent after the restore */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    void *s = raw_socket(&d);
    fill_normal(feat, B * dim, 999);
    encode_update(&sb, "other", 9, idx, 1, feat, dim);
    raw_send(s, &sb);
    ck_assert_uint_eq(reply_step(s), 8);

    /* back to step 3: bankd's bank equals the file bit for bit */
    ck_assert_int_eq(bankc_restore(c, "ck", 3, &step), 0);
    ck_assert_uint_eq(step, 3);
    ck_assert_int_eq(bankc_get(c, 0, rows, got), 0);
    ck_assert(!memcmp(got, at3, 4 * rows * dim));
    struct bankc_info info;
    ck_assert_int_eq(bankc_info(c, &info), 0);
    ck_assert_uint_eq(info.step, 3);
    ck_assert_str_eq(info.manifest, "mf");
    snprintf(path, sizeof path, "%s/bank-ck.snap.prev", dir);
    const char *why;
    struct bank *file3 = snapshot_read(path, &why);
    ck_assert_ptr_nonnull(file3);
    struct bank_stats_rep st, fst;
    memset(&fst, 0, sizeof fst);
    bank_stats(file3, &fst);
    ck_assert_int_eq(bankc_stats(c, &st), 0);
    ck_assert(st.step == 3 && st.writes == fst.writes && st.rows_written == fst.rows_written &&
              st.upd_max == fst.upd_max && st.stale_max == fst.stale_max);
    ck_assert(!memcmp(st.stale_hist, fst.stale_hist, sizeof st.stale_hist));
    ck_assert_uint_eq(st.snapshot_step, 3);
    /* everything, per-row bookkeeping included: a snapshot of the restored bank is the file */
    ck_assert_int_eq(bankc_snapshot_named(c, "copy", path, sizeof path, NULL), 0);
    struct bank *copy = snapshot_read(path, &why);
    ck_assert_ptr_nonnull(copy);
    assert_banks_equal(copy, file3);
    bank_destroy(&copy);
    /* bank.snap held step 7 and is set aside, so a restart cannot bring that future back */
    snprintf(path, sizeof path, "%s/bank.snap", dir);
    ck_assert_int_ne(access(path, F_OK), 0);
    snprintf(path, sizeof path, "%s/bank.snap.abandoned", dir);
    ck_assert_int_eq(access(path, F_OK), 0);
    ck_assert(log_contains(&d, "restored"));

    /* the cache was cleared: the identical update bytes are applied again */
    raw_send(s, &sb);
    ck_assert_uint_eq(reply_step(s), 4);
    /* a retried restore is answered from the cache, not applied again */
    encode_restore(&sb, "other", 10, "ck", 5);
    raw_send(s, &sb);
    ck_assert_uint_eq(reply_step(s), 5);
    ck_assert_int_eq(bankc_get(c, 0, rows, got), 0);
    ck_assert(!memcmp(got, at5, 4 * rows * dim));
    ck_assert_int_eq(bankc_update(c, idx, feat, 1, 0.5f, &step), 0);
    ck_assert_uint_eq(step, 6);
    ck_assert_int_eq(bankc_stats(c, &st), 0);
    uint64_t hits = st.cache_hits;
    raw_send(s, &sb);
    ck_assert_uint_eq(reply_step(s), 5); /* the cached reply */
    ck_assert_int_eq(bankc_info(c, &info), 0);
    ck_assert_uint_eq(info.step, 6);      /* not restored again */
    ck_assert_int_eq(bankc_stats(c, &st), 0);
    ck_assert_uint_eq(st.cache_hits, hits + 1);

    /* a step no file holds: ENOSNAP naming what was found */
    ck_assert_int_eq(bankc_restore(c, "ck", 4, &step), -1);
    ck_assert_str_eq(bankc_error_code(c), BANK_ENOSNAP);
    ck_assert_ptr_nonnull(strstr(bankc_error(c), "bank-ck.snap: step 5"));
    ck_assert_ptr_nonnull(strstr(bankc_error(c), "bank-ck.snap.prev: step 3"));
    ck_assert_int_eq(bankc_restore(c, "nothing", 1, &step), -1);
    ck_assert_str_eq(bankc_error_code(c), BANK_ENOSNAP);
    ck_assert_ptr_nonnull(strstr(bankc_error(c), "no such file"));
    ck_assert_int_eq(bankc_restore(c, "a/b", 1, &step), -1);
    ck_assert_int_eq(errno, EINVAL);
    /* a corrupt file holding the step is not loaded */
    snprintf(path, sizeof path, "%s/bank-ck.snap", dir);
    struct stat sst;
    stat(path, &sst);
    flip_byte(path, sst.st_size / 2);
    ck_assert_int_eq(bankc_restore(c, "ck", 5, &step), -1);
    ck_assert_str_eq(bankc_error_code(c), BANK_ENOSNAP);
    ck_assert_ptr_nonnull(strstr(bankc_error(c), "payload checksum mismatch"));
    flip_byte(path, sst.st_size / 2);

    /* another shape, another manifest: EMISMATCH, the bank untouched */
    struct bank *small = bank_new(10, 4, 1, BANK_INIT_UNIFORM);
    ck_assert_int_eq(snapshot_write_as(small, dir, "bank-small.snap", NULL, 0), 0);
    ck_assert_int_eq(bankc_restore(c, "small", 0, &step), -1);
    ck_assert_str_eq(bankc_error_code(c), BANK_EMISMATCH);
    struct bank *other = bank_new(rows, dim, 1, BANK_INIT_UNIFORM);
    bank_set_ids(other, "run", 3, "another", 7);
    ck_assert_int_eq(snapshot_write_as(other, dir, "bank-other.snap", NULL, 0), 0);
    ck_assert_int_eq(bankc_restore(c, "other", 0, &step), -1);
    ck_assert_str_eq(bankc_error_code(c), BANK_EMISMATCH);
    bank_set_ids(other, "run", 3, NULL, 0); /* no manifest in the file: accepted */
    ck_assert_int_eq(snapshot_write_as(other, dir, "bank-other.snap", NULL, 0), 0);
    ck_assert_int_eq(bankc_info(c, &info), 0);
    ck_assert_uint_eq(info.step, 6);
    ck_assert_int_eq(bankc_restore(c, "other", 0, &step), 0);
    ck_assert_int_eq(bankc_get(c, 0, rows, got), 0);
    ck_assert(!memcmp(got, other->v, 4 * rows * dim));
    bank_destroy(&small);
    bank_destroy(&other);
    bank_destroy(&file3);
    msgpack_sbuffer_destroy(&sb);
    msg_close(&s);
    free(feat);
    free(at3);
    free(at5);
    free(got);
    bankc_destroy(&c);
    ck_assert_int_eq(daemon_stop(&d, SIGTERM), 0);
}
END_TEST

/* At start bankd loads the valid snapshot with the highest step among bank.snap, bank-*.snap
 * and their .prev files, falling back down that order past corrupt ones (logged), and
 * ignores other files (abandoned, temporary, junk). */
START_TEST(test_daemon_startup_order)
{
    const char *dir = tmpdir_new("order");
    struct daemon d;
    daemon_start(&d, dir, NULL);
    size_t rows = 1000, dim = 8;
    struct bankc *c = bankc_new(d.ep, NULL, 3000, 1);
    ck_assert_int_eq(bankc_init(c, rows, dim, 4, "run", NULL, NULL, NULL), 0);
    float *at[8], feat[8];
    uint32_t i0;
    uint64_t step = 0;
    for (int i = 1; i <= 7; i++) {
        i0 = (uint32_t)i * 13;
        fill_normal(feat, dim, (uint64_t)i);
        ck_assert_int_eq(bankc_update(c, &i0, feat, 1, 0.5f, &step), 0);
        ck_assert_uint_eq(step, (uint64_t)i);
        at[i] = malloc(4 * rows * dim);
        ck_assert_int_eq(bankc_get(c, 0, rows, at[i]), 0);
        if (i == 2)
            ck_assert_int_eq(bankc_snapshot(c, NULL, 0, NULL), 0);  /* bank.snap @2 */
        if (i == 3 || i == 4)
            ck_assert_int_eq(bankc_snapshot_named(c, "a", NULL, 0, NULL), 0); /* a @4, .prev @3 */
        if (i == 6)
            ck_assert_int_eq(bankc_snapshot_named(c, "b", NULL, 0, NULL), 0); /* b @6 */
    }
    bankc_destroy(&c);
    ck_assert_int_eq(daemon_stop(&d, SIGKILL), 128 + SIGKILL); /* step 7 is lost */
    /* files that are not candidates, with higher steps: must be ignored */
    struct bank *junk = bank_new(rows, dim, 9, BANK_INIT_UNIFORM);
    junk->step = 100;
    ck_assert_int_eq(snapshot_write_as(junk, dir, "bank.snap.abandoned", NULL, 0), 0);
    ck_assert_int_eq(snapshot_write_as(junk, dir, "bank-c d.snap", NULL, 0), 0);
    ck_assert_int_eq(snapshot_write_as(junk, dir, "bank-c.d.snap", NULL, 0), 0); /* a dot */
    ck_assert_int_eq(snapshot_write_as(junk, dir, "bank-..snap", NULL, 0), 0);
    ck_assert_int_eq(snapshot_write_as(junk, dir, "bank-e.snap.tmp", NULL, 0), 0);
    ck_assert_int_eq(snapshot_write_as(junk, dir, "other.snap", NULL, 0), 0);
    bank_destroy(&junk);
    char path[1100];
    snprintf(path, sizeof path, "%s/bank-x.snap", dir);
    ck_assert_int_eq(durable_write(path, "hello", 5), 0);

    struct { const char *corrupt; off_t off; uint64_t want; const char *log; } rounds[] = {
        { NULL, 0, 6, "bank-x.snap unusable: truncated header" },
        { "bank-b.snap", -100, 4, "bank-b.snap (step 6) unusable: payload checksum mismatch" },
        { "bank-a.snap", 20, 3, "bank-a.snap unusable: header checksum mismatch" },
        { "bank-a.snap.prev", -1, 2, "bank-a.snap.prev (step 3) unusable: payload checksum" },
    };
    for (size_t r = 0; r < sizeof rounds / sizeof rounds[0]; r++) {
        if (rounds[r].corrupt) {
            snprintf(path, sizeof path, "%s/%s", dir, rounds[r].corrupt);
            struct stat st;
            ck_assert_int_eq(stat(path, &st), 0);
            flip_byte(path, rounds[r].off >= 0 ? rounds[r].off : st.st_size + rounds[r].off);
        }
        daemon_start(&d, dir, NULL);
        c = bankc_new(d.ep, NULL, 3000, 1);
        struct bankc_info info;
        ck_assert_int_eq(bankc_info(c, &info), 0);
        ck_assert_msg(info.step == rounds[r].want, "round %zu: loaded step %llu, want %llu", r,
                      (unsigned long long)info.step, (unsigned long long)rounds[r].want);
        float *got = malloc(4 * rows * dim);
        ck_assert_int_eq(bankc_get(c, 0, rows, got), 0);
        ck_assert(!memcmp(got, at[rounds[r].want], 4 * rows * dim));
        free(got);
        ck_assert_msg(log_contains(&d, rounds[r].log), "round %zu: no log line '%s'", r,
                      rounds[r].log);
        bankc_destroy(&c);
        ck_assert_int_eq(daemon_stop(&d, SIGKILL), 128 + SIGKILL);
    }
    ck_assert(log_contains(&d, "bank-c.d.snap: not a valid snapshot name"));
    ck_assert(log_contains(&d, "bank-..snap: not a valid snapshot name"));
    for (int i = 1; i <= 7; i++)
        free(at[i]);
}
END_TEST

START_TEST(test_daemon_client_end_to_end)
{
    struct daemon d;
    daemon_start(&d, tmpdir_new("e2e"), NULL);
    size_t rows = 50000, dim = 128, B = 128, k = 4096;
    struct bankc *c = bankc_new(d.ep, NULL, 5000, 1);
    struct bankc_info info;
    ck_assert_int_eq(bankc_info(c, &info), -1);
    ck_assert_str_eq(bankc_error_code(c), BANK_ENOBANK);
    int created;
    uint64_t step;
    ck_assert_int_eq(bankc_init(c, 4000000000u, 65536, 8, "run-e2e", "mf-1", &created, &step), -1);
    ck_assert_str_eq(bankc_error_code(c), BANK_ENOMEM); /* 1 PB: refused, bankd lives on */
    ck_assert_int_eq(bankc_init(c, rows, dim, 8, "run-e2e", "mf-1", &created, &step), 0);
    ck_assert_int_eq(created, 1);
    ck_assert_int_eq(bankc_init(c, rows, dim, 9, "run-e2e", "mf-1", &created, &step), 0);
    ck_assert_int_eq(created, 0);
    ck_assert_int_eq(bankc_init(c, rows, dim, 8, "run-e2e", "mf-2", &created, &step), -1);
    ck_assert_str_eq(bankc_error_code(c), BANK_EMISMATCH);
    ck_assert_int_eq(errno, EPROTO);
    ck_assert_int_eq(bankc_info(c, &info), 0);
    ck_assert(info.rows == rows && info.dim == dim && info.has_manifest);
    ck_assert_str_eq(info.manifest, "mf-1");
    ck_assert_str_eq(info.run, "run-e2e");

    /* the whole bank (25.6 MB, read in 4 MiB chunks) equals a locally built one */
    float *all = malloc(rows * dim * 4);
    ck_assert_int_eq(bankc_get(c, 0, rows, all), 0);
    struct bank *ref = bank_new(rows, dim, 8, BANK_INIT_UNIFORM);
    ck_assert(!memcmp(all, ref->v, rows * dim * 4));

    uint32_t pos[128], *ni = malloc(4 * k);
    float *nv = malloc(4 * k * dim), *pv = malloc(4 * B * dim), *feat = malloc(4 * B * dim);
    for (size_t i = 0; i < B; i++)
        pos[i] = (uint32_t)(i * 389 % rows);
    struct bank_err e;
    for (int it = 0; it < 3; it++) {
        ck_assert_int_eq(bankc_sample_send(c, k, pos, B, it == 2), 0);
        ck_assert_int_eq(bankc_info(c, NULL), -1); /* one request in flight */
        ck_assert_int_eq(errno, EBUSY);
        ck_assert_int_eq(bankc_sample_recv(c, ni, nv, pv, &step), 0);
        ck_assert_uint_eq(step, (uint64_t)it);
        for (size_t j = 0; j < k; j++) {
            ck_assert_uint_lt(ni[j], rows);
            ck_assert(!memcmp(nv + j * dim, ref->v + (size_t)ni[j] * dim, dim * 4));
        }
        for (size_t i = 0; i < B; i++)
            ck_assert(!memcmp(pv + i * dim, ref->v + (size_t)pos[i] * dim, dim * 4));
        fill_normal(feat, B * dim, 50 + (uint64_t)it);
        ck_assert_int_eq(bankc_update(c, pos, feat, B, 0.5f, &step), 0);
        ck_assert_uint_eq(step, (uint64_t)it + 1);
        ck_assert_int_eq(bank_update(ref, pos, B, feat, B * dim, 0.5f, &e), 0);
    }
    ck_assert_int_eq(bankc_set(c, pos, feat, 1, &step), 0);
    ck_assert_int_eq(bank_set(ref, pos, 1, feat, dim, &e), 0);
    /* rejected update changes nothing */
    feat[7] = NAN;
    ck_assert_int_eq(bankc_update(c, pos, feat, B, 0.5f, &step), -1);
    ck_assert_str_eq(bankc_error_code(c), BANK_EINVAL);
    ck_assert_int_eq(bankc_get(c, 0, rows, all), 0);
    ck_assert(!memcmp(all, ref->v, rows * dim * 4)); /* same arithmetic: bit-identical */
    struct bank_stats_rep st;
    ck_assert_int_eq(bankc_stats(c, &st), 0);
    ck_assert_uint_eq(st.step, 4);
    ck_assert_uint_eq(st.rows_written, B);
    char path[1024];
    ck_assert_int_eq(bankc_snapshot(c, path, sizeof path, &step), 0);
    ck_assert_uint_eq(step, 4);
    ck_assert_ptr_nonnull(strstr(path, "bank.snap"));
    free(ni);
    free(nv);
    free(pv);
    free(feat);
    free(all);
    bank_destroy(&ref);
    bankc_destroy(&c);
    ck_assert_int_eq(daemon_stop(&d, SIGTERM), 0);
}
END_TEST

START_TEST(test_daemon_kill_restart_and_corruption)
{
    const char *dir = tmpdir_new("restart");
    struct daemon d;
    daemon_start(&d, dir, NULL);
    size_t rows = 2000, dim = 32, B = 64;
    struct bankc *c = bankc_new(d.ep, NULL, 3000, 1);
    ck_assert_int_eq(bankc_init(c, rows, dim, 1, "run", NULL, NULL, NULL), 0);
    float *feat = malloc(4 * B * dim), *snap1 = malloc(rows * dim * 4);
    float *snap2 = malloc(rows * dim * 4), *got = malloc(rows * dim * 4);
    uint32_t idx[64];
    for (int round = 0; round < 2; round++) {
        for (int it = 0; it < 5; it++) {
            for (size_t i = 0; i < B; i++)
                idx[i] = (uint32_t)((i * 31 + (size_t)it * 7 + (size_t)round * 5) % rows);
            fill_normal(feat, B * dim, 10 * (uint64_t)round + (uint64_t)it);
            ck_assert_int_eq(bankc_update(c, idx, feat, B, 0.5f, NULL), 0);
        }
        ck_assert_int_eq(bankc_snapshot(c, NULL, 0, NULL), 0);
        ck_assert_int_eq(bankc_get(c, 0, rows, round ? snap2 : snap1), 0);
    }
    /* updates after the last snapshot are lost by SIGKILL, by design */
    ck_assert_int_eq(bankc_update(c, idx, feat, B, 0.5f, NULL), 0);
    bankc_destroy(&c);
    ck_assert_int_eq(daemon_stop(&d, SIGKILL), 128 + SIGKILL);

    daemon_start(&d, dir, NULL);
    c = bankc_new(d.ep, NULL, 3000, 1);
    struct bankc_info info;
    ck_assert_int_eq(bankc_info(c, &info), 0);
    ck_assert_uint_eq(info.step, 10);
    ck_assert_int_eq(bankc_get(c, 0, rows, got), 0);
    ck_assert(!memcmp(got, snap2, rows * dim * 4)); /* bit for bit */
    bankc_destroy(&c);
    ck_assert_int_eq(daemon_stop(&d, SIGKILL), 128 + SIGKILL);

    /* corrupt the newest: the previous one is loaded, with a log line */
    char path[1100];
    snprintf(path, sizeof path, "%s/bank.snap", dir);
    struct stat st;
    stat(path, &st);
    flip_byte(path, st.st_size / 3);
    daemon_start(&d, dir, NULL);
    c = bankc_new(d.ep, NULL, 3000, 1);
    ck_assert_int_eq(bankc_info(c, &info), 0);
    ck_assert_uint_eq(info.step, 5);
    ck_assert_int_eq(bankc_get(c, 0, rows, got), 0);
    ck_assert(!memcmp(got, snap1, rows * dim * 4));
    ck_assert(log_contains(&d, "payload checksum mismatch"));
    ck_assert(log_contains(&d, "loaded the previous snapshot"));
    /* SIGTERM writes a final snapshot of the running bank */
    ck_assert_int_eq(bankc_update(c, idx, feat, B, 0.5f, NULL), 0);
    ck_assert_int_eq(bankc_get(c, 0, rows, got), 0);
    bankc_destroy(&c);
    ck_assert_int_eq(daemon_stop(&d, SIGTERM), 0);
    const char *why;
    struct bank *b = snapshot_read(path, &why);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(b->step, 6);
    ck_assert(!memcmp(b->v, got, rows * dim * 4));
    bank_destroy(&b);
    free(feat);
    free(snap1);
    free(snap2);
    free(got);
}
END_TEST

/* A client that starts before bankd: its attempts time out and are resent until bankd is
 * up; the update is applied exactly once. */
START_TEST(test_daemon_client_first)
{
    const char *dir = tmpdir_new("late");
    struct daemon d;
    struct bankc *c = NULL;
    const char *extra[] = { "--rows", "100", "--dim", "4", NULL };
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", 20000 + (int)(getpid() % 20000));
    daemon_spawn(&d, dir, extra, 700000, ep);
    c = bankc_new(d.ep, "early", 150, 40);
    float f[4] = { 1, 2, 3, 4 };
    uint32_t i0 = 0;
    uint64_t step = 0;
    ck_assert_int_eq(bankc_update(c, &i0, f, 1, 0.5f, &step), 0);
    ck_assert_uint_eq(step, 1);
    struct bank_stats_rep st;
    ck_assert_int_eq(bankc_stats(c, &st), 0);
    ck_assert_uint_le(st.cache_hits, 1);
    ck_assert_uint_eq(st.step, 1);
    ck_assert_uint_ge(msg_client_resends(bankc_msg_client(c)), 2);
    bankc_destroy(&c);
    ck_assert_int_eq(daemon_stop(&d, SIGTERM), 0);
}
END_TEST

/* SIGKILL while a snapshot is being written: the restart finds either the old or the new
 * snapshot complete, never a torn one. */
START_TEST(test_daemon_killed_mid_snapshot)
{
    const char *dir = tmpdir_new("midsnap");
    struct daemon d;
    daemon_start(&d, dir, NULL);
    size_t rows = 300000, dim = 64;
    struct bankc *c = bankc_new(d.ep, "mid", 20000, 0);
    ck_assert_int_eq(bankc_init(c, rows, dim, 4, "run", NULL, NULL, NULL), 0);
    float feat[64];
    fill_normal(feat, 64, 8);
    uint32_t i7 = 7;
    float *s1 = malloc(rows * dim * 4), *s2 = malloc(rows * dim * 4);
    ck_assert_int_eq(bankc_update(c, &i7, feat, 1, 0.5f, NULL), 0);
    ck_assert_int_eq(bankc_snapshot(c, NULL, 0, NULL), 0);
    ck_assert_int_eq(bankc_get(c, 0, rows, s1), 0);
    ck_assert_int_eq(bankc_update(c, &i7, feat, 1, 0.5f, NULL), 0);
    ck_assert_int_eq(bankc_get(c, 0, rows, s2), 0);
    /* ask for a 77 MB snapshot and kill bankd while it writes */
    struct bank_hdr h = { BANK_OP_SNAPSHOT, NULL, 0, 0, 0, NULL, 0 };
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    proto_bank_encode_snapshot_req(&pk, &h);
    void *s = raw_socket(&d);
    zmq_send(s, sb.data, sb.size, 0);
    usleep(40000);
    ck_assert_int_eq(daemon_stop(&d, SIGKILL), 128 + SIGKILL);
    msg_close(&s);
    msgpack_sbuffer_destroy(&sb);
    bankc_destroy(&c);
    daemon_start(&d, dir, NULL);
    c = bankc_new(d.ep, NULL, 20000, 0);
    struct bankc_info info;
    ck_assert_int_eq(bankc_info(c, &info), 0);
    ck_assert(info.step == 1 || info.step == 2);
    float *got = malloc(rows * dim * 4);
    ck_assert_int_eq(bankc_get(c, 0, rows, got), 0);
    ck_assert(!memcmp(got, info.step == 1 ? s1 : s2, rows * dim * 4));
    bankc_destroy(&c);
    ck_assert_int_eq(daemon_stop(&d, SIGKILL), 128 + SIGKILL);
    free(s1);
    free(s2);
    free(got);
}
END_TEST

START_TEST(test_daemon_periodic_snapshot)
{
    const char *dir = tmpdir_new("periodic");
    struct daemon d;
    const char *extra[] = { "--snapshot-every", "0.2", "--log-level", "debug", NULL };
    daemon_start(&d, dir, extra);
    struct bankc *c = bankc_new(d.ep, NULL, 3000, 1);
    ck_assert_int_eq(bankc_init(c, 3000, 16, 2, "run", NULL, NULL, NULL), 0);
    float feat[16 * 4];
    fill_normal(feat, 16 * 4, 3);
    uint32_t idx[4] = { 0, 10, 20, 2999 };
    for (int i = 0; i < 7; i++)
        ck_assert_int_eq(bankc_update(c, idx, feat, 4, 0.5f, NULL), 0);
    float *want = malloc(3000 * 16 * 4), *got = malloc(3000 * 16 * 4);
    ck_assert_int_eq(bankc_get(c, 0, 3000, want), 0);
    /* the writer runs in the background; wait for its log line */
    for (int i = 0; i < 100 && !log_contains(&d, "step 7 written"); i++)
        usleep(50000);
    ck_assert(log_contains(&d, "(background)"));
    bankc_destroy(&c);
    ck_assert_int_eq(daemon_stop(&d, SIGKILL), 128 + SIGKILL);
    daemon_start(&d, dir, NULL);
    c = bankc_new(d.ep, NULL, 3000, 1);
    struct bankc_info info;
    ck_assert_int_eq(bankc_info(c, &info), 0);
    ck_assert_uint_eq(info.step, 7);
    ck_assert_int_eq(bankc_get(c, 0, 3000, got), 0);
    ck_assert(!memcmp(got, want, 3000 * 16 * 4));
    bankc_destroy(&c);
    ck_assert_int_eq(daemon_stop(&d, SIGTERM), 0);
    free(want);
    free(got);
}
END_TEST

START_TEST(test_daemon_disk_full)
{
    const char *dir = tmpdir_new("diskfull");
    struct daemon d;
    /* a 1 MiB file size limit, inherited by bankd, stands in for a full disk */
    struct rlimit rl = { 1 << 20, 1 << 20 };
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &rl), 0);
    daemon_start(&d, dir, NULL);
    struct bankc *c = bankc_new(d.ep, NULL, 5000, 0);
    ck_assert_int_eq(bankc_init(c, 20000, 32, 1, "run", NULL, NULL, NULL), 0); /* 2.8 MB */
    ck_assert_int_eq(bankc_snapshot(c, NULL, 0, NULL), -1);
    ck_assert_str_eq(bankc_error_code(c), BANK_ENOSPC);
    ck_assert(log_contains(&d, "still serving from memory"));
    /* still serving */
    float feat[32];
    fill_normal(feat, 32, 1);
    uint32_t i0 = 0;
    uint64_t step;
    ck_assert_int_eq(bankc_update(c, &i0, feat, 1, 0.5f, &step), 0);
    ck_assert_uint_eq(step, 1);
    struct bankc_info info;
    ck_assert_int_eq(bankc_info(c, &info), 0);
    bankc_destroy(&c);
    /* the final snapshot fails too: exit 1 with a reason, not a crash */
    ck_assert_int_eq(daemon_stop(&d, SIGTERM), 1);
    ck_assert(log_contains(&d, "final snapshot failed"));
}
END_TEST

/* Encodes an update carrying token (may be NULL) into sb. */
static void encode_update_tok(msgpack_sbuffer *sb, const char *cid, uint64_t seq,
                              const char *token, const uint32_t *idx, size_t n,
                              const float *feat, size_t dim)
{
    msgpack_packer pk;
    msgpack_sbuffer_clear(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    struct bank_hdr h = { BANK_OP_UPDATE, cid, strlen(cid), seq, 1, token,
                          token ? strlen(token) : 0 };
    struct bank_update_req q = { idx, n, feat, n * dim, 0.5 };
    ck_assert_int_eq(proto_bank_encode_update_req(&pk, &h, &q), 0);
}

/* Expects a bankc call to have failed with EPERM. */
#define EXPECT_EPERM(c, call)                                                                   \
    do {                                                                                        \
        ck_assert_int_eq((call), -1);                                                           \
        ck_assert_msg(!strcmp(bankc_error_code(c), BANK_EPERM), "want EPERM, got %s",          \
                      bankc_error(c));                                                          \
    } while (0)

static int log_count(const struct daemon *d, const char *needle)
{
    void *buf;
    size_t len;
    if (file_read_all(d->log, 1 << 24, &buf, &len) != 0)
        return 0;
    char *s = realloc(buf, len + 1);
    s[len] = 0;
    int n = 0;
    for (char *p = s; (p = strstr(p, needle)); p++)
        n++;
    free(s);
    return n;
}

/* Write tokens in the daemon: a bank created with one refuses writes without it (EPERM,
 * nothing changed, not even the refused client's reply cache entry), serves readers; the
 * refusals are logged once per client, never with the token; a bank from --rows/--dim
 * adopts the token of the first init that brings one; a snapshot's token binds a restore. */
START_TEST(test_daemon_token)
{
    static const char tok[] = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";
    static const char bad[] = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f1";
    char dir[512]; /* tmpdir_new's buffer is reused below */
    snprintf(dir, sizeof dir, "%s", tmpdir_new("token"));
    struct daemon d;
    daemon_start(&d, dir, NULL);
    size_t rows = 200, dim = 8;
    struct bankc *own = bankc_new(d.ep, "owner", 3000, 1);
    struct bankc *intr = bankc_new(d.ep, "intruder", 3000, 1);
    ck_assert_int_eq(bankc_set_token(own, "short"), -1);
    ck_assert_int_eq(bankc_set_token(own, tok), 0);
    int created = 0;
    ck_assert_int_eq(bankc_init(own, rows, dim, 1, "run-t", "mf", &created, NULL), 0);
    ck_assert(created);
    struct bankc_info info;
    ck_assert_int_eq(bankc_info(intr, &info), 0);
    ck_assert(info.has_token && info.rows == rows);

    float feat[4 * 8], *before = malloc(4 * rows * dim), *after = malloc(4 * rows * dim);
    uint32_t idx[4] = { 1, 2, 3, 199 };
    fill_normal(feat, 4 * dim, 9);
    uint64_t step = 0;
    ck_assert_int_eq(bankc_update(own, idx, feat, 4, 0.5f, &step), 0);
    ck_assert_uint_eq(step, 1);
    ck_assert_int_eq(bankc_get(intr, 0, rows, before), 0);

    /* without a token and with a wrong one: every writing op refused */
    for (int k = 0; k < 2; k++) {
        if (k)
            ck_assert_int_eq(bankc_set_token(intr, bad), 0);
        EXPECT_EPERM(intr, bankc_update(intr, idx, feat, 4, 0.5f, NULL));
        EXPECT_EPERM(intr, bankc_set(intr, idx, feat, 4, NULL));
        EXPECT_EPERM(intr, bankc_snapshot(intr, NULL, 0, NULL));
        EXPECT_EPERM(intr, bankc_snapshot_named(intr, "x", NULL, 0, NULL));
        EXPECT_EPERM(intr, bankc_restore(intr, "x", 0, NULL));
        EXPECT_EPERM(intr, bankc_init(intr, rows, dim, 1, "run-t", "mf", NULL, NULL));
        EXPECT_EPERM(intr, bankc_init(intr, rows + 1, dim, 1, NULL, NULL, NULL, NULL));
    }
    /* readers need none */
    uint32_t ni[4], pos[1] = { 5 };
    float neg[4 * 8], prow[8];
    struct bank_stats_rep st;
    ck_assert_int_eq(bankc_sample(intr, 4, pos, 1, 0, ni, neg, prow, NULL), 0);
    ck_assert_int_eq(bankc_stats(intr, &st), 0);
    ck_assert_uint_eq(st.step, 1);
    ck_assert_int_eq(bankc_get(intr, 0, rows, after), 0);
    ck_assert(!memcmp(before, after, 4 * rows * dim));
    char snapfile[1100];
    snprintf(snapfile, sizeof snapfile, "%s/bank-x.snap", dir);
    ck_assert_int_ne(access(snapfile, F_OK), 0);

    /* a refused request with the owner's cid and seq leaves the owner's cache entry alone:
     * the owner's retry is still answered from the cache, not applied again */
    void *s = raw_socket(&d);
    msgpack_sbuffer sb, sb2;
    msgpack_sbuffer_init(&sb);
    msgpack_sbuffer_init(&sb2);
    encode_update_tok(&sb, "owner-raw", 50, tok, idx, 4, feat, dim);
    raw_send(s, &sb);
    ck_assert_uint_eq(reply_step(s), 2);
    encode_update_tok(&sb2, "owner-raw", 51, NULL, idx, 4, feat, dim);
    raw_send(s, &sb2);
    expect_err_reply(s, BANK_EPERM);
    raw_send(s, &sb);
    ck_assert_uint_eq(reply_step(s), 2);
    ck_assert_int_eq(bankc_stats(intr, &st), 0);
    ck_assert_uint_eq(st.step, 2);
    ck_assert_uint_eq(st.cache_hits, 1);

    /* logged once per client, never the token */
    ck_assert_int_eq(log_count(&d, "warn: refused "), 1 + (log_count(&d, "'owner-raw'") > 0));
    ck_assert_int_eq(log_count(&d, "'intruder'"), 1);
    ck_assert_int_eq(log_count(&d, tok + 40), 0);
    ck_assert_int_eq(log_count(&d, bad + 40), 0);

    /* the requirement survives a restart from the final snapshot */
    ck_assert_int_eq(bankc_snapshot_named(own, "ck", NULL, 0, &step), 0);
    ck_assert_uint_eq(step, 2);
    bankc_destroy(&own);
    bankc_destroy(&intr);
    msg_close(&s);
    ck_assert_int_eq(daemon_stop(&d, SIGTERM), 0);
    daemon_start(&d, dir, NULL);
    own = bankc_new(d.ep, "owner", 3000, 1);
    intr = bankc_new(d.ep, "intruder", 3000, 1);
    ck_assert_int_eq(bankc_info(intr, &info), 0);
    ck_assert(info.has_token && info.step == 2);
    EXPECT_EPERM(intr, bankc_update(intr, idx, feat, 4, 0.5f, NULL));
    ck_assert_int_eq(bankc_set_token(own, tok), 0);
    ck_assert_int_eq(bankc_update(own, idx, feat, 4, 0.5f, &step), 0);
    ck_assert_uint_eq(step, 3);
    bankc_destroy(&own);
    bankc_destroy(&intr);
    ck_assert_int_eq(daemon_stop(&d, SIGTERM), 0);

    /* a bank made from --rows/--dim has no token: writes without one work, and the first
     * init with one claims it; its snapshot's token then binds a restore */
    char dir2[512];
    snprintf(dir2, sizeof dir2, "%s", tmpdir_new("token-adopt"));
    char dst[1100];
    snprintf(dst, sizeof dst, "%s/bank-ck.snap", dir2);
    void *raw;
    size_t rawlen;
    snprintf(snapfile, sizeof snapfile, "%s/bank-ck.snap", dir);
    ck_assert_int_eq(file_read_all(snapfile, 1 << 24, &raw, &rawlen), 0);
    ck_assert_int_eq(durable_write(dst, raw, rawlen), 0);
    free(raw);
    const char *flags[] = { "--rows", "200", "--dim", "8", NULL };
    /* the copied bank-ck.snap would be loaded at start: hide it until the bank exists */
    char hidden[1100];
    snprintf(hidden, sizeof hidden, "%s/hidden", dir2);
    ck_assert_int_eq(rename(dst, hidden), 0);
    daemon_start(&d, dir2, flags);
    ck_assert_int_eq(rename(hidden, dst), 0);
    struct bankc *anon = bankc_new(d.ep, NULL, 3000, 1);
    ck_assert_int_eq(bankc_info(anon, &info), 0);
    ck_assert(!info.has_token);
    ck_assert_int_eq(bankc_set(anon, idx, feat, 4, &step), 0);
    ck_assert_uint_eq(step, 1);
    EXPECT_EPERM(anon, bankc_restore(anon, "ck", 2, NULL)); /* the file has the token */
    ck_assert_int_eq(bankc_info(anon, &info), 0);
    ck_assert(info.step == 1 && !info.has_token);
    own = bankc_new(d.ep, "owner2", 3000, 1);
    ck_assert_int_eq(bankc_set_token(own, bad), 0);
    ck_assert_int_eq(bankc_init(own, rows, dim, 1, NULL, NULL, &created, &step), 0);
    ck_assert(!created && step == 1);
    ck_assert_int_eq(bankc_info(anon, &info), 0);
    ck_assert(info.has_token);
    EXPECT_EPERM(anon, bankc_set(anon, idx, feat, 4, NULL));
    /* bad now holds the bank; bank-ck.snap wants tok: no single token fits both */
    EXPECT_EPERM(own, bankc_restore(own, "ck", 2, NULL));
    ck_assert_int_eq(bankc_set_token(own, tok), 0);
    EXPECT_EPERM(own, bankc_set(own, idx, feat, 4, NULL));
    bankc_destroy(&own);
    bankc_destroy(&anon);
    ck_assert_int_eq(daemon_stop(&d, SIGTERM), 0);

    /* a bankd without a bank: the restore needs the snapshot's token, and the restored bank
     * keeps requiring it */
    const char *dir3 = tmpdir_new("token-restore");
    snprintf(dst, sizeof dst, "%s/bank-ck.snap", dir3);
    ck_assert_int_eq(file_read_all(snapfile, 1 << 24, &raw, &rawlen), 0);
    snprintf(hidden, sizeof hidden, "%s/hidden", dir3);
    ck_assert_int_eq(durable_write(hidden, raw, rawlen), 0);
    free(raw);
    daemon_start(&d, dir3, NULL);
    ck_assert_int_eq(rename(hidden, dst), 0);
    anon = bankc_new(d.ep, NULL, 3000, 1);
    EXPECT_EPERM(anon, bankc_restore(anon, "ck", 2, NULL));
    ck_assert_int_ne(bankc_info(anon, &info), 0);
    ck_assert_str_eq(bankc_error_code(anon), BANK_ENOBANK);
    own = bankc_new(d.ep, "owner", 3000, 1);
    ck_assert_int_eq(bankc_set_token(own, tok), 0);
    ck_assert_int_eq(bankc_restore(own, "ck", 2, &step), 0);
    ck_assert_uint_eq(step, 2);
    EXPECT_EPERM(anon, bankc_update(anon, idx, feat, 4, 0.5f, NULL));
    ck_assert_int_eq(bankc_update(own, idx, feat, 4, 0.5f, &step), 0);
    ck_assert_uint_eq(step, 3);
    bankc_destroy(&own);
    bankc_destroy(&anon);
    ck_assert_int_eq(daemon_stop(&d, SIGTERM), 0);
    msgpack_sbuffer_destroy(&sb);
    msgpack_sbuffer_destroy(&sb2);
    free(before);
    free(after);
}
END_TEST

/* The run's token file: created 0600 with 64 hex digits, read back unchanged; a link, a
 * file others may read, one of another shape are refused, never quoting the content. */
START_TEST(test_token_file)
{
    const char *dir = tmpdir_new("tokfile");
    char path[1100], token[BANKC_TOKEN_HEX + 1], again[BANKC_TOKEN_HEX + 1], err[512];
    snprintf(path, sizeof path, "%s/bank.token", dir);
    int created = 0;
    ck_assert_msg(bankc_token_file(path, token, &created, err, sizeof err) == 0, "%s", err);
    ck_assert(created && strlen(token) == BANKC_TOKEN_HEX);
    for (int i = 0; i < BANKC_TOKEN_HEX; i++)
        ck_assert(strchr("0123456789abcdef", token[i]));
    struct stat st;
    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert(S_ISREG(st.st_mode) && (st.st_mode & 0777) == 0600 && st.st_size == 65);
    ck_assert_int_eq(bankc_token_file(path, again, &created, err, sizeof err), 0);
    ck_assert(!created && !strcmp(token, again));
    /* another file, another token */
    char path2[1100];
    snprintf(path2, sizeof path2, "%s/other.token", dir);
    ck_assert_int_eq(bankc_token_file(path2, again, &created, err, sizeof err), 0);
    ck_assert(created && strcmp(token, again));
    /* no temp file is left */
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    ck_assert_int_ne(access(tmp, F_OK), 0);
    /* readable by others */
    ck_assert_int_eq(chmod(path, 0644), 0);
    ck_assert_int_eq(bankc_token_file(path, again, NULL, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "chmod 600"));
    ck_assert_ptr_null(strstr(err, token));
    ck_assert_int_eq(chmod(path, 0600), 0);
    /* a link at the name (even to the right file) */
    char link_path[1100];
    snprintf(link_path, sizeof link_path, "%s/link.token", dir);
    ck_assert_int_eq(symlink(path, link_path), 0);
    ck_assert_int_eq(bankc_token_file(link_path, again, NULL, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "symbolic link"));
    /* a dangling link is not followed to create a file */
    char dangling[1100], target[1100];
    snprintf(dangling, sizeof dangling, "%s/dangling.token", dir);
    snprintf(target, sizeof target, "%s/target", dir);
    ck_assert_int_eq(symlink(target, dangling), 0);
    ck_assert_int_eq(bankc_token_file(dangling, again, NULL, err, sizeof err), -1);
    ck_assert_int_ne(access(target, F_OK), 0);
    /* malformed content */
    ck_assert_int_eq(durable_write(path2, "secret-not-hex\n", 15), 0);
    ck_assert_int_eq(chmod(path2, 0600), 0);
    ck_assert_int_eq(bankc_token_file(path2, again, NULL, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "does not hold a bank token"));
    ck_assert_ptr_null(strstr(err, "secret"));
}
END_TEST

int main(void)
{
    snprintf(tmp_root, sizeof tmp_root, "%s/npid-check-bank-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmp_root)) {
        perror("mkdtemp");
        return 1;
    }
    Suite *s = suite_create("bank");
    TCase *tb = tcase_create("bank");
    tcase_add_test(tb, test_bank_init);
    tcase_add_test(tb, test_bank_update_vs_reference);
    tcase_add_test(tb, test_bank_rejects_all_or_nothing);
    tcase_add_test(tb, test_bank_rejects_hostile_values);
    tcase_add_test(tb, test_bank_init_no_zero_rows);
    tcase_add_test(tb, test_bank_sample);
    tcase_add_test(tb, test_bank_sample_exclude_nearly_all);
    tcase_add_test(tb, test_bank_stats);
    tcase_add_test(tb, test_snapshot_roundtrip_and_corruption);
    tcase_add_test(tb, test_snapshot_write_fails_cleanly);
    tcase_add_test(tb, test_ping_json);
    tcase_add_test(tb, test_token_file);
    suite_add_tcase(s, tb);
    TCase *td = tcase_create("daemon");
    tcase_set_timeout(td, 60);
    tcase_add_test(td, test_daemon_malformed_frames);
    tcase_add_test(td, test_daemon_retry_applied_once);
    tcase_add_test(td, test_daemon_retry_after_restart);
    tcase_add_test(td, test_daemon_client_end_to_end);
    tcase_add_test(td, test_daemon_kill_restart_and_corruption);
    tcase_add_test(td, test_daemon_client_first);
    tcase_add_test(td, test_daemon_killed_mid_snapshot);
    tcase_add_test(td, test_daemon_periodic_snapshot);
    tcase_add_test(td, test_daemon_disk_full);
    tcase_add_test(td, test_daemon_rows);
    tcase_add_test(td, test_daemon_restore);
    tcase_add_test(td, test_daemon_startup_order);
    tcase_add_test(td, test_daemon_token);
    suite_add_tcase(s, td);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (!failed) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
        if (system(cmd) != 0)
            fprintf(stderr, "check_bank: could not remove %s\n", tmp_root);
    }
    return failed ? 1 : 0;
}
