/* npid-pixop: applies deterministic augmentation primitives (common/augment.h) to a stream
 * of raw RGB requests on stdin, so that tests/it_loader_pil.sh can compare them with Pillow
 * and torchvision byte by byte. A test helper (built by `make check`, not installed).
 *
 * Requests: a text line "OP W H [ARGS]\n" followed by W*H*3 bytes of packed RGB, answered
 * on stdout by the resulting bytes (their size follows from the request). Ops:
 *   resize X Y CW CH DW DH   crop box resized (Pillow bilinear) to DW x DH
 *   brightness|contrast|saturation F, hue SHIFT, grayscale, flip
 *   blur K SIGMA             Gaussian blur, K x K kernel (odd), standard deviation SIGMA
 *   test PRESET SIZE         the preset's test transform (HWC)
 * File requests, a line without pixels: "file PATH DCT crop X Y CW CH SIZE" (the crop box of
 * the file, in its own pixels, resized to SIZE x SIZE) or "file PATH DCT test PRESET SIZE"
 * (the preset's test transform), decoded as the batcher decodes (image_decode_pick) at the
 * scale augment_scale_denom gives when DCT is 1, at full size when 0; answered by the
 * SIZE x SIZE x 3 bytes (HWC) and one byte, the denominator used.
 * Ends at end of input (exit 0), at the first bad request (exit 2, reason on stderr) or when
 * stdout fails (exit 1). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/augment.h"
#include "common/image.h"
#include "common/log.h"

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
            fprintf(stderr, "npid-pixop: bad box\n");
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
            fprintf(stderr, "npid-pixop: blur: expected an odd kernel side 1..1023 and "
                            "sigma > 0\n");
            return -1;
        }
        augment_blur(NULL, img, (uint32_t)w, (uint32_t)h, (uint32_t)k, (float)sigma);
    } else if (strcmp(op, "test") == 0 && argc == 3) {
        struct augment_params p;
        if (augment_preset(argv[1], 0, (uint32_t)strtoul(argv[2], NULL, 10), AUGMENT_HWC, &p)) {
            fprintf(stderr, "npid-pixop: unknown preset\n");
            return -1;
        }
        struct augment *a = augment_new(&p);
        if (!a) {
            fprintf(stderr, "npid-pixop: bad params\n");
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
        fprintf(stderr, "npid-pixop: unknown op or wrong arguments: %s\n", op);
        return -1;
    }
    return 0;
}

/* The geometry of a file request, set once the decoder knows the file's size. */
struct file_req {
    struct augment_params p;
    struct augment_draw d;
    uint32_t box[4];        /* crop: x, y, cw, ch */
    int dct, bad_box;
};

static uint32_t file_pick(void *ctx, uint32_t w, uint32_t h, struct jpeg_region *roi)
{
    struct file_req *q = ctx;
    if (!q->p.train) {
        augment_geometry(&q->p, NULL, w, h, &q->d);
    } else {
        memset(&q->d, 0, sizeof q->d);
        q->d.brightness = q->d.contrast = q->d.saturation = 1;
        uint32_t *b = q->box;
        q->bad_box = b[2] < 1 || b[3] < 1 || b[0] > w - b[2] || b[1] > h - b[3] || b[2] > w ||
                     b[3] > h;
        if (q->bad_box)
            return 1;
        q->d.crop_x = b[0], q->d.crop_y = b[1], q->d.crop_w = b[2], q->d.crop_h = b[3];
        *roi = (struct jpeg_region){ b[0], b[1], b[0] + b[2], b[1] + b[3] };
    }
    return q->dct ? augment_scale_denom(&q->p, &q->d, w, h) : 1;
}

/* A file request (argv-style, from "file"); writes the answer to stdout. 0, or -1 with a
 * reason on stderr. */
static int pixop_file(int argc, char **argv)
{
    struct file_req q = { .dct = argc > 2 && strcmp(argv[2], "1") == 0 };
    int crop = argc == 9 && strcmp(argv[3], "crop") == 0;
    if (crop) {
        uint32_t size = (uint32_t)strtoul(argv[8], NULL, 10);
        if (augment_preset("imagenet", 1, size, AUGMENT_HWC, &q.p))
            return -1;
        q.p.brightness = q.p.contrast = q.p.saturation = q.p.hue = 0;
        q.p.gray_p = 0;
        q.p.flip = 0;
        for (int i = 0; i < 4; i++)
            q.box[i] = (uint32_t)strtoul(argv[4 + i], NULL, 10);
    } else if (!(argc == 6 && strcmp(argv[3], "test") == 0 &&
                 augment_preset(argv[4], 0, (uint32_t)strtoul(argv[5], NULL, 10), AUGMENT_HWC,
                                &q.p) == 0)) {
        fprintf(stderr, "npid-pixop: file: expected PATH DCT crop X Y CW CH SIZE or "
                        "PATH DCT test PRESET SIZE\n");
        return -1;
    }
    struct augment *a = augment_new(&q.p);
    struct jpeg_dec *dec = jpeg_dec_new(NULL);
    uint8_t *out = a ? malloc(augment_out_bytes(a) + 1) : NULL;
    FILE *f = fopen(argv[1], "rb");
    int rc = -1;
    long len = -1;
    if (!a || !dec || !out || !f || fseek(f, 0, SEEK_END) || (len = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET)) {
        fprintf(stderr, "npid-pixop: file %s: cannot open or set up\n", argv[1]);
        goto out;
    }
    uint8_t *buf = jpeg_dec_file_buffer(dec, (size_t)len);
    if (!buf || fread(buf, 1, (size_t)len, f) != (size_t)len) {
        fprintf(stderr, "npid-pixop: file %s: read failed\n", argv[1]);
        goto out;
    }
    struct jpeg_image img;
    char err[256];
    if (image_decode_pick(dec, buf, (size_t)len, file_pick, &q, &img, err, sizeof err) ||
        q.bad_box) {
        fprintf(stderr, "npid-pixop: file %s: %s\n", argv[1], q.bad_box ? "bad box" : err);
        goto out;
    }
    struct rng r = rng_derive(0, 0, 0); /* drawn from for the (disabled) jitter only */
    augment_apply_scaled(a, img.pix, img.w, img.h, img.scale_denom, img.src_w, img.src_h, &r,
                         out, &q.d);
    out[augment_out_bytes(a)] = (uint8_t)img.scale_denom;
    if (fwrite(out, 1, augment_out_bytes(a) + 1, stdout) == augment_out_bytes(a) + 1 &&
        fflush(stdout) == 0)
        rc = 0;
out:
    if (f)
        fclose(f);
    free(out);
    jpeg_dec_destroy(&dec);
    augment_destroy(&a);
    return rc;
}

#define USAGE "usage: npid-pixop < requests > results\n"

int main(int argc, char **argv)
{
    log_init("npid-pixop");
    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        fputs(USAGE, stdout);
        return EXIT_OK;
    }
    if (argc != 1) {
        fputs(USAGE, stderr);
        return EXIT_USAGE;
    }
    char line[512];
    while (fgets(line, sizeof line, stdin)) {
        char *args[16];
        int na = 0;
        for (char *tok = strtok(line, " \n"); tok && na < 16; tok = strtok(NULL, " \n"))
            args[na++] = tok;
        if (na >= 1 && strcmp(args[0], "file") == 0) {
            if (pixop_file(na, args))
                return EXIT_USAGE;
            continue;
        }
        if (na < 3) {
            fprintf(stderr, "npid-pixop: bad request line\n");
            return EXIT_USAGE;
        }
        long w = strtol(args[1], NULL, 10), h = strtol(args[2], NULL, 10);
        if (w < 1 || h < 1 || w > 16384 || h > 16384) {
            fprintf(stderr, "npid-pixop: bad size\n");
            return EXIT_USAGE;
        }
        size_t bytes = (size_t)w * (size_t)h * 3;
        uint8_t *img = malloc(bytes);
        if (!img || fread(img, 1, bytes, stdin) != bytes) {
            fprintf(stderr, "npid-pixop: short input\n");
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
