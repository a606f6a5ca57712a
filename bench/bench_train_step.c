/* Benchmark: one training step (forward, NCE head m = 4096 over a 50,000-row bank, backward,
 * SGD) at batch 128, 32x32, for resnet18, resnet18-half and resnet20; eval-mode forward;
 * the sgemm peak measured in the same run; peak RSS; and the PyTorch peer
 * (bench/peer/train_step.py with /usr/bin/python3, 2 threads) when torch is installed.
 *
 * Usage: bench_train_step [--model NAME] [--steps N] [--batch B] [--size S] [--no-peer]
 *                         [--loss nce|infonce]   (the head; nce by default)
 * Without --model it runs every preset, each in a fresh child process (so peak RSS is per
 * preset). One JSON line per figure on stdout; logs on stderr.
 * Environment: NPID_ROOT (repo root, to find the peer script), NPID_BENCH_STEPS.
 * Both sides use the same OpenBLAS kernel: on a CPU with AVX-512 the benchmark re-executes
 * itself with OPENBLAS_CORETYPE=SkylakeX (the peer inherits it) unless
 * NPID_BENCH_CORETYPE names another kernel. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/blas.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/nn/net.h"
#include "common/nn/sgd.h"
#include "common/rng.h"
#include "trainer/objective.h"

#define BANK_N 50000
#define NCE_M 4096
#define DIM 128

static double sgemm_peak(void)
{
    int n = 1536;
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n),
          *c = malloc(sizeof(float) * n * n);
    for (int i = 0; i < n * n; i++) a[i] = b[i] = (float)(i % 7) * 0.1f;
    double best = 0;
    for (int r = 0; r < 6; r++) {
        double t = clock_seconds();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f,
                    c, n);
        double g = 2.0 * n * n * (double)n / (clock_seconds() - t) / 1e9;
        if (g > best) best = g;
    }
    free(a);
    free(b);
    free(c);
    return best;
}

/* Runs the peer for model; fills train and eval img/s; 0 or -1 when unavailable. */
static int run_peer(const char *model, int batch, int size, int steps, double *train,
                    double *eval, double *train_cpu)
{
    const char *root = getenv("NPID_ROOT");
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "/usr/bin/python3 %s/bench/peer/train_step.py --model %s --batch %d --size %d "
             "--steps %d --threads 2 2>/dev/null",
             root ? root : ".", model, batch, size, steps);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    char line[512] = "";
    int ok = fgets(line, sizeof(line), p) != NULL;
    int rc = pclose(p);
    if (!ok || rc != 0) return -1;
    char *t = strstr(line, "\"train_img_per_s\": "), *e = strstr(line, "\"eval_img_per_s\": ");
    char *c = strstr(line, "\"train_img_per_cpu_s\": ");
    if (!t || !e || !c) return -1;
    *train = atof(t + 19);
    *eval = atof(e + 18);
    *train_cpu = atof(c + 23);
    return 0;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void emit(const char *cs, const char *metric, double v, const char *unit, double peer)
{
    if (peer > 0)
        printf("{\"bench\": \"train_step\", \"case\": \"%s\", \"metric\": \"%s\", \"value\": %.4g,"
               " \"unit\": \"%s\", \"peer\": %.4g, \"ratio\": %.3f}\n",
               cs, metric, v, unit, peer, v / peer);
    else
        printf("{\"bench\": \"train_step\", \"case\": \"%s\", \"metric\": \"%s\", \"value\": %.4g,"
               " \"unit\": \"%s\"}\n", cs, metric, v, unit);
    fflush(stdout);
}

static int bench_model(const char *model, int B, int size, int steps, int peer, int infonce)
{
    struct net_config cfg = { .model = model, .low_dim = DIM, .in_h = size, .in_w = size,
                              .max_batch = B, .seed = 1 };
    struct net *n = net_new(&cfg);
    if (!n) return 1;
    log_info("%s", net_describe(n));
    struct objective_config oc = { B, DIM, NCE_M, BANK_N, 0.07, OBJ_Z_FROZEN, 0.99, 0.0, 0, NULL };
    struct objective *obj = objective_new(&oc);
    struct sgd *opt = sgd_new(net_param_count(n), 0.9f, 5e-4f);
    float *bank = malloc(sizeof(float) * BANK_N * DIM);
    float *pos = malloc(sizeof(float) * B * DIM), *neg = malloc(sizeof(float) * NCE_M * DIM);
    float *df = malloc(sizeof(float) * B * DIM);
    size_t nx = (size_t)B * 3 * size * size;
    float *x = malloc(sizeof(float) * nx);
    if (!obj || !opt || !bank || !pos || !neg || !df || !x) npid_fatal("out of memory");
    struct rng r;
    rng_seed(&r, 2);
    for (size_t i = 0; i < (size_t)BANK_N * DIM; i++) bank[i] = (float)rng_normal(&r);
    for (size_t i = 0; i < BANK_N; i++) {
        double s = 0;
        for (int j = 0; j < DIM; j++) s += (double)bank[i * DIM + j] * bank[i * DIM + j];
        for (int j = 0; j < DIM; j++) bank[i * DIM + j] /= (float)sqrt(s);
    }
    for (size_t i = 0; i < nx; i++) x[i] = (float)rng_normal(&r);

    double t_fwd = 0, t_obj = 0, t_bwd = 0, t_sgd = 0, t0 = 0, c0 = 0;
    for (int s = -1; s < steps; s++) {
        if (s == 0) {
            t0 = clock_seconds();
            c0 = cpu_seconds();
        }
        double a = clock_seconds();
        /* what the trainer gets from bankd's sample reply */
        for (int i = 0; i < B; i++)
            memcpy(pos + (size_t)i * DIM, bank + rng_below(&r, BANK_N) * DIM, sizeof(float) * DIM);
        for (int i = 0; i < NCE_M; i++)
            memcpy(neg + (size_t)i * DIM, bank + rng_below(&r, BANK_N) * DIM, sizeof(float) * DIM);
        const float *f = net_forward(n, x, B, 1);
        double b = clock_seconds();
        if (infonce)
            objective_infonce_shared(obj, f, pos, neg, B, df);
        else
            objective_nce_shared(obj, f, pos, neg, B, df);
        double c = clock_seconds();
        net_backward(n, df);
        double d = clock_seconds();
        sgd_step(opt, net_params(n), net_grads(n), 0.03f);
        double e = clock_seconds();
        if (s >= 0) {
            t_fwd += b - a;
            t_obj += c - b;
            t_bwd += d - c;
            t_sgd += e - d;
        }
    }
    double dt = clock_seconds() - t0;
    double cpu = cpu_seconds() - c0;
    double ips = B * steps / dt;
    /* the machine is shared: take the sgemm peak right after the timed steps */
    double peak = sgemm_peak();
    net_forward(n, x, B, 0);
    double te = clock_seconds();
    for (int s = 0; s < steps; s++) net_forward(n, x, B, 0);
    double eips = B * steps / (clock_seconds() - te);
    log_info("%s: step %.3f s = forward %.3f + objective %.3f + backward %.3f + sgd %.3f "
             "(%.3f CPU-seconds per step; wall x threads would be %.3f)", model,
             dt / steps, t_fwd / steps, t_obj / steps, t_bwd / steps, t_sgd / steps,
             cpu / steps, dt / steps * net_threads(n));

    double peak2 = sgemm_peak();
    if (peak2 > peak) peak = peak2;
    double gflops = 3.0 * net_flops_per_image(n) * ips / 1e9;
    double ptrain = 0, peval = 0, pcpu = 0;
    if (peer && run_peer(model, B, size, steps, &ptrain, &peval, &pcpu) < 0) {
        log_warn("peer: /usr/bin/python3 with torch not available; no ratios");
        ptrain = peval = pcpu = 0;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    char cs[96];
    snprintf(cs, sizeof(cs), "%s/b%d/%dpx%s", model, B, size, infonce ? "/infonce" : "");
    emit(cs, "img_per_s", ips, "img/s", ptrain);
    emit(cs, "eval_img_per_s", eips, "img/s", peval);
    emit(cs, "img_per_cpu_s", B * steps / cpu, "img/CPU-s", pcpu);
    emit(cs, "gflops", gflops, "GFLOP/s", 0);
    emit(cs, "sgemm_peak", peak, "GFLOP/s", 0);
    emit(cs, "peak_fraction", gflops / peak, "ratio", 0);
    emit(cs, "peak_rss", ru.ru_maxrss / 1024.0, "MB", 0);
    free(bank);
    free(pos);
    free(neg);
    free(df);
    free(x);
    sgd_destroy(&opt);
    objective_destroy(&obj);
    net_destroy(&n);
    return 0;
}

int main(int argc, char **argv)
{
    log_init("bench_train_step");
    __builtin_cpu_init();
    const char *want = getenv("NPID_BENCH_CORETYPE");
    if (!want && __builtin_cpu_supports("avx512f")) want = "SkylakeX";
    const char *have = getenv("OPENBLAS_CORETYPE");
    if (want && (!have || strcmp(have, want) != 0)) {
        setenv("OPENBLAS_CORETYPE", want, 1);
        execv("/proc/self/exe", argv);
        log_warn("re-exec with OPENBLAS_CORETYPE=%s failed", want);
    }
    blas_setup(argc, argv);
    const char *model = NULL;
    int B = 128, size = 32, steps = 0, peer = 1, infonce = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) model = argv[++i];
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc) size = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--no-peer")) peer = 0;
        else if (!strcmp(argv[i], "--loss") && i + 1 < argc && !strcmp(argv[i + 1], "nce")) i++;
        else if (!strcmp(argv[i], "--loss") && i + 1 < argc && !strcmp(argv[i + 1], "infonce")) {
            infonce = 1;
            i++;
        }
        else {
            fprintf(stderr, "usage: bench_train_step [--model NAME] [--steps N] [--batch B] "
                            "[--size S] [--no-peer] [--loss nce|infonce]\n");
            return EXIT_USAGE;
        }
    }
    if (!steps && getenv("NPID_BENCH_STEPS")) steps = atoi(getenv("NPID_BENCH_STEPS"));
    if (model) {
        if (steps <= 0) steps = strcmp(model, "resnet18") == 0 ? 3 : strcmp(model, "resnet20") ? 5 : 10;
        return bench_model(model, B, size, steps, peer, infonce);
    }
    static const char *const models[] = { "resnet20", "resnet18-half", "resnet18" };
    int rc = 0;
    for (size_t i = 0; i < 3; i++) {
        pid_t pid = fork();
        if (pid == 0) {
            char sb[16], bb[16], zb[16];
            snprintf(sb, sizeof(sb), "%d", steps);
            snprintf(bb, sizeof(bb), "%d", B);
            snprintf(zb, sizeof(zb), "%d", size);
            char *args[] = { argv[0], "--model", (char *)models[i], "--steps", sb, "--batch", bb,
                             "--size", zb, "--loss", infonce ? "infonce" : "nce",
                             peer ? NULL : "--no-peer", NULL };
            execv("/proc/self/exe", args);
            _exit(127);
        }
        int st;
        if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            rc = 1;
    }
    return rc;
}
