/* Benchmark: the full non-parametric softmax of the cifar preset (objective_softmax: B 128
 * features against an n = 50,000-row bank, d 128, tau 0.5; loss and dL/df) on the team of
 * threads the trainer uses (one per online CPU, at most 2 unless NPID_BENCH_THREADS says)
 * and on one thread, against the PyTorch peer (bench/peer/softmax.py: mm, cross_entropy
 * and autograd to f, the reference code's LinearAverage head, on the same thread count).
 *
 * One JSON line per figure on stdout: milliseconds per call (median of NPID_BENCH_CALLS,
 * default 30, after 3 warm-up calls); "ratio" is peer / npid (above 1: npid is faster). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/blas.h"
#include "common/clock.h"
#include "common/nn/team.h"
#include "common/rng.h"
#include "trainer/objective.h"

enum { B = 128, D = 128, N = 50000 };

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void unit_rows(float *x, size_t rows, struct rng *g)
{
    for (size_t i = 0; i < rows; i++) {
        double s = 0.0;
        for (int j = 0; j < D; j++) {
            x[i * D + j] = (float)rng_normal(g);
            s += (double)x[i * D + j] * x[i * D + j];
        }
        for (int j = 0; j < D; j++) x[i * D + j] = (float)(x[i * D + j] / sqrt(s));
    }
}

/* Median milliseconds per objective_softmax call on a team of nt threads. */
static double time_npid(int nt, const float *f, const float *bank, const uint32_t *idx, int calls)
{
    struct nn_team *team = nt > 1 ? nn_team_new(nt) : NULL;
    struct objective_config cfg = { B, D, 0, N, 0.5, OBJ_Z_FROZEN, 0.99, 0.0, 1, team };
    struct objective *o = objective_new(&cfg);
    float *df = malloc(sizeof(float) * B * D);
    double *ms = malloc(sizeof(double) * (size_t)calls);
    if (!o || !df || !ms || (nt > 1 && !team)) {
        fprintf(stderr, "bench_softmax: setup failed\n");
        exit(1);
    }
    for (int r = 0; r < 3; r++) objective_softmax(o, f, bank, idx, B, df);
    for (int r = 0; r < calls; r++) {
        double t = clock_seconds();
        objective_softmax(o, f, bank, idx, B, df);
        ms[r] = (clock_seconds() - t) * 1e3;
    }
    qsort(ms, (size_t)calls, sizeof(double), cmp_double);
    double med = ms[calls / 2];
    objective_destroy(&o);
    nn_team_destroy(&team);
    free(df);
    free(ms);
    return med;
}

/* The peer's median ms per call on nt threads; -1 when torch is not there. */
static double time_peer(int nt, int calls)
{
    const char *root = getenv("NPID_ROOT");
    char cmd[1024], line[256] = "";
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 %s/bench/peer/softmax.py --batch %d --n %d --dim %d --tau 0.5 "
             "--calls %d --threads %d 2>/dev/null",
             root ? root : ".", B, N, D, calls, nt);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    int ok = fgets(line, sizeof line, p) != NULL;
    if (pclose(p) != 0 || !ok) return -1;
    char *v = strstr(line, "\"ms_per_call\": ");
    return v ? atof(v + 15) : -1;
}

static void emit(int nt, double v, double peer)
{
    printf("{\"bench\": \"softmax\", \"case\": \"b%d/n%d/d%d/%dt\", \"metric\": \"ms_per_call\", "
           "\"value\": %.2f, \"unit\": \"ms\", \"threads\": %d, \"kernel\": \"%s\"",
           B, N, D, nt, v, nt, blas_corename());
    if (peer > 0)
        printf(", \"peer\": %.2f, \"ratio\": %.2f", peer, peer / v);
    printf("}\n");
    fflush(stdout);
}

int main(int argc, char **argv)
{
    blas_setup(argc, argv); /* AVX-512/AVX2 kernel unless OPENBLAS_CORETYPE is set */
    const char *ec = getenv("NPID_BENCH_CALLS"), *et = getenv("NPID_BENCH_THREADS");
    int calls = ec ? atoi(ec) : 30;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int nt = et ? atoi(et) : (cpus > 2 ? 2 : (int)cpus);
    if (calls < 1 || nt < 1) {
        fprintf(stderr, "bench_softmax: NPID_BENCH_CALLS and NPID_BENCH_THREADS must be >= 1\n");
        return 2;
    }
    float *f = malloc(sizeof(float) * B * D), *bank = malloc(sizeof(float) * (size_t)N * D);
    uint32_t *idx = malloc(sizeof(uint32_t) * B);
    if (!f || !bank || !idx) {
        fprintf(stderr, "bench_softmax: out of memory\n");
        return 1;
    }
    struct rng g;
    rng_seed(&g, 7);
    unit_rows(bank, N, &g);
    unit_rows(f, B, &g);
    for (int i = 0; i < B; i++) idx[i] = (uint32_t)rng_below(&g, N);
    int sizes[2] = { nt, 1 };
    for (int s = 0; s < (nt > 1 ? 2 : 1); s++) {
        double v = time_npid(sizes[s], f, bank, idx, calls);
        emit(sizes[s], v, time_peer(sizes[s], calls));
    }
    free(f);
    free(bank);
    free(idx);
    return 0;
}
