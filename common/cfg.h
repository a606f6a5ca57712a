/* Configuration as a table: each option has a long flag name, an environment variable, a
 * type, a default, bounds and a help line. Precedence: flag > environment > default.
 *
 *   static struct cfg_opt opts[] = {
 *       { "bind", "NPID_BANKD_BIND", CFG_STR, &bind, "tcp://127.0.0.1:5557", 0, 0, "endpoint" },
 *       { "rows", NULL, CFG_U64, &rows, "0", 0, 1e10, "bank rows" },
 *       { 0 }
 *   };
 *   int npos, rc = cfg_parse("npid-bankd", "[options]", opts, argc, argv, &npos);
 *
 * Flags: --name value, --name=value; booleans also --name (true) and --no-name (false), and
 * take the next argument as their value only when it is a boolean spelling (1/0, true/false,
 * yes/no, on/off, any case; CFG_AUTO also "auto"). Booleans print as true/false in --help and
 * in cfg_log. -h/--help prints
 * usage to stdout. Unknown flags, missing values, unparsable or out-of-range values are
 * usage errors. Positional arguments (anything not starting with "-", and everything after
 * "--") are moved, in order, to argv[1..*npos]; flags and positionals may be interleaved.
 * dst types: CFG_INT int*, CFG_U64 uint64_t*, CFG_DOUBLE double*, CFG_STR const char**
 * (points into argv, environ or the default string; never freed), CFG_BOOL int* (0 or 1),
 * CFG_AUTO int* (a boolean that also takes "auto": 0, 1 or CFG_AUTO_VALUE). */
#ifndef NPID_CFG_H
#define NPID_CFG_H
#include <stddef.h>
#include <stdint.h>

enum cfg_type { CFG_INT = 1, CFG_U64, CFG_DOUBLE, CFG_STR, CFG_BOOL, CFG_AUTO };
enum { CFG_AUTO_VALUE = 2 };

struct cfg_opt {
    const char *name;  /* long flag without "--"; NULL ends the table */
    const char *env;   /* environment variable or NULL */
    enum cfg_type type;
    void *dst;
    const char *def;   /* default as text (NULL: string default NULL / number 0) */
    double min, max;   /* numeric bounds; min == max means unbounded */
    const char *help;
    int set_by;        /* out: 0 default, 1 environment, 2 flag */
};

enum { CFG_OK = 0, CFG_HELP = 1, CFG_USAGE = -1 };

/* Returns CFG_OK, CFG_HELP (usage printed to stdout; exit 0) or CFG_USAGE (reason printed to
 * stderr; exit 2). *npos receives the number of positional arguments (argv[1..*npos]). */
int cfg_parse(const char *prog, const char *usage, struct cfg_opt *opts, int argc, char **argv,
              int *npos);
/* Logs the effective configuration at info level, one line. */
void cfg_log(const struct cfg_opt *opts);
/* Prints the usage text for the table to a stream (stdout for --help). */
void cfg_usage(const char *prog, const char *usage, const struct cfg_opt *opts, void *stream);
/* Sets an option from text only when neither a flag nor the environment set it (used by
 * presets, which change defaults). Returns 0, or -1 when the name is unknown or the text
 * does not parse (a broken preset table: callers treat it as an invariant). */
int cfg_apply_default(struct cfg_opt *opts, const char *name, const char *text);
/* Replaces an option's default text before cfg_parse (presets, port bases); the text must
 * outlive the table. Returns 0, or -1 when the name is unknown. */
int cfg_set_default(struct cfg_opt *opts, const char *name, const char *text);
/* Makes option name's default the endpoint of the service at offset off (0 bankd, 1 tasks,
 * 2 events, 3 evald results): tcp://127.0.0.1:(NPID_PORT_BASE + off), base 5557 when
 * NPID_PORT_BASE is unset or empty. The text is written to buf (cap >= 32), which must outlive
 * the table. Returns 0, or -1 with a message on stderr (prefixed with prog) when
 * NPID_PORT_BASE is not a number in [1, 65532] (a usage error) or name is unknown. */
int cfg_endpoint_default(struct cfg_opt *opts, const char *name, int off, const char *prog,
                         char *buf, size_t cap);
/* Finds an option by name (NULL when absent). */
struct cfg_opt *cfg_find(struct cfg_opt *opts, const char *name);
/* Copies the rows of each table in parts (a NULL-terminated list), in order, into dst, which
 * has room for cap rows including the terminating { 0 }: a program with subcommands builds
 * each one's table from shared groups of rows. The copies keep their originals' dst and
 * default text; set_by is the copy's. Returns the number of rows, or -1 when they do not fit
 * (dst then empty). */
int cfg_join(struct cfg_opt *dst, size_t cap, const struct cfg_opt *const *parts);
/* Reads argv[1..argc-1] with cfg_parse's grammar for opts, assigning and moving nothing.
 * Returns the index of the first positional argument (a flag's separate value is none), 0
 * when there is none. When unknown is not NULL it receives the index of the first argument
 * cfg_parse would refuse as an unknown option (0: none; such a flag is taken to have no
 * separate value). Lets a program find its subcommand before choosing the table to parse
 * with, and name a flag that belongs to another subcommand. */
int cfg_scan(const struct cfg_opt *opts, int argc, char **argv, int *unknown);

#endif
