/* Logging to stderr, prefixed with the process name and level.
 *
 * The level is checked before any formatting happens (the macros test it inline), so a
 * disabled debug line costs one comparison. NPID_LOG_LEVEL=debug|info|warn|error sets the
 * initial level. Library code logs only through these macros and never prints to stdout:
 * stdout is reserved for machine-readable output. */
#ifndef NPID_LOG_H
#define NPID_LOG_H

#include <stdio.h>
#include <stdlib.h>

enum log_level { LOG_LVL_DEBUG = 0, LOG_LVL_INFO, LOG_LVL_WARN, LOG_LVL_ERROR, LOG_LVL_OFF };

extern int log_level_current;

/* Sets the process name used as prefix and reads NPID_LOG_LEVEL. */
void log_init(const char *prog);
void log_set_level(int level);
/* Parses "debug", "info", "warn", "error", "off"; returns -1 when unknown. */
int log_level_parse(const char *s);
void log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) do { if (log_level_current <= LOG_LVL_DEBUG) log_write(LOG_LVL_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...)  do { if (log_level_current <= LOG_LVL_INFO)  log_write(LOG_LVL_INFO,  __VA_ARGS__); } while (0)
#define log_warn(...)  do { if (log_level_current <= LOG_LVL_WARN)  log_write(LOG_LVL_WARN,  __VA_ARGS__); } while (0)
#define log_error(...) do { if (log_level_current <= LOG_LVL_ERROR) log_write(LOG_LVL_ERROR, __VA_ARGS__); } while (0)

/* A broken invariant: always on (not removed by NDEBUG); reports file:line and aborts. */
#define NPID_CHECK(cond) do { if (!(cond)) npid_check_failed(__FILE__, __LINE__, #cond); } while (0)
void npid_check_failed(const char *file, int line, const char *expr) __attribute__((noreturn));

/* Start-up or resource failure: logs the reason and exits with status 1. */
void npid_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Writes a one-line reason into a caller's error buffer (printf-style); accepts err NULL or
 * err_len 0 (then does nothing). For functions that report why they failed. */
void err_set(char *err, size_t err_len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Process exit codes. */
enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

#endif
