#!/bin/sh
# The real CIFAR-10 JPEGs (../shared/data, extracted once into the cache by
# loader/cifar-cache.sh): the index sees 50,000 train and 10,000 test images in 10 classes,
# all decode, and two loaders serve 10,000 of them to the taskq consumer exactly once.
# Skips when the shared data is absent.
set -u
bin=${NPID_BIN:?NPID_BIN not set}
root=${NPID_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
data=$("$root/loader/cifar-cache.sh") ; rc=$?
[ $rc -eq 77 ] && { echo "it_loader_cifar: needs ../shared (its CIFAR-10 JPEGs are absent); skipping" >&2; exit 77; }
[ $rc -eq 0 ] || { echo "it_loader_cifar: cannot prepare the CIFAR-10 cache" >&2; exit 1; }
tmp=$(mktemp -d /tmp/npid-it-cifar.XXXXXX)
pids=""
cleanup() { for p in $pids; do kill -9 "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 1' INT TERM
fail() { echo "it_loader_cifar: $*" >&2; tail -n 5 "$tmp"/*.log >&2 2>/dev/null; exit 1; }
timeout 120 "$bin/npid-loader" check --data "$data" --strict >"$tmp/train.out" 2>"$tmp/check.log" || fail "train split: $(tail -n 3 "$tmp/train.out")"
grep -q '"images": 50000, "ok": 50000, "bad": 0' "$tmp/train.out" || fail "train: $(tail -n 1 "$tmp/train.out")"
timeout 60 "$bin/npid-loader" check --data "$data" --split test --strict >"$tmp/test.out" 2>>"$tmp/check.log" || fail "test split"
grep -q '"images": 10000, "ok": 10000' "$tmp/test.out" || fail "test: $(tail -n 1 "$tmp/test.out")"
ep="ipc://$tmp/t.sock"
"$bin/tools/npid-consume" --data "$data" --bind "$ep" --images 10000 --batch 128 --timeout-s 120 \
    >"$tmp/c.json" 2>"$tmp/c.log" &
cpid=$!; pids="$pids $cpid"
for k in 1 2; do "$bin/npid-loader" --data "$data" --tasks "$ep" --log-level warn 2>"$tmp/l$k.log" & pids="$pids $!"; done
wait "$cpid" || fail "consume: $(cat "$tmp/c.json")"
grep -q '"ok": true' "$tmp/c.json" && grep -q '"images": 10000' "$tmp/c.json" || fail "$(cat "$tmp/c.json")"
echo "it_loader_cifar: ok: $(sed -n 's/.*"img_per_s": \([0-9.]*\).*/\1/p' "$tmp/c.json") img/s with 2 loaders" >&2
exit 0
