/* JPEG decoding of untrusted files with libjpeg-turbo: see jpeg.h for the contract.
 *
 * Every libjpeg error and every corrupt-data warning longjmps back to jpeg_dec_decode, which
 * aborts the decompressor (it stays reusable) and reports the library's message behind a
 * category ("corrupt JPEG data: ..."). The scan limit is enforced from the progress monitor,
 * which libjpeg calls while it consumes the scans of a multi-scan file. */
#include "common/jpeg.h"
#include "common/log.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

struct jpeg_err_ctx {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX + 64];
    uint32_t max_scans;
};

struct jpeg_dec {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_err_ctx jerr;
    struct jpeg_progress_mgr progress;
    struct jpeg_limits lim;
    uint8_t *pix;
    size_t pix_cap;
    uint8_t *file;
    size_t file_cap;
    JSAMPROW *rows;
    size_t rows_cap;
};

void jpeg_limits_default(struct jpeg_limits *l)
{
    l->max_width = 16384;
    l->max_height = 16384;
    l->max_pixels = (uint64_t)64 << 20;
    l->max_scans = 64;
    l->max_file_bytes = (size_t)64 << 20;
}

int jpeg_limits_check(const struct jpeg_limits *l, uint32_t w, uint32_t h, char *err,
                      size_t err_len)
{
    if (w > l->max_width || h > l->max_height || (uint64_t)w * h > l->max_pixels) {
        err_set(err, err_len, "dimensions %ux%u exceed the limit (%ux%u, %llu pixels)", w, h,
                l->max_width, l->max_height, (unsigned long long)l->max_pixels);
        return -1;
    }
    return 0;
}

static void on_error_exit(j_common_ptr cinfo)
{
    struct jpeg_err_ctx *e = (struct jpeg_err_ctx *)cinfo->err;
    char buf[JMSG_LENGTH_MAX];
    cinfo->err->format_message(cinfo, buf);
    snprintf(e->msg, sizeof e->msg, "invalid JPEG: %s", buf);
    longjmp(e->jb, 1);
}

/* msg_level -1 is a warning: libjpeg uses it for corrupt data it would otherwise paper over
 * (premature end of data, extraneous bytes, bad Huffman codes). Any such warning rejects the
 * image. Levels >= 0 are trace messages and are ignored. */
static void on_emit_message(j_common_ptr cinfo, int msg_level)
{
    if (msg_level >= 0)
        return;
    struct jpeg_err_ctx *e = (struct jpeg_err_ctx *)cinfo->err;
    char buf[JMSG_LENGTH_MAX];
    cinfo->err->format_message(cinfo, buf);
    /* libjpeg's own corrupt-data messages already say so; others get the category */
    if (strncmp(buf, "Corrupt JPEG data", 17) == 0)
        snprintf(e->msg, sizeof e->msg, "c%s", buf + 1);
    else
        snprintf(e->msg, sizeof e->msg, "corrupt JPEG data: %s", buf);
    longjmp(e->jb, 1);
}

static void on_output_message(j_common_ptr cinfo)
{
    (void)cinfo;
}

static void on_progress(j_common_ptr cinfo)
{
    if (!cinfo->is_decompressor)
        return;
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    struct jpeg_err_ctx *e = (struct jpeg_err_ctx *)cinfo->err;
    if (d->input_scan_number > 0 && (uint32_t)d->input_scan_number > e->max_scans) {
        snprintf(e->msg, sizeof e->msg, "too many scans: more than %u", e->max_scans);
        longjmp(e->jb, 1);
    }
}

static void err_init(struct jpeg_err_ctx *e)
{
    jpeg_std_error(&e->pub);
    e->pub.error_exit = on_error_exit;
    e->pub.emit_message = on_emit_message;
    e->pub.output_message = on_output_message;
    e->msg[0] = 0;
}

/* jpeg_create_decompress fails only on allocation failure. */
static int create_decompress(struct jpeg_dec *d)
{
    if (setjmp(d->jerr.jb))
        return -1;
    jpeg_create_decompress(&d->cinfo);
    return 0;
}

struct jpeg_dec *jpeg_dec_new(const struct jpeg_limits *lim)
{
    struct jpeg_dec *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    if (lim)
        d->lim = *lim;
    else
        jpeg_limits_default(&d->lim);
    err_init(&d->jerr);
    d->jerr.max_scans = d->lim.max_scans;
    d->cinfo.err = &d->jerr.pub;
    if (create_decompress(d)) {
        free(d);
        return NULL;
    }
    d->progress.progress_monitor = on_progress;
    d->cinfo.progress = &d->progress;
    return d;
}

void jpeg_dec_destroy(struct jpeg_dec **dp)
{
    if (!dp || !*dp)
        return;
    struct jpeg_dec *d = *dp;
    jpeg_destroy_decompress(&d->cinfo);
    free(d->pix);
    free(d->file);
    free(d->rows);
    free(d);
    *dp = NULL;
}

const struct jpeg_limits *jpeg_dec_limits(const struct jpeg_dec *d)
{
    return &d->lim;
}

static int grow(uint8_t **buf, size_t *cap, size_t n)
{
    if (n <= *cap)
        return 0;
    size_t c = *cap ? *cap : 4096;
    while (c < n)
        c = c > SIZE_MAX / 2 ? n : c * 2;
    uint8_t *p = realloc(*buf, c);
    if (!p)
        return -1;
    *buf = p;
    *cap = c;
    return 0;
}

uint8_t *jpeg_dec_file_buffer(struct jpeg_dec *d, size_t n)
{
    return grow(&d->file, &d->file_cap, n ? n : 1) ? NULL : d->file;
}

uint8_t *jpeg_dec_pixel_buffer(struct jpeg_dec *d, size_t n)
{
    return grow(&d->pix, &d->pix_cap, n ? n : 1) ? NULL : d->pix;
}

/* Names what a non-JPEG buffer looks like, for the rejection reason. */
static const char *sniff(const uint8_t *p, size_t len)
{
    if (len >= 8 && memcmp(p, "\x89PNG\r\n\x1a\n", 8) == 0)
        return "PNG";
    if (len >= 6 && (memcmp(p, "GIF87a", 6) == 0 || memcmp(p, "GIF89a", 6) == 0))
        return "GIF";
    if (len >= 2 && p[0] == 'B' && p[1] == 'M')
        return "BMP";
    if (len >= 12 && memcmp(p, "RIFF", 4) == 0 && memcmp(p + 8, "WEBP", 4) == 0)
        return "WebP";
    if (len >= 4 && (memcmp(p, "II*\0", 4) == 0 || memcmp(p, "MM\0*", 4) == 0))
        return "TIFF";
    size_t n = len < 256 ? len : 256, text = 0;
    for (size_t i = 0; i < n; i++)
        if ((p[i] >= 0x20 && p[i] < 0x7f) || p[i] == '\n' || p[i] == '\r' || p[i] == '\t')
            text++;
    if (n > 0 && text == n)
        return "text";
    return NULL;
}

static int check_signature(const uint8_t *p, size_t len, char *err, size_t err_len)
{
    if (len == 0) {
        err_set(err, err_len, "empty file");
        return -1;
    }
    if (len < 4 || p[0] != 0xFF || p[1] != 0xD8 || p[2] != 0xFF) {
        const char *kind = sniff(p, len);
        if (kind)
            err_set(err, err_len, "not a JPEG: %s content", kind);
        else if (len < 4 && len >= 2 && p[0] == 0xFF && p[1] == 0xD8)
            err_set(err, err_len, "truncated JPEG: %zu bytes", len);
        else
            err_set(err, err_len, "not a JPEG: no SOI marker");
        return -1;
    }
    return 0;
}

uint32_t jpeg_pick_min_side(void *ctx, uint32_t w, uint32_t h, struct jpeg_region *roi)
{
    (void)roi;
    uint32_t min_side = *(const uint32_t *)ctx;
    if (min_side == 0)
        return 1;
    uint32_t best = 1;
    for (uint32_t d = 2; d <= 8; d *= 2) {
        uint32_t ow = (w + d - 1) / d, oh = (h + d - 1) / d;
        if (ow >= min_side && oh >= min_side)
            best = d;
    }
    return best;
}

static void cmyk_to_rgb(uint8_t *row, uint32_t w, int inverted)
{
    /* in place: 4 bytes in, 3 bytes out, front to back is safe */
    for (uint32_t x = 0; x < w; x++) {
        unsigned c = row[4 * x], m = row[4 * x + 1], y = row[4 * x + 2], k = row[4 * x + 3];
        if (!inverted) {
            c = 255 - c; m = 255 - m; y = 255 - y; k = 255 - k;
        }
        row[3 * x] = (uint8_t)((c * k + 127) / 255);
        row[3 * x + 1] = (uint8_t)((m * k + 127) / 255);
        row[3 * x + 2] = (uint8_t)((y * k + 127) / 255);
    }
}

int jpeg_dec_decode_pick(struct jpeg_dec *d, const void *data, size_t len, jpeg_denom_fn pick,
                         void *ctx, struct jpeg_image *img, char *err, size_t err_len)
{
    NPID_CHECK(pick != NULL);
    const uint8_t *p = data;
    if (check_signature(p, len, err, err_len))
        return -1;
    if (len > d->lim.max_file_bytes) {
        err_set(err, err_len, "file too large: %zu bytes (limit %zu)", len, d->lim.max_file_bytes);
        return -1;
    }
    struct jpeg_decompress_struct *ci = &d->cinfo;
    d->jerr.msg[0] = 0;
    d->jerr.max_scans = d->lim.max_scans;
    if (setjmp(d->jerr.jb)) {
        err_set(err, err_len, "%s", d->jerr.msg[0] ? d->jerr.msg : "invalid JPEG");
        jpeg_abort_decompress(ci);
        return -1;
    }
    /* libjpeg keeps DQT tables from one image to the next (for abbreviated datastreams), so
     * a file without its own would decode with the previous file's, and the result would
     * depend on the order of decoding. A zero DC quantizer marks a table this file has not
     * (re)defined; DQT never stores 0 there in a valid file. */
    for (int q = 0; q < NUM_QUANT_TBLS; q++)
        if (ci->quant_tbl_ptrs[q])
            ci->quant_tbl_ptrs[q]->quantval[0] = 0;
    jpeg_mem_src(ci, p, (unsigned long)len);
    if (jpeg_read_header(ci, TRUE) != JPEG_HEADER_OK) {
        err_set(err, err_len, "invalid JPEG: no image in file");
        jpeg_abort_decompress(ci);
        return -1;
    }
    /* the first scan's tables must be defined by now (a DQT may still come before a later
     * scan that first uses another component); libjpeg's own wording */
    for (int k = 0; k < ci->comps_in_scan; k++) {
        int q = ci->cur_comp_info[k]->quant_tbl_no;
        if (q >= 0 && q < NUM_QUANT_TBLS && ci->quant_tbl_ptrs[q] &&
            ci->quant_tbl_ptrs[q]->quantval[0] == 0) {
            err_set(err, err_len, "invalid JPEG: Quantization table 0x%02x was not defined", q);
            goto fail;
        }
    }
    uint32_t sw = ci->image_width, sh = ci->image_height;
    if (sw == 0 || sh == 0) {
        err_set(err, err_len, "invalid JPEG: dimensions %ux%u", sw, sh);
        goto fail;
    }
    if (jpeg_limits_check(&d->lim, sw, sh, err, err_len))
        goto fail;
    if (ci->data_precision != 8) {
        err_set(err, err_len, "unsupported JPEG: %d-bit samples", ci->data_precision);
        goto fail;
    }
    int inverted = 0;
    switch (ci->jpeg_color_space) {
    case JCS_GRAYSCALE:
    case JCS_YCbCr:
    case JCS_RGB:
        ci->out_color_space = JCS_RGB;
        break;
    case JCS_CMYK:
    case JCS_YCCK:
        ci->out_color_space = JCS_CMYK;
        inverted = ci->saw_Adobe_marker;
        break;
    default:
        err_set(err, err_len, "unsupported JPEG: colour space %d with %d components",
                (int)ci->jpeg_color_space, ci->num_components);
        goto fail;
    }
    struct jpeg_region roi = { 0, 0, sw, sh };
    unsigned denom = pick(ctx, sw, sh, &roi);
    NPID_CHECK(denom == 1 || denom == 2 || denom == 4 || denom == 8);
    NPID_CHECK(roi.x0 < roi.x1 && roi.x1 <= sw && roi.y0 < roi.y1 && roi.y1 <= sh);
    ci->scale_num = 1;
    ci->scale_denom = denom;
    ci->dct_method = JDCT_ISLOW;
    ci->do_fancy_upsampling = TRUE;
    jpeg_calc_output_dimensions(ci);
    uint32_t ow = ci->output_width, oh = ci->output_height;
    int comps = ci->out_color_components;
    size_t row_bytes = (size_t)ow * (size_t)(comps > 3 ? comps : 3);
    if (grow(&d->pix, &d->pix_cap, row_bytes * oh) ||
        grow((uint8_t **)&d->rows, &d->rows_cap, sizeof(JSAMPROW) * oh)) {
        err_set(err, err_len, "out of memory for a %ux%u image", ow, oh);
        goto fail;
    }
    /* libjpeg's own working memory (coefficient buffers of progressive files): bounded */
    ci->mem->max_memory_to_use = (long)(d->lim.max_pixels * 8 + (64 << 20));
    jpeg_start_decompress(ci);
    /* the region at this scale: whole rows skipped above and below it (jpeg_skip_scanlines:
     * the rows kept are the full decode's); columns cropped to it with a margin of ROI_MARGIN
     * (jpeg_crop_scanline widens to iMCU boundaries, and fancy upsampling replicates the edge
     * of what it decodes, so the outermost column of a cropped decode may differ) */
    enum { ROI_MARGIN = 2 };
    uint32_t ry0 = 0, ry1 = oh, cx = 0;
    if (comps == 3) {
        uint32_t rx0 = roi.x0 / denom, rx1 = (uint32_t)(((uint64_t)roi.x1 + denom - 1) / denom);
        ry0 = roi.y0 / denom;
        ry1 = (uint32_t)(((uint64_t)roi.y1 + denom - 1) / denom);
        rx0 = rx0 > ROI_MARGIN ? rx0 - ROI_MARGIN : 0;
        rx1 = rx1 + ROI_MARGIN < ow ? rx1 + ROI_MARGIN : ow;
        ry1 = ry1 < oh ? ry1 : oh;
        if (rx0 > 0 || rx1 < ow) {
            JDIMENSION xo = rx0, wd = rx1 - rx0;
            jpeg_crop_scanline(ci, &xo, &wd);
            cx = xo;
        }
    }
    JSAMPROW *rows = (JSAMPROW *)d->rows;
    for (uint32_t y = 0; y < oh; y++)
        rows[y] = d->pix + (size_t)y * row_bytes + (size_t)cx * 3;
    if (ry0 > 0 && jpeg_skip_scanlines(ci, ry0) != ry0) {
        err_set(err, err_len, "corrupt JPEG data: no progress skipping scanlines");
        goto fail;
    }
    while (ci->output_scanline < ry1) {
        JDIMENSION got = jpeg_read_scanlines(ci, rows + ci->output_scanline,
                                             ry1 - ci->output_scanline);
        if (got == 0) {
            err_set(err, err_len, "corrupt JPEG data: no progress reading scanlines");
            goto fail;
        }
    }
    /* below the region: skipped but for the last row, which is read (libjpeg-turbo skips a
     * skip that reaches the end without entropy-decoding it, which would let a corrupt tail
     * pass) */
    if (ry1 + 1 < oh && jpeg_skip_scanlines(ci, oh - 1 - ry1) != oh - 1 - ry1) {
        err_set(err, err_len, "corrupt JPEG data: no progress skipping scanlines");
        goto fail;
    }
    while (ci->output_scanline < oh) {
        if (jpeg_read_scanlines(ci, rows + ci->output_scanline, 1) == 0) {
            err_set(err, err_len, "corrupt JPEG data: no progress reading scanlines");
            goto fail;
        }
    }
    jpeg_finish_decompress(ci);
    if (comps == 4) {
        /* pack each 4-byte row into 3-byte rows, front to back */
        for (uint32_t y = 0; y < oh; y++) {
            uint8_t *r = d->pix + (size_t)y * row_bytes;
            cmyk_to_rgb(r, ow, inverted);
            memmove(d->pix + (size_t)y * ow * 3, r, (size_t)ow * 3);
        }
    } else if (comps != 3) {
        err_set(err, err_len, "unsupported JPEG: %d output components", comps);
        return -1;
    }
    img->pix = d->pix;
    img->w = ow;
    img->h = oh;
    img->src_w = sw;
    img->src_h = sh;
    img->scale_denom = denom;
    return 0;
fail:
    jpeg_abort_decompress(ci);
    return -1;
}

int jpeg_dec_decode(struct jpeg_dec *d, const void *data, size_t len, uint32_t min_side,
                    struct jpeg_image *img, char *err, size_t err_len)
{
    return jpeg_dec_decode_pick(d, data, len, jpeg_pick_min_side, &min_side, img, err, err_len);
}

int jpeg_probe(const void *data, size_t len, uint32_t *w, uint32_t *h, int *components,
               char *err, size_t err_len)
{
    if (check_signature(data, len, err, err_len))
        return -1;
    struct jpeg_decompress_struct ci;
    struct jpeg_err_ctx jerr;
    err_init(&jerr);
    ci.err = &jerr.pub;
    if (setjmp(jerr.jb)) {
        err_set(err, err_len, "%s", jerr.msg[0] ? jerr.msg : "invalid JPEG");
        jpeg_destroy_decompress(&ci);
        return -1;
    }
    jpeg_create_decompress(&ci);
    jpeg_mem_src(&ci, data, (unsigned long)len);
    jpeg_read_header(&ci, TRUE);
    *w = ci.image_width;
    *h = ci.image_height;
    *components = ci.num_components;
    jpeg_destroy_decompress(&ci);
    return 0;
}

int jpeg_encode_rgb(const uint8_t *rgb, uint32_t w, uint32_t h, int quality, uint8_t **out,
                    size_t *out_len)
{
    /* Compression of a valid RGB buffer fails only on allocation failure; the partially
     * grown output buffer is then lost to libjpeg (a leak on OOM only). */
    struct jpeg_compress_struct ci;
    struct jpeg_err_ctx jerr;
    unsigned char *buf = NULL;
    unsigned long blen = 0;
    if (w == 0 || h == 0)
        return -1;
    err_init(&jerr);
    ci.err = &jerr.pub;
    if (setjmp(jerr.jb)) {
        jpeg_destroy_compress(&ci);
        return -1;
    }
    jpeg_create_compress(&ci);
    jpeg_mem_dest(&ci, &buf, &blen);
    ci.image_width = w;
    ci.image_height = h;
    ci.input_components = 3;
    ci.in_color_space = JCS_RGB;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, quality < 1 ? 1 : quality > 100 ? 100 : quality, TRUE);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < h) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)ci.next_scanline * w * 3);
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    *out = buf;
    *out_len = blen;
    return 0;
}
