#!/bin/sh
# evald's results socket over CURVE: with --curve-key and --curve-allow, `--pub` is a CURVE
# server that only the allow-list's subscribers can read; a subscriber with another key and
# one without CURVE get nothing, and the refused key is logged. --curve-allow without
# --curve-key is a usage error. Real processes: npid-evald --once on an untrained checkpoint
# (tools/npid-mkckpt), pyzmq subscribers.
set -u
name=it_evald_curve
. "$(dirname "$0")/lib_trainer.sh"
ev=$bin/npid-evald
for k in evald sub stranger; do
    "$bin/npid-bankd" keygen --out "$tmp/$k" >/dev/null 2>>"$tmp/keygen.log" || fail "keygen $k"
done
"$bin/npid-loader" synth --out "$tmp/data" --per-class 40 --test-per-class 10 >/dev/null 2>&1 ||
    fail "synth"
"$bin/tools/npid-mkckpt" --out "$tmp/c.ckpt" --model resnet20 2>/dev/null || fail "mkckpt"
pub=tcp://127.0.0.1:$((base + 3))
cat >"$tmp/sub.py" <<'PY'
import os, sys, zmq
sys.path.insert(0, os.path.join(os.environ.get("NPID_ROOT", "."), "tests"))
from bankd_client import load_curve
ep, srv, key, who, stop, out = sys.argv[1:7]
s = zmq.Context.instance().socket(zmq.SUB)
s.setsockopt(zmq.LINGER, 0)
if who != "plain":
    s.curve_serverkey, s.curve_publickey, s.curve_secretkey = load_curve(srv, key)
s.setsockopt(zmq.SUBSCRIBE, b"")
s.connect(ep)
n = 0
while not os.path.exists(stop):
    if s.poll(100):
        s.recv_multipart()
        n += 1
open(out, "w").write("%d\n" % n)
PY
export NPID_ROOT=$(cd "$(dirname "$0")/.." && pwd)
for who in sub stranger plain; do
    start_bg "sub-$who" timeout 120 $py "$tmp/sub.py" "$pub" "$tmp/evald.pub" "$tmp/$who.key" \
        "$who" "$tmp/stop" "$tmp/$who.count"
done
sleep 1
timeout -k 5 120 "$ev" --once --checkpoint "$tmp/c.ckpt" --data "$tmp/data" --against recomputed \
    --pub "$pub" --curve-key "$tmp/evald.key" --curve-allow "$tmp/sub.pub" \
    >"$tmp/once.jsonl" 2>"$tmp/evald.log" || fail "evald --once with a CURVE --pub"
sleep 1
touch "$tmp/stop"
for who in sub stranger plain; do
    wait_for 20 test -s "$tmp/$who.count" || fail "subscriber $who did not finish"
done
[ "$(cat "$tmp/sub.count")" -ge 1 ] || fail "the allowed subscriber got nothing"
[ "$(cat "$tmp/stranger.count")" -eq 0 ] || fail "a subscriber with another key got results"
[ "$(cat "$tmp/plain.count")" -eq 0 ] || fail "a subscriber without CURVE got results"
grep -qF "refused client key $(cat "$tmp/stranger.pub")" "$tmp/evald.log" ||
    fail "the stranger's key was not logged as refused"
timeout 20 "$ev" --once --pixels --data "$tmp/data" --pub "$pub" --curve-allow "$tmp/sub.pub" \
    >/dev/null 2>"$tmp/usage.log"
[ $? -eq 2 ] && grep -q -- "--curve-allow needs --pub" "$tmp/usage.log" ||
    fail "--curve-allow without --curve-key: $(cat "$tmp/usage.log")"
echo "$name: --pub over CURVE: the allowed subscriber got $(cat "$tmp/sub.count") message(s)," \
    "another key and plain ZeroMQ none; the refused key logged; --curve-allow alone refused"
