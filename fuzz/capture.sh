#!/bin/sh
# Seeds for the network-decoder fuzzers, captured from real traffic (run by `make fuzz` and
# `make fuzz-ci`, mk/fuzz.mk).
#
# Usage: fuzz/capture.sh BIN CAPTURE OUT
#   BIN      directory holding npid-bankd, npid-loader, npid-trainer, npid-evald
#   CAPTURE  the fuzz-capture relay (fuzz/capture.c)
#   OUT      directory that receives the frames (created; emptied first)
#
# On a tiny synthetic dataset, with every socket on ipc:// in a private temporary directory
# (no TCP port is taken, nothing collides with a training run on the same machine):
#   bankd <- relay "bank" <- trainer (one epoch: init, set for the warm start, rows, update,
#            named snapshots); then a new bankd without a bank (npid-bankd ping: info
#            answered ENOBANK), the trainer resumed (info, restore, another epoch), then
#            npid-evald --once --against bank (info, get);
#   trainer <- relay "task" <- one loader (hello, welcome, task, batch);
#   the trainer's PUB (metrics, checkpoint, epoch, end events);
#   a second bankd <- relay "pybank" <- tests/bankd_client.py, the protocol written from
#            docs/protocol.md in Python (stats and error replies), when python3 has zmq,
#            msgpack and numpy.
# Writes OUT/<stream>-NNNNN (fuzz-capture names them: bank-up-*, bank-down-*, task-up-*,
# task-down-*, events-*, pybank-up-*, pybank-down-*; frames over 16 KiB are left out) and
# prints the capture's per-stream counts on stderr. Exits 1, saying which, when a stream the
# fuzzers need captured nothing; every process it started is gone when it returns.
set -u
[ $# -eq 3 ] || { echo "usage: fuzz/capture.sh BIN CAPTURE OUT" >&2; exit 2; }
bin=$1 capture=$2 out=$3
root=$(cd "$(dirname "$0")/.." && pwd)
for b in npid-bankd npid-loader npid-trainer npid-evald; do
    [ -x "$bin/$b" ] || { echo "capture.sh: $bin/$b not built" >&2; exit 1; }
done
[ -x "$capture" ] || { echo "capture.sh: $capture not built" >&2; exit 1; }
tmp=$(mktemp -d /tmp/npid-fuzz-capture.XXXXXX) || exit 1
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    for p in $pids; do wait "$p" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fail() {
    echo "capture.sh: $*" >&2
    for f in "$tmp"/*.log; do [ -s "$f" ] && { echo "--- $f" >&2; tail -5 "$f" >&2; }; done
    exit 1
}
# start NAME CMD...: CMD in the background, logging to $tmp/NAME.log
start() {
    n=$1; shift
    "$@" >"$tmp/$n.log" 2>&1 &
    pids="$pids $!"
}
rm -rf "$out" && mkdir -p "$out" || exit 1
mkdir -p "$tmp/s" || exit 1
ep=ipc://$tmp/s
export NPID_LOG_LEVEL=warn
# the machine may be training: one compute thread, tiny images, a few steps
export NPID_THREADS=1

"$bin/npid-loader" synth --out "$tmp/data" --per-class 2 --test-per-class 1 --size 16 \
    >"$tmp/synth.log" 2>&1 || fail "npid-loader synth failed"

# frames up to 16 KiB (the fuzzers' -max_len): every kind of message fits at this scale
start capture "$capture" --out "$out" --max-bytes 16384 \
    --relay bank "$ep/bank-front" "$ep/bank" --relay task "$ep/task-front" "$ep/task" \
    --relay pybank "$ep/pybank-front" "$ep/pybank" --sub events "$ep/events"
cap=$!
start bankd "$bin/npid-bankd" --bind "$ep/bank" --dir "$tmp/bank" --snapshot-every 0
bankd=$!
start loader "$bin/npid-loader" --data "$tmp/data" --tasks "$ep/task-front"
train() {
    NPID_LOG_LEVEL=info timeout -k 5 120 "$bin/npid-trainer" --data "$tmp/data" \
        --run-dir "$tmp/run" --run capture --bank "$ep/bank-front" --tasks "$ep/task" \
        --events "$ep/events" --model resnet20 --low-dim 32 --size 16 --batch 8 \
        --metrics-every 1 --ckpt-every 2 --no-progress "$@" \
        >>"$tmp/trainer.log" 2>&1
}
train --epochs 1 || fail "the trainer's first epoch failed"
# a new bankd that starts without a bank and only then gets the trainer's snapshots: the
# resumed trainer hears ENOBANK and sends restore
kill "$bankd" && wait "$bankd"
pids=$(echo " $pids " | sed "s/ $bankd / /")
mkdir -p "$tmp/bank2" || exit 1
start bankd2 "$bin/npid-bankd" --bind "$ep/bank" --dir "$tmp/bank2" --snapshot-every 0
i=0
until "$bin/npid-bankd" ping --bank "$ep/bank-front" --timeout 2 >/dev/null 2>>"$tmp/ping.log"; do
    i=$((i + 1))
    [ $i -lt 5 ] || fail "the second bankd does not answer"
done
cp "$tmp"/bank/bank-*.snap* "$tmp/bank2/" || fail "no bank snapshots to copy"
train --epochs 2 --resume || fail "the resumed trainer failed"
grep -q "restoring snapshot" "$tmp/trainer.log" ||
    fail "the resumed trainer did not restore the bank"
timeout -k 5 60 "$bin/npid-evald" --once --checkpoint "$tmp/run/checkpoints/trainer.ckpt" \
    --data "$tmp/data" --bank "$ep/bank-front" --against bank --k 5 \
    >"$tmp/evald.out" 2>"$tmp/evald.log" || fail "npid-evald --once failed"
if /usr/bin/python3 -c 'import zmq, msgpack, numpy' 2>/dev/null; then
    start pybankd "$bin/npid-bankd" --bind "$ep/pybank" --snapshot-every 0
    timeout -k 5 60 /usr/bin/python3 "$root/tests/bankd_client.py" "$ep/pybank-front" \
        >"$tmp/pyclient.log" 2>&1 || fail "tests/bankd_client.py failed"
else
    echo "capture.sh: /usr/bin/python3 lacks zmq, msgpack or numpy: no pybank traffic" >&2
fi
sleep 0.3   # the last events in flight
kill "$cap" && wait "$cap"
rc=$?
pids=$(echo " $pids " | sed "s/ $cap / /")
cat "$tmp/capture.log" >&2
[ $rc -eq 0 ] || fail "fuzz-capture exited $rc"
for s in bank-up bank-down task-up task-down events; do
    ls "$out/$s"-* >/dev/null 2>&1 || fail "no $s frames captured"
done
exit 0
