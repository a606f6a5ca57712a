/* Decode benchmark: PNG and WebP images/s of image_decode (the loader's decoder: libpng and
 * libwebp to packed RGB, no augmentation) against Pillow on the same bytes in the same
 * invocation, one thread each, at 32 and 96 px.
 *
 * Files: Pillow (bench/peer/decode.py encode) re-encodes real photos into a temporary
 * directory as PNG (its defaults) and lossy WebP (quality 90, default method): 1,000
 * CIFAR-10 training JPEGs at 32 px, and 500 tinyimagenet10 training JPEGs (64 px) resized to
 * 96 px, or CIFAR-10 upscaled when tinyimagenet10 is not in the cache (it is used when
 * present, not extracted). Without the data or without Pillow, deterministic smooth-noise
 * images are encoded here by libpng (zlib level 6, as Pillow) and libwebp (lossy, quality
 * 90) and the figures carry "source": "synthetic".
 * Both sides read the files into memory once and then decode the bytes in a loop for
 * NPID_BENCH_SECONDS; both hash the RGB of one pass, and "same_pixels" says whether they
 * decoded the same pixels. One JSON line per format and size on stdout; progress on stderr.
 * The peer exiting 77 means Pillow is unavailable: the lines then have no peer or ratio.
 * Any other peer failure also leaves them without peer and makes the exit status 1.
 * `bench_decode --files DIR` only writes the files (bench_loader times the loader on them).
 * Environment: NPID_ROOT (set by bench/run), NPID_CACHE (default ~/.cache/npid), TMPDIR,
 * NPID_BENCH_SECONDS (default 3). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <png.h>
#include <webp/encode.h>

#include "bench/bench_util.h"
#include "common/clock.h"
#include "common/dataset.h"
#include "common/image.h"
#include "common/log.h"
#include "common/rng.h"
#include "common/sha256.h"

#define PEER_UNAVAILABLE 77

/* ---- the files ---------------------------------------------------------------------------- */

/* Writes up to n paths spread evenly over data's train split to list. Returns the count, or
 * 0 when the split cannot be opened. */
static size_t write_list(const char *data, size_t n, const char *list)
{
    char err[DATASET_ERR_LEN];
    struct dataset *ds = dataset_open(data, "train", err, sizeof err);
    if (!ds) {
        log_warn("%s", err);
        return 0;
    }
    size_t have = dataset_count(ds), k = 0;
    FILE *f = fopen(list, "w");
    if (f) {
        size_t step = have / n ? have / n : 1;
        for (size_t i = 0; i < have && k < n; i += step, k++)
            fprintf(f, "%s/%s\n", dataset_root(ds), dataset_path(ds, i));
        if (fclose(f) != 0)
            k = 0;
    }
    dataset_destroy(&ds);
    return k;
}

/* A smooth random image: a 5 x 5 grid of random colours, bilinearly interpolated, plus
 * Gaussian grain (sigma 6), so that neither encoder sees flat colour. rgb holds s*s*3. */
static void synth_image(uint8_t *rgb, uint32_t s, uint64_t seed)
{
    enum { G = 5 };
    struct rng r = rng_derive(seed, 0xdec0de, s);
    float grid[G][G][3];
    for (int y = 0; y < G; y++)
        for (int x = 0; x < G; x++)
            for (int c = 0; c < 3; c++)
                grid[y][x][c] = 255.0f * rng_float(&r);
    for (uint32_t y = 0; y < s; y++)
        for (uint32_t x = 0; x < s; x++) {
            float gy = (float)y * (G - 1) / (float)(s - 1);
            float gx = (float)x * (G - 1) / (float)(s - 1);
            int y0 = gy >= G - 1 ? G - 2 : (int)gy, x0 = gx >= G - 1 ? G - 2 : (int)gx;
            float fy = gy - (float)y0, fx = gx - (float)x0;
            for (int c = 0; c < 3; c++) {
                float v = (1 - fy) * ((1 - fx) * grid[y0][x0][c] + fx * grid[y0][x0 + 1][c]) +
                          fy * ((1 - fx) * grid[y0 + 1][x0][c] + fx * grid[y0 + 1][x0 + 1][c]);
                v += 6.0f * (float)rng_normal(&r);
                rgb[((size_t)y * s + x) * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5f);
            }
        }
}

static int write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(p, 1, n, f);
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

/* n synthetic s x s images as dir/NNNN.png (libpng, default zlib level) and dir/NNNN.webp
 * (libwebp, lossy, quality 90). Returns 0 or -1. */
static int synth_set(const char *dir, uint32_t s, size_t n)
{
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return -1;
    uint8_t *rgb = malloc((size_t)s * s * 3);
    if (!rgb)
        return -1;
    int rc = 0;
    char path[1200];
    for (size_t i = 0; i < n && rc == 0; i++) {
        synth_image(rgb, s, i);
        png_image pi;
        memset(&pi, 0, sizeof pi);
        pi.version = PNG_IMAGE_VERSION;
        pi.width = s;
        pi.height = s;
        pi.format = PNG_FORMAT_RGB;
        snprintf(path, sizeof path, "%s/%04zu.png", dir, i);
        if (!png_image_write_to_file(&pi, path, 0, rgb, (png_int_32)s * 3, NULL)) {
            log_error("%s: %s", path, pi.message);
            rc = -1;
            break;
        }
        uint8_t *webp = NULL;
        size_t len = WebPEncodeRGB(rgb, (int)s, (int)s, (int)s * 3, 90.0f, &webp);
        snprintf(path, sizeof path, "%s/%04zu.webp", dir, i);
        if (len == 0 || write_file(path, webp, len) != 0) {
            log_error("%s: WebP encoding or writing failed", path);
            rc = -1;
        }
        WebPFree(webp);
    }
    free(rgb);
    return rc;
}

/* ---- decoding ----------------------------------------------------------------------------- */

/* The encoded files of one format and size, in memory: n buffers, total bytes. */
struct blobs {
    size_t n, bytes;
    uint8_t **p;
    size_t *len;
};

static void blobs_free(struct blobs *b)
{
    for (size_t i = 0; b->p && i < b->n; i++)
        free(b->p[i]);
    free(b->p);
    free(b->len);
    memset(b, 0, sizeof *b);
}

/* Reads dir/0000.ext .. dir/(n-1).ext. Returns 0 or -1 (b freed). */
static int blobs_load(struct blobs *b, const char *dir, const char *ext, size_t n)
{
    memset(b, 0, sizeof *b);
    b->p = calloc(n, sizeof *b->p);
    b->len = calloc(n, sizeof *b->len);
    if (!b->p || !b->len)
        goto fail;
    char path[1200];
    for (; b->n < n; b->n++) {
        snprintf(path, sizeof path, "%s/%04zu.%s", dir, b->n, ext);
        FILE *f = fopen(path, "rb");
        if (!f) {
            log_error("%s: %s", path, strerror(errno));
            goto fail;
        }
        struct stat st;
        uint8_t *p = NULL;
        if (fstat(fileno(f), &st) == 0 && st.st_size > 0)
            p = malloc((size_t)st.st_size);
        int ok = p && fread(p, 1, (size_t)st.st_size, f) == (size_t)st.st_size;
        fclose(f);
        if (!ok) {
            free(p);
            log_error("%s: cannot read", path);
            goto fail;
        }
        b->p[b->n] = p;
        b->len[b->n] = (size_t)st.st_size;
        b->bytes += (size_t)st.st_size;
    }
    return 0;
fail:
    blobs_free(b);
    return -1;
}

/* image_decode over b in a loop for bench_seconds(), after one untimed pass that checks every
 * image is s x s and hashes the RGB into hex. Returns images/s, or -1. */
static double measure(const struct blobs *b, uint32_t s, char hex[65])
{
    struct jpeg_dec *d = jpeg_dec_new(NULL);
    if (!d)
        return -1;
    struct jpeg_image img;
    char err[256];
    struct sha256 h;
    sha256_init(&h);
    for (size_t i = 0; i < b->n; i++) {
        if (image_decode(d, b->p[i], b->len[i], 0, &img, err, sizeof err)) {
            log_error("file %zu: %s", i, err);
            jpeg_dec_destroy(&d);
            return -1;
        }
        if (img.w != s || img.h != s) {
            log_error("file %zu: %ux%u, expected %ux%u", i, img.w, img.h, s, s);
            jpeg_dec_destroy(&d);
            return -1;
        }
        sha256_update(&h, img.pix, (size_t)s * s * 3);
    }
    unsigned char dig[32];
    sha256_final(&h, dig);
    sha256_hex(dig, hex);
    double secs = bench_seconds();
    uint64_t t0 = clock_now_ns(), done = 0;
    while ((clock_now_ns() - t0) / 1e9 < secs)
        for (size_t i = 0; i < b->n; i++) {
            /* checked above; a failure here would be a broken decoder, not bad input */
            NPID_CHECK(image_decode(d, b->p[i], b->len[i], 0, &img, err, sizeof err) == 0);
            if (++done % 64 == 0 && (clock_now_ns() - t0) / 1e9 >= secs)
                break;
        }
    double rate = done / ((clock_now_ns() - t0) / 1e9);
    jpeg_dec_destroy(&d);
    return rate;
}

/* ---- the peer ----------------------------------------------------------------------------- */

/* Runs decode.py with args; out gets its JSON line. Returns 0, PEER_UNAVAILABLE, or -1 (which
 * also marks the run failed). */
static int peer_run(const char *root, const char *args, char *out, size_t len, int *failed)
{
    static int gone;   /* said so once: not asked again */
    if (gone || access("/usr/bin/python3", X_OK) != 0)
        return PEER_UNAVAILABLE;
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/bench/peer/decode.py' %s", root, args);
    int rc = run_capture(cmd, out, len);
    gone = rc == PEER_UNAVAILABLE;
    if (rc == 0 || rc == PEER_UNAVAILABLE)
        return rc;
    log_error("peer failed (status %d): %s", rc, cmd);
    *failed = 1;
    return -1;
}

static void report(const char *cas, const char *source, const struct blobs *b, double v,
                   const char *hex, const char *peer_json)
{
    printf("{\"bench\": \"decode\", \"case\": \"%s\", \"metric\": \"img_per_s\", \"value\": %.1f, "
           "\"unit\": \"img/s\"",
           cas, v);
    double pv = peer_json ? json_num(peer_json, "img_per_s") : -1;
    if (pv > 0) {
        char name[64], phex[65];
        json_str(peer_json, "peer_name", name, sizeof name);
        json_str(peer_json, "sha256", phex, sizeof phex);
        printf(", \"peer\": %.1f, \"ratio\": %.2f, \"peer_name\": \"%s\", \"same_pixels\": %s",
               pv, v / pv, name, strcmp(hex, phex) == 0 ? "true" : "false");
    }
    printf(", \"source\": \"%s\", \"n_files\": %zu, \"mean_bytes\": %.0f}\n", source, b->n,
           (double)b->bytes / (double)b->n);
    fflush(stdout);
}

/* One set of files: dir, what the images are, how many. */
struct set {
    uint32_t size;
    size_t n;
    const char *source;
    char dir[1100];
};

/* Makes the files of one size in tmp: Pillow's from data when it can, else synthetic.
 * Returns 0, or -1 when there are none. */
static int set_make(struct set *set, const char *root, const char *tmp, const char *data,
                    const char *data_name, int *peer_failed)
{
    char list[1100], args[3000], out[4096];
    uint32_t s = set->size;
    snprintf(set->dir, sizeof set->dir, "%s/%upx", tmp, s);
    snprintf(list, sizeof list, "%s/list-%upx.txt", tmp, s);
    set->source = "synthetic";
    size_t k = data ? write_list(data, set->n, list) : 0;
    if (k > 0) {
        snprintf(args, sizeof args, "encode --list '%s' --size %u --out '%s'", list, s,
                 set->dir);
        fprintf(stderr, "bench decode: Pillow encodes %zu %s images at %u px\n", k, data_name, s);
        if (peer_run(root, args, out, sizeof out, peer_failed) == 0 && json_num(out, "n") > 0) {
            set->source = data_name;
            set->n = k;
            return 0;
        }
    }
    fprintf(stderr, "bench decode: %zu synthetic images at %u px\n", set->n, s);
    if (synth_set(set->dir, s, set->n)) {
        log_error("cannot write the synthetic images in %s", set->dir);
        return -1;
    }
    return 0;
}

/* npid, then the peer, over the set's files of one format; prints the line. Returns 0, or
 * -1 when npid's side failed. */
static int one_case(const char *root, const struct set *set, const char *ext, int *peer_failed)
{
    struct blobs b;
    if (blobs_load(&b, set->dir, ext, set->n))
        return -1;
    char hex[65], cas[64], args[3000], out[4096];
    snprintf(cas, sizeof cas, "%s/%upx", ext, set->size);
    fprintf(stderr, "bench decode: %s: npid\n", cas);
    double v = measure(&b, set->size, hex);
    if (v < 0) {
        blobs_free(&b);
        return -1;
    }
    fprintf(stderr, "bench decode: %s: Pillow\n", cas);
    snprintf(args, sizeof args, "time --dir '%s' --ext %s --seconds %.1f", set->dir, ext,
             bench_seconds());
    int prc = peer_run(root, args, out, sizeof out, peer_failed);
    if (prc == PEER_UNAVAILABLE)
        fprintf(stderr, "bench decode: peer unavailable, no ratio\n");
    report(cas, set->source, &b, v, hex, prc == 0 ? out : NULL);
    blobs_free(&b);
    return 0;
}

/* Makes the two sets in tmp (tmp/32px, tmp/96px); ok[i] says whether set i has files. */
static void sets_make(struct set sets[2], int ok[2], const char *root, const char *tmp,
                      int *peer_failed)
{
    char cmd[2048], cifar[1024], tiny[1100];
    snprintf(cmd, sizeof cmd, "'%s/loader/cifar-cache.sh' 2>/dev/null", root);
    int have_cifar = run_capture(cmd, cifar, sizeof cifar) == 0;
    const char *cache = getenv("NPID_CACHE");
    if (cache && cache[0])
        snprintf(tiny, sizeof tiny, "%s/tinyimagenet10", cache);
    else
        snprintf(tiny, sizeof tiny, "%s/.cache/npid/tinyimagenet10",
                 getenv("HOME") ? getenv("HOME") : "/tmp");
    struct stat st;
    int have_tiny = stat(tiny, &st) == 0 && S_ISDIR(st.st_mode);
    sets[0] = (struct set){ .size = 32, .n = 1000 };
    sets[1] = (struct set){ .size = 96, .n = 500 };
    ok[0] = set_make(&sets[0], root, tmp, have_cifar ? cifar : NULL, "cifar10", peer_failed) == 0;
    ok[1] = set_make(&sets[1], root, tmp, have_tiny ? tiny : have_cifar ? cifar : NULL,
                     have_tiny ? "tinyimagenet10" : "cifar10", peer_failed) == 0;
}

/* bench_decode --files DIR: only makes the sets in DIR (an existing directory), for
 * bench_loader to time the loader on the same files; prints one line per set,
 * {"size": 32, "dir": "DIR/32px", "n": 1000, "source": "cifar10"}, and exits 1 unless both
 * were made. A failing peer is logged and leaves that set synthetic. */
static int files_only(const char *root, const char *dir)
{
    struct set sets[2];
    int ok[2], peer_failed = 0;
    sets_make(sets, ok, root, dir, &peer_failed);
    for (int i = 0; i < 2; i++)
        if (ok[i])
            printf("{\"size\": %u, \"dir\": \"%s\", \"n\": %zu, \"source\": \"%s\"}\n",
                   sets[i].size, sets[i].dir, sets[i].n, sets[i].source);
    return ok[0] && ok[1] ? 0 : 1;
}

int main(int argc, char **argv)
{
    log_init("bench_decode");
    const char *root = getenv("NPID_ROOT") ? getenv("NPID_ROOT") : ".";
    if (argc == 3 && !strcmp(argv[1], "--files"))
        return files_only(root, argv[2]);
    if (argc != 1) {
        fprintf(stderr, "usage: bench_decode [--files DIR]\n");
        return 2;
    }
    const char *tmpdir = getenv("TMPDIR") && getenv("TMPDIR")[0] ? getenv("TMPDIR") : "/tmp";
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s/npid-bench-decode.XXXXXX", tmpdir);
    if (!mkdtemp(tmp)) {
        log_error("mkdtemp %s: %s (set TMPDIR to a writable directory)", tmp, strerror(errno));
        return 1;
    }
    struct set sets[2];
    int ok[2], peer_failed = 0, rc = 0;
    sets_make(sets, ok, root, tmp, &peer_failed);
    static const char *const ext[2] = { "png", "webp" };
    for (int f = 0; f < 2; f++)
        for (int i = 0; i < 2; i++)
            if (!ok[i] || one_case(root, &sets[i], ext[f], &peer_failed))
                rc = 1;
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd) != 0)
        log_warn("could not remove %s", tmp);
    return rc || peer_failed;
}
