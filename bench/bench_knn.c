/* Benchmark: weighted kNN, 10,000 queries against a 50,000 x 128 bank, k = 200, sigma 0.1,
 * 10 classes, without the network (evald/knn.h). The bank is fed in 8,192-row chunks as it
 * would arrive from bankd `get`. The peer (bench/peer/knn.py: torch mm + topk + vote on 2
 * threads, and NumPy) runs on the same data in the same invocation when /usr/bin/python3 has
 * the packages; one JSON line per figure on stdout.
 *
 * Second figure: evald's test-set feature throughput per network preset (JPEG decode, test
 * transform, eval-mode forward in batches of 100; evald/features.h) on a synthetic 32x32
 * dataset made with `npid-loader synth`, an untrained network of each preset. There is no
 * peer for this whole path; bench_train_step reports the bare eval forward against PyTorch.
 *
 * Environment: NPID_BENCH_KNN_NQ / _N override the sizes; NPID_BENCH_PEER=0 skips the peer;
 * NPID_BENCH_FEAT=0 skips the feature figure. */
#include "common/blas.h"
#include "common/ckpt.h"
#include "common/clock.h"
#include "common/dataset.h"
#include "common/rng.h"
#include "evald/features.h"
#include "evald/knn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static size_t env_size(const char *name, size_t def)
{
    const char *v = getenv(name);
    return v && *v ? (size_t)strtoull(v, NULL, 10) : def;
}

/* Clustered unit vectors: class centres plus noise, so neighbourhoods look like features. */
static void make_data(float *x, uint32_t *lab, size_t n, size_t d, const float *centres,
                      size_t nclass, struct rng *g)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t c = (uint32_t)rng_below(g, nclass);
        lab[i] = c;
        double ss = 0;
        float *row = x + i * d;
        for (size_t t = 0; t < d; t++) {
            row[t] = centres[c * d + t] + 0.4f * (float)rng_normal(g);
            ss += (double)row[t] * row[t];
        }
        for (size_t t = 0; t < d; t++)
            row[t] = (float)(row[t] / sqrt(ss));
    }
}

static int write_raw(const char *dir, const char *name, const void *p, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(p, 1, len, f);
    return (fclose(f) == 0 && w == len) ? 0 : -1;
}

/* One full evaluation; returns seconds or -1. */
static double run_once(const float *q, size_t nq, const float *bank, size_t n, size_t d,
                       size_t k, const uint32_t *bl, const uint32_t *ql, size_t nclass,
                       double sigma, double *top1, double *top5)
{
    double t0 = clock_seconds();
    struct knn *kn = knn_new(q, nq, d, k);
    if (!kn)
        return -1;
    const size_t chunk = 8192;
    for (size_t s = 0; s < n; s += chunk) {
        size_t c = n - s < chunk ? n - s : chunk;
        if (knn_add(kn, bank + s * d, s, c) != 0) {
            knn_destroy(&kn);
            return -1;
        }
    }
    struct knn_result *r = knn_classify(kn, bl, n, ql, nclass, 0, sigma);
    double t = clock_seconds() - t0;
    if (!r) {
        knn_destroy(&kn);
        return -1;
    }
    *top1 = r->top1;
    *top5 = r->top5;
    knn_result_destroy(&r);
    knn_destroy(&kn);
    return t;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Test-set features per preset through evald's path; prints one JSON line per preset. */
static void bench_features(void)
{
    const char *bin = getenv("NPID_BIN");
    char dir[] = "/tmp/npid-bench-feat-XXXXXX", cmd[1024], err[1024], path[600];
    if (!bin || !mkdtemp(dir))
        return;
    snprintf(cmd, sizeof cmd, "%s/npid-loader synth --out %s/data --per-class 1 --test-per-class 50 "
             ">/dev/null 2>&1", bin, dir);
    snprintf(path, sizeof path, "%s/data", dir);
    struct dataset *ds = NULL;
    if (system(cmd) != 0 || !(ds = dataset_open(path, "test", err, sizeof err))) {
        fprintf(stderr, "bench_knn: no synthetic dataset (npid-loader synth): feature figure skipped\n");
        goto out;
    }
    const char *models[] = { "resnet18", "resnet18-half", "resnet20" };
    const size_t counts[] = { 300, 500, 500 };
    for (size_t mi = 0; mi < 3; mi++) {
        struct net_config nc = { models[mi], 128, 32, 32, 1, 1, NET_INIT_HE, NET_STEM_CIFAR, 0 };
        struct net *n = net_new(&nc);
        if (!n)
            continue;
        char config[256];
        snprintf(config, sizeof config, "{\"model\":\"%s\",\"low-dim\":128,\"size\":32,\"aug\":\"cifar\"}",
                 models[mi]);
        struct ckpt c = { 0 };
        c.model = (struct ckpt_model){ "", 128, 32, NET_STEM_CIFAR, 0 };
        snprintf(c.model.name, sizeof c.model.name, "%s", models[mi]);
        c.config = config;
        c.bank_path = "";
        c.n_params = net_param_count(n);
        c.params = net_params(n);
        c.n_buffers = net_buffer_count(n);
        c.buffers = net_buffers(n);
        snprintf(path, sizeof path, "%s/%s.ckpt", dir, models[mi]);
        int rc = ckpt_save(path, &c);
        net_destroy(&n);
        struct feat_model m;
        if (rc != 0 || feat_model_init(&m, path, 100, err, sizeof err) != 0)
            continue;
        size_t cnt = counts[mi] < dataset_count(ds) ? counts[mi] : dataset_count(ds);
        float *f = malloc(cnt * 128 * sizeof *f);
        feat_dataset(&m, ds, 0, 100, f); /* warm-up */
        double t0 = clock_seconds();
        if (f && feat_dataset(&m, ds, 0, cnt, f) == 0) {
            double ips = (double)cnt / (clock_seconds() - t0);
            printf("{\"bench\": \"evald_features\", \"case\": \"%s/b100/32px\", \"metric\": "
                   "\"img_per_s\", \"value\": %.1f, \"unit\": \"img/s\"}\n", models[mi], ips);
            fflush(stdout);
        }
        free(f);
        feat_model_deinit(&m);
    }
out:
    dataset_destroy(&ds);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_knn: could not remove %s\n", dir);
}

int main(int argc, char **argv)
{
    blas_setup(argc, argv); /* AVX-512/AVX2 kernel unless OPENBLAS_CORETYPE is set */
    const size_t nq = env_size("NPID_BENCH_KNN_NQ", 10000), n = env_size("NPID_BENCH_KNN_N", 50000);
    const size_t d = 128, k = 200, nclass = 10;
    const double sigma = 0.1;
    float *q = malloc(nq * d * sizeof *q), *bank = malloc(n * d * sizeof *bank);
    float *centres = malloc(nclass * d * sizeof *centres);
    uint32_t *ql = malloc(nq * sizeof *ql), *bl = malloc(n * sizeof *bl);
    if (!q || !bank || !centres || !ql || !bl) {
        fprintf(stderr, "bench_knn: out of memory\n");
        return 1;
    }
    struct rng g;
    rng_seed(&g, 42);
    for (size_t i = 0; i < nclass * d; i++)
        centres[i] = (float)rng_normal(&g) / sqrtf((float)d);
    make_data(bank, bl, n, d, centres, nclass, &g);
    make_data(q, ql, nq, d, centres, nclass, &g);

    double times[3], top1 = 0, top5 = 0;
    for (int rep = 0; rep < 3; rep++) {
        times[rep] = run_once(q, nq, bank, n, d, k, bl, ql, nclass, sigma, &top1, &top5);
        if (times[rep] < 0) {
            fprintf(stderr, "bench_knn: knn failed\n");
            return 1;
        }
        fprintf(stderr, "bench_knn: run %d: %.3f s top1 %.4f top5 %.4f\n", rep, times[rep], top1,
                top5);
    }
    qsort(times, 3, sizeof times[0], cmp_double);
    double ours = times[1];

    /* peer on the same data */
    double peer_t[2] = { -1, -1 }, peer_top1[2] = { 0, 0 };
    const char *impl_names[2] = { "torch", "numpy" };
    const char *pe = getenv("NPID_BENCH_PEER");
    const char *root = getenv("NPID_ROOT");
    char dir[] = "/tmp/npid-bench-knn-XXXXXX";
    if ((!pe || strcmp(pe, "0") != 0) && access("/usr/bin/python3", X_OK) == 0 && mkdtemp(dir)) {
        if (write_raw(dir, "queries.f32", q, nq * d * 4) == 0 &&
            write_raw(dir, "bank.f32", bank, n * d * 4) == 0 &&
            write_raw(dir, "query_labels.u32", ql, nq * 4) == 0 &&
            write_raw(dir, "bank_labels.u32", bl, n * 4) == 0) {
            char cmd[1024];
            snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/bench/peer/knn.py %s %zu %zu %zu %zu %zu %g",
                     root ? root : ".", dir, nq, n, d, k, nclass, sigma);
            FILE *p = popen(cmd, "r");
            char line[512];
            while (p && fgets(line, sizeof line, p)) {
                for (int i = 0; i < 2; i++) {
                    char tag[32];
                    snprintf(tag, sizeof tag, "\"impl\": \"%s\"", impl_names[i]);
                    const char *s = strstr(line, "\"seconds\": ");
                    const char *t1 = strstr(line, "\"top1\": ");
                    if (strstr(line, tag) && s && t1) {
                        peer_t[i] = atof(s + 11);
                        peer_top1[i] = atof(t1 + 8);
                    }
                }
            }
            if (p)
                pclose(p);
        }
        const char *files[] = { "queries.f32", "bank.f32", "query_labels.u32", "bank_labels.u32" };
        for (size_t i = 0; i < 4; i++) {
            char path[512];
            snprintf(path, sizeof path, "%s/%s", dir, files[i]);
            unlink(path);
        }
        rmdir(dir);
    }

    char cs[96];
    snprintf(cs, sizeof cs, "%zuq/%zux%zu/k%zu", nq, n, d, k);
    for (int i = 0; i < 2; i++) {
        if (peer_t[i] > 0) {
            fprintf(stderr, "bench_knn: peer %s %.3f s top1 %.4f (ours %.4f)\n", impl_names[i],
                    peer_t[i], peer_top1[i], top1);
            printf("{\"bench\": \"knn\", \"case\": \"%s\", \"metric\": \"seconds\", \"value\": %.4f, "
                   "\"unit\": \"s\", \"peer_impl\": \"%s\", \"peer\": %.4f, \"ratio\": %.2f, "
                   "\"top1\": %.4f, \"peer_top1\": %.4f}\n",
                   cs, ours, impl_names[i], peer_t[i], peer_t[i] / ours, top1, peer_top1[i]);
        }
    }
    if (peer_t[0] <= 0 && peer_t[1] <= 0)
        printf("{\"bench\": \"knn\", \"case\": \"%s\", \"metric\": \"seconds\", \"value\": %.4f, "
               "\"unit\": \"s\", \"top1\": %.4f}\n", cs, ours, top1);
    fflush(stdout);
    free(q), free(bank), free(centres), free(ql), free(bl);
    const char *fe = getenv("NPID_BENCH_FEAT");
    if (!fe || strcmp(fe, "0") != 0)
        bench_features();
    return 0;
}
