/* Benchmark: npid-bankd round trips over TCP loopback, as the trainer uses it: each pair is
 * sample(k = 4096, B = 128) followed by update(B = 128), dim 128, for a CIFAR-size bank
 * (50,000 rows) and an ImageNet-size one (1,281,167 rows, 656 MB). Prints p50 / p99 pair
 * latency (target: p50 <= 1 ms, p99 <= 3 ms), pairs per second and bankd's resident memory,
 * one JSON line each, with "target" the goal.
 *
 * Peer: the same traffic over raw ZeroMQ between the same two kinds of process (a forked
 * copy of this program serving a ROUTER socket that answers a small request with a
 * sample-sized reply copied from a pre-touched buffer, and a 64 KB request with a 20-byte
 * reply; the client copies the reply out as bankc does). It is the transport floor on this
 * machine at this moment: "ratio" is bankd / peer for latencies and CPU time (1.0 = no
 * overhead beyond ZeroMQ itself) and for pairs per second (1.0 = as fast as the transport).
 * cpu_us_per_pair (server + client processes, all threads) is the figure least disturbed by
 * other load on the machine.
 *
 * Environment: NPID_BIN (where npid-bankd is), NPID_BENCH_PAIRS (timed pairs per case,
 * default 2000), NPID_BENCH_ROWS (comma-separated row counts, default both). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/bankc.h"
#include "common/msg.h"
#include "common/clock.h"
#include "common/rng.h"

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static void emit(const char *cas, const char *metric, double value, const char *unit,
                 double peer, double target)
{
    printf("{\"bench\": \"bankd\", \"case\": \"%s\", \"metric\": \"%s\", \"value\": %.4g, "
           "\"unit\": \"%s\"", cas, metric, value, unit);
    if (peer > 0)
        printf(", \"peer\": %.4g, \"ratio\": %.3g", peer, value / peer);
    if (target > 0)
        printf(", \"target\": %g", target);
    printf("}\n");
    fflush(stdout);
}

enum { DIM = 128, K = 4096, B = 128 };

/* The raw ZeroMQ peer server: runs until killed. */
static int peer_serve(const char *ep)
{
    size_t big = 4 * (K + (size_t)K * DIM + (size_t)B * DIM) + 64;
    char *reply = malloc(big);
    if (!reply)
        return 1;
    memset(reply, 1, big);
    void *s = msg_socket(ZMQ_ROUTER, NULL);
    if (!s || msg_bind(s, ep, 0) != 0)
        return 1;
    for (;;) {
        zmq_msg_t id, body;
        zmq_msg_init(&id);
        zmq_msg_init(&body);
        if (zmq_msg_recv(&id, s, 0) < 0 || zmq_msg_recv(&body, s, 0) < 0)
            return 1;
        size_t n = zmq_msg_size(&body) < 4096 ? big : 20;
        zmq_msg_send(&id, s, ZMQ_SNDMORE);
        zmq_send(s, reply, n, 0);
        zmq_msg_close(&body);
    }
}

struct lat_stats {
    double p50_ms, p99_ms, pairs_per_s;
    double cpu_us;  /* CPU time of server + client processes per pair, all threads */
};

/* CPU seconds (user + system, all threads) of a process. */
static double proc_cpu_s(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char buf[1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void lat_summary(uint64_t *lat, size_t pairs, struct lat_stats *st)
{
    uint64_t total = 0;
    for (size_t i = 0; i < pairs; i++)
        total += lat[i];
    qsort(lat, pairs, sizeof *lat, cmp_u64);
    st->p50_ms = (double)lat[pairs / 2] / 1e6;
    st->p99_ms = (double)lat[pairs * 99 / 100] / 1e6;
    st->pairs_per_s = (double)pairs / ((double)total / 1e9);
}

/* The same traffic against the raw peer. */
static int run_peer(const char *self, size_t pairs, struct lat_stats *st)
{
    char ep[64];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", 30000 + (int)((getpid() + 7) % 20000));
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execl(self, self, "--peer-server", ep, (char *)NULL);
        _exit(127);
    }
    int rc = -1;
    void *s = msg_socket(ZMQ_DEALER, NULL);
    size_t req_small = 600, req_big = 4 * (B + (size_t)B * DIM) + 60;
    char *req = calloc(1, req_big), *out = malloc(4 * ((size_t)K * DIM + K + (size_t)B * DIM) + 64);
    uint64_t *lat = malloc(sizeof *lat * pairs);
    if (!s || !req || !out || !lat || msg_connect(s, ep) != 0)
        goto done;
    double cpu0 = 0;
    for (size_t it = 0; it < 100 + pairs; it++) {
        if (it == 100)
            cpu0 = proc_cpu_s(pid) + proc_cpu_s(getpid());
        uint64_t a = clock_now_ns();
        for (int leg = 0; leg < 2; leg++) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (msg_send(s, req, leg ? req_big : req_small, 0, 10000, NULL) != 0 ||
                msg_recv(s, &m, 10000, NULL) != 0) {
                zmq_msg_close(&m);
                fprintf(stderr, "bench_bankd: peer did not answer\n");
                goto done;
            }
            memcpy(out, zmq_msg_data(&m), zmq_msg_size(&m));
            zmq_msg_close(&m);
        }
        if (it >= 100)
            lat[it - 100] = clock_now_ns() - a;
    }
    st->cpu_us = (proc_cpu_s(pid) + proc_cpu_s(getpid()) - cpu0) * 1e6 / (double)pairs;
    lat_summary(lat, pairs, st);
    rc = 0;
done:
    msg_close(&s);
    free(req);
    free(out);
    free(lat);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return rc;
}

static int run_case(const char *exe, const char *self, uint64_t rows, size_t pairs)
{
    const size_t dim = DIM, k = K;
    struct lat_stats peer = { 0, 0, 0, 0 }, mine;
    if (run_peer(self, pairs, &peer) != 0)
        fprintf(stderr, "bench_bankd: the raw ZeroMQ peer failed; reporting without it\n");
    char ep[64], cas[96];
    snprintf(ep, sizeof ep, "tcp://127.0.0.1:%d", 30000 + (int)(getpid() % 20000));
    snprintf(cas, sizeof cas, "%llux%zu/k%zu/b%d/tcp", (unsigned long long)rows, dim, k, (int)B);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execl(exe, exe, "--bind", ep, "--log-level", "warn", (char *)NULL);
        _exit(127);
    }
    int rc = -1;
    struct bankc *c = bankc_new(ep, "bench", 60000, 0);
    uint32_t *pos = malloc(4 * B), *ni = malloc(4 * k);
    float *neg = malloc(4 * k * dim), *pv = malloc(4 * B * dim), *feat = malloc(4 * B * dim);
    uint64_t *lat = malloc(sizeof *lat * pairs);
    if (!c || !pos || !ni || !neg || !pv || !feat || !lat)
        goto done;
    /* wait for bankd: init retries until it is up (connect is asynchronous) */
    double t0 = clock_seconds();
    while (bankc_init(c, rows, dim, 1, "bench", NULL, NULL, NULL) != 0) {
        if (clock_seconds() - t0 > 120) {
            fprintf(stderr, "bench_bankd: init failed: %s\n", bankc_error(c));
            goto done;
        }
        usleep(100000);
    }
    fprintf(stderr, "bench_bankd: %s: bank ready after %.1f s\n", cas, clock_seconds() - t0);
    struct rng r;
    rng_seed(&r, 3);
    for (size_t i = 0; i < B * dim; i++)
        feat[i] = (float)rng_normal(&r);
    size_t warm = 100;
    double cpu0 = 0;
    for (size_t it = 0; it < warm + pairs; it++) {
        if (it == warm)
            cpu0 = proc_cpu_s(pid) + proc_cpu_s(getpid());
        for (size_t i = 0; i < B; i++)
            pos[i] = (uint32_t)rng_below(&r, rows);
        uint64_t a = clock_now_ns();
        if (bankc_sample(c, k, pos, B, 0, ni, neg, pv, NULL) != 0 ||
            bankc_update(c, pos, feat, B, 0.5f, NULL) != 0) {
            fprintf(stderr, "bench_bankd: %s\n", bankc_error(c));
            goto done;
        }
        if (it >= warm)
            lat[it - warm] = clock_now_ns() - a;
    }
    mine.cpu_us = (proc_cpu_s(pid) + proc_cpu_s(getpid()) - cpu0) * 1e6 / (double)pairs;
    lat_summary(lat, pairs, &mine);
    emit(cas, "p50_ms", mine.p50_ms, "ms", peer.p50_ms, 1.0);
    emit(cas, "p99_ms", mine.p99_ms, "ms", peer.p99_ms, 3.0);
    emit(cas, "pairs_per_s", mine.pairs_per_s, "pairs/s", peer.pairs_per_s, 0);
    emit(cas, "cpu_us_per_pair", mine.cpu_us, "us", peer.cpu_us, 0);
    emit(cas, "bankd_rss_mb", (double)rss_kb(pid) / 1024.0, "MB", 0, 0);
    rc = 0;
done:
    bankc_destroy(&c);
    free(pos);
    free(ni);
    free(neg);
    free(pv);
    free(feat);
    free(lat);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "--peer-server"))
        return peer_serve(argv[2]);
    char self[512];
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0)
        return 1;
    self[sl] = 0;
    const char *bin = getenv("NPID_BIN");
    char exe[512];
    snprintf(exe, sizeof exe, "%s/npid-bankd", bin && *bin ? bin : "build");
    if (access(exe, X_OK) != 0) {
        fprintf(stderr, "bench_bankd: %s not built\n", exe);
        return 1;
    }
    const char *np = getenv("NPID_BENCH_PAIRS");
    size_t pairs = np ? strtoul(np, NULL, 10) : 2000;
    if (pairs < 100)
        pairs = 100;
    const char *rows_env = getenv("NPID_BENCH_ROWS");
    char rows_list[256];
    snprintf(rows_list, sizeof rows_list, "%s", rows_env ? rows_env : "50000,1281167");
    int rc = 0;
    for (char *tok = strtok(rows_list, ","); tok; tok = strtok(NULL, ","))
        if (run_case(exe, self, strtoull(tok, NULL, 10), pairs) != 0)
            rc = 1;
    return rc;
}
