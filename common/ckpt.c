/* Checkpoint files (see ckpt.h). The host is little-endian (x86-64); fields are written
 * as their in-memory representation. */
#include "common/ckpt.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/durable.h"
#include "common/nn/net.h"

#define CKPT_MAGIC "NPIDCKPT"
#define CKPT_HDR 128
#define CKPT_MODEL_BLOCK 48   /* version 2: name[32], low_dim, size, stem, head (u32) */
/* a checkpoint is at most this large (16 GiB): refuse absurd counts before allocating */
#define CKPT_MAX_BYTES ((uint64_t)16 << 30)

static void put_u32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put_u64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get_u32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get_u64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* Finds the value text after "key": in a flat JSON object; NULL when absent. */
static const char *config_find(const char *json, const char *key)
{
    size_t kl = strlen(key);
    for (const char *p = json; (p = strchr(p, '"')) != NULL; p++) {
        if (strncmp(p + 1, key, kl) == 0 && p[1 + kl] == '"') {
            const char *v = p + 2 + kl;
            while (*v == ' ')
                v++;
            if (*v != ':')
                continue;
            v++;
            while (*v == ' ')
                v++;
            return v;
        }
    }
    return NULL;
}

int ckpt_config_str(const char *json, const char *key, char *out, size_t cap)
{
    const char *v = config_find(json, key);
    if (!v || *v != '"' || cap == 0)
        return -1;
    size_t n = 0;
    for (v++; *v && *v != '"'; v++) {
        if (*v == '\\' && v[1])
            v++;
        if (n + 1 >= cap)
            return -1;
        out[n++] = *v;
    }
    if (*v != '"')
        return -1;
    out[n] = 0;
    return 0;
}

int ckpt_config_num(const char *json, const char *key, double *out)
{
    const char *v = config_find(json, key);
    if (!v)
        return -1;
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (end == v || errno || !isfinite(d))
        return -1;
    *out = d;
    return 0;
}

int ckpt_model_check(const struct ckpt_model *m, char *why, size_t cap)
{
    if (!memchr(m->name, 0, sizeof m->name))
        snprintf(why, cap, "bad model field name (not NUL-terminated in %d bytes)",
                 CKPT_MODEL_NAME);
    else if (!net_model_known(m->name))
        snprintf(why, cap, "bad model field name \"%s\" (not a network preset)", m->name);
    else if (m->low_dim < 1 || m->low_dim > 4096)
        snprintf(why, cap, "bad model field low_dim %u (1..4096)", m->low_dim);
    else if (m->size < 8 || m->size > 1024)
        snprintf(why, cap, "bad model field size %u (8..1024)", m->size);
    else if (m->stem > NET_STEM_IMAGENET)
        snprintf(why, cap, "bad model field stem %u (0 cifar, 1 s2, 2 s4, 3 imagenet)", m->stem);
    else if (m->head > 8192)
        snprintf(why, cap, "bad model field head %u (0..8192)", m->head);
    else
        return 0;
    return -1;
}

/* A number of a version 1 config into *out: def when absent (as version 1's readers took
 * it), -1 with why when it is not a u32 (the ranges are ckpt_model_check's). */
static int v1_u32(const char *json, const char *key, double def, uint32_t *out, char *why,
                  size_t cap)
{
    double d = def;
    ckpt_config_num(json, key, &d);
    if (!(d >= 0 && d <= (double)UINT32_MAX)) {
        snprintf(why, cap, "bad model field %s %g in the version 1 config", key, d);
        return -1;
    }
    *out = (uint32_t)d;
    return 0;
}

/* The model fields of a version 1 file, which has no model block: the v1 fallback, the one
 * place the network is read from the config text. Defaults are those of the files written
 * before each key existed: no "stem" is the CIFAR stem, no "head" the single Linear. */
static int v1_model(const char *json, struct ckpt_model *m, char *why, size_t cap)
{
    char stem[16];
    memset(m, 0, sizeof *m);
    if (ckpt_config_str(json, "model", m->name, sizeof m->name) != 0) {
        snprintf(why, cap, "bad model field name: the version 1 config has no \"model\"");
        return -1;
    }
    if (v1_u32(json, "low-dim", 128, &m->low_dim, why, cap) != 0 ||
        v1_u32(json, "size", 32, &m->size, why, cap) != 0 ||
        v1_u32(json, "head", 0, &m->head, why, cap) != 0)
        return -1;
    if (ckpt_config_str(json, "stem", stem, sizeof stem) != 0)
        snprintf(stem, sizeof stem, "cifar");
    int st = net_stem_parse(stem);
    if (st < 0) {
        snprintf(why, cap, "bad model field stem \"%s\" in the version 1 config", stem);
        return -1;
    }
    m->stem = (uint32_t)st;
    return 0;
}

static int ckpt_append(struct durable_file *f, uint32_t *crc, const void *buf, size_t len)
{
    *crc = crc32c(*crc, buf, len);
    return durable_append(f, buf, len);
}

int ckpt_save(const char *path, const struct ckpt *c)
{
    const char *cfg = c->config ? c->config : "";
    const char *bp = c->bank_path ? c->bank_path : "";
    size_t cl = strlen(cfg), bl = strlen(bp);
    char why[128];
    if (cl > CKPT_MAX_TEXT || bl > CKPT_MAX_TEXT || ckpt_model_check(&c->model, why, sizeof why)) {
        errno = EINVAL;
        return -1;
    }
    unsigned char mb[CKPT_MODEL_BLOCK];
    memset(mb, 0, sizeof mb);
    memcpy(mb, c->model.name, strlen(c->model.name)); /* NUL-padded: checked above */
    put_u32(mb + 32, c->model.low_dim);
    put_u32(mb + 36, c->model.size);
    put_u32(mb + 40, c->model.stem);
    put_u32(mb + 44, c->model.head);
    uint64_t total = CKPT_HDR + CKPT_MODEL_BLOCK + cl + bl
                     + 4 * (uint64_t)(c->n_params + c->n_buffers + c->n_momentum);
    unsigned char h[CKPT_HDR];
    memset(h, 0, sizeof(h));
    memcpy(h, CKPT_MAGIC, 8);
    put_u32(h + 8, CKPT_VERSION);
    put_u64(h + 16, total);
    put_u64(h + 24, c->step);
    put_u64(h + 32, c->epoch);
    put_u64(h + 40, c->epoch_pos);
    memcpy(h + 48, &c->z, 8);
    for (int i = 0; i < 4; i++) put_u64(h + 56 + 8 * i, c->rng.s[i]);
    put_u64(h + 88, c->bank_step);
    put_u64(h + 96, c->n_params);
    put_u64(h + 104, c->n_buffers);
    put_u64(h + 112, c->n_momentum);
    put_u32(h + 120, (uint32_t)cl);
    put_u32(h + 124, (uint32_t)bl);

    struct durable_file f;
    if (durable_open(&f, path) < 0) return -1;
    uint32_t crc = crc32c(0, h + 16, CKPT_HDR - 16);
    if (durable_append(&f, h, CKPT_HDR) < 0 || ckpt_append(&f, &crc, mb, sizeof mb) < 0
        || ckpt_append(&f, &crc, cfg, cl) < 0
        || ckpt_append(&f, &crc, bp, bl) < 0
        || ckpt_append(&f, &crc, c->params, 4 * c->n_params) < 0
        || ckpt_append(&f, &crc, c->buffers, 4 * c->n_buffers) < 0
        || ckpt_append(&f, &crc, c->momentum, 4 * c->n_momentum) < 0)
        goto abort;
    unsigned char cb[4];
    put_u32(cb, crc);
    if (durable_pwrite(&f, 12, cb, 4) < 0) goto abort;
    return durable_commit(&f);
abort:;
    int e = errno;
    durable_abort(&f);
    errno = e;
    return -1;
}

void ckpt_free(struct ckpt *c)
{
    free(c->config);
    free(c->bank_path);
    free(c->params);
    free(c->buffers);
    free(c->momentum);
    memset(c, 0, sizeof(*c));
}

static char *dup_text(const unsigned char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

static float *dup_floats(const unsigned char *p, size_t n)
{
    float *f = malloc(n ? 4 * n : 4);
    if (f) memcpy(f, p, 4 * n);
    return f;
}

/* Bytes before the config text in a file of header h's version (1 or 2). */
static uint64_t ckpt_fixed(const unsigned char *h)
{
    return CKPT_HDR + (get_u32(h + 8) == 1 ? 0 : CKPT_MODEL_BLOCK);
}

/* Opens path (a regular file only) and checks its header against the file's size before
 * anything is allocated: fd and the whole file in *buf, or -1 with a reason in err. */
static int ckpt_read(const char *path, unsigned char **buf, size_t *len, char *err, size_t errlen)
{
    uint64_t size;
    unsigned char h[CKPT_HDR];
    int fd = file_open_regular(path, &size);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, errno == EINVAL ? "not a regular file" : strerror(errno));
        return -1;
    }
    *buf = NULL;
    if (size < CKPT_HDR) {
        snprintf(err, errlen, "%s: truncated (%llu bytes, header needs %d)", path,
                 (unsigned long long)size, CKPT_HDR);
    } else if (file_pread_full(fd, h, CKPT_HDR, 0) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
    } else if (memcmp(h, CKPT_MAGIC, 8) != 0) {
        snprintf(err, errlen, "%s: not a checkpoint (bad magic)", path);
    } else if (get_u32(h + 8) != 1 && get_u32(h + 8) != CKPT_VERSION) {
        snprintf(err, errlen, "%s: unsupported format version %u (expected 1 or %u)", path,
                 get_u32(h + 8), CKPT_VERSION);
    } else if (get_u64(h + 16) != size) {
        snprintf(err, errlen, "%s: %s (header says %llu bytes, file has %llu)", path,
                 get_u64(h + 16) > size ? "truncated" : "trailing bytes",
                 (unsigned long long)get_u64(h + 16), (unsigned long long)size);
    } else if (get_u64(h + 96) > CKPT_MAX_BYTES / 4 || get_u64(h + 104) > CKPT_MAX_BYTES / 4 ||
               get_u64(h + 112) > CKPT_MAX_BYTES / 4 ||
               ckpt_fixed(h) + get_u32(h + 120) + get_u32(h + 124) +
                       4 * (get_u64(h + 96) + get_u64(h + 104) + get_u64(h + 112)) != size) {
        snprintf(err, errlen, "%s: inconsistent section sizes", path);
    } else if (size > CKPT_MAX_BYTES) {
        snprintf(err, errlen, "%s: %llu bytes, larger than any checkpoint (%llu)", path,
                 (unsigned long long)size, (unsigned long long)CKPT_MAX_BYTES);
    } else if (!(*buf = malloc(size))) {
        snprintf(err, errlen, "%s: out of memory (%llu bytes)", path, (unsigned long long)size);
    } else if (file_pread_full(fd, *buf, size, 0) != 0) {
        snprintf(err, errlen, "%s: %s", path, errno == ENODATA ? "shrank while read" : strerror(errno));
    } else {
        close(fd);
        *len = size;
        return 0;
    }
    free(*buf);
    *buf = NULL;
    close(fd);
    return -1;
}

int ckpt_load(const char *path, struct ckpt *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    unsigned char *buf = NULL;
    size_t len = 0;
    if (ckpt_read(path, &buf, &len, err, errlen) != 0)
        return -1;
    const unsigned char *p = buf;
    uint32_t crc = crc32c(0, p + 16, len - 16);
    if (crc != get_u32(p + 12)) {
        snprintf(err, errlen, "%s: bad checksum (corrupt)", path);
        goto fail;
    }
    uint64_t np = get_u64(p + 96), nb = get_u64(p + 104), nm = get_u64(p + 112);
    uint64_t cl = get_u32(p + 120), bl = get_u32(p + 124); /* checked by ckpt_read */
    uint32_t version = get_u32(p + 8);                     /* 1 or 2: checked by ckpt_read */
    c->step = get_u64(p + 24);
    c->epoch = get_u64(p + 32);
    c->epoch_pos = get_u64(p + 40);
    memcpy(&c->z, p + 48, 8);
    for (int i = 0; i < 4; i++) c->rng.s[i] = get_u64(p + 56 + 8 * i);
    c->bank_step = get_u64(p + 88);
    c->n_params = np;
    c->n_buffers = nb;
    c->n_momentum = nm;
    const unsigned char *q = p + CKPT_HDR;
    if (version >= 2) {
        memcpy(c->model.name, q, CKPT_MODEL_NAME);
        c->model.low_dim = get_u32(q + 32);
        c->model.size = get_u32(q + 36);
        c->model.stem = get_u32(q + 40);
        c->model.head = get_u32(q + 44);
        q += CKPT_MODEL_BLOCK;
    }
    c->config = dup_text(q, cl);
    q += cl;
    c->bank_path = dup_text(q, bl);
    q += bl;
    c->params = dup_floats(q, np);
    q += 4 * np;
    c->buffers = dup_floats(q, nb);
    q += 4 * nb;
    c->momentum = dup_floats(q, nm);
    if (!c->config || !c->bank_path || !c->params || !c->buffers || !c->momentum) {
        snprintf(err, errlen, "%s: out of memory", path);
        ckpt_free(c);
        goto fail;
    }
    char why[160];
    int bad = version == 1 ? v1_model(c->config, &c->model, why, sizeof why) : 0;
    if (bad == 0 && ckpt_model_check(&c->model, why, sizeof why) != 0)
        bad = version == 1 ? 1 : -1; /* 1: from a version 1 config */
    if (bad) {
        snprintf(err, errlen, "%s: %s%s", path, why, bad == 1 ? " (version 1 config)" : "");
        ckpt_free(c);
        goto fail;
    }
    free(buf);
    return 0;
fail:
    free(buf);
    return -1;
}

int ckpt_load_latest(const char *path, struct ckpt *c, int *used, char *err, size_t errlen)
{
    char e1[512], e2[512], prev[PATH_MAX + 8];
    if (ckpt_load(path, c, e1, sizeof(e1)) == 0) {
        if (used) *used = 0;
        return 0;
    }
    snprintf(prev, sizeof(prev), "%s.prev", path);
    if (ckpt_load(prev, c, e2, sizeof(e2)) == 0) {
        if (used) *used = 1;
        snprintf(err, errlen, "%s; used %s", e1, prev);
        return 0;
    }
    snprintf(err, errlen, "%s; %s", e1, e2);
    return -1;
}
