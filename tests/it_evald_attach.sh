#!/bin/sh
# npid-evald attached to a run's event stream. A Python publisher (pyzmq + msgpack) plays the
# trainer's PUB socket with the documented event maps: malformed events of several kinds, a
# checkpoint path that is a FIFO (must not block evald), a 2 GiB sparse file (refused from its
# header, not read), one that does not exist, then three real checkpoints in quick succession while evald
# is busy (it must evaluate the first and the newest and skip the middle one), then "end".
# evald's own "eval" events are received on its --pub socket. A second evald is stopped with
# SIGTERM in the middle of an evaluation and must exit cleanly at once.
set -u
bin=${NPID_BIN:?NPID_BIN not set}
ev=$bin/npid-evald
py=/usr/bin/python3
[ -x "$ev" ] && [ -x "$bin/npid-loader" ] || { echo "it_evald_attach: binaries not built" >&2; exit 77; }
$py -c 'import zmq, msgpack' 2>/dev/null || { echo "it_evald_attach: /usr/bin/python3 with zmq and msgpack needed" >&2; exit 77; }

tmp=$(mktemp -d /tmp/npid-it-evald-attach.XXXXXX)
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    for p in $pids; do wait "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fail() { echo "it_evald_attach: FAIL: $*" >&2; tail -20 "$tmp/err" >&2 2>/dev/null; exit 1; }
port=$(( 20000 + ($$ * 7) % 20000 ))
events=tcp://127.0.0.1:$port
pub=tcp://127.0.0.1:$((port + 1))
export NPID_LOG_LEVEL=info

# enough images that one evaluation outlasts the 0.3 s the stand-in waits before its burst
"$bin/npid-loader" synth --out "$tmp/data" --per-class 80 --test-per-class 4 >/dev/null 2>&1 || fail "synth dataset"
for s in 1 2 3 4; do
    timeout 60 "$bin/tools/npid-mkckpt" --out "$tmp/c$s.ckpt" --model resnet20 --seed $s \
        --step $((s * 100)) 2>/dev/null ||
        fail "mkckpt $s"
done

mkfifo "$tmp/fifo.ckpt" && truncate -s 2G "$tmp/sparse.ckpt" || fail "fifo / sparse file"
# the stand-in trainer: publishes, and listens to evald's results
cat >"$tmp/trainer.py" <<'EOF'
import sys, time, msgpack, zmq
events, pub, d = sys.argv[1], sys.argv[2], sys.argv[3]
ctx = zmq.Context()
p = ctx.socket(zmq.PUB); p.bind(events)
s = ctx.socket(zmq.SUB); s.connect(pub); s.setsockopt(zmq.SUBSCRIBE, b"eval")
seq = [0]
def ev(kind, **kw):
    seq[0] += 1
    m = {"v": 1, "type": kind, "seq": seq[0], "run": "it", "time": int(time.time() * 1000)}
    m.update(kw)
    return [kind.encode(), msgpack.packb(m)]
def results(n, timeout):
    got, end = [], time.time() + timeout
    while len(got) < n and time.time() < end:
        if s.poll(200):
            topic, body = s.recv_multipart()
            got.append(msgpack.unpackb(body))
    return got
time.sleep(1.5)                       # let evald's SUB connect (PUB drops until then)
p.send(b"checkpoint")                                        # one frame only
p.send_multipart([b"checkpoint", b"\xc1\x00garbage"])        # not msgpack
p.send_multipart(ev("checkpoint", step=1, path=d + "/c1.ckpt")[:1] + [msgpack.packb({"v": 2, "type": "checkpoint", "seq": 99, "run": "it", "time": 0})])
p.send_multipart(ev("checkpoint", step=7))                   # no path
p.send_multipart(ev("checkpoint", step=5, path=d + "/fifo.ckpt"))   # a FIFO: must not block
time.sleep(0.5)
p.send_multipart(ev("checkpoint", step=6, path=d + "/sparse.ckpt")) # 2 GiB of holes: not read
time.sleep(0.5)
p.send_multipart(ev("checkpoint", step=8, path=d + "/missing.ckpt"))
p.send_multipart(ev("metrics", step=9, loss=1.0))            # not a checkpoint: ignored
time.sleep(1.0)                       # evald tries the missing one before the next arrives
p.send_multipart(ev("checkpoint", step=100, path=d + "/c1.ckpt", sha256="0" * 64))
first = results(1, 30)
if not first:
    sys.exit("no eval result for the first checkpoint")
# evald is idle again: three more in a burst, during one evaluation
p.send_multipart(ev("checkpoint", step=200, path=d + "/c2.ckpt"))
time.sleep(0.3)                       # evald is now busy with c2
p.send_multipart(ev("checkpoint", step=250, path=d + "/c1.ckpt"))
p.send_multipart(ev("checkpoint", step=300, path=d + "/c3.ckpt"))
rest = results(2, 40)
time.sleep(0.5)
p.send_multipart(ev("end", step=300))
print(" ".join(str(r["step"]) for r in first + rest))
EOF

timeout -k 5 90 "$ev" attach --data "$tmp/data" --events "$events" --pub "$pub" --against recomputed \
    --k 10 --exit-on-end >"$tmp/out.jsonl" 2>"$tmp/err" &
evpid=$!
pids="$pids $evpid"
timeout -k 5 80 $py "$tmp/trainer.py" "$events" "$pub" "$tmp" >"$tmp/seen" 2>"$tmp/trainer.err" ||
    { cat "$tmp/trainer.err" >&2; fail "stand-in trainer"; }
wait $evpid; rc=$?
pids=""
[ $rc -eq 0 ] || fail "attached evald exit $rc (expected 0 after \"end\")"

# evaluated: step 100, then 200, then the newest (300); 250 was skipped while busy with 200
steps=$($py -c 'import json, sys; print(" ".join(str(json.loads(l)["step"]) for l in open(sys.argv[1])))' "$tmp/out.jsonl")
[ "$steps" = "100 200 300" ] || fail "stdout evaluations: '$steps' (expected '100 200 300')"
[ "$(cat "$tmp/seen")" = "100 200 300" ] || fail "PUB results: '$(cat "$tmp/seen")'"
grep -q "skipping checkpoint step 250" "$tmp/err" || fail "no skip reported"
n=$(grep -c "malformed" "$tmp/err")
[ "$n" -ge 4 ] || fail "expected 4 malformed events reported, got $n"
grep -q "one frame" "$tmp/err" || fail "single-frame event not reported"
grep -q "unsupported event version" "$tmp/err" || fail "wrong-version event not reported"
grep -q "missing.ckpt" "$tmp/err" || fail "missing checkpoint not reported"
grep -q "fifo.ckpt: not a regular file" "$tmp/err" || fail "FIFO checkpoint not refused: $(grep fifo "$tmp/err")"
grep -q "sparse.ckpt: not a checkpoint" "$tmp/err" || fail "sparse checkpoint not refused: $(grep sparse "$tmp/err")"
grep -q "missed" "$tmp/err" && fail "a gap in seq reported where there was none"
grep -q "4 malformed events" "$tmp/err" || fail "detach summary"

# --every 2: only every second announced checkpoint is evaluated
cat >"$tmp/every.py" <<'EOF'
import sys, time, msgpack, zmq
events, d = sys.argv[1], sys.argv[2]
p = zmq.Context().socket(zmq.PUB); p.bind(events)
time.sleep(1.5)
for i, (step, c) in enumerate([(100, "c1"), (200, "c2"), (300, "c3"), (400, "c4")]):
    m = {"v": 1, "type": "checkpoint", "seq": i + 1, "run": "it", "time": 0, "step": step,
         "path": d + "/" + c + ".ckpt"}
    p.send_multipart([b"checkpoint", msgpack.packb(m)])
    time.sleep(1.5)
p.send_multipart([b"end", msgpack.packb({"v": 1, "type": "end", "seq": 5, "run": "it", "time": 0})])
time.sleep(0.3)
EOF
timeout -k 5 60 "$ev" attach --data "$tmp/data" --events "$events" --against recomputed --k 10 \
    --every 2 --exit-on-end >"$tmp/out3.jsonl" 2>"$tmp/err" &
evpid=$!
pids="$evpid"
timeout -k 5 40 $py "$tmp/every.py" "$events" "$tmp" 2>"$tmp/trainer.err" || fail "every.py"
wait $evpid; rc=$?
pids=""
[ $rc -eq 0 ] || fail "--every 2: exit $rc"
steps=$($py -c 'import json, sys; print(" ".join(str(json.loads(l)["step"]) for l in open(sys.argv[1])))' "$tmp/out3.jsonl")
[ "$steps" = "200 400" ] || fail "--every 2 evaluated '$steps' (expected '200 400')"

# SIGTERM during an evaluation: clean exit within a few seconds
timeout -k 5 60 "$ev" attach --data "$tmp/data" --events "$events" --checkpoint "$tmp/c1.ckpt" \
    --against recomputed --batch 1 >"$tmp/out2" 2>"$tmp/err2" &
evpid=$!
pids="$evpid"
i=0
until grep -q "checkpoint .*c1.ckpt: step" "$tmp/err2" 2>/dev/null; do
    i=$((i + 1)); [ $i -lt 200 ] || fail "second evald did not start evaluating"; sleep 0.05
done
start=$(date +%s)
kill -TERM $evpid
wait $evpid; rc=$?
pids=""
[ $rc -eq 0 ] || fail "SIGTERM: exit $rc"
[ $(( $(date +%s) - start )) -le 5 ] || fail "SIGTERM: took too long"
grep -q "detached" "$tmp/err2" || fail "SIGTERM: no detach summary"
echo "it_evald_attach: ok" >&2
exit 0
