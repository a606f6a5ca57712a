#!/bin/sh
# Hostile input against a real npid-bankd (issue 21), every reply decoded by a strict msgpack
# client (Python msgpack, raw=False: a str that is not UTF-8 fails the test):
# - snapshot / restore names outside [A-Za-z0-9_-]{1,64} starting with a letter or digit
#   (".", "..", "...", "a.b", bytes that are not UTF-8) get EINVAL and write nothing;
# - set / update with a subnormal, NaN, +-Inf value, a -0.0 row or a row of norm 1e-30 get
#   EINVAL and change nothing;
# - --max-bytes: an init of a bank larger than it gets ENOMEM, with no bank and with one
#   (which keeps serving); --help documents the flag and its default, a quarter of RAM; a
#   snapshot larger than it stops bankd at start-up, before its payload is read;
# - request bytes in error messages and log lines are escaped (\xNN): an op, a cid, a run and
#   a manifest that are not ASCII; the log file is valid UTF-8;
# - no sample reply is larger than --max-frame (its neg_idx counted): ERANGE instead.
set -u
bin=${NPID_BIN:-build}
py=/usr/bin/python3
if ! $py -c 'import zmq, msgpack, numpy' 2>/dev/null; then
    echo "it_bankd_hostile: /usr/bin/python3 lacks zmq, msgpack or numpy" >&2
    exit 77
fi
tmp=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
fail() { echo "it_bankd_hostile: $*" >&2; exit 1; }

failed=""
# --help: the flag, and its default is a quarter of physical memory
"$bin/npid-bankd" --help >"$tmp/help" || fail "--help exited $?"
$py - "$tmp/help" <<'PY' || failed="$failed help"
import os, re, sys
lines = [l for l in open(sys.argv[1]) if "--max-bytes" in l]
assert lines, "--help does not mention --max-bytes"
got = int(re.search(r"\[default (\d+)\]", lines[0]).group(1))
want = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 4
assert got == want, "--max-bytes default %d, a quarter of RAM is %d" % (got, want)
PY

# start NAME ARGS...: a bankd on ipc://$tmp/NAME.sock logging to $tmp/NAME.log; sets $pid
start() {
    n=$1; shift
    "$bin/npid-bankd" --bind "ipc://$tmp/$n.sock" --snapshot-every 0 "$@" 2>"$tmp/$n.log" &
    pid=$!
}
# stop NAME: SIGTERM, must exit 0
stop() {
    kill -TERM "$pid" 2>/dev/null
    i=0
    while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    wait "$pid"
    st=$?
    pid=
    [ $st -eq 0 ] || { echo "it_bankd_hostile: bankd $1 exited $st" >&2; tail -5 "$tmp/$1.log" >&2; failed="$failed stop-$1"; }
}

# the client: every reply decoded strictly; each section named on argv runs, a failed one is
# reported and the others still run; exit 1 when any failed
cat >"$tmp/client.py" <<'PY'
import os, sys, traceback, msgpack, numpy as np, zmq
ep, snapdir, sections = sys.argv[1], sys.argv[2], sys.argv[3:]
s = zmq.Context().socket(zmq.DEALER)
s.setsockopt(zmq.LINGER, 0)
s.connect(ep)
seq = 1000

def send(req, raw_str=False):
    """Sends one map; with raw_str, bytes values travel as msgpack str (possibly not UTF-8)."""
    s.send(msgpack.packb(req, use_bin_type=not raw_str))
    assert s.poll(10000), "no reply to %r" % (req,)
    rep = msgpack.unpackb(s.recv(), raw=False)   # strict: a str that is not UTF-8 raises
    assert rep["v"] == 1, rep
    return rep

def call(op, raw_str=False, cid="hostile", **kw):
    global seq
    seq += 1
    rep = send(dict(v=1, op=op, cid=cid, seq=seq, **kw), raw_str)
    assert rep.get("seq") == seq, (rep, seq)
    return rep

def err(rep, code, what):
    assert not rep["ok"] and rep["err"] == code, "%s: want %s, got %r" % (what, code, rep)
    assert all(32 <= ord(c) < 127 for c in rep["msg"]), "%s: msg not ASCII: %r" % (what, rep)
    return rep["msg"]

MAN = "m-" + "\u00e9" * 60

def ensure_bank():
    rep = call("init", rows=1000, dim=16, seed=3, run="hostile", manifest=MAN)
    assert rep["ok"], rep

def bank():
    rep = call("get", start=0, count=1000)
    assert rep["ok"], rep
    return np.frombuffer(rep["rows"], "<f4").reshape(1000, 16).copy()

def max_bytes():
    """bankd runs with --max-bytes 2000000 and no bank."""
    m = err(call("init", rows=100000, dim=64), "ENOMEM", "init over --max-bytes")
    assert "--max-bytes 2000000" in m, m
    err(call("info"), "ENOBANK", "info after a refused init")
    err(call("init", rows=2**32 - 1, dim=65536), "ENOMEM", "init of a petabyte")
    rep = call("init", rows=1000, dim=16, seed=3)
    assert rep["ok"] and rep["created"], rep
    m = err(call("init", rows=100000, dim=64), "ENOMEM", "init over --max-bytes with a bank")
    assert "unchanged" in m, m
    info = call("info")
    assert info["ok"] and info["rows"] == 1000 and info["dim"] == 16, info
    rep = call("sample", k=8, pos=np.array([1, 2], "<u4").tobytes())
    assert rep["ok"] and len(rep["neg"]) == 8 * 16 * 4, rep
    err(call("init", rows=1001, dim=16), "EMISMATCH", "init of another (small) shape")

def frame():
    """bankd runs with --max-frame 65536: no reply may be larger, neg_idx counted."""
    rep = call("init", rows=1000, dim=16, seed=3)
    assert rep["ok"], rep
    # 1000 rows of 64 bytes fit in 65536 without their indices, not with them
    global seq
    seq += 1
    s.send(msgpack.packb(dict(v=1, op="sample", cid="hostile", seq=seq, k=1000, pos=b"")))
    assert s.poll(10000), "no reply to the large sample"
    raw = s.recv()
    rep = msgpack.unpackb(raw, raw=False)
    assert len(raw) <= 65536, "a %d-byte reply over --max-frame 65536: %r" % (len(raw), rep.get("ok"))
    err(rep, "ERANGE", "sample over --max-frame")
    rep = call("sample", k=900, pos=b"")
    assert rep["ok"] and len(rep["neg"]) == 900 * 64, rep

def values():
    """The bad row is the last of three: nothing is written, the step does not move."""
    ensure_bank()
    before, step0 = bank(), call("info")["step"]
    good = np.random.default_rng(1).standard_normal((3, 16)).astype("<f4")
    idx = np.array([4, 5, 6], "<u4").tobytes()
    cases = [("one subnormal", 15, 1e-40), ("all subnormal", None, 1e-39), ("NaN", 3, "nan"),
             ("+Inf", 0, "inf"), ("-Inf", 9, "-inf"), ("-0.0 everywhere", None, -0.0),
             ("norm 1e-30", 7, 1e-30)]
    for what, j, x in cases:
        f = good.copy()
        if j is None:
            f[2, :] = np.float32(x)
        else:
            if what.startswith("norm"):
                f[2, :] = 0
            f[2, j] = np.float32(x)
        err(call("set", idx=idx, feat=f.tobytes()), "EINVAL", "set with " + what)
        err(call("update", idx=idx, feat=f.tobytes(), momentum=0.5), "EINVAL",
            "update with " + what)
    assert np.array_equal(bank(), before), "a rejected write changed the bank"
    assert call("info")["step"] == step0, "a rejected write advanced the step"
    rep = call("set", idx=idx, feat=good.tobytes())
    assert rep["ok"] and rep["step"] == step0 + 1, rep
    after = bank()
    assert np.all(np.isfinite(after)), "non-finite rows"
    assert np.allclose(np.linalg.norm(after[4:7], axis=1), 1, atol=1e-6), after[4:7]

def names():
    """Bad names: EINVAL, no file written; a good one works."""
    ensure_bank()
    files = sorted(os.listdir(snapdir))
    for name in [".", "..", "...", ".a", "-x", "_x", "a.b", "a/b", "x" * 65, "", b"\xff\xfe",
                 b"a\x00"]:
        raw = isinstance(name, bytes)
        err(call("snapshot", raw_str=raw, name=name), "EINVAL", "snapshot name %r" % (name,))
        err(call("restore", raw_str=raw, name=name, step=0), "EINVAL", "restore name %r" % (name,))
    assert sorted(os.listdir(snapdir)) == files, ("files written", os.listdir(snapdir), files)
    rep = call("snapshot", name="ok_1-A")
    assert rep["ok"] and rep["path"].endswith("/bank-ok_1-A.snap"), rep
    assert os.path.exists(rep["path"]), rep

def strings():
    """Request bytes in messages come back escaped; run and manifest must be UTF-8."""
    ensure_bank()
    m = err(call(b"\xff\xfe", raw_str=True), "EINVAL", "op \\xff\\xfe")
    assert "\\xff\\xfe" in m, m
    err(call("init", raw_str=True, rows=1000, dim=16, run=b"r\xff"), "EINVAL", "run not UTF-8")
    err(call("init", raw_str=True, rows=1000, dim=16, manifest=b"\xc3"), "EINVAL",
        "manifest not UTF-8")
    m = err(call("init", rows=1000, dim=16, manifest="x" + "\u00e9" * 100), "EMISMATCH",
            "another manifest")
    assert "\\xc3\\xa9" in m, m
    # a cid that is not UTF-8: a retried write is answered from the cache (logged escaped)
    global seq
    seq += 1
    req = dict(v=1, op="init", cid=b"\xff\xfe", seq=seq, rows=1000, dim=16)
    for attempt in range(2):
        rep = send(req, raw_str=True)
        assert rep["ok"] and rep["seq"] == seq and not rep["created"], rep
    st = call("stats")
    assert st["ok"] and st["cache_hits"] >= 1, st

bad = []
for name in sections:
    try:
        globals()[name]()
        print("it_bankd_hostile: %s: ok" % name, file=sys.stderr)
    except Exception:
        bad.append(name)
        print("it_bankd_hostile: %s: FAILED\n%s" % (name, traceback.format_exc(limit=1)),
              file=sys.stderr)
sys.exit(1 if bad else 0)
PY

start maxb --max-bytes 2000000
timeout 60 $py "$tmp/client.py" "ipc://$tmp/maxb.sock" "$tmp" max_bytes || failed="$failed max_bytes"
stop maxb

start frame --max-frame 65536
timeout 60 $py "$tmp/client.py" "ipc://$tmp/frame.sock" "$tmp" frame || failed="$failed frame"
stop frame

mkdir "$tmp/snap"
start main --dir "$tmp/snap" --log-level debug
timeout 60 $py "$tmp/client.py" "ipc://$tmp/main.sock" "$tmp/snap" values names strings ||
    failed="$failed values/names/strings"
stop main
$py - "$tmp/main.log" <<'PY' || failed="$failed log"
import sys
text = open(sys.argv[1], "rb").read().decode("utf-8")   # strict
assert "from \\xff\\xfe answered from the cache" in text, "no escaped cid in the log"
PY

# a snapshot larger than --max-bytes: bankd refuses to start (exit 1, the file named) and
# leaves the snapshots as they were
ls "$tmp/snap"/*.snap >/dev/null 2>&1 || failed="$failed no-snapshot-after-main"
sum0=$(cat "$tmp/snap"/* | cksum)
timeout 30 "$bin/npid-bankd" --bind "ipc://$tmp/big.sock" --dir "$tmp/snap" --max-bytes 4096 \
    2>"$tmp/big.log"
st=$?
[ $st -eq 1 ] && grep -q "snapshot .*bank.snap holds a .* bank (.* bytes), more than --max-bytes 4096" \
    "$tmp/big.log" && [ "$(cat "$tmp/snap"/* | cksum)" = "$sum0" ] ||
    { echo "it_bankd_hostile: snapshot over --max-bytes: exit $st: $(cat "$tmp/big.log")" >&2; failed="$failed max-bytes-snapshot"; }
[ -z "$failed" ] || fail "failed:$failed"
exit 0
