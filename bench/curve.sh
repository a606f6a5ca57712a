#!/bin/sh
# A learning curve on any dataset, with its same-run baselines: what docs/recipes.md's targets
# are measured with (bench/ten_minutes.sh is this on CIFAR-10 with a 10-minute limit).
#
#   1. baselines (scripts/npid-baselines, what `npid run` measures too): the raw-pixel kNN
#      (npid-evald --once --pixels at the size the trainer picks) and the untrained network
#      (npid-trainer --init-only --bank-init warm with the run's flags, then npid-evald --once
#      --against both), both measured here, in this invocation;
#   2. training: npid-bankd + LOADERS npid-loader + npid-trainer --epochs E --keep-epochs,
#      nothing else running; the wall clock starts when the trainer starts (start-up, dataset
#      indexing and the warm bank pass included);
#   3. after training, each kept epoch is evaluated (npid-evald --once --against both, the
#      bank from that epoch's snapshot), so evaluation never takes cores from training.
# Every result is appended to OUT as one JSON line as soon as it is known (a run cut short
# keeps what it measured, and its checkpoints stay in KEEP for a later evaluation): the
# baselines, one line per epoch (wall seconds at its checkpoint, kNN bank / recomputed, top-5),
# and a summary line per limit in LIMITS: the last epoch checkpointed within it, and whether
# both its kNN figures beat both baselines.
#
# Environment: DATA (dataset root; default the CIFAR-10 JPEGs extracted from ../shared),
# EPOCHS (20), EVAL_EVERY (evaluate every k-th epoch and the last; 1), LIMITS (seconds, space-separated; "600"), TRAIN_FLAGS (trainer flags, e.g.
# "--preset cifar --seed 1"), LOADERS (1), OUT (JSON lines; default DIR/curve.jsonl),
# KEEP=DIR (keep the run directory there), NPID_BIN, NPID_CACHE, OPENBLAS_CORETYPE (SkylakeX
# unless set), PORT (base port, 24710), NAME (a label carried in every line), RESUME=1 (KEEP's
# run was cut short: reuse its baselines line from OUT and continue its training with the trainer's
# --resume; the wall clock then leaves out the time between its last checkpoint and the restart).
# Exit 0 when every limit's target is met, 1 when not, 2 on a setup error.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
bin=${NPID_BIN:-$root/build}
epochs=${EPOCHS:-20}
limits=${LIMITS:-600}
loaders=${LOADERS:-1}
eval_every=${EVAL_EVERY:-1}
port=${PORT:-24710}
flags=${TRAIN_FLAGS:-}
py=/usr/bin/python3
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-SkylakeX}
. "$here/lib_eval.sh"
say() { echo "curve: $*" >&2; }
die() { say "$*"; exit 2; }
for b in npid-bankd npid-loader npid-trainer npid-evald; do
    [ -x "$bin/$b" ] || die "$bin/$b not built (run make)"
done
cache=${NPID_CACHE:-$HOME/.cache/npid}
data=${DATA:-}
if [ -z "$data" ]; then
    data=$cache/cifar10
    if [ ! -d "$data/train" ]; then
        tarball=$root/../shared/data/cifar10-jpeg.tar.gz
        [ -f "$tarball" ] || die "$tarball absent: needs ../shared (or DATA=dir)"
        mkdir -p "$cache" && tar -xzf "$tarball" -C "$cache" || die "cannot extract $tarball"
    fi
fi
[ -d "$data" ] || die "DATA=$data: no such directory"
w=${KEEP:-$(mktemp -d /tmp/npid-curve.XXXXXX)}
mkdir -p "$w/logs" "$w/bank" || die "cannot create $w"
w=$(cd "$w" && pwd)
out=${OUT:-$w/curve.jsonl}
name=${NAME:-$(basename "$data")}
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    for p in $pids; do wait "$p" 2>/dev/null; done
    [ -n "${KEEP:-}" ] || rm -rf "$w"
}
trap cleanup EXIT
trap 'exit 2' INT TERM
ep() { echo "tcp://127.0.0.1:$((port + $1))"; }
# emit JSON: appends one line to OUT (and stdout) with the run's label
emit() {
    line=$($py -c 'import json,sys; d=json.loads(sys.argv[1]); d={"name":sys.argv[2],**d}; print(json.dumps(d))' "$1" "$name")
    echo "$line" >>"$out"
    echo "$line"
}
load() { cut -d' ' -f1-3 /proc/loadavg; }

# the baselines, with the run's flags (scripts/npid-baselines, as `npid run` measures them)
resume=
if [ "${RESUME:-0}" = 1 ]; then
    [ -n "${KEEP:-}" ] && [ -f "$w/run/checkpoints/trainer.ckpt" ] && [ -f "$w/t0" ] ||
        die "RESUME=1 needs KEEP=DIR holding a cut-short run (run/checkpoints/trainer.ckpt, t0)"
    grep -q "\"name\": \"$name\", \"kind\": \"baselines\"" "$out" 2>/dev/null ||
        die "RESUME=1: $out holds no baselines line named $name"
    resume=--resume
fi
if [ -z "$resume" ]; then
say "baselines: raw pixels and the untrained network (npid-baselines -- $flags)"
# shellcheck disable=SC2086
NPID_BIN=$bin "$root/scripts/npid-baselines" --data "$data" --port "$port" --dir "$w/baselines" \
    --out "$w/baselines.jsonl" -- $flags 2>"$w/logs/baselines.log" ||
    die "baselines failed: $(tail -1 "$w/logs/baselines.log")"
size=$(sed -n 's/.*input 3x\([0-9]*\)x[0-9]*.*/\1/p' "$w/baselines/logs/init.log" | head -1)
emit "$($py - "$w" "$size" "$flags" "$data" "$(load)" <<'PY'
import json, sys
w, size, flags, data, load = sys.argv[1:6]
rows = [json.loads(l) for l in open(f"{w}/baselines.jsonl")]
px = [r for r in rows if r["baseline"] == "raw_pixels"][0]
un = {r["against"]: r for r in rows if r["baseline"] == "untrained"}
print(json.dumps({"kind": "baselines", "data": data, "flags": flags, "size": int(size),
                  "raw_pixels": round(px["top1"] * 100, 2),
                  "untrained_bank": round(un["bank"]["top1"] * 100, 2),
                  "untrained_recomputed": round(un["recomputed"]["top1"] * 100, 2),
                  "load": load}))
PY
)"
fi

say "training: --epochs $epochs $flags $resume (load average $(load))"
"$bin/npid-bankd" --bind "$(ep 0)" --dir "$w/bank" --snapshot-every 0 >"$w/logs/bankd.log" 2>&1 &
pids="$pids $!"
i=0
while [ $i -lt "$loaders" ]; do
    "$bin/npid-loader" --data "$data" --tasks "$(ep 1)" --log-level warn >"$w/logs/loader-$i.log" 2>&1 &
    pids="$pids $!"; i=$((i + 1))
done
if [ -n "$resume" ]; then
    # the clock restarts where the last checkpoint left it
    t0=$($py - "$w" "$(cat "$w/t0")" "$(date +%s.%N)" <<'PY'
import json, sys
w, t0, now = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
ck = [json.loads(l) for l in open(f"{w}/run/metrics.jsonl")]
last = max(x["time"] for x in ck if x.get("type") == "checkpoint") / 1000.0
print(f"{t0 + (now - last):.3f}")
PY
) || die "cannot read $w/run/metrics.jsonl"
    cat "$w/logs/trainer.log" >>"$w/logs/trainer-before-resume.log"
else
    t0=$(date +%s.%N)
fi
echo "$t0" >"$w/t0"
# shellcheck disable=SC2086
"$bin/npid-trainer" --data "$data" --run-dir "$w/run" --epochs "$epochs" --keep-epochs \
    --bank "$(ep 0)" --tasks "$(ep 1)" --events "$(ep 2)" --no-progress $resume $flags \
    >"$w/logs/trainer.log" 2>&1 || die "trainer failed: $(tail -1 "$w/logs/trainer.log")"
for p in $pids; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
pids=""
say "trained (load average $(load)); evaluating each epoch (npid-evald --once --against both)"

# one epoch at a time, so each line is written as soon as it is measured
: >"$w/evals.jsonl"
e=0
while [ $e -lt "$epochs" ]; do
    # EVAL_EVERY=k: epochs k, 2k, ... and the last (long curves; 1: every epoch)
    if [ $(((e + 1) % eval_every)) -ne 0 ] && [ $((e + 1)) -ne "$epochs" ]; then
        e=$((e + 1))
        continue
    fi
    : >"$w/eval-one.jsonl"
    EVAL_FROM=$e eval_kept_epochs "$w" $((e + 1)) "$data" "$(ep 3)" "$w/eval-one.jsonl" ||
        die "evaluation failed"
    cat "$w/eval-one.jsonl" >>"$w/evals.jsonl"
    emit "$($py - "$w" "$t0" "$e" <<'PY'
import json, sys
w, t0, e = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
ck = [json.loads(l) for l in open(f"{w}/run/metrics.jsonl")]
c = [x for x in ck if x.get("type") == "checkpoint" and x.get("reason") == "epoch" and x["epoch"] == e + 1]
loss = [x.get("loss_mean") for x in ck if x.get("type") == "epoch" and x.get("epoch") == e]
r = {json.loads(l)["against"]: json.loads(l) for l in open(f"{w}/eval-one.jsonl")}
print(json.dumps({"kind": "epoch", "epoch": e + 1, "step": c[0]["step"] if c else None,
                  "wall_s": round(c[0]["time"] / 1000.0 - t0, 1) if c else None,
                  "bank": round(r["bank"]["top1"] * 100, 2),
                  "recomputed": round(r["recomputed"]["top1"] * 100, 2),
                  "top5_recomputed": round(r["recomputed"]["top5"] * 100, 2),
                  "loss_mean": loss[0] if loss else None}))
PY
)"
    e=$((e + 1))
done

status=0
for lim in $limits; do
    line=$($py - "$out" "$name" "$lim" <<'PY'
import json, sys
out, name, lim = sys.argv[1], sys.argv[2], float(sys.argv[3])
rows = [json.loads(l) for l in open(out)]
rows = [r for r in rows if r.get("name") == name]
base = [r for r in rows if r["kind"] == "baselines"][-1]
ep = [r for r in rows if r["kind"] == "epoch" and r["wall_s"] is not None and r["wall_s"] <= lim]
best = ep[-1] if ep else None
bar = max(base["raw_pixels"], base["untrained_recomputed"])
ok = best is not None and min(best["bank"], best["recomputed"]) > bar
print(json.dumps({"kind": "limit", "limit_s": lim, "within_limit": best, "bar": bar,
                  "margin": round(min(best["bank"], best["recomputed"]) - bar, 2) if best else None,
                  "target_met": ok}))
PY
)
    emit "$line"
    case "$line" in *'"target_met": true'*) ;; *) status=1 ;; esac
done
exit $status
