/* bankd client: see bankc.h. This file talks to one bankd; a client of several shards
 * routes each call to common/bankc_shards.c (struct bankc: common/bankc_impl.h). */
#include "common/bankc.h"

#include "common/bankc_impl.h"

#include "common/msg.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define BANKC_GET_CHUNK_BYTES ((size_t)4 << 20)

int bankc_fail(struct bankc *c, int err, const char *code, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(c->code, sizeof c->code, "%s", code);
    snprintf(c->err, sizeof c->err, "%s: %s", code, msg);
    errno = err;
    return -1;
}

int bankc_grow(void **p, size_t *cap, size_t n, size_t size)
{
    if (n <= *cap)
        return 0;
    void *q = realloc(*p, n * size);
    if (!q)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

struct bankc *bankc_new(const char *endpoint, const char *cid, int timeout_ms, int retries)
{
    return bankc_new_opts(endpoint, cid, timeout_ms, retries, NULL);
}

struct bankc *bankc_new_opts(const char *endpoint, const char *cid, int timeout_ms, int retries,
                             const struct msg_opts *o)
{
    struct bankc *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    msgpack_sbuffer_init(&c->sb);
    msgpack_packer_init(&c->pk, &c->sb, msgpack_sbuffer_write);
    if (endpoint && strchr(endpoint, ','))
        c->mc = bankc_shards_open(c, endpoint, cid, timeout_ms, retries, o) == 0 ? c->sh[0].mc
                                                                                : NULL;
    else
        c->mc = msg_client_new(endpoint, cid, timeout_ms, retries, o);
    if (!c->mc) {
        int saved = errno;
        bankc_destroy(&c);
        errno = saved;
        return NULL;
    }
    return c;
}

void bankc_destroy(struct bankc **cp)
{
    if (!cp || !*cp)
        return;
    struct bankc *c = *cp;
    if (c->sh)
        bankc_shards_close(c); /* c->mc is shard 0's */
    else
        msg_client_destroy(&c->mc);
    msgpack_sbuffer_destroy(&c->sb);
    free(c->given);
    free(c->given_pos);
    memset(c->token, 0, sizeof c->token);
    free(c);
    *cp = NULL;
}

void bankc_set_stop(struct bankc *c, msg_stop *stop)
{
    if (!c->sh) {
        msg_client_set_stop(c->mc, stop);
        return;
    }
    for (size_t i = 0; i < c->nsh; i++)
        msg_client_set_stop(c->sh[i].mc, stop);
}

void bankc_limit_retries(struct bankc *c, int retries)
{
    if (!c->sh) {
        msg_client_limit_retries(c->mc, retries);
        return;
    }
    for (size_t i = 0; i < c->nsh; i++)
        msg_client_limit_retries(c->sh[i].mc, retries);
}

const char *bankc_error(const struct bankc *c) { return c->err; }
const char *bankc_error_code(const struct bankc *c) { return c->code; }
uint64_t bankc_dim(const struct bankc *c) { return c->dim; }
struct msg_client *bankc_msg_client(struct bankc *c) { return c->mc; }
void bankc_set_init_mode(struct bankc *c, enum bank_init_mode mode) { c->mode = mode; }

/* Starts encoding a request: clears the buffer and fills the header. */
static struct bank_hdr bankc_hdr(struct bankc *c)
{
    msgpack_sbuffer_clear(&c->sb);
    const char *cid = msg_client_cid(c->mc);
    struct bank_hdr h = { BANK_OP_NONE, cid, strlen(cid), msg_client_next_seq(c->mc), 1,
                          NULL, 0 };
    return h;
}

/* The same for a writing request: with the token when one is set. */
static struct bank_hdr bankc_write_hdr(struct bankc *c)
{
    struct bank_hdr h = bankc_hdr(c);
    if (c->token_len) {
        h.token = c->token;
        h.token_len = c->token_len;
    }
    return h;
}

int bankc_set_token(struct bankc *c, const char *token)
{
    if (!token) {
        memset(c->token, 0, sizeof c->token);
        c->token_len = 0;
        return 0;
    }
    size_t len = strlen(token);
    if (len < BANK_TOKEN_MIN || len > BANK_TOKEN_MAX)
        return bankc_fail(c, EINVAL, BANK_EINVAL, "a token is %d..%d bytes", BANK_TOKEN_MIN,
                          BANK_TOKEN_MAX);
    memcpy(c->token, token, len);
    c->token_len = len;
    return 0;
}

static int bankc_send(struct bankc *c, int enc_rc)
{
    if (c->sample_busy)
        return bankc_fail(c, EBUSY, BANK_EBUSY, "a sample request is outstanding");
    if (c->update_busy) {
        /* abandoned: bankc_update_finish was not called */
        if (c->sh)
            bankc_shards_cancel(c);
        else
            msg_client_cancel(c->mc);
        c->update_busy = 0;
    }
    if (enc_rc != 0)
        return bankc_fail(c, ENOMEM, BANK_ENOMEM, "cannot encode the request");
    if (msg_client_send(c->mc, c->sb.data, c->sb.size) != 0)
        return bankc_fail(c, errno, "ESEND", "send failed: %s", strerror(errno));
    return 0;
}

/* Waits for the reply of the outstanding request and decodes it for op. */
static int bankc_wait(struct bankc *c, enum bank_op op, union bank_rep_u *r)
{
    const void *buf;
    size_t len;
    if (msg_client_recv(c->mc, &buf, &len) != 0) {
        if (errno == ETIMEDOUT)
            return bankc_fail(c, ETIMEDOUT, BANK_ETIMEDOUT, "no reply from bankd to %s (if "
                              "the server uses CURVE, check --bank-server-key/--curve-key)",
                              proto_bank_op_name(op));
        return bankc_fail(c, errno, "ERECV", "%s: %s", proto_bank_op_name(op), strerror(errno));
    }
    struct bank_err e;
    if (proto_bank_decode_rep(buf, len, op, r, &e) != 0)
        return bankc_fail(c, EPROTO, e.code, "%s: %s", proto_bank_op_name(op), e.msg);
    c->code[0] = 0;
    c->err[0] = 0;
    return 0;
}

/* Sends an encoded request and waits for its reply. */
static int bankc_call(struct bankc *c, int enc_rc, enum bank_op op, union bank_rep_u *r)
{
    if (bankc_send(c, enc_rc) != 0)
        return -1;
    int rc = bankc_wait(c, op, r);
    if (rc != 0 && errno == EINTR)
        msg_client_cancel(c->mc); /* blocking calls do not stay outstanding */
    return rc;
}

int bankc_init(struct bankc *c, uint64_t rows, uint64_t dim, uint64_t seed, const char *run,
               const char *manifest, int *created, uint64_t *step)
{
    struct bank_init_req q = { rows, dim, seed, run, run ? strlen(run) : 0, manifest,
                               manifest ? strlen(manifest) : 0, c->mode };
    if (c->sh)
        return bankc_shards_init(c, &q, created, step);
    struct bank_hdr h = bankc_write_hdr(c);
    union bank_rep_u r;
    if (bankc_call(c, proto_bank_encode_init_req(&c->pk, &h, &q), BANK_OP_INIT, &r) != 0)
        return -1;
    c->dim = r.init.dim;
    if (created)
        *created = r.init.created;
    if (step)
        *step = r.init.step;
    return 0;
}

int bankc_info(struct bankc *c, struct bankc_info *out)
{
    if (c->sh)
        return bankc_shards_info(c, out);
    struct bank_hdr h = bankc_hdr(c);
    union bank_rep_u r;
    if (bankc_call(c, proto_bank_encode_info_req(&c->pk, &h), BANK_OP_INFO, &r) != 0)
        return -1;
    c->dim = r.info.dim;
    if (out) {
        memset(out, 0, sizeof *out);
        out->rows = r.info.rows;
        out->dim = r.info.dim;
        out->step = r.info.step;
        if (r.info.run)
            snprintf(out->run, sizeof out->run, "%.*s", (int)r.info.run_len, r.info.run);
        out->has_token = r.info.has_token;
        if (r.info.manifest) {
            out->has_manifest = 1;
            snprintf(out->manifest, sizeof out->manifest, "%.*s", (int)r.info.manifest_len,
                     r.info.manifest);
        }
    }
    return 0;
}

/* Learns dim (and, with shards, the rows that route requests) by info when unknown. */
static int bankc_need_dim(struct bankc *c)
{
    if (c->dim && (!c->sh || c->rows))
        return 0;
    return bankc_info(c, NULL);
}

int bankc_sample_send(struct bankc *c, size_t k, const uint32_t *pos_idx, size_t B, int exclude)
{
    if (c->sample_busy)
        return bankc_fail(c, EBUSY, BANK_EBUSY, "a sample request is outstanding");
    if (k == 0 || (B && !pos_idx))
        return bankc_fail(c, EINVAL, BANK_EINVAL, "sample: k must be > 0 and pos given");
    if (c->sh)
        return bankc_fail(c, EINVAL, BANK_EINVAL, "sample: a bank of %zu shards cannot draw "
                          "negatives over all rows: give them (bankc_rows_send)", c->nsh);
    if (bankc_need_dim(c) != 0)
        return -1;
    struct bank_hdr h = bankc_hdr(c);
    struct bank_sample_req q = { k, pos_idx, B, exclude, NULL, 0 };
    if (bankc_send(c, proto_bank_encode_sample_req(&c->pk, &h, &q)) != 0)
        return -1;
    c->sample_busy = 1;
    c->sample_k = k;
    c->sample_b = B;
    c->sample_given = 0;
    return 0;
}

int bankc_rows_send(struct bankc *c, const uint32_t *neg_idx, size_t k, const uint32_t *pos_idx,
                    size_t B)
{
    if (c->sample_busy)
        return bankc_fail(c, EBUSY, BANK_EBUSY, "a sample request is outstanding");
    if (k == 0 || !neg_idx || (B && !pos_idx))
        return bankc_fail(c, EINVAL, BANK_EINVAL, "rows: k must be > 0 and neg_idx and pos given");
    if (bankc_need_dim(c) != 0)
        return -1;
    if (c->sh)
        return bankc_shards_rows_send(c, neg_idx, k, pos_idx, B);
    if (k > c->given_cap) {
        uint32_t *p = realloc(c->given, k * sizeof *p);
        if (!p)
            return bankc_fail(c, ENOMEM, BANK_ENOMEM, "rows: out of memory");
        c->given = p;
        c->given_cap = k;
    }
    memcpy(c->given, neg_idx, k * sizeof *neg_idx);
    struct bank_hdr h = bankc_hdr(c);
    struct bank_sample_req q = { k, pos_idx, B, 0, neg_idx, 1 };
    if (bankc_send(c, proto_bank_encode_sample_req(&c->pk, &h, &q)) != 0)
        return -1;
    c->sample_busy = 1;
    c->sample_k = k;
    c->sample_b = B;
    c->sample_given = 1;
    return 0;
}

int bankc_sample_recv(struct bankc *c, uint32_t *neg_idx, float *neg, float *pos, uint64_t *step)
{
    if (!c->sample_busy)
        return bankc_fail(c, EINVAL, BANK_EINVAL, "no sample request outstanding");
    if (c->sh)
        return bankc_shards_sample_recv(c, neg_idx, neg, pos, step);
    union bank_rep_u r;
    int rc = bankc_wait(c, BANK_OP_SAMPLE, &r);
    if (rc != 0 && errno == EINTR)
        return -1; /* still outstanding: may be collected again */
    c->sample_busy = 0;
    if (rc != 0)
        return -1;
    size_t k = c->sample_k, B = c->sample_b, dim = (size_t)c->dim;
    if (r.sample.k != k || r.sample.nneg != k * dim || r.sample.npos != B * dim)
        return bankc_fail(c, EPROTO, BANK_EPROTO,
                          "sample reply has %zu negatives / %zu + %zu floats, expected %zu "
                          "(dim %zu, B %zu)", r.sample.k, r.sample.nneg, r.sample.npos, k, dim, B);
    if (c->sample_given && memcmp(r.sample.neg_idx, c->given, 4 * k) != 0)
        return bankc_fail(c, EPROTO, BANK_EPROTO, "rows reply echoes other negatives than asked");
    memcpy(neg_idx, r.sample.neg_idx, 4 * k);
    memcpy(neg, r.sample.neg, 4 * k * dim);
    if (B)
        memcpy(pos, r.sample.pos, 4 * B * dim);
    if (step)
        *step = r.sample.step;
    return 0;
}

int bankc_sample(struct bankc *c, size_t k, const uint32_t *pos_idx, size_t B, int exclude,
                 uint32_t *neg_idx, float *neg, float *pos, uint64_t *step)
{
    if (bankc_sample_send(c, k, pos_idx, B, exclude) != 0)
        return -1;
    return bankc_sample_recv(c, neg_idx, neg, pos, step);
}

int bankc_update(struct bankc *c, const uint32_t *idx, const float *feat, size_t B,
                 float momentum, uint64_t *step)
{
    if (B && (!idx || !feat))
        return bankc_fail(c, EINVAL, BANK_EINVAL, "update: idx and feat required");
    if (bankc_need_dim(c) != 0)
        return -1;
    if (c->sh) {
        if (bankc_shards_write_send(c, BANK_OP_UPDATE, idx, feat, B, momentum) != 0)
            return -1;
        return bankc_update_finish(c, step);
    }
    struct bank_hdr h = bankc_write_hdr(c);
    struct bank_update_req q = { idx, B, feat, B * (size_t)c->dim, momentum };
    if (bankc_send(c, proto_bank_encode_update_req(&c->pk, &h, &q)) != 0)
        return -1;
    c->update_busy = 1;
    return bankc_update_finish(c, step);
}

int bankc_update_finish(struct bankc *c, uint64_t *step)
{
    if (!c->update_busy)
        return bankc_fail(c, EINVAL, BANK_EINVAL, "no update request outstanding");
    if (c->sh)
        return bankc_shards_write_finish(c, step);
    union bank_rep_u r;
    int rc = bankc_wait(c, BANK_OP_UPDATE, &r);
    if (rc != 0 && errno == EINTR)
        return -1; /* still outstanding: finish it, or the next request abandons it */
    c->update_busy = 0;
    if (rc != 0)
        return -1;
    if (step)
        *step = r.step.step;
    return 0;
}

int bankc_set(struct bankc *c, const uint32_t *idx, const float *feat, size_t B, uint64_t *step)
{
    if (B && (!idx || !feat))
        return bankc_fail(c, EINVAL, BANK_EINVAL, "set: idx and feat required");
    if (bankc_need_dim(c) != 0)
        return -1;
    if (c->sh) {
        if (bankc_shards_write_send(c, BANK_OP_SET, idx, feat, B, 0) != 0)
            return -1;
        int rc = bankc_shards_write_finish(c, step);
        if (rc != 0 && errno == EINTR) {
            bankc_shards_cancel(c); /* blocking calls do not stay outstanding */
            c->update_busy = 0;
        }
        return rc;
    }
    struct bank_hdr h = bankc_write_hdr(c);
    struct bank_update_req q = { idx, B, feat, B * (size_t)c->dim, 0 };
    union bank_rep_u r;
    if (bankc_call(c, proto_bank_encode_set_req(&c->pk, &h, &q), BANK_OP_SET, &r) != 0)
        return -1;
    if (step)
        *step = r.step.step;
    return 0;
}

int bankc_get(struct bankc *c, uint64_t start, uint64_t count, float *out)
{
    if (bankc_need_dim(c) != 0)
        return -1;
    if (c->sh)
        return bankc_shards_get(c, start, count, out);
    size_t dim = (size_t)c->dim;
    uint64_t per = BANKC_GET_CHUNK_BYTES / (4 * dim);
    if (per == 0)
        per = 1;
    uint64_t done = 0;
    do {
        uint64_t n = count - done < per ? count - done : per;
        struct bank_hdr h = bankc_hdr(c);
        struct bank_get_req q = { start + done, n };
        union bank_rep_u r;
        if (bankc_call(c, proto_bank_encode_get_req(&c->pk, &h, &q), BANK_OP_GET, &r) != 0)
            return -1;
        if (r.get.nrows_f != n * dim)
            return bankc_fail(c, EPROTO, BANK_EPROTO, "get reply has %zu floats, expected %llu",
                              r.get.nrows_f, (unsigned long long)(n * dim));
        memcpy(out + done * dim, r.get.rows, 4 * n * dim);
        done += n;
    } while (done < count);
    return 0;
}

int bankc_snapshot(struct bankc *c, char *path, size_t path_cap, uint64_t *step)
{
    return bankc_snapshot_named(c, NULL, path, path_cap, step);
}

int bankc_snapshot_named(struct bankc *c, const char *name, char *path, size_t path_cap,
                         uint64_t *step)
{
    if (name && !proto_bank_name_ok(name, strlen(name)))
        return bankc_fail(c, EINVAL, BANK_EINVAL, "snapshot name '%.80s' is not 1..%d characters "
                          "of [A-Za-z0-9_.-]", name, BANK_SNAP_NAME_MAX);
    if (c->sh)
        return bankc_shards_snapshot(c, name, path, path_cap, step);
    struct bank_hdr h = bankc_write_hdr(c);
    struct bank_snapshot_req q = { name, name ? strlen(name) : 0 };
    union bank_rep_u r;
    if (bankc_call(c, proto_bank_encode_snapshot_named_req(&c->pk, &h, &q), BANK_OP_SNAPSHOT,
                   &r) != 0)
        return -1;
    if (path && path_cap)
        snprintf(path, path_cap, "%.*s", (int)r.snapshot.path_len, r.snapshot.path);
    if (step)
        *step = r.snapshot.step;
    return 0;
}

int bankc_restore(struct bankc *c, const char *name, uint64_t step, uint64_t *step_out)
{
    if (!name || !proto_bank_name_ok(name, strlen(name)))
        return bankc_fail(c, EINVAL, BANK_EINVAL, "snapshot name '%.80s' is not 1..%d characters "
                          "of [A-Za-z0-9_.-]", name ? name : "(null)", BANK_SNAP_NAME_MAX);
    if (c->sh)
        return bankc_shards_restore(c, name, step, step_out);
    struct bank_hdr h = bankc_write_hdr(c);
    struct bank_restore_req q = { name, strlen(name), step };
    union bank_rep_u r;
    if (bankc_call(c, proto_bank_encode_restore_req(&c->pk, &h, &q), BANK_OP_RESTORE, &r) != 0)
        return -1;
    if (step_out)
        *step_out = r.step.step;
    return 0;
}

int bankc_stats(struct bankc *c, struct bank_stats_rep *out)
{
    if (c->sh)
        return bankc_shards_stats(c, out);
    struct bank_hdr h = bankc_hdr(c);
    union bank_rep_u r;
    if (bankc_call(c, proto_bank_encode_stats_req(&c->pk, &h), BANK_OP_STATS, &r) != 0)
        return -1;
    *out = r.stats;
    return 0;
}

/* ---- the run's token file ------------------------------------------------------------------ */

static int token_err(char *err, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int token_err(char *err, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
    return -1;
}

/* Reads an existing token file; 0, 1 when it does not exist, or -1 (err filled). */
static int token_read(const char *path, char token[BANKC_TOKEN_HEX + 1], char *err, size_t cap)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 1;
        if (errno == ELOOP)
            return token_err(err, cap, "%s is a symbolic link; the run's bank token must be a "
                             "regular file (remove the link)", path);
        return token_err(err, cap, "cannot open %s: %s", path, strerror(errno));
    }
    struct stat st;
    char buf[BANKC_TOKEN_HEX + 2];
    ssize_t n = -1;
    int rc = -1;
    if (fstat(fd, &st) != 0) {
        token_err(err, cap, "cannot stat %s: %s", path, strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        token_err(err, cap, "%s is not a regular file", path);
        goto done;
    }
    if (st.st_uid != geteuid()) {
        token_err(err, cap, "%s belongs to uid %u, not to this user (uid %u): someone else "
                  "could know the bank token; remove it", path, (unsigned)st.st_uid,
                  (unsigned)geteuid());
        goto done;
    }
    if (st.st_mode & 077) {
        token_err(err, cap, "%s has mode %04o: the bank token must be readable by its owner "
                  "only (chmod 600 it)", path, (unsigned)(st.st_mode & 07777));
        goto done;
    }
    do
        n = read(fd, buf, sizeof buf);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        token_err(err, cap, "cannot read %s: %s", path, strerror(errno));
        goto done;
    }
    int ok = n == BANKC_TOKEN_HEX + 1 && buf[BANKC_TOKEN_HEX] == '\n';
    for (int i = 0; ok && i < BANKC_TOKEN_HEX; i++)
        ok = (buf[i] >= '0' && buf[i] <= '9') || (buf[i] >= 'a' && buf[i] <= 'f');
    if (!ok) {
        token_err(err, cap, "%s does not hold a bank token (%d lowercase hex digits and a "
                  "newline)", path, BANKC_TOKEN_HEX);
        goto done;
    }
    memcpy(token, buf, BANKC_TOKEN_HEX);
    token[BANKC_TOKEN_HEX] = 0;
    rc = 0;
done:
    memset(buf, 0, sizeof buf);
    close(fd);
    return rc;
}

/* Writes a new token to a temp file and links it to path. 0 (created), 1 (path appeared
 * meanwhile: read it), or -1 (err filled). */
static int token_create(const char *path, char *err, size_t cap)
{
    unsigned char raw[BANKC_TOKEN_HEX / 2];
    char text[BANKC_TOKEN_HEX + 1], tmp[PATH_MAX];
    static const char hex[] = "0123456789abcdef";
    size_t got = 0;
    while (got < sizeof raw) {
        ssize_t n = getrandom(raw + got, sizeof raw - got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return token_err(err, cap, "getrandom failed: %s", strerror(errno));
        got += (size_t)n;
    }
    for (size_t i = 0; i < sizeof raw; i++) {
        text[2 * i] = hex[raw[i] >> 4];
        text[2 * i + 1] = hex[raw[i] & 15];
    }
    text[BANKC_TOKEN_HEX] = '\n';
    memset(raw, 0, sizeof raw);
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= sizeof tmp)
        return token_err(err, cap, "%s: path too long", path);
    unlink(tmp); /* a crashed earlier process of this pid's, or a planted link */
    int rc = -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        token_err(err, cap, "cannot create %s: %s", tmp, strerror(errno));
        goto wipe;
    }
    ssize_t n;
    do
        n = write(fd, text, sizeof text);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)sizeof text || fsync(fd) != 0) {
        token_err(err, cap, "cannot write %s: %s", tmp, n < 0 || n == (ssize_t)sizeof text ?
                  strerror(errno) : "short write");
        close(fd);
        goto unlink_tmp;
    }
    if (close(fd) != 0) {
        token_err(err, cap, "cannot write %s: %s", tmp, strerror(errno));
        goto unlink_tmp;
    }
    /* link never replaces: a token that appeared meanwhile (another trainer) wins */
    if (link(tmp, path) != 0) {
        if (errno == EEXIST)
            rc = 1;
        else
            token_err(err, cap, "cannot create %s: %s", path, strerror(errno));
        goto unlink_tmp;
    }
    rc = 0;
unlink_tmp:
    unlink(tmp);
    if (rc == 0) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", path);
        int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd); /* best effort: the token is re-created only with a new bank */
            close(dfd);
        }
    }
wipe:
    memset(text, 0, sizeof text);
    return rc;
}

int bankc_token_file(const char *path, char token[BANKC_TOKEN_HEX + 1], int *created, char *err,
                     size_t err_cap)
{
    if (created)
        *created = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        int rc = token_read(path, token, err, err_cap);
        if (rc <= 0)
            return rc;
        rc = token_create(path, err, err_cap);
        if (rc < 0)
            return -1;
        if (rc == 0) {
            if (created)
                *created = 1;
            rc = token_read(path, token, err, err_cap);
            return rc == 0 ? 0 : rc < 0 ? -1 : token_err(err, err_cap, "%s vanished", path);
        }
    }
    return token_err(err, err_cap, "%s: cannot read or create the bank token", path);
}
