/* libFuzzer target: the event decoder (common/event.c), what npid-evald runs on every body a
 * trainer (or anything else on its events endpoint) publishes. Built and run by `make fuzz`
 * and `make fuzz-ci` (mk/fuzz.mk), seeded with the events of a real training run
 * (fuzz/capture.sh).
 *
 * Each input is decoded with event_decode; an accepted event is read the way evald reads a
 * checkpoint event (the "path" str and the "step" uint through the event's map), every
 * pointer handed back must lie inside the frame, and the whole body is rendered as JSON
 * (mp_write_json, how events become metrics.jsonl lines) to /dev/null, so the recursive
 * walk over arbitrary nesting runs on fuzzed maps too. A broken check aborts, which
 * libFuzzer reports as a crash with the input saved. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/event.h"
#include "fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *sink;
    if (!sink && !(sink = fopen("/dev/null", "w")))
        abort();
    frame_lo = data;
    frame_hi = data + size;

    struct event e;
    const char *why = NULL;
    if (event_decode(data, size, &e, &why) != 0) {
        CHECK(why != NULL && why[0] != 0);
        (void)mp_write_json(sink, data, size); /* validates first: -1 unless msgpack */
        return 0;
    }
    CHECK(in_frame(e.type, e.type_len) && in_frame(e.run, e.run_len));
    CHECK((const uint8_t *)e.map.first >= frame_lo && (const uint8_t *)e.map.end <= frame_hi);

    const char *path;
    size_t path_len;
    uint64_t step;
    if (mp_get_str(&e.map, "path", &path, &path_len) == MP_OK)
        CHECK(in_frame(path, path_len));
    (void)mp_get_u64(&e.map, "step", &step);

    /* a valid event is one valid msgpack value: rendering it cannot fail on the input */
    CHECK(mp_write_json(sink, data, size) == 0);
    return 0;
}
