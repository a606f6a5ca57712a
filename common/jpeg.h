/* JPEG decoding (libjpeg-turbo) that treats every file as untrusted.
 *
 * A decode either yields a complete RGB image or fails with a specific reason; it never
 * exits, never hangs and never allocates more than the configured limits allow:
 *  - libjpeg errors longjmp back to the caller (no exit());
 *  - any corrupt-data warning (libjpeg-turbo otherwise "succeeds" on a truncated file and
 *    fills the rest with grey) rejects the image;
 *  - dimensions are checked after reading the header and before any pixel buffer is
 *    allocated: width, height and width*height against struct jpeg_limits;
 *  - progressive files may have at most max_scans scans (a file with thousands of tiny scans
 *    otherwise costs a full coefficient pass per scan);
 *  - 12-bit (and any precision other than 8), lossless and arithmetic-coded files are
 *    rejected with their own reasons; PNG/GIF/BMP/WebP/text content named .jpg is reported
 *    as such;
 *  - greyscale is replicated to RGB; CMYK and YCCK (Adobe, inverted or not) are converted to
 *    RGB; other colour spaces are rejected.
 *
 * A struct jpeg_dec keeps its libjpeg state and buffers between calls, so decoding many
 * images allocates nothing once its buffers have grown to the largest image seen. A decoder
 * is used by one thread at a time. It is also the decoder state of common/image.h, which
 * tells JPEG, PNG and WebP apart by their bytes: PNG and WebP decode into the same buffers
 * under the same limits (max_scans aside). Code that reads image files calls image_decode;
 * jpeg_dec_decode accepts JPEG only. */
#ifndef NPID_JPEG_H
#define NPID_JPEG_H

#include <stddef.h>
#include <stdint.h>

struct jpeg_limits {
    uint32_t max_width;     /* default 16384 */
    uint32_t max_height;    /* default 16384 */
    uint64_t max_pixels;    /* width * height of the decoded output, default 64 Mpx */
    uint32_t max_scans;     /* JPEG progressive scans, default 64 (baseline: 1 per component) */
    size_t max_file_bytes;  /* default 64 MiB (used by dataset readers) */
};

void jpeg_limits_default(struct jpeg_limits *l);
/* 0 when a w x h image fits l (width, height and pixel count), else -1 with the reason
 * ("dimensions WxH exceed the limit (...)"). Used by every decoder of common/image.h. */
int jpeg_limits_check(const struct jpeg_limits *l, uint32_t w, uint32_t h, char *err,
                      size_t err_len);

/* A decoded image: packed RGB, HWC, stride w*3. */
struct jpeg_image {
    const uint8_t *pix;
    uint32_t w, h;          /* output size (after any DCT-domain downscaling) */
    uint32_t src_w, src_h;  /* size in the file */
    uint32_t scale_denom;   /* 1, 2, 4 or 8 */
};

struct jpeg_dec;

/* lim NULL: defaults. NULL on allocation failure. */
struct jpeg_dec *jpeg_dec_new(const struct jpeg_limits *lim);
void jpeg_dec_destroy(struct jpeg_dec **d);
const struct jpeg_limits *jpeg_dec_limits(const struct jpeg_dec *d);

/* Decodes data[0..len) to RGB. min_side as in dataset_decode (0: full size). On 0, img->pix
 * points into the decoder's buffer, valid until the next call with d. Returns 0, or -1 with
 * a one-line reason in err (which does not name a file: callers prefix the path). */
int jpeg_dec_decode(struct jpeg_dec *d, const void *data, size_t len, uint32_t min_side,
                    struct jpeg_image *img, char *err, size_t err_len);

/* A rectangle [x0, x1) x [y0, y1) of an image, in the pixels of the file. */
struct jpeg_region {
    uint32_t x0, y0, x1, y1;
};
/* Chooses the DCT scale denominator (1, 2, 4 or 8) of a w x h image (its size in the file),
 * and the region the caller will read: *roi holds the whole image on entry and may be
 * narrowed to a non-empty rectangle within it. */
typedef uint32_t (*jpeg_denom_fn)(void *ctx, uint32_t w, uint32_t h, struct jpeg_region *roi);
/* jpeg_dec_decode with the scale pick(ctx, w, h, roi) returns, called once, after the header
 * has passed the checks and before any pixel is decoded (a value outside {1, 2, 4, 8}, or a
 * region not within the image, is a broken invariant). The scaled size is libjpeg's,
 * ceil(w / denom) x ceil(h / denom), and img->pix that whole image (stride img->w * 3), but
 * only the pixels of roi at that scale (x0 / denom .. ceil(x1 / denom), the same for y) are
 * defined when pick narrowed it: those are the full decode's, byte for byte, while the rows
 * and columns outside are not colour-converted (rows below still entropy-decoded, so a
 * corrupt file is rejected as by a full decode). */
int jpeg_dec_decode_pick(struct jpeg_dec *d, const void *data, size_t len, jpeg_denom_fn pick,
                         void *ctx, struct jpeg_image *img, char *err, size_t err_len);
/* The pick of the min_side entry points (jpeg_dec_decode, image_decode, dataset_decode): ctx
 * points to a uint32_t min_side; the largest denominator keeping both scaled sides >= it
 * (1 for 0), the whole image. */
uint32_t jpeg_pick_min_side(void *ctx, uint32_t w, uint32_t h, struct jpeg_region *roi);

/* The decoder's file buffer, grown to at least n bytes (for readers that load a file and
 * then decode it); NULL on allocation failure. Valid until the next call with d. */
uint8_t *jpeg_dec_file_buffer(struct jpeg_dec *d, size_t n);
/* The decoder's pixel buffer, grown to at least n bytes (for non-JPEG sources such as CIFAR
 * records that want to return a struct jpeg_image too); NULL on allocation failure. */
uint8_t *jpeg_dec_pixel_buffer(struct jpeg_dec *d, size_t n);

/* Reads the header only: dimensions and number of components. Returns 0, or -1 with reason. */
int jpeg_probe(const void *data, size_t len, uint32_t *w, uint32_t *h, int *components,
               char *err, size_t err_len);

/* Encodes packed RGB (w*h*3 bytes, HWC) at quality 1..100 into a malloc'd buffer (*out,
 * *out_len; caller frees). Returns 0 or -1. */
int jpeg_encode_rgb(const uint8_t *rgb, uint32_t w, uint32_t h, int quality, uint8_t **out,
                    size_t *out_len);

#endif
