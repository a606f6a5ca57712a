/* Tests for the memory bank sharded by row range (bankd --shard i/N, bankc over several
 * endpoints; docs/protocol.md "Shards").
 *
 * "bank": a shard's rows against the same rows of an unsharded bank, its range checks, and
 * its snapshot file (version 4) round trip.
 * "daemon": real npid-bankd processes ($NPID_BIN/npid-bankd) on ipc:// endpoints: two
 * shards against one bankd (the same writes and reads give bit-identical rows, samples and
 * steps), the refusals of a shard (ERANGE outside its rows, EINVAL for drawn negatives, bad
 * --shard flags, endpoints listed in the wrong order, shards at different steps), snapshot
 * and restore per shard (a file of another shard is EMISMATCH), a shard killed and
 * restarted while the client retries, the split rows sample returning at once while a
 * shard is stopped, and a call interrupted by the stop flag. A training run over shards: tests/it_trainer_shards.sh. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bankd/bank.h"
#include "bankd/snapshot.h"
#include "common/bankc.h"
#include "common/clock.h"
#include "common/durable.h"
#include "common/msg.h"
#include "common/rng.h"

static char tmp_root[256];

static const char *tmpdir_new(const char *tag)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s-XXXXXX", tmp_root, tag);
    ck_assert_ptr_nonnull(mkdtemp(path));
    return path;
}

static void fill_normal(float *x, size_t n, uint64_t seed)
{
    struct rng r = rng_derive(seed, 77, 0);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)rng_normal(&r);
}

/* ---- bank ----------------------------------------------------------------------------------- */

START_TEST(test_bank_shard_rows)
{
    const uint64_t n = 1001;
    const size_t dim = 5;
    struct bank *whole = bank_new(n, dim, 9, BANK_INIT_UNIFORM);
    struct bank *unit = bank_new(n, dim, 9, BANK_INIT_UNIT);
    ck_assert_ptr_nonnull(whole);
    for (uint32_t N = 1; N <= 4; N++) {
        uint64_t covered = 0;
        for (uint32_t i = 0; i < N; i++) {
            struct bank *s = bank_new_shard(n, dim, 9, BANK_INIT_UNIFORM, i, N);
            struct bank *u = bank_new_shard(n, dim, 9, BANK_INIT_UNIT, i, N);
            ck_assert_ptr_nonnull(s);
            ck_assert_uint_eq(s->lo, i * n / N);
            ck_assert_uint_eq(s->lo + s->rows, (i + 1) * n / N);
            ck_assert_uint_eq(s->total, n);
            ck_assert_int_eq(memcmp(s->v, whole->v + s->lo * dim, s->rows * dim * 4), 0);
            ck_assert_int_eq(memcmp(u->v, unit->v + u->lo * dim, u->rows * dim * 4), 0);
            covered += s->rows;
            bank_destroy(&s);
            bank_destroy(&u);
        }
        ck_assert_uint_eq(covered, n);
    }
    /* bad shards, and a shard that would hold no row */
    ck_assert_ptr_null(bank_new_shard(n, dim, 9, BANK_INIT_UNIFORM, 2, 2));
    ck_assert_ptr_null(bank_new_shard(n, dim, 9, BANK_INIT_UNIFORM, 0, 0));
    ck_assert_ptr_null(bank_new_shard(1, dim, 9, BANK_INIT_UNIFORM, 0, 2));
    bank_destroy(&whole);
    bank_destroy(&unit);
}
END_TEST

START_TEST(test_bank_shard_ranges)
{
    const size_t dim = 4;
    struct bank *s = bank_new_shard(10, dim, 1, BANK_INIT_UNIFORM, 1, 2); /* rows [5, 10) */
    struct bank_err e;
    float f[4 * 2], out[4 * 5];
    fill_normal(f, 8, 3);
    uint32_t in[2] = { 9, 5 }, lo[2] = { 9, 4 };
    ck_assert_int_eq(bank_update(s, in, 2, f, 8, 0.5f, &e), 0);
    ck_assert_int_eq(bank_update(s, lo, 2, f, 8, 0.5f, &e), -1);
    ck_assert_str_eq(e.code, BANK_ERANGE);
    ck_assert_ptr_nonnull(strstr(e.msg, "outside this shard's rows [5, 10)"));
    ck_assert_uint_eq(s->step, 1);
    ck_assert_int_eq(bank_get(s, 5, 5, out, &e), 0);
    ck_assert_int_eq(bank_get(s, 4, 2, out, &e), -1);
    ck_assert_str_eq(e.code, BANK_ERANGE);
    uint32_t ni[1], want[1] = { 0 };
    float neg[4];
    ck_assert_int_eq(bank_rows(s, want, 1, NULL, 0, ni, neg, NULL, &e), -1);
    ck_assert_str_eq(e.code, BANK_ERANGE);
    ck_assert_int_eq(bank_sample(s, 1, NULL, 0, 0, ni, neg, NULL, &e), -1);
    ck_assert_str_eq(e.code, BANK_EINVAL);
    ck_assert_ptr_nonnull(strstr(e.msg, "explicitly"));
    /* the snapshot keeps the shard, and loads it back */
    const char *dir = tmpdir_new("snap");
    char path[600];
    ck_assert_int_eq(snapshot_write(s, dir, path, sizeof path), 0);
    struct snapshot_info info;
    const char *why;
    ck_assert_int_eq(snapshot_peek(path, &info, &why), 0);
    ck_assert_uint_eq(info.version, SNAPSHOT_VERSION_SHARD);
    ck_assert_uint_eq(info.shard, 1);
    ck_assert_uint_eq(info.shards, 2);
    ck_assert_uint_eq(info.total, 10);
    ck_assert_uint_eq(info.lo, 5);
    struct bank *r = snapshot_read(path, &why);
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->lo, 5);
    ck_assert_uint_eq(r->rows, 5);
    ck_assert_uint_eq(r->shard, 1);
    ck_assert_uint_eq(r->shards, 2);
    ck_assert_int_eq(memcmp(r->v, s->v, 5 * dim * 4), 0);
    bank_destroy(&r);
    /* an unsharded bank still writes version 3 */
    struct bank *w = bank_new(10, dim, 1, BANK_INIT_UNIFORM);
    ck_assert_int_eq(snapshot_write(w, dir, path, sizeof path), 0);
    ck_assert_int_eq(snapshot_peek(path, &info, &why), 0);
    ck_assert_uint_eq(info.version, SNAPSHOT_VERSION);
    ck_assert_uint_eq(info.shards, 1);
    bank_destroy(&w);
    bank_destroy(&s);
}
END_TEST

/* ---- daemons -------------------------------------------------------------------------------- */

struct daemon {
    pid_t pid;
    char ep[600];
    char dir[512];
    char log[600];
    char shard[16];
};

static const char *bankd_exe(void)
{
    static char exe[512];
    const char *b = getenv("NPID_BIN");
    snprintf(exe, sizeof exe, "%s/npid-bankd", b && *b ? b : "build");
    ck_assert_msg(access(exe, X_OK) == 0, "%s not built", exe);
    return exe;
}

/* Forks npid-bankd --shard shard (NULL: none) on ipc://DIR/bankd.sock, exec'd after delay_us
 * (a restart: the same dir, endpoint and shard as d holds). */
static void daemon_spawn(struct daemon *d, const char *dir, const char *shard,
                         useconds_t delay_us)
{
    if (dir) {
        snprintf(d->dir, sizeof d->dir, "%s", dir);
        snprintf(d->ep, sizeof d->ep, "ipc://%s/bankd.sock", dir);
        snprintf(d->log, sizeof d->log, "%s/bankd.log", dir);
        snprintf(d->shard, sizeof d->shard, "%s", shard ? shard : "0/1");
    }
    const char *exe = bankd_exe();
    const char *argv[] = { exe, "--bind", d->ep, "--dir", d->dir, "--snapshot-every", "0",
                           "--shard", d->shard, NULL };
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

/* Starts a bankd and waits until it answers (ENOBANK or a bank). */
static void daemon_start(struct daemon *d, const char *dir, const char *shard)
{
    daemon_spawn(d, dir, shard, 0);
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

/* Two shards in fresh dirs and the endpoint list "ep0,ep1". */
static void shards_start(struct daemon d[2], char *list, size_t cap)
{
    daemon_start(&d[0], tmpdir_new("s0"), "0/2");
    daemon_start(&d[1], tmpdir_new("s1"), "1/2");
    snprintf(list, cap, "%s,%s", d[0].ep, d[1].ep);
}

enum { N_ROWS = 1001, DIM = 8 };

/* Writes `steps` random set/update calls (indices over all rows, repeats included; in
 * call 1 only rows of shard 0 of 2, in call 2 only one row of shard 1) to every client of cs
 * (n of them), checking their steps agree. */
static void write_same(struct bankc **cs, int n, int steps, uint64_t seed)
{
    enum { B = 40 };
    uint32_t idx[B];
    float feat[B * DIM];
    for (int t = 0; t < steps; t++) {
        struct rng r = rng_derive(seed, 5, (uint64_t)t);
        for (int j = 0; j < B; j++)
            idx[j] = (uint32_t)rng_below(&r, N_ROWS);
        idx[B - 1] = idx[0]; /* a repeated index, applied in order */
        for (int j = 0; t == 1 && j < B; j++)
            idx[j] %= N_ROWS / 2;
        idx[0] = t == 2 ? N_ROWS - 1 : idx[0];
        size_t nb = t == 2 ? 1 : B;
        fill_normal(feat, B * DIM, seed * 1000 + (uint64_t)t);
        uint64_t want = 0;
        for (int k = 0; k < n; k++) {
            uint64_t st = 0;
            int rc = t % 3 == 0 ? bankc_set(cs[k], idx, feat, nb, &st)
                                : bankc_update(cs[k], idx, feat, nb, 0.5f, &st);
            ck_assert_msg(rc == 0, "write %d: %s", t, bankc_error(cs[k]));
            if (k == 0)
                want = st;
            ck_assert_uint_eq(st, want);
            ck_assert_uint_ge(st, (uint64_t)t + 1);
        }
    }
}

/* Reads every row of c into a new buffer (N_ROWS, DIM). */
static float *get_all(struct bankc *c)
{
    float *v = malloc(4 * N_ROWS * DIM);
    ck_assert_ptr_nonnull(v);
    ck_assert_msg(bankc_get(c, 0, N_ROWS, v) == 0, "get: %s", bankc_error(c));
    return v;
}

START_TEST(test_daemon_shards_match_one)
{
    struct daemon one, d[2];
    char list[1300];
    daemon_start(&one, tmpdir_new("one"), NULL);
    shards_start(d, list, sizeof list);
    struct bankc *c1 = bankc_new(one.ep, NULL, 2000, 3);
    struct bankc *c2 = bankc_new(list, "shard-test", 2000, 3);
    ck_assert_ptr_nonnull(c1);
    ck_assert_ptr_nonnull(c2);
    int created = 0;
    uint64_t step = 99;
    ck_assert_int_eq(bankc_init(c1, N_ROWS, DIM, 7, "run-a", "man-a", &created, &step), 0);
    ck_assert_msg(bankc_init(c2, N_ROWS, DIM, 7, "run-a", "man-a", &created, &step) == 0, "%s",
                  bankc_error(c2));
    ck_assert_int_eq(created, 1);
    ck_assert_uint_eq(step, 0);
    float *a = get_all(c1), *b = get_all(c2);
    ck_assert_int_eq(memcmp(a, b, 4 * N_ROWS * DIM), 0); /* the same initial rows */
    free(a);
    free(b);
    struct bankc *cs[2] = { c1, c2 };
    write_same(cs, 2, 7, 3);
    a = get_all(c1);
    b = get_all(c2);
    ck_assert_int_eq(memcmp(a, b, 4 * N_ROWS * DIM), 0);
    free(a);
    free(b);
    /* rows samples: spanning both shards, all negatives in shard 0 with positives in shard 1
       only, and a single row */
    enum { K = 64, P = 16 };
    uint32_t neg_idx[K], pos_idx[P], got_idx[2][K];
    static float neg[2][K * DIM], pos[2][P * DIM];
    struct rng r = rng_derive(11, 1, 0);
    for (int j = 0; j < K; j++)
        neg_idx[j] = (uint32_t)rng_below(&r, N_ROWS);
    for (int j = 0; j < P; j++)
        pos_idx[j] = (uint32_t)rng_below(&r, N_ROWS);
    uint32_t low[3] = { 3, 499, 3 }, high[2] = { 500, N_ROWS - 1 };
    struct { const uint32_t *n; size_t k; const uint32_t *p; size_t b; } cases[] = {
        { neg_idx, K, pos_idx, P }, { low, 3, high, 2 }, { high, 1, NULL, 0 },
    };
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        uint64_t st[2];
        for (int k = 0; k < 2; k++) {
            ck_assert_int_eq(bankc_rows_send(cs[k], cases[t].n, cases[t].k, cases[t].p,
                                             cases[t].b), 0);
            ck_assert_msg(bankc_sample_recv(cs[k], got_idx[k], neg[k], pos[k], &st[k]) == 0,
                          "case %zu: %s", t, bankc_error(cs[k]));
        }
        ck_assert_uint_eq(st[0], st[1]);
        ck_assert_int_eq(memcmp(got_idx[0], cases[t].n, 4 * cases[t].k), 0);
        ck_assert_int_eq(memcmp(got_idx[1], cases[t].n, 4 * cases[t].k), 0);
        ck_assert_int_eq(memcmp(neg[0], neg[1], 4 * cases[t].k * DIM), 0);
        ck_assert_int_eq(memcmp(pos[0], pos[1], 4 * cases[t].b * DIM), 0);
    }
    /* info and stats describe the whole bank */
    struct bankc_info i1, i2;
    ck_assert_int_eq(bankc_info(c1, &i1), 0);
    ck_assert_int_eq(bankc_info(c2, &i2), 0);
    ck_assert_uint_eq(i2.rows, N_ROWS);
    ck_assert_uint_eq(i2.step, i1.step);
    ck_assert_str_eq(i2.run, "run-a");
    ck_assert_str_eq(i2.manifest, "man-a");
    struct bank_stats_rep s1, s2;
    ck_assert_int_eq(bankc_stats(c1, &s1), 0);
    ck_assert_int_eq(bankc_stats(c2, &s2), 0);
    ck_assert_uint_eq(s2.rows, s1.rows);
    ck_assert_uint_eq(s2.writes, s1.writes);
    ck_assert_uint_eq(s2.rows_written, s1.rows_written);
    ck_assert_uint_eq(s2.step, s1.step);
    /* a client-side refusal reaches no shard: the steps stay equal */
    uint32_t bad_idx[1] = { N_ROWS };
    float f[DIM];
    fill_normal(f, DIM, 1);
    ck_assert_int_eq(bankc_update(c2, bad_idx, f, 1, 0.5f, NULL), -1);
    ck_assert_str_eq(bankc_error_code(c2), BANK_ERANGE);
    uint32_t ok_idx[2] = { 1, 900 };
    float f2[2 * DIM];
    fill_normal(f2, 2 * DIM, 2);
    f2[DIM + 3] = 0.0f / 0.0f;
    ck_assert_int_eq(bankc_update(c2, ok_idx, f2, 2, 0.5f, NULL), -1);
    ck_assert_str_eq(bankc_error_code(c2), BANK_EINVAL);
    ck_assert_int_eq(bankc_info(c2, &i2), 0);
    ck_assert_uint_eq(i2.step, i1.step);
    bankc_destroy(&c1);
    bankc_destroy(&c2);
    ck_assert_int_eq(daemon_stop(&one, SIGTERM), 0);
    ck_assert_int_eq(daemon_stop(&d[0], SIGTERM), 0);
    ck_assert_int_eq(daemon_stop(&d[1], SIGTERM), 0);
}
END_TEST

/* Runs npid-bankd with args; returns its exit status, stderr in err. */
static int bankd_run(const char *const *args, char *err, size_t cap)
{
    const char *dir = tmpdir_new("flags");
    char log[600];
    snprintf(log, sizeof log, "%s/stderr", dir);
    const char *argv[16] = { bankd_exe() };
    int n = 1;
    for (; *args && n < 15; args++)
        argv[n++] = *args;
    argv[n] = NULL;
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 2);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    int st;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    void *buf;
    size_t len;
    ck_assert_int_eq(file_read_all(log, cap - 1, &buf, &len), 0);
    memcpy(err, buf, len);
    err[len] = 0;
    free(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

START_TEST(test_daemon_shard_refusals)
{
    /* bad flags: usage errors, one line naming the value */
    const char *bad[] = { "3/2", "x", "0/0", "1/", "/2", "1/1", "-1/2", "0/65537" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char err[1024], want[64];
        const char *args[] = { "--bind", "ipc:///nonexistent/x.sock", "--shard", bad[i], NULL };
        ck_assert_int_eq(bankd_run(args, err, sizeof err), 2);
        snprintf(want, sizeof want, "--shard '%s': want i/N", bad[i]);
        ck_assert_msg(strstr(err, want) != NULL, "%s: %s", bad[i], err);
        ck_assert_ptr_eq(strchr(err, '\n'), err + strlen(err) - 1); /* one line */
    }
    struct daemon d[2];
    char list[1300];
    shards_start(d, list, sizeof list);
    struct bankc *c = bankc_new(list, NULL, 2000, 3);
    ck_assert_int_eq(bankc_init(c, N_ROWS, DIM, 7, NULL, NULL, NULL, NULL), 0);
    /* a request straight to shard 1 (rows [500, 1001)) for a row of shard 0 */
    struct bankc *s1 = bankc_new(d[1].ep, NULL, 2000, 3);
    float out[DIM * 2];
    ck_assert_int_eq(bankc_get(s1, 499, 2, out), -1);
    ck_assert_str_eq(bankc_error_code(s1), BANK_ERANGE);
    ck_assert_ptr_nonnull(strstr(bankc_error(s1), "outside this shard's rows [500, 1001)"));
    ck_assert_int_eq(bankc_get(s1, 500, 2, out), 0);
    uint32_t idx0[1] = { 0 }, idx1[1] = { 600 }, ni[1];
    float f[DIM], neg[4 * DIM];
    fill_normal(f, DIM, 4);
    ck_assert_int_eq(bankc_update(s1, idx0, f, 1, 0.5f, NULL), -1);
    ck_assert_str_eq(bankc_error_code(s1), BANK_ERANGE);
    ck_assert_int_eq(bankc_rows_send(s1, idx0, 1, NULL, 0), 0);
    ck_assert_int_eq(bankc_sample_recv(s1, ni, neg, NULL, NULL), -1);
    ck_assert_str_eq(bankc_error_code(s1), BANK_ERANGE);
    ck_assert_int_eq(bankc_rows_send(s1, idx1, 1, NULL, 0), 0);
    ck_assert_int_eq(bankc_sample_recv(s1, ni, neg, NULL, NULL), 0);
    /* negatives drawn by the shard: refused; by the sharded client: refused unsent */
    ck_assert_int_eq(bankc_sample(s1, 4, idx1, 1, 0, ni, neg, neg, NULL), -1);
    ck_assert_str_eq(bankc_error_code(s1), BANK_EINVAL);
    ck_assert_ptr_nonnull(strstr(bankc_error(s1), "give them explicitly"));
    struct bank_stats_rep before, after;
    ck_assert_int_eq(bankc_stats(s1, &before), 0);
    ck_assert_int_eq(bankc_sample_send(c, 4, idx1, 1, 0), -1);
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_str_eq(bankc_error_code(c), BANK_EINVAL);
    ck_assert_int_eq(bankc_stats(s1, &after), 0);
    ck_assert_uint_eq(after.requests, before.requests + 1); /* the stats request only */
    /* the step of the shard is the bank's: one update counts on both */
    uint64_t st = 0;
    ck_assert_int_eq(bankc_update(c, idx0, f, 1, 0.5f, &st), 0);
    ck_assert_uint_eq(st, 1);
    struct bankc_info info;
    ck_assert_int_eq(bankc_info(s1, &info), 0);
    ck_assert_uint_eq(info.step, 1);
    ck_assert_uint_eq(info.rows, N_ROWS);
    /* shard 1 moved on alone (an empty write counts a step): the shards disagree, EPROTO */
    ck_assert_int_eq(bankc_update(s1, NULL, NULL, 0, 0.5f, &st), 0);
    ck_assert_uint_eq(st, 2);
    ck_assert_int_eq(bankc_update(c, idx0, f, 1, 0.5f, &st), -1);
    ck_assert_int_eq(errno, EPROTO);
    ck_assert_str_eq(bankc_error_code(c), BANK_EPROTO);
    ck_assert_ptr_nonnull(strstr(bankc_error(c), "shards disagree on the bank step"));
    ck_assert_int_eq(bankc_info(c, &info), -1);
    ck_assert_str_eq(bankc_error_code(c), BANK_EPROTO);
    /* the endpoints in the wrong order: EMISMATCH naming the endpoint */
    char swapped[1300];
    snprintf(swapped, sizeof swapped, "%s,%s", d[1].ep, d[0].ep);
    struct bankc *w = bankc_new(swapped, NULL, 2000, 3);
    ck_assert_int_eq(bankc_info(w, &info), -1);
    ck_assert_str_eq(bankc_error_code(w), BANK_EMISMATCH);
    ck_assert_ptr_nonnull(strstr(bankc_error(w), d[1].ep));
    bankc_destroy(&w);
    /* a one-endpoint client of a shard does not mistake it for a bank */
    char three[2000];
    snprintf(three, sizeof three, "%s,%s,%s", d[0].ep, d[1].ep, d[1].ep);
    w = bankc_new(three, NULL, 2000, 3);
    ck_assert_int_eq(bankc_info(w, &info), -1);
    ck_assert_str_eq(bankc_error_code(w), BANK_EMISMATCH);
    bankc_destroy(&w);
    bankc_destroy(&s1);
    bankc_destroy(&c);
    ck_assert_int_eq(daemon_stop(&d[0], SIGTERM), 0);
    ck_assert_int_eq(daemon_stop(&d[1], SIGTERM), 0);
}
END_TEST

START_TEST(test_daemon_shard_snapshot_restore)
{
    struct daemon d[2];
    char list[1300];
    shards_start(d, list, sizeof list);
    struct bankc *c = bankc_new(list, NULL, 5000, 3);
    ck_assert_int_eq(bankc_init(c, N_ROWS, DIM, 7, "run-s", NULL, NULL, NULL), 0);
    write_same(&c, 1, 4, 21);
    char path[1024];
    uint64_t snap_step = 0;
    ck_assert_msg(bankc_snapshot_named(c, "ck", path, sizeof path, &snap_step) == 0, "%s",
                  bankc_error(c));
    ck_assert_uint_eq(snap_step, 4);
    char want[1100];
    snprintf(want, sizeof want, "%s/bank-ck.snap", d[0].dir);
    ck_assert_str_eq(path, want); /* shard 0's file */
    float *at_snap = get_all(c);
    write_same(&c, 1, 3, 22);
    float *later = get_all(c);
    ck_assert_int_ne(memcmp(at_snap, later, 4 * N_ROWS * DIM), 0);
    uint64_t st = 0;
    ck_assert_msg(bankc_restore(c, "ck", snap_step, &st) == 0, "%s", bankc_error(c));
    ck_assert_uint_eq(st, snap_step);
    float *restored = get_all(c);
    ck_assert_int_eq(memcmp(at_snap, restored, 4 * N_ROWS * DIM), 0);
    struct bankc_info info;
    ck_assert_int_eq(bankc_info(c, &info), 0);
    ck_assert_uint_eq(info.step, snap_step);
    /* shard 0's file in shard 1's directory: EMISMATCH */
    char src[1100], dst[1100];
    snprintf(src, sizeof src, "%s/bank-ck.snap", d[0].dir);
    snprintf(dst, sizeof dst, "%s/bank-other.snap", d[1].dir);
    void *buf;
    size_t len;
    ck_assert_int_eq(file_read_all(src, 1 << 26, &buf, &len), 0);
    ck_assert_int_eq(durable_write(dst, buf, len), 0);
    free(buf);
    struct bankc *s1 = bankc_new(d[1].ep, NULL, 5000, 3);
    ck_assert_int_eq(bankc_restore(s1, "other", snap_step, NULL), -1);
    ck_assert_str_eq(bankc_error_code(s1), BANK_EMISMATCH);
    ck_assert_ptr_nonnull(strstr(bankc_error(s1), "shard 0/2"));
    bankc_destroy(&s1);
    /* a sharded restore where one shard lacks the file changes nothing the client reports as
       done */
    ck_assert_int_eq(bankc_restore(c, "other", snap_step, NULL), -1);
    free(at_snap);
    free(later);
    free(restored);
    bankc_destroy(&c);
    ck_assert_int_eq(daemon_stop(&d[0], SIGTERM), 0);
    ck_assert_int_eq(daemon_stop(&d[1], SIGTERM), 0);
    /* a shard's directory given to another shard: bankd refuses to start */
    struct daemon wrong;
    daemon_spawn(&wrong, d[0].dir, "1/2", 0);
    int status = -1;
    for (int i = 0; i < 100 && status < 0; i++) {
        int w;
        if (waitpid(wrong.pid, &w, WNOHANG) == wrong.pid)
            status = WIFEXITED(w) ? WEXITSTATUS(w) : 128;
        else
            usleep(50000);
    }
    if (status < 0)
        daemon_stop(&wrong, SIGKILL);
    ck_assert_int_eq(status, 1);
}
END_TEST

START_TEST(test_daemon_shard_restart)
{
    struct daemon d[2];
    char list[1300];
    shards_start(d, list, sizeof list);
    struct bankc *c = bankc_new(list, "restart-test", 300, 40);
    ck_assert_int_eq(bankc_init(c, N_ROWS, DIM, 7, NULL, NULL, NULL, NULL), 0);
    write_same(&c, 1, 3, 31);
    uint64_t st = 0;
    ck_assert_int_eq(bankc_snapshot(c, NULL, 0, &st), 0);
    ck_assert_uint_eq(st, 3);
    float *before = get_all(c);
    /* shard 1 killed and restarted 1.5 s later from its snapshot, while a get retries */
    ck_assert_int_eq(daemon_stop(&d[1], SIGKILL), 128 + SIGKILL);
    daemon_spawn(&d[1], NULL, NULL, 1500000);
    double t0 = clock_seconds();
    float *again = get_all(c);
    ck_assert_double_ge(clock_seconds() - t0, 1.0);
    ck_assert_int_eq(memcmp(before, again, 4 * N_ROWS * DIM), 0);
    /* the same during an update: applied once on each shard, the steps stay equal */
    ck_assert_int_eq(daemon_stop(&d[1], SIGKILL), 128 + SIGKILL);
    daemon_spawn(&d[1], NULL, NULL, 1500000);
    uint32_t idx[2] = { 10, 990 };
    float f[2 * DIM];
    fill_normal(f, 2 * DIM, 5);
    ck_assert_msg(bankc_update(c, idx, f, 2, 0.5f, &st) == 0, "%s", bankc_error(c));
    ck_assert_uint_eq(st, 4);
    struct bankc_info info;
    ck_assert_int_eq(bankc_info(c, &info), 0);
    ck_assert_uint_eq(info.step, 4);
    /* a shard that stays down: the call fails naming it, and no rows come back */
    ck_assert_int_eq(daemon_stop(&d[1], SIGKILL), 128 + SIGKILL);
    bankc_limit_retries(c, 2);
    uint32_t neg_idx[2] = { 1, 700 }, got[2] = { 77, 77 };
    float neg[2 * DIM];
    ck_assert_int_eq(bankc_rows_send(c, neg_idx, 2, NULL, 0), 0);
    ck_assert_int_eq(bankc_sample_recv(c, got, neg, NULL, NULL), -1);
    ck_assert_int_eq(errno, ETIMEDOUT);
    ck_assert_ptr_nonnull(strstr(bankc_error(c), d[1].ep));
    ck_assert_uint_eq(got[0], 77); /* nothing written */
    free(before);
    free(again);
    bankc_destroy(&c);
    ck_assert_int_eq(daemon_stop(&d[0], SIGTERM), 0);
}
END_TEST

START_TEST(test_daemon_shard_split_sample)
{
    struct daemon d[2];
    char list[1300];
    shards_start(d, list, sizeof list);
    struct bankc *c = bankc_new(list, NULL, 3000, 3);
    ck_assert_int_eq(bankc_init(c, N_ROWS, DIM, 7, NULL, NULL, NULL, NULL), 0);
    uint32_t neg_idx[3] = { 5, 800, 6 }, pos_idx[2] = { 900, 2 }, got[3];
    float neg[3 * DIM], pos[2 * DIM], want_neg[3 * DIM], want_pos[2 * DIM];
    ck_assert_int_eq(bankc_rows_send(c, neg_idx, 3, pos_idx, 2), 0);
    ck_assert_int_eq(bankc_sample_recv(c, got, want_neg, want_pos, NULL), 0);
    /* with shard 1 stopped, send returns at once; the reply comes once it runs again */
    ck_assert_int_eq(kill(d[1].pid, SIGSTOP), 0);
    double t0 = clock_seconds();
    ck_assert_int_eq(bankc_rows_send(c, neg_idx, 3, pos_idx, 2), 0);
    ck_assert_double_lt(clock_seconds() - t0, 0.2);
    ck_assert_int_eq(bankc_info(c, NULL), -1); /* one call at a time */
    ck_assert_int_eq(errno, EBUSY);
    usleep(400000);
    ck_assert_int_eq(kill(d[1].pid, SIGCONT), 0);
    ck_assert_msg(bankc_sample_recv(c, got, neg, pos, NULL) == 0, "%s", bankc_error(c));
    ck_assert_int_eq(memcmp(got, neg_idx, sizeof got), 0);
    ck_assert_int_eq(memcmp(neg, want_neg, sizeof neg), 0);
    ck_assert_int_eq(memcmp(pos, want_pos, sizeof pos), 0);
    /* a blocking call interrupted by the stop flag while shard 1 is stopped leaves nothing
       outstanding that blocks the next call */
    static volatile sig_atomic_t stop;
    stop = 1;
    struct bankc *q = bankc_new(list, NULL, 300, 3);
    ck_assert_int_eq(bankc_info(q, NULL), 0);
    bankc_set_stop(q, &stop);
    ck_assert_int_eq(kill(d[1].pid, SIGSTOP), 0);
    float row[2 * DIM];
    ck_assert_int_eq(bankc_get(q, 499, 2, row), -1);
    ck_assert_int_eq(errno, EINTR);
    ck_assert_int_eq(kill(d[1].pid, SIGCONT), 0);
    stop = 0;
    ck_assert_msg(bankc_get(q, 499, 2, row) == 0, "%s", bankc_error(q));
    bankc_destroy(&q);
    bankc_destroy(&c);
    ck_assert_int_eq(daemon_stop(&d[0], SIGTERM), 0);
    ck_assert_int_eq(daemon_stop(&d[1], SIGTERM), 0);
}
END_TEST

int main(void)
{
    snprintf(tmp_root, sizeof tmp_root, "%s/npid-check-shard-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmp_root)) {
        perror("mkdtemp");
        return 1;
    }
    Suite *s = suite_create("shard");
    TCase *tb = tcase_create("bank");
    tcase_add_test(tb, test_bank_shard_rows);
    tcase_add_test(tb, test_bank_shard_ranges);
    suite_add_tcase(s, tb);
    TCase *td = tcase_create("daemon");
    tcase_set_timeout(td, 60);
    tcase_add_test(td, test_daemon_shards_match_one);
    tcase_add_test(td, test_daemon_shard_refusals);
    tcase_add_test(td, test_daemon_shard_snapshot_restore);
    tcase_add_test(td, test_daemon_shard_restart);
    tcase_add_test(td, test_daemon_shard_split_sample);
    suite_add_tcase(s, td);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (!failed) {
        char cmd[512];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
        if (system(cmd) != 0)
            fprintf(stderr, "check_shard: could not remove %s\n", tmp_root);
    }
    return failed ? 1 : 0;
}
