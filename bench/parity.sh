#!/bin/sh
# Parity benchmark (`make parity`; not part of `make check` or CI): the reference recipe
# (--preset reference: m = 4096, tau 0.1, batch 128, lr 0.03, reference CIFAR augmentations,
# uniform bank init) for EPOCHS epochs on full CIFAR-10, in npid and in the PyTorch peer
# (bench/peer/npid_peer.py train), one after the other on this machine. Prints both weighted
# kNN curves (k 200, sigma 0.1; against the bank and against recomputed train features) and
# wall times, and writes PARITY_OUT/parity.md (the table) and PARITY_OUT/parity.png.
#
# npid side: bankd + LOADERS loaders + npid-trainer --keep-epochs (checkpoints/epoch-NNN.ckpt
# and bank-epoch-NNN.snap); after training, each epoch is evaluated with
# npid-evald --once --against both, its --bank a bankd started on a directory holding only
# that epoch's snapshot. Evaluation therefore does not share the cores with training, and the
# training wall time excludes it (it is reported separately, as is the peer's).
#
# Environment: EPOCHS (3), MODEL (resnet20), LOADERS (1), NPID_BIN (build/), PARITY_DATA (an
# ImageFolder root; default CIFAR-10 from ../shared, extracted to ${NPID_CACHE:-~/.cache/npid}),
# PARITY_OUT (default docs/), NPID_KEEP_TMP=1 keeps the work directory.
set -u
name=parity
here=$(cd "$(dirname "$0")" && pwd)
root=${NPID_ROOT:-$(dirname "$here")}
bin=${NPID_BIN:-$root/build}
py=/usr/bin/python3
epochs=${EPOCHS:-3}
model=${MODEL:-resnet20}
loaders=${LOADERS:-1}
out=${PARITY_OUT:-}
[ -n "$out" ] || out=$root/docs
export OPENBLAS_CORETYPE=SkylakeX

say() { echo "$name: $*" >&2; }
die() { echo "$name: $*" >&2; exit 1; }

case "$epochs" in ''|*[!0-9]*|0) echo "$name: EPOCHS must be a positive number" >&2; exit 2 ;; esac
case "$loaders" in ''|*[!0-9]*|0) echo "$name: LOADERS must be a positive number" >&2; exit 2 ;; esac
for b in npid-bankd npid-loader npid-trainer npid-evald; do
    [ -x "$bin/$b" ] || die "$bin/$b not built (run make)"
done
$py -c 'import torch, torchvision' 2>/dev/null || die "PyTorch/torchvision not importable by $py"
command -v gnuplot >/dev/null || die "gnuplot not installed (apt-get install gnuplot-nox)"

data=${PARITY_DATA:-}
if [ -z "$data" ]; then
    tarball=$root/../shared/data/cifar10-jpeg.tar.gz
    cache=${NPID_CACHE:-$HOME/.cache/npid}
    if [ ! -d "$cache/cifar10/train" ]; then
        [ -f "$tarball" ] || die "$tarball absent (needs ../shared, or PARITY_DATA=dir)"
        say "extracting $tarball to $cache"
        mkdir -p "$cache" && tar -xzf "$tarball" -C "$cache" || die "cannot extract $tarball"
    fi
    data=$cache/cifar10
fi
[ -d "$data/train" ] && [ -d "$data/test" ] || die "$data: needs train/ and test/"
mkdir -p "$out" || die "cannot create $out"

w=$(mktemp -d /tmp/npid-parity.XXXXXX)
pids=""
stop_children() {
    for p in $pids; do kill "$p" 2>/dev/null; done
    for p in $pids; do wait "$p" 2>/dev/null; done
    pids=""
}
cleanup() {
    stop_children
    [ -n "${NPID_KEEP_TMP:-}" ] && { say "kept $w"; return; }
    rm -rf "$w"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# ports_free BASE COUNT: 0 when none of BASE..BASE+COUNT-1 is listening (ss; assume free without it)
ports_free() {
    command -v ss >/dev/null || return 0
    j=0
    while [ $j -lt "$2" ]; do
        [ -z "$(ss -Hltn "sport = :$(($1 + j))" 2>/dev/null)" ] || return 1
        j=$((j + 1))
    done
    return 0
}
# ports from 29000..29999 (clear of 5557-5560, 17000-18999, the trainer tests', bench_e2e's and
# the launcher test's ranges), skipping any that something already listens on
port=$(( 29000 + ($$ % 100) * 10 ))
k=0
while ! ports_free "$port" 4 && [ $k -lt 50 ]; do port=$((port + 4)); k=$((k + 1)); done
bank_ep=tcp://127.0.0.1:$port
tasks_ep=tcp://127.0.0.1:$((port + 1))
events_ep=tcp://127.0.0.1:$((port + 2))
eval_ep=tcp://127.0.0.1:$((port + 3))
now() { date +%s.%N; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

say "data $data, model $model, $epochs epoch(s), work dir $w"
load_before=$(load)

# ---- npid -----------------------------------------------------------------------------------
mkdir -p "$w/npid/bank" "$w/npid/logs"
"$bin/npid-bankd" --bind "$bank_ep" --dir "$w/npid/bank" --snapshot-every 0 \
    >"$w/npid/logs/bankd.log" 2>&1 &
pids="$pids $!"
i=0
while [ $i -lt "$loaders" ]; do
    "$bin/npid-loader" --data "$data" --tasks "$tasks_ep" --log-level warn \
        >"$w/npid/logs/loader-$i.log" 2>&1 &
    pids="$pids $!"
    i=$((i + 1))
done
say "npid: training ($loaders loader(s))"
t0=$(now)
timeout $((epochs * 3600)) "$bin/npid-trainer" --data "$data" --run-dir "$w/npid/run" \
    --preset reference --model "$model" --bank-init uniform --epochs "$epochs" --keep-epochs \
    --bank "$bank_ep" --tasks "$tasks_ep" --events "$events_ep" --no-progress \
    >"$w/npid/logs/trainer.log" 2>&1
rc=$?
t1=$(now)
stop_children
if [ $rc -ne 0 ]; then
    tail -5 "$w/npid/logs/trainer.log" >&2
    die "npid-trainer failed (exit $rc)"
fi
grep -E 'epoch [0-9]+ done' "$w/npid/logs/trainer.log" | sed 's/^/  /' >&2

say "npid: evaluating each epoch's checkpoint (npid-evald --once --against both)"
e=0
: >"$w/npid/evals.jsonl"
t2=$(now)
while [ $e -lt "$epochs" ]; do
    nnn=$(printf '%03d' $e)
    ck=$w/npid/run/checkpoints/epoch-$nnn.ckpt
    snap=$w/npid/bank/bank-epoch-$nnn.snap
    [ -f "$ck" ] && [ -f "$snap" ] || die "epoch $e: $ck or $snap missing"
    mkdir -p "$w/npid/eval-$nnn"
    ln -sf "$snap" "$w/npid/eval-$nnn/bank-epoch-$nnn.snap"
    "$bin/npid-bankd" --bind "$eval_ep" --dir "$w/npid/eval-$nnn" --snapshot-every 0 \
        >"$w/npid/logs/bankd-eval-$nnn.log" 2>&1 &
    pids="$pids $!"
    timeout 3600 "$bin/npid-evald" --once --checkpoint "$ck" --data "$data" --bank "$eval_ep" \
        --against both >>"$w/npid/evals.jsonl" 2>"$w/npid/logs/evald-$nnn.log"
    rc=$?
    stop_children
    [ $rc -eq 0 ] || { tail -5 "$w/npid/logs/evald-$nnn.log" >&2; die "npid-evald failed on epoch $e"; }
    grep -E 'against (bank|recomputed)' "$w/npid/logs/evald-$nnn.log" | sed 's/^/  /' >&2
    e=$((e + 1))
done
t3=$(now)

# ---- peer -----------------------------------------------------------------------------------
say "peer: training and evaluating (bench/peer/npid_peer.py train, OMP_WAIT_POLICY=PASSIVE)"
t4=$(now)
OMP_WAIT_POLICY=PASSIVE timeout $((epochs * 7200)) $py "$root/bench/peer/npid_peer.py" train \
    --data "$data" --model "$model" --epochs "$epochs" >"$w/peer.jsonl" 2>"$w/peer.log"
rc=$?
t5=$(now)
grep 'epoch [0-9]*:' "$w/peer.log" | sed 's/^/  /' >&2
[ $rc -eq 0 ] || { tail -5 "$w/peer.log" >&2; die "peer failed (exit $rc)"; }

# ---- table and plot ---------------------------------------------------------------------------
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
$py - "$w" "$out" "$model" "$epochs" "$loaders" "$data" "$commit" "$load_before" "$(load)" \
    "$t0" "$t1" "$t2" "$t3" "$t4" "$t5" <<'EOF' || die "cannot write the table"
import json, os, sys, time
w, out, model, epochs, loaders, data, commit, load0, load1 = sys.argv[1:10]
t0, t1, t2, t3, t4, t5 = map(float, sys.argv[10:16])
epochs = int(epochs)
metrics = [json.loads(l) for l in open(f"{w}/npid/run/metrics.jsonl")]
n_epoch = {e["epoch"]: e for e in metrics if e["type"] == "epoch"}
n_eval = {}
for l in open(f"{w}/npid/evals.jsonl"):
    e = json.loads(l)
    ep = int(os.path.basename(e["checkpoint"])[6:9]) + 1
    n_eval.setdefault(ep, {})[e["against"]] = e
peer = {e["epoch"]: e for e in (json.loads(l) for l in open(f"{w}/peer.jsonl"))}
rows, dat = [], []
for ep in range(1, epochs + 1):
    nb, nr = n_eval[ep]["bank"]["top1"] * 100, n_eval[ep]["recomputed"]["top1"] * 100
    pb, pr = peer[ep]["bank_top1"] * 100, peer[ep]["recomputed_top1"] * 100
    ns, ps = n_epoch[ep - 1]["seconds"], peer[ep]["train_seconds"]
    rows.append(f"| {ep} | {nb:.2f} / {nr:.2f} | {pb:.2f} / {pr:.2f} | {nr - pr:+.2f} | "
                f"{n_epoch[ep - 1]['loss']:.3f} / {peer[ep]['loss']:.3f} | "
                f"{ns:.0f} / {ps:.0f} | {ps / ns:.2f} |")
    dat.append(f"{ep} {nb:.3f} {nr:.3f} {pb:.3f} {pr:.3f}")
    print(json.dumps({"epoch": ep, "npid_bank": round(nb, 2), "npid_recomputed": round(nr, 2),
                      "peer_bank": round(pb, 2), "peer_recomputed": round(pr, 2),
                      "npid_train_s": round(ns, 1), "peer_train_s": round(ps, 1)}))
n_train = sum(n_epoch[e]["seconds"] for e in range(epochs))
p_train = sum(peer[e]["train_seconds"] for e in range(1, epochs + 1))
p_eval = sum(peer[e]["eval_seconds"] for e in range(1, epochs + 1))
n_proc, n_evalwall, p_proc = t1 - t0, t3 - t2, t5 - t4
print(json.dumps({"npid_train_s": round(n_train, 1), "npid_trainer_wall_s": round(n_proc, 1),
                  "npid_eval_s": round(n_evalwall, 1), "peer_train_s": round(p_train, 1),
                  "peer_process_wall_s": round(p_proc, 1), "peer_eval_s": round(p_eval, 1),
                  "train_time_ratio": round(p_train / n_train, 2)}))
open(f"{w}/parity.dat", "w").write("\n".join(dat) + "\n")
gap = max(abs(float(d.split()[2]) - float(d.split()[4])) for d in dat)
md = f"""# Parity: npid vs the PyTorch peer on the reference recipe

Generated by `make parity EPOCHS={epochs} MODEL={model}` (bench/parity.sh) on
{time.strftime('%Y-%m-%d %H:%M')} at commit {commit}. Data: CIFAR-10 JPEGs ({data}),
50,000 train / 10,000 test images.

Recipe, both sides: {model} -> Linear 128 -> L2 norm; NCE m = 4096 (one shared draw of
negatives per step), tau 0.1, Z frozen after the first step, bank momentum 0.5, bank init
uniform +-1/sqrt(d/3); SGD lr 0.03 (constant over these epochs), momentum 0.9, weight decay
5e-4; batch 128; reference CIFAR augmentations (RandomResizedCrop(32, 0.2-1), ColorJitter 0.4
x4, RandomGrayscale 0.2, no flip); seed 0. npid: `npid-trainer --preset reference --model
{model} --bank-init uniform --keep-epochs` with npid-bankd and {loaders} npid-loader(s). Peer:
`bench/peer/npid_peer.py train` (PyTorch {__import__('torch').__version__}, torch DataLoader with 2
workers, torchvision transforms, 2 threads, OMP_WAIT_POLICY=PASSIVE).

kNN: weighted, k = 200, sigma 0.1, all 10,000 test images; "bank" = against the memory bank
as it stands at the end of the epoch, "recomputed" = against the 50,000 train features
recomputed with the test transform. npid's epochs are evaluated after training, each by
`npid-evald --once --checkpoint epoch-NNN.ckpt --against both` against a bankd serving that
epoch's snapshot (bank-epoch-NNN.snap), so evaluation never shares the cores with training
and is not in npid's training time; the peer evaluates in-process after each epoch, also
outside its timed training loop.

| epoch | npid kNN top-1 %: bank / recomputed | peer: bank / recomputed | recomputed gap (npid - peer) | mean loss npid / peer | epoch train time s: npid / peer | speed-up |
|---|---|---|---|---|---|---|
""" + "\n".join(rows) + f"""

Training wall time over {epochs} epoch(s): npid {n_train:.0f} s (trainer process {n_proc:.0f} s
including start-up and dataset indexing), peer {p_train:.0f} s (process {p_proc:.0f} s including
its evaluation); peer / npid = {p_train / n_train:.2f}. Evaluation: npid {n_evalwall:.0f} s
(all epochs, one evald process per epoch, including start-up), peer {p_eval:.0f} s.
Largest |npid - peer| recomputed-kNN gap over the epochs: {gap:.2f} points.

Targets (issue 7): npid's recomputed kNN top-1 within 1.5 points of the peer's at every
epoch: {"met" if gap <= 1.5 else "NOT met"}; npid's training time at most 1/1.3 of the peer's:
{"met" if p_train / n_train >= 1.3 else "NOT met"} ({p_train / n_train:.2f}x).

![kNN top-1 per epoch](parity.png)

Notes:
- The machine (2 cores) was shared with other engineers' experiments during this run (load
  average {load0} before, {load1} after), so wall times are noisy; both sides ran one after
  the other, npid first.
- Both sides start from different random weights and banks (different RNGs), and the first
  epochs of this recipe are noisy (../shared/spec/reference-curves.md: kNN falls below the
  untrained network's for several epochs, then recovers slowly). Each side is one run (seed
  0); run-to-run variation was not measured here, so read small gaps with that in mind.
"""
open(f"{out}/parity.md", "w").write(md)
EOF
gnuplot -e "datafile='$w/parity.dat'; outfile='$out/parity.png'; epochs=$epochs" "$root/bench/parity-plot.gp" \
    || die "gnuplot failed"
say "wrote $out/parity.md and $out/parity.png"
