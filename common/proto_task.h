/* The loader <-> trainer wire protocol, version 1 (docs/protocol.md, section "loader <->
 * trainer", is the grammar; this is its codec).
 *
 * The trainer binds a ROUTER socket, each loader connects a DEALER. Every message is one
 * frame (after the ROUTER's routing-id frame) holding one msgpack map with "v": 1 and
 * "t": <type string>:
 *   loader -> trainer: "hello" (announce / heartbeat), "batch" (a finished task), "fail" (a task
 *                      the loader cannot run at all, e.g. an index beyond its dataset)
 *   trainer -> loader: "welcome" (hello accepted), "refuse" (hello refused: manifest or version
 *                      mismatch; the loader exits), "task"
 * Index, label and flag lists are msgpack bin payloads (u32 little-endian / u8).
 *
 * Decoders validate the whole frame (mp_validate) before reading it, check every field's
 * type and every bin length against the counts it implies, and point into the frame for
 * strings and bins (unaligned: read u32 lists with proto_task_u32 / memcpy). Unknown keys are
 * ignored, so fields can be added compatibly. */
#ifndef NPID_PROTO_TASK_H
#define NPID_PROTO_TASK_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/augment.h"
#include "common/mp.h"

#define TASK_PROTO_VERSION 1
/* Most images per task, and largest output side, accepted by decoders. */
#define TASK_MAX_COUNT 65536u
#define TASK_MAX_SIZE 4096u
/* Most augmented views of each image per task (docs/protocol.md, "views"). */
#define TASK_MAX_VIEWS 2u
/* Longest "aug" override of a task (augment_override's spec). */
#define TASK_MAX_AUG 255u
/* Error codes of "refuse" and "fail". */
#define TASK_EMISMATCH "EMISMATCH"  /* manifest differs */
#define TASK_EVERSION "EVERSION"    /* protocol version differs */
#define TASK_ERANGE "ERANGE"        /* index beyond the loader's dataset */
#define TASK_EINVAL "EINVAL"        /* unknown preset, bad size */

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the task protocol carries little-endian payloads; add byte swapping for this target"
#endif

enum task_msg_type {
    TASK_MSG_NONE = 0, TASK_MSG_HELLO, TASK_MSG_WELCOME, TASK_MSG_REFUSE, TASK_MSG_TASK,
    TASK_MSG_BATCH, TASK_MSG_FAIL
};
const char *proto_task_type_name(enum task_msg_type t);

static inline uint32_t proto_task_u32(const void *p, size_t i)
{
    uint32_t v;
    memcpy(&v, (const char *)p + 4 * i, 4);
    return v;
}

/* A string field: pointer into the frame, not NUL-terminated. */
struct task_str {
    const char *p;
    size_t len;
};

struct task_hello {
    struct task_str manifest;  /* the loader's dataset_manifest */
    uint64_t count;            /* images in the loader's dataset */
    uint32_t capacity;         /* tasks the loader accepts at once (>= 1) */
    uint32_t held;             /* tasks it holds now (informational) */
    struct task_str name;      /* "host:pid", for logs */
};

struct task_welcome {
    uint64_t run;              /* the trainer's run nonce */
};

struct task_refuse {
    struct task_str code;      /* TASK_EMISMATCH, TASK_EVERSION */
    struct task_str msg;
};

struct task_task {
    uint64_t run;
    uint32_t epoch, step;
    const void *idx;           /* u32 x count */
    uint32_t count;
    uint64_t seed;             /* augmentation seed: rng_derive(seed, epoch, index) */
    struct task_str preset;    /* augment_preset name */
    int train;
    uint32_t size;
    enum augment_layout layout;
    uint32_t views;            /* augmented views per image, 1..TASK_MAX_VIEWS (decoder: 1 when
                                  absent; encoder: 0 means 1, and 1 is not sent) */
    struct task_str aug;       /* augment_override spec applied to the preset; empty: none
                                  (decoder: empty when absent; encoder: not sent when empty) */
};

struct task_batch {
    uint64_t run;
    uint32_t epoch, step;
    uint32_t count, size;
    enum augment_layout layout;
    const void *idx;           /* u32 x count */
    const void *labels;        /* u32 x count */
    const uint8_t *bad;        /* u8 x count: 1 = not decodable, replaced (common/batcher.h) */
    uint32_t views;            /* as the task's; pix holds views blocks of count images */
    const uint8_t *pix;        /* views x count x size x size x 3 */
    uint64_t decode_ns, augment_ns;
    struct mp_obj errors;      /* decode: array of str ("path: reason"), type MP_ARRAY */
    uint32_t n_errors;         /* encode: number of strings in errors_list */
    const char *const *errors_list;
};

struct task_fail {
    uint64_t run;
    uint32_t epoch, step;
    struct task_str code, msg;
};

union task_msg {
    struct task_hello hello;
    struct task_welcome welcome;
    struct task_refuse refuse;
    struct task_task task;
    struct task_batch batch;
    struct task_fail fail;
};

/* Decodes one frame. Returns the message type, or TASK_MSG_NONE with a one-line reason in err
 * (not msgpack, not a map, wrong "v" (reason starts with "EVERSION"), unknown "t", missing or
 * mistyped fields, inconsistent bin lengths). */
enum task_msg_type proto_task_decode(const void *buf, size_t len, union task_msg *m, char *err,
                                     size_t err_len);

/* Encoders: one map through pk. Return 0 or -1 (packer write failure). */
int proto_task_encode_hello(msgpack_packer *pk, const struct task_hello *h);
int proto_task_encode_welcome(msgpack_packer *pk, const struct task_welcome *w);
int proto_task_encode_refuse(msgpack_packer *pk, const struct task_refuse *r);
int proto_task_encode_task(msgpack_packer *pk, const struct task_task *t);
/* Uses errors_list / n_errors (not errors). pix holds views * count * size * size * 3 bytes. */
int proto_task_encode_batch(msgpack_packer *pk, const struct task_batch *b);
int proto_task_encode_fail(msgpack_packer *pk, const struct task_fail *f);

/* "chw" / "hwc". */
const char *proto_task_layout_name(enum augment_layout l);

#endif
