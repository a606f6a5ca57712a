#!/bin/sh
# npid-evald attached while its main thread is busy and a publisher floods it (issue 21: evald
# died in libzmq, "Assertion failed: _input_stopped (src/stream_engine_base.cpp:417)").
#
# The trigger: evald, attached and subscribed, evaluates a checkpoint against a bank endpoint
# nobody serves (3 attempts of 4 s, --bank-timeout 4) while a Python publisher sends 3,000
# malformed "checkpoint" events (a map plus a trailing byte) at once. The SUB socket's pipe
# fills to RCVHWM (1000), so its ZMTP engine stops reading; 5 s later its heartbeat times out
# and the connecting side reconnects. Without ZMQ_IMMEDIATE libzmq keeps the full pipe for the
# new connection, and when evald drains it libzmq asks the *new* engine to resume input it
# never stopped, and aborts. evald must instead drain the queued events (each logged as
# malformed), stay attached, and leave on the trainer's "end". Twice: a publisher without
# heartbeats, and one with the trainer's (PING every 1 s, TTL and timeout 5 s), which drops
# evald while evald does not read, so evald reconnects after draining.
set -u
bin=${NPID_BIN:?NPID_BIN not set}
ev=$bin/npid-evald
py=/usr/bin/python3
[ -x "$ev" ] && [ -x "$bin/npid-loader" ] && [ -x "$bin/tools/npid-mkckpt" ] ||
    { echo "it_evald_flood: binaries not built (make check builds tools/)" >&2; exit 77; }
$py -c 'import zmq, msgpack' 2>/dev/null ||
    { echo "it_evald_flood: /usr/bin/python3 with zmq and msgpack needed" >&2; exit 77; }

tmp=$(mktemp -d /tmp/npid-it-evald-flood.XXXXXX)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    for p in $pids; do wait "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fail() { echo "it_evald_flood: FAIL: $*" >&2; tail -5 "$tmp/err" >&2 2>/dev/null; exit 1; }
events=ipc://$tmp/events.sock
export NPID_LOG_LEVEL=info

"$bin/npid-loader" synth --out "$tmp/data" --per-class 8 --test-per-class 2 >/dev/null 2>&1 ||
    fail "synth dataset"
timeout 60 "$bin/tools/npid-mkckpt" --out "$tmp/c1.ckpt" --model resnet20 --seed 1 --step 100 \
    2>/dev/null || fail "mkckpt"

# the stand-in trainer (XPUB: it sees evald's subscription): announces c1.ckpt to an idle,
# subscribed evald, floods once evald waits for the bank, then says "end" until stopped
cat >"$tmp/flood.py" <<'EOF'
import sys, time, msgpack, zmq
events, ckpt, err, n, hb = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
p = zmq.Context().socket(zmq.XPUB)
p.setsockopt(zmq.SNDHWM, 0)          # the flood reaches evald whole: evald's RCVHWM is the limit
if hb == "1":                        # the trainer's PUB (MSG_OPTS_DEFAULT)
    p.setsockopt(zmq.HEARTBEAT_IVL, 1000)
    p.setsockopt(zmq.HEARTBEAT_TIMEOUT, 5000)
    p.setsockopt(zmq.HEARTBEAT_TTL, 5000)
p.bind(events)
if not p.poll(20000) or p.recv() != b"\x01":
    sys.exit("evald did not subscribe to every topic")
seq = 0
def ev(kind, **kw):
    global seq
    seq += 1
    m = {"v": 1, "type": kind, "seq": seq, "run": "it", "time": int(time.time() * 1000)}
    m.update(kw)
    return [kind.encode(), msgpack.packb(m)]
p.send_multipart(ev("checkpoint", step=100, path=ckpt))
end = time.time() + 20
while b"c1.ckpt: step" not in open(err, "rb").read():
    if time.time() > end:
        sys.exit("evald never started its evaluation")
    time.sleep(0.05)
time.sleep(1.0)                      # its test features done, evald waits for the bank
for i in range(n):                   # a map, then a byte too many
    topic, body = ev("checkpoint", step=200 + i, path="/nonexistent/c.ckpt", pad="x" * 200)
    p.send_multipart([topic, body + b"\x00"])
while True:
    p.send_multipart(ev("end", status="ok", reason="done"))
    time.sleep(0.3)
EOF

# flood NAME HB: one run (HB 1: the publisher heartbeats); fails the test on a failure
flood() {
    rm -f "$tmp/events.sock"
    timeout -k 5 90 "$ev" attach --data "$tmp/data" --events "$events" --against bank \
        --bank "ipc://$tmp/nobank.sock" --bank-timeout 4 --k 10 --exit-on-end \
        >"$tmp/out.jsonl" 2>"$tmp/err" &
    evpid=$!
    timeout -k 5 80 $py "$tmp/flood.py" "$events" "$tmp/c1.ckpt" "$tmp/err" 3000 "$2" \
        2>"$tmp/flood.err" &
    pypid=$!
    pids="$evpid $pypid"
    wait $evpid; rc=$?
    kill $pypid 2>/dev/null; wait $pypid 2>/dev/null
    pids=""
    [ -s "$tmp/flood.err" ] && { cat "$tmp/flood.err" >&2; fail "$1: stand-in trainer"; }
    grep -q "Assertion failed" "$tmp/err" &&
        fail "$1: libzmq aborted: $(grep "Assertion" "$tmp/err")"
    [ $rc -eq 0 ] || fail "$1: attached evald exit $rc (expected 0 after \"end\")"
    grep -q "evaluation of .*c1.ckpt failed; still attached" "$tmp/err" ||
        fail "$1: the evaluation did not fail on the silent bank as planned"
    grep -q "trailing bytes after the value" "$tmp/err" || fail "$1: no malformed event reported"
    n=$(sed -n 's/.* \([0-9][0-9]*\) malformed events.*/\1/p' "$tmp/err")
    [ "${n:-0}" -ge 1000 ] || fail "$1: only ${n:-0} malformed events drained (expected >= 1000)"
    echo "it_evald_flood: $1: $n malformed events drained" >&2
}
flood "publisher without heartbeats" 0
flood "publisher with heartbeats" 1

# An event frame over evald's 64 MiB limit: libzmq drops the connection and (4.3.4, protocol
# error) never retries it. evald must notice, connect again and still get "end".
cat >"$tmp/big.py" <<'EOF'
import sys, time, msgpack, zmq
p = zmq.Context().socket(zmq.XPUB)
p.setsockopt(zmq.LINGER, 0)
p.bind(sys.argv[1])
if not p.poll(20000) or p.recv() != b"\x01":
    sys.exit("evald did not subscribe")
p.send_multipart([b"checkpoint", b"\0" * ((64 << 20) + 1)])
seq = 0
while True:
    seq += 1
    p.send_multipart([b"end", msgpack.packb({"v": 1, "type": "end", "seq": seq, "run": "it",
                                             "time": 0, "status": "ok", "reason": "done"})])
    time.sleep(0.3)
EOF
rm -f "$tmp/events.sock"
timeout -k 5 30 "$ev" attach --data "$tmp/data" --events "$events" --against recomputed \
    --exit-on-end >"$tmp/out.jsonl" 2>"$tmp/err" &
evpid=$!
timeout -k 5 40 $py "$tmp/big.py" "$events" 2>"$tmp/flood.err" &
pypid=$!
pids="$evpid $pypid"
wait $evpid; rc=$?
kill $pypid 2>/dev/null; wait $pypid 2>/dev/null
pids=""
[ $rc -eq 0 ] || fail "a frame over 64 MiB: evald exit $rc (deaf after the dropped connection?)"
grep -q "connecting again" "$tmp/err" || fail "a frame over 64 MiB: no reconnect reported"
grep -q 'trainer published "end"' "$tmp/err" || fail "a frame over 64 MiB: \"end\" not seen"
echo "it_evald_flood: ok" >&2
exit 0
