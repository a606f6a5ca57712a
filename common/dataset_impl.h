/* The struct dataset shared by the files of the dataset index: common/dataset.c (indexing,
 * lookups, the header probe) and common/dataset_decode.c (reading and decoding an image, the
 * only part that needs the image libraries). Private to those two files. */
#ifndef NPID_COMMON_DATASET_IMPL_H
#define NPID_COMMON_DATASET_IMPL_H
#include <stddef.h>
#include <stdint.h>
#include "common/dataset.h"

#define BIN_MAX_FILES 8

/* One open binary file of fixed-size records. */
struct bin_file {
    int fd;
    size_t first;       /* index of its first record */
    uint32_t rec;       /* bytes per record */
    uint32_t pix_off;   /* offset of the 3 planes in a record (after label bytes) */
    uint32_t side;      /* square images of side x side */
    int col_major;      /* STL-10: each plane is stored column by column */
};

struct dataset {
    enum dataset_format format;
    char *root;
    char split[8];
    size_t n, labelled;
    uint32_t *label;      /* n */
    uint64_t *size;       /* n */
    size_t *path_off;     /* n offsets into pool */
    char *pool;
    size_t pool_len, pool_cap;
    size_t cap;           /* allocated entries of label/size/path_off */
    char **classes;
    size_t n_classes;
    int numeric;          /* classes are decimal labels of a list, sorted by value */
    size_t skipped, nested_dirs;
    char manifest[65];
    char describe[512];
    int root_fd;          /* directory layouts and lists: the root, for openat */
    struct bin_file bin[BIN_MAX_FILES];
    size_t n_bin;
    const struct dataset_opts *opts; /* during dataset_open only (on_skip) */
};

#endif
