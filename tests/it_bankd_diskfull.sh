#!/bin/sh
# Disk full for real: bankd's snapshot directory is a 1 MiB tmpfs (needs mount rights; skips
# otherwise). A snapshot request gets an ENOSPC error reply, a log line says bankd keeps
# serving from memory, updates and reads keep working, and SIGTERM (whose final snapshot
# cannot be written either) exits 1 with the reason instead of crashing.
set -u
bin=${NPID_BIN:-build}
py=/usr/bin/python3
if ! $py -c 'import zmq, msgpack, numpy' 2>/dev/null; then
    echo "it_bankd_diskfull: /usr/bin/python3 lacks zmq, msgpack or numpy" >&2
    exit 77
fi
tmp=$(mktemp -d)
pid=
mounted=
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    [ -n "$mounted" ] && umount "$tmp/full"
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
mkdir "$tmp/full"
if ! mount -t tmpfs -o size=1m tmpfs "$tmp/full" 2>/dev/null; then
    echo "it_bankd_diskfull: cannot mount a tmpfs here (not root or no CAP_SYS_ADMIN)" >&2
    exit 77
fi
mounted=1
ep=ipc://$tmp/bankd.sock
"$bin/npid-bankd" --bind "$ep" --dir "$tmp/full" --snapshot-every 0 2>"$tmp/bankd.log" &
pid=$!
timeout 30 $py - "$ep" <<'PY'
import sys, zmq, msgpack, numpy as np
s = zmq.Context().socket(zmq.DEALER); s.setsockopt(zmq.LINGER, 0); s.connect(sys.argv[1])
seq = 0
def call(op, **kw):
    global seq
    seq += 1
    s.send(msgpack.packb(dict(v=1, op=op, cid="df", seq=seq, **kw)))
    assert s.poll(10000), "no reply to " + op
    r = msgpack.unpackb(s.recv())
    assert r["seq"] == seq, r
    return r
r = call("init", rows=20000, dim=32, seed=1, run="df")           # 2.8 MB snapshot > 1 MiB
assert r["ok"], r
r = call("snapshot")
assert not r["ok"] and r["err"] == "ENOSPC" and "space" in r["msg"], r
f = np.ones((2, 32), "<f4")
r = call("update", idx=np.array([0, 5], "<u4").tobytes(), feat=f.tobytes(), momentum=0.5)
assert r["ok"] and r["step"] == 1, r
rows = np.frombuffer(call("get", start=5, count=1)["rows"], "<f4")
assert abs(np.linalg.norm(rows) - 1) < 1e-5, rows
r = call("info")
assert r["ok"] and r["step"] == 1, r
PY
rc=$?
if [ $rc -ne 0 ]; then
    echo "it_bankd_diskfull: client checks failed; bankd log:" >&2
    cat "$tmp/bankd.log" >&2
    exit 1
fi
grep -q "still serving from memory" "$tmp/bankd.log" || { echo "it_bankd_diskfull: no disk-full log line" >&2; exit 1; }
kill -TERM "$pid"
i=0
while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
wait "$pid"
st=$?
pid=
[ $st -eq 1 ] || { echo "it_bankd_diskfull: bankd exited $st, expected 1" >&2; cat "$tmp/bankd.log" >&2; exit 1; }
grep -q "final snapshot failed" "$tmp/bankd.log" || { echo "it_bankd_diskfull: no final-snapshot log line" >&2; exit 1; }
[ ! -e "$tmp/full/bank.snap.tmp" ] || { echo "it_bankd_diskfull: temp file left behind" >&2; exit 1; }
exit 0
