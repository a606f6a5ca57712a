#!/bin/sh
# A stop signal that arrives while the trainer waits for bankd's reply to a step's bank update
# does not end the run as a bank failure: the update stays outstanding, the trainer finishes it
# (within --stop-timeout), then writes its paired "signal" checkpoint after that step and exits
# 0; --resume continues from the step after it.
# Deterministic: the trainer talks to bankd through a relay (python, ZeroMQ) that holds the
# reply to the 8th update (and to its retries) for 3 s and says so in a file; the signal is
# sent inside that window.
set -u
name=it_trainer_stop_in_update
. "$(dirname "$0")/lib_trainer.sh"
"$bin/npid-loader" synth --out "$tmp/data" --per-class 40 --test-per-class 2 >/dev/null 2>&1 ||
    fail "synth"
relay_ep=$NPID_BANK
bank_ep=tcp://127.0.0.1:$((base + 3))
start_bg bankd "$bin/npid-bankd" --bind "$bank_ep" --dir "$tmp/bank"
cat >"$tmp/relay.py" <<'PY'
# relay: ROUTER for the trainer's connections, one DEALER to bankd per connection; replies to
# the 8th update (same cid and seq: its retries too) are held for 3 s
import sys, time, msgpack, zmq
front_ep, back_ep, marker = sys.argv[1:4]
ctx = zmq.Context()
front = ctx.socket(zmq.ROUTER)
front.bind(front_ep)
backs, ident_of = {}, {}
poller = zmq.Poller()
poller.register(front, zmq.POLLIN)
updates, held_key, release_at, queue = 0, None, 0.0, []  # held_key: (connection, seq)
def body(frames):
    try:
        return msgpack.unpackb(frames[-1], raw=False)
    except Exception:
        return {}
while True:
    now = time.time()
    if queue and now >= release_at:
        for ident, frames in queue:
            front.send_multipart([ident] + frames)
        queue = []
    for sock, _ in poller.poll(50):
        if sock is front:
            frames = front.recv_multipart()
            ident, rest = frames[0], frames[1:]
            if ident not in backs:
                b = ctx.socket(zmq.DEALER)
                b.connect(back_ep)
                backs[ident] = b
                ident_of[b] = ident
                poller.register(b, zmq.POLLIN)
            q = body(rest)
            if isinstance(q, dict) and q.get("op") == "update" and held_key is None:
                updates += 1
                if updates == 8:
                    held_key, release_at = (ident, q.get("seq")), time.time() + 3.0
                    open(marker, "w").write("%s\n" % q.get("seq"))
            backs[ident].send_multipart(rest)
        else:
            frames = sock.recv_multipart()
            r = body(frames)
            ident = ident_of[sock]
            if held_key is not None and time.time() < release_at and isinstance(r, dict) \
                    and (ident, r.get("seq")) == held_key:
                queue.append((ident, frames))
            else:
                front.send_multipart([ident] + frames)
PY
start_bg relay $py "$tmp/relay.py" "$relay_ep" "$bank_ep" "$tmp/held"
start_bg loader "$bin/npid-loader" --data "$tmp/data"
# the trainer's flags (the positional parameters); exec'd in a subshell so the signal reaches it
set -- --data "$tmp/data" --run-dir "$tmp/run" --model resnet20 --epochs 3 --batch 20 \
    --nce-k 64 --bank-init uniform --no-progress --metrics-every 1 --bank-timeout 1 \
    --stop-timeout 8
(exec "$bin/npid-trainer" "$@") >"$tmp/trainer.log" 2>&1 &
trainer=$!
pids="$pids $trainer"
wait_for 90 test -s "$tmp/held" || fail "the relay saw no 8th update"
kill -TERM "$trainer"
i=0
while kill -0 "$trainer" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.2; i=$((i + 1)); done
kill -0 "$trainer" 2>/dev/null && fail "the trainer still runs 20 s after SIGTERM"
wait "$trainer"; rc=$?
[ $rc -eq 0 ] ||
    fail "exit $rc after a SIGTERM inside a bank update: $(grep -m1 error "$tmp/trainer.log")"
grep -q 'bank failure\|update failed' "$tmp/trainer.log" && fail "the update was given up"
ck=$(sed -n 's/.*"type":"checkpoint".*"step":\([0-9]*\).*"reason":"signal".*/\1/p' \
    "$tmp/run/metrics.jsonl" | tail -1)
[ -n "$ck" ] || fail "no signal checkpoint in metrics.jsonl"
# the held update was the 8th: step 7's, so the signal checkpoint is after 8 steps
[ "$ck" -eq 8 ] || fail "the signal checkpoint is at step $ck, expected 8"
"$bin/npid-trainer" "$@" --resume >"$tmp/resume.log" 2>&1 ||
    fail "the resume failed: $(grep -m1 error "$tmp/resume.log")"
grep -q 'resume: step 8,' "$tmp/resume.log" ||
    fail "the resume did not start at step 8: $(grep -m1 'resume:' "$tmp/resume.log")"
echo "$name: SIGTERM while bankd's reply to the 8th update was held: the update finished," \
    "signal checkpoint at step 8, exit 0; the resume continued from step 8 and finished"
