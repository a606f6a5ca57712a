/* bankc's insides, shared by common/bankc.c (one bankd) and common/bankc_shards.c (a bank
 * sharded by row range over several bankd, docs/protocol.md "Shards"). Not an API: only
 * those two files include it. */
#ifndef NPID_BANKC_IMPL_H
#define NPID_BANKC_IMPL_H

#include "common/bankc.h"

#include <stddef.h>
#include <stdint.h>

/* One shard of a sharded client: its connection and the part of the current request and
 * reply that is its. */
struct bankc_shard {
    struct msg_client *mc;
    char ep[256];
    uint64_t lo, hi;          /* its global rows [lo, hi), from the bank's rows */
    int sent;                 /* a request of the current call went to it */
    int got;                  /* and its reply is in rep (pointing into mc's last frame) */
    int failed;               /* the reply was an error (c's code and message hold the first) */
    union bank_rep_u rep;
    uint32_t *idx;            /* (nidx,) its rows of the request: update / set / rows negatives */
    size_t nidx, idx_cap;
    float *feat;              /* (nidx, dim) their features (update / set) */
    size_t feat_cap;
    uint32_t *pos;            /* (npos,) its positives (rows sample) */
    size_t npos, pos_cap;
    uint64_t chunks;          /* get: chunks of its part received so far */
};

struct bankc {
    struct msg_client *mc;     /* the one bankd's client; with shards, shard 0's */
    struct bankc_shard *sh;    /* (nsh,) with nsh > 1: the shards in endpoint order */
    size_t nsh;
    msgpack_sbuffer sb;        /* request encoding buffer, reused */
    msgpack_packer pk;
    uint64_t dim;
    uint64_t rows;             /* global rows, learnt from init/info (sharded clients) */
    enum bank_init_mode mode;
    /* the outstanding sample */
    int sample_busy;
    int update_busy;           /* an update interrupted by the stop flag, still outstanding */
    enum bank_op update_op;    /* BANK_OP_UPDATE or BANK_OP_SET (sharded clients) */
    size_t sample_k, sample_b;
    int sample_given;          /* the negatives were given (bankc_rows_send) */
    uint32_t *given;           /* (sample_k,) the given negatives, to check the echo */
    size_t given_cap;
    uint32_t *given_pos;       /* (sample_b,) the positives (sharded clients: to reassemble) */
    size_t given_pos_cap;
    char token[BANK_TOKEN_MAX];  /* sent with writes when token_len > 0 */
    size_t token_len;
    char code[16];
    char err[300];
};

/* Records a failure ("CODE: message") and sets errno to err; returns -1. */
int bankc_fail(struct bankc *c, int err, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Grows *p to hold at least n elements of size each (never shrinks); 0, or -1 (ENOMEM). */
int bankc_grow(void **p, size_t *cap, size_t n, size_t size);

/* ---- common/bankc_shards.c: the calls of a client with nsh > 1 (see bankc.h) ------------ */

/* Connects one msg_client per endpoint of the comma-separated list (cid + "/s<i>"); 0, or
 * -1 with errno (EINVAL: an empty endpoint, or a cid too long for its suffix). */
int bankc_shards_open(struct bankc *c, const char *endpoints, const char *cid, int timeout_ms,
                      int retries, const struct msg_opts *o);
void bankc_shards_close(struct bankc *c);
/* Abandons every request still outstanding (a stopped update nobody finished). */
void bankc_shards_cancel(struct bankc *c);
int bankc_shards_init(struct bankc *c, const struct bank_init_req *q, int *created,
                      uint64_t *step);
int bankc_shards_info(struct bankc *c, struct bankc_info *out);
int bankc_shards_rows_send(struct bankc *c, const uint32_t *neg_idx, size_t k,
                           const uint32_t *pos_idx, size_t B);
int bankc_shards_sample_recv(struct bankc *c, uint32_t *neg_idx, float *neg, float *pos,
                             uint64_t *step);
int bankc_shards_write_send(struct bankc *c, enum bank_op op, const uint32_t *idx,
                            const float *feat, size_t B, float momentum);
int bankc_shards_write_finish(struct bankc *c, uint64_t *step);
int bankc_shards_get(struct bankc *c, uint64_t start, uint64_t count, float *out);
int bankc_shards_snapshot(struct bankc *c, const char *name, char *path, size_t path_cap,
                          uint64_t *step);
int bankc_shards_restore(struct bankc *c, const char *name, uint64_t step, uint64_t *step_out);
int bankc_shards_stats(struct bankc *c, struct bank_stats_rep *out);

#endif
