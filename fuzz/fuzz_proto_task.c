/* libFuzzer target: the loader <-> trainer frame decoder (frames are untrusted input on both
 * sides). Every decoded task is re-encoded and decoded again, which must succeed. Built and
 * run by `make fuzz` and `make fuzz-ci` (mk/fuzz.mk), seeded with the frames of a real
 * loader and trainer (fuzz/capture.sh). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/proto_task.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    union task_msg u;
    char err[256];
    enum task_msg_type t = proto_task_decode(data, size, &u, err, sizeof err);
    if (t == TASK_MSG_TASK) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        if (proto_task_encode_task(&pk, &u.task) != 0)
            abort();
        union task_msg v;
        if (proto_task_decode(sb.data, sb.size, &v, err, sizeof err) != TASK_MSG_TASK ||
            v.task.count != u.task.count || v.task.step != u.task.step)
            abort();
        msgpack_sbuffer_destroy(&sb);
    }
    return 0;
}
