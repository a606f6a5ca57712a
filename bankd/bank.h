/* The memory bank: rows x dim float32 in one contiguous array, with per-row bookkeeping
 * (write counts, the step each row was last written) for staleness statistics.
 *
 * step counts applied write requests (update or set), each +1 whatever its batch size.
 * Writes are all-or-nothing: every index and every feature of a request is checked before
 * any row changes. Within one request rows are written in order, so a repeated index sees
 * the result of its earlier occurrence. A feature row is accepted when every value is finite
 * and not subnormal and its L2 norm is at least BANK_MIN_NORM; stored rows never hold
 * subnormal values (results below FLT_MIN are stored as 0).
 *
 * Feature and index arguments may be unaligned (they point into wire frames): the bank
 * reads them with memcpy.
 *
 * A shard (shard i of shards N > 1, proto_bank.h) holds only the global rows
 * [lo, lo + rows) of a bank of total rows; every index a caller passes is global, and one
 * outside that range is ERANGE naming the range. Its rows are bit-identical to the same
 * global rows of an unsharded bank of the same seed. An unsharded bank is shard 0 of 1
 * with lo 0 and total == rows. */
#ifndef NPID_BANKD_BANK_H
#define NPID_BANKD_BANK_H

#include "common/bankrow.h"
#include "common/proto_bank.h"
#include "common/rng.h"

#include <stddef.h>
#include <stdint.h>

/* Smallest L2 norm of a feature row (and of a row bank_new draws): anything smaller is
 * "zero norm", with no direction worth normalising. */
#define BANK_MIN_NORM BANKROW_MIN_NORM

struct bank {
    uint64_t rows;         /* rows held (a shard's own) */
    size_t dim;
    uint64_t lo;           /* global index of row 0 */
    uint64_t total;        /* global rows of the whole bank */
    uint32_t shard, shards;
    float *v;              /* (rows, dim), row-major */
    uint64_t *last_write;  /* (rows,) step at which each row was last written (0: never) */
    uint32_t *writes_row;  /* (rows,) writes applied to each row */
    uint64_t step;         /* write requests applied */
    uint64_t writes;       /* row writes applied */
    uint64_t seed;
    enum bank_init_mode mode;
    char run[256];
    char manifest[256];
    int has_manifest;
    struct rng sample_rng; /* negatives; derived from seed */
    uint32_t *scratch_pos; /* sorted positives for exclude_pos, grown on demand */
    size_t scratch_cap;
    int has_token;         /* writes need the token whose SHA-256 is token_hash */
    unsigned char token_hash[32];
    unsigned char *extra;  /* opaque bytes stored with the bank in snapshots (bankd keeps
                              its reply cache there); malloc'ed, freed with the bank */
    size_t extra_len;
};

/* Allocates rows x dim and fills it per mode from seed: BANK_INIT_UNIFORM each coordinate
 * uniform in [-s, s], s = 1/sqrt(dim/3); BANK_INIT_UNIT random unit vectors. A row whose
 * norm comes out below BANK_MIN_NORM (possible only for a tiny dim) is drawn again from its
 * stream. NULL on failure (errno ENOMEM). */
struct bank *bank_new(uint64_t rows, size_t dim, uint64_t seed, enum bank_init_mode mode);
/* bank_new for shard `shard` of `shards` of a bank of total rows: allocates and draws only
 * the shard's rows, each global row i from its own stream as bank_new draws it. NULL on
 * failure (errno EINVAL: a bad shard, or a shard that would hold no row). */
struct bank *bank_new_shard(uint64_t total, size_t dim, uint64_t seed, enum bank_init_mode mode,
                            uint32_t shard, uint32_t shards);
/* Bytes a rows x dim bank holds (struct, rows, per-row bookkeeping), for refusing a bank
 * before allocating it; no overflow for rows < 2^32 and dim <= BANK_MAX_DIM. */
uint64_t bank_bytes(uint64_t rows, uint64_t dim);
/* An uninitialised bank of this shape, for loading a snapshot into (unsharded: set lo,
 * total, shard and shards for a shard). */
struct bank *bank_new_empty(uint64_t rows, size_t dim);
void bank_destroy(struct bank **b);

/* Sets run and manifest (NULL manifest: none). Strings longer than 255 bytes are refused
 * (-1). */
int bank_set_ids(struct bank *b, const char *run, size_t run_len, const char *manifest,
                 size_t manifest_len);

/* Makes the token (len bytes, BANK_TOKEN_MIN..BANK_TOKEN_MAX) the bank's: only its SHA-256
 * is kept. */
void bank_set_token(struct bank *b, const void *token, size_t len);
/* 1 when a write carrying token (NULL: none) may change b: b has no token, or the token's
 * SHA-256 equals b's (compared in constant time). */
int bank_token_ok(const struct bank *b, const void *token, size_t len);
/* 1 when token (NULL: none) hashes to hash; the comparison takes the same time wherever the
 * digests differ. */
int bank_token_matches(const unsigned char hash[32], const void *token, size_t len);

/* Writes n k-sample negatives: neg_idx (k,) u32 and their rows neg (k, dim), and the rows of
 * the npos positives pos_idx into pos (npos, dim). Output pointers may be unaligned. With
 * exclude, no negative is one of the positives. Returns 0, or -1 with e filled (ERANGE:
 * a positive out of range, or exclude leaves no row to draw; EINVAL on a shard of N > 1,
 * which cannot draw over the whole bank: its negatives must be given, bank_rows). */
int bank_sample(struct bank *b, size_t k, const void *pos_idx, size_t npos, int exclude,
                void *neg_idx, void *neg, void *pos, struct bank_err *e);

/* As bank_sample but with the negatives given: want_idx (k,) u32 is copied to neg_idx
 * (the two may be the same memory) and its rows to neg, in order; nothing is drawn.
 * Returns 0, or -1 with e filled (ERANGE: an index out of range; nothing written). */
int bank_rows(const struct bank *b, const void *want_idx, size_t k, const void *pos_idx,
              size_t npos, void *neg_idx, void *neg, void *pos, struct bank_err *e);

/* v_i <- normalize(m v_i + (1 - m) f_i) for the n rows idx (u32), feat (n, dim) f32.
 * Features must be finite and not subnormal with norm >= BANK_MIN_NORM, indices < rows,
 * nfeat == n x dim; otherwise nothing is applied and -1 is returned with e filled (ERANGE /
 * EINVAL). When the mixed vector's norm is below BANK_MIN_NORM (f exactly opposite to v
 * with matching length) the row becomes normalize(f). On success step advances by 1. */
int bank_update(struct bank *b, const void *idx, size_t n, const void *feat, size_t nfeat,
                float momentum, struct bank_err *e);
/* v_i <- normalize(f_i); same checks and step rule as bank_update. */
int bank_set(struct bank *b, const void *idx, size_t n, const void *feat, size_t nfeat,
             struct bank_err *e);

/* 0 when the global rows [start, start + count) are all held by b, else -1 with ERANGE. */
int bank_check_range(const struct bank *b, uint64_t start, uint64_t count, struct bank_err *e);
/* Copies the global rows [start, start + count) to out (unaligned allowed); -1 with ERANGE. */
int bank_get(const struct bank *b, uint64_t start, uint64_t count, void *out, struct bank_err *e);

/* Fills the statistics fields of r (rows, dim, step, norms, write counts, staleness). */
void bank_stats(const struct bank *b, struct bank_stats_rep *r);

#endif
