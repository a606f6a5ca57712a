/* Durable files and checksums.
 *
 * A durable file is written to PATH.tmp, fsynced, the existing PATH (if any) is renamed to
 * PATH.prev (the previous version is kept), PATH.tmp is renamed to PATH and the directory is
 * fsynced. A crash at any point leaves either the old or the new file complete under PATH or
 * PATH.prev; readers try PATH, then PATH.prev (validation is the format's job: each format
 * carries magic, version and a CRC-32C checksum in its header).
 *
 * Streaming use: durable_open, durable_append (any number of times; the running CRC-32C of
 * appended bytes is kept in f->crc), durable_pwrite to patch a header in place,
 * durable_commit, or durable_abort on error. Every function returns 0 or -1 with errno set
 * (ENOSPC when the disk is full) and the temp file removed on failure of commit. */
#ifndef NPID_DURABLE_H
#define NPID_DURABLE_H
#include <limits.h>
#include <stddef.h>
#include <stdint.h>

uint32_t crc32c(uint32_t crc, const void *buf, size_t len); /* start with crc = 0 */

struct durable_file {
    int fd;
    uint32_t crc;      /* CRC-32C of everything appended so far */
    uint64_t len;      /* bytes appended so far */
    char path[PATH_MAX];
    char tmp[PATH_MAX + 8];
};

/* Creates PATH.tmp for writing: whatever is at that name (a crashed writer's file, a link) is
 * unlinked first, and the new file is created there (O_EXCL | O_NOFOLLOW), never opened
 * through a link; commit renames it over PATH, which replaces a link at PATH too. */
int durable_open(struct durable_file *f, const char *path);
int durable_append(struct durable_file *f, const void *buf, size_t len);
/* Writes at an absolute offset without touching crc/len (for headers written last). */
int durable_pwrite(struct durable_file *f, uint64_t off, const void *buf, size_t len);
int durable_commit(struct durable_file *f);
void durable_abort(struct durable_file *f);

/* fsyncs the directory holding path (after a rename or a create there): 0, or -1 with errno. */
int durable_sync_dir(const char *path);

/* Whole-file convenience: writes buf durably to path. */
int durable_write(const char *path, const void *buf, size_t len);

/* Opens path read-only if it is a regular file: a FIFO or device never blocks the open
 * (O_NONBLOCK) and is refused after fstat. Returns the descriptor with *size its length, or
 * -1 with errno (EINVAL: not a regular file). */
int file_open_regular(const char *path, uint64_t *size);
/* Reads exactly len bytes at offset off: 0, or -1 with errno (ENODATA: the file ended). */
int file_pread_full(int fd, void *buf, size_t len, uint64_t off);
/* Reads a whole regular file (file_open_regular) of at most max_len bytes into a malloc'd
 * buffer (caller frees). Returns 0, or -1 with errno (EFBIG when larger than max_len, EINVAL
 * when not a regular file, ENODATA when it shrank while read). */
int file_read_all(const char *path, size_t max_len, void **buf, size_t *len);

/* Creates a directory and its parents (mode 0755); 0 when it exists already. */
int mkdir_p(const char *path);

#endif
