#!/bin/sh
# npid-loader's command-line manners, and those of the stand-in trainer tools/npid-consume:
# --help on stdout with exit 0, usage errors exit 2, runtime failures exit 1 with a one-line
# reason, non-loopback binds refused.
set -u
bin=${NPID_BIN:?NPID_BIN not set}
L="$bin/npid-loader"
C="$bin/tools/npid-consume"
tmp=$(mktemp -d /tmp/npid-it-cli.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "it_loader_cli: $*" >&2; exit 1; }
expect() { # expect STATUS PATTERN-IN-OUTPUT cmd...
    want=$1; pat=$2; shift 2
    timeout 20 "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?
    [ $rc -eq "$want" ] || fail "'$*' exit $rc, expected $want: $(cat "$tmp/err")"
    [ -z "$pat" ] || grep -q -- "$pat" "$tmp/out" "$tmp/err" || fail "'$*' output lacks '$pat'"
}
expect 0 "usage" "$L" --help
grep -q usage "$tmp/out" || fail "--help not on stdout"
expect 0 "--tasks" "$L" run --help
expect 0 "--per-class" "$L" synth --help
expect 0 "--bind" "$C" --help
expect 0 "--strict" "$L" check --help
expect 2 "unknown subcommand" "$L" frobnicate
expect 2 "" "$L" --no-such-flag
expect 2 "required" "$L" --tasks "ipc://$tmp/x"
expect 2 "required" "$L" synth
expect 2 "" "$L" run --capacity 0 --data "$tmp"
expect 1 "is not a directory" "$L" --data "$tmp/missing" --tasks "ipc://$tmp/x"
expect 1 "neither an ImageFolder" "$L" check --data "$tmp"
[ "$(wc -l <"$tmp/err")" -le 2 ] || fail "runtime failure is not a short reason"
"$L" synth --out "$tmp/d" --per-class 1 --test-per-class 1 --log-level warn >"$tmp/synth.json" || fail "synth"
grep -q '"train": 10' "$tmp/synth.json" || fail "synth summary: $(cat "$tmp/synth.json")"
expect 1 "loopback" "$C" --data "$tmp/d" --bind tcp://10.11.12.13:5558
expect 0 '"bad": 0' "$L" check --data "$tmp/d" --split test
echo "it_loader_cli: ok" >&2
exit 0
