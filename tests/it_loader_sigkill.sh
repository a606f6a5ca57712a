#!/bin/sh
# Exactly-once delivery with real processes: npid-consume (the taskq stand-in trainer)
# runs two epochs fed by two npid-loader processes; one is SIGKILLed mid-epoch and a third
# joins later. Every index must arrive exactly once per epoch, in step order, and the pixel
# checksum must equal that of an undisturbed single-loader run (augmentation depends only on
# (seed, epoch, index), not on which loader ran it).
set -u
name=it_loader_sigkill
. "$(dirname "$0")/lib_consume.sh"

"$bin/npid-loader" synth --out "$tmp/data" --per-class 200 --test-per-class 0 --log-level warn \
    >/dev/null || fail "synth failed"

# reference run: one loader, no faults
ep="ipc://$tmp/ref.sock"
"$bin/tools/npid-consume" --data "$tmp/data" --bind "$ep" --epochs 2 --batch 50 --seed 7 \
    --timeout-s 60 >"$tmp/ref.json" 2>"$tmp/ref.log" &
cpid=$!; pids="$pids $cpid"
"$bin/npid-loader" --data "$tmp/data" --tasks "$ep" --log-level warn 2>"$tmp/l0.log" &
pids="$pids $!"
wait "$cpid" || fail "reference run failed: $(cat "$tmp/ref.json")"
grep -q '"ok": true' "$tmp/ref.json" || fail "reference run not ok: $(cat "$tmp/ref.json")"
ref_crc=$(field "$tmp/ref.json" pix_crc)

# faulty run: training takes 15 ms per step so the epoch lasts long enough to kill a loader
ep="ipc://$tmp/run.sock"
"$bin/tools/npid-consume" --data "$tmp/data" --bind "$ep" --epochs 2 --batch 50 --seed 7 \
    --step-ms 15 --loader-timeout-ms 1000 --window 6 --timeout-s 90 \
    >"$tmp/run.json" 2>"$tmp/run.log" &
cpid=$!; pids="$pids $cpid"
"$bin/npid-loader" --data "$tmp/data" --tasks "$ep" --capacity 3 --name victim 2>"$tmp/victim.log" &
victim=$!; pids="$pids $victim"
"$bin/npid-loader" --data "$tmp/data" --tasks "$ep" --name survivor 2>"$tmp/survivor.log" &
pids="$pids $!"
# wait until the victim has produced something, then kill it mid-epoch
i=0
until grep -q "connected to trainer" "$tmp/victim.log" 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 100 ] && fail "victim never connected"; sleep 0.1
done
sleep 0.5
# freeze it first so it is certainly holding tasks when it dies
kill -STOP "$victim" || fail "victim already gone"
sleep 0.3
kill -9 "$victim"
sleep 0.5
"$bin/npid-loader" --data "$tmp/data" --tasks "$ep" --name latecomer 2>"$tmp/late.log" &
pids="$pids $!"
wait "$cpid"; rc=$?
[ $rc -eq 0 ] || fail "consume exit $rc: $(cat "$tmp/run.json")"
j="$tmp/run.json"
grep -q '"ok": true' "$j" || fail "not ok: $(cat "$j")"
[ "$(field "$j" missing)" = 0 ] || fail "missing samples: $(cat "$j")"
[ "$(field "$j" repeated)" = 0 ] || fail "repeated samples: $(cat "$j")"
[ "$(field "$j" images)" = 4000 ] || fail "expected 4000 images: $(cat "$j")"
[ "$(field "$j" loaders_lost)" -ge 1 ] || fail "the killed loader was not noticed: $(cat "$j")"
[ "$(field "$j" reissued)" -ge 1 ] || fail "nothing was re-issued: $(cat "$j")"
[ "$(field "$j" loaders_joined)" -ge 3 ] || fail "the latecomer did not join: $(cat "$j")"
[ "$(field "$j" pix_crc)" = "$ref_crc" ] || fail "pixels differ from the reference run ($ref_crc): $(cat "$j")"
grep -q "loader victim lost" "$tmp/run.log" || fail "no log line about the lost loader"
# the trainer side dies instead: the surviving loaders serve its replacement
"$bin/tools/npid-consume" --data "$tmp/data" --bind "$ep" --epochs 1 --batch 50 --seed 7 \
    --step-ms 20 --timeout-s 60 >"$tmp/dead.json" 2>"$tmp/dead.log" &
cpid=$!; pids="$pids $cpid"
sleep 0.7
kill -9 "$cpid"
"$bin/tools/npid-consume" --data "$tmp/data" --bind "$ep" --epochs 2 --batch 50 --seed 7 \
    --timeout-s 60 >"$tmp/again.json" 2>"$tmp/again.log" &
cpid=$!; pids="$pids $cpid"
wait "$cpid" || fail "restarted consumer failed: $(cat "$tmp/again.json")"
grep -q '"ok": true' "$tmp/again.json" || fail "restarted consumer not ok: $(cat "$tmp/again.json")"
[ "$(field "$tmp/again.json" pix_crc)" = "$ref_crc" ] || fail "restarted run differs: $(cat "$tmp/again.json")"
echo "it_loader_sigkill: ok: $(field "$j" images) images exactly once, $(field "$j" reissued) re-issued, crc $ref_crc" >&2
exit 0
