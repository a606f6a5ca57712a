/* Embedding export writers: see export.h. */
#include "evald/export.h"

#include "common/durable.h"
#include "common/json.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct export_file {
    FILE *f;
    int owned;                   /* opened here: closed (and renamed) by the export */
    char path[PATH_MAX];         /* final path ("" for a caller's stream) */
    char tmp[PATH_MAX + 8];      /* temp path written until export_finish */
};

struct export {
    enum export_format fmt;
    uint64_t rows, written;      /* rows: EXPORT_ROWS_OPEN until export_finish when open */
    size_t dim;
    int finished;
    int open_rows;               /* the count was not given to export_new */
    struct export_file out;      /* the data (npy, fvecs, jsonl, tsv vectors) */
    struct export_file meta;     /* tsv metadata only */
    struct export_file paths;    /* export_add_paths: one path per row */
    FILE *spool;                 /* npy with an open count: the rows until the header is known */
    unsigned char *buf;          /* (4 + 4 * dim) bytes: one binary row */
};

int export_format_parse(const char *name)
{
    if (!name)
        return -1;
    if (!strcmp(name, "npy"))
        return EXPORT_NPY;
    if (!strcmp(name, "fvecs"))
        return EXPORT_FVECS;
    if (!strcmp(name, "jsonl") || !strcmp(name, "json"))
        return EXPORT_JSONL;
    if (!strcmp(name, "tsv"))
        return EXPORT_TSV;
    return -1;
}

const char *export_format_name(enum export_format f)
{
    switch (f) {
    case EXPORT_NPY: return "npy";
    case EXPORT_FVECS: return "fvecs";
    case EXPORT_JSONL: return "jsonl";
    case EXPORT_TSV: return "tsv";
    }
    return "?";
}

static void put_le32(unsigned char *p, uint32_t x)
{
    p[0] = (unsigned char)x;
    p[1] = (unsigned char)(x >> 8);
    p[2] = (unsigned char)(x >> 16);
    p[3] = (unsigned char)(x >> 24);
}

static void put_f32(unsigned char *p, float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    put_le32(p, u);
}

/* Writes len bytes; 0 or -1 with errno (EIO when stdio did not say). */
static int export_write(FILE *f, const void *p, size_t len)
{
    errno = 0;
    if (len && fwrite(p, 1, len, f) != len) {
        if (!errno)
            errno = EIO;
        return -1;
    }
    return 0;
}

static int export_file_open(struct export_file *ef, const char *path)
{
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof ef->path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(ef->path, path, n + 1);
    snprintf(ef->tmp, sizeof ef->tmp, "%s.tmp", path);
    /* created at the temporary name, never written through a link or file left there */
    if (unlink(ef->tmp) != 0 && errno != ENOENT)
        return -1;
    int fd = open(ef->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0)
        return -1;
    ef->f = fdopen(fd, "wb");
    if (!ef->f) {
        close(fd);
        unlink(ef->tmp);
        return -1;
    }
    ef->owned = 1;
    return 0;
}

/* Flushes; for owned files also fsync, close and rename into place. */
static int export_file_commit(struct export_file *ef)
{
    if (!ef->f)
        return 0;
    errno = 0;
    if (fflush(ef->f) != 0 || ferror(ef->f)) {
        if (!errno)
            errno = EIO;
        return -1;
    }
    if (!ef->owned)
        return 0;
    int rc = fsync(fileno(ef->f));
    int e = errno;
    if (fclose(ef->f) != 0 && rc == 0) {
        rc = -1;
        e = errno;
    }
    ef->f = NULL;
    if (rc == 0 && rename(ef->tmp, ef->path) != 0) {
        rc = -1;
        e = errno;
    }
    if (rc != 0) {
        unlink(ef->tmp);
        errno = e;
        return -1;
    }
    ef->owned = 0;
    return 0;
}

static void export_file_abort(struct export_file *ef)
{
    if (ef->owned) {
        if (ef->f)
            fclose(ef->f);
        unlink(ef->tmp);
    }
    ef->f = NULL;
    ef->owned = 0;
}

/* npy v1.0 header: magic, version, little-endian u16 length, the dict padded with spaces and
 * ended by '\n' so that the data starts at a multiple of 64 bytes. */
static int export_npy_header(struct export *ex)
{
    char dict[160];
    int n = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (%" PRIu64
                     ", %zu), }", ex->rows, ex->dim);
    if (n < 0 || (size_t)n >= sizeof dict - 80)
        return errno = EINVAL, -1;
    size_t total = 10 + (size_t)n + 1;
    size_t pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)n + pad + 1;
    unsigned char head[256];
    memcpy(head, "\x93NUMPY\x01\x00", 8);
    head[8] = (unsigned char)(hlen & 0xff);
    head[9] = (unsigned char)(hlen >> 8);
    memcpy(head + 10, dict, (size_t)n);
    memset(head + 10 + n, ' ', pad);
    head[10 + hlen - 1] = '\n';
    return export_write(ex->out.f, head, 10 + hlen);
}

/* An unlinked read-write file in $TMPDIR (default /tmp): nothing is left behind whatever
 * happens to the process. NULL with errno. */
static FILE *export_spool_new(void)
{
    const char *dir = getenv("TMPDIR");
    char tmpl[PATH_MAX];
    if (!dir || !*dir)
        dir = "/tmp";
    if (snprintf(tmpl, sizeof tmpl, "%s/npid-export-XXXXXX", dir) >= (int)sizeof tmpl)
        return errno = ENAMETOOLONG, NULL;
    int fd = mkostemp(tmpl, O_CLOEXEC);
    if (fd < 0)
        return NULL;
    unlink(tmpl);
    FILE *f = fdopen(fd, "w+b");
    if (!f) {
        int e = errno;
        close(fd);
        errno = e;
    }
    return f;
}

static int export_start(struct export *ex)
{
    switch (ex->fmt) {
    case EXPORT_NPY:
        if (ex->open_rows) /* the header states the count: written by export_finish */
            return (ex->spool = export_spool_new()) ? 0 : -1;
        return export_npy_header(ex);
    case EXPORT_TSV: {
        static const char head[] = "index\tlabel\tclass\tpath\n";
        return export_write(ex->meta.f, head, sizeof head - 1);
    }
    default:
        return 0;
    }
}

static struct export *export_alloc(enum export_format fmt, uint64_t rows, size_t dim)
{
    if (export_format_name(fmt)[0] == '?' || dim == 0 || dim > INT32_MAX / 4) {
        errno = EINVAL;
        return NULL;
    }
    struct export *ex = calloc(1, sizeof *ex);
    if (!ex)
        return NULL;
    ex->fmt = fmt;
    ex->rows = rows;
    ex->open_rows = rows == EXPORT_ROWS_OPEN;
    ex->dim = dim;
    ex->buf = malloc(4 + 4 * dim);
    if (!ex->buf) {
        free(ex);
        return NULL;
    }
    return ex;
}

struct export *export_new_stream(enum export_format fmt, FILE *stream, uint64_t rows, size_t dim)
{
    if (!stream || fmt == EXPORT_TSV) {
        errno = EINVAL;
        return NULL;
    }
    struct export *ex = export_alloc(fmt, rows, dim);
    if (!ex)
        return NULL;
    ex->out.f = stream;
    if (export_start(ex) != 0) {
        int e = errno;
        export_destroy(&ex);
        errno = e;
        return NULL;
    }
    return ex;
}

struct export *export_new(enum export_format fmt, const char *out, uint64_t rows, size_t dim)
{
    if (!out || !*out) {
        errno = EINVAL;
        return NULL;
    }
    if (strcmp(out, "-") == 0) {
        if (fmt == EXPORT_TSV) {
            errno = EINVAL;
            return NULL;
        }
        return export_new_stream(fmt, stdout, rows, dim);
    }
    struct export *ex = export_alloc(fmt, rows, dim);
    if (!ex)
        return NULL;
    int e;
    if (fmt == EXPORT_TSV) {
        char p[PATH_MAX];
        if (mkdir_p(out) != 0)
            goto fail;
        if (snprintf(p, sizeof p, "%s/vectors.tsv", out) >= (int)sizeof p) {
            errno = ENAMETOOLONG;
            goto fail;
        }
        if (export_file_open(&ex->out, p) != 0)
            goto fail;
        snprintf(p, sizeof p, "%s/metadata.tsv", out);
        if (export_file_open(&ex->meta, p) != 0)
            goto fail;
    } else if (export_file_open(&ex->out, out) != 0) {
        goto fail;
    }
    if (export_start(ex) != 0)
        goto fail;
    return ex;
fail:
    e = errno;
    export_destroy(&ex);
    errno = e;
    return NULL;
}

/* TSV field: tabs, newlines and other control characters become spaces. */
static int export_tsv_str(FILE *f, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (fputc(*p < 0x20 ? ' ' : *p, f) == EOF)
            return -1;
    return 0;
}

static int export_row_jsonl(struct export *ex, uint64_t index, const float *v, uint32_t label,
                            const char *path)
{
    FILE *f = ex->out.f;
    for (size_t j = 0; j < ex->dim; j++)
        if (!isfinite(v[j]))
            return errno = EINVAL, -1;
    if (label == EXPORT_NO_LABEL)
        fprintf(f, "{\"index\":%" PRIu64 ",\"label\":null,\"path\":", index);
    else
        fprintf(f, "{\"index\":%" PRIu64 ",\"label\":%" PRIu32 ",\"path\":", index, label);
    if (json_write_cstr(f, path ? path : "") != 0)
        return -1;
    fputs(",\"v\":[", f);
    for (size_t j = 0; j < ex->dim; j++)
        fprintf(f, j ? ",%.9g" : "%.9g", (double)v[j]);
    fputs("]}\n", f);
    return 0;
}

static int export_row_tsv(struct export *ex, uint64_t index, const float *v, uint32_t label,
                          const char *class_name, const char *path)
{
    FILE *f = ex->out.f, *m = ex->meta.f;
    for (size_t j = 0; j < ex->dim; j++)
        fprintf(f, j ? "\t%.9g" : "%.9g", (double)v[j]);
    fputc('\n', f);
    fprintf(m, "%" PRIu64 "\t", index);
    if (label != EXPORT_NO_LABEL)
        fprintf(m, "%" PRIu32, label);
    fputc('\t', m);
    if (class_name && export_tsv_str(m, class_name) != 0)
        return -1;
    fputc('\t', m);
    if (path && export_tsv_str(m, path) != 0)
        return -1;
    fputc('\n', m);
    return 0;
}

int export_row(struct export *ex, uint64_t index, const float *v, uint32_t label,
               const char *class_name, const char *path)
{
    if (ex->finished || (!ex->open_rows && ex->written >= ex->rows)) {
        errno = ERANGE;
        return -1;
    }
    errno = 0;
    int rc = 0;
    switch (ex->fmt) {
    case EXPORT_NPY:
        for (size_t j = 0; j < ex->dim; j++)
            put_f32(ex->buf + 4 * j, v[j]);
        rc = export_write(ex->spool ? ex->spool : ex->out.f, ex->buf, 4 * ex->dim);
        break;
    case EXPORT_FVECS:
        put_le32(ex->buf, (uint32_t)ex->dim);
        for (size_t j = 0; j < ex->dim; j++)
            put_f32(ex->buf + 4 + 4 * j, v[j]);
        rc = export_write(ex->out.f, ex->buf, 4 + 4 * ex->dim);
        break;
    case EXPORT_JSONL:
        rc = export_row_jsonl(ex, index, v, label, path);
        break;
    case EXPORT_TSV:
        rc = export_row_tsv(ex, index, v, label, class_name, path);
        break;
    }
    if (rc == 0 && ex->paths.f && (fputs(path ? path : "", ex->paths.f) == EOF ||
                                   fputc('\n', ex->paths.f) == EOF))
        rc = -1;
    /* stdio buffers: a failed fprintf/fputc shows up in the error flag */
    if (rc == 0 && (ferror(ex->out.f) || (ex->meta.f && ferror(ex->meta.f)) ||
                    (ex->paths.f && ferror(ex->paths.f)) || (ex->spool && ferror(ex->spool)))) {
        if (!errno)
            errno = EIO;
        rc = -1;
    }
    if (rc == 0)
        ex->written++;
    return rc;
}

int export_error(struct export *ex, uint64_t index, const char *path, const char *reason)
{
    if (ex->finished) {
        errno = ERANGE;
        return -1;
    }
    if (ex->fmt != EXPORT_JSONL)
        return 0;
    FILE *f = ex->out.f;
    errno = 0;
    fprintf(f, "{\"index\":%" PRIu64 ",\"label\":null,\"path\":", index);
    if (json_write_cstr(f, path ? path : "") != 0 || fputs(",\"error\":", f) == EOF ||
        json_write_cstr(f, reason ? reason : "") != 0 || fputs("}\n", f) == EOF || ferror(f)) {
        if (!errno)
            errno = EIO;
        return -1;
    }
    return 0;
}

int export_add_paths(struct export *ex, const char *path)
{
    if (ex->finished || ex->written > 0 || ex->paths.f || !path || !*path) {
        errno = EINVAL;
        return -1;
    }
    return export_file_open(&ex->paths, path);
}

/* npy with an open count: the header for the rows written, then the spooled rows. */
static int export_npy_unspool(struct export *ex)
{
    ex->rows = ex->written;
    if (export_npy_header(ex) != 0)
        return -1;
    errno = 0;
    if (fflush(ex->spool) != 0 || fseek(ex->spool, 0, SEEK_SET) != 0) {
        if (!errno)
            errno = EIO;
        return -1;
    }
    unsigned char chunk[1 << 16];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, ex->spool)) > 0)
        if (export_write(ex->out.f, chunk, n) != 0)
            return -1;
    if (ferror(ex->spool)) {
        if (!errno)
            errno = EIO;
        return -1;
    }
    fclose(ex->spool);
    ex->spool = NULL;
    return 0;
}

uint64_t export_rows_written(const struct export *ex)
{
    return ex->written;
}

int export_finish(struct export *ex)
{
    if (ex->finished)
        return 0;
    if (!ex->open_rows && ex->written != ex->rows) {
        errno = EPROTO;
        return -1;
    }
    if (ex->spool && export_npy_unspool(ex) != 0)
        return -1;
    if (export_file_commit(&ex->out) != 0 || export_file_commit(&ex->meta) != 0 ||
        export_file_commit(&ex->paths) != 0)
        return -1;
    ex->finished = 1;
    return 0;
}

void export_destroy(struct export **pex)
{
    if (!pex || !*pex)
        return;
    struct export *ex = *pex;
    export_file_abort(&ex->out);
    export_file_abort(&ex->meta);
    export_file_abort(&ex->paths);
    if (ex->spool)
        fclose(ex->spool);
    free(ex->buf);
    free(ex);
    *pex = NULL;
}
