/* Bank snapshot files: see snapshot.h. Large arrays are streamed straight from the bank
 * (no second copy of the bank in memory) and read straight into a new one. */
#include "bankd/snapshot.h"

#include "common/durable.h"
#include "common/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SNAP_MAGIC "NPIDBANK"
#define SNAP_HDR 64   /* fixed header of version 1 */
#define SNAP_HDR2 72  /* of version 2: + u64 extra_len */
#define SNAP_HDR3 104 /* of version 3: + the token's SHA-256 */
#define SNAP_HDR4 128 /* of version 4 (a shard's): + u32 shard, u32 shards, u64 total, u64 lo */
#define SNAP_FLAG_MANIFEST 1u
#define SNAP_FLAG_UNIT 2u
#define SNAP_FLAG_TOKEN 4u
#define SNAP_CHUNK ((size_t)8 << 20)

static void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint16_t get16(const unsigned char *p) { uint16_t v; memcpy(&v, p, 2); return v; }

/* Appends len bytes in chunks, folding them into *crc. */
static int append_crc(struct durable_file *f, const void *buf, size_t len, uint32_t *crc)
{
    const char *p = buf;
    while (len) {
        size_t n = len < SNAP_CHUNK ? len : SNAP_CHUNK;
        if (durable_append(f, p, n) != 0)
            return -1;
        *crc = crc32c(*crc, p, n);
        p += n;
        len -= n;
    }
    return 0;
}

int snapshot_write(const struct bank *b, const char *dir, char *path, size_t path_cap)
{
    return snapshot_write_as(b, dir, SNAPSHOT_NAME, path, path_cap);
}

int snapshot_write_as(const struct bank *b, const char *dir, const char *name, char *path,
                      size_t path_cap)
{
    char file[PATH_MAX];
    if (mkdir_p(dir) != 0)
        return -1;
    if ((size_t)snprintf(file, sizeof file, "%s/%s", dir, name) >= sizeof file) {
        errno = ENAMETOOLONG;
        return -1;
    }
    size_t run_len = strlen(b->run), man_len = b->has_manifest ? strlen(b->manifest) : 0;
    if (b->extra_len > SNAPSHOT_EXTRA_MAX) {
        errno = EFBIG;
        return -1;
    }
    /* an unsharded bank keeps version 3, which older bankd read */
    int sharded = b->shards > 1;
    size_t fixed = sharded ? SNAP_HDR4 : SNAP_HDR3;
    unsigned char hdr[SNAP_HDR4 + sizeof b->run + sizeof b->manifest];
    size_t hlen = fixed + run_len + man_len;
    memset(hdr, 0, sizeof hdr);
    memcpy(hdr, SNAP_MAGIC, 8);
    put32(hdr + 8, sharded ? SNAPSHOT_VERSION_SHARD : SNAPSHOT_VERSION);
    put32(hdr + 12, (uint32_t)hlen);
    put64(hdr + 16, b->rows);
    put64(hdr + 24, b->dim);
    put64(hdr + 32, b->step);
    put64(hdr + 40, b->writes);
    put64(hdr + 48, b->seed);
    put32(hdr + 56, (b->has_manifest ? SNAP_FLAG_MANIFEST : 0u) |
                    (b->mode == BANK_INIT_UNIT ? SNAP_FLAG_UNIT : 0u) |
                    (b->has_token ? SNAP_FLAG_TOKEN : 0u));
    hdr[60] = (unsigned char)run_len;
    hdr[61] = (unsigned char)(run_len >> 8);
    hdr[62] = (unsigned char)man_len;
    hdr[63] = (unsigned char)(man_len >> 8);
    put64(hdr + 64, b->extra_len);
    if (b->has_token)
        memcpy(hdr + SNAP_HDR2, b->token_hash, 32);
    if (sharded) {
        put32(hdr + SNAP_HDR3, b->shard);
        put32(hdr + SNAP_HDR3 + 4, b->shards);
        put64(hdr + SNAP_HDR3 + 8, b->total);
        put64(hdr + SNAP_HDR3 + 16, b->lo);
    }
    memcpy(hdr + fixed, b->run, run_len);
    memcpy(hdr + fixed + run_len, b->manifest, man_len);
    struct durable_file f;
    if (durable_open(&f, file) != 0)
        return -1;
    uint32_t pcrc = 0;
    unsigned char crcs[8] = { 0 };
    if (durable_append(&f, hdr, hlen) != 0 || durable_append(&f, crcs, 8) != 0 ||
        append_crc(&f, b->v, (size_t)b->rows * b->dim * sizeof(float), &pcrc) != 0 ||
        append_crc(&f, b->last_write, (size_t)b->rows * sizeof(uint64_t), &pcrc) != 0 ||
        append_crc(&f, b->writes_row, (size_t)b->rows * sizeof(uint32_t), &pcrc) != 0 ||
        (b->extra_len && append_crc(&f, b->extra, b->extra_len, &pcrc) != 0))
        goto fail_file;
    put32(crcs, pcrc);
    uint32_t hcrc = crc32c(0, hdr, hlen);
    hcrc = crc32c(hcrc, crcs, 4);
    put32(crcs + 4, hcrc);
    if (durable_pwrite(&f, hlen, crcs, 8) != 0)
        goto fail_file;
    if (durable_commit(&f) != 0)
        return -1;
    if (path && path_cap)
        snprintf(path, path_cap, "%s", file);
    return 0;
fail_file:
    durable_abort(&f);
    return -1;
}

/* Reads exactly len bytes; 0, or -1 (errno, or 0 with *short_read at end of file). */
static int read_full(int fd, void *buf, size_t len, int *short_read)
{
    char *p = buf;
    while (len) {
        ssize_t n = read(fd, p, len < SNAP_CHUNK ? len : SNAP_CHUNK);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0) {
            *short_read = 1;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int read_crc(int fd, void *buf, size_t len, uint32_t *crc, int *short_read)
{
    if (read_full(fd, buf, len, short_read) != 0)
        return -1;
    *crc = crc32c(*crc, buf, len);
    return 0;
}

/* Opens path, reads and checks its header (magic, version, lengths, header checksum, file
 * size) and fills info and *pcrc_want (the stored payload checksum). Returns the fd
 * positioned at the payload, or -1 with *why set. */
static int snapshot_open(const char *path, struct snapshot_info *info, uint32_t *pcrc_want,
                         const char **why)
{
    int short_read = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        *why = errno == ENOENT ? "no such file" : "cannot open";
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        *why = "cannot stat";
        goto fail_fd;
    }
    unsigned char hdr[SNAP_HDR4 + 512 + 8];
    if (read_full(fd, hdr, SNAP_HDR, &short_read) != 0) {
        *why = short_read ? "truncated header" : "read error";
        goto fail_fd;
    }
    if (memcmp(hdr, SNAP_MAGIC, 8) != 0) {
        *why = "bad magic (not a bank snapshot)";
        goto fail_fd;
    }
    uint32_t version = get32(hdr + 8);
    if (version < 1 || version > SNAPSHOT_VERSION_SHARD) {
        *why = "unsupported snapshot version";
        goto fail_fd;
    }
    uint32_t hlen = get32(hdr + 12);
    uint32_t fixed = version >= 4 ? SNAP_HDR4 : version == 3 ? SNAP_HDR3 :
                     version == 2 ? SNAP_HDR2 : SNAP_HDR;
    uint64_t rows = get64(hdr + 16), dim = get64(hdr + 24);
    uint16_t run_len = get16(hdr + 60), man_len = get16(hdr + 62);
    if (run_len > 255 || man_len > 255 || hlen != fixed + (uint32_t)run_len + man_len) {
        *why = "bad header lengths";
        goto fail_fd;
    }
    if (read_full(fd, hdr + SNAP_HDR, (size_t)(fixed - SNAP_HDR) + run_len + man_len + 8,
                  &short_read) != 0) {
        *why = short_read ? "truncated header" : "read error";
        goto fail_fd;
    }
    uint32_t hcrc_want = get32(hdr + hlen + 4);
    uint32_t hcrc = crc32c(crc32c(0, hdr, hlen), hdr + hlen, 4);
    if (hcrc != hcrc_want) {
        *why = "header checksum mismatch";
        goto fail_fd;
    }
    if (rows == 0 || dim == 0 || dim > BANK_MAX_DIM || rows > UINT32_MAX) {
        *why = "bad shape";
        goto fail_fd;
    }
    uint64_t extra_len = version >= 2 ? get64(hdr + 64) : 0;
    if (extra_len > SNAPSHOT_EXTRA_MAX) {
        *why = "bad extra section length";
        goto fail_fd;
    }
    uint64_t want = (uint64_t)hlen + 8 + rows * (dim * 4 + 8 + 4) + extra_len;
    if ((uint64_t)st.st_size != want) {
        *why = (uint64_t)st.st_size < want ? "truncated file" : "file longer than its header says";
        goto fail_fd;
    }
    uint32_t shard = 0, shards = 1;
    uint64_t total = rows, lo = 0;
    if (version >= 4) {
        shard = get32(hdr + SNAP_HDR3);
        shards = get32(hdr + SNAP_HDR3 + 4);
        total = get64(hdr + SNAP_HDR3 + 8);
        lo = get64(hdr + SNAP_HDR3 + 16);
        if (shards == 0 || shards > BANK_MAX_SHARDS || shard >= shards || total > UINT32_MAX ||
            lo != proto_bank_shard_start(total, shard, shards) ||
            rows != proto_bank_shard_start(total, shard + 1ull, shards) - lo) {
            *why = "bad shard fields";
            goto fail_fd;
        }
    }
    uint32_t flags = get32(hdr + 56);
    memset(info, 0, sizeof *info);
    info->shard = shard;
    info->shards = shards;
    info->total = total;
    info->lo = lo;
    info->rows = rows;
    info->dim = dim;
    info->step = get64(hdr + 32);
    info->writes = get64(hdr + 40);
    info->seed = get64(hdr + 48);
    info->unit = (flags & SNAP_FLAG_UNIT) != 0;
    info->version = version;
    info->extra_len = extra_len;
    info->has_manifest = (flags & SNAP_FLAG_MANIFEST) != 0;
    /* versions 1 and 2 had no token: a stray bit 2 there means nothing */
    info->has_token = version >= 3 && (flags & SNAP_FLAG_TOKEN) != 0;
    if (info->has_token)
        memcpy(info->token_hash, hdr + SNAP_HDR2, 32);
    memcpy(info->run, hdr + fixed, run_len);
    if (info->has_manifest)
        memcpy(info->manifest, hdr + fixed + run_len, man_len);
    *pcrc_want = get32(hdr + hlen);
    return fd;
fail_fd:
    close(fd);
    return -1;
}

int snapshot_peek(const char *path, struct snapshot_info *info, const char **why)
{
    uint32_t pcrc;
    int fd = snapshot_open(path, info, &pcrc, why);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

struct bank *snapshot_read(const char *path, const char **why)
{
    struct snapshot_info info;
    uint32_t pcrc_want;
    int short_read = 0;
    int fd = snapshot_open(path, &info, &pcrc_want, why);
    if (fd < 0)
        return NULL;
    uint64_t rows = info.rows, dim = info.dim;
    struct bank *b = bank_new_empty(rows, (size_t)dim);
    if (!b) {
        *why = "cannot allocate the bank";
        goto fail_fd;
    }
    b->lo = info.lo;
    b->total = info.total;
    b->shard = info.shard;
    b->shards = info.shards;
    b->step = info.step;
    b->writes = info.writes;
    b->seed = info.seed;
    b->mode = info.unit ? BANK_INIT_UNIT : BANK_INIT_UNIFORM;
    bank_set_ids(b, info.run, strlen(info.run), info.has_manifest ? info.manifest : NULL,
                 strlen(info.manifest));
    b->has_token = info.has_token;
    memcpy(b->token_hash, info.token_hash, 32);
    uint32_t pcrc = 0;
    if (read_crc(fd, b->v, (size_t)rows * dim * 4, &pcrc, &short_read) != 0 ||
        read_crc(fd, b->last_write, (size_t)rows * 8, &pcrc, &short_read) != 0 ||
        read_crc(fd, b->writes_row, (size_t)rows * 4, &pcrc, &short_read) != 0) {
        *why = short_read ? "truncated file" : "read error";
        goto fail_bank;
    }
    if (info.extra_len) {
        b->extra = malloc(info.extra_len);
        if (!b->extra) {
            *why = "cannot allocate the extra section";
            goto fail_bank;
        }
        b->extra_len = info.extra_len;
        if (read_crc(fd, b->extra, info.extra_len, &pcrc, &short_read) != 0) {
            *why = short_read ? "truncated file" : "read error";
            goto fail_bank;
        }
    }
    if (pcrc != pcrc_want) {
        *why = "payload checksum mismatch";
        goto fail_bank;
    }
    for (uint64_t i = 0; i < rows; i++)
        if (b->last_write[i] > b->step) {
            *why = "row bookkeeping ahead of the bank step";
            goto fail_bank;
        }
    close(fd);
    return b;
fail_bank:
    bank_destroy(&b);
fail_fd:
    close(fd);
    return NULL;
}

/* A snapshot file of DIR as found at start. */
struct snap_cand {
    char name[96];            /* file name within DIR */
    uint64_t step;
    int prev;                 /* a .prev file */
    int named;                /* bank-<name>.snap[.prev] */
};

/* Classifies a file name: 0 bank.snap[.prev] or bank-<name>.snap[.prev] (c filled), -2 a
 * bank-*.snap[.prev] whose name is not valid (proto_bank_name_ok), -1 other. */
static int snap_classify(const char *fname, struct snap_cand *c)
{
    size_t len = strlen(fname);
    if (len >= sizeof c->name)
        return -1;
    memset(c, 0, sizeof *c);
    memcpy(c->name, fname, len + 1);
    if (len > 5 && !strcmp(fname + len - 5, ".prev")) {
        c->prev = 1;
        len -= 5;
    }
    if (len == strlen(SNAPSHOT_NAME) && !memcmp(fname, SNAPSHOT_NAME, len))
        return 0;
    if (len > 10 && !memcmp(fname, "bank-", 5) && !memcmp(fname + len - 5, ".snap", 5)) {
        if (!proto_bank_name_ok(fname + 5, len - 10))
            return -2;
        c->named = 1;
        return 0;
    }
    return -1;
}

/* Highest step first; at equal steps the newer file (not .prev), then bank.snap, then by
 * name, so the order is deterministic. */
static int snap_cand_cmp(const void *pa, const void *pb)
{
    const struct snap_cand *a = pa, *b = pb;
    if (a->step != b->step)
        return a->step > b->step ? -1 : 1;
    if (a->prev != b->prev)
        return a->prev - b->prev;
    if (a->named != b->named)
        return a->named - b->named;
    return strcmp(a->name, b->name);
}

struct bank *snapshot_load_newest(const char *dir, uint64_t max_bytes, int *found, char *path,
                                  size_t path_cap)
{
    *found = 0;
    int too_big = 0;
    DIR *dh = opendir(dir);
    if (!dh) {
        if (errno != ENOENT)
            log_error("cannot read the snapshot directory %s: %s", dir, strerror(errno));
        return NULL;
    }
    struct snap_cand *cand = NULL;
    size_t n = 0, cap = 0;
    struct bank *b = NULL;
    char file[PATH_MAX];
    struct dirent *de;
    while ((de = readdir(dh))) {
        struct snap_cand c;
        int kind = snap_classify(de->d_name, &c);
        if (kind == -2) {
            char shown[PROTO_BANK_ESCAPED(64)];
            log_warn("ignoring %s/%s: not a valid snapshot name ([A-Za-z0-9_-], first a letter "
                     "or digit)", dir, proto_bank_escape(shown, sizeof shown, de->d_name,
                                                         strlen(de->d_name)));
        }
        if (kind != 0)
            continue;
        if ((size_t)snprintf(file, sizeof file, "%s/%s", dir, c.name) >= sizeof file)
            continue;
        *found = 1;
        struct snapshot_info info;
        const char *why;
        if (snapshot_peek(file, &info, &why) != 0) {
            log_error("snapshot %s unusable: %s", file, why);
            continue;
        }
        if (max_bytes && bank_bytes(info.rows, info.dim) > max_bytes) {
            log_error("snapshot %s holds a %llu x %llu bank (%llu bytes), more than --max-bytes "
                      "%llu; raise --max-bytes to load it", file, (unsigned long long)info.rows,
                      (unsigned long long)info.dim,
                      (unsigned long long)bank_bytes(info.rows, info.dim),
                      (unsigned long long)max_bytes);
            too_big = 1;
            continue;
        }
        c.step = info.step;
        if (n == cap) {
            size_t ncap = cap ? 2 * cap : 8;
            struct snap_cand *p = realloc(cand, ncap * sizeof *p);
            if (!p) {
                log_error("out of memory listing %s", dir);
                goto done;
            }
            cand = p;
            cap = ncap;
        }
        cand[n++] = c;
    }
    if (too_big) /* never start beside a bank it could not hold, nor fall back past it */
        goto done;
    if (n > 1)
        qsort(cand, n, sizeof *cand, snap_cand_cmp);
    for (size_t i = 0; i < n && !b; i++) {
        snprintf(file, sizeof file, "%s/%s", dir, cand[i].name);
        const char *why = NULL;
        b = snapshot_read(file, &why);
        if (!b) {
            log_error("snapshot %s (step %llu) unusable: %s%s", file,
                      (unsigned long long)cand[i].step, why,
                      i + 1 < n ? "; trying the next one" : "");
            continue;
        }
        if (i > 0)
            log_warn("loaded the previous snapshot %s instead (step %llu)", file,
                     (unsigned long long)cand[i].step);
        if (path && path_cap)
            snprintf(path, path_cap, "%s", file);
    }
done:
    closedir(dh);
    free(cand);
    if (too_big)
        errno = EFBIG;
    return b;
}
