/* Images named by the user instead of a dataset: the `--files LIST` input of
 * `npid-evald embed` and `npid-evald neighbours` (README, "Embeddings out"; docs/formats.md,
 * "Embedding export formats").
 *
 * LIST is a file, or "-" for stdin, with one image path per line, used as given (relative
 * paths from the working directory). Empty lines are skipped and a line's trailing CR is
 * dropped (lists written on Windows). A line holding a NUL byte (`find -print0` output) or
 * longer than FILES_LINE_MAX - 1 bytes is not a path list: reading stops with an error. A
 * path that cannot be read or decoded is not an error of the list: files_decode says why,
 * and the caller reports it for that path and goes on.
 *
 * An image is decoded exactly as feat_dataset decodes a dataset image (image_decode_pick with
 * the model's decoder and feat_scale, so JPEG, PNG or WebP by content, at the test transform's
 * DCT scale), so that the same file gives the same features either way (feat_image). */
#ifndef NPID_EVALD_FILES_H
#define NPID_EVALD_FILES_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "evald/export.h"
#include "evald/features.h"

#define FILES_LINE_MAX 4096

/* A list being read, line by line (embed streams it: nothing grows with its length). */
struct files_in {
    FILE *f;
    int owned;                 /* opened here (not stdin): closed by files_in_deinit */
    const char *name;          /* the LIST argument, for messages */
    uint64_t lineno;           /* lines read so far */
    char line[FILES_LINE_MAX];
};

/* Opens src ("-": stdin). 0, or -1 with a one-line reason in err. */
int files_in_init(struct files_in *in, const char *src, char *err, size_t err_len);
void files_in_deinit(struct files_in *in);
/* The next path: 1 with *path set (valid until the next call), 0 at the end of the list, -1
 * with a one-line reason in err (a read error, a NUL byte, a line too long). */
int files_in_next(struct files_in *in, const char **path, char *err, size_t err_len);

/* A whole list in memory (neighbours searches for every query at once). */
struct files_list {
    char **paths;              /* (n) into buf */
    size_t n;
    char *buf;
};

/* Reads the list at src into fl. 0, or -1 with a one-line reason in err; on success free
 * with files_list_deinit (also safe on a zeroed or failed fl). */
int files_list_read(struct files_list *fl, const char *src, char *err, size_t err_len);
void files_list_deinit(struct files_list *fl);

/* Reads the regular file at path (at most the decoder's max_file_bytes) and decodes it into
 * *img with m's decoder at feat_scale; img->pix is valid until m's decoder is used again.
 * Returns 0, or -1 with a one-line reason in err that does not name the path ("No such file
 * or directory", "not a regular file", "corrupt JPEG data: ..."). */
int files_decode(struct feat_model *m, const char *path, struct jpeg_image *img, char *err,
                 size_t err_len);

/* embed --files: the feature of every image of the list at src, in list order, written to out
 * in format fmt (export.h) with the row's index its position in the list and its path as
 * given. An image that fails is logged (path and reason), written as an error line in jsonl
 * and skipped in the other formats; with paths_out (may be NULL) the paths of the rows
 * written go there too, one per line. Returns EXIT_OK, or EXIT_FAIL (reason logged) when the
 * list cannot be read, has no path, every image failed, a write failed or a signal stopped
 * it; then no file is left at out's final name. */
int files_embed(struct feat_model *m, const char *src, enum export_format fmt, const char *out,
                const char *paths_out);

#endif
