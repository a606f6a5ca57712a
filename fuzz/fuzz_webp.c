/* libFuzzer target: WebP through the image front-end (image_decode, libwebp underneath) and the
 * augmentation of whatever it accepts. Built and run by `make fuzz` (and briefly by `make
 * fuzz-ci`; mk/fuzz.mk), seeded with the WebP bad-image fixtures. "RIFF" and "WEBP" are forced
 * at offsets 0 and 8, so every input reaches the WebP path; the RIFF size, the chunks and the
 * VP8/VP8L bitstreams are the fuzzer's. Limits are small so rejection paths are explored
 * quickly; the decoder must never crash, leak or run unbounded. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/image.h"
#include "fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct jpeg_dec *dec;
    static struct augment *aug;
    fuzz_image_setup(0, &dec, &aug);
    uint8_t *buf = fuzz_copy(data, size, 12);
    if (!buf)
        return 0;
    memcpy(buf, "RIFF", size < 4 ? size : 4);
    if (size >= 12)
        memcpy(buf + 8, "WEBP", 4);
    fuzz_image_decode(dec, aug, buf, size);
    free(buf);
    return 0;
}
