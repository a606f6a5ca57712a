/* Reading and decoding one image of the dataset index (see dataset.h): the part of the index
 * that needs the image libraries (common/image.h), apart so that a program that only indexes
 * (the trainer) links none of them. */
#include "common/dataset.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/dataset_impl.h"
#include "common/image.h"
#include "common/log.h"

/* A binary record to packed RGB: planes R, G, B of side x side bytes, row-major (CIFAR) or
 * column-major (STL-10: byte x * side + y of a plane is pixel (x, y)). */
static int load_bin(const struct dataset *ds, size_t i, struct jpeg_dec *dec,
                    struct jpeg_image *img, char *err, size_t err_len)
{
    size_t f = 0;
    while (f + 1 < ds->n_bin && i >= ds->bin[f + 1].first)
        f++;
    const struct bin_file *b = &ds->bin[f];
    size_t r = i - b->first, side = b->side, plane = side * side;
    uint8_t *rec = jpeg_dec_file_buffer(dec, b->rec);
    uint8_t *pix = jpeg_dec_pixel_buffer(dec, plane * 3);
    if (!rec || !pix) {
        err_set(err, err_len, "%s: out of memory", dataset_path(ds, i));
        return -1;
    }
    ssize_t got = pread(b->fd, rec, b->rec, (off_t)((uint64_t)r * b->rec));
    if (got != (ssize_t)b->rec) {
        err_set(err, err_len, "%s: read failed: %s", dataset_path(ds, i),
                got < 0 ? strerror(errno) : "short read");
        return -1;
    }
    const uint8_t *pl = rec + b->pix_off;
    if (!b->col_major) {
        for (size_t p = 0; p < plane; p++) {
            pix[3 * p] = pl[p];
            pix[3 * p + 1] = pl[plane + p];
            pix[3 * p + 2] = pl[2 * plane + p];
        }
    } else {
        for (size_t x = 0; x < side; x++)
            for (size_t y = 0; y < side; y++) {
                size_t s = x * side + y, d = 3 * (y * side + x);
                pix[d] = pl[s];
                pix[d + 1] = pl[plane + s];
                pix[d + 2] = pl[2 * plane + s];
            }
    }
    img->pix = pix;
    img->w = img->h = img->src_w = img->src_h = (uint32_t)side;
    img->scale_denom = 1;
    return 0;
}

int dataset_decode_pick(const struct dataset *ds, size_t i, struct jpeg_dec *dec,
                        jpeg_denom_fn pick, void *ctx, struct jpeg_image *img, char *err,
                        size_t err_len)
{
    NPID_CHECK(i < ds->n && pick != NULL);
    if (ds->n_bin) {
        int rc = load_bin(ds, i, dec, img, err, err_len);
        if (rc == 0) {
            struct jpeg_region roi = { 0, 0, img->src_w, img->src_h };
            (void)pick(ctx, img->src_w, img->src_h, &roi); /* all of it at full size */
        }
        return rc;
    }
    const char *rel = dataset_path(ds, i);
    int fd = openat(ds->root_fd, rel, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        err_set(err, err_len, "%s: %s", rel, strerror(errno));
        return -1;
    }
    /* read with the indexed size as the first guess (no fstat); a file that grew since
     * indexing is read on, up to the decoder's file limit */
    size_t max = jpeg_dec_limits(dec)->max_file_bytes;
    size_t cap = ds->size[i] < max ? (size_t)ds->size[i] + 1 : max + 1;
    uint8_t *buf = jpeg_dec_file_buffer(dec, cap);
    size_t len = 0;
    for (;;) {
        if (!buf) {
            err_set(err, err_len, "%s: out of memory", rel);
            close(fd);
            return -1;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            err_set(err, err_len, "%s: read failed: %s", rel, strerror(errno));
            close(fd);
            return -1;
        }
        if (r == 0)
            break;
        len += (size_t)r;
        if (len == cap) {
            if (cap > max) {
                err_set(err, err_len, "%s: file too large (limit %zu bytes)", rel, max);
                close(fd);
                return -1;
            }
            cap = cap * 2 > max + 1 ? max + 1 : cap * 2;
            buf = jpeg_dec_file_buffer(dec, cap);
        }
    }
    close(fd);
    char why[256];
    if (image_decode_pick(dec, buf, len, pick, ctx, img, why, sizeof why)) {
        err_set(err, err_len, "%s: %s", rel, why);
        return -1;
    }
    return 0;
}

int dataset_decode(const struct dataset *ds, size_t i, struct jpeg_dec *dec, uint32_t min_side,
                   struct jpeg_image *img, char *err, size_t err_len)
{
    return dataset_decode_pick(ds, i, dec, jpeg_pick_min_side, &min_side, img, err, err_len);
}

int dataset_load_rgb(const struct dataset *ds, size_t i, uint8_t *out, size_t out_cap,
                     uint32_t *w, uint32_t *h, char *err, size_t err_len)
{
    struct jpeg_dec *dec = jpeg_dec_new(NULL);
    if (!dec) {
        err_set(err, err_len, "out of memory");
        return -1;
    }
    struct jpeg_image img;
    int rc = dataset_decode(ds, i, dec, 0, &img, err, err_len);
    if (rc == 0) {
        *w = img.w;
        *h = img.h;
        size_t need = (size_t)img.w * img.h * 3;
        if (need > out_cap) {
            err_set(err, err_len, "%s: buffer too small: %ux%u needs %zu bytes, have %zu",
                    dataset_path(ds, i), img.w, img.h, need, out_cap);
            rc = -1;
        } else {
            memcpy(out, img.pix, need);
        }
    }
    jpeg_dec_destroy(&dec);
    return rc;
}

