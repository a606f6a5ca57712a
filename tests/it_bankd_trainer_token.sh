#!/bin/sh
# The trainer's write token, with real processes: a fresh run writes RUN_DIR/bank.token
# (mode 0600, 64 hex digits) and its bank takes writes only with it; the run stops at
# --max-steps and resumes with the same token; a second trainer whose run directory has the
# same name elsewhere (so the same run name and manifest: only the token differs) cannot
# write the bank, nor can a client without the token, while one with the file's token can.
# The token appears in no log.
set -u
name=it_bankd_trainer_token
. "$(dirname "$0")/lib_trainer.sh"
$py -c 'import zmq, msgpack' 2>/dev/null || { echo "$name: /usr/bin/python3 lacks zmq or msgpack" >&2; exit 77; }

"$bin/npid-loader" synth --out "$tmp/data" --per-class 20 --test-per-class 2 >/dev/null 2>&1 || fail "synth"
common="--data $tmp/data --model resnet20 --epochs 2 --batch 50 --nce-k 64 --bank-init uniform --no-progress"
start_bg loader "$bin/npid-loader" --data "$tmp/data"
start_bg bankd "$bin/npid-bankd" --bind "$NPID_BANK" --dir "$tmp/bank" --log-level debug

run_trainer() { # run_trainer LOGNAME ARGS...: foreground, bounded
    n=$1; shift
    timeout -k 5 300 "$bin/npid-trainer" $common "$@" >>"$tmp/$n.log" 2>&1
}
bank_info() { "$bin/npid-bankd" ping --bank "$NPID_BANK" --timeout 3; }
bank_step() { bank_info | sed -n 's/.*"step": \([0-9]*\).*/\1/p'; }

run_trainer first --run-dir "$tmp/a/run" --max-steps 3 || fail "the first part of the run"
tf=$tmp/a/run/bank.token
[ -f "$tf" ] && [ ! -L "$tf" ] || fail "no RUN_DIR/bank.token"
[ "$(stat -c %a "$tf")" = 600 ] || fail "bank.token has mode $(stat -c %a "$tf"), not 600"
token=$(cat "$tf")
printf '%s' "$token" | grep -Eqx '[0-9a-f]{64}' || fail "bank.token does not hold 64 hex digits"
grep -q "write token created in $tf" "$tmp/first.log" || fail "the trainer did not say it created the token"
bank_info | grep -q '"has_token": true' || fail "the run's bank takes writes without a token: $(bank_info)"
s1=$(bank_step)
[ "${s1:-0}" -ge 3 ] || fail "bank step ${s1:-none} after 3 training steps"

# another trainer, same run name and data, its own run directory: refused, nothing written
run_trainer second --run-dir "$tmp/b/run" && fail "a second trainer with another run directory trained on the bank"
grep -q "EPERM" "$tmp/second.log" || fail "the second trainer was not refused with EPERM"
run_trainer second2 --run-dir "$tmp/b/run" --resume auto && fail "the second trainer (--resume auto) trained on the bank"
grep -q "EPERM" "$tmp/second2.log" || fail "the second trainer (--resume auto) was not refused with EPERM"
[ "$(bank_step)" = "$s1" ] || fail "the refused trainers changed the bank step ($s1 -> $(bank_step))"
[ -f "$tmp/b/run/bank.token" ] && ! cmp -s "$tf" "$tmp/b/run/bank.token" ||
    fail "the second run directory did not get a token of its own"

# a client without the token is refused; the file's token is the bank's
$py - "$NPID_BANK" "$token" <<'PY' || fail "Python writes against the trainer's bank"
import sys, zmq, msgpack
ep, token = sys.argv[1:3]
s = zmq.Context.instance().socket(zmq.DEALER); s.setsockopt(zmq.LINGER, 0); s.connect(ep)
def call(**req):
    req.update(v=1, cid="py-token", seq=call.seq); call.seq += 1
    s.send(msgpack.packb(req, use_bin_type=True))
    assert s.poll(5000), "no reply"
    return msgpack.unpackb(s.recv(), raw=False)
call.seq = 1
info = call(op="info")
assert info["ok"] and info["has_token"], info
snap = call(op="snapshot", name="py")
assert not snap["ok"] and snap["err"] == "EPERM", snap
snap = call(op="snapshot", name="py", token=token)
assert snap["ok"] and snap["step"] == info["step"], snap
PY

# the resume reads the same token and finishes the run
run_trainer resumed --run-dir "$tmp/a/run" --resume || fail "the resumed run"
grep -q "write token read from $tf" "$tmp/resumed.log" || fail "the resume did not read the token"
[ "$(cat "$tf")" = "$token" ] || fail "the resume changed the token"
grep -q '"type":"end".*"status":"ok"' "$tmp/a/run/metrics.jsonl" || fail "the resumed run did not end ok"
[ "$(bank_step)" -gt "$s1" ] || fail "the resumed run did not write the bank"

for f in "$tmp"/*.log "$tmp"/a/run/metrics.jsonl; do
    ! grep -qF "$token" "$f" || fail "the token appears in $f"
done
echo "$name: token 0600 in RUN_DIR, kept across --resume; another run directory refused with EPERM" >&2
exit 0
