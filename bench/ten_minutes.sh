#!/bin/sh
# The CPU-budget target of docs/recipes.md: what npid learns in 10 minutes of training on full
# CIFAR-10 with every process on this machine's cores, against the raw-pixel baseline.
#
#   1. the baseline: npid-evald --once --pixels (kNN on mean/std-normalised raw pixels);
#   2. training: npid-bankd + one npid-loader + npid-trainer --preset cifar --epochs E
#      --keep-epochs (default E 7: the cosine schedule then ends inside 10 minutes here, at
#      527-531 s), nothing else running; the wall clock starts when the trainer starts
#      (start-up, dataset indexing and the warm bank pass included);
#   3. after training, each kept epoch is evaluated (npid-evald --once --against both, the
#      bank from that epoch's snapshot), so evaluation never takes cores from training.
# Prints one JSON line per epoch (wall seconds at its checkpoint, kNN bank / recomputed) and a
# summary line for the last checkpoint written within LIMIT seconds (default 600); exits 0
# when both its kNN figures beat the baseline, 1 when not, 2 on a setup error.
#
# Environment: NPID_BIN (build dir), EPOCHS (7), LIMIT (600), TRAIN_FLAGS (extra trainer
# flags), NPID_CACHE (CIFAR-10 cache, ~/.cache/npid), OPENBLAS_CORETYPE (SkylakeX unless set),
# PORT (base port, 24700), KEEP=DIR (keep the run directory there), TSV=FILE (also write the
# curve there as bench/recipes.sh's NAME.tsv: epoch, step, wall s, kNN bank %, recomputed %;
# with FILE's .flags and .data beside it, `bench/recipes.sh -o DIR -p` tables and plots it).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
bin=${NPID_BIN:-$root/build}
epochs=${EPOCHS:-7}
limit=${LIMIT:-600}
port=${PORT:-24700}
py=/usr/bin/python3
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-SkylakeX}
. "$here/lib_eval.sh"
say() { echo "ten_minutes: $*" >&2; }
die() { say "$*"; exit 2; }
for b in npid-bankd npid-loader npid-trainer npid-evald; do
    [ -x "$bin/$b" ] || die "$bin/$b not built (run make)"
done
cache=${NPID_CACHE:-$HOME/.cache/npid}
data=$cache/cifar10
if [ ! -d "$data/train" ]; then
    tarball=$root/../shared/data/cifar10-jpeg.tar.gz
    [ -f "$tarball" ] || die "$tarball absent: needs ../shared"
    mkdir -p "$cache" && tar -xzf "$tarball" -C "$cache" || die "cannot extract $tarball"
fi
w=${KEEP:-$(mktemp -d /tmp/npid-ten.XXXXXX)}
mkdir -p "$w/logs" "$w/bank" || die "cannot create $w"
pids=""
cleanup() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    for p in $pids; do wait "$p" 2>/dev/null; done
    [ -n "${KEEP:-}" ] || rm -rf "$w"
}
trap cleanup EXIT
trap 'exit 2' INT TERM
ep() { echo "tcp://127.0.0.1:$((port + $1))"; }

say "raw-pixel baseline (npid-evald --once --pixels)"
"$bin/npid-evald" --once --pixels --data "$data" >"$w/pixels.json" 2>"$w/logs/pixels.log" ||
    die "baseline failed: $(tail -1 "$w/logs/pixels.log")"

say "training: --preset cifar --epochs $epochs ${TRAIN_FLAGS:-} (load average $(cut -d' ' -f1-3 /proc/loadavg))"
"$bin/npid-bankd" --bind "$(ep 0)" --dir "$w/bank" --snapshot-every 0 >"$w/logs/bankd.log" 2>&1 &
pids="$pids $!"
"$bin/npid-loader" --data "$data" --tasks "$(ep 1)" --log-level warn >"$w/logs/loader.log" 2>&1 &
pids="$pids $!"
t0=$(date +%s.%N)
# shellcheck disable=SC2086
"$bin/npid-trainer" --data "$data" --run-dir "$w/run" --preset cifar --epochs "$epochs" \
    --keep-epochs --bank "$(ep 0)" --tasks "$(ep 1)" --events "$(ep 2)" --no-progress \
    ${TRAIN_FLAGS:-} >"$w/logs/trainer.log" 2>&1 || die "trainer failed: $(tail -1 "$w/logs/trainer.log")"
for p in $pids; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
pids=""

say "evaluating each epoch (npid-evald --once --against both)"
: >"$w/evals.jsonl"
eval_kept_epochs "$w" "$epochs" "$data" "$(ep 3)" "$w/evals.jsonl" || die "evaluation failed"

$py - "$w" "$t0" "$limit" "${TSV:-}" <<'PY'
import json, os, sys
w, t0, limit, tsv = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
base = json.load(open(f"{w}/pixels.json"))["top1"] * 100
ck, steps = {}, {}
for l in open(f"{w}/run/metrics.jsonl"):
    e = json.loads(l)
    if e.get("type") == "checkpoint" and e.get("reason") == "epoch":
        ck[e["epoch"]] = e["time"] / 1000.0 - t0
        steps[e["epoch"]] = e["step"]
ev = {}
for l in open(f"{w}/evals.jsonl"):
    e = json.loads(l)
    ep = int(os.path.basename(e["checkpoint"])[6:9]) + 1
    ev.setdefault(ep, {})[e["against"]] = e["top1"] * 100
best = None
for ep in sorted(ev):
    secs = ck.get(ep)
    r = {"epoch": ep, "wall_s": round(secs, 1) if secs is not None else None,
         "bank": round(ev[ep]["bank"], 2), "recomputed": round(ev[ep]["recomputed"], 2)}
    print(json.dumps(r))
    if secs is not None and secs <= limit:
        best = r
if tsv:
    with open(tsv, "w") as t:
        for ep in sorted(ev):
            secs = ck.get(ep)
            t.write("%d\t%s\t%s\t%.2f\t%.2f\n" % (ep, steps.get(ep, "-"),
                    "%d" % round(secs) if secs is not None else "-", ev[ep]["bank"], ev[ep]["recomputed"]))
ok = best is not None and best["bank"] > base and best["recomputed"] > base
print(json.dumps({"raw_pixels": round(base, 2), "limit_s": limit, "within_limit": best,
                  "target_met": ok}))
sys.exit(0 if ok else 1)
PY
