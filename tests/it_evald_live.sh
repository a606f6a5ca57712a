#!/bin/sh
# npid-evald against a live run: bankd, a loader and the trainer (resnet20, a tiny synthetic
# dataset, a checkpoint every few steps) run on loopback; evald attaches mid-run, evaluates
# the checkpoints it is told about against the bank, is stopped (detach), and a second evald
# attaches later. Training must not notice: it keeps stepping through both attachments and
# the detach, and ends normally.
set -u
bin=${NPID_BIN:?NPID_BIN not set}
py=/usr/bin/python3
for b in npid-evald npid-bankd npid-loader npid-trainer; do
    [ -x "$bin/$b" ] || { echo "it_evald_live: $b not built" >&2; exit 77; }
done
tmp=$(mktemp -d /tmp/npid-it-evald-live.XXXXXX)
pids=""
# stops the trainer first (its last checkpoint needs bankd), then the rest; SIGKILL after 15 s
stop_all() {
    for p in $pids; do
        kill "$p" 2>/dev/null
        i=0
        while kill -0 "$p" 2>/dev/null && [ $i -lt 150 ]; do sleep 0.1; i=$((i + 1)); done
        kill -9 "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    pids=""
}
cleanup() {
    stop_all
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fail() {
    echo "it_evald_live: FAIL: $*" >&2
    for f in trainer evald1 evald2 bankd loader; do
        [ -f "$tmp/$f.log" ] && { echo "--- $f" >&2; tail -8 "$tmp/$f.log" >&2; }
    done
    exit 1
}
base=$(( 21000 + ($$ * 11) % 18000 ))
bank=tcp://127.0.0.1:$base tasks=tcp://127.0.0.1:$((base + 1)) events=tcp://127.0.0.1:$((base + 2))
export NPID_LOG_LEVEL=info

# wait_for N FILE SECONDS: until FILE has at least N lines
wait_for() {
    i=0
    while [ "$(cat "$2" 2>/dev/null | wc -l)" -lt "$1" ]; do
        i=$((i + 1)); [ $i -le $(($3 * 10)) ] || return 1; sleep 0.1
    done
}
steps_done() { n=$(grep -c '"type":"metrics"' "$tmp/run/metrics.jsonl" 2>/dev/null); echo "${n:-0}"; }

"$bin/npid-loader" synth --out "$tmp/data" --per-class 20 --test-per-class 5 >/dev/null 2>&1 || fail "synth dataset"
"$bin/npid-bankd" --bind "$bank" --dir "$tmp/bank" --snapshot-every 0 2>"$tmp/bankd.log" &
others="$!"
"$bin/npid-loader" --data "$tmp/data" --tasks "$tasks" >"$tmp/loader.log" 2>&1 &
others="$others $!"
"$bin/npid-trainer" --data "$tmp/data" --run-dir "$tmp/run" --model resnet20 --batch 50 --nce-k 64 \
    --epochs 1000 --ckpt-every 4 --metrics-every 1 --bank "$bank" --tasks "$tasks" --events "$events" \
    --no-progress >/dev/null 2>"$tmp/trainer.log" &
tpid=$!
pids="$tpid $others"

# training is under way before evald attaches
i=0
until [ "$(steps_done)" -ge 6 ]; do
    i=$((i + 1)); [ $i -le 600 ] || fail "trainer made no progress"; sleep 0.1
    kill -0 $tpid 2>/dev/null || fail "trainer died"
done

# (a loaded machine can make one forward pass take seconds: SIGTERM is honoured between batches)
timeout -k 30 150 "$bin/npid-evald" attach --data "$tmp/data" --bank "$bank" --events "$events" \
    --against bank --k 20 >"$tmp/e1.jsonl" 2>"$tmp/evald1.log" &
e1=$!
pids="$e1 $pids"
wait_for 2 "$tmp/e1.jsonl" 90 || fail "attached evald produced fewer than 2 results"
kill -TERM $e1
wait $e1; rc=$?
pids="$tpid $others"
[ $rc -eq 0 ] || fail "evald exit $rc after SIGTERM"
grep -q "detached" "$tmp/evald1.log" || fail "no detach summary"

# training goes on after the detach
before=$(steps_done)
i=0
until [ "$(steps_done)" -ge $((before + 8)) ]; do
    i=$((i + 1)); [ $i -le 600 ] || fail "training stalled after evald detached"; sleep 0.1
    kill -0 $tpid 2>/dev/null || fail "trainer died after evald detached"
done

# attach again later: one evaluation, then exit
timeout -k 30 150 "$bin/npid-evald" attach --data "$tmp/data" --bank "$bank" --events "$events" \
    --against both --k 20 --max-evals 1 >"$tmp/e2.jsonl" 2>"$tmp/evald2.log" || fail "second evald"
kill -0 $tpid 2>/dev/null || fail "trainer died during the second attachment"

kill -TERM $tpid
i=0
while kill -0 $tpid 2>/dev/null; do
    i=$((i + 1)); [ $i -le 600 ] || fail "trainer did not stop within 60 s of SIGTERM"; sleep 0.1
done
wait $tpid; rc=$?
pids="$others"
[ $rc -eq 0 ] || fail "trainer exit $rc after SIGTERM"
grep -q '"type":"end"' "$tmp/run/metrics.jsonl" || fail "trainer did not end normally"

$py - "$tmp/e1.jsonl" "$tmp/e2.jsonl" <<'EOF' || fail "eval results"
import json, sys
A = [json.loads(l) for l in open(sys.argv[1])]
B = [json.loads(l) for l in open(sys.argv[2])]
assert len(A) >= 2 and all(r["against"] == "bank" and r["n_bank"] == 200 for r in A), A
assert all(r["step"] > 0 and r["bank_step"] > 0 for r in A), A
steps = [r["step"] for r in A]
assert steps == sorted(steps) and len(set(steps)) == len(steps), steps
assert [r["against"] for r in B] == ["bank", "recomputed"], B
assert B[0]["step"] > A[-1]["step"], (B[0]["step"], A[-1]["step"])
assert all(0 <= r["top1"] <= 1 and r["n_query"] == 50 for r in A + B)
EOF
echo "it_evald_live: ok" >&2
exit 0
