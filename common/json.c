/* JSON output: see json.h. */
#include "common/json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/mp.h"

/* The escape of byte c into out (at least 7 bytes): its length, 0 when c stands as it is. */
static int json_escape(unsigned char c, char *out)
{
    if (c == '"' || c == '\\')
        return snprintf(out, 7, "\\%c", c);
    if (c == '\n')
        return snprintf(out, 7, "\\n");
    if (c == '\t')
        return snprintf(out, 7, "\\t");
    if (c < 0x20 || c == 0x7f)
        return snprintf(out, 7, "\\u%04x", c);
    return 0;
}

int json_write_str(FILE *f, const char *s, size_t n)
{
    if (fputc('"', f) == EOF)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char esc[8];
        int e = json_escape((unsigned char)s[i], esc);
        if (e ? fputs(esc, f) < 0 : fputc((unsigned char)s[i], f) == EOF)
            return -1;
    }
    return fputc('"', f) == EOF ? -1 : 0;
}

int json_write_cstr(FILE *f, const char *s)
{
    return json_write_str(f, s, strlen(s));
}

long json_format_str(char *buf, size_t cap, const char *s)
{
    size_t n = 0;
    if (cap < 3)
        return -1;
    buf[n++] = '"';
    for (; *s; s++) {
        char esc[8];
        int e = json_escape((unsigned char)*s, esc);
        size_t w = e ? (size_t)e : 1;
        if (n + w + 2 > cap) {
            buf[0] = 0;
            return -1;
        }
        if (e)
            memcpy(buf + n, esc, w);
        else
            buf[n] = *s;
        n += w;
    }
    buf[n++] = '"';
    buf[n] = 0;
    return (long)n;
}

static int json_value(FILE *f, const struct mp_obj *o, int flags);

/* A map key: a string as itself, anything else as the string of its JSON text. */
static int json_key(FILE *f, const struct mp_obj *k, int flags)
{
    if (k->type == MP_STR)
        return json_write_str(f, k->ptr, k->len);
    char *txt = NULL;
    size_t tlen = 0;
    FILE *m = open_memstream(&txt, &tlen);
    if (!m)
        return -1;
    int rc = json_value(m, k, flags);
    if (fclose(m) != 0)
        rc = -1;
    if (rc == 0)
        rc = json_write_str(f, txt, tlen);
    free(txt);
    return rc;
}

static int json_container(FILE *f, const struct mp_obj *o, int flags)
{
    struct mp_iter it;
    struct mp_obj k, v;
    int is_map = o->type == MP_MAP;
    const char *sep = flags & JSON_SPACED ? ", " : ",", *colon = flags & JSON_SPACED ? ": " : ":";
    if (mp_iter_init(&it, o) != 0 || fputc(is_map ? '{' : '[', f) == EOF)
        return -1;
    for (int first = 1; mp_iter_next(&it, &k); first = 0) {
        if (!first && fputs(sep, f) < 0)
            return -1;
        if (!is_map) {
            if (json_value(f, &k, flags) != 0)
                return -1;
            continue;
        }
        if (!mp_iter_next(&it, &v) || json_key(f, &k, flags) != 0 || fputs(colon, f) < 0 ||
            json_value(f, &v, flags) != 0)
            return -1;
    }
    return fputc(is_map ? '}' : ']', f) == EOF ? -1 : 0;
}

static int json_value(FILE *f, const struct mp_obj *o, int flags)
{
    switch (o->type) {
    case MP_NIL: return fputs("null", f) < 0 ? -1 : 0;
    case MP_BOOL: return fputs(o->v.b ? "true" : "false", f) < 0 ? -1 : 0;
    case MP_UINT: return fprintf(f, "%llu", (unsigned long long)o->v.u) < 0 ? -1 : 0;
    case MP_INT: return fprintf(f, "%lld", (long long)o->v.i) < 0 ? -1 : 0;
    case MP_FLOAT:
        if (!isfinite(o->v.f))
            return fputs("null", f) < 0 ? -1 : 0;
        return fprintf(f, flags & JSON_EXACT ? "%.17g" : "%.9g", o->v.f) < 0 ? -1 : 0;
    case MP_STR: return json_write_str(f, o->ptr, o->len);
    case MP_BIN:
    case MP_EXT:
        return fprintf(f, flags & JSON_SPACED ? "{\"bin\": %zu}" : "{\"bin\":%zu}", o->len) < 0
                   ? -1 : 0;
    case MP_ARRAY:
    case MP_MAP: return json_container(f, o, flags);
    }
    return -1;
}

int json_write_mp(FILE *f, const void *buf, size_t len, int flags)
{
    if (mp_validate(buf, len, MP_MAX_DEPTH, NULL) != 0)
        return -1;
    struct mp_obj o;
    mp_obj_decode(buf, &o);
    return json_value(f, &o, flags);
}
