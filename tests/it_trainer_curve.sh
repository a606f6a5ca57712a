#!/bin/sh
# The whole pipeline over CURVE, real processes on TCP loopback: bankd with --curve-key and
# --curve-allow, a trainer that is its CURVE client (--curve-key, --bank-server-key) and a
# CURVE server on --tasks and --events (--curve-allow: the loaders and evalds it admits),
# loaders with --tasks-server-key/--curve-key, an evald attached with --events-server-key.
# A loader with an unknown key and one without CURVE never join (the trainer logs the refused
# key), nor get subscribers with such keys an event; the allowed loader joins, the run takes
# its steps, and the allowed evald sees the trainer's "end" and exits.
set -u
name=it_trainer_curve
. "$(dirname "$0")/lib_trainer.sh"

for k in bankd trainer loader evald stranger; do
    "$bin/npid-bankd" keygen --out "$tmp/$k" >/dev/null 2>>"$tmp/keygen.log" || fail "keygen $k"
done
cp "$tmp/trainer.pub" "$tmp/bank-allow"
cat "$tmp/loader.pub" "$tmp/evald.pub" >"$tmp/tasks-allow"
"$bin/npid-loader" synth --out "$tmp/data" --per-class 10 --test-per-class 1 >/dev/null 2>&1 ||
    fail "synth"
start_bg bankd "$bin/npid-bankd" --bind "$NPID_BANK" --dir "$tmp/bank" --snapshot-every 0 \
    --curve-key "$tmp/bankd.key" --curve-allow "$tmp/bank-allow"
# the loaders that must stay out, started first
start_bg stranger "$bin/npid-loader" --data "$tmp/data" --name stranger \
    --tasks-server-key "$tmp/trainer.pub" --curve-key "$tmp/stranger.key"
start_bg plain "$bin/npid-loader" --data "$tmp/data" --name plain
start_bg evald "$bin/npid-evald" attach --data "$tmp/data" --every 0 --exit-on-end \
    --curve-key "$tmp/evald.key" --events-server-key "$tmp/trainer.pub"
evald_pid=$last_pid
# subscribers that must get nothing: an unknown key, no CURVE (each counts what it got)
cat >"$tmp/sub.py" <<'PY'
import os, sys, zmq
sys.path.insert(0, os.path.join(os.environ.get("NPID_ROOT", "."), "tests"))
from bankd_client import load_curve
ep, srv, key, who, stop, out = sys.argv[1:7]
s = zmq.Context.instance().socket(zmq.SUB)
s.setsockopt(zmq.LINGER, 0)
if who == "stranger":
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
for who in stranger plain; do
    start_bg "sub-$who" timeout 120 $py "$tmp/sub.py" "$NPID_EVENTS" "$tmp/trainer.pub" \
        "$tmp/stranger.key" "$who" "$tmp/stop" "$tmp/sub-$who.count"
done
timeout -k 5 300 "$bin/npid-trainer" --data "$tmp/data" --model resnet20 --epochs 1 --batch 50 \
    --nce-k 64 --bank-init uniform --no-progress --run-dir "$tmp/run" --max-steps 2 \
    --curve-key "$tmp/trainer.key" --bank-server-key "$tmp/bankd.pub" \
    --curve-allow "$tmp/tasks-allow" >"$tmp/trainer.log" 2>&1 &
trainer_pid=$!
pids="$pids $trainer_pid"
wait_for 60 grep -qF "refused client key $(cat "$tmp/stranger.pub")" "$tmp/trainer.log" ||
    fail "the trainer did not log the stranger's key as refused"
sleep 3
grep -q "joined" "$tmp/trainer.log" && fail "a loader without an allowed key joined"
grep -q "bank: CURVE on" "$tmp/trainer.log" || fail "the trainer did not log CURVE to bankd"
grep -q "tasks, events: CURVE on" "$tmp/trainer.log" ||
    fail "the trainer did not log CURVE on --tasks and --events"
start_bg loader "$bin/npid-loader" --data "$tmp/data" --name allowed \
    --tasks-server-key "$tmp/trainer.pub" --curve-key "$tmp/loader.key"
wait "$trainer_pid" || fail "the trainer over CURVE exited $?"
i=0
while kill -0 "$evald_pid" 2>/dev/null && [ $i -lt 150 ]; do sleep 0.2; i=$((i + 1)); done
kill -0 "$evald_pid" 2>/dev/null && fail "the allowed evald did not see the trainer's end"
wait "$evald_pid" || fail "the allowed evald exited $?"
grep -q 'trainer published "end"' "$tmp/evald.log" || fail "evald did not log the end"
touch "$tmp/stop"
wait_for 20 test -s "$tmp/sub-stranger.count" -a -s "$tmp/sub-plain.count" ||
    fail "the refused subscribers did not finish"
[ "$(cat "$tmp/sub-stranger.count")" = 0 ] || fail "a subscriber with an unknown key got events"
[ "$(cat "$tmp/sub-plain.count")" = 0 ] || fail "a subscriber without CURVE got events"
grep -q "loader allowed joined" "$tmp/trainer.log" || fail "the allowed loader did not join"
grep -Eq "loader (stranger|plain) joined" "$tmp/trainer.log" && fail "a refused loader joined"
wait_for 15 grep -q "still trying (if it uses CURVE" "$tmp/stranger.log" ||
    fail "the refused loader did not hint at CURVE"
timeout 20 "$bin/npid-bankd" ping --bank "$NPID_BANK" --timeout 5 --bank-server-key \
    "$tmp/bankd.pub" --curve-key "$tmp/trainer.key" >"$tmp/ping.out" 2>&1 &&
    grep -q '"step": 2' "$tmp/ping.out" ||
    fail "the run's 2 steps are not in the bank: $(cat "$tmp/ping.out")"
# flags that go together
timeout 20 "$bin/npid-trainer" --data "$tmp/data" --curve-key "$tmp/trainer.key" >/dev/null 2>&1
[ $? -eq 2 ] || fail "trainer --curve-key alone did not exit 2"
timeout 20 "$bin/npid-trainer" --data "$tmp/data" --curve-allow "$tmp/tasks-allow" >/dev/null 2>&1
[ $? -eq 2 ] || fail "trainer --curve-allow without --curve-key did not exit 2"
timeout 20 "$bin/npid-loader" --data "$tmp/data" --curve-key "$tmp/loader.key" >/dev/null 2>&1
[ $? -eq 2 ] || fail "loader --curve-key without --tasks-server-key did not exit 2"
exit 0
