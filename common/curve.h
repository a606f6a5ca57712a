/* ZeroMQ CURVE security: key files, per-socket CURVE options, and a ZAP handler that admits
 * only the client keys of an allow-list (docs/protocol.md, "Encryption and who may connect").
 *
 * Keys are Z85 text (CURVE_Z85 characters for 32 bytes, zmq_z85_encode). Files:
 *   PREFIX.key  the key pair, secret: lines "public <z85>" and "secret <z85>"; it must be a
 *               regular file without group or other permission bits (mode 0600 or
 *               stricter), else it is refused, naming its mode; the public key must be the
 *               secret key's (zmq_curve_public).
 *   PREFIX.pub  the public key alone: one line, "<z85>".
 *   allow-list  one Z85 public key per line: so `cat a.pub b.pub > allow` makes one. A
 *               file, not a directory.
 * In all three, blanks around a line's text, blank lines and comment lines are ignored. A
 * comment line starts with '#' and is not itself a key: '#' is a Z85 digit, so a key may
 * start with one, and nothing may follow a key on its line.
 *
 * A CURVE server socket (struct curve_sock with server set) needs a ZAP handler on its
 * context (curve_zap_new) started before it binds: with none libzmq admits every client that
 * completes the handshake. One handler per context (it binds inproc://zeromq.zap.01); it
 * serves every CURVE server socket of the process, whatever their ZAP domain, and the domain
 * only names the socket in its log lines.
 *
 * The functions that read files report why they failed in a caller's buffer (err, err_cap:
 * one line naming the file); none reads a process global. */
#ifndef NPID_CURVE_H
#define NPID_CURVE_H

#include <stddef.h>
#include <stdint.h>

#define CURVE_Z85 40          /* characters of a Z85 key (32 bytes) */
#define CURVE_ALLOW_MAX 4096  /* keys an allow-list may hold */

/* A key pair, Z85 text (NUL-terminated). */
struct curve_keys {
    char pub[CURVE_Z85 + 1];
    char sec[CURVE_Z85 + 1];
};

/* Generates a key pair (zmq_curve_keypair) into PREFIX.key (mode 0600) and PREFIX.pub (mode
 * 0644), both created with O_CREAT | O_EXCL | O_NOFOLLOW: an existing file (or link) at
 * either name is never overwritten, and then neither is written. Both are fsynced. pub
 * (may be NULL) receives the public key. Returns 0, or -1 with a reason in err. */
int curve_keygen(const char *prefix, char pub[CURVE_Z85 + 1], char *err, size_t err_cap);

/* Reads a key pair file (see above). 0, or -1 with a reason in err (a mode with group or
 * other bits: "FILE: mode 0644 lets other users read the secret key (chmod 600 FILE)"). */
int curve_keys_load(const char *path, struct curve_keys *k, char *err, size_t err_cap);

/* Reads a public key file: its only key line (a PREFIX.pub). 0, or -1 with a reason. */
int curve_pub_load(const char *path, char pub[CURVE_Z85 + 1], char *err, size_t err_cap);

/* The CURVE options of one socket, applied by curve_sock_apply (common/msg.c does so when
 * struct msg_opts.curve is set) before it binds or connects. */
struct curve_sock {
    int server;                     /* 1: CURVE server (bind side), 0: client (connect side) */
    struct curve_keys own;          /* this process's pair (a server needs only .sec) */
    char server_pub[CURVE_Z85 + 1]; /* client: the server's public key */
    const char *domain;             /* server: ZMQ_ZAP_DOMAIN, names the socket in ZAP logs;
                                       NULL: "npid" */
};

/* Sets ZMQ_CURVE_SERVER, ZMQ_CURVE_SECRETKEY and ZMQ_ZAP_DOMAIN (server), or
 * ZMQ_CURVE_SERVERKEY, ZMQ_CURVE_PUBLICKEY and ZMQ_CURVE_SECRETKEY (client) on s. 0, or -1
 * with errno (EINVAL: a key that is not Z85). */
int curve_sock_apply(void *s, const struct curve_sock *c);

/* Builds a client's options from its key pair file and the server's public key file, or a
 * server's from its key pair file (server_pub_path NULL; domain as above, not copied).
 * 0, or -1 with a reason in err. */
int curve_sock_client(struct curve_sock *c, const char *keys_path, const char *server_pub_path,
                      char *err, size_t err_cap);
int curve_sock_server(struct curve_sock *c, const char *keys_path, const char *domain,
                      char *err, size_t err_cap);

/* A client's two flags (--curve-key keys_path, server_flag server_pub_path): both NULL or ""
 * means no CURVE (returns 0); both set loads them into c (returns 1); a file that does not
 * load returns -1, one flag alone -2 (a usage error), with a reason in err. */
int curve_sock_client_flags(struct curve_sock *c, const char *keys_path,
                            const char *server_pub_path, const char *server_flag, char *err,
                            size_t err_cap);

/* ---- allow-list and ZAP handler --------------------------------------------------------- */

/* A ZAP handler: a thread answering ZAP requests on inproc://zeromq.zap.01 of ctx. Status
 * 200 for a CURVE client whose public key is in the allow-list, 400 for any other (and for a
 * request that is not CURVE or not well formed). Each refused key is logged once (warn, with
 * its Z85 text, peer address and domain); after CURVE_ZAP_LOGGED distinct keys, further new
 * ones are counted, not logged. The handler's thread blocks every signal. */
struct curve_zap;
#define CURVE_ZAP_LOGGED 256

/* Reads allow_path (see above: an unreadable file, a line that is not one Z85 key, no key at
 * all, or more than CURVE_ALLOW_MAX are errors), binds the handler on ctx and starts its
 * thread. NULL on failure, with a reason in err (EADDRINUSE: ctx has a handler already). */
struct curve_zap *curve_zap_new(void *ctx, const char *allow_path, char *err, size_t err_cap);
/* Stops the thread and closes its sockets (before the context is terminated); *z NULL
 * after; accepts NULL. */
void curve_zap_destroy(struct curve_zap **z);
/* Keys in the allow-list. */
size_t curve_zap_allowed_keys(const struct curve_zap *z);
/* Requests answered since start: admitted (200) and refused (400). Any thread. */
uint64_t curve_zap_admitted(const struct curve_zap *z);
uint64_t curve_zap_refused(const struct curve_zap *z);

#endif
