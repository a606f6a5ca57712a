#!/bin/sh
# A bankd client in another language: tests/bankd_client.py (Debian python3-zmq, -msgpack,
# -numpy), written from docs/protocol.md alone, against a real npid-bankd on TCP loopback;
# then SIGTERM must write a snapshot and exit 0.
set -u
bin=${NPID_BIN:-build}
root=${NPID_ROOT:-.}
py=/usr/bin/python3
if ! $py -c 'import zmq, msgpack, numpy' 2>/dev/null; then
    echo "it_bankd_python: /usr/bin/python3 lacks zmq, msgpack or numpy" >&2
    exit 77
fi
tmp=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
port=$((20000 + $$ % 20000))
ep=tcp://127.0.0.1:$port
"$bin/npid-bankd" --bind "$ep" --dir "$tmp/snap" --log-level warn 2>"$tmp/bankd.log" &
pid=$!
timeout 30 $py "$root/tests/bankd_client.py" "$ep"
rc=$?
if [ $rc -ne 0 ]; then
    echo "it_bankd_python: client failed ($rc); bankd log:" >&2
    cat "$tmp/bankd.log" >&2
    exit 1
fi
kill -TERM "$pid"
i=0
while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
wait "$pid"
st=$?
pid=
[ $st -eq 0 ] || { echo "it_bankd_python: bankd exited $st after SIGTERM" >&2; cat "$tmp/bankd.log" >&2; exit 1; }
[ -s "$tmp/snap/bank.snap" ] || { echo "it_bankd_python: no snapshot written on SIGTERM" >&2; exit 1; }
exit 0
