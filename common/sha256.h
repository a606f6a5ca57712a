/* SHA-256 (FIPS 180-4), for checkpoint identities published in events. */
#ifndef NPID_SHA256_H
#define NPID_SHA256_H
#include <stddef.h>
#include <stdint.h>

struct sha256 { uint32_t h[8]; uint64_t len; unsigned char buf[64]; size_t fill; };

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t len);
void sha256_final(struct sha256 *s, unsigned char out[32]);
/* Hex digest of a file (65 bytes incl. NUL); 0 or -1 with errno. */
int sha256_file_hex(const char *path, char hex[65]);
void sha256_hex(const unsigned char digest[32], char hex[65]);

#endif
