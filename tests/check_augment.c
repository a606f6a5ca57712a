/* Augmentations: the deterministic pieces against plain reference loops (crop + bilinear
 * resize, Gaussian blur, grayscale, flip, layout), known-answer colour cases, and the random
 * draws' distributions over thousands of samples (crop area and aspect, jitter factors and
 * order, grayscale, flip and blur rates, blur sigma). Exactness against Pillow and
 * torchvision themselves is tests/it_loader_pil.sh. */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/augment.h"
#include "common/rng.h"

static uint8_t *random_image(uint32_t w, uint32_t h, uint64_t seed)
{
    uint8_t *p = malloc((size_t)w * h * 3);
    struct rng r;
    rng_seed(&r, seed);
    for (size_t i = 0; i < (size_t)w * h * 3; i++)
        p[i] = (uint8_t)rng_below(&r, 256);
    return p;
}

/* Plain reference: Pillow's bilinear resample written as directly as possible (full
 * coefficient matrices, no windows, no reuse). */
static void ref_weights(int in, int out, double *wt /* out x in */)
{
    double scale = (double)in / out, fscale = scale < 1 ? 1 : scale, support = fscale;
    for (int o = 0; o < out; o++) {
        double center = (o + 0.5) * scale, sum = 0;
        int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);
        if (lo < 0)
            lo = 0;
        if (hi > in)
            hi = in;
        for (int i = 0; i < in; i++) {
            double v = 0;
            if (i >= lo && i < hi) {
                double x = fabs((i - center + 0.5) / fscale);
                v = x < 1 ? 1 - x : 0;
            }
            wt[(size_t)o * in + i] = v;
            sum += v;
        }
        for (int i = 0; i < in; i++)
            if (sum != 0)
                wt[(size_t)o * in + i] /= sum;
    }
}

static int fixed(double v)
{
    return v < 0 ? (int)(-0.5 + v * (1 << 22)) : (int)(0.5 + v * (1 << 22));
}

static uint8_t clamp_shift(long v)
{
    v >>= 22;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

static void ref_resize(const uint8_t *src, int sw, int x0, int y0, int cw, int ch, uint8_t *dst,
                       int dw, int dh)
{
    double *wx = malloc(sizeof(double) * dw * cw), *wy = malloc(sizeof(double) * dh * ch);
    uint8_t *tmp = malloc((size_t)dw * ch * 3);
    ref_weights(cw, dw, wx);
    ref_weights(ch, dh, wy);
    int hpass = dw != cw, vpass = dh != ch;
    for (int y = 0; y < ch; y++)
        for (int x = 0; x < dw; x++)
            for (int c = 0; c < 3; c++) {
                if (!hpass) {
                    tmp[((size_t)y * dw + x) * 3 + c] = src[((size_t)(y + y0) * sw + x0 + x) * 3 + c];
                    continue;
                }
                long acc = 1 << 21;
                for (int i = 0; i < cw; i++)
                    acc += (long)src[((size_t)(y + y0) * sw + x0 + i) * 3 + c] * fixed(wx[(size_t)x * cw + i]);
                tmp[((size_t)y * dw + x) * 3 + c] = clamp_shift(acc);
            }
    for (int y = 0; y < dh; y++)
        for (int x = 0; x < dw; x++)
            for (int c = 0; c < 3; c++) {
                if (!vpass) {
                    dst[((size_t)y * dw + x) * 3 + c] = tmp[((size_t)y * dw + x) * 3 + c];
                    continue;
                }
                long acc = 1 << 21;
                for (int i = 0; i < ch; i++)
                    acc += (long)tmp[((size_t)i * dw + x) * 3 + c] * fixed(wy[(size_t)y * ch + i]);
                dst[((size_t)y * dw + x) * 3 + c] = clamp_shift(acc);
            }
    free(wx);
    free(wy);
    free(tmp);
}

START_TEST(test_resize_matches_reference)
{
    struct rng r;
    rng_seed(&r, 7);
    struct augment_params p;
    augment_preset("cifar", 1, 32, AUGMENT_HWC, &p);
    struct augment *a = augment_new(&p);
    ck_assert_ptr_nonnull(a);
    for (int t = 0; t < 300; t++) {
        uint32_t w = 1 + (uint32_t)rng_below(&r, 90), h = 1 + (uint32_t)rng_below(&r, 90);
        uint8_t *src = random_image(w, h, (uint64_t)t);
        uint32_t x = (uint32_t)rng_below(&r, w), y = (uint32_t)rng_below(&r, h);
        uint32_t cw = 1 + (uint32_t)rng_below(&r, w - x), ch = 1 + (uint32_t)rng_below(&r, h - y);
        uint32_t dw = 1 + (uint32_t)rng_below(&r, 70), dh = 1 + (uint32_t)rng_below(&r, 70);
        if (t % 5 == 0)
            dw = cw; /* vertical-only */
        if (t % 7 == 0)
            dh = ch; /* horizontal-only */
        uint8_t *got = malloc((size_t)dw * dh * 3), *want = malloc((size_t)dw * dh * 3);
        augment_resize_box(t % 2 ? a : NULL, src, w, h, x, y, cw, ch, got, dw, dh);
        ref_resize(src, (int)w, (int)x, (int)y, (int)cw, (int)ch, want, (int)dw, (int)dh);
        ck_assert_msg(memcmp(got, want, (size_t)dw * dh * 3) == 0,
                      "case %d: %ux%u box %u,%u %ux%u -> %ux%u differs", t, w, h, x, y, cw, ch,
                      dw, dh);
        free(got);
        free(want);
        free(src);
    }
    augment_destroy(&a);
    ck_assert_ptr_null(a);
}
END_TEST

/* Plain reference for augment_blur: the 2-D kernel (outer product of the normalised 1-D
 * Gaussian) in double precision, a reflect-padded copy of the image (pad < side), direct 2-D
 * convolution, round half to even, clamp. */
static void ref_blur(const uint8_t *src, int w, int h, int k, double sigma, uint8_t *dst)
{
    int r = k / 2, pw = w + 2 * r, ph = h + 2 * r;
    double *k1 = malloc(sizeof(double) * k), *k2 = malloc(sizeof(double) * k * k), sum = 0;
    double *pad = malloc(sizeof(double) * pw * ph * 3);
    for (int i = 0; i < k; i++) {
        double x = i - (k - 1) / 2.0;
        k1[i] = exp(-x * x / (2 * sigma * sigma));
        sum += k1[i];
    }
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++)
            k2[i * k + j] = k1[i] / sum * (k1[j] / sum);
    for (int y = 0; y < ph; y++)
        for (int x = 0; x < pw; x++) {
            int sy = y - r, sx = x - r;
            sy = sy < 0 ? -sy : sy >= h ? 2 * (h - 1) - sy : sy;
            sx = sx < 0 ? -sx : sx >= w ? 2 * (w - 1) - sx : sx;
            for (int c = 0; c < 3; c++)
                pad[((size_t)y * pw + x) * 3 + c] = src[((size_t)sy * w + sx) * 3 + c];
        }
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                double acc = 0;
                for (int i = 0; i < k; i++)
                    for (int j = 0; j < k; j++)
                        acc += k2[i * k + j] * pad[((size_t)(y + i) * pw + x + j) * 3 + c];
                double v = nearbyint(acc);
                dst[((size_t)y * w + x) * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
    free(k1);
    free(k2);
    free(pad);
}

/* A smooth image (gradients and a ripple, plus noise of +-noise levels): where blur results
 * sit between levels as in photographs, not only the averages of white noise. */
static uint8_t *smooth_image(uint32_t w, uint32_t h, int noise, uint64_t seed)
{
    uint8_t *p = malloc((size_t)w * h * 3);
    struct rng r;
    rng_seed(&r, seed);
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) {
                double v = c == 0 ? 255.0 * x / w : c == 1 ? 255.0 * y / h
                                                           : 127.5 + 127.5 * sin(0.7 * x + 0.4 * y);
                v += (double)rng_below(&r, 2 * (uint64_t)noise + 1) - noise;
                p[((size_t)y * w + x) * 3 + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
    return p;
}

/* augment_blur against ref_blur on random images, kernel sides and sigmas (the endpoints
 * 0.1 and 2 included). The float32 separable blur and the double 2-D reference agree after
 * rounding except where the exact value lies within float error (~1e-5 of a level) of a
 * half level: those bytes differ by 1 and are rare (29 of 2.47 million here, 1.2e-5; the
 * bound is 1e-4). Every other byte is exact. */
START_TEST(test_blur_matches_reference)
{
    struct rng r;
    rng_seed(&r, 15);
    struct augment_params p;
    augment_preset("cifar", 1, 64, AUGMENT_HWC, &p);
    p.blur_p = 1;
    struct augment *a = augment_new(&p);
    ck_assert_ptr_nonnull(a);
    size_t bytes = 0, off = 0;
    for (int t = 0; t < 400; t++) {
        uint32_t k = t % 4 == 0 ? augment_blur_ksize(8 + (uint32_t)rng_below(&r, 230))
                                : 1 + 2 * (uint32_t)rng_below(&r, 12);
        uint32_t lo = k / 2 + 1;
        uint32_t w = lo + (uint32_t)rng_below(&r, 80), h = lo + (uint32_t)rng_below(&r, 80);
        float sigma = t % 10 == 0 ? 0.1f : t % 10 == 1 ? 2.0f
                                          : (float)(0.1 + 1.9 * rng_double(&r));
        uint8_t *src = t % 2 ? random_image(w, h, (uint64_t)t)
                             : smooth_image(w, h, t % 4 ? 3 : 0, (uint64_t)t);
        size_t n = (size_t)w * h * 3;
        uint8_t *got = malloc(n), *want = malloc(n);
        memcpy(got, src, n);
        augment_blur(t % 3 ? a : NULL, got, w, h, k, sigma);
        ref_blur(src, (int)w, (int)h, (int)k, sigma, want);
        for (size_t i = 0; i < n; i++) {
            int dv = abs((int)got[i] - (int)want[i]);
            ck_assert_msg(dv <= 1, "case %d: %ux%u k %u sigma %g: byte %zu is %u, reference %u",
                          t, w, h, k, sigma, i, got[i], want[i]);
            off += dv;
        }
        bytes += n;
        if (sigma == 0.1f) /* neighbours weigh exp(-50): the identity */
            ck_assert_msg(memcmp(got, src, n) == 0, "case %d: sigma 0.1 is not the identity", t);
        free(got);
        free(want);
        free(src);
    }
    ck_assert_msg(off * 10000 < bytes, "%zu of %zu bytes off by one (more than 1e-4)", off, bytes);
    /* a constant image stays constant (the kernel sums to 1 within float error); a 1-pixel
     * side keeps its value whatever the kernel (reflection maps every tap to it) */
    uint8_t flat[20 * 9 * 3], one[3] = { 7, 130, 255 };
    memset(flat, 255, sizeof flat);
    augment_blur(a, flat, 20, 9, 7, 2.0f);
    for (size_t i = 0; i < sizeof flat; i++)
        ck_assert_uint_eq(flat[i], 255);
    augment_blur(a, one, 1, 1, 23, 2.0f);
    ck_assert(one[0] == 7 && one[1] == 130 && one[2] == 255);
    /* a 1 x 6 column blurs down as three equal columns do (across, they average to
     * themselves), and its rows reflect as usual */
    uint8_t *col = random_image(1, 6, 77), wide[3 * 6 * 3], want[3 * 6 * 3];
    for (int y = 0; y < 6; y++)
        for (int x = 0; x < 3; x++)
            memcpy(wide + (y * 3 + x) * 3, col + y * 3, 3);
    augment_blur(a, col, 1, 6, 3, 1.3f);
    ref_blur(wide, 3, 6, 3, 1.3f, want);
    for (int y = 0; y < 6; y++)
        for (int c = 0; c < 3; c++)
            ck_assert(abs((int)col[y * 3 + c] - (int)want[y * 9 + c]) <= 1);
    free(col);
    augment_destroy(&a);
}
END_TEST

START_TEST(test_grayscale_flip_layout)
{
    uint32_t w = 37, h = 11;
    uint8_t *img = random_image(w, h, 3), *cp = malloc((size_t)w * h * 3);
    memcpy(cp, img, (size_t)w * h * 3);
    augment_grayscale(cp, (size_t)w * h);
    for (size_t i = 0; i < (size_t)w * h; i++) {
        const uint8_t *s = img + 3 * i;
        unsigned l = (s[0] * 19595u + s[1] * 38470u + s[2] * 7471u + 32768u) >> 16;
        /* and within rounding of the textbook weights */
        double lf = 0.299 * s[0] + 0.587 * s[1] + 0.114 * s[2];
        ck_assert_uint_eq(cp[3 * i], l);
        ck_assert_uint_eq(cp[3 * i + 1], l);
        ck_assert_uint_eq(cp[3 * i + 2], l);
        ck_assert(fabs(lf - l) <= 0.51);
    }
    memcpy(cp, img, (size_t)w * h * 3);
    augment_flip(cp, w, h);
    for (uint32_t y = 0; y < h; y++)
        for (uint32_t x = 0; x < w; x++)
            ck_assert(memcmp(cp + ((size_t)y * w + x) * 3, img + ((size_t)y * w + (w - 1 - x)) * 3, 3) == 0);
    augment_flip(cp, w, h);
    ck_assert(memcmp(cp, img, (size_t)w * h * 3) == 0);
    uint8_t *chw = malloc((size_t)w * h * 3);
    augment_hwc_to_chw(img, (size_t)w * h, chw);
    for (size_t i = 0; i < (size_t)w * h; i++)
        for (int c = 0; c < 3; c++)
            ck_assert_uint_eq(chw[(size_t)c * w * h + i], img[3 * i + c]);
    free(chw);
    free(cp);
    free(img);
}
END_TEST

START_TEST(test_colour_known_answers)
{
    uint8_t px[12] = { 255, 0, 0, 0, 255, 0, 10, 20, 30, 77, 77, 77 };
    uint8_t t[12];
    memcpy(t, px, 12);
    augment_brightness(t, 4, 1.0f);
    ck_assert(memcmp(t, px, 12) == 0);
    augment_brightness(t, 4, 2.0f);
    ck_assert_uint_eq(t[0], 255);
    ck_assert_uint_eq(t[6], 20);
    ck_assert_uint_eq(t[8], 60);
    memcpy(t, px, 12);
    augment_saturation(t, 4, 0.0f); /* -> greyscale */
    for (int i = 0; i < 4; i++) {
        ck_assert_uint_eq(t[3 * i], t[3 * i + 1]);
        ck_assert_uint_eq(t[3 * i], t[3 * i + 2]);
    }
    ck_assert_uint_eq(t[0], 76); /* L of pure red */
    memcpy(t, px, 12);
    augment_contrast(t, 4, 0.0f); /* -> the rounded mean luma everywhere */
    for (int i = 1; i < 12; i++)
        ck_assert_uint_eq(t[i], t[0]);
    memcpy(t, px, 12);
    augment_hue(t, 4, 1.0f / 3.0f); /* red -> green, green -> blue, grey unchanged */
    ck_assert(t[0] == 0 && t[1] == 255 && t[2] == 0);
    ck_assert(t[3] == 0 && t[4] == 0 && t[5] == 255);
    ck_assert(t[9] == 77 && t[10] == 77 && t[11] == 77);
}
END_TEST

START_TEST(test_crop_distribution)
{
    struct augment_params p;
    augment_preset("cifar", 1, 32, AUGMENT_HWC, &p);
    const uint32_t W = 300, H = 300;
    const int N = 40000;
    int low = 0, fallback = 0, area_bins[3] = { 0 }, ratio_bins[4] = { 0 };
    double lr0 = log(3.0 / 4.0), lr1 = log(4.0 / 3.0);
    for (int i = 0; i < N; i++) {
        struct rng r = rng_derive(11, 0, (uint64_t)i);
        struct augment_draw d;
        augment_crop_params(&p, &r, W, H, &d);
        ck_assert(d.crop_w >= 1 && d.crop_h >= 1);
        ck_assert(d.crop_x + d.crop_w <= W && d.crop_y + d.crop_h <= H);
        fallback += d.fallback;
        double area = (double)d.crop_w * d.crop_h / (W * H);
        ck_assert(area >= 0.19 && area <= 1.0);
        /* below 0.45 no draw can be rejected, so area | area < 0.45 is uniform on [0.2, 0.45]
         * and the log aspect ratio is uniform on [log 3/4, log 4/3] */
        if (area < 0.44 && area > 0.21) {
            low++;
            area_bins[(int)((area - 0.21) / (0.23 / 3.0)) % 3]++;
            double lr = log((double)d.crop_w / d.crop_h);
            int b = (int)((lr - lr0) / ((lr1 - lr0) / 4.0));
            ratio_bins[b < 0 ? 0 : b > 3 ? 3 : b]++;
        }
    }
    ck_assert_msg(fallback < N / 1000, "fallback used %d times", fallback);
    for (int b = 0; b < 3; b++)
        ck_assert_msg(fabs(area_bins[b] - low / 3.0) < 0.06 * low / 3.0, "area bin %d: %d of %d",
                      b, area_bins[b], low);
    for (int b = 0; b < 4; b++)
        ck_assert_msg(fabs(ratio_bins[b] - low / 4.0) < 0.08 * low / 4.0, "ratio bin %d: %d of %d",
                      b, ratio_bins[b], low);
    /* the share of draws below 0.44: P(accepted first try and s < 0.44) dominates: >= 0.29 */
    ck_assert(low > N * 0.27 && low < N * 0.40);
    /* a very wide image falls back to a centre crop of ratio 4/3 often enough to observe */
    int fb = 0;
    for (int i = 0; i < 2000; i++) {
        struct rng r = rng_derive(12, 0, (uint64_t)i);
        struct augment_draw d;
        augment_crop_params(&p, &r, 400, 10, &d);
        ck_assert(d.crop_x + d.crop_w <= 400 && d.crop_y + d.crop_h <= 10);
        if (d.fallback) {
            fb++;
            ck_assert_uint_eq(d.crop_h, 10);
            ck_assert_uint_eq(d.crop_w, 13);
            ck_assert_uint_eq(d.crop_x, (400 - 13) / 2);
        }
    }
    ck_assert(fb > 0);
}
END_TEST

START_TEST(test_jitter_gray_flip_distribution)
{
    struct augment_params p;
    augment_preset("imagenet", 1, 24, AUGMENT_CHW, &p);
    struct augment *a = augment_new(&p);
    uint8_t *src = random_image(40, 30, 5), out[24 * 24 * 3];
    const int N = 24000;
    double sum[4] = { 0 }, sq[4] = { 0 }, mn[4] = { 9, 9, 9, 9 }, mx[4] = { -9, -9, -9, -9 };
    int gray = 0, flip = 0, perms[24] = { 0 };
    for (int i = 0; i < N; i++) {
        struct augment_draw d;
        augment_apply_seeded(a, src, 40, 30, 99, 3, (uint64_t)i, out, &d);
        double v[4] = { d.brightness, d.contrast, d.saturation, d.hue };
        for (int k = 0; k < 4; k++) {
            sum[k] += v[k];
            sq[k] += v[k] * v[k];
            mn[k] = fmin(mn[k], v[k]);
            mx[k] = fmax(mx[k], v[k]);
        }
        gray += d.gray;
        flip += d.flip;
        /* rank the permutation */
        int code = 0, used[4] = { 0 };
        for (int k = 0; k < 4; k++) {
            int rank = 0;
            for (int m = 0; m < d.order[k]; m++)
                rank += !used[m];
            used[d.order[k]] = 1;
            code = code * (4 - k) + rank;
        }
        ck_assert(code >= 0 && code < 24);
        perms[code]++;
    }
    for (int k = 0; k < 4; k++) {
        double centre = k == 3 ? 0 : 1, half = 0.4;
        double mean = sum[k] / N, var = sq[k] / N - mean * mean;
        ck_assert_msg(fabs(mean - centre) < 0.01, "factor %d mean %f", k, mean);
        ck_assert_msg(fabs(var - (2 * half) * (2 * half) / 12) < 0.003, "factor %d var %f", k, var);
        ck_assert(mn[k] >= centre - half && mx[k] <= centre + half);
        ck_assert(mn[k] < centre - half + 0.01 && mx[k] > centre + half - 0.01);
    }
    ck_assert_msg(fabs(gray / (double)N - 0.2) < 0.012, "gray rate %f", gray / (double)N);
    ck_assert_msg(fabs(flip / (double)N - 0.5) < 0.015, "flip rate %f", flip / (double)N);
    for (int c = 0; c < 24; c++)
        ck_assert_msg(abs(perms[c] - N / 24) < N / 24 * 15 / 100, "permutation %d: %d", c, perms[c]);
    free(src);
    augment_destroy(&a);
}
END_TEST

/* blur=P: P = 0 draws nothing and changes nothing; P = 1 always blurs, after the other
 * operations and with their draws unchanged (the output is augment_blur of the P = 0 output,
 * kernel side from augment_blur_ksize); sigma is uniform on [0.1, 2]; P = 0.5 blurs half. */
START_TEST(test_blur_draws)
{
    ck_assert_uint_eq(augment_blur_ksize(1), 3);
    ck_assert_uint_eq(augment_blur_ksize(32), 3);
    ck_assert_uint_eq(augment_blur_ksize(39), 3);
    ck_assert_uint_eq(augment_blur_ksize(40), 5);
    ck_assert_uint_eq(augment_blur_ksize(64), 7);
    ck_assert_uint_eq(augment_blur_ksize(96), 9);
    ck_assert_uint_eq(augment_blur_ksize(224), 23);
    for (uint32_t s = 1; s < 1000; s++) { /* the odd number nearest s / 10, ties up, >= 3 */
        uint32_t k = augment_blur_ksize(s);
        ck_assert(k % 2 == 1 && k >= 3);
        ck_assert(k == 3 || fabs(k - s / 10.0) <= 1.0);
        ck_assert(fabs(k - s / 10.0) < 1.0 || k > s / 10.0);
    }
    static const struct { const char *preset; uint32_t size; enum augment_layout layout; } cfg[] = {
        { "cifar", 32, AUGMENT_HWC }, { "imagenet", 64, AUGMENT_CHW },
    };
    for (size_t c = 0; c < 2; c++) {
        struct augment_params p0, p1, ph, pz;
        char err[256];
        augment_preset(cfg[c].preset, 1, cfg[c].size, cfg[c].layout, &p0);
        pz = p1 = ph = p0;
        ck_assert_int_eq(augment_override(&pz, "blur=0", err, sizeof err), 0);
        ck_assert_int_eq(augment_override(&p1, "blur=1", err, sizeof err), 0);
        ck_assert_int_eq(augment_override(&ph, "blur=0.5", err, sizeof err), 0);
        ck_assert(p0.blur_p == 0 && memcmp(&pz, &p0, sizeof p0) == 0);
        struct augment *a0 = augment_new(&p0), *a1 = augment_new(&p1), *ah = augment_new(&ph);
        ck_assert(a0 && a1 && ah);
        uint32_t S = cfg[c].size, k = augment_blur_ksize(S);
        size_t n = (size_t)S * S * 3;
        uint8_t *src = smooth_image(90, 70, 10, 4), *o0 = malloc(n), *o1 = malloc(n),
                *oh = malloc(n), *hwc = malloc(n), *chw = malloc(n);
        const int N = 3000;
        int halves = 0;
        double sum = 0, mn = 9, mx = 0;
        for (int i = 0; i < N; i++) {
            struct augment_draw d0, d1, dh;
            augment_apply_seeded(a0, src, 90, 70, 3, 1, (uint64_t)i, o0, &d0);
            augment_apply_seeded(a1, src, 90, 70, 3, 1, (uint64_t)i, o1, &d1);
            augment_apply_seeded(ah, src, 90, 70, 3, 1, (uint64_t)i, oh, &dh);
            ck_assert(d0.blur == 0 && d0.blur_sigma == 0 && d1.blur == 1);
            float sigma = d1.blur_sigma;
            ck_assert(sigma >= 0.1f && sigma <= 2.0f);
            sum += sigma;
            mn = fmin(mn, sigma);
            mx = fmax(mx, sigma);
            d1.blur = 0;
            d1.blur_sigma = 0;
            ck_assert_msg(memcmp(&d0, &d1, sizeof d0) == 0, "image %d: blur=1 changed other draws",
                          i);
            /* o1 is the blur of o0 (both in the params' layout) */
            if (cfg[c].layout == AUGMENT_CHW)
                for (size_t j = 0; j < n / 3; j++)
                    for (int ch = 0; ch < 3; ch++)
                        hwc[3 * j + ch] = o0[ch * (n / 3) + j];
            else
                memcpy(hwc, o0, n);
            augment_blur(NULL, hwc, S, S, k, sigma);
            if (cfg[c].layout == AUGMENT_CHW) {
                augment_hwc_to_chw(hwc, n / 3, chw);
                ck_assert_msg(memcmp(chw, o1, n) == 0, "image %d: blur=1 is not blur(blur=0)", i);
            } else {
                ck_assert_msg(memcmp(hwc, o1, n) == 0, "image %d: blur=1 is not blur(blur=0)", i);
            }
            halves += dh.blur;
            ck_assert(dh.blur || memcmp(oh, o0, n) == 0);
        }
        double mean = sum / N;
        ck_assert_msg(fabs(mean - 1.05) < 0.04, "sigma mean %f", mean);
        ck_assert_msg(mn < 0.11 && mx > 1.99, "sigma range [%f, %f]", mn, mx);
        ck_assert_msg(abs(halves - N / 2) < N / 20, "blur=0.5 blurred %d of %d", halves, N);
        free(src);
        free(o0);
        free(o1);
        free(oh);
        free(hwc);
        free(chw);
        augment_destroy(&a0);
        augment_destroy(&a1);
        augment_destroy(&ah);
    }
}
END_TEST

START_TEST(test_determinism_and_presets)
{
    struct augment_params p;
    ck_assert_int_eq(augment_preset("cifar", 1, 0, AUGMENT_CHW, &p), 0);
    ck_assert_uint_eq(p.size, 32);
    ck_assert_int_eq(p.flip, 0);
    ck_assert_int_eq(augment_preset("nope", 1, 0, AUGMENT_CHW, &p), -1);
    augment_preset("cifar", 1, 32, AUGMENT_CHW, &p);
    struct augment *a = augment_new(&p), *b = augment_new(&p);
    uint8_t *src = random_image(32, 32, 8), o1[3072], o2[3072], o3[3072];
    augment_apply_seeded(a, src, 32, 32, 5, 1, 17, o1, NULL);
    augment_apply_seeded(b, src, 32, 32, 5, 1, 17, o2, NULL);
    augment_apply_seeded(a, src, 32, 32, 5, 1, 18, o3, NULL);
    ck_assert(memcmp(o1, o2, sizeof o1) == 0);
    ck_assert(memcmp(o1, o3, sizeof o1) != 0);
    augment_apply_seeded(a, src, 32, 32, 5, 2, 17, o3, NULL);
    ck_assert(memcmp(o1, o3, sizeof o1) != 0);
    augment_destroy(&a);
    augment_destroy(&b);
    /* cifar test transform: identity on 32x32 (CHW layout) */
    augment_preset("cifar", 0, 32, AUGMENT_CHW, &p);
    a = augment_new(&p);
    augment_apply(a, src, 32, 32, NULL, o1, NULL);
    for (size_t i = 0; i < 1024; i++)
        for (int c = 0; c < 3; c++)
            ck_assert_uint_eq(o1[c * 1024 + i], src[3 * i + c]);
    augment_destroy(&a);
    /* imagenet test transform: resize shorter side to 256/224*S, centre crop S */
    augment_preset("imagenet", 0, 56, AUGMENT_HWC, &p);
    ck_assert_uint_eq(p.test_resize, 64);
    a = augment_new(&p);
    uint8_t *big = random_image(100, 80, 9), *o = malloc(56 * 56 * 3);
    struct augment_draw d;
    augment_apply(a, big, 100, 80, NULL, o, &d);
    ck_assert_uint_eq(d.crop_w, 56);
    ck_assert_uint_eq(d.crop_x, 12); /* resized to 80x64: (80-56)/2 */
    ck_assert_uint_eq(d.crop_y, 4);
    free(o);
    free(big);
    augment_destroy(&a);
    /* bad params are refused */
    augment_preset("cifar", 1, 32, AUGMENT_CHW, &p);
    p.scale_min = 0;
    ck_assert_ptr_null(augment_new(&p));
    char err[128];
    ck_assert_int_eq(augment_params_check(&p, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "scale"));
    free(src);
}
END_TEST

/* augment_override: each key, the order of application, and the errors. */
START_TEST(test_override)
{
    struct augment_params p;
    char err[256];
    ck_assert_int_eq(augment_preset("cifar", 1, 32, AUGMENT_CHW, &p), 0);
    ck_assert_int_eq(augment_override(&p, "", err, sizeof err), 0);
    ck_assert(p.scale_min == 0.2f && p.flip == 0 && p.gray_p == 0.2f);
    ck_assert_int_eq(augment_override(&p, "crop=0.08-1,flip=1,gray=0.1,jitter=0.4/0.3/0.2/0.1",
                                      err, sizeof err), 0);
    ck_assert(p.scale_min == 0.08f && p.scale_max == 1.0f && p.flip == 1 && p.gray_p == 0.1f);
    ck_assert(p.brightness == 0.4f && p.contrast == 0.3f && p.saturation == 0.2f && p.hue == 0.1f);
    ck_assert_int_eq(augment_override(&p, "jitter=0,flip=0,jitter=0.25", err, sizeof err), 0);
    ck_assert(p.brightness == 0.25f && p.contrast == 0.25f && p.saturation == 0.25f &&
              p.hue == 0.25f && p.flip == 0);
    ck_assert(p.blur_p == 0);
    ck_assert_int_eq(augment_override(&p, "blur=0.5,gray=0", err, sizeof err), 0);
    ck_assert(p.blur_p == 0.5f && p.gray_p == 0);
    static const struct { const char *spec, *msg; } bad[] = {
        { "solarize=0.5", "unknown key 'solarize'" }, { "crop", "expected key=value" },
        { "crop=0.5", "malformed" },          { "crop=0.5-0.2", "crop scale range" },
        { "crop=0-1", "crop scale range" },   { "gray=1.5", "probabilit" },
        { "gray=x", "malformed" },            { "flip=2", "malformed" },
        { "jitter=0.4/0.4", "malformed" },    { "jitter=0.1/0.1/0.1/0.1/0.1", "malformed" },
        { "jitter=1.0", "colour jitter" },    { "jitter=0.4/0.4/0.4/0.6", "colour jitter" },
        { "gray=0.1,", "expected key=value" },
        { "blur=-0.1", "blur probability -0.1 not in [0,1]" },
        { "blur=1.5", "blur probability 1.5 not in [0,1]" },
        { "blur=x", "malformed" },            { "blur=", "malformed" },
        { "blur=nan", "malformed" },          { "blur=0.5x", "malformed" },
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        ck_assert_int_eq(augment_preset("cifar", 1, 32, AUGMENT_CHW, &p), 0);
        err[0] = 0;
        ck_assert_msg(augment_override(&p, bad[k].spec, err, sizeof err) == -1, "'%s' accepted",
                      bad[k].spec);
        ck_assert_msg(strstr(err, bad[k].msg) != NULL, "'%s': %s", bad[k].spec, err);
    }
}
END_TEST

/* The src_w x src_h image at 1/k as a DCT-scaled decode approximates it: each output pixel
 * the mean of the k x k block it covers (cut at the right and bottom edges). */
static uint8_t *box_downscale(const uint8_t *src, uint32_t w, uint32_t h, uint32_t k,
                              uint32_t *ow, uint32_t *oh)
{
    *ow = (w + k - 1) / k;
    *oh = (h + k - 1) / k;
    uint8_t *o = malloc((size_t)*ow * *oh * 3);
    for (uint32_t y = 0; y < *oh; y++)
        for (uint32_t x = 0; x < *ow; x++)
            for (int c = 0; c < 3; c++) {
                unsigned sum = 0, n = 0;
                for (uint32_t yy = y * k; yy < (y + 1) * k && yy < h; yy++)
                    for (uint32_t xx = x * k; xx < (x + 1) * k && xx < w; xx++, n++)
                        sum += src[((size_t)yy * w + xx) * 3 + c];
                o[((size_t)y * *ow + x) * 3 + c] = (uint8_t)((sum + n / 2) / n);
            }
    return o;
}

/* The denominator the rule asks for, written out: the largest k in {8, 4, 2} whose ceil(n / k)
 * keeps what the transform needs, else 1. */
static uint32_t want_denom(const struct augment_params *p, const struct augment_draw *d,
                           uint32_t w, uint32_t h)
{
    for (uint32_t k = 8; k >= 2; k /= 2) {
        uint32_t cw = (d->crop_w + k - 1) / k, ch = (d->crop_h + k - 1) / k;
        uint32_t sw = (w + k - 1) / k, sh = (h + k - 1) / k, ss = sw < sh ? sw : sh;
        if (p->train ? cw >= p->size && ch >= p->size
                     : p->test_resize ? ss >= p->test_resize : sw >= p->size && sh >= p->size)
            return k;
    }
    return 1;
}

/* Decoding at a reduced scale (augment_geometry, augment_scale_denom, augment_apply_scaled)
 * against the full-size path (augment_apply) on random sizes, params and seeds: the same box
 * and the same later draws from the same stream, the denominator the rule asks for (never
 * below the output's resolution, and the largest such), and close pixels on a smooth image
 * scaled by block means. */
START_TEST(test_scaled_decode_same_draws)
{
    struct rng g;
    rng_seed(&g, 77);
    uint32_t seen[9] = { 0 };
    double worst = 0;
    for (int t = 0; t < 600; t++) {
        int train = t % 4 != 3;
        uint32_t S = 8 + (uint32_t)rng_below(&g, 33);
        struct augment_params p;
        ck_assert_int_eq(augment_preset(t % 8 == 7 ? "none" : "imagenet", train, S,
                                        AUGMENT_HWC, &p), 0);
        static const float smin[] = { 0.08f, 0.2f, 0.5f, 1.0f };
        p.scale_min = smin[rng_below(&g, 4)];
        if (train && t % 5 == 0)
            p.brightness = p.contrast = p.saturation = p.hue = 0; /* pixels comparable */
        uint32_t w = S / 2 + 1 + (uint32_t)rng_below(&g, 12 * S);
        uint32_t h = S / 2 + 1 + (uint32_t)rng_below(&g, 12 * S);
        if (t % 7 == 0)
            h = w / 4 + 1; /* extreme aspect: the centre-crop fallback */
        struct augment *a = augment_new(&p);
        ck_assert_ptr_nonnull(a);
        uint8_t *src = malloc((size_t)w * h * 3);
        for (uint32_t y = 0; y < h; y++)
            for (uint32_t x = 0; x < w; x++) {
                uint8_t *px = src + ((size_t)y * w + x) * 3;
                px[0] = (uint8_t)(255.0 * x / w);
                px[1] = (uint8_t)(255.0 * y / h);
                px[2] = (uint8_t)(127.5 + 127.5 * sin(6.0 * (x + 2.0 * y) / (w + h)));
            }
        uint8_t *o1 = malloc((size_t)S * S * 3), *o2 = malloc((size_t)S * S * 3);
        uint64_t seed = rng_u64(&g);
        struct rng r1 = rng_derive(seed, 3, (uint64_t)t), r2 = r1;
        struct augment_draw d1, d2;
        augment_apply(a, src, w, h, &r1, o1, &d1);
        augment_geometry(&p, &r2, w, h, &d2);
        ck_assert(d2.crop_x == d1.crop_x && d2.crop_y == d1.crop_y && d2.crop_w == d1.crop_w &&
                  d2.crop_h == d1.crop_h && d2.fallback == d1.fallback);
        uint32_t k = augment_scale_denom(&p, &d2, w, h);
        ck_assert_msg(k == want_denom(&p, &d2, w, h), "%ux%u crop %ux%u size %u: denom %u, "
                      "want %u", w, h, d2.crop_w, d2.crop_h, S, k, want_denom(&p, &d2, w, h));
        if (train && k > 1)
            ck_assert((d2.crop_w + k - 1) / k >= S && (d2.crop_h + k - 1) / k >= S);
        seen[k]++;
        uint32_t sw, sh;
        uint8_t *small = box_downscale(src, w, h, k, &sw, &sh);
        augment_apply_scaled(a, small, sw, sh, k, w, h, &r2, o2, &d2);
        ck_assert(memcmp(&r1, &r2, sizeof r1) == 0); /* the stream is where the full path left it */
        ck_assert(d2.crop_x == d1.crop_x && d2.crop_w == d1.crop_w && d2.gray == d1.gray &&
                  d2.flip == d1.flip && d2.brightness == d1.brightness &&
                  d2.hue == d1.hue && memcmp(d2.order, d1.order, 4) == 0);
        if (k == 1)
            ck_assert(memcmp(o1, o2, (size_t)S * S * 3) == 0);
        if (!train || p.hue == 0) {
            double e = 0;
            for (size_t i = 0; i < (size_t)S * S * 3; i++)
                e += fabs((double)o1[i] - o2[i]);
            e /= (double)S * S * 3;
            worst = e > worst ? e : worst;
            ck_assert_msg(e < 3.0, "%ux%u at 1/%u, crop %u,%u %ux%u to %u: mean |diff| %.2f", w,
                          h, k, d1.crop_x, d1.crop_y, d1.crop_w, d1.crop_h, S, e);
        }
        free(small);
        free(o1);
        free(o2);
        free(src);
        augment_destroy(&a);
    }
    ck_assert_msg(seen[1] && seen[2] && seen[4] && seen[8], "denominators 1 %u, 2 %u, 4 %u, 8 %u",
                  seen[1], seen[2], seen[4], seen[8]);
    fprintf(stderr, "scaled decode: denominators 1 %u, 2 %u, 4 %u, 8 %u; worst mean |diff| %.3f\n",
            seen[1], seen[2], seen[4], seen[8], worst);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("augment");
    TCase *tc = tcase_create("augment");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_resize_matches_reference);
    tcase_add_test(tc, test_grayscale_flip_layout);
    tcase_add_test(tc, test_colour_known_answers);
    tcase_add_test(tc, test_crop_distribution);
    tcase_add_test(tc, test_jitter_gray_flip_distribution);
    tcase_add_test(tc, test_blur_matches_reference);
    tcase_add_test(tc, test_blur_draws);
    tcase_add_test(tc, test_determinism_and_presets);
    tcase_add_test(tc, test_override);
    tcase_add_test(tc, test_scaled_decode_same_draws);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
