/* Loader benchmarks: decode + full augmentation images/s in one process at 32 px (CIFAR-10
 * JPEGs from ../shared/data, or synthetic JPEGs when absent), 96 px and 224 px (synthetic
 * JPEGs of 128 and 384 px), the ImageNet train transform at 224 px (RandomResizedCrop
 * 0.08-1 + flip) on 300-500 px photos (bench/photos224.py: tinyimagenet10 upscaled) with
 * DCT scaling on and off, then the same for PNG and lossy WebP at 32 px (cifar preset) and
 * 96 px (imagenet preset) on the files bench_decode decodes (`bench_decode --files`: CIFAR-10
 * and tinyimagenet10 re-encoded by Pillow, or synthetic), each against the PIL + torchvision
 * peer on the same files in the same invocation when /usr/bin/python3 has torchvision; then
 * end-to-end throughput of 1 and 2 npid-loader processes feeding tools/npid-consume (the
 * taskq stand-in trainer). Every per-process figure times the loader's own path: batcher_run
 * (dataset_decode_pick from the file, then augment) over batches of 128.
 * One JSON line per figure on stdout; progress on stderr. A failing or missing peer leaves
 * the lines without peer and ratio and does not change the exit status; exit 1 when the PNG
 * and WebP files could not be made.
 * Environment: NPID_BIN, NPID_ROOT (set by bench/run), NPID_BENCH_SECONDS (default 3). */
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench_util.h"
#include "common/batcher.h"
#include "common/clock.h"
#include "common/dataset.h"
#include "common/log.h"

extern char **environ;

/* Decode + augment throughput of one process over the dataset's first n images, with the
 * preset overridden by aug (NULL: none) and DCT scaling on or off. */
static double measure(const struct dataset *ds, const char *preset, const char *aug,
                      uint32_t size, size_t n, int dct)
{
    struct batcher *b = batcher_new(dct);
    if (!b)
        return -1;
    uint32_t B = 128;
    uint32_t idx[128], labels[128];
    uint8_t bad[128];
    uint8_t *pix = malloc((size_t)B * size * size * 3);
    if (!pix) {
        batcher_destroy(&b);
        return -1;
    }
    double secs = bench_seconds();
    uint64_t t0 = clock_now_ns(), done = 0;
    uint32_t step = 0;
    char err[256];
    while ((clock_now_ns() - t0) / 1e9 < secs) {
        for (uint32_t j = 0; j < B; j++)
            idx[j] = (uint32_t)(((size_t)step * B + j) % n);
        struct batch_job job = { .ds = ds, .idx = idx, .count = B, .preset = preset,
                                 .aug = aug, .train = 1, .size = size,
                                 .layout = AUGMENT_CHW, .seed = 1, .epoch = step };
        struct batch_out out = { .pix = pix, .labels = labels, .bad = bad };
        if (batcher_run(b, &job, &out, err, sizeof err)) {
            log_error("batcher: %s", err);
            break;
        }
        done += B;
        step++;
    }
    double rate = done / ((clock_now_ns() - t0) / 1e9);
    free(pix);
    batcher_destroy(&b);
    return rate;
}

/* The PIL + torchvision peer on the first n images (bench/peer/loader.py; peer_aug its --aug,
 * NULL: the preset's transform). img/s, or -1. */
static double peer(const char *root, const struct dataset *ds, size_t n, const char *preset,
                   const char *peer_aug, uint32_t size, const char *tmp)
{
    if (access("/usr/bin/python3", X_OK) != 0)
        return -1;
    char list[512];
    snprintf(list, sizeof list, "%s/list.txt", tmp);
    FILE *f = fopen(list, "w");
    if (!f)
        return -1;
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%s/%s\n", dataset_root(ds), dataset_path(ds, i));
    fclose(f);
    char cmd[2048], out[4096];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 %s/bench/peer/loader.py --list %s --preset %s --size %u "
             "--seconds %.1f%s%s 2>/dev/null",
             root, list, preset, size, bench_seconds(), peer_aug ? " --aug " : "",
             peer_aug ? peer_aug : "");
    if (run_capture(cmd, out, sizeof out))
        return -1;
    return json_num(out, "img_per_s");
}

/* One line; extra (NULL or ", \"key\": value, ...") goes before the closing brace. */
static void report(const char *cas, double v, double pv, const char *extra)
{
    printf("{\"bench\": \"loader\", \"case\": \"%s\", \"metric\": \"img_per_s\", \"value\": "
           "%.1f, \"unit\": \"img/s\"",
           cas, v);
    if (pv > 0)
        printf(", \"peer\": %.1f, \"ratio\": %.2f", pv, v / pv);
    printf("%s}\n", extra ? extra : "");
    fflush(stdout);
}

static int one_case(const char *root, const char *data, const char *preset, uint32_t size,
                    const char *label, const char *tmp, const char *extra)
{
    char err[DATASET_ERR_LEN];
    struct dataset *ds = dataset_open(data, "train", err, sizeof err);
    if (!ds) {
        log_error("%s", err);
        return -1;
    }
    size_t n = dataset_count(ds) < 20000 ? dataset_count(ds) : 20000;
    fprintf(stderr, "bench loader: %s: %zu images from %s\n", label, n, data);
    double v = measure(ds, preset, NULL, size, n, 1);
    double pv = peer(root, ds, n < 2000 ? n : 2000, preset, NULL, size, tmp);
    report(label, v, pv, extra);
    dataset_destroy(&ds);
    return 0;
}

/* Writes list (one "NNNN.ext" per line, relative to the list's directory: a dataset of the
 * set's files of one format). Returns 0 or -1. */
static int write_list(const char *list, const char *ext, size_t n)
{
    FILE *f = fopen(list, "w");
    if (!f)
        return -1;
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%04zu.%s\n", i, ext);
    return fclose(f) == 0 ? 0 : -1;
}

/* The PNG and WebP cases: bench_decode --files writes its sets (32 and 96 px) into tmp/img,
 * each format of each set is opened as a file-list dataset and timed by one_case with the
 * preset the JPEG cases use at that size. Returns 0, or -1 when the files are missing. */
static int png_webp_cases(const char *root, const char *bin, const char *tmp)
{
    char dir[600], cmd[2048];
    snprintf(dir, sizeof dir, "%s/img", tmp);
    if (mkdir(dir, 0700) != 0) {
        log_error("mkdir %s: %s", dir, strerror(errno));
        return -1;
    }
    snprintf(cmd, sizeof cmd, "'%s/bench/bench_decode' --files '%s'", bin, dir);
    FILE *p = popen(cmd, "r");
    if (!p) {
        log_error("%s: %s", cmd, strerror(errno));
        return -1;
    }
    char line[4096], sets[2][4096];
    int k = 0;
    while (fgets(line, sizeof line, p))
        if (k < 2 && line[0] == '{')
            snprintf(sets[k++], sizeof sets[0], "%s", line);
    int st = pclose(p);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || k != 2) {
        log_error("%s failed (exit status %d): no PNG/WebP cases", cmd,
                  WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        return -1;
    }
    static const char *const ext[2] = { "png", "webp" };
    for (int f = 0; f < 2; f++)
        for (int i = 0; i < 2; i++) {
            char sdir[1200], source[64], list[1300], cas[160], extra[256];
            json_str(sets[i], "dir", sdir, sizeof sdir);
            json_str(sets[i], "source", source, sizeof source);
            uint32_t size = (uint32_t)json_num(sets[i], "size");
            size_t n = (size_t)json_num(sets[i], "n");
            snprintf(list, sizeof list, "%s/%s.list", sdir, ext[f]);
            if (write_list(list, ext[f], n)) {
                log_error("cannot write %s", list);
                return -1;
            }
            snprintf(cas, sizeof cas, "decode+augment/%s-%s/%upx",
                     !strcmp(source, "synthetic") ? "synth" : source, ext[f], size);
            snprintf(extra, sizeof extra, ", \"preset\": \"%s\", \"source\": \"%s\", "
                     "\"n_files\": %zu", size <= 32 ? "cifar" : "imagenet", source, n);
            if (one_case(root, list, size <= 32 ? "cifar" : "imagenet", size, cas, tmp, extra))
                return -1;
        }
    return 0;
}

/* The ImageNet train transform at 224 px, RandomResizedCrop(scale 0.08-1) + flip (no jitter,
 * no grayscale), on bench/photos224.py's 300-500 px JPEGs, with DCT scaling on and off, and
 * the peer with the same transform. Nothing when the photos cannot be made (no
 * tinyimagenet10 in the cache, no Pillow). */
static void photos_cases(const char *root, const char *tmp)
{
    char cmd[2048], dir[1024], err[DATASET_ERR_LEN];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/bench/photos224.py'", root);
    if (run_capture(cmd, dir, sizeof dir) != 0) {
        log_warn("bench/photos224.py failed: no 224 px photo cases");
        return;
    }
    dir[strcspn(dir, "\n")] = 0;
    struct dataset *ds = dataset_open(dir, "train", err, sizeof err);
    if (!ds) {
        log_error("%s", err);
        return;
    }
    size_t n = dataset_count(ds);
    fprintf(stderr, "bench loader: photos 224 px: %zu images from %s\n", n, dir);
    const char *aug = "crop=0.08-1,jitter=0,gray=0";
    double on = measure(ds, "imagenet", aug, 224, n, 1);
    double off = measure(ds, "imagenet", aug, 224, n, 0);
    double pv = peer(root, ds, n, "imagenet", "crop-flip", 224, tmp);
    char extra[256];
    snprintf(extra, sizeof extra, ", \"preset\": \"imagenet\", \"aug\": \"%s\", \"dct_scale\": 1, "
             "\"n_files\": %zu", aug, n);
    report("decode+augment/photos300-500/224px/crop-flip", on, pv, extra);
    snprintf(extra, sizeof extra, ", \"preset\": \"imagenet\", \"aug\": \"%s\", \"dct_scale\": 0, "
             "\"n_files\": %zu", aug, n);
    report("decode+augment/photos300-500/224px/crop-flip/no-dct", off, pv, extra);
    dataset_destroy(&ds);
}

/* k loader processes feeding one consumer over ipc://; returns the consumer's img/s. */
static double pipeline(const char *bin, const char *data, int k, const char *tmp)
{
    char ep[600], cmd[4096], out[4096];
    snprintf(ep, sizeof ep, "ipc://%s/tasks-%d.sock", tmp, k);
    pid_t pids[8];
    int np = 0;
    char loader[512];
    snprintf(loader, sizeof loader, "%s/npid-loader", bin);
    for (int i = 0; i < k && i < 8; i++) {
        char *argv[] = { loader, "--data", (char *)data, "--tasks", ep, "--capacity", "2",
                         "--log-level", "warn", NULL };
        if (posix_spawn(&pids[np], loader, NULL, NULL, argv, environ) == 0)
            np++;
    }
    snprintf(cmd, sizeof cmd,
             "%s/tools/npid-consume --data %s --bind %s --wait-loaders %d --images 20000 "
             "--batch 128 --window 8 --timeout-s 120 --log-level warn",
             bin, data, ep, k);
    double rate = -1;
    if (run_capture(cmd, out, sizeof out) == 0)
        rate = json_num(out, "img_per_s");
    for (int i = 0; i < np; i++) {
        kill(pids[i], SIGTERM);
        waitpid(pids[i], NULL, 0);
    }
    return rate;
}

int main(void)
{
    log_init("bench_loader");
    const char *root = getenv("NPID_ROOT") ? getenv("NPID_ROOT") : ".";
    const char *bin = getenv("NPID_BIN") ? getenv("NPID_BIN") : "build";
    char tmp[] = "/tmp/npid-bench-loader.XXXXXX";
    if (!mkdtemp(tmp)) {
        log_error("mkdtemp: %s", strerror(errno));
        return 1;
    }
    char cmd[4096], cifar[1024], d96[1200], d224[1200];
    snprintf(cmd, sizeof cmd, "%s/loader/cifar-cache.sh 2>/dev/null", root);
    int have_cifar = run_capture(cmd, cifar, sizeof cifar) == 0;
    if (!have_cifar) {
        snprintf(cifar, sizeof cifar, "%s/syn32", tmp);
        snprintf(cmd, sizeof cmd,
                 "%s/npid-loader synth --out %s --per-class 500 --test-per-class 0 --size 32 "
                 ">/dev/null", bin, cifar);
        if (system(cmd) != 0)
            log_error("synth failed");
    }
    snprintf(d96, sizeof d96, "%s/syn128", tmp);
    snprintf(d224, sizeof d224, "%s/syn384", tmp);
    snprintf(cmd, sizeof cmd,
             "%s/npid-loader synth --out %s --per-class 40 --test-per-class 0 --size 128 "
             "--log-level warn >/dev/null && %s/npid-loader synth --out %s --per-class 10 "
             "--test-per-class 0 --size 384 --log-level warn >/dev/null",
             bin, d96, bin, d224);
    int have_syn = system(cmd) == 0;
    one_case(root, cifar, "cifar", 32, have_cifar ? "decode+augment/cifar10-jpeg/32px"
                                                  : "decode+augment/synth/32px", tmp, NULL);
    if (have_syn) {
        one_case(root, d96, "imagenet", 96, "decode+augment/synth128/96px", tmp, NULL);
        one_case(root, d224, "imagenet", 224, "decode+augment/synth384/224px", tmp, NULL);
    }
    photos_cases(root, tmp);
    int rc = png_webp_cases(root, bin, tmp) ? 1 : 0;
    for (int k = 1; k <= 2; k++) {
        fprintf(stderr, "bench loader: %d loader process(es) -> npid-consume\n", k);
        double r = pipeline(bin, cifar, k, tmp);
        char cas[128];
        snprintf(cas, sizeof cas, "pipeline/%d-loader%s/32px", k, k > 1 ? "s" : "");
        report(cas, r, -1, NULL);
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0)
        log_warn("could not remove %s", tmp);
    return rc;
}
