/* Unit tests for evald's output writers: the embedding export (evald/export.h), every format
 * written and read back (the .npy and the JSON lines also by /usr/bin/python3 with NumPy /
 * json when present), atomic path outputs, row-count and write errors, an open row count
 * (embed --files); and the retrieval grid JPEG (evald/grid.h), decoded back. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/durable.h"
#include "common/rng.h"
#include "common/jpeg.h"
#include "evald/export.h"
#include "evald/grid.h"

static char tmpdir[256];

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/npid-check-export-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void teardown(void)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
}

static float *rand_rows(size_t n, size_t d, uint64_t seed)
{
    struct rng r;
    rng_seed(&r, seed);
    float *x = malloc(n * d * sizeof *x);
    for (size_t i = 0; i < n * d; i++)
        x[i] = (float)rng_normal(&r) * 1e-3f * (float)(i % 7 + 1);
    return x;
}

static int have_numpy(void)
{
    return access("/usr/bin/python3", X_OK) == 0 &&
           system("/usr/bin/python3 -c 'import numpy' 2>/dev/null") == 0;
}

static const char *const paths[3] = { "train/cat/0001.jpg", "train/\"odd\\name\".jpg", "train/tab\there\nnl.jpg" };

/* Writes n rows of x (n, d) with labels i % 3 and the paths above; returns 0 on success. */
static int write_all(struct export *ex, const float *x, size_t n, size_t d)
{
    for (size_t i = 0; i < n; i++)
        if (export_row(ex, 100 + i, x + i * d, (uint32_t)(i % 3), i % 3 == 2 ? "c\t2" : "cls",
                       paths[i % 3]) != 0)
            return -1;
    return 0;
}

START_TEST(test_npy)
{
    const size_t n = 37, d = 5;
    float *x = rand_rows(n, d, 1);
    char path[512];
    snprintf(path, sizeof path, "%s/emb.npy", tmpdir);
    struct export *ex = export_new(EXPORT_NPY, path, n, d);
    ck_assert_ptr_nonnull(ex);
    ck_assert_int_eq(write_all(ex, x, n, d), 0);
    /* nothing at the final path until finish */
    ck_assert_int_ne(access(path, F_OK), 0);
    ck_assert_int_eq(export_finish(ex), 0);
    ck_assert_uint_eq(export_rows_written(ex), n);
    export_destroy(&ex);
    ck_assert_ptr_null(ex);
    void *buf;
    size_t len;
    ck_assert_int_eq(file_read_all(path, 1 << 20, &buf, &len), 0);
    const unsigned char *b = buf;
    ck_assert_mem_eq(b, "\x93NUMPY\x01\x00", 8);
    size_t hlen = b[8] | (size_t)b[9] << 8;
    ck_assert_uint_eq((10 + hlen) % 64, 0);
    ck_assert_int_eq(b[10 + hlen - 1], '\n');
    char *hdr = strndup((const char *)b + 10, hlen);
    ck_assert_ptr_nonnull(strstr(hdr, "'descr': '<f4'"));
    ck_assert_ptr_nonnull(strstr(hdr, "'fortran_order': False"));
    ck_assert_ptr_nonnull(strstr(hdr, "'shape': (37, 5)"));
    free(hdr);
    ck_assert_uint_eq(len, 10 + hlen + n * d * 4);
    ck_assert_mem_eq(b + 10 + hlen, x, n * d * 4); /* little-endian host */
    free(buf);

    if (have_numpy()) {
        /* NumPy reads it back and finds the same values */
        char raw[512], cmd[2048];
        snprintf(raw, sizeof raw, "%s/emb.f32", tmpdir);
        ck_assert_int_eq(durable_write(raw, x, n * d * 4), 0);
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 -c \"import numpy as np, sys; a = np.load(sys.argv[1]); "
                 "b = np.fromfile(sys.argv[2], '<f4').reshape(37, 5); "
                 "sys.exit(0 if a.dtype == np.float32 and a.shape == (37, 5) and "
                 "a.flags.c_contiguous and (a == b).all() else 1)\" '%s' '%s'", path, raw);
        ck_assert_int_eq(system(cmd), 0);
    } else {
        fprintf(stderr, "check_export: /usr/bin/python3 with numpy not found; npy read-back skipped\n");
    }
    free(x);
}
END_TEST

START_TEST(test_npy_empty_and_wide)
{
    /* zero rows is a valid (0, d) array; a large dim keeps the header aligned */
    char path[512];
    snprintf(path, sizeof path, "%s/empty.npy", tmpdir);
    struct export *ex = export_new(EXPORT_NPY, path, 0, 2048);
    ck_assert_ptr_nonnull(ex);
    ck_assert_int_eq(export_finish(ex), 0);
    export_destroy(&ex);
    void *buf;
    size_t len;
    ck_assert_int_eq(file_read_all(path, 1 << 20, &buf, &len), 0);
    ck_assert_uint_eq(len % 64, 0);
    ck_assert_ptr_nonnull(memmem(buf, len, "(0, 2048)", 9));
    free(buf);
    if (have_numpy()) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c \"import numpy as np, sys; "
                 "sys.exit(0 if np.load(sys.argv[1]).shape == (0, 2048) else 1)\" '%s'", path);
        ck_assert_int_eq(system(cmd), 0);
    }
}
END_TEST

START_TEST(test_fvecs)
{
    const size_t n = 9, d = 3;
    float *x = rand_rows(n, d, 2);
    char path[512];
    snprintf(path, sizeof path, "%s/emb.fvecs", tmpdir);
    struct export *ex = export_new(EXPORT_FVECS, path, n, d);
    ck_assert_ptr_nonnull(ex);
    ck_assert_int_eq(write_all(ex, x, n, d), 0);
    ck_assert_int_eq(export_finish(ex), 0);
    export_destroy(&ex);
    void *buf;
    size_t len;
    ck_assert_int_eq(file_read_all(path, 1 << 20, &buf, &len), 0);
    ck_assert_uint_eq(len, n * (4 + 4 * d));
    for (size_t i = 0; i < n; i++) {
        const unsigned char *row = (const unsigned char *)buf + i * (4 + 4 * d);
        int32_t dd;
        memcpy(&dd, row, 4);
        ck_assert_int_eq(dd, (int32_t)d);
        ck_assert_mem_eq(row + 4, x + i * d, 4 * d);
    }
    free(buf);
    free(x);
}
END_TEST

START_TEST(test_jsonl)
{
    const size_t n = 6, d = 4;
    float *x = rand_rows(n, d, 3);
    char path[512];
    snprintf(path, sizeof path, "%s/emb.jsonl", tmpdir);
    struct export *ex = export_new(EXPORT_JSONL, path, n + 1, d);
    ck_assert_ptr_nonnull(ex);
    ck_assert_int_eq(write_all(ex, x, n, d), 0);
    ck_assert_int_eq(export_row(ex, 7, x, EXPORT_NO_LABEL, NULL, NULL), 0);
    ck_assert_int_eq(export_finish(ex), 0);
    export_destroy(&ex);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char line[4096];
    size_t i = 0;
    while (fgets(line, sizeof line, f)) {
        if (i == n) {
            ck_assert_ptr_nonnull(strstr(line, "{\"index\":7,\"label\":null,\"path\":\"\",\"v\":["));
            i++;
            continue;
        }
        char want[64];
        snprintf(want, sizeof want, "{\"index\":%zu,\"label\":%zu,\"path\":\"", 100 + i, i % 3);
        ck_assert_ptr_eq(strstr(line, want), line);
        /* the floats round-trip exactly */
        char *v = strstr(line, "\"v\":[");
        ck_assert_ptr_nonnull(v);
        v += 5;
        for (size_t j = 0; j < d; j++) {
            char *end;
            float got = strtof(v, &end);
            ck_assert_float_eq(got, x[i * d + j]);
            v = end + 1;
        }
        ck_assert_str_eq(v - 1, "]}\n");
        i++;
    }
    fclose(f);
    ck_assert_uint_eq(i, n + 1);
    if (access("/usr/bin/python3", X_OK) == 0) {
        /* every line is valid JSON and the escaped paths decode to the originals */
        static const char script[] =
            "import json, sys\n"
            "L = [json.loads(l) for l in open(sys.argv[1])]\n"
            "ok = (L[1]['path'] == 'train/\"odd\\\\name\".jpg' and\n"
            "      L[2]['path'] == 'train/tab\\there\\nnl.jpg' and\n"
            "      L[6]['label'] is None and len(L[0]['v']) == 4 and L[0]['index'] == 100)\n"
            "sys.exit(0 if ok else 1)\n";
        char py[512], cmd[1200];
        snprintf(py, sizeof py, "%s/check.py", tmpdir);
        ck_assert_int_eq(durable_write(py, script, sizeof script - 1), 0);
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s'", py, path);
        ck_assert_int_eq(system(cmd), 0);
    }
    /* JSON has no NaN: refused, nothing written for that row */
    ex = export_new_stream(EXPORT_JSONL, stderr, 1, 2);
    float bad[2] = { 1, NAN };
    errno = 0;
    ck_assert_int_eq(export_row(ex, 0, bad, 0, NULL, NULL), -1);
    ck_assert_int_eq(errno, EINVAL);
    ck_assert_uint_eq(export_rows_written(ex), 0);
    export_destroy(&ex);
    free(x);
}
END_TEST

START_TEST(test_tsv)
{
    const size_t n = 5, d = 3;
    float *x = rand_rows(n, d, 4);
    char dir[512], vp[600], mp[600];
    snprintf(dir, sizeof dir, "%s/proj/sub", tmpdir);
    snprintf(vp, sizeof vp, "%s/vectors.tsv", dir);
    snprintf(mp, sizeof mp, "%s/metadata.tsv", dir);
    struct export *ex = export_new(EXPORT_TSV, dir, n, d);
    ck_assert_ptr_nonnull(ex);
    ck_assert_int_eq(write_all(ex, x, n, d), 0);
    ck_assert_int_eq(export_finish(ex), 0);
    export_destroy(&ex);
    FILE *f = fopen(vp, "r");
    ck_assert_ptr_nonnull(f);
    char line[1024];
    size_t i = 0;
    while (fgets(line, sizeof line, f)) {
        char *p = line;
        for (size_t j = 0; j < d; j++) {
            char *end;
            ck_assert_float_eq(strtof(p, &end), x[i * d + j]);
            ck_assert_int_eq(*end, j + 1 < d ? '\t' : '\n');
            p = end + 1;
        }
        i++;
    }
    fclose(f);
    ck_assert_uint_eq(i, n);
    f = fopen(mp, "r");
    ck_assert_ptr_nonnull(f);
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    ck_assert_str_eq(line, "index\tlabel\tclass\tpath\n");
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    ck_assert_str_eq(line, "100\t0\tcls\ttrain/cat/0001.jpg\n");
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    ck_assert_ptr_nonnull(fgets(line, sizeof line, f));
    /* tabs and newlines inside fields become spaces: still 4 fields on one line */
    ck_assert_str_eq(line, "102\t2\tc 2\ttrain/tab here nl.jpg\n");
    i = 3;
    while (fgets(line, sizeof line, f))
        i++;
    ck_assert_uint_eq(i, n);
    fclose(f);
    /* a directory is required */
    errno = 0;
    ck_assert_ptr_null(export_new(EXPORT_TSV, "-", 1, 1));
    ck_assert_int_eq(errno, EINVAL);
    free(x);
}
END_TEST

START_TEST(test_errors)
{
    float v[2] = { 1, 2 };
    char path[512], tmp[600];
    snprintf(path, sizeof path, "%s/short.npy", tmpdir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    ck_assert_int_eq(export_format_parse("npy"), EXPORT_NPY);
    ck_assert_int_eq(export_format_parse("tsv"), EXPORT_TSV);
    ck_assert_int_eq(export_format_parse("parquet"), -1);
    ck_assert_int_eq(export_format_parse(NULL), -1);
    ck_assert_ptr_null(export_new(EXPORT_NPY, path, 1, 0));
    ck_assert_ptr_null(export_new((enum export_format)99, path, 1, 1));
    /* fewer rows than declared: finish fails, nothing at the path, temp removed by destroy */
    struct export *ex = export_new(EXPORT_NPY, path, 3, 2);
    ck_assert_ptr_nonnull(ex);
    ck_assert_int_eq(export_row(ex, 0, v, 0, NULL, NULL), 0);
    errno = 0;
    ck_assert_int_eq(export_finish(ex), -1);
    ck_assert_int_eq(errno, EPROTO);
    ck_assert_int_eq(access(tmp, F_OK), 0);
    export_destroy(&ex);
    ck_assert_int_ne(access(tmp, F_OK), 0);
    ck_assert_int_ne(access(path, F_OK), 0);
    /* more rows than declared */
    ex = export_new(EXPORT_FVECS, path, 1, 2);
    ck_assert_int_eq(export_row(ex, 0, v, 0, NULL, NULL), 0);
    errno = 0;
    ck_assert_int_eq(export_row(ex, 1, v, 0, NULL, NULL), -1);
    ck_assert_int_eq(errno, ERANGE);
    ck_assert_int_eq(export_finish(ex), 0);
    export_destroy(&ex);
    /* unwritable place */
    ck_assert_ptr_null(export_new(EXPORT_NPY, "/nonexistent-dir/x.npy", 1, 2));
    ck_assert_int_eq(errno, ENOENT);
    /* a full disk is reported, not silently truncated */
    FILE *full = fopen("/dev/full", "w");
    if (full) {
        ex = export_new_stream(EXPORT_FVECS, full, 20000, 2);
        ck_assert_ptr_nonnull(ex);
        int rc = 0;
        for (int i = 0; i < 20000 && rc == 0; i++)
            rc = export_row(ex, (uint64_t)i, v, 0, NULL, NULL);
        if (rc == 0)
            rc = export_finish(ex);
        ck_assert_int_eq(rc, -1);
        ck_assert_int_eq(errno, ENOSPC);
        export_destroy(&ex);
        fclose(full);
    }
}
END_TEST

/* The count left open (embed --files): npy identical byte for byte to a declared count, to a
 * path and to a stream, its spool unlinked in $TMPDIR; error lines in jsonl only; the paths
 * companion; an unfinished export leaves nothing. */
START_TEST(test_open_rows)
{
    const size_t n = 5, d = 3;
    float *x = rand_rows(n, d, 4);
    char ref[512], path[512], plist[512], tmp[600];
    snprintf(ref, sizeof ref, "%s/ref.npy", tmpdir);
    snprintf(path, sizeof path, "%s/open.npy", tmpdir);
    snprintf(plist, sizeof plist, "%s/open.npy.paths", tmpdir);
    struct export *ex = export_new(EXPORT_NPY, ref, n, d);
    ck_assert_int_eq(write_all(ex, x, n, d), 0);
    ck_assert_int_eq(export_finish(ex), 0);
    export_destroy(&ex);
    void *want, *got;
    size_t want_len, got_len;
    ck_assert_int_eq(file_read_all(ref, 1 << 20, &want, &want_len), 0);

    /* the spool goes to $TMPDIR, unlinked at once: only the outputs' temp files appear */
    char spooldir[600], cmd[1400];
    snprintf(spooldir, sizeof spooldir, "%s/spool", tmpdir);
    ck_assert_int_eq(mkdir(spooldir, 0755), 0);
    const char *old_tmpdir = getenv("TMPDIR");
    char *saved = old_tmpdir ? strdup(old_tmpdir) : NULL;
    setenv("TMPDIR", spooldir, 1);
    ex = export_new(EXPORT_NPY, path, EXPORT_ROWS_OPEN, d);
    ck_assert_ptr_nonnull(ex);
    ck_assert_int_eq(export_add_paths(ex, plist), 0);
    ck_assert_int_eq(export_add_paths(ex, plist), -1); /* twice */
    ck_assert_int_eq(export_error(ex, 7, "bad.jpg", "no"), 0); /* nowhere to put it: nothing */
    ck_assert_int_eq(write_all(ex, x, n, d), 0);
    ck_assert_int_eq(export_add_paths(ex, plist), -1); /* after rows */
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s')\"", spooldir);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_int_ne(access(path, F_OK), 0);
    ck_assert_int_ne(access(plist, F_OK), 0);
    ck_assert_int_eq(export_finish(ex), 0);
    ck_assert_uint_eq(export_rows_written(ex), n);
    export_destroy(&ex);
    ck_assert_int_eq(file_read_all(path, 1 << 20, &got, &got_len), 0);
    ck_assert_uint_eq(got_len, want_len);
    ck_assert_mem_eq(got, want, want_len);
    free(got);
    ck_assert_int_eq(file_read_all(plist, 1 << 20, &got, &got_len), 0);
    const char *lines = "train/cat/0001.jpg\ntrain/\"odd\\name\".jpg\ntrain/tab\there\nnl.jpg\n"
                        "train/cat/0001.jpg\ntrain/\"odd\\name\".jpg\n";
    ck_assert_uint_eq(got_len, strlen(lines));
    ck_assert_mem_eq(got, lines, got_len);
    free(got);

    /* to a stream: the same bytes */
    char spath[512];
    snprintf(spath, sizeof spath, "%s/stream.npy", tmpdir);
    FILE *f = fopen(spath, "wb");
    ck_assert_ptr_nonnull(f);
    ex = export_new_stream(EXPORT_NPY, f, EXPORT_ROWS_OPEN, d);
    ck_assert_ptr_nonnull(ex);
    ck_assert_int_eq(write_all(ex, x, n, d), 0);
    ck_assert_int_eq(ftell(f), 0); /* nothing before the count is known */
    ck_assert_int_eq(export_finish(ex), 0);
    export_destroy(&ex);
    ck_assert_int_eq(fclose(f), 0);
    ck_assert_int_eq(file_read_all(spath, 1 << 20, &got, &got_len), 0);
    ck_assert_uint_eq(got_len, want_len);
    ck_assert_mem_eq(got, want, want_len);
    free(got);
    free(want);

    /* unfinished: no file at either final name, no temp files */
    snprintf(path, sizeof path, "%s/gone.fvecs", tmpdir);
    snprintf(plist, sizeof plist, "%s/gone.paths", tmpdir);
    snprintf(tmp, sizeof tmp, "%s.tmp", plist);
    ex = export_new(EXPORT_FVECS, path, EXPORT_ROWS_OPEN, d);
    ck_assert_int_eq(export_add_paths(ex, plist), 0);
    ck_assert_int_eq(write_all(ex, x, 2, d), 0);
    ck_assert_int_eq(access(tmp, F_OK), 0);
    export_destroy(&ex);
    ck_assert_int_ne(access(path, F_OK), 0);
    ck_assert_int_ne(access(plist, F_OK), 0);
    ck_assert_int_ne(access(tmp, F_OK), 0);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    ck_assert_int_ne(access(tmp, F_OK), 0);
    snprintf(cmd, sizeof cmd, "test -z \"$(ls -A '%s')\"", spooldir);
    ck_assert_int_eq(system(cmd), 0);
    if (saved)
        setenv("TMPDIR", saved, 1);
    else
        unsetenv("TMPDIR");
    free(saved);

    /* jsonl: an error line in the row's place, escaped like the rows */
    snprintf(path, sizeof path, "%s/open.jsonl", tmpdir);
    ex = export_new(EXPORT_JSONL, path, EXPORT_ROWS_OPEN, 1);
    float one = 0.5f;
    ck_assert_int_eq(export_row(ex, 0, &one, EXPORT_NO_LABEL, NULL, "a.jpg"), 0);
    ck_assert_int_eq(export_error(ex, 1, "b\"\n.jpg", "corrupt \\ data"), 0);
    ck_assert_int_eq(export_finish(ex), 0);
    ck_assert_int_eq(export_error(ex, 2, "c.jpg", "late"), -1);
    export_destroy(&ex);
    ck_assert_int_eq(file_read_all(path, 1 << 20, &got, &got_len), 0);
    const char *want_j = "{\"index\":0,\"label\":null,\"path\":\"a.jpg\",\"v\":[0.5]}\n"
                         "{\"index\":1,\"label\":null,\"path\":\"b\\\"\\n.jpg\",\"error\":\"corrupt \\\\ data\"}\n";
    ck_assert_uint_eq(got_len, strlen(want_j));
    ck_assert_mem_eq(got, want_j, got_len);
    free(got);
    free(x);
}
END_TEST

START_TEST(test_grid)
{
    /* 2 rows: a query and 3 neighbours, 32x32 images upscaled to 64 px cells, gap 4 */
    struct grid *g = grid_new(2, 4, 64, 4);
    ck_assert_ptr_nonnull(g);
    /* width: gap + 4 cells + 3 gaps + 2 extra gaps after the query + gap */
    ck_assert_uint_eq(grid_width(g), 4 + 4 * 64 + 3 * 4 + 8 + 4);
    /* height: gap + 2 cells + gap + gap, then the legend: two lines of 7 x 2 px text + gap
     * (QUERY and SAME CLASS fit on the first, OTHER CLASS wraps) */
    ck_assert_uint_eq(grid_height(g), 4 + 2 * 64 + 4 + 4 + 2 * (7 * 2 + 4));
    ck_assert_uint_eq(grid_legend_height(grid_width(g), 64, 4), 2 * (7 * 2 + 4));
    ck_assert_uint_eq(grid_legend_height(2000, 64, 4), 7 * 2 + 4);
    uint8_t img[32 * 32 * 3];
    for (size_t i = 0; i < 32 * 32; i++) {
        img[i * 3] = 200; /* red image with a blue left half */
        img[i * 3 + 1] = 20;
        img[i * 3 + 2] = (i % 32) < 16 ? 220 : 20;
        if ((i % 32) < 16)
            img[i * 3] = 20;
    }
    ck_assert_int_eq(grid_put(g, 0, 0, img, 32, 32), 0);
    ck_assert_int_eq(grid_put(g, 1, 3, img, 32, 16), 0); /* wide image: letterboxed */
    ck_assert_int_eq(grid_mark(g, 1, 3, 0, 200, 0), 0);
    ck_assert_int_eq(grid_put(g, 2, 0, img, 32, 32), -1);
    ck_assert_int_eq(grid_put(g, 0, 4, img, 32, 32), -1);
    ck_assert_int_eq(grid_put(g, 0, 0, img, 0, 32), -1);
    ck_assert_int_eq(grid_mark(g, 0, 9, 0, 0, 0), -1);
    const uint8_t *px = grid_pixels(g);
    size_t w = grid_width(g);
    /* query cell at (4, 4): pixel (x 10) from the blue half, pixel (x 50) from the red half */
    const uint8_t *p = px + ((4 + 10) * w + 4 + 10) * 3;
    ck_assert_uint_eq(p[2], 220);
    p = px + ((4 + 10) * w + 4 + 50) * 3;
    ck_assert_uint_eq(p[0], 200);
    /* letterboxed cell: the top rows keep the background, the middle has the image */
    size_t x3 = 4 + 3 * 68 + 8, y1 = 4 + 68;
    ck_assert_uint_eq(px[((y1 + 2) * w + x3 + 50) * 3], 235);
    ck_assert_uint_eq(px[((y1 + 32) * w + x3 + 50) * 3], 200);
    /* frame in the gap, 2 px wide */
    ck_assert_uint_eq(px[((y1 + 10) * w + x3 - 1) * 3 + 1], 200);
    ck_assert_uint_eq(px[((y1 + 10) * w + x3 - 3) * 3 + 1], 235);
    /* the legend below row 1 (y 140): "QUERY" centred under column 0 from x 7, its Q's top
     * row .###. in 2 px ink; the green swatch (14 px) at x 101 on line 1, the red one at x 4
     * on line 2 (y 158) */
    ck_assert_uint_eq(px[(140 * w + 9) * 3], 40);
    ck_assert_uint_eq(px[(141 * w + 12) * 3], 40);
    ck_assert_uint_eq(px[(140 * w + 7) * 3], 235);
    p = px + ((140 + 7) * w + 101 + 7) * 3;
    ck_assert(p[0] == 40 && p[1] == 180 && p[2] == 40);
    p = px + ((158 + 7) * w + 4 + 7) * 3;
    ck_assert(p[0] == 220 && p[1] == 40 && p[2] == 40);
    ck_assert_int_eq(grid_mark_match(g, 0, 1, 1), 0);
    ck_assert_uint_eq(px[((4 + 10) * w + (4 + 68 + 8) - 1) * 3 + 1], 180);
    ck_assert_int_eq(grid_mark_match(g, 0, 2, 0), 0);
    ck_assert_uint_eq(px[((4 + 10) * w + (4 + 2 * 68 + 8) - 1) * 3], 220);

    char path[512], err[256];
    snprintf(path, sizeof path, "%s/grid.jpg", tmpdir);
    ck_assert_int_eq(grid_write_jpeg(g, path, 90, err, sizeof err), 0);
    void *buf;
    size_t len;
    ck_assert_int_eq(file_read_all(path, 1 << 22, &buf, &len), 0);
    struct jpeg_dec *dec = jpeg_dec_new(NULL);
    struct jpeg_image im;
    ck_assert_int_eq(jpeg_dec_decode(dec, buf, len, 0, &im, err, sizeof err), 0);
    ck_assert_uint_eq(im.w, grid_width(g));
    ck_assert_uint_eq(im.h, grid_height(g));
    /* lossy, but the blue half of the query stays blue */
    p = im.pix + ((4 + 20) * im.w + 4 + 8) * 3;
    ck_assert_uint_gt(p[2], 180);
    ck_assert_uint_lt(p[0], 60);
    jpeg_dec_destroy(&dec);
    free(buf);
    ck_assert_int_eq(grid_write_jpeg(g, "/nonexistent-dir/g.jpg", 90, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent-dir/g.jpg"));
    ck_assert_int_eq(grid_write_jpeg(g, path, 0, err, sizeof err), -1);
    grid_destroy(&g);
    ck_assert_ptr_null(g);
    ck_assert_ptr_null(grid_new(0, 4, 64, 4));
    ck_assert_ptr_null(grid_new(1, 1000, 1024, 4));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("export");
    TCase *tc = tcase_create("export");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_npy);
    tcase_add_test(tc, test_npy_empty_and_wide);
    tcase_add_test(tc, test_fvecs);
    tcase_add_test(tc, test_jsonl);
    tcase_add_test(tc, test_tsv);
    tcase_add_test(tc, test_errors);
    tcase_add_test(tc, test_open_rows);
    tcase_add_test(tc, test_grid);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
