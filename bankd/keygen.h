/* `npid-bankd keygen --out PREFIX`: makes a CURVE key pair for any npid process (bankd's
 * server pair or a client's), PREFIX.key (secret, 0600) and PREFIX.pub (common/curve.h). */
#ifndef NPID_BANKD_KEYGEN_H
#define NPID_BANKD_KEYGEN_H

/* Runs the subcommand; argv[0] is "keygen". Prints the public key (Z85) as one line on
 * stdout. Returns the exit status: 0 written, 1 not (a file exists, I/O), 2 usage error. */
int keygen_main(int argc, char **argv);

#endif
