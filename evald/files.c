/* Image lists and their embeddings: see files.h. */
#include "evald/files.h"

#include "common/durable.h"
#include "common/image.h"
#include "common/log.h"
#include "common/sig.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int files_in_init(struct files_in *in, const char *src, char *err, size_t err_len)
{
    memset(in, 0, sizeof *in);
    in->name = src;
    if (strcmp(src, "-") == 0) {
        in->f = stdin;
        in->name = "stdin";
        return 0;
    }
    in->f = fopen(src, "rb");
    if (!in->f) {
        err_set(err, err_len, "--files %s: %s", src, strerror(errno));
        return -1;
    }
    in->owned = 1;
    return 0;
}

void files_in_deinit(struct files_in *in)
{
    if (in->owned && in->f)
        fclose(in->f);
    in->f = NULL;
    in->owned = 0;
}

int files_in_next(struct files_in *in, const char **path, char *err, size_t err_len)
{
    for (;;) {
        size_t n = 0;
        int c;
        while ((c = getc(in->f)) != EOF && c != '\n') {
            if (c == 0) {
                err_set(err, err_len, "--files %s: line %" PRIu64 " holds a NUL byte: expected one "
                        "path per line (find -print, not -print0)", in->name, in->lineno + 1);
                return -1;
            }
            if (n + 1 >= sizeof in->line) {
                err_set(err, err_len, "--files %s: line %" PRIu64 " is longer than %d bytes: "
                        "expected one path per line", in->name, in->lineno + 1, FILES_LINE_MAX - 1);
                return -1;
            }
            in->line[n++] = (char)c;
        }
        if (c == EOF && ferror(in->f)) {
            err_set(err, err_len, "--files %s: read failed: %s", in->name, strerror(errno));
            return -1;
        }
        if (c == EOF && n == 0)
            return 0;
        in->lineno++;
        if (n > 0 && in->line[n - 1] == '\r')
            n--;
        if (n == 0)
            continue;
        in->line[n] = 0;
        *path = in->line;
        return 1;
    }
}

int files_list_read(struct files_list *fl, const char *src, char *err, size_t err_len)
{
    struct files_in in;
    size_t used = 0, cap = 0, *off = NULL, offcap = 0;
    int rc;
    const char *p;
    memset(fl, 0, sizeof *fl);
    if (files_in_init(&in, src, err, err_len) != 0)
        return -1;
    while ((rc = files_in_next(&in, &p, err, err_len)) == 1) {
        size_t len = strlen(p) + 1;
        if (used + len > cap) {
            size_t nc = cap ? cap * 2 : 1 << 16;
            while (nc < used + len)
                nc *= 2;
            char *nb = realloc(fl->buf, nc);
            if (!nb)
                goto oom;
            fl->buf = nb;
            cap = nc;
        }
        if (fl->n == offcap) {
            size_t nc = offcap ? offcap * 2 : 1024;
            size_t *no = realloc(off, nc * sizeof *off);
            if (!no)
                goto oom;
            off = no;
            offcap = nc;
        }
        memcpy(fl->buf + used, p, len);
        off[fl->n++] = used;
        used += len;
    }
    files_in_deinit(&in);
    if (rc < 0)
        goto fail;
    fl->paths = malloc((fl->n ? fl->n : 1) * sizeof *fl->paths);
    if (!fl->paths) {
        err_set(err, err_len, "--files %s: out of memory", src);
        goto fail;
    }
    for (size_t i = 0; i < fl->n; i++)
        fl->paths[i] = fl->buf + off[i];
    free(off);
    return 0;
oom:
    files_in_deinit(&in);
    err_set(err, err_len, "--files %s: out of memory after %zu paths", src, fl->n);
fail:
    free(off);
    files_list_deinit(fl);
    return -1;
}

void files_list_deinit(struct files_list *fl)
{
    free(fl->paths);
    free(fl->buf);
    memset(fl, 0, sizeof *fl);
}

int files_decode(struct feat_model *m, const char *path, struct jpeg_image *img, char *err,
                 size_t err_len)
{
    uint64_t size;
    int fd = file_open_regular(path, &size);
    if (fd < 0) {
        err_set(err, err_len, "%s", errno == EINVAL ? "not a regular file" : strerror(errno));
        return -1;
    }
    size_t max = jpeg_dec_limits(m->dec)->max_file_bytes;
    uint8_t *buf = NULL;
    int rc = -1;
    if (size == 0)
        err_set(err, err_len, "empty file");
    else if (size > max)
        err_set(err, err_len, "file too large (%" PRIu64 " bytes, limit %zu)", size, max);
    else if (!(buf = jpeg_dec_file_buffer(m->dec, (size_t)size)))
        err_set(err, err_len, "out of memory for %" PRIu64 " bytes", size);
    else if (file_pread_full(fd, buf, (size_t)size, 0) != 0)
        err_set(err, err_len, "read failed: %s",
                errno == ENODATA ? "the file shrank while read" : strerror(errno));
    else
        rc = 0;
    close(fd);
    if (rc != 0)
        return -1;
    /* the scale as feat_dataset's: the same file gives the same pixels as through a dataset */
    return image_decode_pick(m->dec, buf, (size_t)size, feat_scale, m, img, err, err_len);
}

int files_embed(struct feat_model *m, const char *src, enum export_format fmt, const char *out,
                const char *paths_out)
{
    char err[1024], why[512];
    struct files_in in;
    struct export *ex = NULL;
    size_t d = (size_t)m->low_dim;
    uint64_t index = 0, failed = 0;
    int ret = EXIT_FAIL, rc;
    const char *path;
    float *v = malloc(d * sizeof *v);
    if (!v)
        return EXIT_FAIL;
    if (files_in_init(&in, src, err, sizeof err) != 0) {
        log_error("%s", err);
        free(v);
        return EXIT_FAIL;
    }
    ex = export_new(fmt, out, EXPORT_ROWS_OPEN, d);
    if (!ex) {
        log_error("embed: cannot write %s: %s", out, strerror(errno));
        goto out;
    }
    if (paths_out && export_add_paths(ex, paths_out) != 0) {
        log_error("embed: cannot write %s: %s", paths_out, strerror(errno));
        goto out;
    }
    while ((rc = files_in_next(&in, &path, err, sizeof err)) == 1) {
        if (sig_stop) {
            log_error("embed: stopped by a signal after %" PRIu64 " images; %s is incomplete",
                      index, out);
            goto out;
        }
        struct jpeg_image img;
        int ok = files_decode(m, path, &img, why, sizeof why) == 0;
        if (ok) {
            feat_image(m, &img, v);
            if (export_row(ex, index, v, EXPORT_NO_LABEL, NULL, path) != 0) {
                if (errno != EINVAL) {
                    log_error("embed: %s to %s: %s", path, out, strerror(errno));
                    goto out;
                }
                /* nothing was written for the row: an error line in its place */
                snprintf(why, sizeof why, "non-finite value in the embedding (JSON cannot carry it)");
                ok = 0;
            }
        }
        if (!ok) {
            log_error("%s: %s", path, why);
            failed++;
            if (export_error(ex, index, path, why) != 0) {
                log_error("embed: %s to %s: %s", path, out, strerror(errno));
                goto out;
            }
        }
        index++;
    }
    if (rc < 0) {
        log_error("%s", err);
        goto out;
    }
    if (index == 0) {
        log_error("embed: --files %s holds no path", in.name);
        goto out;
    }
    if (failed == index) {
        log_error("embed: none of the %" PRIu64 " images of %s could be read", index, in.name);
        goto out;
    }
    if (export_finish(ex) != 0) {
        log_error("embed: finishing %s: %s", out, strerror(errno));
        goto out;
    }
    log_info("embed: %" PRIu64 " of %" PRIu64 " images of %s (%" PRIu64 " failed), %zu-d %s to %s%s%s",
             index - failed, index, in.name, failed, d, export_format_name(fmt), out,
             paths_out ? ", paths to " : "", paths_out ? paths_out : "");
    ret = EXIT_OK;
out:
    export_destroy(&ex);
    files_in_deinit(&in);
    free(v);
    return ret;
}
