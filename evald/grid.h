/* Retrieval grid image: each row a query followed by its nearest neighbours, like the
 * retrieval figure of Wu et al. 2018, written as a JPEG.
 *
 * Layout: rows x cols cells of `cell` x `cell` pixels on a light grey background, `gap` pixels
 * between cells and around the border, and a wider gap (3 x gap) after column 0 (the query).
 * grid_put scales an RGB image by nearest neighbour to fit its cell (aspect kept, centred), so
 * a 32 x 32 CIFAR image fills a 64 px cell at 2x. grid_mark draws a frame gap/2 pixels wide (at
 * least 1) in the gap around a cell; grid_mark_match frames a neighbour green when it is of the
 * query's class, red otherwise.
 *
 * Below the rows, a legend strip says how to read the grid: "QUERY" under column 0, then a
 * green swatch "SAME CLASS" and a red swatch "OTHER CLASS", in a 5x7 pixel font scaled by
 * max(1, cell / 32) (2 for 64 px cells), wrapped onto further lines where the grid is too
 * narrow for one. grid_new draws it; grid_height includes it. */
#ifndef NPID_EVALD_GRID_H
#define NPID_EVALD_GRID_H
#include <stddef.h>
#include <stdint.h>

struct grid;

/* The frame colours of grid_mark_match and of the legend's swatches (RGB). */
#define GRID_SAME_RGB 40, 180, 40
#define GRID_OTHER_RGB 220, 40, 40

/* rows, cols >= 1; 8 <= cell <= 1024; 1 <= gap <= 64; the whole image at most 16384 px a side.
 * Returns NULL with errno EINVAL / ENOMEM. */
struct grid *grid_new(size_t rows, size_t cols, size_t cell, size_t gap);
void grid_destroy(struct grid **g);

/* Image size in pixels (the height includes the legend strip). */
size_t grid_width(const struct grid *g);
size_t grid_height(const struct grid *g);

/* Places packed RGB (HWC, w x h) into cell (row, col). Returns 0, or -1 with errno EINVAL
 * (cell out of range, w or h 0). */
int grid_put(struct grid *g, size_t row, size_t col, const uint8_t *rgb, uint32_t w, uint32_t h);

/* Frames cell (row, col) in colour (r, g, b). Returns 0 or -1 (EINVAL). */
int grid_mark(struct grid *g, size_t row, size_t col, uint8_t r, uint8_t gr, uint8_t b);

/* Frames cell (row, col) in GRID_SAME_RGB when same is non-zero, else GRID_OTHER_RGB.
 * Returns 0 or -1 (EINVAL). */
int grid_mark_match(struct grid *g, size_t row, size_t col, int same);

/* Height of the legend strip below the last row's bottom gap for a grid of width w
 * and this cell size: what grid_new adds to the height. */
size_t grid_legend_height(size_t w, size_t cell, size_t gap);

/* The canvas (height, width, 3), row-major RGB. */
const uint8_t *grid_pixels(const struct grid *g);

/* Encodes the canvas as a baseline JPEG (quality 1..100) and writes it durably to path.
 * Returns 0, or -1 with a one-line reason in err (err_len bytes; err may be NULL). */
int grid_write_jpeg(const struct grid *g, const char *path, int quality, char *err, size_t err_len);

#endif
