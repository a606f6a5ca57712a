/* Image decoding front-end: JPEG, PNG and WebP, told apart by the file's first bytes (the
 * name or extension never decides), decoded to packed RGB with the hardening of common/jpeg.h.
 *
 *  - JPEG (FF D8 ...) goes to jpeg_dec_decode unchanged (DCT-domain downscaling included).
 *  - PNG (89 50 4E 47 0D 0A 1A 0A) through libpng: 1/2/4/8/16-bit, grey, grey+alpha,
 *    palette, RGB, RGBA, Adam7-interlaced. Alpha (an alpha channel or a tRNS chunk) is
 *    dropped, not composited, and 16-bit samples keep their high byte, as Pillow's
 *    Image.open(f).convert("RGB") does for RGB, RGBA and grey+alpha files. Exception: Pillow
 *    opens 16-bit greyscale as mode "I" and convert("RGB") clips every value above 255 to
 *    white; here grey16 keeps its high byte like the other 16-bit types. Colour metadata
 *    (gAMA, cHRM, iCCP, sRGB, sBIT) is ignored, as by Pillow. An image whose pixel data is
 *    complete is accepted without its trailing chunks or IEND (Pillow accepts it too).
 *  - WebP (RIFF <size> WEBP) through libwebp: lossy, lossless, with or without alpha
 *    (dropped). Animated files are rejected.
 *  - Anything else is rejected, naming what it looks like (GIF, BMP, TIFF, text, ...).
 *
 * For every format: the width, height and pixel count are checked against the decoder's
 * struct jpeg_limits before any pixel buffer is allocated (for PNG from the IHDR bytes,
 * before libpng runs; libpng also gets them as user limits, at most 256
 * ancillary chunks are kept and no chunk may take more than 8 MiB);
 * truncated or corrupt files fail with a one-line reason; libpng's errors longjmp back
 * inside the decoder, which leaks nothing and stays usable. PNG and WebP always decode at
 * full size (img->scale_denom 1) whatever min_side asks: only JPEG can downscale for free.
 *
 * libpng allocates its small read state per PNG (a few tens of KiB); libjpeg's and the pixel
 * and file buffers are reused as for JPEG. */
#ifndef NPID_IMAGE_H
#define NPID_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "common/imghdr.h"
#include "common/jpeg.h"

/* Decodes data[0..len) to packed RGB (HWC, stride img->w * 3) with d's buffers and limits.
 * min_side as in jpeg_dec_decode (JPEG only). On 0, img->pix points into d's pixel buffer,
 * valid until the next call with d. Returns 0, or -1 with a one-line reason in err that does
 * not name a file (callers prefix the path). */
int image_decode(struct jpeg_dec *d, const void *data, size_t len, uint32_t min_side,
                 struct jpeg_image *img, char *err, size_t err_len);

/* image_decode with the scale chosen as jpeg_dec_decode_pick does. pick is called exactly
 * once for every image that decodes, with its size in the file: for JPEG before its pixels
 * are decoded, for PNG and WebP after (they decode all of the image at full size whatever it
 * asks); for
 * JPEG it may also have been called for an image that then fails. */
int image_decode_pick(struct jpeg_dec *d, const void *data, size_t len, jpeg_denom_fn pick,
                      void *ctx, struct jpeg_image *img, char *err, size_t err_len);

/* Reads the header only with the libraries' own readers (libjpeg's, libwebp's; the reference
 * tests/check_image.c holds common/imghdr to; data may be the first bytes): dimensions and the
 * number of components stored (PNG: 1 grey, 2 grey+alpha, 3 RGB or palette, 4 RGBA; WebP: 3,
 * or 4 with alpha). Returns 0, or -1 with a reason. */
int image_probe(const void *data, size_t len, uint32_t *w, uint32_t *h, int *components,
                char *err, size_t err_len);

#endif
