/* npid-bankd's log of refused writes: see refusals.h. */
#include "bankd/refusals.h"

#include "common/clock.h"
#include "common/log.h"

#include <string.h>

void refusals_log(struct refusals *r, const struct bank_hdr *h)
{
    double now = clock_seconds();
    size_t len = h->cid ? h->cid_len : 0;
    if (len > sizeof r->clients[0].cid - 1)
        len = sizeof r->clients[0].cid - 1; /* longer ids count by their first 64 bytes */
    r->total++;
    struct refusal_entry *slot = NULL;
    for (int i = 0; i < REFUSALS_CLIENTS; i++) {
        struct refusal_entry *d = &r->clients[i];
        if (d->t > 0 && strlen(d->cid) == len && !memcmp(d->cid, h->cid, len)) {
            if (now - d->t < REFUSALS_REPEAT_S) {
                r->quiet++;
                return;
            }
            slot = d;
        }
    }
    if (r->line_t > 0 && now - r->line_t < REFUSALS_GAP_S) {
        r->quiet++;
        return;
    }
    if (!slot) {
        slot = &r->clients[r->next];
        r->next = (r->next + 1) % REFUSALS_CLIENTS;
    }
    memcpy(slot->cid, h->cid ? h->cid : "", len);
    slot->cid[len] = 0;
    slot->t = now;
    r->line_t = now;
    char cid[PROTO_BANK_ESCAPED(64)];
    log_warn("refused %s from client '%s' (%s token): this bank takes writes only with its "
             "run's token; %llu refused since start, %llu of them not logged",
             proto_bank_op_name(h->op),
             h->cid ? proto_bank_escape(cid, sizeof cid, slot->cid, len) : "(no cid)",
             h->token ? "wrong" : "no", (unsigned long long)r->total,
             (unsigned long long)r->quiet);
}
