/* Helpers shared by the benchmark programs that run a Python peer: the measuring time, a
 * peer's one-line JSON answer, and fields read from it. Header-only (static functions): each
 * bench program is one translation unit. */
#ifndef NPID_BENCH_UTIL_H
#define NPID_BENCH_UTIL_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

/* Seconds each case is measured: NPID_BENCH_SECONDS, default 3. */
static inline double bench_seconds(void)
{
    const char *s = getenv("NPID_BENCH_SECONDS");
    double v = s ? atof(s) : 3.0;
    return v > 0 ? v : 3.0;
}

/* Runs a shell command and keeps its first stdout line in buf. Returns 0, the command's exit
 * status when it is not 0 (77: the peer is unavailable), or -1 when it could not run, died
 * of a signal or printed nothing. */
static inline int run_capture(const char *cmd, char *buf, size_t len)
{
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    buf[0] = 0;
    char line[4096];
    int got = 0;
    while (fgets(line, sizeof line, p))
        if (!got && line[0]) {
            size_t n = strlen(line) < len ? strlen(line) : len - 1; /* a long line is cut */
            memcpy(buf, line, n);
            buf[n] = 0;
            got = 1;
        }
    int st = pclose(p);
    buf[strcspn(buf, "\n")] = 0;
    if (!WIFEXITED(st))
        return -1;
    if (WEXITSTATUS(st) != 0)
        return WEXITSTATUS(st);
    return got ? 0 : -1;
}

/* The number after "key": in a peer's JSON line (Python's json.dumps layout), -1 if absent. */
static inline double json_num(const char *json, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(json, pat);
    return p ? atof(p + strlen(pat)) : -1;
}

/* The string after "key": in the same layout, copied to out (empty when absent). */
static inline void json_str(const char *json, const char *key, char *out, size_t len)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": \"", key);
    const char *p = strstr(json, pat);
    out[0] = 0;
    if (!p)
        return;
    p += strlen(pat);
    size_t n = strcspn(p, "\"");
    if (n >= len)
        n = len - 1;
    memcpy(out, p, n);
    out[n] = 0;
}

#endif
