/* CURVE key files, socket options and the ZAP handler: see curve.h. */
#include "common/curve.h"

#include "common/durable.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#define CURVE_FILE_MAX ((size_t)1 << 20) /* bytes of a key file or allow-list read at most */

/* 1 when s (exactly CURVE_Z85 characters) decodes as Z85, with the key bytes in out. */
static int curve_z85_ok(const char *s, size_t len, uint8_t out[32])
{
    char tmp[CURVE_Z85 + 1];
    if (len != CURVE_Z85)
        return 0;
    memcpy(tmp, s, CURVE_Z85);
    tmp[CURVE_Z85] = 0;
    return zmq_z85_decode(out, tmp) != NULL;
}

/* Reads a whole regular file of at most CURVE_FILE_MAX bytes into a NUL-terminated malloc'd
 * buffer of *out_len bytes (plus the NUL); *mode gets its permission bits. 0, or -1 with a
 * reason in err. */
static int curve_read(const char *path, char **out, size_t *out_len, mode_t *mode, char *err,
                      size_t err_cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        err_set(err, err_cap, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0) {
        err_set(err, err_cap, "%s: %s", path, strerror(errno));
        goto fail_fd;
    }
    if (!S_ISREG(st.st_mode)) {
        err_set(err, err_cap, "%s: not a regular file", path);
        goto fail_fd;
    }
    if ((uint64_t)st.st_size > CURVE_FILE_MAX) {
        err_set(err, err_cap, "%s: larger than %zu bytes: not a key file", path, CURVE_FILE_MAX);
        goto fail_fd;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        err_set(err, err_cap, "%s: out of memory", path);
        goto fail_fd;
    }
    size_t len = 0;
    while (len < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + len, (size_t)st.st_size - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            err_set(err, err_cap, "%s: %s", path, n < 0 ? strerror(errno) : "shrank while read");
            free(buf);
            goto fail_fd;
        }
        len += (size_t)n;
    }
    buf[len] = 0;
    close(fd);
    *out = buf;
    *out_len = len;
    *mode = st.st_mode & 07777;
    return 0;
fail_fd:
    close(fd);
    return -1;
}

/* Line iterator over a NUL-terminated buffer: each call yields the next line with surrounding
 * blanks removed, skipping blank lines and comment lines: first non-blank character '#',
 * unless the line is a Z85 key ('#' is a Z85 digit: a key may start with one, and a key
 * line has no trailing comment). *line, *len and *lineno (1-based) describe it; 0 at the
 * end. */
static int curve_next_line(char **pos, int *lineno, const char **line, size_t *len)
{
    while (**pos) {
        char *s = *pos, *nl = strchr(s, '\n');
        char *end = nl ? nl : s + strlen(s);
        *pos = nl ? nl + 1 : end;
        (*lineno)++;
        while (s < end && (*s == ' ' || *s == '\t' || *s == '\r'))
            s++;
        uint8_t bin[32];
        if (s < end && *s == '#' && !curve_z85_ok(s, (size_t)(end - s), bin))
            continue;
        while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
            end--;
        if (end > s) {
            *line = s;
            *len = (size_t)(end - s);
            return 1;
        }
    }
    return 0;
}

int curve_keys_load(const char *path, struct curve_keys *k, char *err, size_t err_cap)
{
    char *buf;
    size_t size;
    mode_t mode;
    if (curve_read(path, &buf, &size, &mode, err, err_cap) != 0)
        return -1;
    int rc = -1;
    if (mode & 077) {
        err_set(err, err_cap, "%s: mode %04o lets other users read the secret key (chmod 600 %s)",
                path, (unsigned)mode, path);
        goto done;
    }
    memset(k, 0, sizeof *k);
    char *pos = buf;
    int lineno = 0;
    const char *line;
    size_t len;
    uint8_t bin[32];
    while (curve_next_line(&pos, &lineno, &line, &len)) {
        char *dst = NULL;
        if (len > 7 && !strncmp(line, "public", 6) && (line[6] == ' ' || line[6] == '\t'))
            dst = k->pub;
        else if (len > 7 && !strncmp(line, "secret", 6) && (line[6] == ' ' || line[6] == '\t'))
            dst = k->sec;
        size_t off = 7;
        while (dst && off < len && (line[off] == ' ' || line[off] == '\t'))
            off++;
        /* the line's text is never quoted: it may hold the secret */
        if (!dst || !curve_z85_ok(line + off, len - off, bin)) {
            err_set(err, err_cap, "%s:%d: not \"public KEY\" or \"secret KEY\" with a %d-character "
                    "Z85 key (make one with npid-bankd keygen)", path, lineno, CURVE_Z85);
            goto done;
        }
        if (dst[0]) {
            err_set(err, err_cap, "%s:%d: a second %s key", path, lineno, dst == k->pub ?
                    "public" : "secret");
            goto done;
        }
        memcpy(dst, line + off, CURVE_Z85);
        dst[CURVE_Z85] = 0;
    }
    char derived[CURVE_Z85 + 1];
    if (!k->pub[0] || !k->sec[0]) {
        err_set(err, err_cap, "%s: no %s key line (a key pair file from npid-bankd keygen holds "
                "both)", path, k->pub[0] ? "secret" : "public");
        goto done;
    }
    if (zmq_curve_public(derived, k->sec) != 0 || strcmp(derived, k->pub) != 0) {
        err_set(err, err_cap, "%s: the public key is not the secret key's", path);
        goto done;
    }
    rc = 0;
done:
    if (rc != 0)
        memset(k, 0, sizeof *k);
    /* the secret's text does not outlive the load */
    memset(buf, 0, size);
    free(buf);
    return rc;
}

int curve_pub_load(const char *path, char pub[CURVE_Z85 + 1], char *err, size_t err_cap)
{
    char *buf;
    size_t size;
    mode_t mode;
    if (curve_read(path, &buf, &size, &mode, err, err_cap) != 0)
        return -1;
    int rc = -1, n = 0;
    char *pos = buf;
    int lineno = 0;
    const char *line;
    size_t len;
    uint8_t bin[32];
    while (curve_next_line(&pos, &lineno, &line, &len)) {
        if (!curve_z85_ok(line, len, bin)) {
            err_set(err, err_cap, "%s:%d: not a %d-character Z85 public key (a .pub file from "
                    "npid-bankd keygen)", path, lineno, CURVE_Z85);
            goto done;
        }
        if (n++) {
            err_set(err, err_cap, "%s:%d: a second key (a .pub file holds one)", path, lineno);
            goto done;
        }
        memcpy(pub, line, CURVE_Z85);
        pub[CURVE_Z85] = 0;
    }
    if (n == 0) {
        err_set(err, err_cap, "%s: no public key in it", path);
        goto done;
    }
    rc = 0;
done:
    free(buf);
    return rc;
}

/* Writes all of buf to fd: 0, or -1 with errno. */
static int curve_write_all(int fd, const char *buf, size_t len)
{
    while (len) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        buf += n;
        len -= (size_t)n;
    }
    return 0;
}

int curve_keygen(const char *prefix, char pub[CURVE_Z85 + 1], char *err, size_t err_cap)
{
    char key_path[PATH_MAX], pub_path[PATH_MAX];
    if (!prefix || !prefix[0] ||
        (size_t)snprintf(key_path, sizeof key_path, "%s.key", prefix) >= sizeof key_path ||
        (size_t)snprintf(pub_path, sizeof pub_path, "%s.pub", prefix) >= sizeof pub_path) {
        err_set(err, err_cap, "an empty or too long prefix");
        return -1;
    }
    struct curve_keys k;
    if (zmq_curve_keypair(k.pub, k.sec) != 0) {
        err_set(err, err_cap, "cannot generate a key pair: %s", zmq_strerror(errno));
        return -1;
    }
    int rc = -1, made_key = 0, made_pub = 0;
    int kfd = open(key_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    int pfd = -1;
    if (kfd < 0) {
        err_set(err, err_cap, "%s: %s%s", key_path, strerror(errno),
                errno == EEXIST ? " (never overwritten: remove it or choose another --out)" : "");
        goto done;
    }
    made_key = 1;
    pfd = open(pub_path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (pfd < 0) {
        err_set(err, err_cap, "%s: %s%s", pub_path, strerror(errno),
                errno == EEXIST ? " (never overwritten: remove it or choose another --out)" : "");
        goto done;
    }
    made_pub = 1;
    const char *base = strrchr(prefix, '/');
    base = base ? base + 1 : prefix;
    char text[PATH_MAX + 256];
    int n = snprintf(text, sizeof text, "# npid CURVE key pair (npid-bankd keygen): keep it secret "
                     "(mode 0600);\n# give the peers %s.pub\npublic %s\nsecret %s\n", base, k.pub,
                     k.sec);
    char line[CURVE_Z85 + 2];
    snprintf(line, sizeof line, "%s\n", k.pub);
    if (curve_write_all(kfd, text, (size_t)n) != 0 || fsync(kfd) != 0) {
        err_set(err, err_cap, "%s: %s", key_path, strerror(errno));
        memset(text, 0, sizeof text);
        goto done;
    }
    memset(text, 0, sizeof text);
    if (curve_write_all(pfd, line, strlen(line)) != 0 || fsync(pfd) != 0) {
        err_set(err, err_cap, "%s: %s", pub_path, strerror(errno));
        goto done;
    }
    (void)durable_sync_dir(key_path); /* best effort: the files are written and fsynced */
    if (pub)
        snprintf(pub, CURVE_Z85 + 1, "%s", k.pub);
    rc = 0;
done:
    if (kfd >= 0)
        close(kfd);
    if (pfd >= 0)
        close(pfd);
    if (rc != 0) {
        if (made_key)
            unlink(key_path);
        if (made_pub)
            unlink(pub_path);
    }
    memset(&k, 0, sizeof k);
    return rc;
}

int curve_sock_apply(void *s, const struct curve_sock *c)
{
    if (c->server) {
        int one = 1;
        const char *dom = c->domain ? c->domain : "npid";
        if (zmq_setsockopt(s, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
            zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, c->own.sec, CURVE_Z85) != 0 ||
            zmq_setsockopt(s, ZMQ_ZAP_DOMAIN, dom, strlen(dom)) != 0)
            return -1;
        return 0;
    }
    if (zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, c->server_pub, CURVE_Z85) != 0 ||
        zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, c->own.pub, CURVE_Z85) != 0 ||
        zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, c->own.sec, CURVE_Z85) != 0)
        return -1;
    return 0;
}

/* 1 when this libzmq has CURVE, else 0 with the reason in err. */
static int curve_available(char *err, size_t err_cap)
{
    if (zmq_has("curve"))
        return 1;
    err_set(err, err_cap, "this libzmq was built without CURVE support");
    return 0;
}

int curve_sock_client(struct curve_sock *c, const char *keys_path, const char *server_pub_path,
                      char *err, size_t err_cap)
{
    memset(c, 0, sizeof *c);
    if (!curve_available(err, err_cap))
        return -1;
    if (curve_keys_load(keys_path, &c->own, err, err_cap) != 0 ||
        curve_pub_load(server_pub_path, c->server_pub, err, err_cap) != 0) {
        memset(c, 0, sizeof *c);
        return -1;
    }
    return 0;
}

int curve_sock_client_flags(struct curve_sock *c, const char *keys_path,
                            const char *server_pub_path, const char *server_flag, char *err,
                            size_t err_cap)
{
    int has_keys = keys_path && keys_path[0], has_srv = server_pub_path && server_pub_path[0];
    if (!has_keys && !has_srv)
        return 0;
    if (!has_keys || !has_srv) {
        err_set(err, err_cap, "--curve-key and --%s go together (the client's key pair and the "
                "server's public key)", server_flag);
        return -2;
    }
    return curve_sock_client(c, keys_path, server_pub_path, err, err_cap) == 0 ? 1 : -1;
}

int curve_sock_server(struct curve_sock *c, const char *keys_path, const char *domain,
                      char *err, size_t err_cap)
{
    memset(c, 0, sizeof *c);
    if (!curve_available(err, err_cap))
        return -1;
    if (curve_keys_load(keys_path, &c->own, err, err_cap) != 0)
        return -1;
    c->server = 1;
    c->domain = domain;
    return 0;
}

/* ---- ZAP handler ------------------------------------------------------------------------ */

struct curve_zap {
    void *sock;                 /* REP bound at inproc://zeromq.zap.01 (the thread's) */
    void *ctl_in, *ctl_out;     /* PAIR: a frame on ctl_out stops the thread */
    pthread_t thread;
    int started;
    uint8_t (*keys)[32];        /* the allow-list, sorted */
    size_t n_keys;
    char allow_path[PATH_MAX];  /* for log lines */
    uint8_t logged[CURVE_ZAP_LOGGED][32]; /* refused keys already logged (the thread's) */
    size_t n_logged;
    int overflow_logged;
    _Atomic uint64_t admitted, refused;
};

static int curve_key_cmp(const void *a, const void *b)
{
    return memcmp(a, b, 32);
}

/* Reads the allow-list into z->keys (sorted). 0, or -1 with a reason. */
static int curve_allow_load(struct curve_zap *z, const char *path, char *err, size_t err_cap)
{
    char *buf;
    size_t size;
    mode_t mode;
    if (curve_read(path, &buf, &size, &mode, err, err_cap) != 0)
        return -1;
    int rc = -1;
    size_t cap = 16;
    z->keys = malloc(cap * sizeof *z->keys);
    if (!z->keys) {
        err_set(err, err_cap, "%s: out of memory", path);
        goto done;
    }
    char *pos = buf;
    int lineno = 0;
    const char *line;
    size_t len;
    while (curve_next_line(&pos, &lineno, &line, &len)) {
        if (z->n_keys == CURVE_ALLOW_MAX) {
            err_set(err, err_cap, "%s: more than %d keys", path, CURVE_ALLOW_MAX);
            goto done;
        }
        if (z->n_keys == cap) {
            void *p = realloc(z->keys, 2 * cap * sizeof *z->keys);
            if (!p) {
                err_set(err, err_cap, "%s: out of memory", path);
                goto done;
            }
            z->keys = p;
            cap *= 2;
        }
        if (!curve_z85_ok(line, len, z->keys[z->n_keys])) {
            err_set(err, err_cap, "%s:%d: not a %d-character Z85 public key (an allow-list holds "
                    "one per line, e.g. the clients' .pub files)", path, lineno, CURVE_Z85);
            goto done;
        }
        z->n_keys++;
    }
    if (z->n_keys == 0) {
        err_set(err, err_cap, "%s: no key in it: no client could connect", path);
        goto done;
    }
    qsort(z->keys, z->n_keys, sizeof *z->keys, curve_key_cmp);
    rc = 0;
done:
    free(buf);
    return rc;
}

/* Copies frame m as a NUL-terminated printable string into out (other bytes as '?'). */
static void curve_frame_str(zmq_msg_t *m, char *out, size_t cap)
{
    size_t n = zmq_msg_size(m);
    const unsigned char *p = zmq_msg_data(m);
    if (n >= cap)
        n = cap - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = p[i] >= 0x20 && p[i] < 0x7f ? (char)p[i] : '?';
    out[n] = 0;
}

/* Logs a refused key once (the first CURVE_ZAP_LOGGED distinct keys). */
static void curve_zap_log_refusal(struct curve_zap *z, const uint8_t key[32], const char *addr,
                                  const char *domain)
{
    for (size_t i = 0; i < z->n_logged; i++)
        if (!memcmp(z->logged[i], key, 32))
            return;
    if (z->n_logged == CURVE_ZAP_LOGGED) {
        if (!z->overflow_logged)
            log_warn("CURVE: %d distinct client keys refused; further ones are not logged",
                     CURVE_ZAP_LOGGED);
        z->overflow_logged = 1;
        return;
    }
    memcpy(z->logged[z->n_logged++], key, 32);
    char z85[CURVE_Z85 + 1];
    zmq_z85_encode(z85, key, 32);
    log_warn("CURVE: refused client key %s from %s on %s: not in the allow-list %s "
             "(logged once per key)", z85, addr, domain, z->allow_path);
}

/* Receives one ZAP request (RFC 27: version, request id, domain, address, routing id,
 * mechanism, credentials...) and answers it. */
static void curve_zap_serve(struct curve_zap *z)
{
    enum { NF = 8 };
    zmq_msg_t f[NF];
    int n = 0, more = 1;
    while (more && n < NF) {
        zmq_msg_init(&f[n]);
        if (zmq_msg_recv(&f[n], z->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&f[n]);
            if (n == 0)
                return; /* nothing there after all */
            break;
        }
        more = zmq_msg_more(&f[n]);
        n++;
    }
    if (more) {
        int m = 1;
        size_t sz = sizeof m;
        while (zmq_getsockopt(z->sock, ZMQ_RCVMORE, &m, &sz) == 0 && m) {
            zmq_msg_t x;
            zmq_msg_init(&x);
            int rc = zmq_msg_recv(&x, z->sock, ZMQ_DONTWAIT);
            zmq_msg_close(&x);
            if (rc < 0)
                break;
            sz = sizeof m;
        }
    }
    const char *status = "400", *text = "not allowed";
    char domain[64] = "?", addr[64] = "?", mech[16] = "";
    if (n < 6 || zmq_msg_size(&f[0]) != 3 || memcmp(zmq_msg_data(&f[0]), "1.0", 3) != 0) {
        status = "500";
        text = "malformed ZAP request";
    } else {
        curve_frame_str(&f[2], domain, sizeof domain);
        curve_frame_str(&f[3], addr, sizeof addr);
        curve_frame_str(&f[5], mech, sizeof mech);
        if (!strcmp(mech, "CURVE") && n == 7 && zmq_msg_size(&f[6]) == 32) {
            const uint8_t *key = zmq_msg_data(&f[6]);
            if (bsearch(key, z->keys, z->n_keys, sizeof *z->keys, curve_key_cmp)) {
                status = "200";
                text = "OK";
            } else {
                curve_zap_log_refusal(z, key, addr, domain);
            }
        } else {
            log_warn("CURVE: refused a %s client from %s on %s (only CURVE is admitted)",
                     mech[0] ? mech : "?", addr, domain);
        }
    }
    if (!strcmp(status, "200"))
        atomic_fetch_add(&z->admitted, 1);
    else
        atomic_fetch_add(&z->refused, 1);
    const void *rid = n >= 2 ? zmq_msg_data(&f[1]) : "";
    size_t rid_len = n >= 2 ? zmq_msg_size(&f[1]) : 0;
    /* a failed reply leaves the client's handshake pending: it fails closed */
    if (zmq_send(z->sock, "1.0", 3, ZMQ_SNDMORE) < 0 ||
        zmq_send(z->sock, rid, rid_len, ZMQ_SNDMORE) < 0 ||
        zmq_send(z->sock, status, 3, ZMQ_SNDMORE) < 0 ||
        zmq_send(z->sock, text, strlen(text), ZMQ_SNDMORE) < 0 ||
        zmq_send(z->sock, "", 0, ZMQ_SNDMORE) < 0 ||
        zmq_send(z->sock, "", 0, 0) < 0)
        log_error("CURVE: cannot answer a ZAP request: %s", zmq_strerror(errno));
    for (int i = 0; i < n; i++)
        zmq_msg_close(&f[i]);
}

static void *curve_zap_main(void *arg)
{
    struct curve_zap *z = arg;
    for (;;) {
        zmq_pollitem_t it[2] = { { z->sock, 0, ZMQ_POLLIN, 0 }, { z->ctl_in, 0, ZMQ_POLLIN, 0 } };
        if (zmq_poll(it, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            log_error("CURVE: the ZAP handler stops: %s (new clients cannot connect)",
                      zmq_strerror(errno));
            break;
        }
        if (it[1].revents & ZMQ_POLLIN)
            break;
        if (it[0].revents & ZMQ_POLLIN)
            curve_zap_serve(z);
    }
    return NULL;
}

struct curve_zap *curve_zap_new(void *ctx, const char *allow_path, char *err, size_t err_cap)
{
    struct curve_zap *z = calloc(1, sizeof *z);
    if (!z) {
        err_set(err, err_cap, "out of memory");
        return NULL;
    }
    snprintf(z->allow_path, sizeof z->allow_path, "%s", allow_path);
    if (curve_allow_load(z, allow_path, err, err_cap) != 0)
        goto fail_zap;
    char ctl[64];
    snprintf(ctl, sizeof ctl, "inproc://npid-zap-ctl-%p", (void *)z);
    int zero = 0;
    z->sock = zmq_socket(ctx, ZMQ_REP);
    z->ctl_in = zmq_socket(ctx, ZMQ_PAIR);
    z->ctl_out = zmq_socket(ctx, ZMQ_PAIR);
    if (!z->sock || !z->ctl_in || !z->ctl_out ||
        zmq_setsockopt(z->sock, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_setsockopt(z->ctl_in, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_setsockopt(z->ctl_out, ZMQ_LINGER, &zero, sizeof zero) != 0 ||
        zmq_bind(z->ctl_in, ctl) != 0 || zmq_connect(z->ctl_out, ctl) != 0) {
        err_set(err, err_cap, "cannot create the ZAP handler's sockets: %s", zmq_strerror(errno));
        goto fail_zap;
    }
    if (zmq_bind(z->sock, "inproc://zeromq.zap.01") != 0) {
        err_set(err, err_cap, "cannot bind the ZAP handler: %s", zmq_strerror(errno));
        goto fail_zap;
    }
    /* the thread takes no signal: they stay with the threads whose waits they must end */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&z->thread, NULL, curve_zap_main, z);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        err_set(err, err_cap, "cannot start the ZAP handler: %s", strerror(rc));
        goto fail_zap;
    }
    z->started = 1;
    return z;
fail_zap:
    curve_zap_destroy(&z);
    return NULL;
}

void curve_zap_destroy(struct curve_zap **zp)
{
    if (!zp || !*zp)
        return;
    struct curve_zap *z = *zp;
    if (z->started) {
        /* a PAIR send blocks only without a peer, and the peer is connected */
        NPID_CHECK(zmq_send(z->ctl_out, "", 0, 0) == 0);
        pthread_join(z->thread, NULL);
    }
    if (z->sock)
        zmq_close(z->sock);
    if (z->ctl_in)
        zmq_close(z->ctl_in);
    if (z->ctl_out)
        zmq_close(z->ctl_out);
    free(z->keys);
    free(z);
    *zp = NULL;
}

size_t curve_zap_allowed_keys(const struct curve_zap *z)
{
    return z->n_keys;
}

uint64_t curve_zap_admitted(const struct curve_zap *z)
{
    return atomic_load(&((struct curve_zap *)z)->admitted);
}

uint64_t curve_zap_refused(const struct curve_zap *z)
{
    return atomic_load(&((struct curve_zap *)z)->refused);
}
