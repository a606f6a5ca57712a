/* JSON output: the one string rule of every JSON line npid writes (metrics.jsonl, evald's
 * results and exports, loader check lines, bankd ping), and msgpack values rendered as JSON.
 *
 * A string is written between double quotes with '"' and '\' escaped by a backslash, newline
 * and tab as \n and \t, the other control characters (0x00-0x1f) and DEL (0x7f) as \u00XX,
 * and every other byte as it is: UTF-8 passes through, and bytes that are not UTF-8 (a file
 * name can hold any) are not repaired. */
#ifndef NPID_JSON_H
#define NPID_JSON_H
#include <stddef.h>
#include <stdio.h>

/* Writes s[0..n) as a JSON string literal (quotes included). 0, or -1 on a write error. */
int json_write_str(FILE *f, const char *s, size_t n);
/* The same for a NUL-terminated s. */
int json_write_cstr(FILE *f, const char *s);
/* The literal of s (NUL-terminated) into buf (NUL-terminated, quotes included): its length,
 * or -1 when it does not fit in cap bytes (buf then holds no literal). */
long json_format_str(char *buf, size_t cap, const char *s);

/* Flags of json_write_mp. JSON_SPACED: ", " and ": " between items (a reader's layout), else
 * ',' and ':' (compact); JSON_EXACT: floats with 17 significant digits (%.17g: every double
 * read back exactly), else 9 (%.9g: every float32 exactly, doubles to display precision). */
enum { JSON_SPACED = 1, JSON_EXACT = 2 };
/* Renders one msgpack value (validated here: -1 without writing when buf[0..len) is not one
 * whole value within MP_MAX_DEPTH) as JSON: nil null, floats as flags say (non-finite: null),
 * bin and ext as {"bin": length}, map keys that are not strings as the string of their JSON
 * text. 0, or -1 on invalid input or a write error. */
int json_write_mp(FILE *f, const void *buf, size_t len, int flags);

#endif
