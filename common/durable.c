/* Durable files and CRC-32C: see durable.h. */
#include "common/durable.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__SSE4_2__)
#include <nmmintrin.h>
#endif

#if !defined(__SSE4_2__)
static uint32_t crc32c_table[8][256];
static int crc32c_ready;

static void crc32c_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        crc32c_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            crc32c_table[t][i] = (crc32c_table[t - 1][i] >> 8) ^ crc32c_table[0][crc32c_table[t - 1][i] & 0xff];
    crc32c_ready = 1;
}
#endif

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    uint32_t c = ~crc;
#if defined(__SSE4_2__)
    uint64_t c64 = c;
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c64 = _mm_crc32_u64(c64, v);
        p += 8;
        len -= 8;
    }
    c = (uint32_t)c64;
    while (len--)
        c = _mm_crc32_u8(c, *p++);
#else
    if (!crc32c_ready)
        crc32c_init();
    while (len >= 8) {
        uint32_t lo, hi;
        memcpy(&lo, p, 4);
        memcpy(&hi, p + 4, 4);
        lo ^= c;
        c = crc32c_table[7][lo & 0xff] ^ crc32c_table[6][(lo >> 8) & 0xff] ^
            crc32c_table[5][(lo >> 16) & 0xff] ^ crc32c_table[4][lo >> 24] ^
            crc32c_table[3][hi & 0xff] ^ crc32c_table[2][(hi >> 8) & 0xff] ^
            crc32c_table[1][(hi >> 16) & 0xff] ^ crc32c_table[0][hi >> 24];
        p += 8;
        len -= 8;
    }
    while (len--)
        c = crc32c_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
#endif
    return ~c;
}

int durable_open(struct durable_file *f, const char *path)
{
    memset(f, 0, sizeof *f);
    f->fd = -1;
    if (strlen(path) >= sizeof f->path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    snprintf(f->path, sizeof f->path, "%s", path);
    snprintf(f->tmp, sizeof f->tmp, "%s.tmp", path);
    /* a file or link left at the temporary name (a crashed writer, or planted) is removed,
       never written through: the new one must be created here (O_EXCL), not followed */
    if (unlink(f->tmp) != 0 && errno != ENOENT)
        return -1;
    f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    return f->fd < 0 ? -1 : 0;
}

static int write_full(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int durable_append(struct durable_file *f, const void *buf, size_t len)
{
    if (write_full(f->fd, buf, len) != 0)
        return -1;
    f->crc = crc32c(f->crc, buf, len);
    f->len += len;
    return 0;
}

int durable_pwrite(struct durable_file *f, uint64_t off, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t n = pwrite(f->fd, p, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

int durable_sync_dir(const char *path)
{
    char copy[PATH_MAX];
    snprintf(copy, sizeof copy, "%s", path);
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return -1;
    int rc = fsync(dfd);
    int saved = errno;
    close(dfd);
    errno = saved;
    return rc;
}

int durable_commit(struct durable_file *f)
{
    char prev[PATH_MAX + 8];
    if (fsync(f->fd) != 0)
        goto fail;
    if (close(f->fd) != 0) {
        f->fd = -1;
        goto fail;
    }
    f->fd = -1;
    snprintf(prev, sizeof prev, "%s.prev", f->path);
    if (rename(f->path, prev) != 0 && errno != ENOENT)
        goto fail;
    if (rename(f->tmp, f->path) != 0)
        goto fail;
    return durable_sync_dir(f->path);
fail:;
    int saved = errno;
    durable_abort(f);
    errno = saved;
    return -1;
}

void durable_abort(struct durable_file *f)
{
    int saved = errno;
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    unlink(f->tmp);
    errno = saved;
}

int durable_write(const char *path, const void *buf, size_t len)
{
    struct durable_file f;
    if (durable_open(&f, path) != 0)
        return -1;
    if (durable_append(&f, buf, len) != 0) {
        durable_abort(&f);
        return -1;
    }
    return durable_commit(&f);
}

int file_open_regular(const char *path, uint64_t *size)
{
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    int bad = fstat(fd, &st) != 0 ? errno : S_ISREG(st.st_mode) ? 0 : EINVAL;
    if (bad) {
        close(fd);
        errno = bad;
        return -1;
    }
    *size = (uint64_t)st.st_size;
    return fd;
}

int file_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = ENODATA;
            return -1;
        }
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return 0;
}

int file_read_all(const char *path, size_t max_len, void **buf, size_t *len)
{
    *buf = NULL;
    *len = 0;
    uint64_t size;
    int fd = file_open_regular(path, &size);
    if (fd < 0)
        return -1;
    char *p = NULL;
    if (size > max_len)
        errno = EFBIG;
    else if ((p = malloc(size ? size : 1)) && file_pread_full(fd, p, size, 0) == 0) {
        close(fd);
        *buf = p;
        *len = size;
        return 0;
    }
    int saved = errno;
    free(p);
    close(fd);
    errno = saved;
    return -1;
}

int mkdir_p(const char *path)
{
    char buf[PATH_MAX];
    if (strlen(path) >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return -1;
    return 0;
}
