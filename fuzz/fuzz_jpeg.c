/* libFuzzer target: the JPEG decode wrapper (and the augmentation of whatever it accepts).
 * Built and run by `make fuzz` (and briefly by `make fuzz-ci`; mk/fuzz.mk). Limits are small so
 * the fuzzer explores rejection paths quickly; the decoder must never crash, leak or run
 * unbounded. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/augment.h"
#include "common/jpeg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct jpeg_dec *dec;
    static struct augment *aug;
    static uint8_t out[32 * 32 * 3];
    if (!dec) {
        struct jpeg_limits lim;
        jpeg_limits_default(&lim);
        lim.max_width = lim.max_height = 2048;
        lim.max_pixels = 1u << 20;
        lim.max_scans = 32;
        dec = jpeg_dec_new(&lim);
        struct augment_params p;
        augment_preset("cifar", 1, 32, AUGMENT_CHW, &p);
        aug = augment_new(&p);
        if (!dec || !aug)
            abort();
    }
    struct jpeg_image img;
    char err[256];
    uint32_t min_side = size > 0 ? (uint32_t)(data[size - 1] & 63) : 0;
    if (jpeg_dec_decode(dec, data, size, min_side, &img, err, sizeof err) == 0)
        augment_apply_seeded(aug, img.pix, img.w, img.h, 1, 2, size, out, NULL);
    return 0;
}
