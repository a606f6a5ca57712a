/* Embedding export: rows of features written as they come, for other tools.
 *
 * Formats (docs/formats.md, "embedding export formats"):
 *  - npy:   NumPy .npy version 1.0, dtype '<f4', C order, shape (rows, dim). The header
 *           declares the row count, so it is fixed at export_new.
 *  - fvecs: per row a little-endian int32 dim followed by dim little-endian float32 (the
 *           TEXMEX / faiss format).
 *  - jsonl: one JSON object per row: {"index":i,"label":l,"path":"...","v":[...]} with
 *           floats printed to round-trip exactly; label null and path "" when unknown.
 *  - tsv:   the TensorBoard projector pair: OUT/vectors.tsv (dim tab-separated floats per
 *           row, no header) and OUT/metadata.tsv (header "index\tlabel\tclass\tpath", one
 *           line per row). OUT is a directory, created if missing.
 *
 * Output to a path is written to PATH.tmp (OUT/NAME.tmp for tsv) and renamed into place by
 * export_finish, so an interrupted or failed export never leaves a file that looks complete.
 * Output to a stream (stdout) is written directly; tsv needs a directory. Write errors
 * (ENOSPC, EPIPE, ...) are reported by the call that sees them, with errno set.
 *
 * The row count may be left open (EXPORT_ROWS_OPEN) when the rows come from a stream of
 * unknown length (`embed --files`): npy rows then go to an unlinked spool file in $TMPDIR
 * (default /tmp) and are copied after the header, which needs the count, by export_finish;
 * the other formats have no count to state and are written directly. */
#ifndef NPID_EVALD_EXPORT_H
#define NPID_EVALD_EXPORT_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum export_format { EXPORT_NPY = 1, EXPORT_FVECS, EXPORT_JSONL, EXPORT_TSV };

/* "npy", "fvecs", "jsonl" (also "json"), "tsv"; -1 when unknown. */
int export_format_parse(const char *name);
const char *export_format_name(enum export_format f);

/* Unknown label in the per-row metadata. */
#define EXPORT_NO_LABEL UINT32_MAX

/* rows of export_new when the count is known only at export_finish */
#define EXPORT_ROWS_OPEN UINT64_MAX

struct export;

/* Opens an export of exactly `rows` rows of `dim` floats to out: a file path, or "-" for
 * stdout (not for tsv, where out is a directory). Returns NULL with errno (EINVAL: dim 0,
 * dim > INT32_MAX, tsv to "-"; or the errno of the failed open). */
struct export *export_new(enum export_format fmt, const char *out, uint64_t rows, size_t dim);
/* The same on a caller's stream (not closed by the export; not for tsv). */
struct export *export_new_stream(enum export_format fmt, FILE *stream, uint64_t rows, size_t dim);

/* Writes the next row: v (dim) floats, its index (e.g. dataset or bank row), label (or
 * EXPORT_NO_LABEL), class name and path (either may be NULL). Returns 0, or -1 with errno
 * (ERANGE: more rows than declared; EINVAL: a non-finite value in jsonl, which JSON cannot
 * carry; or the write error). */
int export_row(struct export *ex, uint64_t index, const float *v, uint32_t label,
               const char *class_name, const char *path);

/* An input that has no row (an unreadable image, say): jsonl writes the line
 * {"index":i,"label":null,"path":"...","error":"reason"} in the row's place; the other formats
 * have nowhere to put it and write nothing. Not a row: export_rows_written does not count it.
 * Returns 0, or -1 with errno (the write error). */
int export_error(struct export *ex, uint64_t index, const char *path, const char *reason);

/* Also writes the path of every row, one per line in row order, to the file at `path` (temp
 * name and rename at export_finish like the data). Call before the first row. For readers of
 * npy and fvecs, which carry no metadata; a path holding a line break would split its line
 * (callers that take paths from lines never have one). Returns 0, or -1 with errno (EINVAL:
 * rows written already or paths requested twice; or the open's). */
int export_add_paths(struct export *ex, const char *path);

/* Rows written so far. */
uint64_t export_rows_written(const struct export *ex);

/* Flushes, checks that exactly the declared rows were written (else -1, errno EPROTO; any
 * number with EXPORT_ROWS_OPEN, whose npy header and spooled rows are written now), and for
 * path outputs fsyncs and renames the temp files into place. Returns 0 or -1 with errno. */
int export_finish(struct export *ex);

/* Frees; an unfinished path export's temp files are removed. Accepts NULL and sets *ex NULL. */
void export_destroy(struct export **ex);

#endif
