/* The memory bank: see bank.h.
 *
 * Initialisation is reproducible row by row: global row i draws its coordinates, in order,
 * from rng_derive(seed, BANK_STREAM_INIT, i), so a shard holds the same rows: uniform mode
 * v = (2 rng_float - 1) s with s = 1/sqrt(dim/3); unit mode v = normalize(rng_normal ...).
 * Negatives come from rng_derive(seed, BANK_STREAM_SAMPLE, 0) advanced by every sample request since start. */
#include "bankd/bank.h"

#include "common/log.h"
#include "common/sha256.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { BANK_STREAM_INIT = 1, BANK_STREAM_SAMPLE = 2 };

struct bank *bank_new_empty(uint64_t rows, size_t dim)
{
    if (rows == 0 || dim == 0 || rows > SIZE_MAX / sizeof(float) / dim) {
        errno = EINVAL;
        return NULL;
    }
    struct bank *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->rows = rows;
    b->dim = dim;
    b->total = rows;
    b->shards = 1;
    b->v = malloc((size_t)rows * dim * sizeof(float));
    b->last_write = calloc((size_t)rows, sizeof *b->last_write);
    b->writes_row = calloc((size_t)rows, sizeof *b->writes_row);
    if (!b->v || !b->last_write || !b->writes_row) {
        bank_destroy(&b);
        errno = ENOMEM;
        return NULL;
    }
    b->sample_rng = rng_derive(0, BANK_STREAM_SAMPLE, 0);
    return b;
}

/* One row of a uniform bank: coordinates (2 rng_float - 1) s, drawn again while the norm
 * is below BANK_MIN_NORM. */
static void bank_draw_uniform(float *v, size_t dim, float s, struct rng *r)
{
    double ss;
    do {
        ss = 0;
        for (size_t j = 0; j < dim; j++) {
            v[j] = (2.0f * rng_float(r) - 1.0f) * s;
            ss += (double)v[j] * v[j];
        }
    } while (!(sqrt(ss) >= BANK_MIN_NORM));
}

/* One row of a unit bank: normal coordinates (drawn again while the norm is below
 * BANK_MIN_NORM), then normalised. */
static void bank_draw_unit(float *v, size_t dim, struct rng *r)
{
    double ss;
    do {
        ss = 0;
        for (size_t j = 0; j < dim; j++) {
            v[j] = (float)rng_normal(r);
            ss += (double)v[j] * v[j];
        }
    } while (!(sqrt(ss) >= BANK_MIN_NORM));
    float inv = (float)(1.0 / sqrt(ss));
    for (size_t j = 0; j < dim; j++)
        v[j] *= inv;
}

struct bank *bank_new(uint64_t rows, size_t dim, uint64_t seed, enum bank_init_mode mode)
{
    return bank_new_shard(rows, dim, seed, mode, 0, 1);
}

struct bank *bank_new_shard(uint64_t total, size_t dim, uint64_t seed, enum bank_init_mode mode,
                            uint32_t shard, uint32_t shards)
{
    if (shards == 0 || shard >= shards || shards > BANK_MAX_SHARDS || total > UINT32_MAX) {
        errno = EINVAL;
        return NULL;
    }
    uint64_t lo = proto_bank_shard_start(total, shard, shards);
    uint64_t rows = proto_bank_shard_start(total, shard + 1ull, shards) - lo;
    struct bank *b = bank_new_empty(rows, dim);
    if (!b)
        return NULL;
    b->lo = lo;
    b->total = total;
    b->shard = shard;
    b->shards = shards;
    b->seed = seed;
    b->mode = mode;
    b->sample_rng = rng_derive(seed, BANK_STREAM_SAMPLE, 0);
    float s = 1.0f / sqrtf((float)dim / 3.0f);
    for (uint64_t i = 0; i < rows; i++) {
        struct rng r = rng_derive(seed, BANK_STREAM_INIT, lo + i); /* the global row's stream */
        if (mode == BANK_INIT_UNIT)
            bank_draw_unit(b->v + i * dim, dim, &r);
        else
            bank_draw_uniform(b->v + i * dim, dim, s, &r);
    }
    return b;
}

uint64_t bank_bytes(uint64_t rows, uint64_t dim)
{
    return (uint64_t)sizeof(struct bank) +
           rows * (dim * sizeof(float) + sizeof(uint64_t) + sizeof(uint32_t));
}

void bank_destroy(struct bank **bp)
{
    if (!bp || !*bp)
        return;
    struct bank *b = *bp;
    free(b->v);
    free(b->last_write);
    free(b->writes_row);
    free(b->scratch_pos);
    free(b->extra);
    free(b);
    *bp = NULL;
}

int bank_set_ids(struct bank *b, const char *run, size_t run_len, const char *manifest,
                 size_t manifest_len)
{
    if (run_len >= sizeof b->run || manifest_len >= sizeof b->manifest)
        return -1;
    memcpy(b->run, run ? run : "", run ? run_len : 0);
    b->run[run ? run_len : 0] = 0;
    b->has_manifest = manifest != NULL;
    memcpy(b->manifest, manifest ? manifest : "", manifest ? manifest_len : 0);
    b->manifest[manifest ? manifest_len : 0] = 0;
    return 0;
}

/* SHA-256 of a token. */
static void token_digest(const void *token, size_t len, unsigned char out[32])
{
    struct sha256 h;
    sha256_init(&h);
    sha256_update(&h, token, len);
    sha256_final(&h, out);
    memset(&h, 0, sizeof h);
}

void bank_set_token(struct bank *b, const void *token, size_t len)
{
    token_digest(token, len, b->token_hash);
    b->has_token = 1;
}

int bank_token_matches(const unsigned char hash[32], const void *token, size_t len)
{
    if (!token)
        return 0;
    unsigned char d[32];
    token_digest(token, len, d);
    volatile unsigned char diff = 0;
    for (int i = 0; i < 32; i++)
        diff |= (unsigned char)(d[i] ^ hash[i]);
    memset(d, 0, sizeof d);
    return diff == 0;
}

int bank_token_ok(const struct bank *b, const void *token, size_t len)
{
    return !b->has_token || bank_token_matches(b->token_hash, token, len);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* The r-th (from 0) value not in the sorted, distinct s[0..n): r plus the count of j with
 * s[j] - j <= r (s[j] - j counts the values below s[j] that are not in s, non-decreasing). */
static uint32_t complement_nth(const uint32_t *s, size_t n, uint32_t r)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s[mid] - (uint32_t)mid <= r)
            lo = mid + 1;
        else
            hi = mid;
    }
    return r + (uint32_t)lo;
}

static int sorted_has(const uint32_t *s, size_t n, uint32_t x)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && s[lo] == x;
}

/* 1 when the global row r is held by b. */
static int bank_holds(const struct bank *b, uint32_t r)
{
    return r >= b->lo && r - b->lo < b->rows;
}

/* The ERANGE of index what[i] = r, which b does not hold. */
static int bank_idx_err(const struct bank *b, const char *what, size_t i, uint32_t r,
                        struct bank_err *e)
{
    if (b->shards > 1)
        return bank_err_set(e, BANK_ERANGE, "%s[%zu] = %u outside this shard's rows [%llu, %llu) "
                            "(shard %u/%u of %llu rows)", what, i, r,
                            (unsigned long long)b->lo, (unsigned long long)(b->lo + b->rows),
                            b->shard, b->shards, (unsigned long long)b->total);
    return bank_err_set(e, BANK_ERANGE, "%s[%zu] = %u out of range (rows %llu)", what, i, r,
                        (unsigned long long)b->rows);
}

/* Checks u32 indices (unaligned) against the bank; 0 or -1 with ERANGE naming what. */
static int bank_check_idx(const struct bank *b, const void *idx, size_t n, const char *what,
                          struct bank_err *e)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t r = proto_bank_u32(idx, i);
        if (!bank_holds(b, r))
            return bank_idx_err(b, what, i, r, e);
    }
    return 0;
}

/* The local row of the global index r (checked). */
static float *bank_row(const struct bank *b, uint32_t r)
{
    return b->v + (size_t)(r - b->lo) * b->dim;
}

/* Copies the rows idx (n u32, checked) to out (n, dim), unaligned. The gather is bound by
 * memory latency (random rows of a bank far larger than the caches), so the rows a few
 * ahead are prefetched. */
static void bank_gather(const struct bank *b, const void *idx, size_t n, void *out)
{
    size_t dim = b->dim, row_bytes = dim * sizeof(float);
    char *o = out;
    enum { AHEAD = 8 };
    for (size_t j = 0; j < n; j++) {
        if (j + AHEAD < n) {
            const char *row = (const char *)bank_row(b, proto_bank_u32(idx, j + AHEAD));
            for (size_t off = 0; off < row_bytes; off += 64)
                __builtin_prefetch(row + off, 0, 0);
        }
        memcpy(o + j * row_bytes, bank_row(b, proto_bank_u32(idx, j)), row_bytes);
    }
}

int bank_sample(struct bank *b, size_t k, const void *pos_idx, size_t npos, int exclude,
                void *neg_idx, void *neg, void *pos, struct bank_err *e)
{
    /* pos_idx (npos,) u32 -> pos (npos, dim); neg_idx (k,) u32, neg (k, dim) */
    if (b->shards > 1)
        return bank_err_set(e, BANK_EINVAL, "this bankd is shard %u/%u (rows [%llu, %llu)) and "
                            "cannot draw negatives over the whole bank: give them explicitly "
                            "(sample with neg_idx)", b->shard, b->shards,
                            (unsigned long long)b->lo, (unsigned long long)(b->lo + b->rows));
    if (bank_check_idx(b, pos_idx, npos, "pos", e) != 0)
        return -1;
    size_t nex = 0;
    if (exclude && npos) {
        if (npos > b->scratch_cap) {
            uint32_t *p = realloc(b->scratch_pos, npos * sizeof *p);
            if (!p)
                return bank_err_set(e, BANK_ENOMEM, "out of memory");
            b->scratch_pos = p;
            b->scratch_cap = npos;
        }
        memcpy(b->scratch_pos, pos_idx, npos * sizeof(uint32_t));
        qsort(b->scratch_pos, npos, sizeof(uint32_t), cmp_u32);
        for (size_t i = 0; i < npos; i++)
            if (nex == 0 || b->scratch_pos[nex - 1] != b->scratch_pos[i])
                b->scratch_pos[nex++] = b->scratch_pos[i];
        if (nex >= b->rows)
            return bank_err_set(e, BANK_ERANGE, "exclude_pos leaves no row to sample");
    }
    char *ni = neg_idx;
    /* draw all indices first, then gather; with at most half the rows excluded, rejection
       (at most 2 draws per index expected), else straight from the complement, so the work
       is bounded by k log(npos) however few rows remain */
    int direct = nex > b->rows / 2;
    for (size_t j = 0; j < k; j++) {
        uint32_t r;
        if (direct) {
            r = complement_nth(b->scratch_pos, nex, (uint32_t)rng_below(&b->sample_rng, b->rows - nex));
        } else {
            do
                r = (uint32_t)rng_below(&b->sample_rng, b->rows);
            while (nex && sorted_has(b->scratch_pos, nex, r));
        }
        memcpy(ni + 4 * j, &r, 4);
    }
    bank_gather(b, neg_idx, k, neg);
    bank_gather(b, pos_idx, npos, pos);
    return 0;
}

int bank_rows(const struct bank *b, const void *want_idx, size_t k, const void *pos_idx,
              size_t npos, void *neg_idx, void *neg, void *pos, struct bank_err *e)
{
    if (bank_check_idx(b, want_idx, k, "neg_idx", e) != 0 ||
        bank_check_idx(b, pos_idx, npos, "pos", e) != 0)
        return -1;
    memmove(neg_idx, want_idx, 4 * k);
    bank_gather(b, neg_idx, k, neg);
    bank_gather(b, pos_idx, npos, pos);
    return 0;
}

/* Checks one feature row (dim f32, unaligned): finite, not subnormal, norm >= BANK_MIN_NORM.
 * 0, or -1 with EINVAL naming row i (bank index r). */
static int bank_check_feat(const char *f, size_t dim, size_t i, uint32_t r, struct bank_err *e)
{
    double ss = 0;
    for (size_t j = 0; j < dim; j++) {
        float x;
        memcpy(&x, f + 4 * j, 4);
        int k = fpclassify(x);
        if (k == FP_NAN || k == FP_INFINITE)
            return bank_err_set(e, BANK_EINVAL, "feat row %zu (idx %u) has a non-finite value",
                                i, r);
        if (k == FP_SUBNORMAL)
            return bank_err_set(e, BANK_EINVAL, "feat row %zu (idx %u) has a subnormal value",
                                i, r);
        ss += (double)x * x;
    }
    if (!(sqrt(ss) >= BANK_MIN_NORM))
        return bank_err_set(e, BANK_EINVAL, "feat row %zu (idx %u) has zero norm (%.3g < %g)", i,
                            r, sqrt(ss), BANK_MIN_NORM);
    return 0;
}

/* Checks indices and features of a write request; 0 or -1 with e. */
static int bank_check_write(const struct bank *b, const void *idx, size_t n, const void *feat,
                            size_t nfeat, struct bank_err *e)
{
    size_t dim = b->dim;
    if (nfeat != n * dim)
        return bank_err_set(e, BANK_EINVAL, "feat has %zu floats, expected %zu x %zu", nfeat, n,
                            dim);
    const char *f = feat;
    for (size_t i = 0; i < n; i++) {
        uint32_t r = proto_bank_u32(idx, i);
        if (!bank_holds(b, r))
            return bank_idx_err(b, "idx", i, r, e);
        if (bank_check_feat(f + 4 * i * dim, dim, i, r, e) != 0)
            return -1;
    }
    return 0;
}

/* Writes row r by the bank's row rule (common/bankrow.h; f checked by bank_check_feat). */
static void bank_write_row(struct bank *b, uint32_t r, const char *f, float a, float c)
{
    bankrow_write(bank_row(b, r), f, b->dim, a, c);
    b->last_write[r - b->lo] = b->step;
    b->writes_row[r - b->lo]++;
    b->writes++;
}

static int bank_write(struct bank *b, const void *idx, size_t n, const void *feat, size_t nfeat,
                      float a, float c, struct bank_err *e)
{
    if (bank_check_write(b, idx, n, feat, nfeat, e) != 0)
        return -1;
    b->step++;
    const char *f = feat;
    for (size_t i = 0; i < n; i++)
        bank_write_row(b, proto_bank_u32(idx, i), f + 4 * i * b->dim, a, c);
    return 0;
}

int bank_update(struct bank *b, const void *idx, size_t n, const void *feat, size_t nfeat,
                float momentum, struct bank_err *e)
{
    return bank_write(b, idx, n, feat, nfeat, momentum, 1.0f - momentum, e);
}

int bank_set(struct bank *b, const void *idx, size_t n, const void *feat, size_t nfeat,
             struct bank_err *e)
{
    return bank_write(b, idx, n, feat, nfeat, 0.0f, 1.0f, e);
}

int bank_check_range(const struct bank *b, uint64_t start, uint64_t count, struct bank_err *e)
{
    if (start >= b->lo && start - b->lo <= b->rows && count <= b->rows - (start - b->lo))
        return 0;
    if (b->shards > 1)
        return bank_err_set(e, BANK_ERANGE, "rows [%llu, %llu + %llu) outside this shard's rows "
                            "[%llu, %llu) (shard %u/%u of %llu rows)", (unsigned long long)start,
                            (unsigned long long)start, (unsigned long long)count,
                            (unsigned long long)b->lo, (unsigned long long)(b->lo + b->rows),
                            b->shard, b->shards, (unsigned long long)b->total);
    return bank_err_set(e, BANK_ERANGE, "rows [%llu, %llu + %llu) outside the bank (rows %llu)",
                        (unsigned long long)start, (unsigned long long)start,
                        (unsigned long long)count, (unsigned long long)b->rows);
}

int bank_get(const struct bank *b, uint64_t start, uint64_t count, void *out, struct bank_err *e)
{
    if (bank_check_range(b, start, count, e) != 0)
        return -1;
    memcpy(out, b->v + (size_t)(start - b->lo) * b->dim, (size_t)count * b->dim * sizeof(float));
    return 0;
}

void bank_stats(const struct bank *b, struct bank_stats_rep *r)
{
    size_t dim = b->dim;
    r->rows = b->rows;
    r->dim = dim;
    r->step = b->step;
    r->writes = b->writes;
    r->norm_min = INFINITY;
    r->norm_max = 0;
    r->upd_min = UINT64_MAX;
    r->upd_max = 0;
    r->rows_written = 0;
    r->stale_max = 0;
    memset(r->stale_hist, 0, sizeof r->stale_hist);
    double nsum = 0, ssum = 0;
    for (uint64_t i = 0; i < b->rows; i++) {
        const float *v = b->v + (size_t)i * dim;
        double ss = 0;
        for (size_t j = 0; j < dim; j++)
            ss += (double)v[j] * v[j];
        double nrm = sqrt(ss);
        nsum += nrm;
        if (nrm < r->norm_min)
            r->norm_min = nrm;
        if (nrm > r->norm_max)
            r->norm_max = nrm;
        uint64_t w = b->writes_row[i];
        if (w)
            r->rows_written++;
        if (w < r->upd_min)
            r->upd_min = w;
        if (w > r->upd_max)
            r->upd_max = w;
        /* a row never written counts as written at step 0 */
        uint64_t stale = b->step - b->last_write[i];
        ssum += (double)stale;
        if (stale > r->stale_max)
            r->stale_max = stale;
        int bucket = 0;
        while (bucket < BANK_STALE_BUCKETS - 1 && stale >= (1ull << bucket))
            bucket++;
        r->stale_hist[bucket]++;
    }
    r->norm_mean = nsum / (double)b->rows;
    r->stale_mean = ssum / (double)b->rows;
}
