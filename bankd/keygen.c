/* `npid-bankd keygen`: see keygen.h. */
#include "bankd/keygen.h"

#include "common/cfg.h"
#include "common/curve.h"
#include "common/log.h"

#include <stdio.h>
#include <zmq.h>

int keygen_main(int argc, char **argv)
{
    const char *out;
    struct cfg_opt opts[] = {
        { "out", NULL, CFG_STR, &out, "", 0, 0,
          "writes OUT.key (the key pair, mode 0600) and OUT.pub (the public key); existing "
          "files are never overwritten", 0 },
        { 0 }
    };
    int npos;
    int rc = cfg_parse("npid-bankd keygen", "--out PREFIX\n"
                       "Makes a CURVE key pair (docs/protocol.md, \"Encryption and who may "
                       "connect\") and prints its public key.", opts, argc, argv, &npos);
    if (rc == CFG_HELP)
        return EXIT_OK;
    if (rc != CFG_OK)
        return EXIT_USAGE;
    if (npos > 0) {
        fprintf(stderr, "npid-bankd keygen: unexpected argument '%s' (try --help)\n", argv[1]);
        return EXIT_USAGE;
    }
    if (!out[0]) {
        fprintf(stderr, "npid-bankd keygen: --out PREFIX is required\n");
        return EXIT_USAGE;
    }
    if (!zmq_has("curve")) {
        fprintf(stderr, "npid-bankd keygen: this libzmq has no CURVE support\n");
        return EXIT_FAIL;
    }
    char pub[CURVE_Z85 + 1], err[600];
    if (curve_keygen(out, pub, err, sizeof err) != 0) {
        fprintf(stderr, "npid-bankd keygen: %s\n", err);
        return EXIT_FAIL;
    }
    printf("%s\n", pub);
    return fflush(stdout) == 0 ? EXIT_OK : EXIT_FAIL;
}
