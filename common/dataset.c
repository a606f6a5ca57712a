/* Dataset index (ImageFolder and flat trees, file lists, CIFAR-10, CIFAR-100 and STL-10
 * binaries): see dataset.h and docs/formats.md.
 *
 * Paths live in one string pool (offsets per image); binary files stay open and records are
 * read with pread, so a struct dataset can be shared by threads. Indexing never prints: what
 * it skips goes to the caller's on_skip, how it read the data to dataset_describe. */
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

#include "common/dataset_impl.h"
#include "common/imghdr.h"
#include "common/log.h"
#include "common/sha256.h"

#define CIFAR10_REC 3073u
#define CIFAR100_REC 3074u
#define STL10_SIDE 96u
#define STL10_REC (STL10_SIDE * STL10_SIDE * 3u)
#define WALK_MAX_DEPTH 16
#define MAX_SPLITS 8
#define SPLIT_NAME_MAX 64

static const char *const cifar10_names[10] = { "airplane", "automobile", "bird", "cat", "deer",
                                               "dog", "frog", "horse", "ship", "truck" };
static const char *const stl10_names[10] = { "airplane", "bird", "car", "cat", "deer",
                                             "dog", "horse", "monkey", "ship", "truck" };
static const char *const cifar100_coarse[20] = {
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes",
    "large_omnivores_and_herbivores", "medium_mammals", "non-insect_invertebrates", "people",
    "reptiles", "small_mammals", "trees", "vehicles_1", "vehicles_2"
};
static const char *const cifar100_fine[100] = {
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
    "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
    "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
    "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
    "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
    "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
    "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
    "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm"
};
_Static_assert(sizeof cifar100_fine / sizeof cifar100_fine[0] == 100, "100 fine classes");

/* ---- options -------------------------------------------------------------------------- */

enum layout { L_AUTO, L_IMAGEFOLDER, L_FLAT, L_CIFAR10, L_CIFAR100, L_STL10, L_LIST };
static const char *const layout_names[] = { "auto", "imagefolder", "flat", "cifar10",
                                            "cifar100", "stl10", "list", NULL };

struct popts {
    enum layout layout;
    int coarse;
    char names[MAX_SPLITS][SPLIT_NAME_MAX];
    size_t n_names;
    int splits_given; /* --train-splits other than "train" */
};

static int opts_parse(const struct dataset_opts *o, struct popts *p, char *err, size_t err_len)
{
    memset(p, 0, sizeof *p);
    const char *lay = o && o->layout && *o->layout ? o->layout : "auto";
    size_t li = 0;
    while (layout_names[li] && strcmp(layout_names[li], lay) != 0)
        li++;
    if (!layout_names[li]) {
        err_set(err, err_len, "--layout %s: expected auto, imagefolder, flat, cifar10, cifar100, "
                "stl10 or list", lay);
        return -1;
    }
    p->layout = (enum layout)li;
    const char *lab = o && o->labels && *o->labels ? o->labels : "fine";
    if (strcmp(lab, "fine") != 0 && strcmp(lab, "coarse") != 0) {
        err_set(err, err_len, "--labels %s: expected fine or coarse (CIFAR-100)", lab);
        return -1;
    }
    p->coarse = strcmp(lab, "coarse") == 0;
    const char *sp = o && o->train_splits && *o->train_splits ? o->train_splits : "train";
    for (const char *s = sp;;) {
        size_t len = strcspn(s, ",");
        if (len == 0 || len >= SPLIT_NAME_MAX || memchr(s, '/', len) || s[0] == '.') {
            err_set(err, err_len, "--train-splits %s: expected directory names of the dataset "
                    "root separated by commas, e.g. train,unlabeled", sp);
            return -1;
        }
        if (p->n_names == MAX_SPLITS) {
            err_set(err, err_len, "--train-splits %s: at most %d splits", sp, MAX_SPLITS);
            return -1;
        }
        memcpy(p->names[p->n_names], s, len);
        p->names[p->n_names][len] = 0;
        for (size_t k = 0; k < p->n_names; k++)
            if (strcmp(p->names[k], p->names[p->n_names]) == 0) {
                err_set(err, err_len, "--train-splits %s: %s given twice", sp, p->names[k]);
                return -1;
            }
        p->n_names++;
        if (!s[len])
            break;
        s += len + 1;
    }
    p->splits_given = !(p->n_names == 1 && strcmp(p->names[0], "train") == 0);
    if (o && o->list && *o->list && p->splits_given) {
        err_set(err, err_len, "--list names the train images itself: drop --train-splits %s", sp);
        return -1;
    }
    if (o && o->list && *o->list && p->layout != L_AUTO && p->layout != L_LIST) {
        err_set(err, err_len, "--list goes with --layout list (or auto), not %s", lay);
        return -1;
    }
    return 0;
}

int dataset_opts_check(const struct dataset_opts *o, char *err, size_t err_len)
{
    struct popts p;
    return opts_parse(o, &p, err, err_len);
}

static int is_unlabelled_name(const char *name)
{
    return strcmp(name, "unlabeled") == 0 || strcmp(name, "unlabelled") == 0;
}

/* ---- small helpers ---------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* buf = a "/" b (just b when a is empty); -1 when it does not fit. */
static int pjoin(char *buf, size_t len, const char *a, const char *b)
{
    int m = a[0] ? snprintf(buf, len, "%s/%s", a, b) : snprintf(buf, len, "%s", b);
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

static int is_dir_in(const char *root, const char *name)
{
    char p[4096];
    return pjoin(p, sizeof p, root, name) == 0 && is_dir(p);
}

static int is_file_in(const char *root, const char *name)
{
    char p[4096];
    return pjoin(p, sizeof p, root, name) == 0 && is_file(p);
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

static void free_names(char **names, size_t n)
{
    if (!names)
        return;
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

__attribute__((format(printf, 2, 3))) static void desc_add(struct dataset *ds, const char *fmt,
                                                           ...)
{
    size_t n = strlen(ds->describe);
    if (n + 1 >= sizeof ds->describe)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ds->describe + n, sizeof ds->describe - n, fmt, ap);
    va_end(ap);
}

/* Counts a skipped file or directory and tells the caller why. */
__attribute__((format(printf, 3, 4))) static void skip(struct dataset *ds, const char *path,
                                                       const char *fmt, ...)
{
    ds->skipped++;
    if (!ds->opts || !ds->opts->on_skip)
        return;
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    ds->opts->on_skip(ds->opts->skip_ctx, path, why);
}

enum { ENT_DIR, ENT_FILE, ENT_OTHER, ENT_BAD };

/* stat (following links) with the reason when it fails: a dangling link, a symlink loop, a
 * permission problem. */
static int entry_kind(int dirfd, const char *path, struct stat *st, char *why, size_t why_len)
{
    if (fstatat(dirfd, path, st, 0) == 0)
        return S_ISDIR(st->st_mode) ? ENT_DIR : S_ISREG(st->st_mode) ? ENT_FILE : ENT_OTHER;
    int e = errno;
    struct stat lst;
    if (e == ELOOP)
        snprintf(why, why_len, "symlink loop");
    else if ((e == ENOENT || e == ENOTDIR) && fstatat(dirfd, path, &lst, AT_SYMLINK_NOFOLLOW) == 0 &&
             S_ISLNK(lst.st_mode))
        snprintf(why, why_len, "dangling link");
    else if (e == EACCES)
        snprintf(why, why_len, "unreadable: %s", strerror(e));
    else
        snprintf(why, why_len, "%s", strerror(e));
    return ENT_BAD;
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

/* ---- directory walks -------------------------------------------------------------------- */

struct file_entry {
    char *rel;        /* path relative to the root */
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

/* The directories open on the way down, to recognise a link back to one of them. */
struct walk {
    struct dataset *ds;
    struct file_list *fl;
    int nested;                            /* count sub-directories (inside class folders) */
    size_t depth;                          /* entries on the stack */
    dev_t dev[WALK_MAX_DEPTH + 3];
    ino_t ino[WALK_MAX_DEPTH + 3];
    const char *rel[WALK_MAX_DEPTH + 3];
};

static void walk_push(struct walk *w, const struct stat *st, const char *rel)
{
    NPID_CHECK(w->depth < WALK_MAX_DEPTH + 3);
    w->dev[w->depth] = st->st_dev;
    w->ino[w->depth] = st->st_ino;
    w->rel[w->depth] = rel;
    w->depth++;
}

/* Collects the image files under the directory rel (relative to the root; "" is the root),
 * which is on the stack, level levels below the class (or flat split) directory. Sub-trees
 * that cannot be walked (loops, unreadable, too deep) are skipped and reported. Returns 0,
 * or -1 with err set (out of memory; the top directory unreadable). */
static int walk(struct walk *w, const char *rel, int level, char *err, size_t err_len)
{
    struct dataset *ds = w->ds;
    int fd = openat(ds->root_fd, rel[0] ? rel : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        if (level == 0) {
            err_set(err, err_len, "cannot read directory %s/%s: %s", ds->root, rel,
                    strerror(errno));
            return -1;
        }
        skip(ds, rel, "unreadable directory: %s", strerror(errno));
        return 0;
    }
    int rc = -1;
    struct dirent *e;
    char sub[4096], why[256];
    while ((e = readdir(d)) != NULL) {
        const char *nm = e->d_name;
        if (strcmp(nm, ".") == 0 || strcmp(nm, "..") == 0)
            continue;
        if (pjoin(sub, sizeof sub, rel, nm)) {
            skip(ds, nm, "path longer than %zu bytes under %s", sizeof sub, rel);
            continue;
        }
        if (nm[0] == '.') {
            skip(ds, sub, "hidden (name starts with '.')");
            continue;
        }
        struct stat st;
        int k = entry_kind(dirfd(d), nm, &st, why, sizeof why);
        if (k == ENT_BAD) {
            skip(ds, sub, "%s", why);
        } else if (k == ENT_DIR) {
            size_t a = 0;
            while (a < w->depth && !(w->dev[a] == st.st_dev && w->ino[a] == st.st_ino))
                a++;
            if (a < w->depth) {
                skip(ds, sub, "directory loop: leads back to %s, skipped",
                     w->rel[a][0] ? w->rel[a] : "the dataset root");
                continue;
            }
            if (level >= WALK_MAX_DEPTH) {
                skip(ds, sub, "directory nested deeper than %d levels, skipped", WALK_MAX_DEPTH);
                continue;
            }
            if (w->nested)
                ds->nested_dirs++;
            char *keep = strdup(sub);
            if (!keep) {
                err_set(err, err_len, "out of memory indexing %s", rel);
                goto out;
            }
            walk_push(w, &st, keep);
            int r = walk(w, keep, level + 1, err, err_len);
            w->depth--;
            free(keep);
            if (r)
                goto out;
        } else if (k == ENT_FILE && has_image_ext(nm)) {
            if (faccessat(dirfd(d), nm, R_OK, AT_EACCESS) != 0) {
                skip(ds, sub, "unreadable: %s", strerror(errno));
                continue;
            }
            if (file_list_add(w->fl, sub, (uint64_t)st.st_size)) {
                err_set(err, err_len, "out of memory indexing %s", rel);
                goto out;
            }
        } else if (k == ENT_FILE) {
            skip(ds, sub, "not an image name (only .jpg, .jpeg, .png and .webp are indexed)");
        } else {
            skip(ds, sub, "not a regular file");
        }
    }
    rc = 0;
out:
    closedir(d);
    return rc;
}

/* Walks the directory rel of the root (its (dev, ino) pushed first, and the parent split
 * directory's when given), sorted by path. */
static int walk_sorted(struct dataset *ds, const char *parent, const char *rel, int nested,
                       struct file_list *fl, char *err, size_t err_len)
{
    struct walk w = { .ds = ds, .fl = fl, .nested = nested };
    struct stat st;
    if (parent && fstatat(ds->root_fd, parent[0] ? parent : ".", &st, 0) == 0)
        walk_push(&w, &st, parent);
    if (fstatat(ds->root_fd, rel[0] ? rel : ".", &st, 0) != 0) {
        err_set(err, err_len, "cannot read directory %s/%s: %s", ds->root, rel, strerror(errno));
        return -1;
    }
    walk_push(&w, &st, rel);
    if (walk(&w, rel, 0, err, err_len))
        return -1;
    if (fl->n > 1)
        qsort(fl->e, fl->n, sizeof *fl->e, cmp_entry);
    return 0;
}

/* Sorted names of the (non-hidden) sub-directories of the directory rel of root. With ds,
 * everything else there is skipped and reported ("not in a class folder", ...). */
static int list_classes(struct dataset *ds, const char *root, const char *rel, char ***out,
                        size_t *n_out, char *err, size_t err_len)
{
    char dir[4096];
    if (pjoin(dir, sizeof dir, root, rel)) {
        err_set(err, err_len, "path too long: %s/%s", root, rel);
        return -1;
    }
    DIR *d = opendir(dir);
    if (!d) {
        err_set(err, err_len, "cannot read directory %s: %s", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    char sub[4096], why[256];
    while ((e = readdir(d)) != NULL) {
        const char *nm = e->d_name;
        if (strcmp(nm, ".") == 0 || strcmp(nm, "..") == 0)
            continue;
        int long_path = pjoin(sub, sizeof sub, rel, nm) != 0;
        if (nm[0] == '.') {
            if (ds)
                skip(ds, sub, "hidden (name starts with '.')");
            continue;
        }
        struct stat st;
        int k = long_path ? ENT_BAD : entry_kind(dirfd(d), nm, &st, why, sizeof why);
        if (k != ENT_DIR) {
            if (ds && k == ENT_BAD)
                skip(ds, sub, "%s", long_path ? "path too long" : why);
            else if (ds)
                skip(ds, sub, "not in a class folder (%s/ has class folders)", rel);
            continue;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            char **p = realloc(names, cap * sizeof *p);
            if (!p)
                goto oom;
            names = p;
        }
        if (!(names[n] = strdup(nm)))
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
    free_names(names, n);
    err_set(err, err_len, "out of memory listing %s", dir);
    return -1;
}

/* Merges the sorted list b (n_b) into the sorted, distinct list *a (*n_a). */
static int names_union(char ***a, size_t *n_a, char **b, size_t n_b)
{
    for (size_t i = 0; i < n_b; i++) {
        if (*n_a && bsearch(&b[i], *a, *n_a, sizeof(char *), cmp_str))
            continue;
        char **p = realloc(*a, (*n_a + 1) * sizeof *p);
        if (!p)
            return -1;
        *a = p;
        if (!(p[*n_a] = strdup(b[i])))
            return -1;
        (*n_a)++;
        qsort(p, *n_a, sizeof *p, cmp_str);
    }
    return 0;
}

/* ---- file lists --------------------------------------------------------------------------- */

struct list_line {
    char *path, *label; /* label NULL: an unlabelled line */
    uint64_t size;
    size_t line;
};

struct list_file {
    struct list_line *l;
    size_t n, cap;
};

static void list_file_free(struct list_file *lf)
{
    for (size_t i = 0; i < lf->n; i++) {
        free(lf->l[i].path);
        free(lf->l[i].label);
    }
    free(lf->l);
    memset(lf, 0, sizeof *lf);
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* Reads the list file path. With dirfd >= 0 every path is checked (relative to dirfd, a
 * regular file, listed once) and its size recorded. Returns 0, or -1 with a reason naming the
 * file and line. */
static int list_read(const char *path, int dirfd, struct list_file *lf, char *err, size_t err_len)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        err_set(err, err_len, "file list %s: %s", path, strerror(errno));
        return -1;
    }
    const char *bn = base_name(path);
    char *line = NULL;
    size_t lcap = 0, no = 0;
    ssize_t len;
    int rc = -1;
    char why[256];
    while ((len = getline(&line, &lcap, f)) >= 0) {
        no++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = 0;
        if (line[0] == '#' || strspn(line, " \t") == (size_t)len)
            continue;
        if (memchr(line, 0, (size_t)len)) {
            err_set(err, err_len, "%s line %zu: a NUL byte in the line", bn, no);
            goto out;
        }
        char *tab = strchr(line, '\t'), *label = NULL;
        if (tab) {
            *tab = 0;
            label = tab + 1;
            if (strchr(label, '\t')) {
                err_set(err, err_len, "%s line %zu: more than two fields; expected PATH or "
                        "PATH<TAB>LABEL", bn, no);
                goto out;
            }
            if (!*label) {
                err_set(err, err_len, "%s line %zu: empty label after the TAB", bn, no);
                goto out;
            }
        }
        if (!line[0]) {
            err_set(err, err_len, "%s line %zu: empty path", bn, no);
            goto out;
        }
        if (strlen(line) >= 4096) {
            err_set(err, err_len, "%s line %zu: path longer than 4095 bytes", bn, no);
            goto out;
        }
        uint64_t size = 0;
        if (dirfd >= 0) {
            struct stat st;
            int k = entry_kind(dirfd, line, &st, why, sizeof why);
            if (k != ENT_FILE) {
                err_set(err, err_len, "%s line %zu: %.300s: %s%s", bn, no, line,
                        k == ENT_BAD ? why : k == ENT_DIR ? "a directory" : "not a regular file",
                        !label && strchr(line, ' ') ? " (PATH and LABEL are separated by a TAB)"
                                                    : "");
                goto out;
            }
            size = (uint64_t)st.st_size;
        }
        if (lf->n == lf->cap) {
            size_t c = lf->cap ? lf->cap * 2 : 1024;
            struct list_line *p = realloc(lf->l, c * sizeof *p);
            if (!p)
                goto oom;
            lf->l = p;
            lf->cap = c;
        }
        struct list_line *ll = &lf->l[lf->n];
        ll->path = strdup(line);
        ll->label = label ? strdup(label) : NULL;
        ll->size = size;
        ll->line = no;
        lf->n++;
        if (!ll->path || (label && !ll->label))
            goto oom;
    }
    if (ferror(f)) {
        err_set(err, err_len, "file list %s: read error: %s", path, strerror(errno));
        goto out;
    }
    rc = 0;
    goto out;
oom:
    err_set(err, err_len, "file list %s: out of memory", path);
out:
    free(line);
    fclose(f);
    return rc;
}

static int cmp_line_path(const void *a, const void *b)
{
    return strcmp((*(struct list_line *const *)a)->path, (*(struct list_line *const *)b)->path);
}

static int is_number(const char *s)
{
    if (!*s)
        return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return 0;
    return 1;
}

/* Decimal labels by value (then spelling), so "2" < "10". */
static int cmp_num(const void *pa, const void *pb)
{
    const char *a0 = *(char *const *)pa, *b0 = *(char *const *)pb, *a = a0, *b = b0;
    while (*a == '0' && a[1])
        a++;
    while (*b == '0' && b[1])
        b++;
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb)
        return la < lb ? -1 : 1;
    int c = strcmp(a, b);
    return c ? c : strcmp(a0, b0);
}

/* The distinct labels of lf, sorted (by value when all are decimal numbers, else bytewise). */
static int list_classes_of(const struct list_file *lf, char ***out, size_t *n_out, int *numeric)
{
    char **names = NULL;
    size_t n = 0;
    *numeric = 1;
    for (size_t i = 0; i < lf->n; i++)
        if (lf->l[i].label && !is_number(lf->l[i].label))
            *numeric = 0;
    /* all labels, sorted, then made distinct */
    for (size_t i = 0; i < lf->n; i++)
        if (lf->l[i].label)
            n++;
    if (n == 0) {
        *out = NULL;
        *n_out = 0;
        return 0;
    }
    names = malloc(n * sizeof *names);
    if (!names)
        return -1;
    n = 0;
    for (size_t i = 0; i < lf->n; i++)
        if (lf->l[i].label)
            names[n++] = lf->l[i].label;
    int (*cmp)(const void *, const void *) = *numeric ? cmp_num : cmp_str;
    qsort(names, n, sizeof *names, cmp);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (m == 0 || strcmp(names[m - 1], names[i]) != 0)
            names[m++] = names[i];
    for (size_t i = 0; i < m; i++)
        if (!(names[i] = strdup(names[i]))) {
            free_names(names, i);
            return -1;
        }
    *out = names;
    *n_out = m;
    return 0;
}

static size_t class_index(char **classes, size_t n, int numeric, const char *name)
{
    int (*cmp)(const void *, const void *) = numeric ? cmp_num : cmp_str;
    char **hit = n ? bsearch(&name, classes, n, sizeof(char *), cmp) : NULL;
    return hit ? (size_t)(hit - classes) : n;
}

/* ---- the train split's class list (for a test split) -------------------------------------- */

/* The class list of the train split as o defines it, for the labels of a test split: the
 * train list's labels, or the class folders of the labelled train directories. Empty when
 * the train split has none (flat). *numeric: the order is by value (lists of numbers). */
static int train_class_list(const char *root, const struct dataset_opts *o, const struct popts *p,
                            char ***out, size_t *n_out, int *numeric, char *err, size_t err_len)
{
    *out = NULL;
    *n_out = 0;
    *numeric = 0;
    const char *list = o && o->list && *o->list ? o->list : root && is_file(root) ? root : NULL;
    if (list) {
        struct list_file lf = { 0 };
        int rc = list_read(list, -1, &lf, err, err_len);
        if (rc == 0 && list_classes_of(&lf, out, n_out, numeric) != 0) {
            err_set(err, err_len, "out of memory");
            rc = -1;
        }
        list_file_free(&lf);
        return rc;
    }
    if (!root || p->layout == L_FLAT)
        return 0;
    for (size_t s = 0; s < p->n_names; s++) {
        if (is_unlabelled_name(p->names[s]) || !is_dir_in(root, p->names[s]))
            continue;
        char **dirs = NULL;
        size_t nd = 0;
        if (list_classes(NULL, root, p->names[s], &dirs, &nd, err, err_len))
            return -1;
        int rc = names_union(out, n_out, dirs, nd);
        free_names(dirs, nd);
        if (rc) {
            err_set(err, err_len, "out of memory");
            return -1;
        }
    }
    return 0;
}

/* ---- ImageFolder and flat splits ---------------------------------------------------------- */

static int add_files(struct dataset *ds, struct file_list *fl, uint32_t label, char *err,
                     size_t err_len)
{
    for (size_t i = 0; i < fl->n; i++)
        if (item_add(ds, fl->e[i].rel, label, fl->e[i].size)) {
            err_set(err, err_len, "out of memory indexing %s", ds->root);
            return -1;
        }
    return 0;
}

/* Indexes ImageFolder split dir (relative to the root) against ds->classes. */
static int index_imagefolder(struct dataset *ds, const char *dir, char *err, size_t err_len)
{
    char **own = NULL;
    size_t n_own = 0;
    int rc = -1;
    size_t before = ds->n, skipped0 = ds->skipped, nested0 = ds->nested_dirs;
    if (list_classes(ds, ds->root, dir, &own, &n_own, err, err_len))
        return -1;
    for (size_t c = 0; c < n_own; c++) {
        size_t label = class_index(ds->classes, ds->n_classes, ds->numeric, own[c]);
        if (label == ds->n_classes) {
            err_set(err, err_len, "class '%s' of %s/%s is not a class of the train split", own[c],
                    ds->root, dir);
            goto out;
        }
        char rel[4096];
        if (pjoin(rel, sizeof rel, dir, own[c])) {
            err_set(err, err_len, "path too long under %s/%s", ds->root, dir);
            goto out;
        }
        struct file_list fl = { 0 };
        int r = walk_sorted(ds, dir, rel, 1, &fl, err, err_len);
        if (r == 0)
            r = add_files(ds, &fl, (uint32_t)label, err, err_len);
        file_list_free(&fl);
        if (r)
            goto out;
    }
    if (ds->n == before) {
        err_set(err, err_len,
                "no images (.jpg/.jpeg/.png/.webp) under %s/%s (%zu other files skipped)",
                ds->root, dir, ds->skipped - skipped0);
        goto out;
    }
    desc_add(ds, "%sImageFolder %s/: %zu images in %zu classes", ds->describe[0] ? " + " : "", dir,
             ds->n - before, n_own);
    if (ds->nested_dirs > nested0)
        desc_add(ds, " (%zu sub-folders inside class folders: their images count for the "
                 "enclosing class)", ds->nested_dirs - nested0);
    rc = 0;
out:
    free_names(own, n_own);
    return rc;
}

/* Indexes every image under dir (relative to the root, "" the root itself), unlabelled. */
static int index_flat(struct dataset *ds, const char *dir, const char *why, char *err,
                      size_t err_len)
{
    size_t skipped0 = ds->skipped;
    struct file_list fl = { 0 };
    int rc = walk_sorted(ds, NULL, dir, 0, &fl, err, err_len);
    if (rc == 0 && fl.n == 0) {
        err_set(err, err_len,
                "no images (.jpg/.jpeg/.png/.webp) under %s%s%s (%zu other files skipped)",
                ds->root, dir[0] ? "/" : "", dir, ds->skipped - skipped0);
        rc = -1;
    }
    if (rc == 0)
        rc = add_files(ds, &fl, DATASET_NO_LABEL, err, err_len);
    if (rc == 0)
        desc_add(ds, "%sflat %s%s: %zu images, unlabelled (%s)", ds->describe[0] ? " + " : "",
                 dir[0] ? dir : "root", dir[0] ? "/" : "", fl.n, why);
    file_list_free(&fl);
    return rc;
}

/* The directory splits names[0..n) of the root (train: --train-splits; test: the one test
 * directory): each ImageFolder or flat, the labelled ones indexed first. */
static int open_dir_splits(struct dataset *ds, const struct dataset_opts *o, const struct popts *p,
                           const char (*names)[SPLIT_NAME_MAX], size_t n, char *err,
                           size_t err_len)
{
    int flat[MAX_SPLITS];
    const char *why[MAX_SPLITS];
    char **own[MAX_SPLITS] = { 0 };
    size_t n_own[MAX_SPLITS] = { 0 };
    int is_train = strcmp(ds->split, "train") == 0, rc = -1;
    for (size_t s = 0; s < n; s++) {
        if (!is_dir_in(ds->root, names[s])) {
            err_set(err, err_len, "no %s/ directory under %s (--train-splits)", names[s],
                    ds->root);
            goto out;
        }
        flat[s] = 1;
        if (p->layout == L_FLAT) {
            why[s] = "--layout flat";
        } else if (is_unlabelled_name(names[s])) {
            why[s] = "an unlabeled split";
        } else {
            if (list_classes(NULL, ds->root, names[s], &own[s], &n_own[s], err, err_len))
                goto out;
            flat[s] = n_own[s] == 0;
            why[s] = "no class folders";
            if (flat[s] && p->layout == L_IMAGEFOLDER) {
                err_set(err, err_len, "no class directories in %s/%s (--layout imagefolder)",
                        ds->root, names[s]);
                goto out;
            }
        }
    }
    /* the class list: the union of the labelled train directories' class folders; a test
       split takes the train split's (its own when the train split has none) */
    if (is_train) {
        for (size_t s = 0; s < n; s++)
            if (!flat[s] && names_union(&ds->classes, &ds->n_classes, own[s], n_own[s])) {
                err_set(err, err_len, "out of memory");
                goto out;
            }
    } else {
        if (train_class_list(ds->root, o, p, &ds->classes, &ds->n_classes, &ds->numeric, err,
                             err_len))
            goto out;
        if (ds->n_classes == 0 && !flat[0] &&
            names_union(&ds->classes, &ds->n_classes, own[0], n_own[0])) {
            err_set(err, err_len, "out of memory");
            goto out;
        }
    }
    for (int pass = 0; pass < 2; pass++)
        for (size_t s = 0; s < n; s++) {
            if (flat[s] != pass)
                continue;
            if (pass == 0 ? index_imagefolder(ds, names[s], err, err_len)
                          : index_flat(ds, names[s], why[s], err, err_len))
                goto out;
            if (pass == 0)
                ds->labelled = ds->n;
        }
    ds->format = flat[0] && ds->labelled == 0 ? DATASET_FLAT : DATASET_IMAGEFOLDER;
    rc = 0;
out:
    for (size_t s = 0; s < n; s++)
        free_names(own[s], n_own[s]);
    return rc;
}

/* ROOT itself holds images (no train/ directory): one flat set of everything under it. */
static int root_has_images(const char *root)
{
    DIR *d = opendir(root);
    if (!d)
        return 0;
    struct dirent *e;
    int found = 0;
    while (!found && (e = readdir(d)) != NULL)
        found = e->d_name[0] != '.' && has_image_ext(e->d_name) && is_file_in(root, e->d_name);
    closedir(d);
    return found;
}

/* ---- file lists as splits ------------------------------------------------------------------ */

static int open_list(struct dataset *ds, const char *list, const char *data_root,
                     const struct dataset_opts *o, const struct popts *p, char *err,
                     size_t err_len)
{
    struct list_file lf = { 0 };
    int rc = -1;
    if (list_read(list, ds->root_fd, &lf, err, err_len))
        goto out;
    const char *bn = base_name(list);
    if (lf.n == 0) {
        err_set(err, err_len, "file list %s has no image lines", list);
        goto out;
    }
    /* a path listed twice would be two bank rows of one image */
    struct list_line **by = malloc(lf.n * sizeof *by);
    if (!by) {
        err_set(err, err_len, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < lf.n; i++)
        by[i] = &lf.l[i];
    int dup = 0;
    if (lf.n > 1) {
        qsort(by, lf.n, sizeof *by, cmp_line_path);
        for (size_t i = 1; i < lf.n && !dup; i++)
            if (strcmp(by[i]->path, by[i - 1]->path) == 0) {
                struct list_line *a = by[i - 1], *b = by[i];
                if (a->line > b->line) {
                    struct list_line *t = a;
                    a = b;
                    b = t;
                }
                err_set(err, err_len, "%s line %zu: %.300s is already listed on line %zu", bn,
                        b->line, b->path, a->line);
                dup = 1;
            }
    }
    free(by);
    if (dup)
        goto out;
    if (strcmp(ds->split, "test") == 0 &&
        train_class_list(data_root, o, p, &ds->classes, &ds->n_classes, &ds->numeric, err,
                         err_len))
        goto out;
    if (ds->n_classes == 0 && list_classes_of(&lf, &ds->classes, &ds->n_classes, &ds->numeric)) {
        err_set(err, err_len, "out of memory");
        goto out;
    }
    size_t labelled = 0;
    for (size_t i = 0; i < lf.n; i++) {
        if (!lf.l[i].label)
            continue;
        size_t c = class_index(ds->classes, ds->n_classes, ds->numeric, lf.l[i].label);
        if (c == ds->n_classes) {
            err_set(err, err_len, "%s line %zu: label '%.100s' is not a class of the train split",
                    bn, lf.l[i].line, lf.l[i].label);
            goto out;
        }
        if (item_add(ds, lf.l[i].path, (uint32_t)c, lf.l[i].size))
            goto oom;
        labelled++;
    }
    ds->labelled = labelled;
    for (size_t i = 0; i < lf.n; i++)
        if (!lf.l[i].label && item_add(ds, lf.l[i].path, DATASET_NO_LABEL, lf.l[i].size))
            goto oom;
    ds->format = DATASET_LIST;
    desc_add(ds, "list %s: %zu images, %zu labelled in %zu classes, %zu unlabelled", bn, lf.n,
             labelled, ds->n_classes, lf.n - labelled);
    rc = 0;
    goto out;
oom:
    err_set(err, err_len, "out of memory");
out:
    list_file_free(&lf);
    return rc;
}

/* ---- binary formats -------------------------------------------------------------------------- */

/* The directory holding any of the files probe[]: root, or root/sub. */
static const char *bin_dir(const char *root, const char *sub, const char *const *probe,
                           char *buf, size_t len)
{
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 0)
            snprintf(buf, len, "%s", root);
        else if (pjoin(buf, len, root, sub))
            return NULL;
        for (const char *const *f = probe; *f; f++)
            if (is_file_in(buf, *f))
                return buf;
    }
    return NULL;
}

static const char *const cifar10_probe[] = { "data_batch_1.bin", "test_batch.bin", NULL };
static const char *const cifar100_probe[] = { "train.bin", "test.bin", NULL };
static const char *const stl10_probe[] = { "train_X.bin", "test_X.bin", "unlabeled_X.bin", NULL };

/* Class names from dir/file (n non-empty lines) when present, else defaults. */
static int class_names_from(struct dataset *ds, const char *dir, const char *file,
                            const char *const *defaults, size_t n)
{
    char path[4096];
    char **names = calloc(n, sizeof *names);
    ds->classes = calloc(n, sizeof(char *));
    if (!names || !ds->classes) {
        free(names);
        return -1;
    }
    ds->n_classes = n;
    size_t got = 0;
    FILE *f = pjoin(path, sizeof path, dir, file) == 0 ? fopen(path, "r") : NULL;
    if (f) {
        char line[256];
        while (got < n && fgets(line, sizeof line, f)) {
            line[strcspn(line, "\r\n")] = 0;
            if (line[0] == 0)
                continue;
            names[got++] = strdup(line);
        }
        fclose(f);
    }
    int rc = 0;
    for (size_t c = 0; c < n; c++) {
        ds->classes[c] = (got == n && names[c]) ? names[c] : strdup(defaults[c]);
        if (got == n && names[c])
            names[c] = NULL;
        if (!ds->classes[c])
            rc = -1;
    }
    for (size_t c = 0; c < n; c++)
        free(names[c]);
    free(names);
    return rc;
}

/* Opens dir/name as a file of whole records of rec bytes and registers it; *recs receives the
 * record count. */
static int bin_add(struct dataset *ds, const char *fmt_name, const char *dir, const char *name,
                   uint32_t rec, uint32_t pix_off, uint32_t side, int col_major, size_t *recs,
                   char *err, size_t err_len)
{
    char path[4096];
    NPID_CHECK(ds->n_bin < BIN_MAX_FILES);
    if (pjoin(path, sizeof path, dir, name)) {
        err_set(err, err_len, "path too long: %s/%s", dir, name);
        return -1;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        err_set(err, err_len, "%s binary file %s: %s", fmt_name, path, strerror(errno));
        return -1;
    }
    struct bin_file *b = &ds->bin[ds->n_bin++];
    *b = (struct bin_file){ fd, ds->n, rec, pix_off, side, col_major };
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size <= 0 || st.st_size % rec != 0) {
        err_set(err, err_len,
                "%s binary file %s: size %lld is not a positive multiple of %u (truncated?)",
                fmt_name, path, (long long)st.st_size, rec);
        return -1;
    }
    *recs = (size_t)st.st_size / rec;
    return 0;
}

/* The first nb bytes of each of recs records of b, into out (recs x nb). */
static int bin_label_bytes(const struct bin_file *b, size_t recs, size_t nb, uint8_t *out)
{
    enum { CHUNK = 1000 };
    uint8_t *chunk = malloc((size_t)b->rec * CHUNK);
    if (!chunk)
        return -1;
    for (size_t r0 = 0; r0 < recs; r0 += CHUNK) {
        size_t cnt = recs - r0 < CHUNK ? recs - r0 : CHUNK, want = cnt * b->rec;
        if (pread(b->fd, chunk, want, (off_t)(r0 * b->rec)) != (ssize_t)want) {
            free(chunk);
            return -1;
        }
        for (size_t r = 0; r < cnt; r++)
            memcpy(out + (r0 + r) * nb, chunk + r * b->rec, nb);
    }
    free(chunk);
    return 0;
}

static int bin_items(struct dataset *ds, const char *name, size_t recs, uint32_t rec,
                     const uint8_t *labels, uint32_t label_base, char *err, size_t err_len)
{
    char rel[256];
    for (size_t r = 0; r < recs; r++) {
        snprintf(rel, sizeof rel, "%s#%zu", name, r);
        if (item_add(ds, rel, labels ? labels[r] - label_base : DATASET_NO_LABEL, rec)) {
            err_set(err, err_len, "out of memory");
            return -1;
        }
    }
    return 0;
}

static int open_cifar10(struct dataset *ds, const char *dir, char *err, size_t err_len)
{
    const char *train_files[] = { "data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                  "data_batch_4.bin", "data_batch_5.bin" };
    const char *test_files[] = { "test_batch.bin" };
    int train = strcmp(ds->split, "train") == 0;
    const char *const *files = train ? train_files : test_files;
    size_t nf = train ? 5 : 1;
    if (class_names_from(ds, dir, "batches.meta.txt", cifar10_names, 10)) {
        err_set(err, err_len, "out of memory");
        return -1;
    }
    for (size_t f = 0; f < nf; f++) {
        size_t recs;
        if (bin_add(ds, "CIFAR-10", dir, files[f], CIFAR10_REC, 1, 32, 0, &recs, err, err_len))
            return -1;
        uint8_t *lab = malloc(recs);
        if (!lab || bin_label_bytes(&ds->bin[ds->n_bin - 1], recs, 1, lab)) {
            free(lab);
            err_set(err, err_len, "CIFAR-10 binary file %s/%s: short read", dir, files[f]);
            return -1;
        }
        for (size_t r = 0; r < recs; r++)
            if (lab[r] >= 10) {
                err_set(err, err_len, "CIFAR-10 binary file %s/%s: record %zu has label %u", dir,
                        files[f], r, lab[r]);
                free(lab);
                return -1;
            }
        int rc = bin_items(ds, files[f], recs, CIFAR10_REC, lab, 0, err, err_len);
        free(lab);
        if (rc)
            return -1;
    }
    ds->labelled = ds->n;
    ds->format = DATASET_CIFAR_BIN;
    desc_add(ds, "CIFAR-10 binary %s: %zu images in 10 classes", dir, ds->n);
    return 0;
}

static int open_cifar100(struct dataset *ds, const char *dir, int coarse, char *err,
                         size_t err_len)
{
    const char *file = strcmp(ds->split, "train") == 0 ? "train.bin" : "test.bin";
    size_t nc = coarse ? 20 : 100, recs;
    if (class_names_from(ds, dir, coarse ? "coarse_label_names.txt" : "fine_label_names.txt",
                         coarse ? cifar100_coarse : cifar100_fine, nc)) {
        err_set(err, err_len, "out of memory");
        return -1;
    }
    if (bin_add(ds, "CIFAR-100", dir, file, CIFAR100_REC, 2, 32, 0, &recs, err, err_len))
        return -1;
    uint8_t *lab = malloc(recs * 2), *pick = malloc(recs);
    if (!lab || !pick || bin_label_bytes(&ds->bin[0], recs, 2, lab)) {
        free(lab);
        free(pick);
        err_set(err, err_len, "CIFAR-100 binary file %s/%s: short read", dir, file);
        return -1;
    }
    for (size_t r = 0; r < recs; r++) {
        uint8_t c = lab[2 * r], f = lab[2 * r + 1];
        if (c >= 20 || f >= 100) {
            err_set(err, err_len, "CIFAR-100 binary file %s/%s: record %zu has coarse label %u "
                    "and fine label %u (expected < 20 and < 100)", dir, file, r, c, f);
            free(lab);
            free(pick);
            return -1;
        }
        pick[r] = coarse ? c : f;
    }
    free(lab);
    int rc = bin_items(ds, file, recs, CIFAR100_REC, pick, 0, err, err_len);
    free(pick);
    if (rc)
        return -1;
    ds->labelled = ds->n;
    ds->format = DATASET_CIFAR100_BIN;
    desc_add(ds, "CIFAR-100 binary %s: %zu images, %s labels (%zu classes)", dir, ds->n,
             coarse ? "coarse" : "fine", nc);
    return 0;
}

/* STL-10: X files hold records of 3 planes (R, G, B) of 96x96 bytes, each plane column by
 * column; y files one label byte 1..10 per record of the X file. */
static int stl10_part(struct dataset *ds, const char *dir, const char *part, int labelled,
                      char *err, size_t err_len)
{
    char xname[64], yname[64];
    snprintf(xname, sizeof xname, "%s_X.bin", part);
    snprintf(yname, sizeof yname, "%s_y.bin", part);
    size_t recs;
    if (bin_add(ds, "STL-10", dir, xname, STL10_REC, 0, STL10_SIDE, 1, &recs, err, err_len))
        return -1;
    uint8_t *lab = NULL;
    if (labelled) {
        char path[4096];
        void *buf = NULL;
        size_t len = 0;
        if (pjoin(path, sizeof path, dir, yname)) {
            err_set(err, err_len, "path too long: %s", dir);
            return -1;
        }
        FILE *f = fopen(path, "rb");
        if (!f) {
            err_set(err, err_len, "STL-10 label file %s: %s", path, strerror(errno));
            return -1;
        }
        buf = malloc(recs + 1);
        if (buf)
            len = fread(buf, 1, recs + 1, f);
        fclose(f);
        if (!buf || len != recs) {
            err_set(err, err_len, "STL-10 label file %s: %s labels for the %zu images of %s",
                    path, !buf ? "out of memory:" : len > recs ? "more" : "fewer", recs, xname);
            free(buf);
            return -1;
        }
        lab = buf;
        for (size_t r = 0; r < recs; r++)
            if (lab[r] < 1 || lab[r] > 10) {
                err_set(err, err_len, "STL-10 label file %s: record %zu has label %u (expected "
                        "1..10)", path, r, lab[r]);
                free(lab);
                return -1;
            }
    }
    int rc = bin_items(ds, xname, recs, STL10_REC, lab, 1, err, err_len);
    free(lab);
    if (rc == 0)
        desc_add(ds, "%s%s_X.bin: %zu images, %s", ds->n_bin > 1 ? " + " : "", part, recs,
                 labelled ? "labelled" : "unlabelled");
    return rc;
}

static int open_stl10(struct dataset *ds, const char *dir, const struct popts *p, char *err,
                      size_t err_len)
{
    if (class_names_from(ds, dir, "class_names.txt", stl10_names, 10)) {
        err_set(err, err_len, "out of memory");
        return -1;
    }
    desc_add(ds, "STL-10 binary %s: ", dir);
    if (strcmp(ds->split, "test") == 0) {
        if (stl10_part(ds, dir, "test", 1, err, err_len))
            return -1;
        ds->labelled = ds->n;
    } else {
        for (size_t s = 0; s < p->n_names; s++)
            if (strcmp(p->names[s], "train") != 0 && !is_unlabelled_name(p->names[s])) {
                err_set(err, err_len, "--train-splits: STL-10 binary has the splits train and "
                        "unlabeled, not %s", p->names[s]);
                return -1;
            }
        for (int pass = 0; pass < 2; pass++)
            for (size_t s = 0; s < p->n_names; s++) {
                int unl = is_unlabelled_name(p->names[s]);
                if (unl != pass)
                    continue;
                /* the describe line reads "STL-10 binary DIR: train_X.bin: ... + ..." */
                if (stl10_part(ds, dir, unl ? "unlabeled" : "train", !unl, err, err_len))
                    return -1;
                if (!unl)
                    ds->labelled = ds->n;
            }
    }
    ds->format = DATASET_STL10_BIN;
    return 0;
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

static int set_root(struct dataset *ds, const char *root, char *err, size_t err_len)
{
    ds->root = strdup(root);
    if (!ds->root) {
        err_set(err, err_len, "out of memory");
        return -1;
    }
    size_t rl = strlen(ds->root);
    while (rl > 1 && ds->root[rl - 1] == '/')
        ds->root[--rl] = 0;
    return 0;
}

static int open_root_fd(struct dataset *ds, char *err, size_t err_len)
{
    ds->root_fd = open(ds->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (ds->root_fd < 0) {
        err_set(err, err_len, "cannot open %s: %s", ds->root, strerror(errno));
        return -1;
    }
    return 0;
}

/* The train or test split of a directory root (not a list). */
static int open_root(struct dataset *ds, const struct dataset_opts *o, const struct popts *p,
                     char *err, size_t err_len)
{
    int is_train = strcmp(ds->split, "train") == 0;
    enum layout L = p->layout;
    int dirs_ok = L == L_AUTO || L == L_IMAGEFOLDER || L == L_FLAT || L == L_LIST;
    char bdir[4096];
    const char *r = ds->root;
    int has_train = is_dir_in(r, "train");
    char test_name[MAX_SPLITS][SPLIT_NAME_MAX] = { "test" };
    if (!is_train && !is_dir_in(r, "test") && is_dir_in(r, "val"))
        snprintf(test_name[0], sizeof test_name[0], "val");
    int has_split_dir = is_train ? is_dir_in(r, p->names[0]) : is_dir_in(r, test_name[0]);
    if (dirs_ok && has_split_dir) {
        if (open_root_fd(ds, err, err_len))
            return -1;
        return is_train ? open_dir_splits(ds, o, p, p->names, p->n_names, err, err_len)
                        : open_dir_splits(ds, o, p, (const char(*)[SPLIT_NAME_MAX])test_name, 1,
                                          err, err_len);
    }
    if ((L == L_AUTO || L == L_CIFAR10) && bin_dir(r, "cifar-10-batches-bin", cifar10_probe, bdir,
                                                   sizeof bdir)) {
        if (is_train && p->splits_given) {
            err_set(err, err_len, "--train-splits: CIFAR-10 binary has one train split");
            return -1;
        }
        return open_cifar10(ds, bdir, err, err_len);
    }
    if ((L == L_AUTO || L == L_CIFAR100) && bin_dir(r, "cifar-100-binary", cifar100_probe, bdir,
                                                    sizeof bdir)) {
        if (is_train && p->splits_given) {
            err_set(err, err_len, "--train-splits: CIFAR-100 binary has one train split");
            return -1;
        }
        return open_cifar100(ds, bdir, p->coarse, err, err_len);
    }
    if ((L == L_AUTO || L == L_STL10) && bin_dir(r, "stl10_binary", stl10_probe, bdir,
                                                 sizeof bdir))
        return open_stl10(ds, bdir, p, err, err_len);
    int any_split = has_train || is_dir_in(r, "test") || is_dir_in(r, "val");
    if (is_train && !p->splits_given && !any_split &&
        ((L == L_AUTO && root_has_images(r)) || L == L_FLAT)) {
        if (open_root_fd(ds, err, err_len))
            return -1;
        if (index_flat(ds, "", L == L_FLAT ? "--layout flat" : "images at its top, no train/",
                       err, err_len))
            return -1;
        ds->format = DATASET_FLAT;
        return 0;
    }
    if (is_train && p->splits_given && dirs_ok) {
        err_set(err, err_len, "no %s/ directory under %s (--train-splits)", p->names[0], r);
    } else if (L == L_CIFAR10 || L == L_CIFAR100 || L == L_STL10) {
        err_set(err, err_len, "--layout %s: no %s files in %s or %s/%s", layout_names[L],
                L == L_CIFAR10 ? "data_batch_N.bin / test_batch.bin"
                : L == L_CIFAR100 ? "train.bin / test.bin" : "train_X.bin / test_X.bin",
                r, r, L == L_CIFAR10 ? "cifar-10-batches-bin" : L == L_CIFAR100
                ? "cifar-100-binary" : "stl10_binary");
    } else if (!is_train && (any_split || (L == L_AUTO && root_has_images(r)) || L == L_FLAT)) {
        err_set(err, err_len, "no test/ or val/ directory under %s", r);
    } else if (L == L_IMAGEFOLDER) {
        err_set(err, err_len, "no train/ directory under %s (--layout imagefolder)", r);
    } else {
        err_set(err, err_len,
                "%s is neither an ImageFolder tree (%s/train/<class>/*.jpg), a folder of images, "
                "nor a CIFAR-10, CIFAR-100 or STL-10 binary directory (images only in "
                "sub-folders? --layout flat reads every image under it)", r, r);
    }
    return -1;
}

struct dataset *dataset_open_opts(const char *root, const char *split,
                                  const struct dataset_opts *o, char *err, size_t err_len)
{
    struct popts p;
    if (opts_parse(o, &p, err, err_len))
        return NULL;
    if (!split) {
        err_set(err, err_len, "no split given");
        return NULL;
    }
    int is_train = strcmp(split, "train") == 0;
    if (!is_train && strcmp(split, "test") != 0 && strcmp(split, "val") != 0) {
        err_set(err, err_len, "unknown split '%s' (train, test or val)", split);
        return NULL;
    }
    if (root && !*root)
        root = NULL;
    const char *list = o && o->list && *o->list ? o->list : NULL;
    const char *test_list = o && o->test_list && *o->test_list ? o->test_list : NULL;
    if (root && is_file(root)) {
        /* --data LIST: the list is the train split */
        if (is_train && !list)
            list = root;
        else if (!is_train && !test_list) {
            err_set(err, err_len, "no test split: %s is a file list (the train split); give "
                    "--test-list FILE", root);
            return NULL;
        }
    }
    const char *my_list = is_train ? list : test_list;
    if (!my_list && p.layout == L_LIST && is_train) {
        err_set(err, err_len, "--layout list needs --list FILE");
        return NULL;
    }
    if (!my_list && !root) {
        err_set(err, err_len, list ? "no test split: the train split is a file list; give "
                "--test-list FILE or --data ROOT" : "no dataset root given");
        return NULL;
    }
    if (!my_list && !is_dir(root)) {
        err_set(err, err_len, "dataset root %s is not a directory", root);
        return NULL;
    }
    struct dataset *ds = calloc(1, sizeof *ds);
    if (!ds) {
        err_set(err, err_len, "out of memory");
        return NULL;
    }
    for (int f = 0; f < BIN_MAX_FILES; f++)
        ds->bin[f].fd = -1;
    ds->root_fd = -1;
    ds->opts = o;
    snprintf(ds->split, sizeof ds->split, "%s", is_train ? "train" : "test");
    if (my_list) {
        /* paths are relative to the list file's directory */
        char dir[4096];
        snprintf(dir, sizeof dir, "%s", my_list);
        char *slash = strrchr(dir, '/');
        if (!slash)
            snprintf(dir, sizeof dir, ".");
        else if (slash == dir)
            dir[1] = 0;
        else
            *slash = 0;
        if (set_root(ds, dir, err, err_len) || open_root_fd(ds, err, err_len) ||
            open_list(ds, my_list, root, o, &p, err, err_len))
            goto fail;
    } else {
        if (set_root(ds, root, err, err_len) || open_root(ds, o, &p, err, err_len))
            goto fail;
    }
    if (ds->n == 0) {
        err_set(err, err_len, "no images in %s", ds->root);
        goto fail;
    }
    NPID_CHECK(ds->labelled <= ds->n);
    compute_manifest(ds);
    ds->opts = NULL;
    return ds;
fail:
    dataset_destroy(&ds);
    return NULL;
}

struct dataset *dataset_open(const char *root, const char *split, char *err, size_t err_len)
{
    return dataset_open_opts(root, split, NULL, err, err_len);
}

int dataset_split_exists(const char *root, const char *split, const struct dataset_opts *o)
{
    struct popts p;
    if (!split || opts_parse(o, &p, NULL, 0))
        return 0;
    if (strcmp(split, "train") == 0)
        return 1;
    if (o && o->test_list && *o->test_list)
        return 1;
    if (!root || !*root || !is_dir(root))
        return 0;
    char b[4096];
    enum layout L = p.layout;
    if ((L == L_AUTO || L == L_IMAGEFOLDER || L == L_FLAT || L == L_LIST) &&
        (is_dir_in(root, "test") || is_dir_in(root, "val")))
        return 1;
    static const char *const t10[] = { "test_batch.bin", NULL }, *const t100[] = { "test.bin", NULL },
                             *const tstl[] = { "test_X.bin", NULL };
    return ((L == L_AUTO || L == L_CIFAR10) && bin_dir(root, "cifar-10-batches-bin", t10, b, sizeof b)) ||
           ((L == L_AUTO || L == L_CIFAR100) && bin_dir(root, "cifar-100-binary", t100, b, sizeof b)) ||
           ((L == L_AUTO || L == L_STL10) && bin_dir(root, "stl10_binary", tstl, b, sizeof b));
}

void dataset_destroy(struct dataset **dsp)
{
    if (!dsp || !*dsp)
        return;
    struct dataset *ds = *dsp;
    for (size_t f = 0; f < BIN_MAX_FILES; f++)
        if (ds->bin[f].fd >= 0)
            close(ds->bin[f].fd);
    if (ds->root_fd >= 0)
        close(ds->root_fd);
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
const char *dataset_describe(const struct dataset *ds) { return ds->describe; }
size_t dataset_count(const struct dataset *ds) { return ds->n; }
size_t dataset_labelled(const struct dataset *ds) { return ds->labelled; }
size_t dataset_num_classes(const struct dataset *ds) { return ds->n_classes; }
const char *dataset_manifest(const struct dataset *ds) { return ds->manifest; }
size_t dataset_skipped(const struct dataset *ds) { return ds->skipped; }
size_t dataset_nested_dirs(const struct dataset *ds) { return ds->nested_dirs; }

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
    if (c == DATASET_NO_LABEL)
        return "";
    NPID_CHECK(c < ds->n_classes);
    return ds->classes[c];
}

/* ---- loading ------------------------------------------------------------------------------ */

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
    if (ds->n_bin) {
        *short_side = *long_side = ds->bin[0].side;
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
        if (len <= 0 || imghdr_probe(head, (size_t)len, &w, &h, &comps, err, sizeof err) != 0) {
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
