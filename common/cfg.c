/* Configuration table parsing: see cfg.h. */
#include "common/cfg.h"
#include "common/log.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *cfg_type_name(enum cfg_type t)
{
    switch (t) {
    case CFG_INT: return "int";
    case CFG_U64: return "uint";
    case CFG_DOUBLE: return "num";
    case CFG_STR: return "str";
    case CFG_BOOL: return "bool";
    case CFG_AUTO: return "bool|auto";
    }
    return "?";
}

static int cfg_bounds_ok(const struct cfg_opt *o, double v)
{
    return o->min == o->max || (v >= o->min && v <= o->max);
}

/* A boolean spelling: 1, 0, or CFG_AUTO_VALUE for "auto" when allow_auto; -1 otherwise. */
static int cfg_bool_text(const char *t, int allow_auto)
{
    static const char *const yes[] = { "1", "true", "yes", "on", NULL };
    static const char *const no[] = { "0", "false", "no", "off", NULL };
    for (int i = 0; yes[i]; i++)
        if (!strcasecmp(t, yes[i]))
            return 1;
    for (int i = 0; no[i]; i++)
        if (!strcasecmp(t, no[i]))
            return 0;
    if (allow_auto && !strcasecmp(t, "auto"))
        return CFG_AUTO_VALUE;
    return -1;
}

static int cfg_is_bool(const struct cfg_opt *o)
{
    return o->type == CFG_BOOL || o->type == CFG_AUTO;
}

/* The value of a boolean as printed by --help and cfg_log. */
static const char *cfg_bool_name(int v)
{
    return v == CFG_AUTO_VALUE ? "auto" : v ? "true" : "false";
}

/* Stores text into o->dst; returns 0 or -1 with *why set. */
static int cfg_assign(struct cfg_opt *o, const char *text, const char **why)
{
    char *end = NULL;
    errno = 0;
    switch (o->type) {
    case CFG_STR:
        *(const char **)o->dst = text;
        return 0;
    case CFG_BOOL:
    case CFG_AUTO: {
        int v = text ? cfg_bool_text(text, o->type == CFG_AUTO) : 1;
        if (v < 0) {
            *why = o->type == CFG_AUTO ? "expected true, false or auto" : "expected true or false";
            return -1;
        }
        *(int *)o->dst = v;
        return 0;
    }
    case CFG_INT: {
        long v = text ? strtol(text, &end, 0) : 0;
        if (!text || errno || end == text || *end || v < INT32_MIN || v > INT32_MAX) {
            *why = "expected an integer";
            return -1;
        }
        if (!cfg_bounds_ok(o, (double)v)) {
            *why = "out of range";
            return -1;
        }
        *(int *)o->dst = (int)v;
        return 0;
    }
    case CFG_U64: {
        if (!text || *text == '-') {
            *why = "expected a non-negative integer";
            return -1;
        }
        /* accept 1e6-style and plain integers */
        unsigned long long v = strtoull(text, &end, 0);
        if (end && *end) {
            double d = strtod(text, &end);
            if (*end || d < 0 || d > 1.8e19 || d != floor(d)) {
                *why = "expected a non-negative integer";
                return -1;
            }
            v = (unsigned long long)d;
        }
        if (errno || end == text) {
            *why = "expected a non-negative integer";
            return -1;
        }
        if (!cfg_bounds_ok(o, (double)v)) {
            *why = "out of range";
            return -1;
        }
        *(uint64_t *)o->dst = (uint64_t)v;
        return 0;
    }
    case CFG_DOUBLE: {
        double v = text ? strtod(text, &end) : 0;
        if (!text || errno || end == text || *end || !isfinite(v)) {
            *why = "expected a number";
            return -1;
        }
        if (!cfg_bounds_ok(o, v)) {
            *why = "out of range";
            return -1;
        }
        *(double *)o->dst = v;
        return 0;
    }
    }
    *why = "bad option type";
    return -1;
}

/* The row named name, NULL when opts has none. */
static const struct cfg_opt *cfg_lookup(const struct cfg_opt *opts, const char *name)
{
    for (const struct cfg_opt *o = opts; o->name; o++)
        if (strcmp(o->name, name) == 0)
            return o;
    return NULL;
}

struct cfg_opt *cfg_find(struct cfg_opt *opts, const char *name)
{
    return (struct cfg_opt *)cfg_lookup(opts, name);
}

enum { CFG_NAME_CAP = 128 };

/* Reads the flag argument a (a[0] == '-', a[1] != 0): "--name", "--name=value" or, for a
 * boolean, "--no-name". Returns -1 when a is no long flag (one dash, or a name of
 * CFG_NAME_CAP bytes or more); otherwise 0 with name (CFG_NAME_CAP bytes) as typed, *o its row
 * (NULL when opts has none), *val the text after '=' (NULL without) and *negate 1 for
 * --no-name. */
static int cfg_flag(const struct cfg_opt *opts, const char *a, char *name,
                    const struct cfg_opt **o, const char **val, int *negate)
{
    if (a[1] != '-')
        return -1;
    const char *eq = strchr(a + 2, '=');
    size_t nlen = eq ? (size_t)(eq - (a + 2)) : strlen(a + 2);
    if (nlen >= CFG_NAME_CAP)
        return -1;
    memcpy(name, a + 2, nlen);
    name[nlen] = 0;
    *val = eq ? eq + 1 : NULL;
    *negate = 0;
    *o = cfg_lookup(opts, name);
    if (!*o && strncmp(name, "no-", 3) == 0) {
        *o = cfg_lookup(opts, name + 3);
        if (*o && cfg_is_bool(*o) && !*val)
            *negate = 1;
        else
            *o = NULL;
    }
    return 0;
}

/* Whether a flag of row o typed without "=value" takes next (the following argument, NULL
 * when there is none) as its value: a boolean only a boolean spelling, other types any. */
static int cfg_takes_next(const struct cfg_opt *o, const char *next)
{
    return next && (!cfg_is_bool(o) || cfg_bool_text(next, o->type == CFG_AUTO) >= 0);
}

int cfg_apply_default(struct cfg_opt *opts, const char *name, const char *text)
{
    const char *why = NULL;
    struct cfg_opt *o = cfg_find(opts, name);
    if (!o)
        return -1;
    if (o->set_by != 0)
        return 0;
    return cfg_assign(o, text, &why);
}

int cfg_set_default(struct cfg_opt *opts, const char *name, const char *text)
{
    struct cfg_opt *o = cfg_find(opts, name);
    if (!o)
        return -1;
    o->def = text;
    return 0;
}

int cfg_endpoint_default(struct cfg_opt *opts, const char *name, int off, const char *prog,
                         char *buf, size_t cap)
{
    const char *env = getenv("NPID_PORT_BASE");
    long base = 5557;
    if (env && *env) {
        char *end = NULL;
        errno = 0;
        base = strtol(env, &end, 10);
        if (errno || end == env || *end || base < 1 || base > 65532) {
            fprintf(stderr, "%s: NPID_PORT_BASE=%s: expected a port number in [1, 65532]\n", prog,
                    env);
            return -1;
        }
    }
    snprintf(buf, cap, "tcp://127.0.0.1:%ld", base + off);
    return cfg_set_default(opts, name, buf);
}

void cfg_usage(const char *prog, const char *usage, const struct cfg_opt *opts, void *stream)
{
    FILE *f = stream;
    fprintf(f, "usage: %s %s\n\noptions:\n", prog, usage ? usage : "[options]");
    for (const struct cfg_opt *o = opts; o->name; o++) {
        char flag[96];
        if (o->type == CFG_BOOL)
            snprintf(flag, sizeof flag, "--%s", o->name);
        else if (o->type == CFG_AUTO)
            snprintf(flag, sizeof flag, "--%s [true|false|auto]", o->name);
        else
            snprintf(flag, sizeof flag, "--%s <%s>", o->name, cfg_type_name(o->type));
        fprintf(f, "  %-30s %s", flag, o->help ? o->help : "");
        int b = cfg_is_bool(o) && o->def ? cfg_bool_text(o->def, o->type == CFG_AUTO) : -1;
        if (b >= 0)
            fprintf(f, " [default %s]", cfg_bool_name(b));
        else if (cfg_is_bool(o) && !o->def)
            fprintf(f, " [default false]");
        else if (o->def && *o->def)
            fprintf(f, " [default %s]", o->def);
        if (o->env)
            fprintf(f, " [env %s]", o->env);
        fputc('\n', f);
    }
    fprintf(f, "  %-30s %s\n", "-h, --help", "show this help and exit");
}

/* Sets every option to its default, then to its environment variable when that is set.
 * 0, or -1 with the reason on stderr. */
static int cfg_reset(const char *prog, struct cfg_opt *opts)
{
    const char *why = NULL;
    for (struct cfg_opt *o = opts; o->name; o++) {
        o->set_by = 0;
        if (o->def == NULL && o->type == CFG_STR) {
            *(const char **)o->dst = NULL;
        } else if (cfg_assign(o, o->def ? o->def : "0", &why) != 0) {
            fprintf(stderr, "%s: internal: bad default for --%s: %s\n", prog, o->name, why);
            return -1;
        }
        const char *env = o->env ? getenv(o->env) : NULL;
        if (env && *env) {
            if (cfg_assign(o, env, &why) != 0) {
                fprintf(stderr, "%s: %s=%s: %s\n", prog, o->env, env, why);
                return -1;
            }
            o->set_by = 1;
        }
    }
    return 0;
}

/* Applies the flag argv[*i], advancing *i past a separate value. 0, or -1 with the reason
 * on stderr. */
static int cfg_parse_flag(const char *prog, struct cfg_opt *opts, int argc, char **argv, int *i)
{
    const char *a = argv[*i], *val = NULL, *why = NULL;
    char name[CFG_NAME_CAP];
    const struct cfg_opt *row = NULL;
    int negate = 0;
    if (cfg_flag(opts, a, name, &row, &val, &negate) != 0) {
        fprintf(stderr, "%s: unknown option '%s' (try --help)\n", prog, a);
        return -1;
    }
    if (!row) {
        fprintf(stderr, "%s: unknown option '--%s' (try --help)\n", prog, name);
        return -1;
    }
    struct cfg_opt *o = opts + (row - opts);
    const char *next = *i + 1 < argc ? argv[*i + 1] : NULL;
    if (negate) {
        val = "false";
    } else if (!val && cfg_takes_next(o, next)) {
        val = next;
        ++*i;
    } else if (!val && !cfg_is_bool(o)) {
        fprintf(stderr, "%s: option '--%s' needs a value\n", prog, name);
        return -1;
    }
    if (cfg_assign(o, val, &why) != 0) {
        fprintf(stderr, "%s: --%s %s: %s", prog, name, val ? val : "", why);
        if (o->min != o->max && strcmp(why, "out of range") == 0)
            fprintf(stderr, " [%g, %g]", o->min, o->max);
        fputc('\n', stderr);
        return -1;
    }
    o->set_by = 2;
    return 0;
}

int cfg_parse(const char *prog, const char *usage, struct cfg_opt *opts, int argc, char **argv,
              int *npos)
{
    if (cfg_reset(prog, opts) != 0)
        return CFG_USAGE;
    /* positional arguments are compacted into argv[1..out-1], reusing its storage */
    int out = 1;
    int i = 1;
    for (; i < argc; i++) {
        char *a = argv[i];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            cfg_usage(prog, usage, opts, stdout);
            return CFG_HELP;
        }
        if (a[0] != '-' || a[1] == 0)
            argv[out++] = a;
        else if (cfg_parse_flag(prog, opts, argc, argv, &i) != 0)
            return CFG_USAGE;
    }
    for (; i < argc; i++)
        argv[out++] = argv[i];
    for (int k = out; k < argc; k++)
        argv[k] = NULL;
    if (npos)
        *npos = out - 1;
    return CFG_OK;
}

int cfg_scan(const struct cfg_opt *opts, int argc, char **argv, int *unknown)
{
    int first = 0;
    int i = 1;
    if (unknown)
        *unknown = 0;
    for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
        const char *a = argv[i], *val = NULL;
        char name[CFG_NAME_CAP];
        const struct cfg_opt *o = NULL;
        int negate = 0;
        if (a[0] != '-' || a[1] == 0) {
            first = first ? first : i;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            continue;
        if (cfg_flag(opts, a, name, &o, &val, &negate) != 0 || !o) {
            if (unknown && !*unknown)
                *unknown = i;
        } else if (!val && !negate && cfg_takes_next(o, i + 1 < argc ? argv[i + 1] : NULL)) {
            i++;
        }
    }
    if (!first && i + 1 < argc)
        first = i + 1;
    return first;
}

int cfg_join(struct cfg_opt *dst, size_t cap, const struct cfg_opt *const *parts)
{
    size_t n = 0;
    if (cap == 0)
        return -1;
    for (size_t p = 0; parts[p]; p++) {
        for (const struct cfg_opt *o = parts[p]; o->name; o++) {
            if (n + 1 >= cap) {
                dst[0] = (struct cfg_opt){ 0 };
                return -1;
            }
            dst[n++] = *o;
        }
    }
    dst[n] = (struct cfg_opt){ 0 };
    return (int)n;
}

void cfg_log(const struct cfg_opt *opts)
{
    if (log_level_current > LOG_LVL_INFO)
        return;
    char line[4096];
    size_t n = 0;
    line[0] = 0;
    for (const struct cfg_opt *o = opts; o->name && n < sizeof line - 64; o++) {
        int w = 0;
        switch (o->type) {
        case CFG_STR: {
            const char *s = *(const char **)o->dst;
            w = snprintf(line + n, sizeof line - n, "%s=%s ", o->name, s ? s : "-");
            break;
        }
        case CFG_BOOL:
        case CFG_AUTO:
            w = snprintf(line + n, sizeof line - n, "%s=%s ", o->name,
                         cfg_bool_name(*(int *)o->dst));
            break;
        case CFG_INT:
            w = snprintf(line + n, sizeof line - n, "%s=%d ", o->name, *(int *)o->dst);
            break;
        case CFG_U64:
            w = snprintf(line + n, sizeof line - n, "%s=%" PRIu64 " ", o->name,
                         *(uint64_t *)o->dst);
            break;
        case CFG_DOUBLE:
            w = snprintf(line + n, sizeof line - n, "%s=%g ", o->name, *(double *)o->dst);
            break;
        }
        if (w < 0 || (size_t)w >= sizeof line - n)
            break;
        n += (size_t)w;
    }
    log_info("config: %s", line);
}
