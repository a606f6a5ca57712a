/* libFuzzer target: PNG through the image front-end (image_decode, libpng underneath) and the
 * augmentation of whatever it accepts. Built and run by `make fuzz` (and briefly by `make
 * fuzz-ci`; mk/fuzz.mk), seeded with the PNG bad-image fixtures. The first 8 bytes are forced
 * to the PNG signature, so every input reaches libpng rather than the unknown-format rejection;
 * everything after them (IHDR, CRCs, zlib data, chunk lengths) is the fuzzer's. Limits are
 * small so rejection paths are explored quickly; the decoder must never crash, leak, longjmp
 * out or run unbounded. */
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
    uint8_t *buf = fuzz_copy(data, size, 8);
    if (!buf)
        return 0;
    memcpy(buf, "\x89PNG\r\n\x1a\n", size < 8 ? size : 8);
    fuzz_image_decode(dec, aug, buf, size);
    free(buf);
    return 0;
}
