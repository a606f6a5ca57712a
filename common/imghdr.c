/* Image headers from their bytes: see imghdr.h. */
#include "common/imghdr.h"

#include <string.h>

#include "common/log.h"

static const uint8_t png_sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };

enum image_format image_sniff(const void *data, size_t len)
{
    const uint8_t *p = data;
    if (len >= 2 && p[0] == 0xFF && p[1] == 0xD8)
        return IMAGE_JPEG;
    if (len >= 4 && memcmp(p, png_sig, 4) == 0)
        return IMAGE_PNG;
    if (len >= 4 && memcmp(p, "RIFF", 4) == 0 && (len < 12 || memcmp(p + 8, "WEBP", 4) == 0))
        return IMAGE_WEBP;
    return IMAGE_UNKNOWN;
}

const char *image_format_name(enum image_format f)
{
    switch (f) {
    case IMAGE_JPEG: return "JPEG";
    case IMAGE_PNG: return "PNG";
    case IMAGE_WEBP: return "WebP";
    default: return "unknown";
    }
}

/* The reason for content that no decoder takes, naming what it looks like. */
void imghdr_unknown(const uint8_t *p, size_t len, char *err, size_t err_len)
{
    const char *kind = NULL;
    if (len >= 6 && (memcmp(p, "GIF87a", 6) == 0 || memcmp(p, "GIF89a", 6) == 0))
        kind = "GIF";
    else if (len >= 2 && p[0] == 'B' && p[1] == 'M')
        kind = "BMP";
    else if (len >= 4 && (memcmp(p, "II*\0", 4) == 0 || memcmp(p, "MM\0*", 4) == 0))
        kind = "TIFF";
    else if (len >= 12 && memcmp(p, "RIFF", 4) == 0)
        kind = "RIFF (not WebP)";
    else if (len >= 12 && memcmp(p + 4, "ftyp", 4) == 0)
        kind = "ISO media (HEIF/AVIF)";
    else {
        size_t n = len < 256 ? len : 256, text = 0;
        for (size_t i = 0; i < n; i++)
            if ((p[i] >= 0x20 && p[i] < 0x7f) || p[i] == '\n' || p[i] == '\r' || p[i] == '\t')
                text++;
        if (n > 0 && text == n)
            kind = "text";
    }
    if (kind)
        err_set(err, err_len, "not a JPEG, PNG or WebP: %s content", kind);
    else
        err_set(err, err_len, "not a JPEG, PNG or WebP: no known signature");
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

int imghdr_png(const uint8_t *p, size_t len, uint32_t *w, uint32_t *h, int *comps, char *err,
               size_t err_len)
{
    size_t sig = len < 8 ? len : 8;
    if (memcmp(p, png_sig, sig) != 0) {
        /* 0D 0A 1A 0A exist to catch a transfer that rewrote line ends */
        err_set(err, err_len, "invalid PNG: damaged signature (line ends rewritten?)");
        return -1;
    }
    /* signature, IHDR length and type, width, height, depth, colour type */
    if (len < 8 + 8 + 10) {
        err_set(err, err_len, "truncated PNG: %zu bytes, no complete IHDR", len);
        return -1;
    }
    if (be32(p + 8) != 13 || memcmp(p + 12, "IHDR", 4) != 0) {
        err_set(err, err_len, "invalid PNG: the first chunk is not a 13-byte IHDR");
        return -1;
    }
    *w = be32(p + 16);
    *h = be32(p + 20);
    if (*w == 0 || *h == 0 || *w > 0x7fffffffu || *h > 0x7fffffffu) {
        err_set(err, err_len, "invalid PNG: dimensions %ux%u", *w, *h);
        return -1;
    }
    switch (p[25]) {
    case 0: *comps = 1; break;
    case 2: *comps = 3; break;
    case 3: *comps = 3; break;
    case 4: *comps = 2; break;
    case 6: *comps = 4; break;
    default:
        err_set(err, err_len, "invalid PNG: colour type %u", p[25]);
        return -1;
    }
    return 0;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

static uint32_t le16(const uint8_t *p) { return (uint32_t)p[1] << 8 | p[0]; }
static uint32_t le24(const uint8_t *p) { return (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0]; }
static uint32_t be16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }

/* The first frame header (SOF0..SOF15 but DHT C4, JPG C8 and DAC CC) after the markers and
 * segments before it. */
static int jpeg_header(const uint8_t *p, size_t len, uint32_t *w, uint32_t *h, int *comps,
                       char *err, size_t err_len)
{
    size_t i = 2;
    for (;;) {
        while (i < len && p[i] != 0xFF)
            i++; /* not a marker: stray bytes between segments */
        while (i < len && p[i] == 0xFF)
            i++; /* fill bytes */
        if (i >= len)
            break;
        uint8_t m = p[i++];
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD8))
            continue; /* TEM, RSTn, SOI: no length */
        if (m == 0xD9 || m == 0xDA) {
            err_set(err, err_len, "invalid JPEG: %s before a frame header",
                    m == 0xD9 ? "end of image" : "scan");
            return -1;
        }
        if (i + 2 > len)
            break;
        uint32_t seg = be16(p + i);
        if (seg < 2) {
            err_set(err, err_len, "invalid JPEG: a segment of length %u", seg);
            return -1;
        }
        if (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) {
            if (i + 8 > len)
                break;
            *h = be16(p + i + 3);
            *w = be16(p + i + 5);
            *comps = p[i + 7];
            if (*w == 0 || *h == 0 || *comps == 0) {
                err_set(err, err_len, "invalid JPEG: frame %ux%u with %d components", *w, *h,
                        *comps);
                return -1;
            }
            return 0;
        }
        i += seg;
    }
    err_set(err, err_len, "truncated JPEG: no frame header in the first %zu bytes", len);
    return -1;
}

/* The first chunk of a WebP file: VP8 (lossy key frame), VP8L (lossless) or VP8X (extended:
 * the canvas and the alpha flag). */
static int webp_header(const uint8_t *p, size_t len, uint32_t *w, uint32_t *h, int *comps,
                       char *err, size_t err_len)
{
    if (len < 30 || memcmp(p + 8, "WEBP", 4) != 0) {
        err_set(err, err_len, len < 30 ? "truncated WebP: %zu bytes, no complete first chunk"
                                       : "invalid WebP: no WEBP form type", len);
        return -1;
    }
    const uint8_t *c = p + 20; /* the first chunk's data */
    if (memcmp(p + 12, "VP8 ", 4) == 0) {
        if ((c[0] & 1) != 0 || c[3] != 0x9d || c[4] != 0x01 || c[5] != 0x2a) {
            err_set(err, err_len, "invalid WebP: the VP8 chunk is not a key frame");
            return -1;
        }
        *w = le16(c + 6) & 0x3fff;
        *h = le16(c + 8) & 0x3fff;
        *comps = 3;
    } else if (memcmp(p + 12, "VP8L", 4) == 0) {
        if (c[0] != 0x2f) {
            err_set(err, err_len, "invalid WebP: bad VP8L signature");
            return -1;
        }
        uint32_t b = le32(c + 1);
        *w = (b & 0x3fff) + 1;
        *h = ((b >> 14) & 0x3fff) + 1;
        *comps = (b >> 28) & 1 ? 4 : 3;
    } else if (memcmp(p + 12, "VP8X", 4) == 0) {
        *w = le24(c + 4) + 1;
        *h = le24(c + 7) + 1;
        *comps = c[0] & 0x10 ? 4 : 3;
    } else {
        err_set(err, err_len, "invalid WebP: first chunk %.4s", (const char *)(p + 12));
        return -1;
    }
    if (*w == 0 || *h == 0) {
        err_set(err, err_len, "invalid WebP: dimensions %ux%u", *w, *h);
        return -1;
    }
    return 0;
}

int imghdr_probe(const void *data, size_t len, uint32_t *w, uint32_t *h, int *components,
                 char *err, size_t err_len)
{
    const uint8_t *p = data;
    if (len == 0) {
        err_set(err, err_len, "empty file");
        return -1;
    }
    switch (image_sniff(p, len)) {
    case IMAGE_JPEG: return jpeg_header(p, len, w, h, components, err, err_len);
    case IMAGE_PNG: return imghdr_png(p, len, w, h, components, err, err_len);
    case IMAGE_WEBP: return webp_header(p, len, w, h, components, err, err_len);
    default:
        imghdr_unknown(p, len, err, err_len);
        return -1;
    }
}
