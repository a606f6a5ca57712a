/* libFuzzer target: the JPEG decode wrapper (and the augmentation of whatever it accepts).
 * Built and run by `make fuzz` (and briefly by `make fuzz-ci`; mk/fuzz.mk). Limits are small so
 * the fuzzer explores rejection paths quickly; the decoder must never crash, leak or run
 * unbounded. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/jpeg.h"
#include "fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct jpeg_dec *dec;
    static struct augment *aug;
    fuzz_image_setup(32, &dec, &aug);
    struct jpeg_image img;
    char err[256];
    uint32_t min_side = size > 0 ? (uint32_t)(data[size - 1] & 63) : 0;
    if (jpeg_dec_decode(dec, data, size, min_side, &img, err, sizeof err) == 0)
        fuzz_image_augment(aug, &img, size);
    return 0;
}
