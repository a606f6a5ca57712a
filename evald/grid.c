/* Retrieval grid image: see grid.h. */
#include "evald/grid.h"

#include "common/durable.h"
#include "common/jpeg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { GRID_BG = 235, GRID_MAX_SIDE = 16384, GRID_INK = 40 };

/* 5x7 capitals, one byte per row, bit 4 the leftmost column */
static const uint8_t grid_font[26][7] = {
    { 0x0e, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11 }, /* A */
    { 0x1e, 0x11, 0x11, 0x1e, 0x11, 0x11, 0x1e }, /* B */
    { 0x0e, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0e }, /* C */
    { 0x1e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x1e }, /* D */
    { 0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x1f }, /* E */
    { 0x1f, 0x10, 0x10, 0x1e, 0x10, 0x10, 0x10 }, /* F */
    { 0x0e, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0f }, /* G */
    { 0x11, 0x11, 0x11, 0x1f, 0x11, 0x11, 0x11 }, /* H */
    { 0x0e, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0e }, /* I */
    { 0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0c }, /* J */
    { 0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11 }, /* K */
    { 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1f }, /* L */
    { 0x11, 0x1b, 0x15, 0x15, 0x11, 0x11, 0x11 }, /* M */
    { 0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11 }, /* N */
    { 0x0e, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e }, /* O */
    { 0x1e, 0x11, 0x11, 0x1e, 0x10, 0x10, 0x10 }, /* P */
    { 0x0e, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0d }, /* Q */
    { 0x1e, 0x11, 0x11, 0x1e, 0x14, 0x12, 0x11 }, /* R */
    { 0x0f, 0x10, 0x10, 0x0e, 0x01, 0x01, 0x1e }, /* S */
    { 0x1f, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04 }, /* T */
    { 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0e }, /* U */
    { 0x11, 0x11, 0x11, 0x11, 0x11, 0x0a, 0x04 }, /* V */
    { 0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0a }, /* W */
    { 0x11, 0x11, 0x0a, 0x04, 0x0a, 0x11, 0x11 }, /* X */
    { 0x11, 0x11, 0x0a, 0x04, 0x04, 0x04, 0x04 }, /* Y */
    { 0x1f, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1f }, /* Z */
};

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

/* The legend: three items laid out left to right from column 0, each on the current line if
 * it fits in the width, else at the start of the next one. An item is a swatch (or none)
 * followed by a word; glyphs are 6 x scale pixels wide (5 + 1 spacing) and 7 x scale high. */
static const struct {
    const char *text;
    int swatch; /* 0 none, 1 same class, 2 other class */
} grid_items[] = { { "QUERY", 0 }, { "SAME CLASS", 1 }, { "OTHER CLASS", 2 } };

static size_t grid_scale(size_t cell)
{
    return cell / 32 > 1 ? cell / 32 : 1;
}

/* fills a w x h rectangle at (x, y), clipped to the canvas */
static void grid_fill(struct grid *g, size_t x, size_t y, size_t w, size_t h, uint8_t r,
                      uint8_t gr, uint8_t b)
{
    for (size_t yy = y; yy < y + h && yy < g->h; yy++) {
        for (size_t xx = x; xx < x + w && xx < g->w; xx++) {
            uint8_t *p = g->pix + (yy * g->w + xx) * 3;
            p[0] = r;
            p[1] = gr;
            p[2] = b;
        }
    }
}

/* draws one capital (anything else is a blank) with its top left at (x, y) */
static void grid_glyph(struct grid *g, char c, size_t x, size_t y, size_t s)
{
    if (c < 'A' || c > 'Z')
        return;
    for (size_t r = 0; r < 7; r++)
        for (size_t k = 0; k < 5; k++)
            if (grid_font[c - 'A'][r] & (0x10 >> k))
                grid_fill(g, x + k * s, y + r * s, s, s, GRID_INK, GRID_INK, GRID_INK);
}

/* Lays the legend out in width w from (gap, y0); draws it when g is non-NULL. Returns the
 * number of lines. The query label is centred under column 0 when it fits there. */
static size_t grid_legend_layout(struct grid *g, size_t w, size_t cell, size_t gap, size_t y0)
{
    size_t s = grid_scale(cell), line_h = 7 * s + gap, lines = 1;
    size_t x = gap, y = y0;
    for (size_t i = 0; i < sizeof grid_items / sizeof grid_items[0]; i++) {
        size_t len = strlen(grid_items[i].text), tw = len * 6 * s - s;
        size_t iw = tw + (grid_items[i].swatch ? 10 * s : 0);
        if (i == 0 && tw <= cell)
            x = gap + (cell - tw) / 2;
        if (i == 1 && x < gap + cell + 3 * gap)
            x = gap + cell + 3 * gap; /* the neighbours' part starts at column 1 */
        if (x + iw + gap > w && x > gap) {
            x = gap;
            y += line_h;
            lines++;
        }
        if (g) {
            if (grid_items[i].swatch == 1)
                grid_fill(g, x, y, 7 * s, 7 * s, GRID_SAME_RGB);
            else if (grid_items[i].swatch == 2)
                grid_fill(g, x, y, 7 * s, 7 * s, GRID_OTHER_RGB);
            size_t tx = x + (grid_items[i].swatch ? 10 * s : 0);
            for (size_t k = 0; k < len; k++)
                grid_glyph(g, grid_items[i].text[k], tx + k * 6 * s, y, s);
        }
        x += iw + 6 * s * 3;
    }
    return lines;
}

size_t grid_legend_height(size_t w, size_t cell, size_t gap)
{
    return grid_legend_layout(NULL, w, cell, gap, 0) * (7 * grid_scale(cell) + gap);
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
    g->h = grid_y(g, rows) + grid_legend_height(g->w, cell, gap);
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
    grid_legend_layout(g, g->w, cell, gap, grid_y(g, rows));
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

int grid_mark_match(struct grid *g, size_t row, size_t col, int same)
{
    return same ? grid_mark(g, row, col, GRID_SAME_RGB) : grid_mark(g, row, col, GRID_OTHER_RGB);
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
