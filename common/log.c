/* Logging: see log.h. */
#include "common/log.h"

#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <time.h>

int log_level_current = LOG_LVL_INFO;
static char log_prog[64] = "npid";

static const char *const log_names[] = { "debug", "info", "warn", "error", "off" };

int log_level_parse(const char *s)
{
    for (int i = 0; i <= LOG_LVL_OFF; i++)
        if (strcasecmp(s, log_names[i]) == 0)
            return i;
    return -1;
}

void log_init(const char *prog)
{
    snprintf(log_prog, sizeof log_prog, "%s", prog);
    const char *env = getenv("NPID_LOG_LEVEL");
    if (env && *env) {
        int lvl = log_level_parse(env);
        if (lvl >= 0)
            log_level_current = lvl;
    }
}

void log_set_level(int level)
{
    log_level_current = level;
}

static void log_vwrite(int level, const char *fmt, va_list ap)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%02d:%02d:%02d.%03ld %s %s: ", tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, log_prog, log_names[level]);
    if (n < 0 || (size_t)n >= sizeof line)
        n = 0;
    int m = vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len >= sizeof line - 1)
        len = sizeof line - 2;
    line[len++] = '\n';
    /* one write per line so lines from several processes do not interleave */
    fwrite(line, 1, len, stderr);
    fflush(stderr);
}

void log_write(int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(level, fmt, ap);
    va_end(ap);
}

void err_set(char *err, size_t err_len, const char *fmt, ...)
{
    if (!err || err_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

void npid_check_failed(const char *file, int line, const char *expr)
{
    log_write(LOG_LVL_ERROR, "invariant broken at %s:%d: %s", file, line, expr);
    abort();
}

void npid_fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vwrite(LOG_LVL_ERROR, fmt, ap);
    va_end(ap);
    exit(EXIT_FAIL);
}
