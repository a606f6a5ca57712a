/* npid-bankd: the memory-bank daemon. Holds the n x d bank of L2-normalised features,
 * answers sample / update / get over a ROUTER socket (docs/protocol.md), and keeps durable
 * snapshots: periodically, on request, and on SIGTERM/SIGINT before exiting.
 * `npid-bankd ping` asks a running one for info (bankd/ping.h); `npid-bankd keygen` makes a
 * CURVE key pair (bankd/keygen.h). With --curve-key and --curve-allow its socket is a CURVE
 * server admitting only the allowed client keys (common/curve.h). With --shard i/N it holds
 * only shard i's rows of the bank (bankd/bank.h; docs/protocol.md "Shards"). */
#include "bankd/keygen.h"
#include "bankd/ping.h"
#include "bankd/server.h"

#include "common/cfg.h"
#include "common/curve.h"
#include "common/log.h"
#include "common/msg.h"
#include "common/sig.h"
#include "common/sysmem.h"

#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Parses --shard "i/N" (decimal, 0 <= i < N <= BANK_MAX_SHARDS); 0, or -1 (message printed). */
static int shard_parse(const char *text, uint32_t *shard, uint32_t *shards)
{
    unsigned long long v[2] = { 0, 0 };
    const char *p = text;
    for (int k = 0; k < 2; k++) {
        if (*p < '0' || *p > '9')
            goto bad;
        while (*p >= '0' && *p <= '9') {
            v[k] = v[k] * 10 + (unsigned)(*p++ - '0');
            if (v[k] > BANK_MAX_SHARDS)
                goto bad;
        }
        if (k == 0 && *p++ != '/')
            goto bad;
    }
    if (*p || v[1] == 0 || v[0] >= v[1])
        goto bad;
    *shard = (uint32_t)v[0];
    *shards = (uint32_t)v[1];
    return 0;
bad:
    fprintf(stderr, "npid-bankd: --shard '%s': want i/N, shard i of N with 0 <= i < N <= %u "
            "(e.g. 0/2 and 1/2)\n", text, BANK_MAX_SHARDS);
    return -1;
}

/* Sets --max-bytes' default to a quarter of physical memory (unbounded when unknown). */
static void max_bytes_default(struct cfg_opt *opts)
{
    static char def[24];
    uint64_t ram = sysmem_physical();
    snprintf(def, sizeof def, "%llu", ram ? (unsigned long long)(ram / 4 > 4096 ? ram / 4 : 4096)
                                          : (unsigned long long)1e19);
    cfg_set_default(opts, "max-bytes", def);
}

int main(int argc, char **argv)
{
    const char *bind, *dir, *init_mode, *level, *curve_key, *curve_allow, *shard_text;
    double every;
    uint64_t rows, dim, seed, max_frame, max_bytes;
    int allow_remote, cache_clients;
    struct cfg_opt opts[] = {
        { "bind", "NPID_BANKD_BIND", CFG_STR, &bind, "tcp://127.0.0.1:5557", 0, 0,
          "endpoint to serve on (tcp://host:port or ipc://path; default port: NPID_PORT_BASE)", 0 },
        { "allow-remote", "NPID_ALLOW_REMOTE", CFG_BOOL, &allow_remote, "false", 0, 0,
          "allow binding a non-loopback address", 0 },
        { "curve-key", "NPID_BANKD_CURVE_KEY", CFG_STR, &curve_key, "", 0, 0,
          "bankd's CURVE key pair file (npid-bankd keygen; mode 0600): encrypt and "
          "authenticate every connection (needs --curve-allow; empty: no CURVE)", 0 },
        { "curve-allow", "NPID_BANKD_CURVE_ALLOW", CFG_STR, &curve_allow, "", 0, 0,
          "with --curve-key: file of the client public keys admitted, one Z85 key per line "
          "('#' comments; e.g. cat a.pub b.pub)", 0 },
        { "shard", "NPID_BANKD_SHARD", CFG_STR, &shard_text, "0/1", 0, 0,
          "serve shard i of N (i/N): the global rows [i n/N, (i+1) n/N) of an n-row bank "
          "(0/1: the whole bank)", 0 },
        { "dir", "NPID_BANK_DIR", CFG_STR, &dir, "", 0, 0,
          "snapshot directory (empty: no snapshots)", 0 },
        { "snapshot-every", "NPID_BANK_SNAPSHOT_EVERY", CFG_DOUBLE, &every, "60", 0, 1e7,
          "seconds between periodic snapshots when the bank changed (0: off)", 0 },
        { "rows", NULL, CFG_U64, &rows, "0", 0, 4294967295.0,
          "create a bank of this many rows at start (normally the trainer sends init)", 0 },
        { "dim", NULL, CFG_U64, &dim, "0", 0, 65536, "feature dimension of that bank", 0 },
        { "seed", NULL, CFG_U64, &seed, "0", 0, 0, "seed for that bank", 0 },
        { "init", NULL, CFG_STR, &init_mode, "uniform", 0, 0,
          "initialisation of that bank: uniform (reference) or unit", 0 },
        { "max-frame", "NPID_MAX_FRAME", CFG_U64, &max_frame, "67108864", 1024, 4294967295.0,
          "largest request or reply frame, bytes (a larger request is answered EMSGSIZE; one "
          "over 4 times this drops the connection)", 0 },
        { "max-bytes", "NPID_BANK_MAX_BYTES", CFG_U64, &max_bytes, "0", 4096, 1.8e19,
          "largest bank init or --rows/--dim may create, bytes (rows x (4 dim + 12) plus a "
          "few hundred; default: a quarter of physical memory); a larger init gets ENOMEM, a "
          "larger snapshot in --dir stops bankd at start", 0 },
        { "cache-clients", NULL, CFG_INT, &cache_clients, "256", 0, 65536,
          "clients whose last reply is kept for retries", 0 },
        { "log-level", "NPID_LOG_LEVEL", CFG_STR, &level, "info", 0, 0,
          "debug, info, warn or error", 0 },
        { 0 }
    };
    log_init("npid-bankd");
    if (argc > 1 && !strcmp(argv[1], "ping"))
        return ping_main(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "keygen"))
        return keygen_main(argc - 1, argv + 1);
    static char ep_def[32];
    if (cfg_endpoint_default(opts, "bind", 0, "npid-bankd", ep_def, sizeof ep_def) != 0)
        return EXIT_USAGE;
    max_bytes_default(opts);
    int npos;
    int rc = cfg_parse("npid-bankd", "[options]\n       npid-bankd ping [--bank EP] [--timeout "
                       "SECONDS]   (see npid-bankd ping --help)\n"
                       "       npid-bankd keygen --out PREFIX   (CURVE key pair; see npid-bankd "
                       "keygen --help)", opts, argc, argv, &npos);
    if (rc == CFG_HELP)
        return EXIT_OK;
    if (rc != CFG_OK)
        return EXIT_USAGE;
    if (npos > 0) {
        fprintf(stderr, "npid-bankd: unexpected argument '%s' (try --help)\n", argv[1]);
        return EXIT_USAGE;
    }
    int lvl = log_level_parse(level);
    if (lvl < 0) {
        fprintf(stderr, "npid-bankd: --log-level: unknown level '%s'\n", level);
        return EXIT_USAGE;
    }
    log_set_level(lvl);
    enum bank_init_mode mode;
    if (!strcmp(init_mode, "uniform"))
        mode = BANK_INIT_UNIFORM;
    else if (!strcmp(init_mode, "unit"))
        mode = BANK_INIT_UNIT;
    else {
        fprintf(stderr, "npid-bankd: --init must be uniform or unit\n");
        return EXIT_USAGE;
    }
    uint32_t shard, shards;
    if (shard_parse(shard_text, &shard, &shards) != 0)
        return EXIT_USAGE;
    if ((rows == 0) != (dim == 0)) {
        fprintf(stderr, "npid-bankd: --rows and --dim go together\n");
        return EXIT_USAGE;
    }
    if (!curve_key[0] != !curve_allow[0]) {
        fprintf(stderr, "npid-bankd: --curve-key and --curve-allow go together (bankd's key "
                "pair and the clients it admits)\n");
        return EXIT_USAGE;
    }
    cfg_log(opts);
    /* CURVE: the ZAP handler runs before the socket binds, so no client is ever admitted
       unchecked */
    struct curve_sock cs;
    struct curve_zap *zap = NULL;
    if (curve_key[0]) {
        char err[PATH_MAX + 300];
        if (curve_sock_server(&cs, curve_key, "bankd", err, sizeof err) != 0)
            npid_fatal("--curve-key: %s", err);
        zap = curve_zap_new(msg_ctx(), curve_allow, err, sizeof err);
        if (!zap) {
            msg_ctx_term();
            npid_fatal("--curve-allow: %s", err);
        }
        log_info("CURVE on: public key %s, %zu client keys allowed (%s)", cs.own.pub,
                 curve_zap_allowed_keys(zap), curve_allow);
    }
    if (sig_install() != 0)
        npid_fatal("cannot install signal handlers");
    /* a file size limit makes writes fail with EFBIG (reported) instead of killing us */
    signal(SIGXFSZ, SIG_IGN);

    if (sysmem_physical() && max_bytes > sysmem_physical())
        log_warn("--max-bytes exceeds physical memory: a bank that large may get bankd killed");
    struct server_cfg sc = { bind, allow_remote, dir, every, rows, dim, seed, shard, shards,
                             mode, max_frame, max_bytes, cache_clients, zap ? &cs : NULL };
    struct server *s = server_new(&sc);
    if (!s) {
        curve_zap_destroy(&zap);
        msg_ctx_term();
        npid_fatal("cannot start (see above)");
    }
    rc = server_run(s);
    server_destroy(&s);
    curve_zap_destroy(&zap);
    msg_ctx_term();
    return rc == 0 ? EXIT_OK : EXIT_FAIL;
}
