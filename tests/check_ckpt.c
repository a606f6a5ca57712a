/* Unit tests for checkpoint files (common/ckpt.h): bit-exact round trip, the model fields
 * (round trip of every stem and preset name and of a real resnet50, taken from the config of
 * a hand-written version 1 file, bad values refused),
 * detection of truncation, corruption, bad magic and version, and the fallback to PATH.prev;
 * hostile
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
#include "common/nn/net.h"

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
    c->model = (struct ckpt_model){ "resnet18", 128, 32, NET_STEM_CIFAR, 0 };
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
    ck_assert(memcmp(&a->model, &b->model, sizeof(a->model)) == 0);
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
    struct ckpt e = { .model = { "resnet20", 1, 8, NET_STEM_CIFAR, 0 } }, f;
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
    size_t full = 128 + 48 + strlen(a.config) + strlen(a.bank_path) + 4 * (300 + 17 + 300);

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

/* Recomputes the CRC-32C of [16, end) of the file at p into its header. */
static void fix_crc(const char *p)
{
    void *buf = NULL;
    size_t len = 0;
    ck_assert_int_eq(file_read_all(p, (size_t)1 << 26, &buf, &len), 0);
    ck_assert_uint_ge(len, 16);
    uint32_t crc = crc32c(0, (unsigned char *)buf + 16, len - 16);
    free(buf);
    rewrite(p, 12, &crc, 4, -1);
}

START_TEST(test_model_fields)
{
    struct ckpt a, b;
    char err[256];
    make_ckpt(&a, 5, 40);
    a.model = (struct ckpt_model){ "resnet18-quarter", 64, 96, NET_STEM_S2, 512 };
    ck_assert_int_eq(ckpt_save(path, &a), 0);
    ck_assert_msg(ckpt_load(path, &b, err, sizeof(err)) == 0, "%s", err);
    assert_same(&a, &b);
    ck_assert_str_eq(b.model.name, "resnet18-quarter");
    ck_assert_uint_eq(b.model.low_dim, 64);
    ck_assert_uint_eq(b.model.size, 96);
    ck_assert_uint_eq(b.model.stem, NET_STEM_S2);
    ck_assert_uint_eq(b.model.head, 512);
    ckpt_free(&b);
    /* on disk: version 2, the model block at 128, the name NUL-padded, the config after it */
    unsigned char d[176 + 8];
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fread(d, 1, sizeof d, f), sizeof d);
    fclose(f);
    uint32_t u[4], ver;
    memcpy(&ver, d + 8, 4);
    ck_assert_uint_eq(ver, 2);
    ck_assert(memcmp(d + 128, "resnet18-quarter", 16) == 0);
    for (int i = 128 + 16; i < 160; i++) ck_assert_uint_eq(d[i], 0);
    memcpy(u, d + 160, 16);
    ck_assert_uint_eq(u[0], 64);
    ck_assert_uint_eq(u[1], 96);
    ck_assert_uint_eq(u[2], 1);
    ck_assert_uint_eq(u[3], 512);
    ck_assert(memcmp(d + 176, "{\"model\"", 8) == 0);
    ckpt_free(&a);
}
END_TEST

/* Every stem survives the round trip, stored as its enum value at offset 168. */
START_TEST(test_model_stems)
{
    struct ckpt a, b;
    char err[256];
    make_ckpt(&a, 3, 20);
    static const int stems[] = { NET_STEM_CIFAR, NET_STEM_S2, NET_STEM_S4, NET_STEM_IMAGENET };
    for (size_t i = 0; i < sizeof stems / sizeof stems[0]; i++) {
        a.model = (struct ckpt_model){ "resnet20", 128, 64, (uint32_t)stems[i], 0 };
        ck_assert_int_eq(ckpt_save(path, &a), 0);
        ck_assert_msg(ckpt_load(path, &b, err, sizeof(err)) == 0, "%s", err);
        ck_assert_uint_eq(b.model.stem, (uint32_t)stems[i]);
        ckpt_free(&b);
        unsigned char d[172];
        FILE *f = fopen(path, "rb");
        ck_assert_ptr_nonnull(f);
        ck_assert_uint_eq(fread(d, 1, sizeof d, f), sizeof d);
        fclose(f);
        uint32_t st;
        memcpy(&st, d + 168, 4);
        ck_assert_uint_eq(st, (uint32_t)i);
    }
    ck_assert_uint_eq(NET_STEM_IMAGENET, 3); /* docs/formats.md */
    ckpt_free(&a);
}
END_TEST

/* Every preset name survives the round trip NUL-padded, resnet34 and resnet50 included, and a
 * name that is no preset is refused on save; then a real resnet50 with the imagenet stem: its
 * parameter and buffer blocks come back bit for bit, sized as the network that reads them. */
START_TEST(test_model_names)
{
    struct ckpt a, b;
    char err[256];
    make_ckpt(&a, 3, 20);
    static const char *const names[] = { "resnet18", "resnet18-half", "resnet18-quarter",
                                         "resnet20", "resnet34", "resnet50" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        a.model = (struct ckpt_model){ "", 128, 224, NET_STEM_IMAGENET, 0 };
        snprintf(a.model.name, sizeof a.model.name, "%s", names[i]);
        ck_assert_int_eq(ckpt_save(path, &a), 0);
        ck_assert_msg(ckpt_load(path, &b, err, sizeof(err)) == 0, "%s", err);
        ck_assert_str_eq(b.model.name, names[i]);
        ckpt_free(&b);
    }
    snprintf(a.model.name, sizeof a.model.name, "resnet101");
    errno = 0;
    ck_assert_int_eq(ckpt_save(path, &a), -1);
    ck_assert_int_eq(errno, EINVAL);
    ckpt_free(&a);
    struct net_config nc = { "resnet50", 128, 64, 64, 1, 7, NET_INIT_HE_OUT, NET_STEM_IMAGENET,
                             0 };
    struct net *n = net_new_threads(&nc, 1);
    ck_assert_ptr_nonnull(n);
    memset(&a, 0, sizeof a);
    a.model = (struct ckpt_model){ "resnet50", 128, 64, NET_STEM_IMAGENET, 0 };
    a.config = "{\"model\":\"resnet50\",\"stem\":\"imagenet\"}";
    a.bank_path = "";
    a.n_params = net_param_count(n);
    a.params = net_params(n);
    a.n_buffers = net_buffer_count(n);
    a.buffers = net_buffers(n);
    ck_assert_int_eq(ckpt_save(path, &a), 0);
    ck_assert_msg(ckpt_load(path, &b, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(b.model.name, "resnet50");
    ck_assert_uint_eq(b.model.stem, NET_STEM_IMAGENET);
    ck_assert_uint_eq(b.n_params, net_param_count(n));
    ck_assert_uint_eq(b.n_buffers, net_buffer_count(n));
    ck_assert(memcmp(b.params, net_params(n), sizeof(float) * b.n_params) == 0);
    ck_assert(memcmp(b.buffers, net_buffers(n), sizeof(float) * b.n_buffers) == 0);
    ckpt_free(&b);
    net_destroy(&n);
}
END_TEST

/* A version 1 file by hand (docs/formats.md): the 128-byte header, config, an empty bank path,
 * np parameters, no buffers or momentum. */
static void write_v1(const char *p, const char *config, size_t np)
{
    size_t cl = strlen(config), len = 128 + cl + 4 * np;
    unsigned char *b = calloc(1, len);
    ck_assert_ptr_nonnull(b);
    memcpy(b, "NPIDCKPT", 8);
    uint32_t ver = 1, cl32 = (uint32_t)cl;
    uint64_t total = len, step = 42, n = np;
    memcpy(b + 8, &ver, 4);
    memcpy(b + 16, &total, 8);
    memcpy(b + 24, &step, 8);
    memcpy(b + 96, &n, 8);
    memcpy(b + 120, &cl32, 4);
    memcpy(b + 128, config, cl);
    for (size_t i = 0; i < np; i++) {
        float x = (float)i - 0.5f;
        memcpy(b + 128 + cl + 4 * i, &x, 4);
    }
    uint32_t crc = crc32c(0, b + 16, len - 16);
    memcpy(b + 12, &crc, 4);
    FILE *f = fopen(p, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(b, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
    free(b);
}

START_TEST(test_version1_read)
{
    struct ckpt b;
    char err[256];
    const char *full = "{\"run\":\"old\",\"model\":\"resnet18-half\",\"low-dim\":64,"
                       "\"size\":48,\"stem\":\"s4\",\"head\":256,\"aug\":\"cifar\"}";
    write_v1(path, full, 7);
    ck_assert_msg(ckpt_load(path, &b, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(b.model.name, "resnet18-half");
    ck_assert_uint_eq(b.model.low_dim, 64);
    ck_assert_uint_eq(b.model.size, 48);
    ck_assert_uint_eq(b.model.stem, NET_STEM_S4);
    ck_assert_uint_eq(b.model.head, 256);
    ck_assert_str_eq(b.config, full);
    ck_assert_uint_eq(b.step, 42);
    ck_assert_uint_eq(b.n_params, 7);
    ck_assert(b.params[6] == 5.5f);
    ckpt_free(&b);
    /* from before --stem and --head: the CIFAR stem, the single Linear */
    write_v1(path, "{\"model\":\"resnet20\",\"low-dim\":32,\"size\":40}", 3);
    ck_assert_msg(ckpt_load(path, &b, err, sizeof(err)) == 0, "%s", err);
    ck_assert_str_eq(b.model.name, "resnet20");
    ck_assert_uint_eq(b.model.low_dim, 32);
    ck_assert_uint_eq(b.model.size, 40);
    ck_assert_uint_eq(b.model.stem, NET_STEM_CIFAR);
    ck_assert_uint_eq(b.model.head, 0);
    ckpt_free(&b);
    /* no low-dim or size either: 128 and 32 */
    write_v1(path, "{\"model\":\"resnet18\"}", 0);
    ck_assert_msg(ckpt_load(path, &b, err, sizeof(err)) == 0, "%s", err);
    ck_assert_uint_eq(b.model.low_dim, 128);
    ck_assert_uint_eq(b.model.size, 32);
    ckpt_free(&b);
    /* what the config cannot give is refused, with the reason */
    static const char *const bad[][2] = {
        { "{\"nce_k\":4096}", "no \"model\"" },
        { "{\"model\":\"resnet99\"}", "name \"resnet99\" (not a network preset)" },
        { "{\"model\":\"resnet18\",\"stem\":\"s9\"}", "stem \"s9\"" },
        { "{\"model\":\"resnet18\",\"low-dim\":0}", "low_dim 0 (1..4096) (version 1" },
        { "{\"model\":\"resnet18\",\"size\":-3}", "size -3 in the version 1" },
        { "{\"model\":\"resnet18\",\"head\":9000}", "head 9000 (0..8192)" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_v1(path, bad[i][0], 1);
        ck_assert_int_eq(ckpt_load(path, &b, err, sizeof(err)), -1);
        ck_assert_msg(strstr(err, "bad model field") && strstr(err, bad[i][1]), "%s: %s",
                      bad[i][0], err);
        ck_assert_ptr_null(b.params);
    }
}
END_TEST

START_TEST(test_bad_model_fields)
{
    struct ckpt a, b;
    char err[256];
    make_ckpt(&a, 9, 20);
    static const struct { long off; uint32_t v; const char *why; } bad[] = {
        { 160, 0, "low_dim 0 (1..4096)" },     { 160, 4097, "low_dim 4097" },
        { 164, 7, "size 7 (8..1024)" },        { 164, 1025, "size 1025" },
        { 168, 4, "stem 4" },                  { 172, 8193, "head 8193 (0..8192)" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_int_eq(ckpt_save(path, &a), 0);
        rewrite(path, bad[i].off, &bad[i].v, 4, -1);
        fix_crc(path);
        ck_assert_int_eq(ckpt_load(path, &b, err, sizeof(err)), -1);
        ck_assert_msg(strstr(err, "bad model field") && strstr(err, bad[i].why), "%s", err);
        ck_assert_ptr_null(b.params);
    }
    ck_assert_int_eq(ckpt_save(path, &a), 0);
    rewrite(path, 128, "resnet99", 8, -1);
    fix_crc(path);
    ck_assert_int_eq(ckpt_load(path, &b, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "bad model field name \"resnet99\""), "%s", err);
    char full[32];
    memset(full, 'r', sizeof full);
    rewrite(path, 128, full, sizeof full, -1);
    fix_crc(path);
    ck_assert_int_eq(ckpt_load(path, &b, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "bad model field name (not NUL-terminated"), "%s", err);
    /* the writer refuses what a reader would */
    a.model.head = 9000;
    errno = 0;
    ck_assert_int_eq(ckpt_save(path, &a), -1);
    ck_assert_int_eq(errno, EINVAL);
    a.model.head = 0;
    snprintf(a.model.name, sizeof a.model.name, "vgg");
    ck_assert_int_eq(ckpt_save(path, &a), -1);
    ck_assert_int_eq(ckpt_load(path, &b, err, sizeof(err)), -1); /* still the bad file */
    ckpt_free(&a);
}
END_TEST

static Suite *ckpt_suite(void)
{
    Suite *s = suite_create("ckpt");
    TCase *tc = tcase_create("ckpt");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_model_fields);
    tcase_add_test(tc, test_model_stems);
    tcase_add_test(tc, test_model_names);
    tcase_add_test(tc, test_version1_read);
    tcase_add_test(tc, test_bad_model_fields);
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
