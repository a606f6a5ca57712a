/* Bank snapshot files (docs/protocol.md, "Snapshot file").
 *
 * Layout, little-endian:
 *   fixed header (104 bytes; 128 in version 4, 72 in version 2, 64 in version 1): magic
 *     "NPIDBANK", u32 version (3, or 4 for a shard; 1 and 2 are read too), u32 header_len
 *     (fixed + run_len + manifest_len),
 *     u64 rows, u64 dim, u64 step, u64 writes, u64 seed, u32 flags (bit 0: has manifest,
 *     bit 1: unit init, bit 2: has a write token), u16 run_len, u16 manifest_len, u64
 *     extra_len (version >= 2), 32 bytes SHA-256 of the write token (version 3; zero
 *     without one: the token itself is never stored); version 4 (written for a shard of
 *     N > 1 only, 128 bytes): then u32 shard, u32 shards, u64 total (global rows), u64 lo
 *     (its first global row); rows is the shard's own count
 *   run bytes, manifest bytes (not NUL-terminated; at most 255 each)
 *   u32 payload_crc: CRC-32C of the payload
 *   u32 header_crc: CRC-32C of the header_len header bytes followed by payload_crc
 *   payload: rows f32 (rows, dim); last_write u64 (rows,); writes_row u32 (rows,);
 *     extra_len bytes (struct bank's extra)
 * The file size must be exactly header_len + 8 + rows x (4 dim + 12) + extra_len.
 *
 * Written durably as DIR/bank.snap, or DIR/bank-<name>.snap for named snapshots (previous
 * kept as .prev, see durable.h). */
#ifndef NPID_BANKD_SNAPSHOT_H
#define NPID_BANKD_SNAPSHOT_H

#include "bankd/bank.h"

#include <stddef.h>

#define SNAPSHOT_NAME "bank.snap"
#define SNAPSHOT_VERSION 3       /* written for an unsharded bank */
#define SNAPSHOT_VERSION_SHARD 4 /* written for a shard of N > 1 */
/* Largest extra section accepted. */
#define SNAPSHOT_EXTRA_MAX ((size_t)64 << 20)

/* Writes b (with b->extra) to DIR/bank.snap (dir created if needed); path (may be NULL) receives the file
 * path. Returns 0, or -1 with errno (ENOSPC, EFBIG, EDQUOT when the disk or a limit is
 * full; the previous snapshot is untouched). */
int snapshot_write(const struct bank *b, const char *dir, char *path, size_t path_cap);
/* The same to DIR/<name> (a plain file name, e.g. "bank-ckpt.snap"; previous kept as .prev). */
int snapshot_write_as(const struct bank *b, const char *dir, const char *name, char *path,
                      size_t path_cap);

/* What a snapshot header says. */
struct snapshot_info {
    uint64_t rows, dim, step, writes, seed;
    int unit;                 /* unit initialisation */
    char run[256];
    char manifest[256];
    int has_manifest;
    uint32_t version;         /* file format version */
    uint64_t extra_len;       /* bytes of the extra section (0 in version 1) */
    int has_token;            /* writes need a token (never in versions 1 and 2) */
    unsigned char token_hash[32];
    uint32_t shard, shards;   /* shard i of N (0 of 1 before version 4) */
    uint64_t total, lo;       /* global rows, first global row held (rows, 0 before 4) */
};

/* Reads and checks one file's header only (magic, version, lengths, header checksum, file
 * size; not the payload checksum). Returns 0 with info filled, or -1 with *why (static
 * text: "no such file" when it does not exist). */
int snapshot_peek(const char *path, struct snapshot_info *info, const char **why);

/* Reads and verifies one file (magic, version, sizes, both checksums). Returns the bank
 * (extra filled from a version >= 2 file, NULL and 0 from version 1; the token hash from a
 * version 3 file that has one), or
 * NULL with *why (static text) set; errno ENOENT when the file does not exist. */
struct bank *snapshot_read(const char *path, const char **why);

/* Loads the valid snapshot of DIR with the highest step among bank.snap, bank-<name>.snap
 * and their .prev files: headers order them (at equal steps a file before its .prev and
 * bank.snap before named ones), each is then verified in full and a rejected one (logged
 * with its reason) falls back to the next. NULL when none is usable; *found set to 1 when
 * some such file existed. path (may be NULL) receives the file loaded. A file whose header
 * holds a bank of more than max_bytes (bank_bytes; 0: no bound) is logged and loads nothing:
 * NULL with errno EFBIG, before any payload is read. */
struct bank *snapshot_load_newest(const char *dir, uint64_t max_bytes, int *found, char *path,
                                  size_t path_cap);

#endif
