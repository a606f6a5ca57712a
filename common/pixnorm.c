/* Input normalisation (see pixnorm.h). */
#include "common/pixnorm.h"

#include <string.h>

void pixnorm_for(const char *preset, struct pixnorm *n)
{
    static const double cifar_mean[3] = { 0.4914, 0.4822, 0.4465 };
    static const double cifar_std[3] = { 0.2023, 0.1994, 0.2010 };
    static const double inet_mean[3] = { 0.485, 0.456, 0.406 };
    static const double inet_std[3] = { 0.229, 0.224, 0.225 };
    int inet = preset && strcmp(preset, "imagenet") == 0;
    for (int c = 0; c < 3; c++) {
        double m = inet ? inet_mean[c] : cifar_mean[c], s = inet ? inet_std[c] : cifar_std[c];
        n->scale[c] = (float)(1.0 / (255.0 * s));
        n->shift[c] = (float)(-m / s);
    }
}

void pixnorm_apply(const struct pixnorm *n, const uint8_t *pix, size_t images, size_t plane,
                   float *x)
{
    for (size_t i = 0; i < images; i++)
        for (size_t c = 0; c < 3; c++) {
            const uint8_t *src = pix + (i * 3 + c) * plane;
            float *dst = x + (i * 3 + c) * plane;
            float scale = n->scale[c], shift = n->shift[c];
            for (size_t k = 0; k < plane; k++)
                dst[k] = (float)src[k] * scale + shift;
        }
}
