/* A typed client for npid-bankd (the trainer's and evald's view of the memory bank).
 *
 * Wraps a struct msg_client (DEALER, cid + seq, bounded retries: see msg.h) and the
 * proto_bank codec. One request is in flight at a time; sample can be split into
 * bankc_sample_send (returns at once) and bankc_sample_recv, so the trainer overlaps the bank
 * round trip with compute; no other call may be made in between (they fail with EBUSY).
 *
 * Outputs go into caller-provided buffers; after the first request of each kind nothing is
 * allocated per call. Vectors are float32 rows of `dim` values (dim is learnt from init or
 * info; the first call that needs it sends info when unknown).
 *
 * Every call returns 0, or -1 with errno set: ETIMEDOUT (no reply after all retries: bankd
 * down, or a CURVE bankd refusing this client's keys, which looks the same here), EBUSY
 * (a sample is outstanding), EINTR (the stop flag, bankc_set_stop), EPROTO (the server answered with an error or
 * an unreadable reply; bankc_error_code gives the code, e.g. "EMISMATCH", or "EPERM" for a
 * write to a bank whose token this client does not send), EINVAL (bad arguments).
 * bankc_error gives a one-line reason for the last failure.
 *
 * Shards (docs/protocol.md "Shards"): an endpoint list "EP0,EP1,..." names the N shards of
 * one bank, shard i at EPi (each an npid-bankd --shard i/N). The client keeps one request
 * client per shard, with cid "<cid>/s<i>" (so retries are deduplicated per shard), and
 * routes every call: a call's requests go out to every shard concerned before any reply is
 * awaited, each shard retries on its own, and nothing reaches the caller's buffers unless
 * every shard answered (a shard that stays down fails the call with ETIMEDOUT naming its
 * endpoint). init and info go to every shard and check that EPi is shard i of N, holding
 * its range of the same rows, with the same dim, run, manifest and token state (else code
 * EMISMATCH naming the endpoint). get, set, update and the rows sample are split by row
 * and reassembled in the caller's order. Steps: every update and set goes to every shard
 * (an empty row list to a shard holding none of its rows: bankd counts it all the same), so
 * every shard's step is the bank's; replies whose steps differ fail with code EPROTO. So
 * that no shard applies a write another would refuse, the client checks indices (< rows),
 * features (finite, not subnormal, nonzero norm) and momentum before sending any (EINVAL,
 * with code ERANGE for an index, EINVAL otherwise). bankc_sample_send (negatives drawn by
 * bankd) is EINVAL without a request: give the negatives (bankc_rows_send). */
#ifndef NPID_BANKC_H
#define NPID_BANKC_H

#include "common/msg.h"
#include "common/proto_bank.h"

#include <stddef.h>
#include <stdint.h>

struct bankc;

/* endpoint e.g. "tcp://127.0.0.1:5557", or a comma-separated list of a bank's shards in
 * shard order (above); cid NULL for a random one (pass a stable cid to keep retry
 * deduplication across a restart of the caller; with shards at most 57 bytes, for the
 * suffix); timeout_ms per attempt, retries extra attempts (per shard). NULL on failure
 * (errno; EINVAL for an empty endpoint in the list). */
struct bankc *bankc_new(const char *endpoint, const char *cid, int timeout_ms, int retries);
/* bankc_new with the request client's socket options o (msg_client_new; NULL: defaults), e.g.
 * o->curve for a bankd that is a CURVE server. */
struct bankc *bankc_new_opts(const char *endpoint, const char *cid, int timeout_ms, int retries,
                             const struct msg_opts *o);
void bankc_destroy(struct bankc **c);

/* "CODE: message" for the last failure ("" if none). */
const char *bankc_error(const struct bankc *c);
/* The flag that interrupts waits for bankd (EINTR); NULL, the default, makes them wait out
 * their retries (msg_client_set_stop). */
void bankc_set_stop(struct bankc *c, msg_stop *stop);
/* Lowers the retry budget of every later request, and of the outstanding one, to at most
 * retries resends (msg_client_limit_retries). */
void bankc_limit_retries(struct bankc *c, int retries);
/* The code alone: "EMISMATCH", "ETIMEDOUT", ... ("" if none). */
const char *bankc_error_code(const struct bankc *c);
/* The dim learnt from init/info (0 before). */
uint64_t bankc_dim(const struct bankc *c);
/* The underlying request client (for its counters); with shards, shard 0's. */
struct msg_client *bankc_msg_client(struct bankc *c);

/* ---- write token (docs/protocol.md, "token") -------------------------------------------- */

/* Hex digits of a run's token: 32 random bytes. */
#define BANKC_TOKEN_HEX 64

/* Sends token (BANK_TOKEN_MIN..BANK_TOKEN_MAX bytes; copied) in every writing request from
 * now on: init, update, set, snapshot, restore. The init that creates a bank makes it the
 * bank's token; later writes without it get EPERM. NULL: send none. 0, or -1 with EINVAL
 * (bad length). */
int bankc_set_token(struct bankc *c, const char *token);

/* The run's token file (RUN_DIR/bank.token): reads it, or creates it when there is none
 * (32 bytes from getrandom as BANKC_TOKEN_HEX lowercase hex digits and a newline, mode 0600,
 * written to a temp file made with O_CREAT | O_EXCL | O_NOFOLLOW, fsynced, then linked into
 * place, so the name never holds a partial token and two trainers racing agree on one).
 * An existing file must be a regular file (not a link) owned by this user, with no group or
 * other permission bits, holding exactly that text. token receives the hex digits
 * (NUL-terminated); *created (may be NULL) is 1 when this call made the file. Returns 0, or
 * -1 with a one-line reason in err (never quoting the file's content). */
int bankc_token_file(const char *path, char token[BANKC_TOKEN_HEX + 1], int *created, char *err,
                     size_t err_cap);

/* Initialisation mode used by bankc_init (default BANK_INIT_UNIFORM). */
void bankc_set_init_mode(struct bankc *c, enum bank_init_mode mode);
/* Creates the bank (rows x dim, seeded), or accepts the existing identical one. run and
 * manifest may be NULL. *created: 1 when this call created it; *step: updates applied so
 * far. Either out pointer may be NULL. A different shape or manifest fails with code
 * EMISMATCH. */
int bankc_init(struct bankc *c, uint64_t rows, uint64_t dim, uint64_t seed, const char *run,
               const char *manifest, int *created, uint64_t *step);

struct bankc_info {
    uint64_t rows, dim, step;
    char run[128];
    char manifest[128];
    int has_manifest;
    int has_token;            /* the bank takes writes only with its token */
};
int bankc_info(struct bankc *c, struct bankc_info *out);

/* Asks for k negatives (uniform with replacement; exclude: never one of the positives) and
 * the rows of the B positives pos_idx (u32 x B; copied, the caller may reuse it). With
 * shards: EINVAL, nothing sent. */
int bankc_sample_send(struct bankc *c, size_t k, const uint32_t *pos_idx, size_t B, int exclude);
/* Collects the reply: neg_idx u32 x k, neg f32 (k, dim), pos f32 (B, dim); step (may be
 * NULL) the bank step it was read at. */
int bankc_sample_recv(struct bankc *c, uint32_t *neg_idx, float *neg, float *pos, uint64_t *step);
int bankc_sample(struct bankc *c, size_t k, const uint32_t *pos_idx, size_t B, int exclude,
                 uint32_t *neg_idx, float *neg, float *pos, uint64_t *step);
/* As bankc_sample_send with the negatives given instead of drawn: asks for the rows neg_idx
 * (u32 x k, k > 0, in that order; repeats allowed) and the B positives pos_idx (both copied,
 * the caller may reuse them). Returns at once; collect with bankc_sample_recv, which gives
 * the same indices back in its neg_idx (the echo is checked) and fails with code ERANGE when
 * an index is >= rows. Lets the caller draw negatives from its own seed (reproducible across
 * a resume). With shards the rows are asked of the shards holding them (a shard asked for
 * positives only is also asked for one of them as its negative, which is dropped); an
 * index >= rows is then refused here (EINVAL, code ERANGE). */
int bankc_rows_send(struct bankc *c, const uint32_t *neg_idx, size_t k, const uint32_t *pos_idx,
                    size_t B);

/* v <- normalize(momentum v + (1 - momentum) f) for the B rows idx; feat f32 (B, dim).
 * All or nothing: a non-finite or zero-norm feature or a bad index rejects the whole call.
 * *step (may be NULL): updates applied after this one. */
int bankc_update(struct bankc *c, const uint32_t *idx, const float *feat, size_t B,
                 float momentum, uint64_t *step);
/* When bankc_update fails with errno EINTR (the stop flag), the update stays outstanding, as
 * bankd may have applied it: this waits for its reply again (e.g. after bankc_set_stop(c,
 * NULL) and bankc_limit_retries), with bankc_update's results; any other request abandons
 * it instead. */
int bankc_update_finish(struct bankc *c, uint64_t *step);
/* v <- normalize(f) for the B rows idx (warm start); same rules as update. */
int bankc_set(struct bankc *c, const uint32_t *idx, const float *feat, size_t B, uint64_t *step);

/* Reads rows [start, start + count) into out f32 (count, dim), in requests of at most
 * about 4 MiB each. */
int bankc_get(struct bankc *c, uint64_t start, uint64_t count, float *out);

/* Asks bankd to write a snapshot now (DIR/bank.snap). path (may be NULL) receives the file
 * path, *step (may be NULL) the bank step it holds. With shards every shard writes its own
 * file in its own directory; path receives shard 0's. */
int bankc_snapshot(struct bankc *c, char *path, size_t path_cap, uint64_t *step);
/* The same to DIR/bank-<name>.snap (previous kept as .prev); name: 1..64 characters of
 * [A-Za-z0-9_.-] (else EINVAL without a request); NULL: bank.snap. */
int bankc_snapshot_named(struct bankc *c, const char *name, char *path, size_t path_cap,
                         uint64_t *step);
/* Replaces bankd's bank with DIR/bank-<name>.snap or its .prev, whichever is valid and holds
 * exactly `step` (rows, values, per-row bookkeeping, step). Fails with code ENOSNAP when
 * neither does (the message lists what was found), EMISMATCH when the file's shape or
 * manifest differs from the bank's. *step_out (may be NULL): the bank step after restoring.
 * Retries are answered from bankd's cache (applied once). With shards every shard restores
 * its own file of that name and step; when one fails the others may have restored (their
 * steps then differ and later calls fail with EPROTO until a restore succeeds on all). */
int bankc_restore(struct bankc *c, const char *name, uint64_t step, uint64_t *step_out);

/* bankd's statistics; with shards, the whole bank's: counts summed, extremes over the
 * shards, means weighted by rows, snapshot_step the smallest. */
int bankc_stats(struct bankc *c, struct bank_stats_rep *out);

#endif
