/* The input normalisation of every network input, written once (trainer, evald, the warm
 * start): x = (p / 255 - mean) / std per channel of uint8 CHW pixels p, computed as
 * p * scale + shift with scale = 1 / (255 std) and shift = -mean / std (rounded to float from
 * double). ImageNet's statistics for the imagenet preset, CIFAR-10's for every other. */
#ifndef NPID_PIXNORM_H
#define NPID_PIXNORM_H

#include <stddef.h>
#include <stdint.h>

struct pixnorm {
    float scale[3], shift[3];
};

/* The normalisation of augmentation preset `preset` ("cifar", "imagenet", ...). */
void pixnorm_for(const char *preset, struct pixnorm *n);
/* images CHW images of plane = side * side pixels per channel, from pix into x. */
void pixnorm_apply(const struct pixnorm *n, const uint8_t *pix, size_t images, size_t plane,
                   float *x);

#endif
