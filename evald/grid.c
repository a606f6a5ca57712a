/* Retrieval grid image: see grid.h. */
#include "evald/grid.h"

#include "common/durable.h"
#include "common/jpeg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { GRID_BG = 235, GRID_MAX_SIDE = 16384 };

struct grid {
    size_t rows, cols, cell, gap, w, h;
    uint8_t *pix; /* (h, w, 3) */
};

/* left edge of column c: border gap, cells and gaps, plus the query's extra 2 x gap */
static size_t grid_x(const struct grid *g, size_t c)
{
    return g->gap + c * (g->cell + g->gap) + (c > 0 ? 2 * g->gap : 0);
}

static size_t grid_y(const struct grid *g, size_t r)
{
    return g->gap + r * (g->cell + g->gap);
}

struct grid *grid_new(size_t rows, size_t cols, size_t cell, size_t gap)
{
    if (rows < 1 || cols < 1 || cell < 8 || cell > 1024 || gap < 1 || gap > 64 ||
        rows > GRID_MAX_SIDE || cols > GRID_MAX_SIDE) {
        errno = EINVAL;
        return NULL;
    }
    struct grid *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->rows = rows;
    g->cols = cols;
    g->cell = cell;
    g->gap = gap;
    g->w = grid_x(g, cols - 1) + cell + gap;
    g->h = grid_y(g, rows - 1) + cell + gap;
    if (g->w > GRID_MAX_SIDE || g->h > GRID_MAX_SIDE) {
        free(g);
        errno = EINVAL;
        return NULL;
    }
    g->pix = malloc(g->w * g->h * 3);
    if (!g->pix) {
        free(g);
        errno = ENOMEM;
        return NULL;
    }
    memset(g->pix, GRID_BG, g->w * g->h * 3);
    return g;
}

void grid_destroy(struct grid **pg)
{
    if (!pg || !*pg)
        return;
    free((*pg)->pix);
    free(*pg);
    *pg = NULL;
}

size_t grid_width(const struct grid *g)
{
    return g->w;
}

size_t grid_height(const struct grid *g)
{
    return g->h;
}

const uint8_t *grid_pixels(const struct grid *g)
{
    return g->pix;
}

int grid_put(struct grid *g, size_t row, size_t col, const uint8_t *rgb, uint32_t w, uint32_t h)
{
    if (row >= g->rows || col >= g->cols || !rgb || w == 0 || h == 0) {
        errno = EINVAL;
        return -1;
    }
    /* fit inside the cell, aspect kept: output size (ow, oh), centred */
    size_t ow = g->cell, oh = g->cell;
    if (w >= h)
        oh = (size_t)((uint64_t)g->cell * h / w);
    else
        ow = (size_t)((uint64_t)g->cell * w / h);
    if (ow == 0)
        ow = 1;
    if (oh == 0)
        oh = 1;
    size_t x0 = grid_x(g, col) + (g->cell - ow) / 2, y0 = grid_y(g, row) + (g->cell - oh) / 2;
    /* the cell background first, so a re-used cell shows no remains of an older image */
    for (size_t y = 0; y < g->cell; y++)
        memset(g->pix + ((grid_y(g, row) + y) * g->w + grid_x(g, col)) * 3, GRID_BG, g->cell * 3);
    for (size_t y = 0; y < oh; y++) {
        size_t sy = (size_t)((uint64_t)y * h / oh);
        uint8_t *dst = g->pix + ((y0 + y) * g->w + x0) * 3;
        const uint8_t *src = rgb + sy * (size_t)w * 3;
        for (size_t x = 0; x < ow; x++) {
            size_t sx = (size_t)((uint64_t)x * w / ow);
            memcpy(dst + x * 3, src + sx * 3, 3);
        }
    }
    return 0;
}

int grid_mark(struct grid *g, size_t row, size_t col, uint8_t r, uint8_t gr, uint8_t b)
{
    if (row >= g->rows || col >= g->cols) {
        errno = EINVAL;
        return -1;
    }
    /* frame just outside the cell, half the gap wide so that neighbours' frames do not meet */
    size_t fw = g->gap >= 2 ? g->gap / 2 : 1;
    size_t x0 = grid_x(g, col) - fw, y0 = grid_y(g, row) - fw;
    size_t side = g->cell + 2 * fw;
    for (size_t y = 0; y < side; y++) {
        for (size_t x = 0; x < side; x++) {
            if (y >= fw && y < fw + g->cell && x >= fw && x < fw + g->cell)
                continue;
            uint8_t *p = g->pix + ((y0 + y) * g->w + x0 + x) * 3;
            p[0] = r;
            p[1] = gr;
            p[2] = b;
        }
    }
    return 0;
}

int grid_write_jpeg(const struct grid *g, const char *path, int quality, char *err, size_t err_len)
{
    uint8_t *jpg = NULL;
    size_t len = 0;
    if (quality < 1 || quality > 100) {
        if (err)
            snprintf(err, err_len, "jpeg quality %d outside 1..100", quality);
        return -1;
    }
    if (jpeg_encode_rgb(g->pix, (uint32_t)g->w, (uint32_t)g->h, quality, &jpg, &len) != 0) {
        if (err)
            snprintf(err, err_len, "cannot encode the %zux%zu grid as JPEG", g->w, g->h);
        return -1;
    }
    int rc = durable_write(path, jpg, len);
    if (rc != 0 && err)
        snprintf(err, err_len, "%s: %s", path, strerror(errno));
    free(jpg);
    return rc;
}
