/* Image headers read from their bytes alone, with no image library: which format the first
 * bytes are, and the dimensions a header states (JPEG's frame header, PNG's IHDR, WebP's VP8,
 * VP8L or VP8X chunk). What a program needs to look at a dataset without decoding it (the
 * trainer's input-size rule, common/dataset.h's dataset_probe_sides); common/image.h builds
 * on it and decodes. tests/check_image.c compares imghdr_probe with the libraries' own
 * header readers (image_probe). */
#ifndef NPID_COMMON_IMGHDR_H
#define NPID_COMMON_IMGHDR_H

#include <stddef.h>
#include <stdint.h>

enum image_format { IMAGE_UNKNOWN = 0, IMAGE_JPEG, IMAGE_PNG, IMAGE_WEBP };

/* Which decoder the first bytes call for: FF D8 (JPEG; jpeg_dec_decode requires the
 * following FF and says "truncated" otherwise), the first 4 bytes of the PNG signature, or
 * "RIFF" with "WEBP" at offset 8 (a RIFF file shorter than 12 bytes counts as WebP, so that
 * it is reported truncated). */
enum image_format image_sniff(const void *data, size_t len);
/* "JPEG", "PNG", "WebP" or "unknown". */
const char *image_format_name(enum image_format f);

/* The dimensions and stored components (PNG: 1 grey, 2 grey+alpha, 3 RGB or palette, 4 RGBA;
 * JPEG: the frame's components; WebP: 3, or 4 with alpha) a header states; data may be the
 * first bytes of the file (a JPEG's frame header follows its APPn segments). 0, or -1 with a
 * reason (no known signature, a header cut short or malformed). The image data is not
 * checked: image_decode may still refuse the file. */
int imghdr_probe(const void *data, size_t len, uint32_t *w, uint32_t *h, int *components,
                 char *err, size_t err_len);

/* PNG's signature and IHDR fields (imghdr_probe's PNG case; image.c reads them before libpng
 * runs). */
int imghdr_png(const uint8_t *p, size_t len, uint32_t *w, uint32_t *h, int *comps, char *err,
               size_t err_len);
/* The reason for content no decoder takes, naming what it looks like (GIF, BMP, text...). */
void imghdr_unknown(const uint8_t *p, size_t len, char *err, size_t err_len);

#endif
