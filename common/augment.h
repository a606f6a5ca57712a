/* Image augmentations with torchvision (PIL backend) semantics, on packed uint8 RGB.
 *
 * Train transform (augment_params.train = 1), in the reference's order:
 *   RandomResizedCrop(size, scale, ratio): up to 10 tries of an area fraction uniform in
 *     [scale_min, scale_max] and an aspect ratio log-uniform in [ratio_min, ratio_max]
 *     (w = round(sqrt(A r)), h = round(sqrt(A / r)); accepted when both fit, then a uniform
 *     position), else the centre-crop fallback (ratio clamped to the range); the crop is
 *     resized with PIL's bilinear filter (antialiased: the triangle filter is widened by the
 *     downscale factor, separable, horizontal pass first, 22-bit fixed point with rounding,
 *     8-bit intermediate), which is what torchvision does for PIL images;
 *   ColorJitter(brightness, contrast, saturation, hue): factors uniform in [1-b, 1+b] (etc.)
 *     and hue shift uniform in [-hue, hue], applied in a random order (a uniform permutation
 *     of the four); PIL semantics: brightness blends with black, contrast with the rounded
 *     mean of the L image, saturation with the L image (blend = truncation of
 *     a + f (b - a), clamped to 0..255), hue shifts the H channel of PIL's HSV by
 *     (uint8)(hue * 255) modulo 256;
 *   RandomGrayscale(gray_p): L = (19595 R + 38470 G + 7471 B + 32768) >> 16 (PIL's
 *     0.299/0.587/0.114) replicated to three channels;
 *   RandomHorizontalFlip(0.5) when flip is set;
 *   RandomApply([GaussianBlur(k, sigma=(0.1, 2.0))], blur_p) (SimCLR, MoCo v2): with
 *     probability blur_p a Gaussian blur of sigma uniform in [0.1, 2.0] and kernel side
 *     k = augment_blur_ksize(size), with torchvision's tensor gaussian_blur semantics
 *     (augment_blur); drawn and applied last (SimCLR's and MoCo v2's order is crop, flip,
 *     jitter, gray, blur: the flip, a spatial operation, commutes with the colour ones), so
 *     the other operations' draws and results do not depend on blur_p, and with blur_p = 0
 *     nothing is drawn for it.
 *   gray_first puts RandomGrayscale before ColorJitter (the reference's ImageNet order).
 * Test transform (train = 0): when test_resize > 0, resize so the shorter side is
 *   test_resize (the longer side int(test_resize * long / short), PIL bilinear), then a centre
 *   crop of size x size (torchvision's rounding); when test_resize == 0 and the image is
 *   size x size already, a copy; otherwise a bilinear resize of the whole image to size.
 *
 * Random draws come from a struct rng the caller supplies; augment_apply_seeded uses
 * rng_derive(seed, epoch, index), so the output depends only on (image, params, seed, epoch,
 * index) and not on which process or thread computes it.
 *
 * A struct augment holds scratch memory sized at augment_new for its params: applying it
 * allocates nothing. It is used by one thread at a time. */
#ifndef NPID_AUGMENT_H
#define NPID_AUGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "common/rng.h"

/* Pixel layout of augment outputs and of batches: HWC (packed RGB) or CHW (planar). */
enum augment_layout { AUGMENT_HWC = 0, AUGMENT_CHW = 1 };

struct augment_params {
    uint32_t size;                  /* output side, square; 1..4096 */
    int train;                      /* 1: random train transform; 0: test transform */
    float scale_min, scale_max;     /* RandomResizedCrop area fraction, default 0.2, 1.0 */
    float ratio_min, ratio_max;     /* aspect ratio range, default 3/4, 4/3 */
    float brightness, contrast, saturation, hue; /* ColorJitter; 0 disables that jitter */
    float gray_p;                   /* RandomGrayscale probability */
    int gray_first;                 /* grayscale before colour jitter (ImageNet reference) */
    int flip;                       /* RandomHorizontalFlip(0.5) */
    float blur_p;                   /* RandomApply(GaussianBlur) probability; 0 (off) in
                                     * every preset */
    uint32_t test_resize;           /* test transform: shorter side before centre crop; 0 none */
    enum augment_layout layout;
};

/* Fills p with a preset: "cifar" (size 32 unless size > 0; RandomResizedCrop scale 0.2-1,
 * ColorJitter 0.4 x4, RandomGrayscale 0.2, no flip, no blur; test: identity), "imagenet"
 * (size 224 unless size > 0; same with gray_first and flip; test: resize 256/224*size, centre
 * crop) or "none" (train and test: plain resize to size). Returns 0, or -1 for an unknown name. */
int augment_preset(const char *name, int train, uint32_t size, enum augment_layout layout,
                   struct augment_params *p);
/* Overrides train-transform fields of p from spec, comma-separated key=value pairs applied in
 * order (the trainer's --crop-scale, --jitter, --gray, --flip and --blur; docs/protocol.md,
 * "aug"):
 *   crop=MIN-MAX    RandomResizedCrop area fraction range (e.g. 0.08-1)
 *   jitter=S        ColorJitter brightness = contrast = saturation = hue = S
 *   jitter=B/C/S/H  each separately (e.g. 0.4/0.4/0.4/0.1)
 *   gray=P          RandomGrayscale probability
 *   flip=0|1        RandomHorizontalFlip(0.5) off or on
 *   blur=P          RandomApply(GaussianBlur) probability (0: off)
 * An empty spec changes nothing. Returns 0, or -1 with a one-line reason naming the pair (an
 * unknown key, a malformed or out-of-range value; the result is checked with
 * augment_params_check), p then unspecified. */
int augment_override(struct augment_params *p, const char *spec, char *err, size_t err_len);

/* Checks ranges (size, probabilities gray_p and blur_p in [0,1], 0 < scale_min <= scale_max
 * <= 1, 0 < ratio_min <= ratio_max, jitter in [0,1) except hue in [0,0.5]). 0 or -1 with
 * reason. */
int augment_params_check(const struct augment_params *p, char *err, size_t err_len);

/* What one application drew (for tests and diagnostics). Crop box in source pixels. */
struct augment_draw {
    uint32_t crop_x, crop_y, crop_w, crop_h;
    int fallback;                   /* 1 when the centre-crop fallback was used */
    float brightness, contrast, saturation, hue; /* drawn factors (1, 1, 1, 0 when disabled) */
    uint8_t order[4];               /* jitter order: 0 brightness, 1 contrast, 2 saturation, 3 hue */
    int gray;                       /* grayscale applied */
    int flip;                       /* flip applied */
    int blur;                       /* blur applied */
    float blur_sigma;               /* its sigma (0 when not applied) */
};

struct augment;

/* NULL when p fails augment_params_check or on allocation failure. */
struct augment *augment_new(const struct augment_params *p);
void augment_destroy(struct augment **a);
const struct augment_params *augment_get_params(const struct augment *a);
/* Bytes of one output image: size * size * 3. */
size_t augment_out_bytes(const struct augment *a);

/* Transforms src (w x h packed RGB, w, h >= 1) into out (augment_out_bytes bytes, in the
 * params' layout), drawing from r (train transform only). draw may be NULL. */
void augment_apply(struct augment *a, const uint8_t *src, uint32_t w, uint32_t h,
                   struct rng *r, uint8_t *out, struct augment_draw *draw);
/* ---- decoding at a reduced scale (JPEG DCT scaling) ---------------------------------------
 * augment_apply is augment_geometry, then augment_apply_scaled at denom 1. A caller that can
 * decode at 1/2, 1/4 or 1/8 scale draws the geometry from the size in the file first, asks
 * augment_scale_denom for the scale, decodes at it and finishes with augment_apply_scaled on
 * the same stream: the box drawn, and every later draw, are the full-size decode's. */

/* Resets d and fills its box for a w x h source (the size in the file, w, h >= 1): train,
 * the RandomResizedCrop box drawn from r (augment_crop_params); test, the fixed box that
 * augment_apply reports (nothing drawn, r unused and may be NULL). */
void augment_geometry(const struct augment_params *p, struct rng *r, uint32_t w, uint32_t h,
                      struct augment_draw *d);
/* The largest DCT scale denominator k in {1, 2, 4, 8} at which the w x h source still has the
 * resolution the output takes from it, sizes at 1/k rounded up as libjpeg rounds its scaled
 * output (ceil(n / k)): train, the box d (augment_geometry) keeps ceil(crop_w / k) >= size and
 * ceil(crop_h / k) >= size; test, the shorter side keeps ceil(short / k) >= test_resize
 * (test_resize 0: both sides >= size). 1 when no reduction fits. */
uint32_t augment_scale_denom(const struct augment_params *p, const struct augment_draw *d,
                             uint32_t w, uint32_t h);
/* Finishes the transform of a src_w x src_h source decoded at 1/denom into src (w x h, w =
 * ceil(src_w / denom), h = ceil(src_h / denom); denom 1, 2, 4 or 8): d holds augment_geometry
 * of src_w x src_h drawn from r, and r continues from there; the rest of the draws are
 * written to d. The box is mapped to src as the fractional span box / denom, resized with
 * taps clipped to the pixels the span touches (at denom 1: exactly augment_apply). */
void augment_apply_scaled(struct augment *a, const uint8_t *src, uint32_t w, uint32_t h,
                          uint32_t denom, uint32_t src_w, uint32_t src_h, struct rng *r,
                          uint8_t *out, struct augment_draw *d);
/* augment_apply with rng_derive(seed, epoch, index). */
void augment_apply_seeded(struct augment *a, const uint8_t *src, uint32_t w, uint32_t h,
                          uint64_t seed, uint64_t epoch, uint64_t index, uint8_t *out,
                          struct augment_draw *draw);

/* ---- the deterministic pieces, exposed for tests and for callers composing their own ---- */

/* Crop box (x, y, cw, ch) of src (sw x sh) resized with PIL's antialiased bilinear filter to
 * dst (dw x dh), packed RGB. Uses scratch from a (NULL: allocates temporarily). */
void augment_resize_box(struct augment *a, const uint8_t *src, uint32_t sw, uint32_t sh,
                        uint32_t x, uint32_t y, uint32_t cw, uint32_t ch, uint8_t *dst,
                        uint32_t dw, uint32_t dh);
/* Draws the RandomResizedCrop box for a w x h image (torchvision's get_params). */
void augment_crop_params(const struct augment_params *p, struct rng *r, uint32_t w, uint32_t h,
                         struct augment_draw *d);
/* In place on n packed RGB pixels. */
void augment_brightness(uint8_t *rgb, size_t n, float f);
void augment_contrast(uint8_t *rgb, size_t n, float f);
void augment_saturation(uint8_t *rgb, size_t n, float f);
void augment_hue(uint8_t *rgb, size_t n, float shift);
void augment_grayscale(uint8_t *rgb, size_t n);
/* Mirrors each row of a w x h packed RGB image in place. */
void augment_flip(uint8_t *rgb, uint32_t w, uint32_t h);
/* GaussianBlur's kernel side for a size x size output: the odd number nearest size / 10
 * (ties, size a multiple of 20, go up), at least 3; that is 2 floor(size / 20) + 1, SimCLR's
 * rule (radius = (size // 10) // 2): 3 up to 39 px, 5 at 40-59, 7 at 64, 9 at 96, 23 at 224. */
uint32_t augment_blur_ksize(uint32_t size);
/* Gaussian blur of a w x h packed RGB image in place, torchvision's tensor gaussian_blur
 * (what F.gaussian_blur does to a PIL image too): the 1-D kernel exp(-x^2 / (2 sigma^2)) at
 * x = -(ksize-1)/2 .. (ksize-1)/2, normalised to sum 1, in float32 as torchvision builds it;
 * the same kernel across and down (separable; torchvision convolves once with the float32
 * outer product of the two, which differs only in float rounding); "reflect" padding of ksize / 2 (the edge
 * pixel is not repeated: index -1 reads 1); float32 sums; each result rounded half to even
 * and clamped to 0..255. Where torchvision needs ksize / 2 < side, indices here reflect
 * repeatedly (a 1-pixel side keeps its value). ksize odd, 1..1023; sigma > 0. Uses scratch
 * from a (sized by augment_new for the params' own blur; NULL: allocates temporarily). */
void augment_blur(struct augment *a, uint8_t *rgb, uint32_t w, uint32_t h, uint32_t ksize,
                  float sigma);
/* Packed RGB (HWC) to planar (CHW), n pixels. */
void augment_hwc_to_chw(const uint8_t *hwc, size_t n, uint8_t *chw);

#endif
