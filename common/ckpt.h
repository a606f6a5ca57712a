/* Trainer checkpoint file: everything needed to resume a run bit-exactly.
 *
 * Layout (little-endian; docs/formats.md):
 *   0   magic "NPIDCKPT" (8 bytes)
 *   8   u32 format version (1)
 *   12  u32 CRC-32C of bytes [16, end)
 *   16  u64 total file length
 *   24  u64 step, u64 epoch, u64 epoch position (samples of the epoch done)
 *   48  f64 Z
 *   56  u64 rng state[4]
 *   88  u64 bank snapshot step
 *   96  u64 n_params, u64 n_buffers, u64 n_momentum (float counts)
 *   120 u32 config length, u32 bank path length
 *   128 config text (JSON), bank snapshot path, then params, buffers, momentum (float32)
 * Written through common/durable.h (temp -> fsync -> rename, previous kept as PATH.prev).
 * Loading checks magic, version, length and checksum and reports which one failed. */
#ifndef NPID_CKPT_H
#define NPID_CKPT_H
#include <stddef.h>
#include <stdint.h>

#include "common/rng.h"

#define CKPT_VERSION 1
#define CKPT_MAX_TEXT (1u << 20)   /* config and path length limit */

struct ckpt {
    char *config;          /* NUL-terminated JSON text (may be "") */
    char *bank_path;       /* NUL-terminated path of the paired bank snapshot (may be "") */
    uint64_t step, epoch, epoch_pos, bank_step;
    double z;
    struct rng rng;
    size_t n_params, n_buffers, n_momentum;
    float *params, *buffers, *momentum;
};

/* Writes c durably to path. 0, or -1 with errno (ENOSPC on a full disk) and the previous
 * file untouched. The pointers in c are only read. */
int ckpt_save(const char *path, const struct ckpt *c);

/* Reads and verifies path into c (all fields allocated; free with ckpt_free). 0, or -1
 * with a one-line reason in err ("truncated", "bad checksum", ...) and c zeroed. */
int ckpt_load(const char *path, struct ckpt *c, char *err, size_t errlen);

/* ckpt_load(path), falling back to path.prev when path is missing or corrupt. *used
 * (when not NULL) receives 0 for path, 1 for path.prev. err describes every failure. */
int ckpt_load_latest(const char *path, struct ckpt *c, int *used, char *err, size_t errlen);

void ckpt_free(struct ckpt *c);

#endif
