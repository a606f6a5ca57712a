/* What the libFuzzer targets (fuzz/fuzz_*.c) share: a failed-check abort and the frame-bounds
 * test of the network decoders; the decoder and augmenter the image targets run. Header-only:
 * each target is one program built from its .c file (mk/fuzz.mk). */
#ifndef NPID_FUZZ_UTIL_H
#define NPID_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/augment.h"
#include "common/image.h"
#include "common/jpeg.h"

/* Aborts with the reason: libFuzzer prints it, then the stack and the input's file name. */
#define CHECK(cond)                                                                       \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);      \
            abort();                                                                      \
        }                                                                                 \
    } while (0)

/* The frame being decoded: set by each LLVMFuzzerTestOneInput before it decodes. */
static const uint8_t *frame_lo __attribute__((unused)), *frame_hi __attribute__((unused));

/* 1 when [p, p + n) lies inside the frame (or n is 0 and p is NULL: an absent field). */
static inline int in_frame(const void *p, size_t n)
{
    const uint8_t *b = p;
    if (!b)
        return n == 0;
    return b >= frame_lo && b <= frame_hi && n <= (size_t)(frame_hi - b);
}

/* The image targets' decoder (small limits, so rejection paths are explored quickly; max_scans
 * 0 keeps the default) and a CIFAR augmenter to 32 x 32 for whatever decodes; made once. */
static inline void fuzz_image_setup(unsigned max_scans, struct jpeg_dec **dec,
                                    struct augment **aug)
{
    if (*dec)
        return;
    struct jpeg_limits lim;
    jpeg_limits_default(&lim);
    lim.max_width = lim.max_height = 2048;
    lim.max_pixels = 1u << 20;
    if (max_scans)
        lim.max_scans = max_scans;
    *dec = jpeg_dec_new(&lim);
    struct augment_params p;
    augment_preset("cifar", 1, 32, AUGMENT_CHW, &p);
    *aug = augment_new(&p);
    if (!*dec || !*aug)
        abort();
}

/* Augments a decoded image (seeded by the input's size) into a static 32 x 32 buffer. */
static inline void fuzz_image_augment(struct augment *aug, const struct jpeg_image *img,
                                      size_t size)
{
    static uint8_t out[32 * 32 * 3];
    augment_apply_seeded(aug, img->pix, img->w, img->h, 1, 2, size, out, NULL);
}

/* A writable copy of the input with room for at least min bytes (the rest zero), for targets
 * that force a signature into it; NULL when out of memory. */
static inline uint8_t *fuzz_copy(const uint8_t *data, size_t size, size_t min)
{
    uint8_t *buf = calloc(size > min ? size : min, 1);
    if (buf && size)
        memcpy(buf, data, size);
    return buf;
}

/* Decodes size bytes through the image front-end (image_decode) and augments what it accepts. */
static inline void fuzz_image_decode(struct jpeg_dec *dec, struct augment *aug, const uint8_t *buf,
                                     size_t size)
{
    struct jpeg_image img;
    char err[256];
    if (image_decode(dec, buf, size, 0, &img, err, sizeof err) == 0)
        fuzz_image_augment(aug, &img, size);
}

#endif
