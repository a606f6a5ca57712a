/* Unit tests for checkpoint files (common/ckpt.h): bit-exact round trip, detection of
 * truncation, corruption, bad magic and version, and the fallback to PATH.prev; hostile
 * paths: a FIFO, a directory and a 2 GiB sparse file are refused without blocking or
 * reading them, and a link planted at the temporary name is never written through. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/ckpt.h"
#include "common/durable.h"

static char dir[PATH_MAX], path[PATH_MAX + 16];

static void setup(void)
{
    snprintf(dir, sizeof(dir), "/tmp/npid_ckpt_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/ckpt.bin", dir);
}

static void teardown(void)
{
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0) { /* best effort */ }
}

static void make_ckpt(struct ckpt *c, uint64_t step, size_t np)
{
    memset(c, 0, sizeof(*c));
    c->config = strdup("{\"model\":\"resnet18\",\"nce_k\":4096}");
    c->bank_path = strdup("/run/bank.snap");
    c->step = step;
    c->epoch = 3;
    c->epoch_pos = 1280;
    c->bank_step = step - 1;
    c->z = 1.2345678901234e14;
    rng_seed(&c->rng, 99);
    rng_u64(&c->rng);
    c->n_params = np;
    c->n_buffers = 17;
    c->n_momentum = np;
    c->params = malloc(4 * np);
    c->buffers = malloc(4 * 17);
    c->momentum = malloc(4 * np);
    struct rng r;
    rng_seed(&r, step);
    /* arbitrary bit patterns, NaNs and denormals included: the round trip is bytes */
    for (size_t i = 0; i < np; i++) {
        uint32_t a = rng_u32(&r), b = rng_u32(&r);
        memcpy(&c->params[i], &a, 4);
        memcpy(&c->momentum[i], &b, 4);
    }
    for (int i = 0; i < 17; i++) c->buffers[i] = (float)i * 0.25f;
}

static void assert_same(const struct ckpt *a, const struct ckpt *b)
{
    ck_assert_str_eq(a->config, b->config);
    ck_assert_str_eq(a->bank_path, b->bank_path);
    ck_assert_uint_eq(a->step, b->step);
    ck_assert_uint_eq(a->epoch, b->epoch);
    ck_assert_uint_eq(a->epoch_pos, b->epoch_pos);
    ck_assert_uint_eq(a->bank_step, b->bank_step);
    ck_assert(memcmp(&a->z, &b->z, 8) == 0);
    ck_assert(memcmp(&a->rng, &b->rng, sizeof(a->rng)) == 0);
    ck_assert_uint_eq(a->n_params, b->n_params);
    ck_assert_uint_eq(a->n_buffers, b->n_buffers);
    ck_assert_uint_eq(a->n_momentum, b->n_momentum);
    ck_assert(memcmp(a->params, b->params, 4 * a->n_params) == 0);
    ck_assert(memcmp(a->buffers, b->buffers, 4 * a->n_buffers) == 0);
    ck_assert(memcmp(a->momentum, b->momentum, 4 * a->n_momentum) == 0);
}

START_TEST(test_round_trip)
{
    struct ckpt a, b;
    char err[256];
    make_ckpt(&a, 100, 1001);
    ck_assert_int_eq(ckpt_save(path, &a), 0);
    ck_assert_msg(ckpt_load(path, &b, err, sizeof(err)) == 0, "%s", err);
    assert_same(&a, &b);
    ckpt_free(&b);
    /* empty texts and sections */
    struct ckpt e = { 0 }, f;
    ck_assert_int_eq(ckpt_save(path, &e), 0);
    ck_assert_msg(ckpt_load(path, &f, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(f.config, "");
    ck_assert_uint_eq(f.n_params, 0);
    ckpt_free(&f);
    ckpt_free(&a);
}
END_TEST

static void rewrite(const char *p, long off, const void *bytes, size_t n, off_t trunc_to)
{
    int fd = open(p, O_RDWR);
    ck_assert_int_ge(fd, 0);
    if (bytes) ck_assert_int_eq(pwrite(fd, bytes, n, off), (ssize_t)n);
    if (trunc_to >= 0) ck_assert_int_eq(ftruncate(fd, trunc_to), 0);
    close(fd);
}

START_TEST(test_corrupt_detected)
{
    struct ckpt a, b;
    char err[256];
    make_ckpt(&a, 7, 300);
    ck_assert_int_eq(ckpt_save(path, &a), 0);
    size_t full = 128 + strlen(a.config) + strlen(a.bank_path) + 4 * (300 + 17 + 300);

    unsigned char x = 0x5a;
    rewrite(path, 600, &x, 1, -1); /* a flipped byte in the parameters */
    ck_assert_int_eq(ckpt_load(path, &b, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "checksum") != NULL, "%s", err);
    ck_assert_ptr_null(b.params);

    ck_assert_int_eq(ckpt_save(path, &a), 0);
    rewrite(path, 0, NULL, 0, (off_t)full - 5);
    ck_assert_int_eq(ckpt_load(path, &b, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "truncated") != NULL, "%s", err);
    rewrite(path, 0, NULL, 0, 40);
    ck_assert_int_eq(ckpt_load(path, &b, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "truncated") != NULL, "%s", err);

    ck_assert_int_eq(ckpt_save(path, &a), 0);
    rewrite(path, 0, "XPIDCKPT", 8, -1);
    ck_assert_int_eq(ckpt_load(path, &b, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "magic") != NULL, "%s", err);

    ck_assert_int_eq(ckpt_save(path, &a), 0);
    uint32_t v = 9;
    rewrite(path, 8, &v, 4, -1);
    ck_assert_int_eq(ckpt_load(path, &b, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "version 9") != NULL, "%s", err);

    char missing[PATH_MAX + 32];
    snprintf(missing, sizeof(missing), "%s/none", dir);
    ck_assert_int_eq(ckpt_load(missing, &b, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "No such file") != NULL, "%s", err);
    ckpt_free(&a);
}
END_TEST

static long maxrss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

START_TEST(test_hostile_paths)
{
    struct ckpt b;
    char err[512], p2[PATH_MAX + 32];
    /* a FIFO with no writer: open must not block (the test would time out) */
    snprintf(p2, sizeof(p2), "%s/fifo", dir);
    ck_assert_int_eq(mkfifo(p2, 0600), 0);
    ck_assert_int_eq(ckpt_load(p2, &b, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "not a regular file") != NULL, "%s", err);
    ck_assert_int_eq(ckpt_load(dir, &b, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "not a regular file") != NULL, "%s", err);
    /* 2 GiB sparse: zeros (bad magic), then a header whose size matches the file but whose
       sections do not: refused from the header, nothing near 2 GiB allocated */
    snprintf(p2, sizeof(p2), "%s/sparse", dir);
    int fd = open(p2, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    const uint64_t big = (uint64_t)2 << 30;
    ck_assert_int_eq(ftruncate(fd, (off_t)big), 0);
    long rss0 = maxrss_kb();
    ck_assert_int_eq(ckpt_load(p2, &b, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "magic") != NULL, "%s", err);
    unsigned char h[128] = { 0 };
    memcpy(h, "NPIDCKPT", 8);
    uint32_t ver = CKPT_VERSION;
    memcpy(h + 8, &ver, 4);
    memcpy(h + 16, &big, 8);
    ck_assert_int_eq(pwrite(fd, h, sizeof h, 0), (ssize_t)sizeof h);
    close(fd);
    ck_assert_int_eq(ckpt_load(p2, &b, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "inconsistent section sizes") != NULL, "%s", err);
    ck_assert_msg(maxrss_kb() - rss0 < 64 * 1024, "RSS grew by %ld kB", maxrss_kb() - rss0);
}
END_TEST

START_TEST(test_no_write_through_links)
{
    struct ckpt a, b;
    char err[256], victim[PATH_MAX + 32], tmp[PATH_MAX + 32];
    snprintf(victim, sizeof(victim), "%s/victim", dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(victim, "w");
    ck_assert_ptr_nonnull(f);
    fputs("precious", f);
    fclose(f);
    ck_assert_int_eq(symlink(victim, tmp), 0);
    make_ckpt(&a, 11, 50);
    ck_assert_int_eq(ckpt_save(path, &a), 0);
    f = fopen(victim, "r");
    char got[32] = { 0 };
    ck_assert_ptr_nonnull(fgets(got, sizeof got, f));
    fclose(f);
    ck_assert_str_eq(got, "precious");
    struct stat st;
    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert_msg(S_ISREG(st.st_mode), "the checkpoint is not a regular file");
    ck_assert_int_eq(ckpt_load(path, &b, err, sizeof(err)), 0);
    assert_same(&a, &b);
    ckpt_free(&b);
    /* a link at the final name is replaced, its target untouched */
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(symlink(victim, path), 0);
    ck_assert_int_eq(ckpt_save(path, &a), 0);
    ck_assert_int_eq(lstat(path, &st), 0);
    ck_assert(S_ISREG(st.st_mode));
    f = fopen(victim, "r");
    ck_assert_ptr_nonnull(fgets(got, sizeof got, f));
    fclose(f);
    ck_assert_str_eq(got, "precious");
    ckpt_free(&a);
}
END_TEST

START_TEST(test_latest_falls_back)
{
    struct ckpt a, a2, b;
    char err[512];
    int used = -1;
    make_ckpt(&a, 10, 200);
    make_ckpt(&a2, 20, 200);
    ck_assert_int_eq(ckpt_save(path, &a), 0);
    ck_assert_int_eq(ckpt_save(path, &a2), 0); /* a is now path.prev */
    ck_assert_msg(ckpt_load_latest(path, &b, &used, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(used, 0);
    assert_same(&a2, &b);
    ckpt_free(&b);
    unsigned char x = 0xff;
    rewrite(path, 300, &x, 1, -1);
    ck_assert_msg(ckpt_load_latest(path, &b, &used, err, sizeof(err)) == 0, "%s", err);
    ck_assert_int_eq(used, 1);
    ck_assert_msg(strstr(err, "checksum") != NULL, "reason kept: %s", err);
    assert_same(&a, &b);
    ckpt_free(&b);
    char prev[PATH_MAX + 32];
    snprintf(prev, sizeof(prev), "%s.prev", path);
    rewrite(prev, 0, NULL, 0, 100);
    ck_assert_int_eq(ckpt_load_latest(path, &b, &used, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "truncated") != NULL, "%s", err);
    ckpt_free(&a);
    ckpt_free(&a2);
}
END_TEST

static Suite *ckpt_suite(void)
{
    Suite *s = suite_create("ckpt");
    TCase *tc = tcase_create("ckpt");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_corrupt_detected);
    tcase_add_test(tc, test_latest_falls_back);
    tcase_add_test(tc, test_hostile_paths);
    tcase_add_test(tc, test_no_write_through_links);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *sr = srunner_create(ckpt_suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
