# Shared by the loader tests that drive tools/npid-consume (sourced; POSIX sh): a temp dir,
# cleanup of every child on exit, fail, a JSON field reader, and one consume run fed by one
# loader. The caller sets `name` before sourcing.
bin=${NPID_BIN:?NPID_BIN not set}
tmp=$(mktemp -d "/tmp/npid-$name.XXXXXX")
pids=""
cleanup() {
    for p in $pids; do kill -9 "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fail() { echo "$name: FAIL: $*" >&2; for f in "$tmp"/*.log; do echo "--- $f" >&2; tail -n 5 "$f" >&2; done; exit 1; }
field() { sed -n "s/.*\"$2\": \"\{0,1\}\([^,\"}]*\).*/\1/p" "$1"; }
# consume_run NAME EPOCHS ARGS...: npid-consume (seed 7, batch 25) over $tmp/data fed by
# one loader; its JSON summary in $tmp/NAME.json, which must say "ok": true
consume_run() {
    n=$1; e=$2; shift 2
    ep="ipc://$tmp/$n.sock"
    "$bin/tools/npid-consume" --data "$tmp/data" --bind "$ep" --epochs "$e" --batch 25 --seed 7 \
        --timeout-s 60 "$@" >"$tmp/$n.json" 2>"$tmp/$n.log" &
    c=$!; pids="$pids $c"
    "$bin/npid-loader" --data "$tmp/data" --tasks "$ep" --log-level warn 2>"$tmp/$n-loader.log" &
    pids="$pids $!"
    wait "$c" || fail "$n: consume failed: $(cat "$tmp/$n.json")"
    grep -q '"ok": true' "$tmp/$n.json" || fail "$n: not ok: $(cat "$tmp/$n.json")"
}
