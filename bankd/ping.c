/* `npid-bankd ping`: see ping.h. */
#include "bankd/ping.h"

#include "common/cfg.h"
#include "common/curve.h"
#include "common/json.h"
#include "common/log.h"
#include "common/mp.h"
#include "common/msg.h"
#include "common/proto_bank.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int ping_print_json(FILE *out, const void *buf, size_t len)
{
    if (json_write_mp(out, buf, len, JSON_SPACED | JSON_EXACT) != 0)
        return -1;
    return fputc('\n', out) == EOF ? -1 : 0;
}

int ping_main(int argc, char **argv)
{
    const char *ep, *server_key, *curve_key;
    double timeout;
    struct cfg_opt opts[] = {
        { "bank", "NPID_BANK", CFG_STR, &ep, "tcp://127.0.0.1:5557", 0, 0,
          "endpoint of the npid-bankd to ask (default port: NPID_PORT_BASE)", 0 },
        { "timeout", NULL, CFG_DOUBLE, &timeout, "3", 0.001, 3600,
          "seconds to wait for the answer (connecting included)", 0 },
        { "bank-server-key", "NPID_BANK_SERVER_KEY", CFG_STR, &server_key, "", 0, 0,
          "public key file of a CURVE bankd (its .pub; needs --curve-key)", 0 },
        { "curve-key", "NPID_CURVE_KEY", CFG_STR, &curve_key, "", 0, 0,
          "this client's CURVE key pair file (npid-bankd keygen), its .pub in bankd's "
          "--curve-allow", 0 },
        { 0 }
    };
    static char ep_def[32];
    if (cfg_endpoint_default(opts, "bank", 0, "npid-bankd ping", ep_def, sizeof ep_def) != 0)
        return EXIT_USAGE;
    int npos;
    int rc = cfg_parse("npid-bankd ping", "[--bank EP] [--timeout SECONDS]\n"
                       "Sends info to npid-bankd and prints its reply as one JSON line; exit 0 "
                       "when it answered in time, 1 otherwise.", opts, argc, argv, &npos);
    if (rc == CFG_HELP)
        return EXIT_OK;
    if (rc != CFG_OK)
        return EXIT_USAGE;
    if (npos > 0) {
        fprintf(stderr, "npid-bankd ping: unexpected argument '%s' (try --help)\n", argv[1]);
        return EXIT_USAGE;
    }
    int status = EXIT_FAIL;
    struct curve_sock cs;
    char cerr[PATH_MAX + 300];
    int curve = curve_sock_client_flags(&cs, curve_key, server_key, "bank-server-key", cerr,
                                        sizeof cerr);
    if (curve < 0) {
        fprintf(stderr, "npid-bankd ping: %s\n", cerr);
        return curve == -2 ? EXIT_USAGE : EXIT_FAIL;
    }
    struct msg_opts mo = MSG_OPTS_DEFAULT;
    mo.curve = curve ? &cs : NULL;
    int timeout_ms = (int)ceil(timeout * 1000);
    struct msg_client *c = msg_client_new(ep, "ping", timeout_ms, 0, &mo);
    if (!c) {
        fprintf(stderr, "npid-bankd ping: cannot connect to %s: %s\n", ep, zmq_strerror(errno));
        goto done;
    }
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    /* no cid: a ping is read-only and never deduplicated */
    struct bank_hdr h = { BANK_OP_INFO, NULL, 0, msg_client_next_seq(c), 1,
                          NULL, 0 };
    const void *rep;
    size_t rep_len;
    if (proto_bank_encode_info_req(&pk, &h) != 0 ||
        msg_client_call(c, sb.data, sb.size, &rep, &rep_len) != 0) {
        if (errno == ETIMEDOUT)
            fprintf(stderr, "npid-bankd ping: no answer from %s within %g s: no reply (if the "
                    "server uses CURVE, check --bank-server-key/--curve-key)\n", ep, timeout);
        else
            fprintf(stderr, "npid-bankd ping: %s: %s\n", ep, zmq_strerror(errno));
    } else {
        struct mp_map m;
        uint64_t v;
        int ok;
        if (mp_map_open(&m, rep, rep_len, MP_MAX_DEPTH, NULL) != 0 ||
            mp_get_u64(&m, "v", &v) != MP_OK || mp_get_bool(&m, "ok", &ok) != MP_OK) {
            fprintf(stderr, "npid-bankd ping: %s answered with something that is not a bankd "
                    "reply (%zu bytes)\n", ep, rep_len);
        } else {
            ping_print_json(stdout, rep, rep_len);
            status = fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
        }
    }
    msgpack_sbuffer_destroy(&sb);
done:
    msg_client_destroy(&c);
    msg_ctx_term();
    return status;
}
