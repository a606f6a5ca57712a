/* `npid-loader synth`: a procedurally generated ImageFolder dataset of JPEGs, so npid can run
 * and visibly learn with no download.
 *
 * Ten classes, told apart by shape or texture rather than colour: checker, circle, cross,
 * dots, hstripes, ring, square, star, triangle, vstripes. Every image draws its own
 * foreground and background colours (kept apart in luma so grayscale keeps the shape), a
 * background gradient, position, scale, rotation (shapes) or period and phase (textures),
 * and pixel noise; edges are anti-aliased by 4x4 supersampling. Image k of split s is
 * generated from rng_derive(seed, s, k), so the dataset is reproducible byte for byte. */
#include "loader/loader.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cfg.h"
#include "common/dataset.h"
#include "common/durable.h"
#include "common/jpeg.h"
#include "common/log.h"
#include "common/rng.h"

enum { C_CHECKER, C_CIRCLE, C_CROSS, C_DOTS, C_HSTRIPES, C_RING, C_SQUARE, C_STAR, C_TRIANGLE,
       C_VSTRIPES, N_CLASSES };
static const char *const class_names[N_CLASSES] = {
    "checker", "circle", "cross", "dots", "hstripes", "ring", "square", "star", "triangle",
    "vstripes",
};

struct shape {
    int cls;
    double cx, cy, r, cos_t, sin_t;   /* shapes: centre, radius, rotation */
    double period, px, py;            /* textures: period and phase */
    double x0, y0, x1, y1;            /* textures: covered rectangle */
};

static double luma_of(const double c[3])
{
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
}

static double frac(double x)
{
    return x - floor(x);
}

/* 1 when the point (x, y) (pixels) is foreground. */
static int inside(const struct shape *s, double x, double y)
{
    if (s->cls == C_CHECKER || s->cls == C_DOTS || s->cls == C_HSTRIPES || s->cls == C_VSTRIPES) {
        if (x < s->x0 || x > s->x1 || y < s->y0 || y > s->y1)
            return 0;
        double p = s->period;
        double fx = (x + s->px) / p, fy = (y + s->py) / p;
        switch (s->cls) {
        case C_CHECKER:
            return (((long)floor(fx) + (long)floor(fy)) & 1) == 0;
        case C_HSTRIPES:
            return frac(fy) < 0.5;
        case C_VSTRIPES:
            return frac(fx) < 0.5;
        default: { /* dots */
            double dx = frac(fx) - 0.5, dy = frac(fy) - 0.5;
            return dx * dx + dy * dy < 0.09;
        }
        }
    }
    double dx = (x - s->cx) / s->r, dy = (y - s->cy) / s->r;
    double u = dx * s->cos_t + dy * s->sin_t, v = -dx * s->sin_t + dy * s->cos_t;
    double rho2 = u * u + v * v;
    switch (s->cls) {
    case C_CIRCLE:
        return rho2 <= 1.0;
    case C_RING:
        return rho2 <= 1.0 && rho2 >= 0.36;
    case C_SQUARE:
        return fabs(u) <= 0.8 && fabs(v) <= 0.8;
    case C_CROSS:
        return (fabs(u) <= 0.3 && fabs(v) <= 1.0) || (fabs(v) <= 0.3 && fabs(u) <= 1.0);
    case C_TRIANGLE: {
        /* vertices at angles 90, 210, 330 degrees on the unit circle */
        static const double vx[3] = { 0.0, -0.8660254, 0.8660254 }, vy[3] = { -1.0, 0.5, 0.5 };
        int pos = 0, neg = 0;
        for (int i = 0; i < 3; i++) {
            int j = (i + 1) % 3;
            double c = (vx[j] - vx[i]) * (v - vy[i]) - (vy[j] - vy[i]) * (u - vx[i]);
            pos += c > 0;
            neg += c < 0;
        }
        return !(pos && neg);
    }
    case C_STAR: {
        double a = atan2(v, u);
        double lim = 0.42 + 0.58 * pow(fabs(cos(2.5 * a)), 3.0);
        return rho2 <= lim * lim;
    }
    }
    return 0;
}

static void random_colour(struct rng *r, double c[3])
{
    for (int k = 0; k < 3; k++)
        c[k] = 255.0 * rng_double(r);
}

/* Renders image k of a class into rgb (S x S x 3). */
static void render(struct rng *r, int cls, uint32_t S, uint8_t *rgb)
{
    struct shape s;
    memset(&s, 0, sizeof s);
    s.cls = cls;
    double fg[3], bg[3], bg2[3];
    /* colours: at least 60 luma levels apart so the class survives grayscale */
    for (int tries = 0; tries < 100; tries++) {
        random_colour(r, fg);
        random_colour(r, bg);
        if (fabs(luma_of(fg) - luma_of(bg)) >= 60)
            break;
    }
    for (int k = 0; k < 3; k++)
        bg2[k] = fmin(255, fmax(0, bg[k] + (rng_double(r) - 0.5) * 80));
    double grad_angle = rng_double(r) * 2 * M_PI;
    double gx = cos(grad_angle), gy = sin(grad_angle);
    double sz = S;
    s.r = sz * (0.22 + 0.2 * rng_double(r));
    s.cx = s.r * 0.8 + (sz - 1.6 * s.r) * rng_double(r);
    s.cy = s.r * 0.8 + (sz - 1.6 * s.r) * rng_double(r);
    double th = (cls == C_SQUARE || cls == C_CROSS) ? (rng_double(r) - 0.5) * 0.5
                                                     : rng_double(r) * 2 * M_PI;
    s.cos_t = cos(th);
    s.sin_t = sin(th);
    s.period = sz * (0.12 + 0.14 * rng_double(r));
    if (s.period < 3)
        s.period = 3;
    s.px = rng_double(r) * s.period;
    s.py = rng_double(r) * s.period;
    double cover = 0.6 + 0.4 * rng_double(r);
    double wdt = sz * cover, hgt = sz * (0.6 + 0.4 * rng_double(r));
    s.x0 = (sz - wdt) * rng_double(r);
    s.y0 = (sz - hgt) * rng_double(r);
    s.x1 = s.x0 + wdt;
    s.y1 = s.y0 + hgt;
    double noise = 4 + 8 * rng_double(r);
    for (uint32_t y = 0; y < S; y++) {
        for (uint32_t x = 0; x < S; x++) {
            int hits = 0;
            for (int sy = 0; sy < 4; sy++)
                for (int sx = 0; sx < 4; sx++)
                    hits += inside(&s, x + (sx + 0.5) / 4.0, y + (sy + 0.5) / 4.0);
            double a = hits / 16.0;
            double t = ((x - sz / 2) * gx + (y - sz / 2) * gy) / sz + 0.5;
            uint8_t *p = rgb + ((size_t)y * S + x) * 3;
            for (int k = 0; k < 3; k++) {
                double b = bg[k] * (1 - t) + bg2[k] * t;
                double v = b * (1 - a) + fg[k] * a + (rng_double(r) - 0.5) * 2 * noise;
                p[k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5);
            }
        }
    }
}

static int write_split(const char *out, const char *split, uint32_t per_class, uint32_t S,
                       uint64_t seed, int quality, uint64_t stream)
{
    char path[4096];
    uint8_t *rgb = malloc((size_t)S * S * 3);
    if (!rgb) {
        log_error("out of memory");
        return -1;
    }
    for (int c = 0; c < N_CLASSES; c++) {
        snprintf(path, sizeof path, "%s/%s/%s", out, split, class_names[c]);
        if (mkdir_p(path)) {
            log_error("cannot create %s: %s", path, strerror(errno));
            free(rgb);
            return -1;
        }
        for (uint32_t k = 0; k < per_class; k++) {
            struct rng r = rng_derive(seed, stream, (uint64_t)c * 1000003u + k);
            render(&r, c, S, rgb);
            uint8_t *jpg;
            size_t len;
            if (jpeg_encode_rgb(rgb, S, S, quality, &jpg, &len)) {
                log_error("JPEG encoding failed");
                free(rgb);
                return -1;
            }
            snprintf(path, sizeof path, "%s/%s/%s/%05u.jpg", out, split, class_names[c], k);
            FILE *f = fopen(path, "wb");
            int ok = f && fwrite(jpg, 1, len, f) == len;
            if (f && fclose(f) != 0)
                ok = 0;
            free(jpg);
            if (!ok) {
                log_error("cannot write %s: %s", path, strerror(errno));
                free(rgb);
                return -1;
            }
        }
    }
    free(rgb);
    return 0;
}

int loader_synth_main(int argc, char **argv)
{
    const char *out, *level;
    uint64_t per_class, test_per_class, size, seed, quality;
    struct cfg_opt opts[] = {
        { "out", NULL, CFG_STR, &out, NULL, 0, 0, "output directory (created)", 0 },
        { "per-class", NULL, CFG_U64, &per_class, "500", 1, 1000000, "train images per class", 0 },
        { "test-per-class", NULL, CFG_U64, &test_per_class, "100", 0, 1000000,
          "test images per class", 0 },
        { "size", NULL, CFG_U64, &size, "32", 8, 1024, "image side in pixels", 0 },
        { "seed", NULL, CFG_U64, &seed, "1", 0, 0, "generator seed", 0 },
        { "quality", NULL, CFG_U64, &quality, "90", 1, 100, "JPEG quality", 0 },
        { "log-level", "NPID_LOG_LEVEL", CFG_STR, &level, "info", 0, 0,
          "debug, info, warn or error", 0 },
        { 0 }
    };
    int npos;
    int rc = cfg_parse("npid-loader synth", "--out DIR [options]", opts, argc, argv, &npos);
    if (rc == CFG_HELP)
        return EXIT_OK;
    if (rc != CFG_OK)
        return EXIT_USAGE;
    if (npos > 0) {
        fprintf(stderr, "npid-loader synth: unexpected argument '%s'\n", argv[1]);
        return EXIT_USAGE;
    }
    int lvl = log_level_parse(level);
    if (lvl < 0) {
        fprintf(stderr, "npid-loader synth: --log-level: unknown level '%s'\n", level);
        return EXIT_USAGE;
    }
    log_set_level(lvl);
    if (!out || !*out) {
        fprintf(stderr, "npid-loader synth: --out DIR is required\n");
        return EXIT_USAGE;
    }
    if (write_split(out, "train", (uint32_t)per_class, (uint32_t)size, seed, (int)quality, 0))
        return EXIT_FAIL;
    if (test_per_class &&
        write_split(out, "test", (uint32_t)test_per_class, (uint32_t)size, seed, (int)quality, 1))
        return EXIT_FAIL;
    char err[DATASET_ERR_LEN];
    struct dataset *ds = dataset_open(out, "train", err, sizeof err);
    if (!ds) {
        log_error("the written dataset does not open: %s", err);
        return EXIT_FAIL;
    }
    printf("{\"out\": \"%s\", \"classes\": %d, \"train\": %zu, \"test\": %llu, \"size\": %llu, "
           "\"manifest\": \"%s\"}\n",
           out, N_CLASSES, dataset_count(ds),
           (unsigned long long)(test_per_class * N_CLASSES), (unsigned long long)size,
           dataset_manifest(ds));
    dataset_destroy(&ds);
    return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
}
