/* The image front-end (common/image.h): every fixture of tests/fixtures/bad-images/mkbad.c
 * (JPEG, PNG, WebP) through image_decode, decoded or rejected with its reason and the decoder
 * reused after each failure; sniffing and header probes; the limits for PNG and WebP; PNG
 * colour types, bit depths and Adam7 interlacing written with libpng and checked against
 * the expected conversion; pixel equality with Pillow's Image.open(f).convert("RGB") on files
 * written by Pillow (PNG of every mode, lossy and lossless WebP with and without alpha) and
 * by libpng (16-bit, interlaced); a mixed ImageFolder (index, decode, header sizes).
 *
 * The Pillow comparison runs /usr/bin/python3 (python3-pil). Without it the other tests
 * still run and the binary exits 77 (a skip, in tests/run) naming what is missing. */
#include <check.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <png.h>

#include "common/clock.h"
#include "common/dataset.h"
#include "common/durable.h"
#include "common/image.h"
#include "common/jpeg.h"

#define FIXTURE_SUITE "image"
#include "check_fixtures.h"

static int have_pil;

static void put(const char *name, const void *p, size_t len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(p, 1, len, f), len);
    ck_assert_int_eq(fclose(f), 0);
}

START_TEST(test_fixtures)
{
    struct jpeg_dec *d = jpeg_dec_new(NULL);
    ck_assert_ptr_nonnull(d);
    size_t rejected = 0, png = 0, webp = 0;
    /* twice, to show the decoder stays usable after every kind of failure */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < MKBAD_COUNT; i++) {
            const struct mkbad_fixture *f = &mkbad_fixtures[i];
            size_t len;
            void *buf = load(f->name, &len);
            struct jpeg_image img;
            char err[256] = "";
            uint64_t t0 = clock_now_ns();
            int rc = image_decode(d, buf, len, 0, &img, err, sizeof err);
            ck_assert_msg(clock_now_ns() - t0 < 2000000000ull, "%s took too long", f->name);
            ck_assert_msg(strchr(err, '\n') == NULL, "%s: reason on more than one line", f->name);
            enum image_format fmt = image_sniff(buf, len);
            png += pass == 0 && fmt == IMAGE_PNG;
            webp += pass == 0 && fmt == IMAGE_WEBP;
            if (f->expect && f->expect[0] == 0) {
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
    ck_assert_uint_ge(rejected, 45);
    ck_assert_uint_ge(png, 15);
    ck_assert_uint_ge(webp, 10);
    jpeg_dec_destroy(&d);
}
END_TEST

START_TEST(test_sniff_probe)
{
    ck_assert_int_eq(image_sniff("\xFF\xD8\xFF\xE0", 4), IMAGE_JPEG);
    ck_assert_int_eq(image_sniff("\x89PNG\r\n\x1a\n", 8), IMAGE_PNG);
    ck_assert_int_eq(image_sniff("RIFF\x10\0\0\0WEBPVP8 ", 16), IMAGE_WEBP);
    ck_assert_int_eq(image_sniff("RIFF\x10\0\0\0WAVEfmt ", 16), IMAGE_UNKNOWN);
    ck_assert_int_eq(image_sniff("GIF89a", 6), IMAGE_UNKNOWN);
    ck_assert_int_eq(image_sniff("", 0), IMAGE_UNKNOWN);
    ck_assert_str_eq(image_format_name(IMAGE_WEBP), "WebP");
    /* probes read a prefix (dataset_probe_sides reads the first 512 KiB) */
    struct { const char *name; int comps; } cases[] = {
        { "ok_baseline.jpg", 3 }, { "ok_rgb.png", 3 }, { "ok_lossy.webp", 3 },
        { "ok_lossless.webp", 3 }, { "ok_png_named.jpg", 3 },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t len;
        void *buf = load(cases[c].name, &len);
        uint32_t w = 0, h = 0;
        int comps = 0;
        char err[256] = "";
        size_t head = image_sniff(buf, len) == IMAGE_JPEG ? len : 64;
        ck_assert_msg(image_probe(buf, head, &w, &h, &comps, err, sizeof err) == 0, "%s: %s",
                      cases[c].name, err);
        ck_assert_msg(w == 48 && h == 40 && comps == cases[c].comps, "%s: %ux%u, %d",
                      cases[c].name, w, h, comps);
        free(buf);
    }
    const char *bad[] = { "png_zero_dims.png", "text.jpg", "empty.jpg", "webp_trunc_header.webp" };
    for (size_t c = 0; c < sizeof bad / sizeof bad[0]; c++) {
        size_t len;
        void *buf = load(bad[c], &len);
        uint32_t w, h;
        int comps;
        char err[256] = "";
        ck_assert_msg(image_probe(buf, len, &w, &h, &comps, err, sizeof err) == -1, "%s", bad[c]);
        ck_assert(err[0] != 0);
        free(buf);
    }
}
END_TEST

/* imghdr_probe (no image library: what the trainer reads) states the same dimensions and
 * components as the libraries' header readers (image_probe) on every fixture they accept,
 * and the decoded size on every fixture that decodes; also from a 64-byte prefix for PNG and
 * WebP. */
START_TEST(test_imghdr_agrees)
{
    struct jpeg_dec *d = jpeg_dec_new(NULL);
    ck_assert_ptr_nonnull(d);
    size_t agreed = 0, decoded = 0;
    for (size_t i = 0; i < MKBAD_COUNT; i++) {
        const struct mkbad_fixture *f = &mkbad_fixtures[i];
        size_t len;
        void *buf = load(f->name, &len);
        uint32_t w = 0, h = 0, w2 = 0, h2 = 0;
        int comps = 0, comps2 = 0;
        char err[256] = "", err2[256] = "";
        int lib = image_probe(buf, len, &w, &h, &comps, err, sizeof err);
        int own = imghdr_probe(buf, len, &w2, &h2, &comps2, err2, sizeof err2);
        ck_assert_msg(own == 0 || err2[0] != 0, "%s: refused without a reason", f->name);
        if (lib == 0) {
            ck_assert_msg(own == 0, "%s: the library reads %ux%u, imghdr refuses: %s", f->name,
                          w, h, err2);
            ck_assert_msg(w2 == w && h2 == h && comps2 == comps, "%s: %ux%u/%d, library %ux%u/%d",
                          f->name, w2, h2, comps2, w, h, comps);
            agreed++;
            enum image_format fmt = image_sniff(buf, len);
            if (fmt != IMAGE_JPEG && len >= 64) {
                ck_assert_int_eq(imghdr_probe(buf, 64, &w2, &h2, &comps2, err2, sizeof err2), 0);
                ck_assert(w2 == w && h2 == h);
            }
        }
        struct jpeg_image img;
        if (image_decode(d, buf, len, 0, &img, err, sizeof err) == 0) {
            ck_assert_msg(own == 0 && img.w == w2 && img.h == h2, "%s: decodes %ux%u, header %ux%u",
                          f->name, img.w, img.h, w2, h2);
            decoded++;
        }
        free(buf);
    }
    ck_assert_uint_ge(agreed, 10);
    ck_assert_uint_ge(decoded, 10);
    jpeg_dec_destroy(&d);
}
END_TEST

START_TEST(test_limits_and_reuse)
{
    const char *names[] = { "ok_rgb.png", "ok_lossy.webp", "ok_lossless.webp" };
    struct jpeg_limits lim;
    struct jpeg_image img;
    char err[256];
    for (size_t k = 0; k < 3; k++) {
        size_t len;
        void *buf = load(names[k], &len);
        jpeg_limits_default(&lim);
        lim.max_width = 47;
        struct jpeg_dec *d = jpeg_dec_new(&lim);
        ck_assert_int_eq(image_decode(d, buf, len, 0, &img, err, sizeof err), -1);
        ck_assert_msg(strstr(err, "exceed the limit"), "%s: %s", names[k], err);
        jpeg_dec_destroy(&d);
        jpeg_limits_default(&lim);
        lim.max_pixels = 48 * 40 - 1;
        d = jpeg_dec_new(&lim);
        ck_assert_int_eq(image_decode(d, buf, len, 0, &img, err, sizeof err), -1);
        ck_assert_msg(strstr(err, "exceed the limit"), "%s: %s", names[k], err);
        jpeg_dec_destroy(&d);
        jpeg_limits_default(&lim);
        lim.max_file_bytes = len - 1;
        d = jpeg_dec_new(&lim);
        ck_assert_int_eq(image_decode(d, buf, len, 0, &img, err, sizeof err), -1);
        ck_assert_msg(strstr(err, "file too large"), "%s: %s", names[k], err);
        jpeg_dec_destroy(&d);
        /* exactly at the limits: decodes, at full size whatever min_side says */
        lim.max_file_bytes = len;
        lim.max_width = 48;
        lim.max_height = 40;
        lim.max_pixels = 48 * 40;
        d = jpeg_dec_new(&lim);
        ck_assert_msg(image_decode(d, buf, len, 8, &img, err, sizeof err) == 0, "%s: %s",
                      names[k], err);
        ck_assert(img.w == 48 && img.h == 40 && img.scale_denom == 1);
        jpeg_dec_destroy(&d);
        free(buf);
    }
    /* one decoder across formats: a PNG, a JPEG and a WebP of the same pattern */
    struct jpeg_dec *d = jpeg_dec_new(NULL);
    const char *mix[] = { "ok_rgb.png", "ok_baseline.jpg", "ok_lossless.webp", "png_trunc_50.png",
                          "ok_rgb.png" };
    uint8_t first[48 * 40 * 3];
    for (size_t k = 0; k < 5; k++) {
        size_t len;
        void *buf = load(mix[k], &len);
        int rc = image_decode(d, buf, len, 0, &img, err, sizeof err);
        ck_assert_int_eq(rc, k == 3 ? -1 : 0);
        if (k == 0)
            memcpy(first, img.pix, sizeof first);
        if (k == 2 || k == 4)   /* lossless: the same pixels as the PNG */
            ck_assert(memcmp(first, img.pix, sizeof first) == 0);
        free(buf);
    }
    jpeg_dec_destroy(&d);
}
END_TEST

/* ---- PNG variants written with libpng ----------------------------------------------------- */

struct pngw {
    const char *name;
    int depth, ctype, interlace;
    uint32_t w, h;
};

/* A deterministic 16-bit sample for pixel (x, y), channel c. */
static unsigned sample16(uint32_t x, uint32_t y, int c)
{
    uint32_t v = x * 2654435761u ^ (y + 17) * 40503u ^ (uint32_t)(c + 1) * 2246822519u;
    v ^= v >> 13;
    v *= 0x5bd1e995u;
    return (v ^ (v >> 15)) & 0xFFFF;
}

static int channels(int ctype)
{
    return ctype == PNG_COLOR_TYPE_GRAY ? 1 : ctype == PNG_COLOR_TYPE_GRAY_ALPHA ? 2
           : ctype == PNG_COLOR_TYPE_RGB ? 3 : ctype == PNG_COLOR_TYPE_RGBA ? 4 : 1;
}

/* The stored value of channel c at (x, y) for the file's depth (palette: the index). */
static unsigned stored(const struct pngw *s, uint32_t x, uint32_t y, int c)
{
    unsigned v = sample16(x, y, c);
    return s->depth == 16 ? v : v >> (16 - s->depth);
}

static void palette_entry(unsigned i, uint8_t rgb[3])
{
    rgb[0] = (uint8_t)(i * 7 + 3);
    rgb[1] = (uint8_t)(255 - i);
    rgb[2] = (uint8_t)(i * 31);
}

/* Writes s with libpng (palette: 256 colours, tRNS on the first 10; grey below 16 bits: tRNS
 * on level 1). Everything is allocated before setjmp; a libpng failure aborts the test. */
static void write_png(const struct pngw *s)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, s->name);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    int ch = channels(s->ctype);
    size_t rowb = ((size_t)s->w * ch * s->depth + 7) / 8;
    uint8_t *img = calloc(rowb, s->h);
    ck_assert_ptr_nonnull(img);
    for (uint32_t y = 0; y < s->h; y++)
        for (uint32_t x = 0; x < s->w; x++)
            for (int c = 0; c < ch; c++) {
                unsigned v = stored(s, x, y, c);
                uint8_t *r = img + (size_t)y * rowb;
                size_t bit = ((size_t)x * ch + c) * s->depth;
                if (s->depth == 16) {
                    r[bit / 8] = (uint8_t)(v >> 8);
                    r[bit / 8 + 1] = (uint8_t)v;
                } else if (s->depth == 8) {
                    r[bit / 8] = (uint8_t)v;
                } else {
                    r[bit / 8] |= (uint8_t)(v << (8 - s->depth - bit % 8));
                }
            }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    ck_assert(png && info);
    if (setjmp(png_jmpbuf(png)))
        ck_abort_msg("libpng failed writing %s", s->name);
    png_init_io(png, f);
    png_set_IHDR(png, info, s->w, s->h, s->depth, s->ctype, s->interlace ? PNG_INTERLACE_ADAM7 :
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (s->ctype == PNG_COLOR_TYPE_PALETTE) {
        png_color pal[256];
        png_byte trns[10];
        for (unsigned i = 0; i < 256; i++) {
            uint8_t c[3];
            palette_entry(i, c);
            pal[i].red = c[0];
            pal[i].green = c[1];
            pal[i].blue = c[2];
        }
        for (int i = 0; i < 10; i++)
            trns[i] = (png_byte)(i * 20);
        png_set_PLTE(png, info, pal, 1 << s->depth);
        png_set_tRNS(png, info, trns, 10, NULL);
    } else if (s->ctype == PNG_COLOR_TYPE_GRAY && s->depth < 16) {
        /* a transparent grey level: dropped like an alpha channel */
        png_color_16 tc = { .gray = 1 };
        png_set_tRNS(png, info, NULL, 0, &tc);
    }
    png_write_info(png, info);
    int passes = png_set_interlace_handling(png);
    for (int p = 0; p < passes; p++)
        for (uint32_t y = 0; y < s->h; y++)
            png_write_row(png, img + (size_t)y * rowb);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    fclose(f);
    free(img);
}

static const struct pngw png_cases[] = {
    { "lp_rgb16.png", 16, PNG_COLOR_TYPE_RGB, 0, 29, 17 },
    { "lp_rgba16.png", 16, PNG_COLOR_TYPE_RGBA, 0, 29, 17 },
    { "lp_ga16.png", 16, PNG_COLOR_TYPE_GRAY_ALPHA, 0, 29, 17 },
    { "lp_g16.png", 16, PNG_COLOR_TYPE_GRAY, 0, 29, 17 },
    { "lp_g2.png", 2, PNG_COLOR_TYPE_GRAY, 0, 29, 17 },
    { "lp_g4_adam7.png", 4, PNG_COLOR_TYPE_GRAY, 1, 13, 11 },
    { "lp_rgb8_adam7.png", 8, PNG_COLOR_TYPE_RGB, 1, 29, 17 },
    { "lp_rgba16_adam7.png", 16, PNG_COLOR_TYPE_RGBA, 1, 29, 17 },
    { "lp_pal8_adam7.png", 8, PNG_COLOR_TYPE_PALETTE, 1, 29, 17 },
    { "lp_pal4.png", 4, PNG_COLOR_TYPE_PALETTE, 0, 29, 17 },
    { "lp_rgb8_adam7_1x1.png", 8, PNG_COLOR_TYPE_RGB, 1, 1, 1 },
    { "lp_rgb8_adam7_3x2.png", 8, PNG_COLOR_TYPE_RGB, 1, 3, 2 },
};
#define N_PNG_CASES (sizeof png_cases / sizeof png_cases[0])

/* What image_decode must give for channel k (0..2) of pixel (x, y). */
static uint8_t expect_png(const struct pngw *s, uint32_t x, uint32_t y, int k)
{
    if (s->ctype == PNG_COLOR_TYPE_PALETTE) {
        uint8_t c[3];
        palette_entry(stored(s, x, y, 0), c);
        return c[k];
    }
    int colour = s->ctype & PNG_COLOR_MASK_COLOR;
    unsigned v = stored(s, x, y, colour ? k : 0);
    if (s->depth == 16)
        return (uint8_t)(v >> 8);
    if (s->depth < 8)
        return (uint8_t)(v * 255 / ((1u << s->depth) - 1));
    return (uint8_t)v;
}

START_TEST(test_png_variants)
{
    struct jpeg_dec *d = jpeg_dec_new(NULL);
    for (size_t c = 0; c < N_PNG_CASES; c++) {
        const struct pngw *s = &png_cases[c];
        write_png(s);
        size_t len;
        void *buf = load(s->name, &len);
        struct jpeg_image img;
        char err[256];
        ck_assert_msg(image_decode(d, buf, len, 0, &img, err, sizeof err) == 0, "%s: %s",
                      s->name, err);
        ck_assert(img.w == s->w && img.h == s->h);
        for (uint32_t y = 0; y < s->h; y++)
            for (uint32_t x = 0; x < s->w; x++)
                for (int k = 0; k < 3; k++) {
                    uint8_t got = img.pix[((size_t)y * s->w + x) * 3 + k];
                    ck_assert_msg(got == expect_png(s, x, y, k), "%s (%u,%u,%d): %u, want %u",
                                  s->name, x, y, k, got, expect_png(s, x, y, k));
                }
        free(buf);
    }
    jpeg_dec_destroy(&d);
}
END_TEST

/* ---- against Pillow --------------------------------------------------------------------- */

/* Writes Pillow's files into the directory argv[1], then for every .png/.webp there a raw
 * RGB reference NAME.ref and a line "NAME W H MODE" in refs.txt. The reference is
 * convert("RGB"), except for 16-bit greyscale (mode I): Pillow's convert clips it to 255;
 * image.h keeps the high byte, so that is the reference, and "clip" in the line records that
 * Pillow's own result differs. */
static const char pil_script[] =
    "import os, random, sys, warnings\n"
    "from PIL import Image\n"
    "warnings.simplefilter('ignore')  # Pillow warns about palette tRNS in convert\n"
    "d = sys.argv[1]\n"
    "r = random.Random(7)\n"
    "def pattern(w, h, ch):\n"
    "    out = bytearray()\n"
    "    for y in range(h):\n"
    "        for x in range(w):\n"
    "            for c in range(ch):\n"
    "                out.append(r.randrange(256) if x % 3 == 0 else (x * 7 + y * 11 + c * 60 + x * y) % 256)\n"
    "    return bytes(out)\n"
    "w, h = 37, 23\n"
    "rgb = Image.frombytes('RGB', (w, h), pattern(w, h, 3))\n"
    "rgba = Image.frombytes('RGBA', (w, h), pattern(w, h, 4))\n"
    "grey = rgb.convert('L')\n"
    "rgb.save(d + '/pil_rgb.png')\n"
    "rgba.save(d + '/pil_rgba.png')\n"
    "grey.save(d + '/pil_l.png')\n"
    "Image.merge('LA', (grey, rgba.getchannel('A'))).save(d + '/pil_la.png')\n"
    "rgb.convert('P', palette=Image.ADAPTIVE, colors=200).save(d + '/pil_p.png')\n"
    "rgb.convert('P', palette=Image.ADAPTIVE, colors=16).save(d + '/pil_p4.png', bits=4)\n"
    "rgb.convert('P', palette=Image.ADAPTIVE, colors=50).save(d + '/pil_p_trns.png', transparency=3)\n"
    "grey.convert('1').save(d + '/pil_1.png')\n"
    "grey.save(d + '/pil_l_trns.png', transparency=7)\n"
    "i16 = Image.new('I;16', (w, h))\n"
    "i16.putdata([r.randrange(65536) for _ in range(w * h)])\n"
    "i16.save(d + '/pil_i16.png')\n"
    "Image.new('RGB', (1, 1), (200, 10, 99)).save(d + '/pil_1x1.png')\n"
    "rgb.save(d + '/pil_lossy.webp', quality=80)\n"
    "rgb.save(d + '/pil_lossy_q5.webp', quality=5)\n"
    "rgb.save(d + '/pil_lossless.webp', lossless=True)\n"
    "rgba.save(d + '/pil_lossy_alpha.webp', quality=70)\n"
    "rgba.save(d + '/pil_lossless_alpha.webp', lossless=True)\n"
    "rgba.save(d + '/pil_lossless_alpha_exact.webp', lossless=True, exact=True)\n"
    "big = Image.frombytes('RGB', (301, 207), pattern(301, 207, 3))\n"
    "big.save(d + '/pil_big_lossy.webp', quality=60, method=6)\n"
    "Image.new('RGB', (1, 1), (200, 10, 99)).save(d + '/pil_1x1.webp')\n"
    "Image.new('RGB', (1, 1), (200, 10, 99)).save(d + '/pil_1x1_lossless.webp', lossless=True)\n"
    "frames = [Image.new('RGB', (8, 8), (k * 60, 0, 0)) for k in range(3)]\n"
    "frames[0].save(d + '/anim.webp', save_all=True, append_images=frames[1:], duration=100)\n"
    "with open(d + '/refs.txt', 'w') as refs:\n"
    "    for n in sorted(os.listdir(d)):\n"
    "        if not (n.endswith('.png') or n.endswith('.webp')) or not n[:3] in ('pil', 'lp_'):\n"
    "            continue\n"
    "        im = Image.open(d + '/' + n)\n"
    "        note = 'same'\n"
    "        if im.mode.startswith('I'):\n"
    "            ref = bytes(v >> 8 for v in im.getdata() for _ in range(3))\n"
    "            note = 'same' if im.convert('RGB').tobytes() == ref else 'clip'\n"
    "        else:\n"
    "            ref = im.convert('RGB').tobytes()\n"
    "        open(d + '/' + n + '.ref', 'wb').write(ref)\n"
    "        refs.write('%s %d %d %s %s\\n' % (n, im.width, im.height, im.mode, note))\n";

START_TEST(test_pillow)
{
    if (!have_pil)
        return;
    for (size_t c = 0; c < N_PNG_CASES; c++)
        write_png(&png_cases[c]);
    put("pil.py", pil_script, sizeof pil_script - 1);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s/pil.py' '%s'", tmpdir, tmpdir);
    ck_assert_msg(system(cmd) == 0, "the Pillow script failed");
    char path[512];
    snprintf(path, sizeof path, "%s/refs.txt", tmpdir);
    FILE *refs = fopen(path, "r");
    ck_assert_ptr_nonnull(refs);
    struct jpeg_dec *d = jpeg_dec_new(NULL);
    char name[256], mode[32], note[16];
    unsigned w, h;
    size_t files = 0, webp = 0, clipped = 0;
    while (fscanf(refs, "%255s %u %u %31s %15s", name, &w, &h, mode, note) == 5) {
        size_t len, rlen;
        void *buf = load(name, &len);
        char rname[300];
        snprintf(rname, sizeof rname, "%s.ref", name);
        uint8_t *ref = load(rname, &rlen);
        struct jpeg_image img;
        char err[256];
        ck_assert_msg(image_decode(d, buf, len, 0, &img, err, sizeof err) == 0, "%s: %s", name,
                      err);
        ck_assert_msg(img.w == w && img.h == h, "%s: %ux%u, Pillow %ux%u", name, img.w, img.h, w,
                      h);
        ck_assert_uint_eq(rlen, (size_t)w * h * 3);
        size_t diff = 0, first = 0;
        for (size_t i = 0; i < rlen; i++)
            if (img.pix[i] != ref[i] && diff++ == 0)
                first = i;
        ck_assert_msg(diff == 0, "%s (mode %s): %zu of %zu bytes differ from Pillow, first at "
                      "pixel %zu: %u, Pillow %u", name, mode, diff, rlen, first / 3,
                      img.pix[first], ref[first]);
        files++;
        webp += strstr(name, ".webp") != NULL;
        clipped += strcmp(note, "clip") == 0;
        free(buf);
        free(ref);
    }
    fclose(refs);
    /* Pillow gives the first frame of an animation; image.h refuses animated WebP */
    size_t len;
    void *anim = load("anim.webp", &len);
    struct jpeg_image img;
    char err[256] = "";
    ck_assert_int_eq(image_decode(d, anim, len, 0, &img, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "unsupported WebP: animated"), "anim.webp: %s", err);
    free(anim);
    jpeg_dec_destroy(&d);
    ck_assert_uint_ge(files, 20 + N_PNG_CASES);
    ck_assert_uint_ge(webp, 8);
    /* the documented difference is still there: Pillow clips 16-bit grey (lp_g16, pil_i16) */
    ck_assert_uint_eq(clipped, 2);
}
END_TEST

/* ---- a mixed ImageFolder ------------------------------------------------------------------ */

START_TEST(test_dataset_mixed)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/mixed/train/a", tmpdir);
    ck_assert_int_eq(mkdir_p(dir), 0);
    struct { const char *from, *to; } files[] = {
        { "ok_baseline.jpg", "mixed/train/a/1.jpg" },
        { "ok_rgb.png", "mixed/train/a/2.png" },
        { "ok_lossy.webp", "mixed/train/a/3.webp" },
        { "ok_lossless.webp", "mixed/train/a/4.WebP" },
        { "ok_rgb.png", "mixed/train/a/5.PNG" },
        { "ok_jpeg_named.png", "mixed/train/a/6.png" },
        { "gif_named.jpg", "mixed/train/a/7.gif" },
        { "text.jpg", "mixed/train/a/8.txt" },
    };
    for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) {
        size_t len;
        void *buf = load(files[k].from, &len);
        put(files[k].to, buf, len);
        free(buf);
    }
    snprintf(dir, sizeof dir, "%s/mixed", tmpdir);
    char err[DATASET_ERR_LEN];
    struct dataset *ds = dataset_open(dir, "train", err, sizeof err);
    ck_assert_msg(ds != NULL, "%s", err);
    ck_assert_uint_eq(dataset_count(ds), 6);
    ck_assert_uint_eq(dataset_skipped(ds), 2);
    struct jpeg_dec *dec = jpeg_dec_new(NULL);
    for (size_t i = 0; i < 6; i++) {
        struct jpeg_image img;
        ck_assert_msg(dataset_decode(ds, i, dec, 0, &img, err, sizeof err) == 0, "%s", err);
        ck_assert(img.w == 48 && img.h == 40);
    }
    jpeg_dec_destroy(&dec);
    /* the size rule's header sampling reads PNG and WebP headers too */
    uint32_t s, l;
    size_t bad;
    ck_assert_uint_eq(dataset_probe_sides(ds, 100, &s, &l, &bad), 6);
    ck_assert(s == 40 && l == 48 && bad == 0);
    dataset_destroy(&ds);
}
END_TEST

int main(void)
{
    have_pil = system("/usr/bin/python3 -c 'import PIL.Image, PIL.WebPImagePlugin' "
                      ">/dev/null 2>&1") == 0;
    Suite *s = suite_create("image");
    TCase *tc = tcase_create("image");
    tcase_set_timeout(tc, 120);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_fixtures);
    tcase_add_test(tc, test_imghdr_agrees);
    tcase_add_test(tc, test_sniff_probe);
    tcase_add_test(tc, test_limits_and_reuse);
    tcase_add_test(tc, test_png_variants);
    tcase_add_test(tc, test_pillow);
    tcase_add_test(tc, test_dataset_mixed);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    if (failed)
        return 1;
    if (!have_pil) {
        fprintf(stderr, "check_image: /usr/bin/python3 without PIL (python3-pil): the Pillow "
                        "comparison did not run\n");
        return 77;
    }
    return 0;
}
