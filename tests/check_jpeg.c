/* JPEG decoding of untrusted files: every JPEG fixture of tests/fixtures/bad-images/mkbad.c
 * is decoded or rejected by jpeg_dec_decode with its specific reason, and every other one
 * (PNG, WebP, text...) is refused as not a JPEG (never a crash or a hang; ASan/UBSan in
 * `make asan`); colour conversions (grey, CMYK, YCCK), DCT-domain downscaling, limits,
 * decoder reuse after failures, probing and the encoder round trip. tests/check_image.c
 * runs the same fixtures through image_decode. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/durable.h"
#include "common/image.h"
#include "common/jpeg.h"

#define FIXTURE_SUITE "jpeg"
#include "check_fixtures.h"


START_TEST(test_fixtures)
{
    ck_assert_uint_ge(MKBAD_COUNT, 30);
    struct jpeg_dec *d = jpeg_dec_new(NULL);
    ck_assert_ptr_nonnull(d);
    size_t rejected = 0;
    /* twice, to show the decoder stays usable after every kind of failure */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < MKBAD_COUNT; i++) {
            const struct mkbad_fixture *f = &mkbad_fixtures[i];
            size_t len;
            void *buf = load(f->name, &len);
            struct jpeg_image img;
            char err[256] = "";
            uint64_t t0 = clock_now_ns();
            int rc = jpeg_dec_decode(d, buf, len, 0, &img, err, sizeof err);
            ck_assert_msg(clock_now_ns() - t0 < 2000000000ull, "%s took too long", f->name);
            if (image_sniff(buf, len) != IMAGE_JPEG) {
                /* the expectation is image_decode's; the JPEG decoder just refuses it */
                ck_assert_msg(rc == -1, "%s is not a JPEG but decoded", f->name);
                ck_assert_msg(strstr(err, "not a JPEG") || strstr(err, "empty file"),
                              "%s: reason '%s'", f->name, err);
                rejected += pass == 0;
            } else if (f->expect && f->expect[0] == 0) {
                ck_assert_msg(rc == 0, "%s should decode: %s", f->name, err);
                ck_assert_uint_eq(img.w, f->w);
                ck_assert_uint_eq(img.h, f->h);
            } else if (f->expect) {
                ck_assert_msg(rc == -1, "%s should be rejected", f->name);
                ck_assert_msg(strstr(err, f->expect) != NULL, "%s: reason '%s' lacks '%s'",
                              f->name, err, f->expect);
                rejected += pass == 0;
            } else if (rc == 0) {
                ck_assert(img.w > 0 && img.h > 0);
            } else {
                ck_assert_msg(err[0] != 0, "%s rejected without a reason", f->name);
            }
            free(buf);
        }
    }
    ck_assert_uint_ge(rejected, 20);
    jpeg_dec_destroy(&d);
    ck_assert_ptr_null(d);
}
END_TEST

START_TEST(test_colour_spaces)
{
    struct jpeg_dec *d = jpeg_dec_new(NULL);
    const char *names[] = { "ok_baseline.jpg", "ok_grey.jpg", "ok_cmyk.jpg", "ok_ycck.jpg",
                            "ok_arith.jpg", "ok_progressive.jpg", "ok_restart.jpg" };
    uint8_t *base = NULL;
    for (int k = 0; k < 7; k++) {
        size_t len;
        void *buf = load(names[k], &len);
        struct jpeg_image img;
        char err[256];
        ck_assert_msg(jpeg_dec_decode(d, buf, len, 0, &img, err, sizeof err) == 0, "%s: %s",
                      names[k], err);
        size_t n = (size_t)img.w * img.h;
        if (k == 0) {
            base = malloc(n * 3);
            memcpy(base, img.pix, n * 3);
        }
        if (k == 1)
            for (size_t i = 0; i < n; i++)
                ck_assert(img.pix[3 * i] == img.pix[3 * i + 1] && img.pix[3 * i] == img.pix[3 * i + 2]);
        if (k == 2 || k == 3) {
            /* CMYK pattern: component k = (x*5 + y*3 + k*70 + (x^y)*2) & 255, Adobe-inverted
             * as libjpeg writes it: R = C*K/255 within JPEG error */
            long err_sum = 0;
            for (uint32_t y = 0; y < img.h; y++)
                for (uint32_t x = 0; x < img.w; x++) {
                    unsigned v[4];
                    for (int c = 0; c < 4; c++)
                        v[c] = (x * 5 + y * 3 + (unsigned)c * 70 + (x ^ y) * 2) & 255;
                    for (int c = 0; c < 3; c++) {
                        int want = (int)((v[c] * v[3] + 127) / 255);
                        err_sum += labs((long)img.pix[((size_t)y * img.w + x) * 3 + c] - want);
                    }
                }
            ck_assert_msg(err_sum / (long)(n * 3) < 12, "%s: mean error %ld", names[k],
                          err_sum / (long)(n * 3));
        }
        if (k >= 4) {
            /* arithmetic, progressive, restart: same pixels as baseline within JPEG error */
            long e = 0;
            for (size_t i = 0; i < n * 3; i++)
                e += labs((long)img.pix[i] - base[i]);
            ck_assert_msg(e / (long)(n * 3) < 3, "%s differs from baseline", names[k]);
        }
        free(buf);
    }
    free(base);
    jpeg_dec_destroy(&d);
}
END_TEST

START_TEST(test_dct_scaling_and_limits)
{
    uint32_t W = 256, H = 192;
    uint8_t *rgb = malloc((size_t)W * H * 3);
    for (uint32_t y = 0; y < H; y++)
        for (uint32_t x = 0; x < W; x++)
            for (int c = 0; c < 3; c++)
                rgb[((size_t)y * W + x) * 3 + c] = (uint8_t)((x / 2 + y / 3 + (unsigned)c * 60) & 255);
    uint8_t *j;
    size_t len;
    ck_assert_int_eq(jpeg_encode_rgb(rgb, W, H, 95, &j, &len), 0);
    struct jpeg_dec *d = jpeg_dec_new(NULL);
    struct jpeg_image img;
    char err[256];
    struct { uint32_t min_side, denom, w, h; } cases[] = {
        { 0, 1, 256, 192 }, { 24, 8, 32, 24 }, { 25, 4, 64, 48 }, { 48, 4, 64, 48 },
        { 96, 2, 128, 96 }, { 97, 1, 256, 192 }, { 1000, 1, 256, 192 },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        ck_assert_int_eq(jpeg_dec_decode(d, j, len, cases[c].min_side, &img, err, sizeof err), 0);
        ck_assert_uint_eq(img.scale_denom, cases[c].denom);
        ck_assert_uint_eq(img.w, cases[c].w);
        ck_assert_uint_eq(img.h, cases[c].h);
        ck_assert(img.src_w == W && img.src_h == H);
    }
    uint32_t pw, ph;
    int comps;
    ck_assert_int_eq(jpeg_probe(j, len, &pw, &ph, &comps, err, sizeof err), 0);
    ck_assert(pw == W && ph == H && comps == 3);
    jpeg_dec_destroy(&d);
    /* limits are configurable */
    struct jpeg_limits lim;
    jpeg_limits_default(&lim);
    lim.max_width = 200;
    d = jpeg_dec_new(&lim);
    ck_assert_int_eq(jpeg_dec_decode(d, j, len, 0, &img, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "exceed the limit"));
    jpeg_dec_destroy(&d);
    lim.max_width = 16384;
    lim.max_pixels = 256 * 100;
    d = jpeg_dec_new(&lim);
    ck_assert_int_eq(jpeg_dec_decode(d, j, len, 0, &img, err, sizeof err), -1);
    jpeg_dec_destroy(&d);
    lim.max_pixels = 1 << 30;
    lim.max_file_bytes = 100;
    d = jpeg_dec_new(&lim);
    ck_assert_int_eq(jpeg_dec_decode(d, j, len, 0, &img, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "file too large"));
    jpeg_dec_destroy(&d);
    /* the scan limit: the progressive fixture (10 scans) passes at 10 and fails at 9 */
    size_t pl;
    void *prog = load("ok_progressive.jpg", &pl);
    jpeg_limits_default(&lim);
    lim.max_scans = 10;
    d = jpeg_dec_new(&lim);
    ck_assert_int_eq(jpeg_dec_decode(d, prog, pl, 0, &img, err, sizeof err), 0);
    jpeg_dec_destroy(&d);
    lim.max_scans = 9;
    d = jpeg_dec_new(&lim);
    ck_assert_int_eq(jpeg_dec_decode(d, prog, pl, 0, &img, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "too many scans"));
    jpeg_dec_destroy(&d);
    free(prog);
    /* encoder round trip at quality 100 is close */
    d = jpeg_dec_new(NULL);
    free(j);
    ck_assert_int_eq(jpeg_encode_rgb(rgb, W, H, 100, &j, &len), 0);
    ck_assert_int_eq(jpeg_dec_decode(d, j, len, 0, &img, err, sizeof err), 0);
    long e = 0;
    for (size_t i = 0; i < (size_t)W * H * 3; i++)
        e += labs((long)img.pix[i] - rgb[i]);
    ck_assert_msg(e / (long)(W * H * 3) < 8, "round trip error %ld", e / (long)(W * H * 3));
    jpeg_dec_destroy(&d);
    free(j);
    free(rgb);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("jpeg");
    TCase *tc = tcase_create("jpeg");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_fixtures);
    tcase_add_test(tc, test_colour_spaces);
    tcase_add_test(tc, test_dct_scaling_and_limits);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
