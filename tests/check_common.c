/* Unit tests for the common core: config table, RNG, durable files, CRC-32C, SHA-256. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cfg.h"
#include "common/bankrow.h"
#include "common/durable.h"
#include "common/json.h"
#include "common/mp.h"
#include "common/pixnorm.h"
#include "common/rng.h"
#include "common/sha256.h"

static int opt_n;
static uint64_t opt_rows;
static double opt_lr;
static const char *opt_bind;
static int opt_flag;

static struct cfg_opt *test_table(void)
{
    static struct cfg_opt opts[] = {
        { "n", "NPID_TEST_N", CFG_INT, &opt_n, "3", 0, 10, "count", 0 },
        { "rows", NULL, CFG_U64, &opt_rows, "0", 0, 0, "rows", 0 },
        { "lr", "NPID_TEST_LR", CFG_DOUBLE, &opt_lr, "0.03", 0, 1, "rate", 0 },
        { "bind", "NPID_TEST_BIND", CFG_STR, &opt_bind, "tcp://127.0.0.1:1", 0, 0, "ep", 0 },
        { "flag", NULL, CFG_BOOL, &opt_flag, "false", 0, 0, "a switch", 0 },
        { 0 },
    };
    return opts;
}

START_TEST(test_cfg_precedence)
{
    setenv("NPID_TEST_N", "5", 1);
    setenv("NPID_TEST_LR", "0.5", 1);
    unsetenv("NPID_TEST_BIND");
    char *argv[] = { "prog", "pos1", "--n", "7", "--rows=1e6", "--flag", "pos2", NULL };
    int npos = -1;
    int rc = cfg_parse("prog", NULL, test_table(), 7, argv, &npos);
    ck_assert_int_eq(rc, CFG_OK);
    ck_assert_int_eq(opt_n, 7);           /* flag beats env */
    ck_assert_double_eq(opt_lr, 0.5);     /* env beats default */
    ck_assert_str_eq(opt_bind, "tcp://127.0.0.1:1");
    ck_assert_uint_eq(opt_rows, 1000000);
    ck_assert_int_eq(opt_flag, 1);
    ck_assert_int_eq(npos, 2);
    ck_assert_str_eq(argv[1], "pos1");
    ck_assert_str_eq(argv[2], "pos2");
    ck_assert_int_eq(cfg_apply_default(test_table(), "n", "9"), 0);
    ck_assert_int_eq(opt_n, 7);           /* presets do not override flags */
    ck_assert_int_eq(cfg_apply_default(test_table(), "bind", "ipc://x"), 0);
    ck_assert_str_eq(opt_bind, "ipc://x");
    unsetenv("NPID_TEST_N");
    unsetenv("NPID_TEST_LR");
}
END_TEST

START_TEST(test_cfg_errors)
{
    char *a1[] = { "prog", "--n", "11", NULL };        /* out of range */
    ck_assert_int_eq(cfg_parse("prog", NULL, test_table(), 3, a1, NULL), CFG_USAGE);
    char *a2[] = { "prog", "--nope", NULL };           /* unknown */
    ck_assert_int_eq(cfg_parse("prog", NULL, test_table(), 2, a2, NULL), CFG_USAGE);
    char *a3[] = { "prog", "--lr", NULL };             /* missing value */
    ck_assert_int_eq(cfg_parse("prog", NULL, test_table(), 2, a3, NULL), CFG_USAGE);
    char *a4[] = { "prog", "--rows", "-3", NULL };     /* negative uint */
    ck_assert_int_eq(cfg_parse("prog", NULL, test_table(), 3, a4, NULL), CFG_USAGE);
    char *a5[] = { "prog", "--lr", "abc", NULL };
    ck_assert_int_eq(cfg_parse("prog", NULL, test_table(), 3, a5, NULL), CFG_USAGE);
    setenv("NPID_TEST_N", "x", 1);                     /* bad env value */
    char *a6[] = { "prog", NULL };
    ck_assert_int_eq(cfg_parse("prog", NULL, test_table(), 1, a6, NULL), CFG_USAGE);
    unsetenv("NPID_TEST_N");
    char *a7[] = { "prog", "--no-flag", NULL };
    ck_assert_int_eq(cfg_parse("prog", NULL, test_table(), 2, a7, NULL), CFG_OK);
    ck_assert_int_eq(opt_flag, 0);
}
END_TEST

/* A subcommand's table joined from a shared group and its own rows; the subcommand found
 * among flags and their values, and a flag the table lacks. */
START_TEST(test_cfg_join_scan)
{
    static int own;
    static struct cfg_opt own_rows[] = {
        { "own", NULL, CFG_INT, &own, "1", 0, 0, "its own", 0 },
        { 0 },
    };
    const struct cfg_opt *parts[] = { test_table(), own_rows, NULL };
    struct cfg_opt t[8], small[3];
    ck_assert_int_eq(cfg_join(t, 8, parts), 6);
    ck_assert(t[6].name == NULL);
    ck_assert_int_eq(cfg_join(small, 3, parts), -1);
    ck_assert(small[0].name == NULL);
    char *argv[] = { "prog", "--own", "4", "--n=2", "cmd", NULL };
    int npos = -1;
    ck_assert_int_eq(cfg_parse("prog", NULL, t, 5, argv, &npos), CFG_OK);
    ck_assert_int_eq(own, 4);
    ck_assert_int_eq(opt_n, 2);
    ck_assert_int_eq(npos, 1);
    ck_assert_int_eq(cfg_find(t, "own")->set_by, 2);
    ck_assert_int_eq(cfg_find(t, "lr")->set_by, 0);

    int unk = -1;
    char *s1[] = { "prog", "--n", "7", "--flag", "true", "--lr=0.1", "cmd", "--nope", "x", NULL };
    ck_assert_int_eq(cfg_scan(test_table(), 9, s1, &unk), 6);
    ck_assert_int_eq(unk, 7);
    ck_assert_str_eq(s1[1], "--n"); /* nothing moved */
    char *s2[] = { "prog", "--flag", "cmd", NULL }; /* a boolean takes only true/false... */
    ck_assert_int_eq(cfg_scan(test_table(), 3, s2, &unk), 2);
    ck_assert_int_eq(unk, 0);
    char *s3[] = { "prog", "--no-flag", "--", "--n", NULL }; /* after "--" all positional */
    ck_assert_int_eq(cfg_scan(test_table(), 4, s3, &unk), 3);
    ck_assert_int_eq(unk, 0);
    char *s4[] = { "prog", "--own", "5", "-x", NULL }; /* unknown: no separate value */
    ck_assert_int_eq(cfg_scan(test_table(), 4, s4, &unk), 2);
    ck_assert_int_eq(unk, 1);
    ck_assert_int_eq(cfg_scan(t, 4, s4, &unk), 0);
    ck_assert_int_eq(unk, 3);
    char *s5[] = { "prog", "--lr", NULL }; /* a missing value is cfg_parse's to report */
    ck_assert_int_eq(cfg_scan(t, 2, s5, NULL), 0);
}
END_TEST

START_TEST(test_rng)
{
    struct rng a = rng_derive(1, 2, 3), b = rng_derive(1, 2, 3), c = rng_derive(1, 2, 4);
    for (int i = 0; i < 100; i++) {
        uint64_t x = rng_u64(&a);
        ck_assert_uint_eq(x, rng_u64(&b));
        ck_assert_uint_ne(x, rng_u64(&c));
    }
    /* rng_below: every bucket of 10 within 5 % of its expectation over 100k draws */
    int count[10] = { 0 };
    struct rng r;
    rng_seed(&r, 42);
    for (int i = 0; i < 100000; i++)
        count[rng_below(&r, 10)]++;
    for (int i = 0; i < 10; i++)
        ck_assert_int_lt(abs(count[i] - 10000), 500);
    double sum = 0, sum2 = 0;
    for (int i = 0; i < 100000; i++) {
        double z = rng_normal(&r);
        sum += z;
        sum2 += z * z;
    }
    ck_assert_double_lt(sum / 100000 < 0 ? -sum / 100000 : sum / 100000, 0.02);
    ck_assert_double_lt(sum2 / 100000 - 1 < 0 ? 1 - sum2 / 100000 : sum2 / 100000 - 1, 0.03);
    float f = rng_float(&r);
    ck_assert(f >= 0 && f < 1);
}
END_TEST

START_TEST(test_crc_sha)
{
    ck_assert_uint_eq(crc32c(0, "123456789", 9), 0xe3069283u);
    /* incremental == one shot */
    ck_assert_uint_eq(crc32c(crc32c(0, "12345", 5), "6789", 4), 0xe3069283u);
    struct sha256 s;
    unsigned char d[32];
    char hex[65];
    sha256_init(&s);
    sha256_update(&s, "abc", 3);
    sha256_final(&s, d);
    sha256_hex(d, hex);
    ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    sha256_init(&s);
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    for (size_t i = 0; i < strlen(m); i++)
        sha256_update(&s, m + i, 1);
    sha256_final(&s, d);
    sha256_hex(d, hex);
    ck_assert_str_eq(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}
END_TEST

START_TEST(test_durable)
{
    char dir[] = "/tmp/npid-durable-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char sub[512], path[600], prev[700];
    snprintf(sub, sizeof sub, "%s/a/b", dir);
    ck_assert_int_eq(mkdir_p(sub), 0);
    ck_assert_int_eq(mkdir_p(sub), 0);
    snprintf(path, sizeof path, "%s/f.bin", sub);
    snprintf(prev, sizeof prev, "%s.prev", path);
    ck_assert_int_eq(durable_write(path, "first", 5), 0);
    ck_assert_int_eq(durable_write(path, "second!", 7), 0);
    void *buf;
    size_t len;
    ck_assert_int_eq(file_read_all(path, 100, &buf, &len), 0);
    ck_assert_uint_eq(len, 7);
    ck_assert(memcmp(buf, "second!", 7) == 0);
    free(buf);
    ck_assert_int_eq(file_read_all(prev, 100, &buf, &len), 0);
    ck_assert(len == 5 && memcmp(buf, "first", 5) == 0);
    free(buf);
    ck_assert_int_eq(file_read_all(path, 3, &buf, &len), -1);
    ck_assert_int_eq(errno, EFBIG);
    /* streaming writer with a header patched last */
    struct durable_file f;
    ck_assert_int_eq(durable_open(&f, path), 0);
    uint32_t hdr = 0;
    ck_assert_int_eq(durable_append(&f, &hdr, 4), 0);
    ck_assert_int_eq(durable_append(&f, "123456789", 9), 0);
    uint32_t crc = crc32c(0, "123456789", 9);
    ck_assert_int_eq(durable_pwrite(&f, 0, &crc, 4), 0);
    ck_assert_int_eq(durable_commit(&f), 0);
    ck_assert_int_eq(file_read_all(path, 100, &buf, &len), 0);
    ck_assert_uint_eq(len, 13);
    ck_assert(memcmp(buf, &crc, 4) == 0);
    free(buf);
    /* a failed write leaves no temp file and the old file intact */
    ck_assert_int_eq(durable_open(&f, path), 0);
    durable_abort(&f);
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    ck_assert_int_ne(access(tmp, F_OK), 0);
    ck_assert_int_eq(durable_write("/nonexistent-dir/x", "a", 1), -1);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* The input normalisation is (p / 255 - mean) / std with each preset's statistics. */
START_TEST(test_pixnorm)
{
    static const double mean[2][3] = { { 0.4914, 0.4822, 0.4465 }, { 0.485, 0.456, 0.406 } };
    static const double sd[2][3] = { { 0.2023, 0.1994, 0.2010 }, { 0.229, 0.224, 0.225 } };
    const char *presets[3] = { "cifar", "imagenet", "none" };
    uint8_t pix[2 * 3 * 256];
    float x[2 * 3 * 256];
    for (size_t i = 0; i < sizeof pix; i++)
        pix[i] = (uint8_t)(i * 7 + i / 256);
    for (int p = 0; p < 3; p++) {
        struct pixnorm n;
        pixnorm_for(presets[p], &n);
        pixnorm_apply(&n, pix, 2, 256, x);
        int k = p == 1;
        for (size_t i = 0; i < sizeof pix; i++) {
            size_t c = (i / 256) % 3;
            double want = (pix[i] / 255.0 - mean[k][c]) / sd[k][c];
            ck_assert_msg(fabs(x[i] - want) < 1e-5, "%s: pixel %zu: %g, want %g", presets[p], i,
                          (double)x[i], want);
        }
    }
}
END_TEST

/* The bank's row rule: normalise(a row + c f), a degenerate mix falls back to f, no
 * subnormals stored, large rows mixed in place. */
START_TEST(test_bankrow)
{
    float row[4] = { 1, 0, 0, 0 }, f[4] = { 0, 1, 0, 0 };
    bankrow_write(row, f, 4, 0.5f, 0.5f);
    ck_assert_float_eq_tol(row[0], (float)(1 / sqrt(2.0)), 1e-7f);
    ck_assert_float_eq_tol(row[1], (float)(1 / sqrt(2.0)), 1e-7f);
    float opp[4] = { -row[0], -row[1], 0, 0 };
    bankrow_write(row, opp, 4, 0.5f, 0.5f); /* exactly opposite: the mix is zero */
    for (int j = 0; j < 4; j++)
        ck_assert_float_eq(row[j], opp[j]);
    float tiny[4] = { 4, 4e-38f, 0, 0 }; /* normalised: 1e-38, below FLT_MIN */
    bankrow_write(row, tiny, 4, 0.0f, 1.0f); /* set: the tiny component is 0, not subnormal */
    ck_assert_float_eq(row[0], 1.0f);
    ck_assert_float_eq(row[1], 0.0f);
    float large[300], r300[300];
    for (int j = 0; j < 300; j++) {
        large[j] = (float)(j % 7) - 3.0f;
        r300[j] = 1.0f;
    }
    bankrow_write(r300, large, 300, 0.5f, 0.5f);
    double ss = 0;
    for (int j = 0; j < 300; j++)
        ss += (double)r300[j] * r300[j];
    ck_assert_msg(fabs(ss - 1.0) < 1e-6, "norm^2 %g", ss);
}
END_TEST

/* The one JSON string rule, to a file and to a buffer, and msgpack rendered as JSON. */
START_TEST(test_json)
{
    char *txt = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&txt, &len);
    ck_assert_ptr_nonnull(f);
    static const char in[] = "a\"b\\c\nd\te\x01\x7f\xc3\xa9";
    ck_assert_int_eq(json_write_str(f, in, sizeof in - 1), 0);
    ck_assert_int_eq(json_write_str(f, "x\0y", 3), 0); /* a NUL inside the length */
    fclose(f);
    ck_assert_str_eq(txt, "\"a\\\"b\\\\c\\nd\\te\\u0001\\u007f\xc3\xa9\"\"x\\u0000y\"");
    free(txt);
    char buf[16];
    ck_assert_int_eq(json_format_str(buf, sizeof buf, "q\"\n"), 7);
    ck_assert_str_eq(buf, "\"q\\\"\\n\"");
    ck_assert_int_eq(json_format_str(buf, 7, "q\"\n"), -1); /* 7 bytes + NUL do not fit */
    ck_assert_str_eq(buf, "");
    ck_assert_int_eq(json_format_str(buf, sizeof buf, ""), 2);
    ck_assert_str_eq(buf, "\"\"");
    /* {"k": [1, -2, 0.5, nil, true], 7: "v"} compact, spaced and exact */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    mp_pack_strn(&pk, "k", 1);
    msgpack_pack_array(&pk, 5);
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_int64(&pk, -2);
    msgpack_pack_double(&pk, 0.1);
    msgpack_pack_nil(&pk);
    msgpack_pack_true(&pk);
    msgpack_pack_uint64(&pk, 7);
    mp_pack_strn(&pk, "v", 1);
    const char *want[3] = { "{\"k\":[1,-2,0.1,null,true],\"7\":\"v\"}",
                            "{\"k\": [1, -2, 0.1, null, true], \"7\": \"v\"}",
                            "{\"k\": [1, -2, 0.10000000000000001, null, true], \"7\": \"v\"}" };
    const int flags[3] = { 0, JSON_SPACED, JSON_SPACED | JSON_EXACT };
    for (int i = 0; i < 3; i++) {
        f = open_memstream(&txt, &len);
        ck_assert_int_eq(json_write_mp(f, sb.data, sb.size, flags[i]), 0);
        fclose(f);
        ck_assert_str_eq(txt, want[i]);
        free(txt);
    }
    f = open_memstream(&txt, &len);
    ck_assert_int_eq(json_write_mp(f, sb.data, sb.size - 1, 0), -1); /* truncated: nothing */
    fclose(f);
    ck_assert_uint_eq(len, 0);
    free(txt);
    msgpack_sbuffer_destroy(&sb);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("common");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_cfg_precedence);
    tcase_add_test(tc, test_cfg_errors);
    tcase_add_test(tc, test_cfg_join_scan);
    tcase_add_test(tc, test_rng);
    tcase_add_test(tc, test_crc_sha);
    tcase_add_test(tc, test_durable);
    tcase_add_test(tc, test_json);
    tcase_add_test(tc, test_pixnorm);
    tcase_add_test(tc, test_bankrow);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
