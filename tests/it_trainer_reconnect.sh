#!/bin/sh
# A loader that reconnects under its own routing id is taken back at once. A loader keeps one
# ZeroMQ routing id for its life; when its heartbeat to a stalled trainer times out (the
# trainer stopped or paused for more than 5 s) it drops the connection and reconnects while
# the trainer may still hold the old one. Without ROUTER_HANDOVER, libzmq silently discards
# every message of such a second connection, forever: the trainer waited for loaders while
# the loader waited for tasks (seen when a whole pipeline was paused and continued).
# Here a Python peer (Debian python3-zmq, -msgpack) speaks the task protocol of
# docs/protocol.md to a real npid-trainer: connection A says hello and is welcomed; connection
# B with the same routing id says hello while A is still open, and must be welcomed and then
# given a task (A's unanswered task, re-issued after its 2 s deadline).
set -u
name=it_trainer_reconnect
. "$(dirname "$0")/lib_trainer.sh"
$py -c 'import zmq, msgpack' 2>/dev/null || { echo "$name: /usr/bin/python3 lacks zmq or msgpack" >&2; exit 77; }

"$bin/npid-loader" synth --out "$tmp/data" --per-class 20 --test-per-class 2 >/dev/null 2>&1 || fail "synth"
start_bg bankd "$bin/npid-bankd" --bind "$NPID_BANK" --dir "$tmp/bank"
start_bg trainer timeout -k 5 120 "$bin/npid-trainer" --data "$tmp/data" --run-dir "$tmp/run" \
    --model resnet20 --epochs 1 --batch 20 --nce-k 64 --bank-init uniform --task-deadline 2 \
    --no-progress
wait_for 60 grep -q "listening: tasks" "$tmp/trainer.log" || fail "the trainer did not start"
timeout 60 $py - "$NPID_TASKS" <<'PY' || fail "the reconnected loader was not taken back"
import re, sys, zmq, msgpack
ep = sys.argv[1]
ctx = zmq.Context()

def dealer(rid):
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    if rid:
        s.setsockopt(zmq.ROUTING_ID, rid)
    s.connect(ep)
    return s

def hello(s, manifest):
    s.send(msgpack.packb({"v": 1, "t": "hello", "manifest": manifest, "count": 200,
                          "capacity": 1, "held": 0, "name": "it_trainer_reconnect"}))

def expect(s, kind, secs):
    while s.poll(int(secs * 1000)):
        m = msgpack.unpackb(s.recv(), raw=False)
        if m.get("t") == kind:
            return m
    sys.exit("%s: no '%s' within %g s" % (ep, kind, secs))

# the trainer's manifest, from its refusal of a wrong one
p = dealer(None)
hello(p, "not-this-dataset")
manifest = re.search(r"trainer dataset (\S+);", expect(p, "refuse", 10)["msg"]).group(1)
rid = b"\x01reconnect-test-id"
a = dealer(rid)
hello(a, manifest)
expect(a, "welcome", 10)
b = dealer(rid)
hello(b, manifest)
expect(b, "welcome", 5)
t = expect(b, "task", 15)
print("it_trainer_reconnect: the second connection under the same id was welcomed and given "
      "task epoch %d step %d" % (t["epoch"], t["step"]))
PY
