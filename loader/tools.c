/* `npid-loader check` (decode every image of a dataset, report the bad ones) and the test hook
 * `npid-loader _pixop` (one augmentation primitive on raw RGB from stdin). */
#include "loader/loader.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/augment.h"
#include "common/cfg.h"
#include "common/clock.h"
#include "common/dataset.h"
#include "common/jpeg.h"
#include "common/json.h"
#include "common/log.h"

/* The split being checked, for the skip lines. */
struct check_ctx {
    const char *split;
};

/* opts.on_skip: one JSON line per file or directory the index skipped, with the reason. */
static void check_on_skip(void *ctx, const char *path, const char *why)
{
    const struct check_ctx *c = ctx;
    printf("{\"split\": \"%s\", \"path\": ", c->split);
    json_write_cstr(stdout, path);
    printf(", \"skipped\": ");
    json_write_cstr(stdout, why);
    printf("}\n");
}

struct check_totals {
    size_t images, bad, skipped;
};

/* Indexes and decodes one split; prints its bad images and a summary line. Returns 0, or -1
 * when the split cannot be opened (reason logged). */
static int check_split(const char *data, const char *split, struct dataset_opts *dso,
                       struct jpeg_dec *dec, uint32_t min_side, struct check_totals *tot)
{
    char err[DATASET_ERR_LEN];
    struct check_ctx ctx = { split };
    dso->on_skip = check_on_skip;
    dso->skip_ctx = &ctx;
    uint64_t t0 = clock_now_ns();
    struct dataset *ds = dataset_open_opts(data, split, dso, err, sizeof err);
    dso->on_skip = NULL;
    if (!ds) {
        log_error("%s split: %s", split, err);
        return -1;
    }
    log_info("%s split: %s", split, dataset_describe(ds));
    size_t n = dataset_count(ds), bad = 0;
    for (size_t i = 0; i < n; i++) {
        struct jpeg_image img;
        if (dataset_decode(ds, i, dec, min_side, &img, err, sizeof err) == 0)
            continue;
        bad++;
        /* err is "relative/path: reason" */
        const char *path = dataset_path(ds, i);
        const char *reason = err;
        size_t pl = strlen(path);
        if (strncmp(err, path, pl) == 0 && err[pl] == ':')
            reason = err + pl + 2;
        printf("{\"split\": \"%s\", \"path\": ", split);
        json_write_cstr(stdout, path);
        printf(", \"reason\": ");
        json_write_cstr(stdout, reason);
        printf("}\n");
    }
    double secs = (clock_now_ns() - t0) / 1e9;
    printf("{\"split\": \"%s\", \"images\": %zu, \"ok\": %zu, \"bad\": %zu, \"skipped\": %zu, "
           "\"labelled\": %zu, \"classes\": %zu, \"nested_dirs\": %zu, \"manifest\": \"%s\", "
           "\"seconds\": %.3f}\n",
           split, n, n - bad, bad, dataset_skipped(ds), dataset_labelled(ds),
           dataset_num_classes(ds), dataset_nested_dirs(ds), dataset_manifest(ds), secs);
    tot->images += n;
    tot->bad += bad;
    tot->skipped += dataset_skipped(ds);
    dataset_destroy(&ds);
    return 0;
}

int loader_check_main(int argc, char **argv)
{
    const char *data, *split, *level;
    uint64_t max_side, max_scans, min_side;
    int strict;
    struct dataset_opts dso = { 0 };
    struct cfg_opt opts[] = {
        { "data", "NPID_DATA", CFG_STR, &data, NULL, 0, 0, "dataset root (or a file list)", 0 },
        { "split", NULL, CFG_STR, &split, "all", 0, 0,
          "all (the train split and the test split when there is one), train or test", 0 },
        DATASET_CFG_OPTS(&dso),
        { "max-side", NULL, CFG_U64, &max_side, "16384", 1, 1e6, "largest accepted width/height", 0 },
        { "max-scans", NULL, CFG_U64, &max_scans, "64", 1, 1e6, "most progressive scans accepted", 0 },
        { "min-side", NULL, CFG_U64, &min_side, "0", 0, 1e6,
          "allow DCT downscaling to this side (0: full size)", 0 },
        { "strict", NULL, CFG_BOOL, &strict, "0", 0, 0, "exit 1 when any image is bad", 0 },
        { "log-level", "NPID_LOG_LEVEL", CFG_STR, &level, "info", 0, 0, "debug, info, warn or error", 0 },
        { 0 }
    };
    int npos;
    int rc = cfg_parse("npid-loader check", "--data DIR [options]", opts, argc, argv, &npos);
    if (rc == CFG_HELP)
        return EXIT_OK;
    if (rc != CFG_OK)
        return EXIT_USAGE;
    if (npos > 0) {
        fprintf(stderr, "npid-loader check: unexpected argument '%s'\n", argv[1]);
        return EXIT_USAGE;
    }
    int lvl = log_level_parse(level);
    if (lvl < 0) {
        fprintf(stderr, "npid-loader check: --log-level: unknown level '%s'\n", level);
        return EXIT_USAGE;
    }
    log_set_level(lvl);
    if ((!data || !*data) && !dso.list) {
        fprintf(stderr, "npid-loader check: --data DIR (or --list FILE) is required\n");
        return EXIT_USAGE;
    }
    char err[DATASET_ERR_LEN];
    if (dataset_opts_check(&dso, err, sizeof err) != 0) {
        fprintf(stderr, "npid-loader check: %s\n", err);
        return EXIT_USAGE;
    }
    int all = strcmp(split, "all") == 0;
    if (!all && strcmp(split, "train") && strcmp(split, "test") && strcmp(split, "val")) {
        fprintf(stderr, "npid-loader check: --split %s: expected all, train or test\n", split);
        return EXIT_USAGE;
    }
    struct jpeg_limits lim;
    jpeg_limits_default(&lim);
    lim.max_width = lim.max_height = (uint32_t)max_side;
    lim.max_scans = (uint32_t)max_scans;
    struct jpeg_dec *dec = jpeg_dec_new(&lim);
    if (!dec) {
        log_error("out of memory");
        return EXIT_FAIL;
    }
    uint64_t t0 = clock_now_ns();
    struct check_totals tot = { 0 };
    int failed = 0;
    if (all) {
        /* the test split's labels come from the train split: without it, stop */
        failed = check_split(data, "train", &dso, dec, (uint32_t)min_side, &tot) != 0;
        if (failed)
            goto out;
        if (dataset_split_exists(data, "test", &dso))
            failed |= check_split(data, "test", &dso, dec, (uint32_t)min_side, &tot) != 0;
        else
            log_info("no test split (no test/ or val/ directory, binary test file or --test-list)");
        printf("{\"split\": \"all\", \"images\": %zu, \"ok\": %zu, \"bad\": %zu, \"skipped\": "
               "%zu, \"seconds\": %.3f}\n", tot.images, tot.images - tot.bad, tot.bad,
               tot.skipped, (clock_now_ns() - t0) / 1e9);
    } else {
        failed = check_split(data, split, &dso, dec, (uint32_t)min_side, &tot) != 0;
    }
out:
    jpeg_dec_destroy(&dec);
    if (fflush(stdout) != 0 || failed)
        return EXIT_FAIL;
    return strict && tot.bad ? EXIT_FAIL : EXIT_OK;
}

/* Applies one request: op and its arguments (argv-style, without the image size), to the
 * w x h image img (may be replaced). On success *res / *res_len hold the result (img or a
 * new buffer in *owned). Returns 0, or -1 with a reason on stderr. */
static int pixop_one(int argc, char **argv, long w, long h, uint8_t *img, uint8_t **res,
                     size_t *res_len, uint8_t **owned)
{
    const char *op = argv[0];
    size_t n = (size_t)w * (size_t)h;
    double f = argc > 1 ? strtod(argv[1], NULL) : 0;
    *res = img;
    *res_len = n * 3;
    *owned = NULL;
    if (strcmp(op, "resize") == 0 && argc == 7) {
        long a[6];
        for (int i = 0; i < 6; i++)
            a[i] = strtol(argv[1 + i], NULL, 10);
        if (a[0] < 0 || a[1] < 0 || a[2] < 1 || a[3] < 1 || a[0] + a[2] > w || a[1] + a[3] > h ||
            a[4] < 1 || a[5] < 1 || a[4] > 16384 || a[5] > 16384) {
            fprintf(stderr, "npid-loader _pixop: bad box\n");
            return -1;
        }
        uint8_t *out = malloc((size_t)a[4] * (size_t)a[5] * 3);
        if (!out)
            return -1;
        augment_resize_box(NULL, img, (uint32_t)w, (uint32_t)h, (uint32_t)a[0], (uint32_t)a[1],
                           (uint32_t)a[2], (uint32_t)a[3], out, (uint32_t)a[4], (uint32_t)a[5]);
        *res = *owned = out;
        *res_len = (size_t)a[4] * (size_t)a[5] * 3;
    } else if (strcmp(op, "brightness") == 0 && argc == 2) {
        augment_brightness(img, n, (float)f);
    } else if (strcmp(op, "contrast") == 0 && argc == 2) {
        augment_contrast(img, n, (float)f);
    } else if (strcmp(op, "saturation") == 0 && argc == 2) {
        augment_saturation(img, n, (float)f);
    } else if (strcmp(op, "hue") == 0 && argc == 2) {
        augment_hue(img, n, (float)f);
    } else if (strcmp(op, "grayscale") == 0 && argc == 1) {
        augment_grayscale(img, n);
    } else if (strcmp(op, "flip") == 0 && argc == 1) {
        augment_flip(img, (uint32_t)w, (uint32_t)h);
    } else if (strcmp(op, "blur") == 0 && argc == 3) {
        char *e = NULL;
        long k = strtol(argv[1], &e, 10);
        double sigma = strtod(argv[2], NULL);
        if (*e || k < 1 || k > 1023 || k % 2 == 0 || !(sigma > 0 && sigma < 1e6)) {
            fprintf(stderr, "npid-loader _pixop: blur: expected an odd kernel side 1..1023 and "
                            "sigma > 0\n");
            return -1;
        }
        augment_blur(NULL, img, (uint32_t)w, (uint32_t)h, (uint32_t)k, (float)sigma);
    } else if (strcmp(op, "test") == 0 && argc == 3) {
        struct augment_params p;
        if (augment_preset(argv[1], 0, (uint32_t)strtoul(argv[2], NULL, 10), AUGMENT_HWC, &p)) {
            fprintf(stderr, "npid-loader _pixop: unknown preset\n");
            return -1;
        }
        struct augment *a = augment_new(&p);
        if (!a) {
            fprintf(stderr, "npid-loader _pixop: bad params\n");
            return -1;
        }
        uint8_t *out = malloc(augment_out_bytes(a));
        if (!out) {
            augment_destroy(&a);
            return -1;
        }
        augment_apply(a, img, (uint32_t)w, (uint32_t)h, NULL, out, NULL);
        *res = *owned = out;
        *res_len = augment_out_bytes(a);
        augment_destroy(&a);
    } else {
        fprintf(stderr, "npid-loader _pixop: unknown op or wrong arguments: %s\n", op);
        return -1;
    }
    return 0;
}

/* npid-loader _pixop: a stream of requests on stdin, each a text line
 *   "OP W H [ARGS]\n" followed by W*H*3 bytes of packed RGB,
 * answered on stdout by the resulting bytes (their size follows from the request). Ops:
 *   resize X Y CW CH DW DH   crop box resized (Pillow bilinear) to DW x DH
 *   brightness|contrast|saturation F, hue SHIFT, grayscale, flip
 *   blur K SIGMA             Gaussian blur, K x K kernel (odd), standard deviation SIGMA
 *   test PRESET SIZE         the preset's test transform (HWC)
 * Ends at end of input (exit 0) or at the first bad request (exit 2). */
int loader_pixop_main(int argc, char **argv)
{
    (void)argv;
    if (argc != 1) {
        fprintf(stderr, "usage: npid-loader _pixop < requests > results\n");
        return EXIT_USAGE;
    }
    char line[512];
    while (fgets(line, sizeof line, stdin)) {
        char *args[16];
        int na = 0;
        for (char *tok = strtok(line, " \n"); tok && na < 16; tok = strtok(NULL, " \n"))
            args[na++] = tok;
        if (na < 3) {
            fprintf(stderr, "npid-loader _pixop: bad request line\n");
            return EXIT_USAGE;
        }
        long w = strtol(args[1], NULL, 10), h = strtol(args[2], NULL, 10);
        if (w < 1 || h < 1 || w > 16384 || h > 16384) {
            fprintf(stderr, "npid-loader _pixop: bad size\n");
            return EXIT_USAGE;
        }
        size_t bytes = (size_t)w * (size_t)h * 3;
        uint8_t *img = malloc(bytes);
        if (!img || fread(img, 1, bytes, stdin) != bytes) {
            fprintf(stderr, "npid-loader _pixop: short input\n");
            free(img);
            return EXIT_USAGE;
        }
        args[2] = args[0]; /* op followed by its arguments */
        uint8_t *res, *owned;
        size_t res_len;
        if (pixop_one(na - 2, args + 2, w, h, img, &res, &res_len, &owned)) {
            free(img);
            return EXIT_USAGE;
        }
        size_t wrote = fwrite(res, 1, res_len, stdout);
        free(owned);
        free(img);
        if (wrote != res_len || fflush(stdout) != 0)
            return EXIT_FAIL;
    }
    return EXIT_OK;
}
