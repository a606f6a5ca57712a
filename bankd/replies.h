/* npid-bankd's reply cache: per client id, the (seq, CRC-32C of the request) of its last
 * request and, for writing ops, a reference to the reply, so that a retried write is
 * answered from here and never applied twice. A fixed number of clients is remembered; the
 * least recently used gives way to a new one. The cache travels with the bank in its
 * snapshots (the bank's extra section), so a retry after a restart is answered too. */
#ifndef NPID_BANKD_REPLIES_H
#define NPID_BANKD_REPLIES_H

#include "bankd/bank.h"

#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

struct reply_entry {
    char cid[65];
    uint64_t seq;
    uint32_t crc;
    int has_reply;
    zmq_msg_t reply;
    uint64_t used;             /* LRU clock; 0: free */
};

struct replies {
    struct reply_entry *entries;
    int n;
    uint64_t lru;
};

/* Room for clients entries (0 or less: nothing is cached). 0, or -1 when out of memory; r
 * can be deinitialised either way. */
int replies_init(struct replies *r, int clients);
void replies_deinit(struct replies *r);

/* The entry of client id cid (len bytes), marked most recently used; with create, one is
 * made for a new client in the least recently used slot (with no request and no reply).
 * NULL when cid is not found (and not created), is 65 bytes or longer, or r holds none. */
struct reply_entry *replies_find(struct replies *r, const char *cid, size_t len, int create);
/* 1 when c (may be NULL) holds the reply to request (seq, crc), else 0. */
int replies_hit(const struct reply_entry *c, uint64_t seq, uint32_t crc);
/* Makes (seq, crc) c's last request, with reply (may be NULL: none; else a reference to it
 * is kept and reply stays the caller's). */
void replies_record(struct reply_entry *c, uint64_t seq, uint32_t crc, zmq_msg_t *reply);
/* Forgets every client's last request and reply; keep (may be NULL) stays allocated to its
 * client, with no reply. */
void replies_clear(struct replies *r, struct reply_entry *keep);

/* Sets b->extra (freeing any) to the cache as a snapshot's extra section. Little-endian: u8
 * format (1), u32 count, then per client with a reply, least recently used first: u8
 * cid_len, cid bytes, u64 seq, u32 request CRC-32C, u32 reply_len, reply bytes. 0, or -1
 * when out of memory (b->extra is then NULL: the snapshot holds the bank only). */
int replies_save(const struct replies *r, struct bank *b);
/* Fills the cache, empty until now, from b->extra (written by replies_save) and frees it. A
 * malformed section is logged and ignored, the cache left empty (the bank itself passed its
 * checksums). */
void replies_load(struct replies *r, struct bank *b);

#endif
