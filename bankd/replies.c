/* npid-bankd's reply cache: see replies.h. */
#include "bankd/replies.h"

#include "common/log.h"

#include <stdlib.h>
#include <string.h>

int replies_init(struct replies *r, int clients)
{
    r->lru = 0;
    r->n = clients > 0 ? clients : 0;
    r->entries = calloc((size_t)(r->n ? r->n : 1), sizeof *r->entries);
    if (!r->entries) {
        r->n = 0;
        return -1;
    }
    for (int i = 0; i < r->n; i++)
        zmq_msg_init(&r->entries[i].reply);
    return 0;
}

void replies_deinit(struct replies *r)
{
    for (int i = 0; i < r->n; i++)
        zmq_msg_close(&r->entries[i].reply);
    free(r->entries);
    r->entries = NULL;
    r->n = 0;
}

struct reply_entry *replies_find(struct replies *r, const char *cid, size_t len, int create)
{
    if (len >= sizeof r->entries[0].cid || r->n == 0)
        return NULL;
    struct reply_entry *victim = NULL;
    for (int i = 0; i < r->n; i++) {
        struct reply_entry *c = &r->entries[i];
        if (c->used && strlen(c->cid) == len && !memcmp(c->cid, cid, len)) {
            c->used = ++r->lru;
            return c;
        }
        if (!victim || c->used < victim->used)
            victim = c;
    }
    if (!create)
        return NULL;
    zmq_msg_close(&victim->reply);
    zmq_msg_init(&victim->reply);
    memcpy(victim->cid, cid, len);
    victim->cid[len] = 0;
    victim->has_reply = 0;
    victim->seq = 0;
    victim->crc = 0;
    victim->used = ++r->lru;
    return victim;
}

int replies_hit(const struct reply_entry *c, uint64_t seq, uint32_t crc)
{
    return c && c->seq == seq && c->crc == crc && c->has_reply;
}

void replies_record(struct reply_entry *c, uint64_t seq, uint32_t crc, zmq_msg_t *reply)
{
    zmq_msg_close(&c->reply);
    zmq_msg_init(&c->reply);
    c->seq = seq;
    c->crc = crc;
    c->has_reply = 0;
    if (reply) {
        zmq_msg_copy(&c->reply, reply);
        c->has_reply = 1;
    }
}

void replies_clear(struct replies *r, struct reply_entry *keep)
{
    for (int i = 0; i < r->n; i++) {
        struct reply_entry *c = &r->entries[i];
        zmq_msg_close(&c->reply);
        zmq_msg_init(&c->reply);
        c->has_reply = 0;
        c->seq = 0;
        c->crc = 0;
        if (c != keep) {
            c->used = 0;
            c->cid[0] = 0;
        }
    }
}

int replies_save(const struct replies *r, struct bank *b)
{
    free(b->extra);
    b->extra = NULL;
    b->extra_len = 0;
    size_t len = 5;
    uint32_t count = 0;
    for (int i = 0; i < r->n; i++) {
        const struct reply_entry *c = &r->entries[i];
        if (c->used && c->has_reply) {
            len += 1 + strlen(c->cid) + 8 + 4 + 4 + zmq_msg_size((zmq_msg_t *)&c->reply);
            count++;
        }
    }
    if (!count)
        return 0;
    unsigned char *p = malloc(len);
    if (!p)
        return -1;
    p[0] = 1;
    memcpy(p + 1, &count, 4);
    size_t off = 5;
    uint64_t last = 0;
    for (uint32_t k = 0; k < count; k++) {
        const struct reply_entry *next = NULL;
        for (int i = 0; i < r->n; i++) {
            const struct reply_entry *c = &r->entries[i];
            if (c->used && c->has_reply && c->used > last && (!next || c->used < next->used))
                next = c;
        }
        last = next->used;
        uint8_t cl = (uint8_t)strlen(next->cid);
        uint32_t rl = (uint32_t)zmq_msg_size((zmq_msg_t *)&next->reply);
        p[off++] = cl;
        memcpy(p + off, next->cid, cl);
        off += cl;
        memcpy(p + off, &next->seq, 8);
        memcpy(p + off + 8, &next->crc, 4);
        memcpy(p + off + 12, &rl, 4);
        off += 16;
        memcpy(p + off, zmq_msg_data((zmq_msg_t *)&next->reply), rl);
        off += rl;
    }
    b->extra = p;
    b->extra_len = len;
    return 0;
}

void replies_load(struct replies *r, struct bank *b)
{
    const unsigned char *p = b->extra;
    size_t len = b->extra_len, off = 5;
    uint32_t count = 0, loaded = 0;
    if (!p || !len)
        return;
    if (len < 5 || p[0] != 1) {
        log_warn("snapshot reply cache: unknown format; starting with an empty cache");
        goto done;
    }
    memcpy(&count, p + 1, 4);
    for (uint32_t k = 0; k < count; k++) {
        if (off + 1 > len || off + 1 + p[off] + 16 > len)
            goto bad;
        size_t cl = p[off];
        const char *cid = (const char *)p + off + 1;
        off += 1 + cl;
        uint64_t seq;
        uint32_t crc, rl;
        memcpy(&seq, p + off, 8);
        memcpy(&crc, p + off + 8, 4);
        memcpy(&rl, p + off + 12, 4);
        off += 16;
        if (rl > len - off)
            goto bad;
        struct reply_entry *c = replies_find(r, cid, cl, 1);
        if (c) {
            c->seq = seq;
            c->crc = crc;
            if (zmq_msg_init_size(&c->reply, rl) != 0)
                goto bad;
            memcpy(zmq_msg_data(&c->reply), p + off, rl);
            c->has_reply = 1;
            loaded++;
        }
        off += rl;
    }
    if (off != len)
        goto bad;
    log_info("reply cache: %u client(s) restored from the snapshot", loaded);
    goto done;
bad:
    log_warn("snapshot reply cache malformed; starting with an empty cache");
    replies_clear(r, NULL);
done:
    free(b->extra);
    b->extra = NULL;
    b->extra_len = 0;
}
