/* Dataset index (ImageFolder trees and the CIFAR-10 binary layout): see dataset.h.
 *
 * Paths live in one string pool (offsets per image); CIFAR binary files stay open and
 * records are read with pread, so a struct dataset can be shared by threads. */
#include "common/dataset.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/image.h"
#include "common/log.h"
#include "common/sha256.h"

#define CIFAR_REC 3073u
#define CIFAR_SIDE 32u
#define CIFAR_MAX_FILES 5
#define WALK_MAX_DEPTH 16

static const char *const cifar_names[10] = { "airplane", "automobile", "bird", "cat", "deer",
                                             "dog", "frog", "horse", "ship", "truck" };

struct dataset {
    enum dataset_format format;
    char *root;
    char split[8];
    size_t n;
    uint32_t *label;      /* n */
    uint64_t *size;       /* n */
    size_t *path_off;     /* n offsets into pool */
    char *pool;
    size_t pool_len, pool_cap;
    size_t cap;           /* allocated entries of label/size/path_off */
    char **classes;
    size_t n_classes;
    size_t skipped;
    char manifest[65];
    int root_fd;          /* ImageFolder: the root, for openat (shorter path walks) */
    /* CIFAR binary */
    int cifar_fd[CIFAR_MAX_FILES];
    size_t cifar_first[CIFAR_MAX_FILES + 1]; /* first image index of each file */
    size_t cifar_files;
};


static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* buf = a "/" b; -1 when it does not fit. */
__attribute__((noinline)) static int pjoin(char *buf, size_t len, const char *a, const char *b)
{
    int m = snprintf(buf, len, "%s/%s", a, b);
    return m < 0 || (size_t)m >= len ? -1 : 0;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* The names indexed as images. Only the name is looked at here (indexing opens no file); the
 * decoder goes by the bytes, so a PNG named .jpg still decodes. */
static int has_image_ext(const char *name)
{
    static const char *const ext[] = { ".jpg", ".jpeg", ".png", ".webp" };
    const char *dot = strrchr(name, '.');
    if (!dot)
        return 0;
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++)
        if (strcasecmp(dot, ext[i]) == 0)
            return 1;
    return 0;
}

/* ---- growing arrays -------------------------------------------------------------------- */

static int pool_add(struct dataset *ds, const char *s, size_t *off)
{
    size_t len = strlen(s) + 1;
    if (ds->pool_len + len > ds->pool_cap) {
        size_t c = ds->pool_cap ? ds->pool_cap : 65536;
        while (c < ds->pool_len + len)
            c *= 2;
        char *p = realloc(ds->pool, c);
        if (!p)
            return -1;
        ds->pool = p;
        ds->pool_cap = c;
    }
    memcpy(ds->pool + ds->pool_len, s, len);
    *off = ds->pool_len;
    ds->pool_len += len;
    return 0;
}

static int item_add(struct dataset *ds, const char *path, uint32_t label, uint64_t size)
{
    size_t *cap = &ds->cap;
    if (ds->n == *cap) {
        size_t c = *cap ? *cap * 2 : 1024;
        uint32_t *l = realloc(ds->label, c * sizeof *l);
        if (!l)
            return -1;
        ds->label = l;
        uint64_t *s = realloc(ds->size, c * sizeof *s);
        if (!s)
            return -1;
        ds->size = s;
        size_t *o = realloc(ds->path_off, c * sizeof *o);
        if (!o)
            return -1;
        ds->path_off = o;
        *cap = c;
    }
    if (pool_add(ds, path, &ds->path_off[ds->n]))
        return -1;
    ds->label[ds->n] = label;
    ds->size[ds->n] = size;
    ds->n++;
    return 0;
}

/* ---- ImageFolder ------------------------------------------------------------------------ */

struct file_entry {
    char *rel;        /* path relative to the class directory */
    uint64_t size;
};

struct file_list {
    struct file_entry *e;
    size_t n, cap;
};

static void file_list_free(struct file_list *fl)
{
    for (size_t i = 0; i < fl->n; i++)
        free(fl->e[i].rel);
    free(fl->e);
    memset(fl, 0, sizeof *fl);
}

static int file_list_add(struct file_list *fl, const char *rel, uint64_t size)
{
    if (fl->n == fl->cap) {
        size_t c = fl->cap ? fl->cap * 2 : 256;
        struct file_entry *e = realloc(fl->e, c * sizeof *e);
        if (!e)
            return -1;
        fl->e = e;
        fl->cap = c;
    }
    fl->e[fl->n].rel = strdup(rel);
    if (!fl->e[fl->n].rel)
        return -1;
    fl->e[fl->n++].size = size;
    return 0;
}

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const struct file_entry *)a)->rel, ((const struct file_entry *)b)->rel);
}

/* Collects image files under dir (rel is the path of dir relative to the class directory,
 * "" at the top). Returns 0 or -1 with err set. */
static int walk(struct dataset *ds, const char *dir, const char *rel, int depth,
                struct file_list *fl, char *err, size_t err_len)
{
    DIR *d = opendir(dir);
    if (!d) {
        err_set(err, err_len, "cannot read directory %s: %s", dir, strerror(errno));
        return -1;
    }
    int rc = -1;
    struct dirent *e;
    char path[4096], sub[4096];
    while ((e = readdir(d)) != NULL) {
        const char *nm = e->d_name;
        if (strcmp(nm, ".") == 0 || strcmp(nm, "..") == 0)
            continue;
        if (nm[0] == '.') {
            ds->skipped++;
            continue;
        }
        if (snprintf(path, sizeof path, "%s/%s", dir, nm) >= (int)sizeof path ||
            snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] ? "/" : "", nm) >= (int)sizeof sub) {
            err_set(err, err_len, "path too long under %s", dir);
            goto out;
        }
        struct stat st;
        if (stat(path, &st) != 0) {
            ds->skipped++;    /* dangling symlink and the like */
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            if (depth >= WALK_MAX_DEPTH) {
                err_set(err, err_len, "directories nested deeper than %d at %s", WALK_MAX_DEPTH,
                        path);
                goto out;
            }
            if (walk(ds, path, sub, depth + 1, fl, err, err_len))
                goto out;
        } else if (S_ISREG(st.st_mode) && has_image_ext(nm)) {
            if (file_list_add(fl, sub, (uint64_t)st.st_size)) {
                err_set(err, err_len, "out of memory indexing %s", dir);
                goto out;
            }
        } else {
            ds->skipped++;
        }
    }
    rc = 0;
out:
    closedir(d);
    return rc;
}

/* Sorted class directory names of dir. */
static int list_classes(const char *dir, char ***out, size_t *n_out, size_t *skipped, char *err,
                        size_t err_len)
{
    DIR *d = opendir(dir);
    if (!d) {
        err_set(err, err_len, "cannot read directory %s: %s", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    char path[4096];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path)
            continue;
        if (!is_dir(path)) {
            if (skipped)
                (*skipped)++;
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **p = realloc(names, cap * sizeof *p);
            if (!p)
                goto oom;
            names = p;
        }
        if (!(names[n] = strdup(e->d_name)))
            goto oom;
        n++;
    }
    closedir(d);
    if (n > 1)
        qsort(names, n, sizeof *names, cmp_str);
    *out = names;
    *n_out = n;
    return 0;
oom:
    closedir(d);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    err_set(err, err_len, "out of memory listing %s", dir);
    return -1;
}

static void free_names(char **names, size_t n)
{
    if (!names)
        return;
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

static int open_imagefolder(struct dataset *ds, const char *split_dir, const char *split_name,
                            char *err, size_t err_len)
{
    char path[4096], train_dir[4096];
    char **dirs = NULL;
    size_t n_dirs = 0;
    int rc = -1;
    if (list_classes(split_dir, &dirs, &n_dirs, &ds->skipped, err, err_len))
        return -1;
    if (n_dirs == 0) {
        err_set(err, err_len, "no class directories in %s", split_dir);
        goto out;
    }
    /* class list: train's when opening test and train/ exists */
    snprintf(train_dir, sizeof train_dir, "%s/train", ds->root);
    if (strcmp(ds->split, "test") == 0 && is_dir(train_dir)) {
        if (list_classes(train_dir, &ds->classes, &ds->n_classes, NULL, err, err_len))
            goto out;
    } else {
        ds->classes = dirs;
        ds->n_classes = n_dirs;
        dirs = NULL;
    }
    char **walk_dirs = dirs ? dirs : ds->classes;
    size_t n_walk = dirs ? n_dirs : ds->n_classes;
    if (!dirs)
        n_dirs = 0;
    for (size_t c = 0; c < n_walk; c++) {
        uint32_t label = (uint32_t)c;
        if (dirs) {
            char **hit = bsearch(&walk_dirs[c], ds->classes, ds->n_classes, sizeof(char *),
                                 cmp_str);
            if (!hit) {
                err_set(err, err_len, "class '%s' of %s is not a class of %s", walk_dirs[c],
                        split_dir, train_dir);
                goto out;
            }
            label = (uint32_t)(hit - ds->classes);
        }
        struct file_list fl = { 0 };
        snprintf(path, sizeof path, "%s/%s", split_dir, walk_dirs[c]);
        if (walk(ds, path, "", 0, &fl, err, err_len)) {
            file_list_free(&fl);
            goto out;
        }
        if (fl.n > 1)
            qsort(fl.e, fl.n, sizeof *fl.e, cmp_entry);
        int bad = 0;
        for (size_t i = 0; i < fl.n && !bad; i++)
            if (snprintf(path, sizeof path, "%s/%s/%s", split_name, walk_dirs[c], fl.e[i].rel) >=
                    (int)sizeof path ||
                item_add(ds, path, label, fl.e[i].size))
                bad = 1;
        file_list_free(&fl);
        if (bad) {
            err_set(err, err_len, "out of memory or path too long in %s/%s", split_dir,
                    walk_dirs[c]);
            goto out;
        }
    }
    if (ds->n == 0) {
        err_set(err, err_len,
                "no images (.jpg/.jpeg/.png/.webp) under %s (%zu other files skipped)",
                split_dir, ds->skipped);
        goto out;
    }
    rc = 0;
out:
    free_names(dirs, n_dirs);
    return rc;
}

/* ---- CIFAR-10 binary --------------------------------------------------------------------- */

static const char *cifar_dir(const char *root, char *buf, size_t len)
{
    snprintf(buf, len, "%s/data_batch_1.bin", root);
    if (is_file(buf)) {
        snprintf(buf, len, "%s", root);
        return buf;
    }
    snprintf(buf, len, "%s/test_batch.bin", root);
    if (is_file(buf)) {
        snprintf(buf, len, "%s", root);
        return buf;
    }
    snprintf(buf, len, "%s/cifar-10-batches-bin/data_batch_1.bin", root);
    char t[4096];
    snprintf(t, sizeof t, "%s/cifar-10-batches-bin/test_batch.bin", root);
    if (is_file(buf) || is_file(t)) {
        snprintf(buf, len, "%s/cifar-10-batches-bin", root);
        return buf;
    }
    return NULL;
}

static int cifar_class_names(struct dataset *ds, const char *dir)
{
    char path[4096];
    if (pjoin(path, sizeof path, dir, "batches.meta.txt"))
        path[0] = 0;
    char *names[10] = { 0 };
    size_t n = 0;
    FILE *f = fopen(path, "r");
    if (f) {
        char line[256];
        while (n < 10 && fgets(line, sizeof line, f)) {
            line[strcspn(line, "\r\n")] = 0;
            if (line[0] == 0)
                continue;
            names[n++] = strdup(line);
        }
        fclose(f);
    }
    ds->classes = calloc(10, sizeof(char *));
    if (!ds->classes)
        goto oom;
    ds->n_classes = 10;
    for (size_t c = 0; c < 10; c++) {
        ds->classes[c] = (n == 10 && names[c]) ? names[c] : strdup(cifar_names[c]);
        if (n == 10 && names[c])
            names[c] = NULL;
        if (!ds->classes[c])
            goto oom;
    }
    for (size_t c = 0; c < 10; c++)
        free(names[c]);
    return 0;
oom:
    for (size_t c = 0; c < 10; c++)
        free(names[c]);
    return -1;
}

static int open_cifar(struct dataset *ds, const char *dir, char *err, size_t err_len)
{
    const char *train_files[] = { "data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                  "data_batch_4.bin", "data_batch_5.bin" };
    const char *test_files[] = { "test_batch.bin" };
    int train = strcmp(ds->split, "train") == 0;
    const char *const *files = train ? train_files : test_files;
    size_t nf = train ? 5 : 1;
    char path[4096], rel[4096];
    uint8_t *chunk = NULL;
    if (cifar_class_names(ds, dir)) {
        err_set(err, err_len, "out of memory");
        return -1;
    }
    chunk = malloc((size_t)CIFAR_REC * 1000);
    if (!chunk) {
        err_set(err, err_len, "out of memory");
        return -1;
    }
    for (size_t f = 0; f < nf; f++) {
        pjoin(path, sizeof path, dir, files[f]);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            err_set(err, err_len, "CIFAR-10 binary file %s: %s", path, strerror(errno));
            goto fail;
        }
        ds->cifar_fd[f] = fd;
        ds->cifar_files = f + 1;
        struct stat st;
        if (fstat(fd, &st) != 0 || st.st_size <= 0 || st.st_size % CIFAR_REC != 0) {
            err_set(err, err_len,
                    "CIFAR-10 binary file %s: size %lld is not a positive multiple of %u "
                    "(truncated?)",
                    path, (long long)st.st_size, CIFAR_REC);
            goto fail;
        }
        size_t recs = (size_t)st.st_size / CIFAR_REC;
        ds->cifar_first[f] = ds->n;
        for (size_t r0 = 0; r0 < recs; r0 += 1000) {
            size_t cnt = recs - r0 < 1000 ? recs - r0 : 1000;
            size_t want = cnt * CIFAR_REC;
            ssize_t got = pread(fd, chunk, want, (off_t)(r0 * CIFAR_REC));
            if (got != (ssize_t)want) {
                err_set(err, err_len, "CIFAR-10 binary file %s: short read", path);
                goto fail;
            }
            for (size_t r = 0; r < cnt; r++) {
                uint8_t lab = chunk[r * CIFAR_REC];
                if (lab >= 10) {
                    err_set(err, err_len, "CIFAR-10 binary file %s: record %zu has label %u",
                            path, r0 + r, lab);
                    goto fail;
                }
                const char *bn = strrchr(files[f], '/');
                snprintf(rel, sizeof rel, "%s#%zu", bn ? bn + 1 : files[f], r0 + r);
                if (item_add(ds, rel, lab, CIFAR_REC)) {
                    err_set(err, err_len, "out of memory");
                    goto fail;
                }
            }
        }
    }
    ds->cifar_first[nf] = ds->n;
    free(chunk);
    return 0;
fail:
    free(chunk);
    return -1;
}

/* ---- open / close -------------------------------------------------------------------------- */

static void compute_manifest(struct dataset *ds)
{
    struct sha256 h;
    sha256_init(&h);
    char line[64];
    for (size_t i = 0; i < ds->n; i++) {
        const char *p = ds->pool + ds->path_off[i];
        sha256_update(&h, p, strlen(p));
        int m = snprintf(line, sizeof line, "\t%llu\n", (unsigned long long)ds->size[i]);
        sha256_update(&h, line, (size_t)m);
    }
    unsigned char dg[32];
    sha256_final(&h, dg);
    sha256_hex(dg, ds->manifest);
}

struct dataset *dataset_open(const char *root, const char *split, char *err, size_t err_len)
{
    if (!root || !*root || !split) {
        err_set(err, err_len, "no dataset root given");
        return NULL;
    }
    int is_train = strcmp(split, "train") == 0;
    if (!is_train && strcmp(split, "test") != 0 && strcmp(split, "val") != 0) {
        err_set(err, err_len, "unknown split '%s' (train, test or val)", split);
        return NULL;
    }
    if (!is_dir(root)) {
        err_set(err, err_len, "dataset root %s is not a directory", root);
        return NULL;
    }
    struct dataset *ds = calloc(1, sizeof *ds);
    if (!ds) {
        err_set(err, err_len, "out of memory");
        return NULL;
    }
    for (int f = 0; f < CIFAR_MAX_FILES; f++)
        ds->cifar_fd[f] = -1;
    ds->root_fd = -1;
    snprintf(ds->split, sizeof ds->split, "%s", is_train ? "train" : "test");
    ds->root = strdup(root);
    if (!ds->root) {
        err_set(err, err_len, "out of memory");
        goto fail;
    }
    size_t rl = strlen(ds->root);
    while (rl > 1 && ds->root[rl - 1] == '/')
        ds->root[--rl] = 0;
    char dir[4096], cdir[4096];
    snprintf(dir, sizeof dir, "%s/train", ds->root);
    int has_train = is_dir(dir);
    if (is_train && has_train) {
        ds->format = DATASET_IMAGEFOLDER;
        if (open_imagefolder(ds, dir, "train", err, err_len))
            goto fail;
    } else if (!is_train && (snprintf(dir, sizeof dir, "%s/test", ds->root), is_dir(dir))) {
        ds->format = DATASET_IMAGEFOLDER;
        if (open_imagefolder(ds, dir, "test", err, err_len))
            goto fail;
    } else if (!is_train && (snprintf(dir, sizeof dir, "%s/val", ds->root), is_dir(dir))) {
        ds->format = DATASET_IMAGEFOLDER;
        if (open_imagefolder(ds, dir, "val", err, err_len))
            goto fail;
    } else if (cifar_dir(ds->root, cdir, sizeof cdir)) {
        ds->format = DATASET_CIFAR_BIN;
        if (open_cifar(ds, cdir, err, err_len))
            goto fail;
    } else if (has_train) {
        err_set(err, err_len, "no test/ or val/ directory under %s", ds->root);
        goto fail;
    } else {
        err_set(err, err_len,
                "%s is neither an ImageFolder tree (%s/train/<class>/*.jpg) nor a CIFAR-10 "
                "binary directory (data_batch_1.bin .. test_batch.bin)",
                ds->root, ds->root);
        goto fail;
    }
    if (ds->format == DATASET_IMAGEFOLDER) {
        ds->root_fd = open(ds->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (ds->root_fd < 0) {
            err_set(err, err_len, "cannot open %s: %s", ds->root, strerror(errno));
            goto fail;
        }
    }
    compute_manifest(ds);
    return ds;
fail:
    dataset_destroy(&ds);
    return NULL;
}

void dataset_destroy(struct dataset **dsp)
{
    if (!dsp || !*dsp)
        return;
    struct dataset *ds = *dsp;
    for (size_t f = 0; f < CIFAR_MAX_FILES; f++)
        if (ds->cifar_fd[f] >= 0)
            close(ds->cifar_fd[f]);
    if (ds->root_fd >= 0)
        close(ds->root_fd);
    if (ds->classes)
        free_names(ds->classes, ds->n_classes);
    free(ds->root);
    free(ds->label);
    free(ds->size);
    free(ds->path_off);
    free(ds->pool);
    free(ds);
    *dsp = NULL;
}

enum dataset_format dataset_format(const struct dataset *ds) { return ds->format; }
const char *dataset_root(const struct dataset *ds) { return ds->root; }
const char *dataset_split(const struct dataset *ds) { return ds->split; }
size_t dataset_count(const struct dataset *ds) { return ds->n; }
size_t dataset_num_classes(const struct dataset *ds) { return ds->n_classes; }
const char *dataset_manifest(const struct dataset *ds) { return ds->manifest; }
size_t dataset_skipped(const struct dataset *ds) { return ds->skipped; }

uint32_t dataset_label(const struct dataset *ds, size_t i)
{
    NPID_CHECK(i < ds->n);
    return ds->label[i];
}

const char *dataset_path(const struct dataset *ds, size_t i)
{
    NPID_CHECK(i < ds->n);
    return ds->pool + ds->path_off[i];
}

uint64_t dataset_file_size(const struct dataset *ds, size_t i)
{
    NPID_CHECK(i < ds->n);
    return ds->size[i];
}

const char *dataset_class_name(const struct dataset *ds, size_t c)
{
    NPID_CHECK(c < ds->n_classes);
    return ds->classes[c];
}

/* ---- loading ------------------------------------------------------------------------------ */

static int load_cifar(const struct dataset *ds, size_t i, struct jpeg_dec *dec,
                      struct jpeg_image *img, char *err, size_t err_len)
{
    size_t f = 0;
    while (f + 1 < ds->cifar_files && i >= ds->cifar_first[f + 1])
        f++;
    size_t r = i - ds->cifar_first[f];
    uint8_t *rec = jpeg_dec_file_buffer(dec, CIFAR_REC);
    uint8_t *pix = jpeg_dec_pixel_buffer(dec, CIFAR_SIDE * CIFAR_SIDE * 3);
    if (!rec || !pix) {
        err_set(err, err_len, "%s: out of memory", dataset_path(ds, i));
        return -1;
    }
    ssize_t got = pread(ds->cifar_fd[f], rec, CIFAR_REC, (off_t)(r * CIFAR_REC));
    if (got != (ssize_t)CIFAR_REC) {
        err_set(err, err_len, "%s: read failed: %s", dataset_path(ds, i),
                got < 0 ? strerror(errno) : "short read");
        return -1;
    }
    const uint8_t *pl = rec + 1; /* planes R, G, B of 1024 bytes each */
    for (size_t p = 0; p < CIFAR_SIDE * CIFAR_SIDE; p++) {
        pix[3 * p] = pl[p];
        pix[3 * p + 1] = pl[1024 + p];
        pix[3 * p + 2] = pl[2048 + p];
    }
    img->pix = pix;
    img->w = img->h = img->src_w = img->src_h = CIFAR_SIDE;
    img->scale_denom = 1;
    return 0;
}

int dataset_decode(const struct dataset *ds, size_t i, struct jpeg_dec *dec, uint32_t min_side,
                   struct jpeg_image *img, char *err, size_t err_len)
{
    NPID_CHECK(i < ds->n);
    if (ds->format == DATASET_CIFAR_BIN)
        return load_cifar(ds, i, dec, img, err, err_len);
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
    if (image_decode(dec, buf, len, min_side, img, why, sizeof why)) {
        err_set(err, err_len, "%s: %s", rel, why);
        return -1;
    }
    return 0;
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

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

size_t dataset_probe_sides(const struct dataset *ds, size_t max_sample, uint32_t *short_side,
                           uint32_t *long_side, size_t *bad)
{
    *short_side = *long_side = 0;
    *bad = 0;
    size_t n = dataset_count(ds), k = n < max_sample ? n : max_sample;
    if (k == 0)
        return 0;
    if (ds->format == DATASET_CIFAR_BIN) {
        *short_side = *long_side = 32;
        return k;
    }
    /* a JPEG's frame header follows its APPn segments, at most 64 KiB each in practice; PNG's
     * IHDR and WebP's first chunk header sit in the first 30 bytes */
    enum { HEAD = 512 * 1024 };
    uint8_t *head = malloc(HEAD);
    uint32_t *s = malloc(2 * k * sizeof *s);
    if (!head || !s) {
        free(head);
        free(s);
        *bad = k;
        return 0;
    }
    uint32_t *l = s + k;
    size_t got = 0;
    for (size_t j = 0; j < k; j++) {
        size_t i = (size_t)((double)j * n / k);
        int fd = openat(ds->root_fd, dataset_path(ds, i), O_RDONLY | O_CLOEXEC | O_NOCTTY);
        ssize_t len = fd >= 0 ? read(fd, head, HEAD) : -1;
        if (fd >= 0)
            close(fd);
        uint32_t w, h;
        int comps;
        char err[160];
        if (len <= 0 || image_probe(head, (size_t)len, &w, &h, &comps, err, sizeof err) != 0) {
            (*bad)++;
            continue;
        }
        s[got] = w < h ? w : h;
        l[got] = w < h ? h : w;
        got++;
    }
    if (got > 0) {
        qsort(s, got, sizeof *s, cmp_u32);
        qsort(l, got, sizeof *l, cmp_u32);
        *short_side = s[got / 2];
        *long_side = l[got / 2];
    }
    free(head);
    free(s);
    return got;
}
