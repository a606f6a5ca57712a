/* Dataset index: which images exist, in which order, with which labels.
 *
 * Layouts (docs/formats.md, "Datasets and the manifest", has the full rules):
 *  - ImageFolder: ROOT/train/<class>/...  and  ROOT/test/<class>/... (or ROOT/val/<class>/...).
 *    Classes are the sub-directories of the split, sorted bytewise by name (label = position).
 *    Images are the files with a .jpg/.jpeg/.png/.webp extension (any case) found under a
 *    class directory (recursively; nested sub-folders are counted, dataset_nested_dirs, and
 *    their images belong to the enclosing class), sorted bytewise by their path relative to
 *    the class directory; formats may be mixed, and decoding goes by the bytes
 *    (common/image.h). The test split takes the train split's class list, so labels agree.
 *  - Flat (unlabelled): a split directory without class folders (images directly in
 *    ROOT/train), or ROOT itself holding images, sub-folders included: every image under it,
 *    sorted bytewise by path, label DATASET_NO_LABEL. Detected, or forced with layout "flat".
 *  - Several train splits (opts train_splits "train,unlabeled", the STL-10 layout): one index
 *    over ROOT/train and ROOT/unlabeled; a split named "unlabeled" (or "unlabelled") is always
 *    flat. The labelled splits come first, so images [0, dataset_labelled) carry labels.
 *  - File list (opts list, or a regular file as root): one "PATH[<TAB>LABEL]" per line, paths
 *    relative to the list file's directory, '#' comments; labelled lines first.
 *  - CIFAR-10 binary (data_batch_1..5.bin, test_batch.bin), CIFAR-100 binary (train.bin,
 *    test.bin; fine or coarse labels) and STL-10 binary (train_X/_y.bin, test_X/_y.bin,
 *    unlabeled_X.bin), in ROOT or their archive's sub-directory.
 *
 * Index i (0 <= i < dataset_count) is row i of the memory bank for the train split. Every
 * process that opens the same data with the same options computes the same order and the
 * same manifest: the SHA-256 (64 lowercase hex digits) over, for each image in order, its
 * relative path, a TAB, its size in bytes in decimal and a newline (for binary records the
 * path is "FILE#R", R the record number in that file, and the size the record's). The
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

enum dataset_format {
    DATASET_IMAGEFOLDER = 1,
    DATASET_CIFAR_BIN = 2,      /* CIFAR-10 binary */
    DATASET_FLAT = 3,
    DATASET_LIST = 4,
    DATASET_CIFAR100_BIN = 5,
    DATASET_STL10_BIN = 6,
};

/* The label of an image without one (flat folders, unlabelled splits and list lines). */
#define DATASET_NO_LABEL UINT32_MAX

/* Suggested size of the err buffers passed to the functions below. */
#define DATASET_ERR_LEN 512

/* How to read a dataset root; every field may be NULL (the default in brackets). The strings
 * are what the flags of the same names take. */
struct dataset_opts {
    const char *layout;       /* [auto] imagefolder flat cifar10 cifar100 stl10 list */
    const char *train_splits; /* [train] comma-separated directories (or STL-10 files) of ROOT
                                 forming the train split, e.g. "train,unlabeled" */
    const char *list;         /* the train split's file list (layout list) */
    const char *test_list;    /* the test split's file list */
    const char *labels;       /* [fine] CIFAR-100 labels: fine or coarse */
    /* Called once per file or directory skipped while indexing, with its path relative to
     * the root and a short reason ("dangling link", "directory loop: ..."); NULL: count only.
     * Used during dataset_open only. */
    void (*on_skip)(void *ctx, const char *path, const char *why);
    void *skip_ctx;
};

#define DATASET_HELP_LAYOUT                                                                 \
    "dataset layout: auto | imagefolder | flat (no labels) | cifar10 | cifar100 | stl10 | " \
    "list (auto: from what --data holds; docs/formats.md)"
#define DATASET_HELP_TRAIN_SPLITS \
    "directories of --data forming the train split, e.g. train,unlabeled (unlabeled is read flat)"
#define DATASET_HELP_LIST \
    "train split from a file list: PATH[<TAB>LABEL] per line, paths relative to the file"
#define DATASET_HELP_TEST_LIST "test split from a file list (as --list)"
#define DATASET_HELP_LABELS "CIFAR-100 labels: fine (100 classes) | coarse (20)"

/* The rows of a struct cfg_opt table (common/cfg.h) for the options: --layout,
 * --train-splits, --list, --test-list and --labels, environment NPID_LAYOUT,
 * NPID_TRAIN_SPLITS, NPID_LIST, NPID_TEST_LIST and NPID_LABELS. o: a struct dataset_opts *
 * that outlives the table. */
#define DATASET_CFG_OPTS(o)                                                                     \
    { "layout", "NPID_LAYOUT", CFG_STR, &(o)->layout, "auto", 0, 0, DATASET_HELP_LAYOUT, 0 },  \
    { "train-splits", "NPID_TRAIN_SPLITS", CFG_STR, &(o)->train_splits, "train", 0, 0,          \
      DATASET_HELP_TRAIN_SPLITS, 0 },                                                           \
    { "list", "NPID_LIST", CFG_STR, &(o)->list, NULL, 0, 0, DATASET_HELP_LIST, 0 },             \
    { "test-list", "NPID_TEST_LIST", CFG_STR, &(o)->test_list, NULL, 0, 0, DATASET_HELP_TEST_LIST, \
      0 },                                                                                      \
    { "labels", "NPID_LABELS", CFG_STR, &(o)->labels, "fine", 0, 0, DATASET_HELP_LABELS, 0 }

/* Checks the option values without touching the file system (for a usage error at start):
 * known layout and labels, split names that are plain directory names, no --list together
 * with other --train-splits. Returns 0, or -1 with a one-line reason naming the flag. */
int dataset_opts_check(const struct dataset_opts *o, char *err, size_t err_len);

struct dataset;

/* Opens split "train" or "test" ("val" is accepted as an alias of "test") of the dataset at
 * root, read as o says (NULL: the defaults). root may be NULL when the split comes from a
 * list; a regular file as root is the train split's list. Returns NULL on failure with a
 * one-line reason in err (missing root, no train/ or test|val/ directory and no binary files,
 * no classes, no images, unreadable directory, truncated binary file, a bad list line, ...).
 * err may be NULL; err_len is its size. */
struct dataset *dataset_open_opts(const char *root, const char *split,
                                  const struct dataset_opts *o, char *err, size_t err_len);
/* dataset_open_opts with the default options. */
struct dataset *dataset_open(const char *root, const char *split, char *err, size_t err_len);
/* 1 when the split can be looked for at all: "train" always; "test" when o gives a test list
 * or root holds test/ or val/ or a binary test file (the layout o names, or any when auto). */
int dataset_split_exists(const char *root, const char *split, const struct dataset_opts *o);
/* Frees *ds and sets it NULL; accepts NULL and a NULL *ds. */
void dataset_destroy(struct dataset **ds);

/* The layout of the first (labelled) part: for train + unlabeled, DATASET_IMAGEFOLDER. */
enum dataset_format dataset_format(const struct dataset *ds);
/* The root image paths are relative to (a list's directory for a list). */
const char *dataset_root(const struct dataset *ds);
/* "train" or "test" (also when opened as "val"). */
const char *dataset_split(const struct dataset *ds);
/* One line on how the data was read, for the log: "ImageFolder train/: 10 classes + flat
 * unlabeled/ (unlabelled)", "flat train/ (no class folders): unlabelled", ... */
const char *dataset_describe(const struct dataset *ds);
/* Number of images (> 0 for an opened dataset). */
size_t dataset_count(const struct dataset *ds);
/* Number of labelled images: images [0, labelled) have labels < dataset_num_classes, the rest
 * DATASET_NO_LABEL (0 for a flat folder). */
size_t dataset_labelled(const struct dataset *ds);
/* Class label of image i, in [0, dataset_num_classes), or DATASET_NO_LABEL. i < count is an
 * invariant (NPID_CHECK). */
uint32_t dataset_label(const struct dataset *ds, size_t i);
/* Path of image i relative to the root ("train/cat/0001.jpg", "data_batch_2.bin#137"). The
 * string lives as long as ds. */
const char *dataset_path(const struct dataset *ds, size_t i);
/* Size in bytes of image i's file (the record size for a binary record: 3073 CIFAR-10, 3074
 * CIFAR-100, 27648 STL-10). */
uint64_t dataset_file_size(const struct dataset *ds, size_t i);
/* Number of classes (0 when nothing is labelled). */
size_t dataset_num_classes(const struct dataset *ds);
/* Name of class c (c < num_classes, or "" for DATASET_NO_LABEL); lives as long as ds. */
const char *dataset_class_name(const struct dataset *ds, size_t c);
/* Manifest hash: 64 lowercase hex digits, NUL-terminated; lives as long as ds. */
const char *dataset_manifest(const struct dataset *ds);
/* Files and directories skipped while indexing (not .jpg/.jpeg/.png/.webp, hidden, not
 * regular files, dangling links, symlink and directory loops, unreadable, loose files beside
 * class folders); each one was passed to opts.on_skip with its reason. */
size_t dataset_skipped(const struct dataset *ds);
/* ImageFolder: directories found inside class folders (their images count for the class). */
size_t dataset_nested_dirs(const struct dataset *ds);

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
/* dataset_decode with the scale chosen as image_decode_pick does (a binary record, always
 * full size, calls pick once it is read). */
int dataset_decode_pick(const struct dataset *ds, size_t i, struct jpeg_dec *dec,
                        jpeg_denom_fn pick, void *ctx, struct jpeg_image *img, char *err,
                        size_t err_len);

/* What the images measure: the median short and long side over up to max_sample training
 * images evenly spaced in index order, read from their headers only (a binary set is 32x32
 * or 96x96 without reading). Unreadable files are skipped and counted in *bad. Returns the
 * number of images measured (0: none could be read, *short_side and *long_side then 0). */
size_t dataset_probe_sides(const struct dataset *ds, size_t max_sample, uint32_t *short_side,
                           uint32_t *long_side, size_t *bad);

#endif
