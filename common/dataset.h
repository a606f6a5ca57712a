/* Dataset index: which images exist, in which order, with which labels.
 *
 * Two layouts are recognised under a root directory:
 *  - ImageFolder: ROOT/train/<class>/...  and  ROOT/test/<class>/... (or ROOT/val/<class>/...).
 *    Classes are the sub-directories of the split, sorted bytewise by name (label = position).
 *    Images are the files with a .jpg/.jpeg/.png/.webp extension (any case) found under a
 *    class directory (recursively), sorted bytewise by their path relative to the class
 *    directory; formats may be mixed, and decoding goes by the bytes (common/image.h).
 *    Other files (and names starting with '.') are skipped and counted (dataset_skipped).
 *    For the test split, the class list is taken from train/ when train/ exists, so labels
 *    agree between splits; a test class unknown to train/ is an error.
 *  - CIFAR-10 binary: ROOT/data_batch_1.bin .. data_batch_5.bin (train) and ROOT/test_batch.bin
 *    (test), or the same files under ROOT/cifar-10-batches-bin/. Records are 1 label byte +
 *    3072 bytes of 32x32 planar RGB; images are taken in file order. Class names come from
 *    batches.meta.txt when present, else the standard CIFAR-10 names.
 *
 * Index i (0 <= i < dataset_count) is row i of the memory bank for the train split. Every
 * process that opens the same data computes the same order and the same manifest: the
 * SHA-256 (64 lowercase hex digits) over, for each image in order, its relative path, a TAB,
 * its size in bytes in decimal and a newline (for CIFAR binary records the path is
 * "data_batch_N.bin#R" with R the record number in that file, and the size 3073). The
 * manifest is carried in every loader <-> trainer and bankd message, so processes pointed at
 * different data refuse to work together.
 *
 * A struct dataset is immutable after dataset_open: any number of threads may call the
 * read-only functions and the loading functions concurrently. */
#ifndef NPID_DATASET_H
#define NPID_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "common/jpeg.h"

enum dataset_format { DATASET_IMAGEFOLDER = 1, DATASET_CIFAR_BIN = 2 };

/* Suggested size of the err buffers passed to the functions below. */
#define DATASET_ERR_LEN 512

struct dataset;

/* Opens split "train" or "test" ("val" is accepted as an alias of "test") of the dataset at
 * root. Returns NULL on failure with a one-line reason in err (missing root, no train/ or
 * test|val/ directory and no CIFAR files, no classes, no images, unreadable directory, truncated
 * CIFAR file, ...). err may be NULL; err_len is its size. */
struct dataset *dataset_open(const char *root, const char *split, char *err, size_t err_len);
/* Frees *ds and sets it NULL; accepts NULL and a NULL *ds. */
void dataset_destroy(struct dataset **ds);

enum dataset_format dataset_format(const struct dataset *ds);
const char *dataset_root(const struct dataset *ds);
/* "train" or "test" (also when opened as "val"). */
const char *dataset_split(const struct dataset *ds);
/* Number of images (> 0 for an opened dataset). */
size_t dataset_count(const struct dataset *ds);
/* Class label of image i, in [0, dataset_num_classes). i < count is an invariant (NPID_CHECK). */
uint32_t dataset_label(const struct dataset *ds, size_t i);
/* Path of image i relative to the root ("train/cat/0001.jpg", "data_batch_2.bin#137"). The
 * string lives as long as ds. */
const char *dataset_path(const struct dataset *ds, size_t i);
/* Size in bytes of image i's file (3073 for a CIFAR binary record). */
uint64_t dataset_file_size(const struct dataset *ds, size_t i);
size_t dataset_num_classes(const struct dataset *ds);
/* Name of class c (c < num_classes); lives as long as ds. */
const char *dataset_class_name(const struct dataset *ds, size_t c);
/* Manifest hash: 64 lowercase hex digits, NUL-terminated; lives as long as ds. */
const char *dataset_manifest(const struct dataset *ds);
/* Files skipped while indexing (not .jpg/.jpeg/.png/.webp, hidden, or not regular files). */
size_t dataset_skipped(const struct dataset *ds);

/* Reads and decodes image i to packed RGB (HWC, 3 bytes per pixel) in out, which holds
 * out_cap bytes. *w and *h receive the dimensions (also on the "buffer too small" failure, so
 * the caller can grow the buffer to w*h*3 and retry). Allocates temporary memory per call;
 * the loader's hot path uses dataset_decode instead. Returns 0, or -1 with a one-line reason
 * naming the path in err (I/O error, corrupt or unsupported image, limits exceeded, buffer
 * too small). */
int dataset_load_rgb(const struct dataset *ds, size_t i, uint8_t *out, size_t out_cap,
                     uint32_t *w, uint32_t *h, char *err, size_t err_len);

/* Reads and decodes image i (JPEG, PNG or WebP, by content: image_decode) with a reusable
 * decoder (no allocation once dec's buffers have grown to the largest image; libpng's small
 * per-file state aside). min_side > 0 lets the decoder downscale a JPEG in the DCT domain by
 * 1/2, 1/4 or 1/8 as long as both output sides stay >= min_side (0: full resolution).
 * On 0, img points into dec's buffer and is valid until the next call with dec.
 * Returns 0, or -1 with a one-line reason naming the path in err. */
int dataset_decode(const struct dataset *ds, size_t i, struct jpeg_dec *dec, uint32_t min_side,
                   struct jpeg_image *img, char *err, size_t err_len);

/* What the images measure: the median short and long side over up to max_sample training
 * images evenly spaced in index order, read from their headers only (a CIFAR binary set is
 * 32x32 without reading). Unreadable files are skipped and counted in *bad. Returns the number
 * of images measured (0: none could be read, *short_side and *long_side then 0). */
size_t dataset_probe_sides(const struct dataset *ds, size_t max_sample, uint32_t *short_side,
                           uint32_t *long_side, size_t *bad);

#endif
