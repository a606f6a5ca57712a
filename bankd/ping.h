/* `npid-bankd ping`: asks a running bankd for `info` and prints the reply as one JSON line
 * on stdout (the docker-compose healthcheck). */
#ifndef NPID_BANKD_PING_H
#define NPID_BANKD_PING_H

#include <stdio.h>

/* Writes a validated msgpack value (buf, len: exactly one value) as one line of JSON to out:
 * maps and arrays as such (map keys that are not strings are written as strings), bin as
 * {"bin": length}, ext as {"ext": type, "len": length}, non-finite floats as null. Returns
 * 0, or -1 when buf does not validate. */
int ping_print_json(FILE *out, const void *buf, size_t len);

/* Runs the subcommand; argv[0] is "ping". Returns the exit status: 0 answered in time, 1 no
 * (or an unreadable) answer, 2 usage error. */
int ping_main(int argc, char **argv);

#endif
