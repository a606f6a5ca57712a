/* npid-bankd's log of refused writes (EPERM: a write without the bank's token): a line per
 * client id, again after REFUSALS_REPEAT_S, and at most one line per REFUSALS_GAP_S; the
 * refusals not logged are counted and the count shown in the next line. The token is never
 * logged. */
#ifndef NPID_BANKD_REFUSALS_H
#define NPID_BANKD_REFUSALS_H

#include "common/proto_bank.h"

#include <stdint.h>

enum { REFUSALS_CLIENTS = 64 };
#define REFUSALS_REPEAT_S 600.0 /* a client's refusals are logged again after this long */
#define REFUSALS_GAP_S 1.0      /* at most one refusal line per second */

/* A client whose refused write was logged. */
struct refusal_entry {
    char cid[65];
    double t;                  /* clock_seconds() of the logged line; 0: free */
};

/* All zero: nothing refused yet. */
struct refusals {
    struct refusal_entry clients[REFUSALS_CLIENTS];
    int next;                  /* ring slot for the next new client */
    double line_t;             /* clock_seconds() of the last refusal line */
    uint64_t total, quiet;     /* refusals since start, of them not logged */
};

/* Counts the refusal of request h, and logs it when the limits above allow. */
void refusals_log(struct refusals *r, const struct bank_hdr *h);

#endif
