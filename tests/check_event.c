/* Events: publish over real ZeroMQ on loopback, decode, JSON rendering, malformed bodies. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/event.h"
#include "common/msg.h"

static char endpoint[64];

START_TEST(test_event_roundtrip)
{
    snprintf(endpoint, sizeof endpoint, "tcp://127.0.0.1:%d", 20000 + (int)(getpid() % 20000));
    struct event_pub *p = event_pub_new(endpoint, "run-a", 0);
    ck_assert_ptr_nonnull(p);
    void *sub = msg_socket(ZMQ_SUB, NULL);
    ck_assert_ptr_nonnull(sub);
    ck_assert_int_eq(zmq_setsockopt(sub, ZMQ_SUBSCRIBE, "metrics", 7), 0);
    ck_assert_int_eq(msg_connect(sub, endpoint), 0);
    /* PUB drops until the subscription has arrived: publish until one gets through */
    zmq_msg_t topic, body;
    zmq_msg_init(&topic);
    zmq_msg_init(&body);
    int got = 0;
    for (int attempt = 0; attempt < 100 && !got; attempt++) {
        msgpack_packer *pk = event_begin(p, "checkpoint", 1); /* filtered out by the SUB */
        mp_pack_kv_str(pk, "path", "/x");
        ck_assert_int_eq(event_end(p), 0);
        pk = event_begin(p, "metrics", 2);
        mp_pack_kv_u64(pk, "step", 42);
        mp_pack_kv_double(pk, "loss", 9.5);
        ck_assert_int_eq(event_end(p), 0);
        if (msg_recv(sub, &topic, 50, NULL) == 0)
            got = 1;
    }
    ck_assert_int_eq(got, 1);
    ck_assert_uint_eq(zmq_msg_size(&topic), 7);
    ck_assert(memcmp(zmq_msg_data(&topic), "metrics", 7) == 0);
    ck_assert_int_eq(msg_recv(sub, &body, 1000, NULL), 0);
    struct event e;
    const char *why = NULL;
    ck_assert_int_eq(event_decode(zmq_msg_data(&body), zmq_msg_size(&body), &e, &why), 0);
    ck_assert(e.type_len == 7 && memcmp(e.type, "metrics", 7) == 0);
    ck_assert(e.run_len == 5 && memcmp(e.run, "run-a", 5) == 0);
    ck_assert_uint_eq(e.seq % 2, 0); /* metrics events have even seq: one checkpoint before each */
    uint64_t step = 0;
    double loss = 0;
    ck_assert_int_eq(mp_get_u64(&e.map, "step", &step), MP_OK);
    ck_assert_uint_eq(step, 42);
    ck_assert_int_eq(mp_get_double(&e.map, "loss", &loss), MP_OK);
    ck_assert_double_eq(loss, 9.5);
    zmq_msg_close(&topic);
    zmq_msg_close(&body);
    msg_close(&sub);
    event_pub_destroy(&p);
    ck_assert_ptr_null(p);
}
END_TEST

START_TEST(test_event_json)
{
    struct event_pub *p = event_pub_new(NULL, "r\"1", 0);
    ck_assert_ptr_nonnull(p);
    msgpack_packer *pk = event_begin(p, "eval", 3);
    mp_pack_kv_double(pk, "top1", 0.5);
    mp_pack_kv_str(pk, "note", "a\nb");
    mp_pack_key(pk, "per_class");
    msgpack_pack_array(pk, 2);
    msgpack_pack_uint64(pk, 1);
    msgpack_pack_nil(pk);
    ck_assert_int_eq(event_end(p), 0);
    char buf[1024] = "";
    FILE *f = fmemopen(buf, sizeof buf, "w");
    ck_assert_int_eq(event_json_line(p, f), 0);
    fclose(f);
    ck_assert_ptr_nonnull(strstr(buf, "{\"v\":1,\"type\":\"eval\",\"seq\":1,\"run\":\"r\\\"1\",\"time\":"));
    ck_assert_ptr_nonnull(strstr(buf, "\"top1\":0.5,\"note\":\"a\\nb\",\"per_class\":[1,null]}\n"));
    event_pub_destroy(&p);
}
END_TEST

START_TEST(test_event_malformed)
{
    struct event e;
    const char *why = NULL;
    /* not msgpack / truncated / not a map / wrong version / missing type */
    ck_assert_int_eq(event_decode("\xc1", 1, &e, &why), -1);
    ck_assert_int_eq(event_decode("\x82\xa1v", 3, &e, &why), -1);
    ck_assert_int_eq(event_decode("\x91\x01", 2, &e, &why), -1);
    ck_assert_str_eq(why, "top-level value is not a map");
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    mp_pack_kv_u64(&pk, "v", 2);
    mp_pack_kv_str(&pk, "type", "metrics");
    mp_pack_kv_u64(&pk, "seq", 1);
    mp_pack_kv_str(&pk, "run", "r");
    ck_assert_int_eq(event_decode(sb.data, sb.size, &e, &why), -1);
    ck_assert_str_eq(why, "unsupported event version");
    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 3);
    mp_pack_kv_u64(&pk, "v", 1);
    mp_pack_kv_u64(&pk, "type", 5);
    mp_pack_kv_u64(&pk, "seq", 1);
    ck_assert_int_eq(event_decode(sb.data, sb.size, &e, &why), -1);
    ck_assert_str_eq(why, "field 'type' must be str");
    msgpack_sbuffer_destroy(&sb);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("event");
    TCase *tc = tcase_create("event");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_event_roundtrip);
    tcase_add_test(tc, test_event_json);
    tcase_add_test(tc, test_event_malformed);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? 0 : 1;
}
