/* Trainer checkpoint file: everything needed to resume a run bit-exactly, and the network it
 * was trained with, so that every reader builds the same one.
 *
 * Layout of version 2 (little-endian; docs/formats.md):
 *   0   magic "NPIDCKPT" (8 bytes)
 *   8   u32 format version (2)
 *   12  u32 CRC-32C of bytes [16, end)
 *   16  u64 total file length
 *   24  u64 step, u64 epoch, u64 epoch position (samples of the epoch done)
 *   48  f64 Z
 *   56  u64 rng state[4]
 *   88  u64 bank snapshot step
 *   96  u64 n_params, u64 n_buffers, u64 n_momentum (float counts)
 *   120 u32 config length, u32 bank path length
 *   128 model block (48 bytes): model preset name (32 bytes, NUL-padded), u32 low_dim,
 *       u32 input size, u32 stem (enum net_stem), u32 head (hidden width, 0: none)
 *   176 config text (JSON), bank snapshot path, then params, buffers, momentum (float32)
 * Version 1 is the same without the model block (config text at 128); it is still read, its
 * model fields taken from the config text (ckpt_load).
 * Written through common/durable.h (temp -> fsync -> rename, previous kept as PATH.prev).
 * Loading checks magic, version, length, checksum and the model fields and reports which one
 * failed. */
#ifndef NPID_CKPT_H
#define NPID_CKPT_H
#include <stddef.h>
#include <stdint.h>

#include "common/rng.h"

#define CKPT_VERSION 2              /* the version ckpt_save writes */
#define CKPT_MAX_TEXT (1u << 20)   /* config and path length limit */
#define CKPT_MODEL_NAME 32         /* bytes of the model name field, NUL included */

/* The network a checkpoint's weights belong to: what net_new needs besides the batch, seed and
 * init (common/nn/net.h). ckpt_load accepts only a name NUL-terminated within the field and
 * one of the net presets, low_dim 1..4096, size 8..1024, a net_stem enum and head 0..8192. */
struct ckpt_model {
    char name[CKPT_MODEL_NAME]; /* preset, e.g. "resnet18" */
    uint32_t low_dim;           /* output features */
    uint32_t size;              /* input height = width in pixels */
    uint32_t stem;              /* enum net_stem */
    uint32_t head;              /* hidden width of the two-layer head, 0: the single Linear */
};

struct ckpt {
    struct ckpt_model model;
    char *config;          /* NUL-terminated JSON text (may be "") */
    char *bank_path;       /* NUL-terminated path of the paired bank snapshot (may be "") */
    uint64_t step, epoch, epoch_pos, bank_step;
    double z;
    struct rng rng;
    size_t n_params, n_buffers, n_momentum;
    float *params, *buffers, *momentum;
};

/* Writes c durably to path in format version 2. 0, or -1 with errno (ENOSPC on a full disk;
 * EINVAL for texts over CKPT_MAX_TEXT or model fields ckpt_load would refuse) and the previous
 * file untouched. The pointers in c are only read. */
int ckpt_save(const char *path, const struct ckpt *c);

/* Reads and verifies path into c (all fields allocated; free with ckpt_free). 0, or -1
 * with a one-line reason in err ("truncated", "bad checksum", "bad model field", ...) and c
 * zeroed. Versions 1 and 2 are read. A version 1 file has no model block: its fields come from
 * the config text as the readers of version 1 took them: "model" (required), "low-dim"
 * (default 128), "size" (32), "stem" (cifar), "head" (0), then checked as version 2's. */
int ckpt_load(const char *path, struct ckpt *c, char *err, size_t errlen);

/* ckpt_load(path), falling back to path.prev when path is missing or corrupt. *used
 * (when not NULL) receives 0 for path, 1 for path.prev. err describes every failure. */
int ckpt_load_latest(const char *path, struct ckpt *c, int *used, char *err, size_t errlen);

void ckpt_free(struct ckpt *c);

/* 0 when m holds fields ckpt_load accepts, else -1 with the first bad one in why
 * ("bad model field low_dim 0 (1..4096)"). */
int ckpt_model_check(const struct ckpt_model *m, char *why, size_t cap);

/* Lookups in a checkpoint's config text, a flat JSON object written by trainer_cfg_json:
 * the string value of "key" unescaped into out (cap bytes, NUL included), or its number.
 * 0, or -1 when the key is absent, has another type or (a string) does not fit. */
int ckpt_config_str(const char *json, const char *key, char *out, size_t cap);
int ckpt_config_num(const char *json, const char *key, double *out);

#endif
