/* Augmentations with torchvision/PIL semantics: see augment.h.
 *
 * The resampler reproduces Pillow's ImagingResample for 8-bit RGB with the bilinear filter
 * (Resample.c): per output pixel a triangle filter of support 1 * max(1, scale) centred at
 * (i + 0.5) * scale, weights normalised in double precision and rounded to 22-bit fixed
 * point, horizontal pass first into an 8-bit intermediate, then vertical, each sum rounded
 * by adding 2^21 and clamped. The colour operations follow Pillow's Blend.c (float32,
 * truncation), Convert.c (L24 luma, rgb2hsv/hsv2rgb) and torchvision 0.14's functional_pil.
 * The floating-point expressions deliberately keep Pillow's mix of float and double.
 * The Gaussian blur follows torchvision's tensor gaussian_blur (functional_tensor.py): a
 * float32 kernel, reflect padding, float32 convolution, round half to even. */
#include "common/augment.h"

#include <math.h>
#if defined(__AVX512VBMI__) && defined(__AVX512BW__)
#include <immintrin.h>
#endif
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"

#define PRECISION_BITS (32 - 8 - 2)

struct scratch {
    int32_t *kx, *ky;       /* fixed-point coefficients, out x ksize */
    int *bx, *by;           /* (min, count) per output column / row */
    double *kd;             /* double coefficients while computing */
    uint8_t *tmp;           /* horizontal-pass intermediate */
    int32_t *acc;           /* vertical-pass accumulators, one output row */
    float *bf;              /* blur: kernel, padded row, horizontal pass, accumulators */
    size_t kx_cap, ky_cap, bx_cap, by_cap, kd_cap, tmp_cap, acc_cap, bf_cap;
};

struct augment {
    struct augment_params p;
    struct scratch s;
    uint8_t *img;           /* size x size x 3 working image */
};


/* Grows *p to n elements of size es; aborts on allocation failure (scratch growth happens
 * only for ever larger source images and failing to get a few kB is not recoverable here). */
static void grow(void **p, size_t *cap, size_t n, size_t es)
{
    if (n <= *cap)
        return;
    size_t c = *cap ? *cap : 64;
    while (c < n)
        c *= 2;
    void *q = realloc(*p, c * es);
    NPID_CHECK(q != NULL);
    *p = q;
    *cap = c;
}

static void scratch_free(struct scratch *s)
{
    free(s->kx);
    free(s->ky);
    free(s->bx);
    free(s->by);
    free(s->kd);
    free(s->tmp);
    free(s->acc);
    free(s->bf);
    memset(s, 0, sizeof *s);
}

/* Floats of blur scratch for a w x h image and ksize taps: the kernel, one padded row, the
 * horizontal pass (h x w x 3) and one row of vertical accumulators. */
static size_t blur_scratch_floats(uint32_t w, uint32_t h, uint32_t ksize)
{
    return ksize + ((size_t)w + ksize) * 3 + (size_t)w * h * 3 + (size_t)w * 3;
}

/* ---- params ------------------------------------------------------------------------------ */

int augment_preset(const char *name, int train, uint32_t size, enum augment_layout layout,
                   struct augment_params *p)
{
    memset(p, 0, sizeof *p);
    p->train = train ? 1 : 0;
    p->layout = layout;
    p->scale_min = 0.2f;
    p->scale_max = 1.0f;
    p->ratio_min = 3.0f / 4.0f;
    p->ratio_max = 4.0f / 3.0f;
    if (strcmp(name, "cifar") == 0) {
        p->size = size ? size : 32;
        p->brightness = p->contrast = p->saturation = p->hue = 0.4f;
        p->gray_p = 0.2f;
        p->flip = 0;
        p->test_resize = 0;
    } else if (strcmp(name, "imagenet") == 0) {
        p->size = size ? size : 224;
        p->brightness = p->contrast = p->saturation = p->hue = 0.4f;
        p->gray_p = 0.2f;
        p->gray_first = 1;
        p->flip = 1;
        p->test_resize = (uint32_t)((uint64_t)p->size * 256 / 224);
    } else if (strcmp(name, "none") == 0) {
        p->size = size ? size : 32;
        p->train = 0;
        p->scale_min = p->scale_max = 1.0f;
    } else {
        return -1;
    }
    return 0;
}

/* A float from s to end (exclusive) that fills it exactly; 0 or -1. */
static int parse_float_span(const char *s, const char *end, float *out)
{
    char buf[32];
    size_t n = (size_t)(end - s);
    if (n == 0 || n >= sizeof buf)
        return -1;
    memcpy(buf, s, n);
    buf[n] = 0;
    char *e = NULL;
    double v = strtod(buf, &e);
    if (e != buf + n || !isfinite(v))
        return -1;
    *out = (float)v;
    return 0;
}

int augment_override(struct augment_params *p, const char *spec, char *err, size_t err_len)
{
    const char *s = spec ? spec : "";
    while (*s) {
        const char *end = strchr(s, ',');
        if (!end)
            end = s + strlen(s);
        const char *eq = memchr(s, '=', (size_t)(end - s));
        int klen = (int)((eq ? eq : end) - s);
        if (!eq) {
            err_set(err, err_len, "augmentation '%.*s': expected key=value", klen, s);
            return -1;
        }
        const char *v = eq + 1;
        int bad = 0;
        if (klen == 4 && strncmp(s, "crop", 4) == 0) {
            const char *dash = memchr(v, '-', (size_t)(end - v));
            bad = !dash || parse_float_span(v, dash, &p->scale_min) ||
                  parse_float_span(dash + 1, end, &p->scale_max);
        } else if (klen == 6 && strncmp(s, "jitter", 6) == 0) {
            float f[4];
            const char *q = v;
            int n = 0;
            for (;;) {
                const char *sl = memchr(q, '/', (size_t)(end - q));
                if (n == 4 || parse_float_span(q, sl ? sl : end, &f[n++]) != 0) {
                    bad = 1;
                    break;
                }
                if (!sl)
                    break;
                q = sl + 1;
            }
            bad = bad || (n != 1 && n != 4);
            if (!bad) {
                p->brightness = f[0];
                p->contrast = n == 4 ? f[1] : f[0];
                p->saturation = n == 4 ? f[2] : f[0];
                p->hue = n == 4 ? f[3] : f[0];
            }
        } else if (klen == 4 && strncmp(s, "gray", 4) == 0) {
            bad = parse_float_span(v, end, &p->gray_p);
        } else if (klen == 4 && strncmp(s, "flip", 4) == 0) {
            bad = !(end - v == 1 && (*v == '0' || *v == '1'));
            if (!bad)
                p->flip = *v == '1';
        } else if (klen == 4 && strncmp(s, "blur", 4) == 0) {
            bad = parse_float_span(v, end, &p->blur_p);
        } else {
            err_set(err, err_len,
                    "augmentation '%.*s': unknown key '%.*s' (crop, jitter, gray, flip, blur)",
                    (int)(end - s), s, klen, s);
            return -1;
        }
        if (bad) {
            err_set(err, err_len, "augmentation '%.*s': malformed value", (int)(end - s), s);
            return -1;
        }
        if (*end && !end[1]) {
            err_set(err, err_len, "augmentation '%s': expected key=value after the last ','", spec);
            return -1;
        }
        s = *end ? end + 1 : end;
    }
    char why[160];
    if (augment_params_check(p, why, sizeof why) != 0) {
        err_set(err, err_len, "augmentation '%s': %s", spec, why);
        return -1;
    }
    return 0;
}

int augment_params_check(const struct augment_params *p, char *err, size_t err_len)
{
    if (p->size < 1 || p->size > 4096) {
        err_set(err, err_len, "output size %u out of range 1..4096", p->size);
        return -1;
    }
    if (p->layout != AUGMENT_HWC && p->layout != AUGMENT_CHW) {
        err_set(err, err_len, "unknown layout %d", (int)p->layout);
        return -1;
    }
    if (!p->train) {
        if (p->test_resize && p->test_resize < p->size) {
            err_set(err, err_len, "test resize %u smaller than the crop %u", p->test_resize,
                    p->size);
            return -1;
        }
        return 0;
    }
    if (!(p->scale_min > 0 && p->scale_min <= p->scale_max && p->scale_max <= 1)) {
        err_set(err, err_len, "crop scale range [%g, %g] not within (0, 1]", p->scale_min,
                p->scale_max);
        return -1;
    }
    if (!(p->ratio_min > 0 && p->ratio_min <= p->ratio_max && p->ratio_max < 100)) {
        err_set(err, err_len, "crop ratio range [%g, %g] invalid", p->ratio_min, p->ratio_max);
        return -1;
    }
    if (!(p->brightness >= 0 && p->brightness < 1 && p->contrast >= 0 && p->contrast < 1 &&
          p->saturation >= 0 && p->saturation < 1 && p->hue >= 0 && p->hue <= 0.5f)) {
        err_set(err, err_len, "colour jitter out of range (brightness, contrast, saturation "
                              "in [0,1), hue in [0,0.5])");
        return -1;
    }
    if (!(p->gray_p >= 0 && p->gray_p <= 1)) {
        err_set(err, err_len, "grayscale probability %g not in [0,1]", p->gray_p);
        return -1;
    }
    if (!(p->blur_p >= 0 && p->blur_p <= 1)) {
        err_set(err, err_len, "blur probability %g not in [0,1]", p->blur_p);
        return -1;
    }
    return 0;
}

struct augment *augment_new(const struct augment_params *p)
{
    if (augment_params_check(p, NULL, 0))
        return NULL;
    struct augment *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->p = *p;
    a->img = malloc((size_t)p->size * p->size * 3);
    if (!a->img)
        goto free_a;
    if (p->train && p->blur_p > 0) {
        size_t n = blur_scratch_floats(p->size, p->size, augment_blur_ksize(p->size));
        a->s.bf = malloc(n * sizeof(float));
        if (!a->s.bf)
            goto free_img;
        a->s.bf_cap = n;
    }
    return a;
free_img:
    free(a->img);
free_a:
    free(a);
    return NULL;
}

void augment_destroy(struct augment **ap)
{
    if (!ap || !*ap)
        return;
    scratch_free(&(*ap)->s);
    free((*ap)->img);
    free(*ap);
    *ap = NULL;
}

const struct augment_params *augment_get_params(const struct augment *a)
{
    return &a->p;
}

size_t augment_out_bytes(const struct augment *a)
{
    return (size_t)a->p.size * a->p.size * 3;
}

/* ---- Pillow's bilinear resampling ------------------------------------------------------- */

static double bilinear_filter(double x)
{
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return 1.0 - x;
    return 0.0;
}

/* Coefficients of output positions [o0, o0 + cnt) of a resize of the span [in0, in1) of
 * in_size pixels to out_size, taps clipped to [0, in_size) (Pillow's precompute_coeffs with a
 * box + normalize_coeffs_8bpc; the whole image is in0 = 0, in1 = in_size). Returns ksize. */
static int coeffs(struct scratch *s, int in_size, double in0, double in1, int out_size, int o0,
                  int cnt, int32_t **kk, size_t *kk_cap, int **bounds, size_t *b_cap)
{
    double scale = (in1 - in0) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    grow((void **)&s->kd, &s->kd_cap, (size_t)cnt * ksize, sizeof(double));
    grow((void **)kk, kk_cap, (size_t)cnt * ksize, sizeof(int32_t));
    grow((void **)bounds, b_cap, (size_t)cnt * 2, sizeof(int));
    for (int i = 0; i < cnt; i++) {
        int xx = o0 + i;
        double center = in0 + (xx + 0.5) * scale;
        double ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0)
            xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size)
            xmax = in_size;
        xmax -= xmin;
        double *k = &s->kd[(size_t)i * ksize];
        int x;
        for (x = 0; x < xmax; x++) {
            double w = bilinear_filter((x + xmin - center + 0.5) * ss);
            k[x] = w;
            ww += w;
        }
        for (x = 0; x < xmax; x++)
            if (ww != 0.0)
                k[x] /= ww;
        for (; x < ksize; x++)
            k[x] = 0;
        (*bounds)[2 * i] = xmin;
        (*bounds)[2 * i + 1] = xmax;
    }
    for (size_t x = 0; x < (size_t)cnt * ksize; x++) {
        double v = s->kd[x];
        (*kk)[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS))
                         : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
    }
    return ksize;
}

static inline uint8_t clip8(int32_t v)
{
    v >>= PRECISION_BITS;
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* A span [x0, x1) x [y0, y1) of source pixel coordinates (fractional: a crop box mapped into
 * an image decoded at a reduced scale). */
struct box {
    double x0, y0, x1, y1;
};

/* Resizes the box b of the in_w x in_h RGB image at src (row stride `stride` bytes; taps
 * clipped to the image) to out_w x out_h and writes the window [ox, ox + dw) x [oy, oy + dh)
 * of the result to dst (dw x dh x 3, packed). Each output pixel depends only on its own
 * coefficients, so the window equals the corresponding part of the full Pillow resize. */
static void resample_box(struct scratch *s, const uint8_t *src, size_t stride, int in_w,
                         int in_h, struct box b, int out_w, int out_h, int ox, int oy, int dw,
                         int dh, uint8_t *dst)
{
    /* src (in_h, in_w, 3) dst (dh, dw, 3) */
    int need_h = !(b.x0 == 0 && b.x1 == in_w && out_w == in_w);
    int need_v = !(b.y0 == 0 && b.y1 == in_h && out_h == in_h);
    if (!need_h && !need_v) {
        for (int y = 0; y < dh; y++)
            memcpy(dst + (size_t)y * dw * 3, src + (size_t)(y + oy) * stride + (size_t)ox * 3,
                   (size_t)dw * 3);
        return;
    }
    int ks_y = 0, first = oy, last = oy + dh;
    if (need_v) {
        ks_y = coeffs(s, in_h, b.y0, b.y1, out_h, oy, dh, &s->ky, &s->ky_cap, &s->by,
                      &s->by_cap);
        first = s->by[0];
        last = s->by[2 * (dh - 1)] + s->by[2 * (dh - 1) + 1];
    }
    const uint8_t *vsrc = src + (size_t)ox * 3; /* vertical-only: window columns */
    size_t vstride = stride;
    int vbase = 0;
    if (need_h) {
        int ks_x = coeffs(s, in_w, b.x0, b.x1, out_w, ox, dw, &s->kx, &s->kx_cap, &s->bx,
                          &s->bx_cap);
        int rows = last - first;
        uint8_t *tmp;
        if (need_v) {
            grow((void **)&s->tmp, &s->tmp_cap, (size_t)rows * dw * 3, 1);
            tmp = s->tmp;
        } else {
            tmp = dst; /* rows == dh */
        }
        for (int y = 0; y < rows; y++) {
            const uint8_t *in = src + (size_t)(y + first) * stride;
            uint8_t *out = tmp + (size_t)y * dw * 3;
            for (int xx = 0; xx < dw; xx++) {
                int xmin = s->bx[2 * xx], xmax = s->bx[2 * xx + 1];
                const int32_t *k = &s->kx[(size_t)xx * ks_x];
                int32_t s0 = 1 << (PRECISION_BITS - 1), s1 = s0, s2 = s0;
                const uint8_t *pp = in + (size_t)xmin * 3;
                for (int x = 0; x < xmax; x++) {
                    s0 += pp[3 * x] * k[x];
                    s1 += pp[3 * x + 1] * k[x];
                    s2 += pp[3 * x + 2] * k[x];
                }
                out[3 * xx] = clip8(s0);
                out[3 * xx + 1] = clip8(s1);
                out[3 * xx + 2] = clip8(s2);
            }
        }
        if (!need_v)
            return;
        vsrc = tmp;
        vstride = (size_t)dw * 3;
        vbase = first;
    }
    /* vertical: taps outer, the row of dw*3 accumulators inner (contiguous: vectorises) */
    size_t row = (size_t)dw * 3;
    grow((void **)&s->acc, &s->acc_cap, row, sizeof(int32_t));
    int32_t *acc = s->acc;
    for (int yy = 0; yy < dh; yy++) {
        int ymin = s->by[2 * yy] - vbase, ymax = s->by[2 * yy + 1];
        const int32_t *k = &s->ky[(size_t)yy * ks_y];
        uint8_t *out = dst + (size_t)yy * row;
        for (size_t xx = 0; xx < row; xx++)
            acc[xx] = 1 << (PRECISION_BITS - 1);
        for (int y = 0; y < ymax; y++) {
            const uint8_t *pp = vsrc + (size_t)(ymin + y) * vstride;
            int32_t ky = k[y];
            for (size_t xx = 0; xx < row; xx++)
                acc[xx] += pp[xx] * ky;
        }
        for (size_t xx = 0; xx < row; xx++)
            out[xx] = clip8(acc[xx]);
    }
}

/* resample_box of the whole in_w x in_h image. */
static void resample(struct scratch *s, const uint8_t *src, size_t stride, int in_w, int in_h,
                     int out_w, int out_h, int ox, int oy, int dw, int dh, uint8_t *dst)
{
    struct box b = { 0, 0, in_w, in_h };
    resample_box(s, src, stride, in_w, in_h, b, out_w, out_h, ox, oy, dw, dh, dst);
}

void augment_resize_box(struct augment *a, const uint8_t *src, uint32_t sw, uint32_t sh,
                        uint32_t x, uint32_t y, uint32_t cw, uint32_t ch, uint8_t *dst,
                        uint32_t dw, uint32_t dh)
{
    NPID_CHECK(cw >= 1 && ch >= 1 && x + cw <= sw && y + ch <= sh && dw >= 1 && dh >= 1);
    struct scratch tmp = { 0 };
    struct scratch *s = a ? &a->s : &tmp;
    resample(s, src + ((size_t)y * sw + x) * 3, (size_t)sw * 3, (int)cw, (int)ch, (int)dw,
             (int)dh, 0, 0, (int)dw, (int)dh, dst);
    if (!a)
        scratch_free(&tmp);
}

/* ---- random parameters --------------------------------------------------------------------- */

/* Python's round(): half to even (the default rounding mode). */
static double pyround(double v)
{
    return nearbyint(v);
}

static double uniform(struct rng *r, double lo, double hi)
{
    return lo + (hi - lo) * rng_double(r);
}

void augment_crop_params(const struct augment_params *p, struct rng *r, uint32_t w, uint32_t h,
                         struct augment_draw *d)
{
    double area = (double)w * h;
    double lr0 = log(p->ratio_min), lr1 = log(p->ratio_max);
    for (int t = 0; t < 10; t++) {
        double target = area * uniform(r, p->scale_min, p->scale_max);
        double ar = exp(uniform(r, lr0, lr1));
        double cw = pyround(sqrt(target * ar)), ch = pyround(sqrt(target / ar));
        if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
            d->crop_w = (uint32_t)cw;
            d->crop_h = (uint32_t)ch;
            d->crop_y = (uint32_t)rng_below(r, h - d->crop_h + 1);
            d->crop_x = (uint32_t)rng_below(r, w - d->crop_w + 1);
            d->fallback = 0;
            return;
        }
    }
    double in_ratio = (double)w / h;
    uint32_t cw, ch;
    if (in_ratio < p->ratio_min) {
        cw = w;
        ch = (uint32_t)pyround(cw / (double)p->ratio_min);
    } else if (in_ratio > p->ratio_max) {
        ch = h;
        cw = (uint32_t)pyround(ch * (double)p->ratio_max);
    } else {
        cw = w;
        ch = h;
    }
    if (cw < 1) cw = 1;
    if (ch < 1) ch = 1;
    if (cw > w) cw = w;
    if (ch > h) ch = h;
    d->crop_w = cw;
    d->crop_h = ch;
    d->crop_y = (h - ch) / 2;
    d->crop_x = (w - cw) / 2;
    d->fallback = 1;
}

/* ---- colour operations (in place on n packed RGB pixels) ---------------------------------- */

static inline uint8_t luma(const uint8_t *p)
{
    return (uint8_t)((p[0] * 19595u + p[1] * 38470u + p[2] * 7471u + 0x8000u) >> 16);
}

/* Pillow's ImagingBlend(degenerate, image, alpha): truncation of in1 + alpha (in2 - in1),
 * computed in float and clamped to 0..255 (written branch-free so loops vectorise; the
 * clamp-then-truncate order gives Pillow's result in every case). */
static inline uint8_t blend(int in1, int in2, float alpha)
{
    float t = (float)in1 + alpha * (float)(in2 - in1);
    t = t < 0.0f ? 0.0f : t;
    t = t > 255.0f ? 255.0f : t;
    return (uint8_t)(int)t;
}

/* Maps each of the n bytes at v through lut (in place). With AVX-512 VBMI in the build's
 * target (-march=native on a CPU that has it), 64 bytes at a time: two 128-byte table
 * permutes and a select on each index's top bit; otherwise one byte at a time. */
static void map_bytes(uint8_t *v, size_t n, const uint8_t lut[256])
{
#if defined(__AVX512VBMI__) && defined(__AVX512BW__)
    __m512i t0 = _mm512_loadu_si512(lut), t1 = _mm512_loadu_si512(lut + 64);
    __m512i t2 = _mm512_loadu_si512(lut + 128), t3 = _mm512_loadu_si512(lut + 192);
    for (size_t i = 0; i < n; i += 64) {
        __mmask64 live = n - i >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << (n - i)) - 1;
        __m512i x = _mm512_maskz_loadu_epi8(live, v + i);
        __m512i lo = _mm512_permutex2var_epi8(t0, x, t1);
        __m512i hi = _mm512_permutex2var_epi8(t2, x, t3);
        _mm512_mask_storeu_epi8(v + i, live,
                                _mm512_mask_blend_epi8(_mm512_movepi8_mask(x), lo, hi));
    }
#else
    for (size_t i = 0; i < n; i++)
        v[i] = lut[v[i]];
#endif
}

/* Brightness and contrast are one function of each byte (a blend with a constant), so each
 * applies a table of that function's 256 values, computed with blend itself. */
void augment_brightness(uint8_t *rgb, size_t n, float f)
{
    uint8_t lut[256];
    for (int v = 0; v < 256; v++)
        lut[v] = blend(0, v, f);
    map_bytes(rgb, n * 3, lut);
}

void augment_contrast(uint8_t *rgb, size_t n, float f)
{
    if (n == 0)
        return;
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += luma(rgb + 3 * i);
    int mean = (int)((double)sum / (double)n + 0.5);
    uint8_t lut[256];
    for (int v = 0; v < 256; v++)
        lut[v] = blend(mean, v, f);
    map_bytes(rgb, n * 3, lut);
}

void augment_saturation(uint8_t *rgb, size_t n, float f)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = rgb + 3 * i;
        int l = luma(p);
        p[0] = blend(l, p[0], f);
        p[1] = blend(l, p[1], f);
        p[2] = blend(l, p[2], f);
    }
}

static inline int clip8i(int v)
{
    return v <= 0 ? 0 : v >= 255 ? 255 : v;
}

/* Pillow's rgb2hsv_row for one pixel with max > min (Convert.c), in Pillow's words and its
 * float/double mix: the H and S bytes. The reference the hue tables are built from. */
static void pil_rgb2hs(int r, int g, int b, uint8_t *uh, uint8_t *us)
{
    int maxc = r > g ? r : g, minc = r < g ? r : g;
    maxc = maxc > b ? maxc : b;
    minc = minc < b ? minc : b;
    float cr = (float)(maxc - minc);
    float s = cr / (float)maxc;
    float rc = ((float)(maxc - r)) / cr;
    float gc = ((float)(maxc - g)) / cr;
    float bc = ((float)(maxc - b)) / cr;
    float h;
    if (r == maxc)
        h = bc - gc;
    else if (g == maxc)
        h = 2.0 + rc - bc;
    else
        h = 4.0 + gc - rc;
    h = fmod((h / 6.0 + 1.0), 1.0);
    *uh = (uint8_t)clip8i((int)(h * 255.0));
    *us = (uint8_t)clip8i((int)(s * 255.0));
}

/* Tables of Pillow's HSV conversions, built once with Pillow's own expressions (so results
 * are identical, not approximated):
 *   h[m][x][y]: rgb2hsv's H byte of a non-grey pixel, indexed by its two channels other than
 *     the minimum (minus the minimum): m is the minimum's channel (0 blue, 1 green, 2 red;
 *     the first of b, g, r that equals the minimum), x and y the remaining channels in r, g,
 *     b order. H depends only on the differences max - c and on which channels equal the
 *     maximum, which subtracting the minimum keeps, so h[m][x][y] is rgb2hsv of the pixel
 *     with its minimum channel set to 0;
 *   s[v][c]: rgb2hsv's S byte of a pixel of maximum v and chroma (max - min) c, 0 < c <= v;
 *   sector[h]: hsv2rgb's i % 6 of hue byte h;
 *   p[s][v]: hsv2rgb's p byte (rounded, clamped) of saturation byte s and value v;
 *   m[h][s]: the factor of v in the one of hsv2rgb's q and t that its sector uses (q in
 *     sectors 1, 3, 5, t in 0, 2, 4), in double as Pillow computes it: the result is
 *     round((float)v * m[h][s]), clamped. */
static struct {
    int ready;
    uint8_t h[3][256][256];
    uint8_t s[256][256];
    uint8_t sector[256];
    uint8_t p[256][256];
    double m[256][256];
} hue_tab;

static void hue_tables(void)
{
    if (hue_tab.ready)
        return;
    uint8_t unused;
    for (int x = 0; x < 256; x++)
        for (int y = 0; y < 256; y++) {
            if (x == 0 && y == 0)
                continue; /* grey: never looked up */
            pil_rgb2hs(x, y, 0, &hue_tab.h[0][x][y], &unused);
            pil_rgb2hs(x, 0, y, &hue_tab.h[1][x][y], &unused);
            pil_rgb2hs(0, x, y, &hue_tab.h[2][x][y], &unused);
        }
    for (int v = 1; v < 256; v++)
        for (int c = 1; c <= v; c++)
            pil_rgb2hs(v, v - c, v - c, &unused, &hue_tab.s[v][c]); /* S: max, chroma only */
    /* Pillow hsv2rgb's terms */
    for (int h = 0; h < 256; h++) {
        int i = (int)floor((float)h * 6.0 / 255.0);
        float f = (float)h * 6.0 / 255.0 - (float)i;
        hue_tab.sector[h] = (uint8_t)(i % 6);
        for (int s = 0; s < 256; s++) {
            float fs = ((float)s) / 255.0;
            hue_tab.m[h][s] = i % 2 ? 1.0 - fs * f : 1.0 - fs * (1.0 - f);
        }
    }
    for (int s = 0; s < 256; s++) {
        float fs = ((float)s) / 255.0;
        for (int v = 0; v < 256; v++)
            hue_tab.p[s][v] = (uint8_t)clip8i((int)round((float)v * (1.0 - fs)));
    }
    hue_tab.ready = 1; /* idempotent: racing threads write identical values */
}

#define HUE_CHUNK 256

/* c ? a : b for c in {0, 1}, as bit operations (the compiler turns chains of ?: on one
 * variable back into branches, which stops vectorisation). */
static inline int sel(int c, int a, int b)
{
    return b ^ ((a ^ b) & -c);
}

/* The per-pixel work of augment_hue on planar chunks of m <= HUE_CHUNK pixels, in three
 * loops: table indices (vectorised), the table reads (scalar: narrow gathers do not
 * vectorise), then the rest of hsv2rgb (vectorised: selects instead of branches). Every
 * value is Pillow's (see hue_tab), so results are bit-identical. */
static void hue_chunk(const uint8_t *R, const uint8_t *G, const uint8_t *B, uint8_t *OR,
                      uint8_t *OG, uint8_t *OB, int m, int dh)
{
    int32_t hi[HUE_CHUNK], si[HUE_CHUNK];
    uint8_t K[HUE_CHUNK], S[HUE_CHUNK], P[HUE_CHUNK];
    double M[HUE_CHUNK];
    for (int i = 0; i < m; i++) {
        int r = R[i], g = G[i], b = B[i];
        int mx = r > g ? r : g;
        mx = mx > b ? mx : b;
        int mn = r < g ? r : g;
        mn = mn < b ? mn : b;
        /* rgb2hsv: the table of the minimum's channel, at the other two (grey pixels read
         * entry 0, unused) */
        int t = sel(b == mn, 0, sel(g == mn, 1, 2));
        int x = sel(t == 2, g, r) - mn, y = sel(t == 0, g, b) - mn;
        hi[i] = (t << 16) | (x << 8) | y;
        si[i] = (mx << 8) | (mx - mn);
    }
    /* hi and si index the tables as flat blocks (h: 3 x 256 x 256, s: 256 x 256 bytes) */
    const uint8_t *hflat = (const uint8_t *)hue_tab.h, *sflat = (const uint8_t *)hue_tab.s;
    for (int i = 0; i < m; i++) {
        int uh = (hflat[hi[i]] + dh) & 255, us = sflat[si[i]];
        int uv = si[i] >> 8;
        K[i] = hue_tab.sector[uh];
        S[i] = (uint8_t)us;
        P[i] = hue_tab.p[us][uv];
        M[i] = hue_tab.m[uh][us];
    }
    for (int i = 0; i < m; i++) {
        int r = R[i], g = G[i], b = B[i];
        int mx = r > g ? r : g;
        mx = mx > b ? mx : b;
        int mn = r < g ? r : g;
        mn = mn < b ? mn : b;
        int uv = mx, k = K[i], pp = P[i];
        double wv = (float)uv * M[i];
        int ww = (int)wv;
        ww += wv - ww >= 0.5;                /* round(), half away from zero, x >= 0 */
        ww = ww > 255 ? 255 : ww;
        /* sectors 0..5: (v, t, p) (q, v, p) (p, v, t) (p, q, v) (t, p, v) (v, p, q) */
        int o0 = pp, o1 = pp, o2 = pp;
        o0 = sel((k == 1) | (k == 4), ww, o0);
        o0 = sel((k == 0) | (k == 5), uv, o0);
        o1 = sel((k == 0) | (k == 3), ww, o1);
        o1 = sel((k == 1) | (k == 2), uv, o1);
        o2 = sel((k == 2) | (k == 5), ww, o2);
        o2 = sel((k == 3) | (k == 4), uv, o2);
        int grey = S[i] == 0;                /* s == 0: v, v, v */
        o0 = sel(grey, uv, o0);
        o1 = sel(grey, uv, o1);
        o2 = sel(grey, uv, o2);
        grey = mx == mn;                     /* grey: Pillow's round trip returns it as is */
        o0 = sel(grey, r, o0);
        o1 = sel(grey, g, o1);
        o2 = sel(grey, b, o2);
        OR[i] = (uint8_t)o0;
        OG[i] = (uint8_t)o1;
        OB[i] = (uint8_t)o2;
    }
}

void augment_hue(uint8_t *rgb, size_t n, float shift)
{
    /* no shortcut for a zero shift: Pillow's HSV round trip is lossy and is part of the result */
    int dh = (uint8_t)(int)(shift * 255.0);
    hue_tables();
    uint8_t R[HUE_CHUNK], G[HUE_CHUNK], B[HUE_CHUNK], OR[HUE_CHUNK], OG[HUE_CHUNK], OB[HUE_CHUNK];
    for (size_t base = 0; base < n; base += HUE_CHUNK) {
        int m = n - base < HUE_CHUNK ? (int)(n - base) : HUE_CHUNK;
        uint8_t *p = rgb + 3 * base;
        for (int i = 0; i < m; i++) {
            R[i] = p[3 * i];
            G[i] = p[3 * i + 1];
            B[i] = p[3 * i + 2];
        }
        hue_chunk(R, G, B, OR, OG, OB, m, dh);
        for (int i = 0; i < m; i++) {
            p[3 * i] = OR[i];
            p[3 * i + 1] = OG[i];
            p[3 * i + 2] = OB[i];
        }
    }
}

void augment_grayscale(uint8_t *rgb, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = rgb + 3 * i;
        uint8_t l = luma(p);
        p[0] = p[1] = p[2] = l;
    }
}

void augment_flip(uint8_t *rgb, uint32_t w, uint32_t h)
{
    for (uint32_t y = 0; y < h; y++) {
        uint8_t *row = rgb + (size_t)y * w * 3;
        for (uint32_t a = 0, b = w - 1; a < b; a++, b--) {
            uint8_t t0 = row[3 * a], t1 = row[3 * a + 1], t2 = row[3 * a + 2];
            row[3 * a] = row[3 * b];
            row[3 * a + 1] = row[3 * b + 1];
            row[3 * a + 2] = row[3 * b + 2];
            row[3 * b] = t0;
            row[3 * b + 1] = t1;
            row[3 * b + 2] = t2;
        }
    }
}

/* ---- Gaussian blur (torchvision's gaussian_blur on a uint8 tensor) ------------------------ */

uint32_t augment_blur_ksize(uint32_t size)
{
    return 2 * (size / 20) + 1 < 3 ? 3 : 2 * (size / 20) + 1;
}

/* torch.nn.functional.pad(mode="reflect") index for i in [-pad, n + pad): the mirror about
 * the first and last pixel (not repeating them), applied again while out of range (torch
 * refuses pad >= n; only then is the division reached). */
static inline int64_t reflect_index(int64_t i, int64_t n)
{
    if (i >= 0 && i < n)
        return i;
    if (i < 0 && -i < n)
        return -i;
    if (i >= n && i < 2 * n - 1)
        return 2 * (n - 1) - i;
    if (n == 1)
        return 0;
    int64_t period = 2 * (n - 1);
    i %= period;
    if (i < 0)
        i += period;
    return i < n ? i : period - i;
}

void augment_blur(struct augment *a, uint8_t *rgb, uint32_t w, uint32_t h, uint32_t ksize,
                  float sigma)
{
    /* rgb (h, w, 3) in place; kernel (ksize) */
    NPID_CHECK(w >= 1 && h >= 1 && ksize % 2 == 1 && ksize <= 1023 && sigma > 0);
    struct scratch tmp = { 0 };
    struct scratch *s = a ? &a->s : &tmp;
    grow((void **)&s->bf, &s->bf_cap, blur_scratch_floats(w, h, ksize), sizeof(float));
    int64_t r = ksize / 2;
    size_t row = (size_t)w * 3;
    float *k = s->bf, *pad = k + ksize, *hb = pad + ((size_t)w + ksize) * 3,
          *acc = hb + row * h;
    /* _get_gaussian_kernel1d: linspace(-half, half) (exact: integers), pdf in float32 */
    float half = (float)(ksize - 1) * 0.5f, sum = 0;
    for (uint32_t t = 0; t < ksize; t++) {
        float x = ((float)t - half) / sigma;
        k[t] = expf(-0.5f * (x * x));
        sum += k[t];
    }
    for (uint32_t t = 0; t < ksize; t++)
        k[t] /= sum;
    /* across: each row reflect-padded by r pixels, then taps outer, the row inner */
    for (uint32_t y = 0; y < h; y++) {
        const uint8_t *in = rgb + (size_t)y * row;
        for (size_t j = 0; j < row; j++)
            pad[(size_t)r * 3 + j] = in[j];
        for (int64_t x = 1; x <= r; x++)
            for (int c = 0; c < 3; c++) {
                pad[(size_t)(r - x) * 3 + c] = in[reflect_index(-x, w) * 3 + c];
                pad[(size_t)(r + w - 1 + x) * 3 + c] = in[reflect_index(w - 1 + x, w) * 3 + c];
            }
        float *out = hb + (size_t)y * row;
        for (size_t j = 0; j < row; j++)
            out[j] = 0;
        for (uint32_t t = 0; t < ksize; t++) {
            const float *pp = pad + (size_t)t * 3;
            float kt = k[t];
            for (size_t j = 0; j < row; j++)
                out[j] += kt * pp[j];
        }
    }
    /* down: rows reflected by index, the same kernel; then round half to even (torch.round,
     * nearbyintf in the default rounding mode) and clamp */
    for (uint32_t y = 0; y < h; y++) {
        for (size_t j = 0; j < row; j++)
            acc[j] = 0;
        for (uint32_t t = 0; t < ksize; t++) {
            const float *pp = hb + (size_t)reflect_index((int64_t)y + t - r, h) * row;
            float kt = k[t];
            for (size_t j = 0; j < row; j++)
                acc[j] += kt * pp[j];
        }
        uint8_t *out = rgb + (size_t)y * row;
        for (size_t j = 0; j < row; j++) {
            float v = nearbyintf(acc[j]);
            out[j] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    if (!a)
        scratch_free(&tmp);
}

void augment_hwc_to_chw(const uint8_t *hwc, size_t n, uint8_t *chw)
{
    uint8_t *r = chw, *g = chw + n, *b = chw + 2 * n;
    for (size_t i = 0; i < n; i++) {
        r[i] = hwc[3 * i];
        g[i] = hwc[3 * i + 1];
        b[i] = hwc[3 * i + 2];
    }
}

/* ---- the transforms -------------------------------------------------------------------- */

static void apply_jitter(const struct augment_params *p, struct rng *r, uint8_t *img, size_t n,
                         struct augment_draw *d)
{
    /* torchvision ColorJitter.get_params: a permutation, then the four factors */
    uint8_t order[4] = { 0, 1, 2, 3 };
    for (int i = 3; i > 0; i--) {
        int j = (int)rng_below(r, (uint64_t)i + 1);
        uint8_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    float bf = 1, cf = 1, sf = 1, hf = 0;
    if (p->brightness > 0)
        bf = (float)uniform(r, 1.0 - p->brightness, 1.0 + p->brightness);
    if (p->contrast > 0)
        cf = (float)uniform(r, 1.0 - p->contrast, 1.0 + p->contrast);
    if (p->saturation > 0)
        sf = (float)uniform(r, 1.0 - p->saturation, 1.0 + p->saturation);
    if (p->hue > 0)
        hf = (float)uniform(r, -p->hue, p->hue);
    for (int i = 0; i < 4; i++) {
        switch (order[i]) {
        case 0: if (p->brightness > 0) augment_brightness(img, n, bf); break;
        case 1: if (p->contrast > 0) augment_contrast(img, n, cf); break;
        case 2: if (p->saturation > 0) augment_saturation(img, n, sf); break;
        case 3: if (p->hue > 0) augment_hue(img, n, hf); break;
        }
    }
    memcpy(d->order, order, 4);
    d->brightness = bf;
    d->contrast = cf;
    d->saturation = sf;
    d->hue = hf;
}

static uint32_t ceil_div(uint32_t a, uint32_t b)
{
    return (uint32_t)(((uint64_t)a + b - 1) / b);
}

/* Resize(test_resize) of a w x h image: shorter side test_resize, longer int(test_resize *
 * long / short). */
static void test_resized(uint32_t R, uint32_t w, uint32_t h, uint32_t *nw, uint32_t *nh)
{
    if (w <= h) {
        *nw = R;
        *nh = (uint32_t)((double)R * h / w);
    } else {
        *nh = R;
        *nw = (uint32_t)((double)R * w / h);
    }
}

/* The test transform's box for a w x h source: the whole image (test_resize 0), else the
 * centre crop in the coordinates of the resized image. */
static void test_geometry(const struct augment_params *p, uint32_t w, uint32_t h,
                          struct augment_draw *d)
{
    uint32_t S = p->size;
    if (p->test_resize == 0) {
        d->crop_x = d->crop_y = 0;
        d->crop_w = w;
        d->crop_h = h;
        return;
    }
    uint32_t nw, nh;
    test_resized(p->test_resize, w, h, &nw, &nh);
    /* CenterCrop(S): top = int(round((nh - S) / 2.0)), padding when smaller (not reached:
     * test_resize >= size) */
    d->crop_w = S < nw ? S : nw;
    d->crop_h = S < nh ? S : nh;
    d->crop_y = (uint32_t)pyround((nh - d->crop_h) / 2.0);
    d->crop_x = (uint32_t)pyround((nw - d->crop_w) / 2.0);
}

/* src: w x h, the src_w x src_h image decoded at 1/denom; d: test_geometry of src_w x src_h.
 * The resize maps the whole source, src_w / denom x src_h / denom pixels of src. */
static void test_transform(struct augment *a, const uint8_t *src, uint32_t w, uint32_t h,
                           uint32_t denom, uint32_t src_w, uint32_t src_h,
                           const struct augment_draw *d, uint8_t *img)
{
    uint32_t S = a->p.size;
    struct box b = { 0, 0, (double)src_w / denom, (double)src_h / denom };
    if (a->p.test_resize == 0) {
        resample_box(&a->s, src, (size_t)w * 3, (int)w, (int)h, b, (int)S, (int)S, 0, 0,
                     (int)S, (int)S, img);
        return;
    }
    uint32_t nw, nh;
    test_resized(a->p.test_resize, src_w, src_h, &nw, &nh);
    uint32_t cw = d->crop_w, ch = d->crop_h;
    memset(img, 0, (size_t)S * S * 3);
    if (cw == S && ch == S) {
        resample_box(&a->s, src, (size_t)w * 3, (int)w, (int)h, b, (int)nw, (int)nh,
                     (int)d->crop_x, (int)d->crop_y, (int)S, (int)S, img);
    } else {
        /* degenerate: resized image smaller than the crop in one dimension; torchvision pads
         * with zeros around the centred image */
        uint8_t *win = malloc((size_t)cw * ch * 3);
        NPID_CHECK(win != NULL);
        resample_box(&a->s, src, (size_t)w * 3, (int)w, (int)h, b, (int)nw, (int)nh,
                     (int)d->crop_x, (int)d->crop_y, (int)cw, (int)ch, win);
        uint32_t py = (S - ch) / 2, px = (S - cw) / 2;
        for (uint32_t y = 0; y < ch; y++)
            memcpy(img + ((size_t)(y + py) * S + px) * 3, win + (size_t)y * cw * 3, (size_t)cw * 3);
        free(win);
    }
}

void augment_geometry(const struct augment_params *p, struct rng *r, uint32_t w, uint32_t h,
                      struct augment_draw *d)
{
    NPID_CHECK(w >= 1 && h >= 1);
    memset(d, 0, sizeof *d);
    d->brightness = d->contrast = d->saturation = 1;
    if (p->train)
        augment_crop_params(p, r, w, h, d);
    else
        test_geometry(p, w, h, d);
}

uint32_t augment_scale_denom(const struct augment_params *p, const struct augment_draw *d,
                             uint32_t w, uint32_t h)
{
    uint32_t S = p->size, best = 1;
    for (uint32_t k = 2; k <= 8; k *= 2) {
        int ok;
        if (p->train)
            ok = ceil_div(d->crop_w, k) >= S && ceil_div(d->crop_h, k) >= S;
        else if (p->test_resize)
            ok = ceil_div(w < h ? w : h, k) >= p->test_resize;
        else
            ok = ceil_div(w, k) >= S && ceil_div(h, k) >= S;
        if (ok)
            best = k;
    }
    return best;
}

void augment_apply_scaled(struct augment *a, const uint8_t *src, uint32_t w, uint32_t h,
                          uint32_t denom, uint32_t src_w, uint32_t src_h, struct rng *r,
                          uint8_t *out, struct augment_draw *d)
{
    NPID_CHECK(denom == 1 || denom == 2 || denom == 4 || denom == 8);
    NPID_CHECK(src_w >= 1 && src_h >= 1 && w == ceil_div(src_w, denom) &&
               h == ceil_div(src_h, denom));
    const struct augment_params *p = &a->p;
    uint32_t S = p->size;
    size_t n = (size_t)S * S;
    uint8_t *img = p->layout == AUGMENT_HWC ? out : a->img;
    if (!p->train) {
        test_transform(a, src, w, h, denom, src_w, src_h, d, img);
    } else {
        /* the crop box at 1/denom: a fractional span within the whole pixels it touches, the
         * taps clipped to those (crop, then resize) */
        NPID_CHECK(d->crop_w >= 1 && d->crop_h >= 1 && d->crop_x + d->crop_w <= src_w &&
                   d->crop_y + d->crop_h <= src_h);
        uint32_t x0 = d->crop_x / denom, y0 = d->crop_y / denom;
        uint32_t x1 = ceil_div(d->crop_x + d->crop_w, denom);
        uint32_t y1 = ceil_div(d->crop_y + d->crop_h, denom);
        double k = denom;
        struct box b = { d->crop_x / k - x0, d->crop_y / k - y0,
                         (d->crop_x + d->crop_w) / k - x0, (d->crop_y + d->crop_h) / k - y0 };
        resample_box(&a->s, src + ((size_t)y0 * w + x0) * 3, (size_t)w * 3, (int)(x1 - x0),
                     (int)(y1 - y0), b, (int)S, (int)S, 0, 0, (int)S, (int)S, img);
        if (p->gray_first && p->gray_p > 0 && rng_double(r) < p->gray_p) {
            augment_grayscale(img, n);
            d->gray = 1;
        }
        apply_jitter(p, r, img, n, d);
        if (!p->gray_first && p->gray_p > 0 && rng_double(r) < p->gray_p) {
            augment_grayscale(img, n);
            d->gray = 1;
        }
        if (p->flip && rng_double(r) < 0.5) {
            augment_flip(img, S, S);
            d->flip = 1;
        }
        /* RandomApply([GaussianBlur]): applied when a uniform draw falls below blur_p, then
         * GaussianBlur.get_params draws sigma (torch draws it in float32) */
        if (p->blur_p > 0 && rng_double(r) < p->blur_p) {
            d->blur_sigma = (float)uniform(r, 0.1, 2.0);
            augment_blur(a, img, S, S, augment_blur_ksize(S), d->blur_sigma);
            d->blur = 1;
        }
    }
    if (p->layout == AUGMENT_CHW)
        augment_hwc_to_chw(img, n, out);
}

void augment_apply(struct augment *a, const uint8_t *src, uint32_t w, uint32_t h,
                   struct rng *r, uint8_t *out, struct augment_draw *draw)
{
    struct augment_draw dd;
    struct augment_draw *d = draw ? draw : &dd;
    augment_geometry(&a->p, r, w, h, d);
    augment_apply_scaled(a, src, w, h, 1, w, h, r, out, d);
}

void augment_apply_seeded(struct augment *a, const uint8_t *src, uint32_t w, uint32_t h,
                          uint64_t seed, uint64_t epoch, uint64_t index, uint8_t *out,
                          struct augment_draw *draw)
{
    struct rng r = rng_derive(seed, epoch, index);
    augment_apply(a, src, w, h, &r, out, draw);
}
