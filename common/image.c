/* Image decoding front-end (JPEG, PNG, WebP by content): see image.h for the contract.
 *
 * PNG: the IHDR is read from the bytes first (signature, chunk type, dimensions against the
 * limits), so an oversized image is refused before libpng allocates anything. libpng then
 * reads from memory; its errors (a CRC mismatch in a critical chunk, bad zlib data, a file
 * that ends early, a bad filter byte) call png_on_error, which keeps the message and
 * longjmps back into png_run. png_run owns nothing that could leak: the read state is freed
 * on both paths and the pixels go to the decoder's buffer. Its caller's context (struct
 * png_job) is not a local of the function that calls setjmp, so nothing it holds is left
 * indeterminate by the longjmp. Warnings (bad ancillary chunks, benign errors) are not
 * failures; the last one from the header is quoted when the header then fails ("Invalid
 * IHDR data" says little on its own).
 *
 * WebP: libwebp's advanced API decodes straight into the pixel buffer as RGB; its status
 * codes become the reasons. The RIFF size is checked against the bytes first, which tells a
 * truncated file from a damaged one. */
#include "common/image.h"

#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <png.h>
#include <webp/decode.h>

#include "common/log.h"

/* ancillary chunks libpng may keep (text, sPLT, unknown) and the most memory one chunk may
 * take (an iCCP profile or a zTXt once inflated); libpng skips what is beyond, with a warning */
#define IMAGE_PNG_CHUNKS 256
#define IMAGE_PNG_CHUNK_BYTES ((png_alloc_size_t)8 << 20)

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0];
}

/* ---- PNG ---------------------------------------------------------------------------------- */

/* One PNG decode: input, limits and output in, the reason out. Lives in png_decode's frame
 * (not png_run's), so the longjmp leaves it well defined. */
struct png_job {
    const uint8_t *p;
    size_t len, pos;
    struct jpeg_dec *dec;
    uint32_t w, h;            /* from the IHDR bytes, within the limits */
    int reading_rows;         /* errors from here on are corrupt pixel data */
    uint8_t *pix;             /* out: w * h * 3 bytes in dec's pixel buffer */
    char msg[256];
    char warning[128];        /* the last warning while reading the header */
};

static void png_on_error(png_structp png, png_const_charp msg)
{
    struct png_job *job = png_get_error_ptr(png);
    /* a read past the end already wrote its own reason */
    if (!job->msg[0]) {
        const char *kind = job->reading_rows ? "corrupt PNG data" : "invalid PNG";
        if (job->warning[0])
            snprintf(job->msg, sizeof job->msg, "%s: %s (%s)", kind, msg, job->warning);
        else
            snprintf(job->msg, sizeof job->msg, "%s: %s", kind, msg);
    }
    png_longjmp(png, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    struct png_job *job = png_get_error_ptr(png);
    snprintf(job->warning, sizeof job->warning, "%s", msg);
}

static void png_read_mem(png_structp png, png_bytep out, size_t n)
{
    struct png_job *job = png_get_io_ptr(png);
    if (n > job->len - job->pos) {
        snprintf(job->msg, sizeof job->msg, "truncated PNG: the file ends at %zu bytes%s",
                 job->len, job->reading_rows ? " inside the image data" : "");
        png_error(png, "read past the end");
    }
    memcpy(out, job->p + job->pos, n);
    job->pos += n;
}

/* Runs libpng over job. Returns 0 (job->pix holds the image) or -1 (job->msg says why). */
static int png_run(struct png_job *job)
{
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, job, png_on_error,
                                             png_on_warning);
    if (!png) {
        snprintf(job->msg, sizeof job->msg, "out of memory for the PNG reader");
        return -1;
    }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        snprintf(job->msg, sizeof job->msg, "out of memory for the PNG reader");
        return -1;
    }
    /* png and info are not assigned after this point */
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        if (!job->msg[0])
            snprintf(job->msg, sizeof job->msg, "invalid PNG");
        return -1;
    }
    const struct jpeg_limits *lim = jpeg_dec_limits(job->dec);
    png_set_user_limits(png, lim->max_width, lim->max_height);
    png_set_chunk_cache_max(png, IMAGE_PNG_CHUNKS);
    png_set_chunk_malloc_max(png, IMAGE_PNG_CHUNK_BYTES);
    png_set_read_fn(png, job, png_read_mem);
    png_read_info(png, info);
    job->warning[0] = 0;    /* a header warning says nothing about the pixel data */
    png_uint_32 w, h;
    int depth, ctype, interlace;
    png_get_IHDR(png, info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
    if (w != job->w || h != job->h)
        png_error(png, "IHDR changed while reading");
    /* to 8-bit RGB: high byte of 16-bit samples, palette and low-depth grey expanded, grey
     * replicated, alpha (a channel, or tRNS turned into one by the palette expansion) dropped */
    if (depth == 16)
        png_set_strip_16(png);
    if (ctype == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if ((ctype & PNG_COLOR_MASK_COLOR) == 0) {
        if (depth < 8)
            png_set_expand_gray_1_2_4_to_8(png);
        png_set_gray_to_rgb(png);
    }
    png_set_strip_alpha(png);
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t row = (size_t)w * 3;
    if (png_get_bit_depth(png, info) != 8 ||
        png_get_color_type(png, info) != PNG_COLOR_TYPE_RGB || png_get_rowbytes(png, info) != row)
        png_error(png, "no 8-bit RGB conversion for this colour type");
    uint8_t *pix = jpeg_dec_pixel_buffer(job->dec, row * h);
    if (!pix) {
        snprintf(job->msg, sizeof job->msg, "out of memory for a %ux%u image", (unsigned)w,
                 (unsigned)h);
        png_error(png, "out of memory");
    }
    job->reading_rows = 1;
    /* interlaced: every pass writes its pixels into their final places in the same rows */
    for (int pass = 0; pass < passes; pass++)
        for (png_uint_32 y = 0; y < h; y++)
            png_read_row(png, pix + (size_t)y * row, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    job->pix = pix;
    return 0;
}

static int png_decode(struct jpeg_dec *d, const uint8_t *p, size_t len, struct jpeg_image *img,
                      char *err, size_t err_len)
{
    struct png_job job;
    int comps;
    memset(&job, 0, sizeof job);
    if (imghdr_png(p, len, &job.w, &job.h, &comps, err, err_len) ||
        jpeg_limits_check(jpeg_dec_limits(d), job.w, job.h, err, err_len))
        return -1;
    job.p = p;
    job.len = len;
    job.dec = d;
    if (png_run(&job)) {
        err_set(err, err_len, "%s", job.msg);
        return -1;
    }
    img->pix = job.pix;
    img->w = img->src_w = job.w;
    img->h = img->src_h = job.h;
    img->scale_denom = 1;
    return 0;
}

/* ---- WebP --------------------------------------------------------------------------------- */

static const char *webp_status(VP8StatusCode st)
{
    switch (st) {
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "bitstream error";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
    case VP8_STATUS_SUSPENDED: return "suspended";
    case VP8_STATUS_USER_ABORT: return "aborted";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "not enough data";
    default: return "unknown error";
    }
}

/* The RIFF container against the bytes: "RIFF" <le32 size> "WEBP", size counting from
 * offset 8. Returns 0 with the size in *riff, or -1 with the reason. A size short of the file
 * leaves trailing bytes, which libwebp (and Pillow) ignore. */
static int webp_riff(const uint8_t *p, size_t len, uint32_t *riff, char *err, size_t err_len)
{
    if (len < 12) {
        err_set(err, err_len, "truncated WebP: %zu bytes, no complete RIFF header", len);
        return -1;
    }
    uint32_t size = le32(p + 4);
    if (size < 4 + 8) {   /* "WEBP" and one chunk header, libwebp's own minimum */
        err_set(err, err_len, "invalid WebP: RIFF size %u is too small for an image", size);
        return -1;
    }
    if ((uint64_t)size + 8 > len) {
        err_set(err, err_len,
                "truncated WebP: the RIFF header declares %llu bytes, the file has %zu",
                (unsigned long long)size + 8, len);
        return -1;
    }
    *riff = size;
    return 0;
}

/* The reason for a failed libwebp call; a RIFF size short of the file is the likely cause. */
static void webp_reason(const char *what, VP8StatusCode st, uint32_t riff, size_t len, char *err,
                        size_t err_len)
{
    char why[96] = "";
    if ((uint64_t)riff + 8 < len)
        snprintf(why, sizeof why, " (the RIFF header declares %llu of the file's %zu bytes)",
                 (unsigned long long)riff + 8, len);
    else if (st == VP8_STATUS_NOT_ENOUGH_DATA)
        snprintf(why, sizeof why, " (a chunk runs past the RIFF data)");
    err_set(err, err_len, "%s: %s%s", what, webp_status(st), why);
}

static int webp_decode(struct jpeg_dec *d, const uint8_t *p, size_t len, struct jpeg_image *img,
                       char *err, size_t err_len)
{
    uint32_t riff;
    if (webp_riff(p, len, &riff, err, err_len))
        return -1;
    WebPDecoderConfig cfg;
    if (!WebPInitDecoderConfig(&cfg)) {
        err_set(err, err_len, "libwebp version mismatch");
        return -1;
    }
    VP8StatusCode st = WebPGetFeatures(p, len, &cfg.input);
    if (st != VP8_STATUS_OK) {
        webp_reason("invalid WebP headers", st, riff, len, err, err_len);
        return -1;
    }
    if (cfg.input.has_animation) {
        err_set(err, err_len, "unsupported WebP: animated");
        return -1;
    }
    uint32_t w = (uint32_t)cfg.input.width, h = (uint32_t)cfg.input.height;
    if (w == 0 || h == 0) {
        err_set(err, err_len, "invalid WebP: dimensions %ux%u", w, h);
        return -1;
    }
    if (jpeg_limits_check(jpeg_dec_limits(d), w, h, err, err_len))
        return -1;
    size_t row = (size_t)w * 3;
    uint8_t *pix = jpeg_dec_pixel_buffer(d, row * h);
    if (!pix) {
        err_set(err, err_len, "out of memory for a %ux%u image", w, h);
        return -1;
    }
    cfg.output.colorspace = MODE_RGB;
    cfg.output.is_external_memory = 1;
    cfg.output.u.RGBA.rgba = pix;
    cfg.output.u.RGBA.stride = (int)row;
    cfg.output.u.RGBA.size = row * h;
    st = WebPDecode(p, len, &cfg);
    WebPFreeDecBuffer(&cfg.output);
    if (st != VP8_STATUS_OK) {
        webp_reason("corrupt WebP data", st, riff, len, err, err_len);
        return -1;
    }
    img->pix = pix;
    img->w = img->src_w = w;
    img->h = img->src_h = h;
    img->scale_denom = 1;
    return 0;
}

/* ---- front-end ---------------------------------------------------------------------------- */

int image_decode_pick(struct jpeg_dec *d, const void *data, size_t len, jpeg_denom_fn pick,
                      void *ctx, struct jpeg_image *img, char *err, size_t err_len)
{
    NPID_CHECK(pick != NULL);
    const uint8_t *p = data;
    if (len == 0) {
        err_set(err, err_len, "empty file");
        return -1;
    }
    enum image_format f = image_sniff(p, len);
    if (f == IMAGE_JPEG)
        return jpeg_dec_decode_pick(d, p, len, pick, ctx, img, err, err_len);
    if (f == IMAGE_UNKNOWN) {
        imghdr_unknown(p, len, err, err_len);
        return -1;
    }
    size_t max = jpeg_dec_limits(d)->max_file_bytes;
    if (len > max) {
        err_set(err, err_len, "file too large: %zu bytes (limit %zu)", len, max);
        return -1;
    }
    int rc = f == IMAGE_PNG ? png_decode(d, p, len, img, err, err_len)
                            : webp_decode(d, p, len, img, err, err_len);
    if (rc == 0) {
        struct jpeg_region roi = { 0, 0, img->src_w, img->src_h };
        (void)pick(ctx, img->src_w, img->src_h, &roi); /* all of it at full size */
    }
    return rc;
}

int image_decode(struct jpeg_dec *d, const void *data, size_t len, uint32_t min_side,
                 struct jpeg_image *img, char *err, size_t err_len)
{
    return image_decode_pick(d, data, len, jpeg_pick_min_side, &min_side, img, err, err_len);
}

int image_probe(const void *data, size_t len, uint32_t *w, uint32_t *h, int *components,
                char *err, size_t err_len)
{
    const uint8_t *p = data;
    if (len == 0) {
        err_set(err, err_len, "empty file");
        return -1;
    }
    switch (image_sniff(p, len)) {
    case IMAGE_JPEG:
        return jpeg_probe(p, len, w, h, components, err, err_len);
    case IMAGE_PNG:
        return imghdr_png(p, len, w, h, components, err, err_len);
    case IMAGE_WEBP: {
        /* data may be a prefix of the file: no RIFF size check */
        WebPBitstreamFeatures f;
        VP8StatusCode st = WebPGetFeatures(p, len, &f);
        if (st != VP8_STATUS_OK) {
            err_set(err, err_len, "invalid WebP headers: %s", webp_status(st));
            return -1;
        }
        *w = (uint32_t)f.width;
        *h = (uint32_t)f.height;
        *components = f.has_alpha ? 4 : 3;
        return 0;
    }
    default:
        imghdr_unknown(p, len, err, err_len);
        return -1;
    }
}
