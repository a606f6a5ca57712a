#!/bin/sh
# A loader pointed at different data than the trainer is refused with a clear message on
# both sides: the loader exits 1 naming the manifest mismatch, the trainer side counts the
# refusal and keeps serving.
set -u
bin=${NPID_BIN:?NPID_BIN not set}
tmp=$(mktemp -d /tmp/npid-it-mismatch.XXXXXX)
pids=""
cleanup() { for p in $pids; do kill -9 "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 1' INT TERM
fail() { echo "it_loader_mismatch: $*" >&2; tail -n 5 "$tmp"/*.log >&2; exit 1; }

"$bin/npid-loader" synth --out "$tmp/a" --per-class 5 --test-per-class 0 --seed 1 --log-level warn >/dev/null || fail "synth a"
"$bin/npid-loader" synth --out "$tmp/b" --per-class 5 --test-per-class 0 --seed 2 --log-level warn >/dev/null || fail "synth b"
ep="ipc://$tmp/t.sock"
"$bin/tools/npid-consume" --data "$tmp/a" --bind "$ep" --exit-when-refused --timeout-s 30 \
    >"$tmp/c.json" 2>"$tmp/c.log" &
cpid=$!; pids="$pids $cpid"
timeout 20 "$bin/npid-loader" --data "$tmp/b" --tasks "$ep" 2>"$tmp/loader.log"
rc=$?
[ $rc -eq 1 ] || fail "loader exit status $rc, expected 1"
grep -q "refused this loader: EMISMATCH: manifest mismatch" "$tmp/loader.log" || fail "loader did not say why"
wait "$cpid" || fail "consume failed"
grep -q '"loaders_refused": 1' "$tmp/c.json" || fail "refusal not counted: $(cat "$tmp/c.json")"
grep -q "refused loader .*manifest mismatch" "$tmp/c.log" || fail "trainer side did not log the refusal"
echo "it_loader_mismatch: ok" >&2
exit 0
