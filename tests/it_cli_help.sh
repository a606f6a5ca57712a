#!/bin/sh
# What --help and a usage error show, for every program: the help on stdout and nothing on
# stderr (no log line before it), booleans as true/false, the trainer's defaults those of the
# preset in force (--preset or NPID_PRESET), endpoint defaults following NPID_PORT_BASE, and a
# bad NPID_PORT_BASE or --preset refused with exit 2 and a one-line reason.
set -u
bin=${NPID_BIN:?NPID_BIN not set}
tmp=$(mktemp -d /tmp/npid-it-help.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "it_cli_help: FAIL: $*" >&2; exit 1; }
# run STATUS CMD...: runs CMD (bounded), output in $tmp/out and $tmp/err, checks the status
run() {
    want=$1; shift
    timeout 20 "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?
    [ $rc -eq "$want" ] || fail "'$*' exit $rc, expected $want: $(head -3 "$tmp/err")"
}
has() { grep -q -- "$1" "$tmp/out" || fail "$2: help lacks '$1'"; }
# the option's help line: "--FLAG" at the start of a line, then its text
line() { grep -- "^  --$1[ <]" "$tmp/out"; }

unset NPID_PORT_BASE NPID_PRESET NPID_BANK NPID_TASKS NPID_EVENTS
for p in trainer bankd loader evald; do
    run 0 "$bin/npid-$p" --help
    grep -q "^usage: npid-$p" "$tmp/out" || fail "npid-$p --help: no usage line on stdout"
    [ ! -s "$tmp/err" ] || fail "npid-$p --help wrote to stderr: $(head -2 "$tmp/err")"
    # a usage error is one line of reason, no log line (the OpenBLAS kernel is logged later)
    run 2 "$bin/npid-$p" --no-such-flag
    [ "$(wc -l <"$tmp/err")" -le 2 ] || fail "npid-$p usage error is not short: $(cat "$tmp/err")"
    ! grep -qi "openblas" "$tmp/err" || fail "npid-$p logs before reporting a usage error"
done

# the trainer's defaults: the default preset's, then reference's, by flag and by environment
run 0 "$bin/npid-trainer" --help
has "defaults of preset cifar" "trainer"
line model | grep -q "\[default resnet20\]" || fail "cifar preset: model default not resnet20: $(line model)"
line center-init | grep -q "\[default true\]" || fail "booleans print true/false: $(line center-init)"
line exclude-pos | grep -q "\[default false\]" || fail "booleans print true/false: $(line exclude-pos)"
line resume | grep -q "true|false|auto" || fail "--resume auto is not shown: $(line resume)"
for how in flag env; do
    if [ $how = flag ]; then run 0 "$bin/npid-trainer" --preset reference --help
    else run 0 env NPID_PRESET=reference "$bin/npid-trainer" --help; fi
    has "defaults of preset reference" "reference by $how"
    line model | grep -q "\[default resnet18\]" || fail "reference ($how): $(line model)"
    line nce-k | grep -q "\[default 4096\]" || fail "reference ($how): $(line nce-k)"
    line nce-t | grep -q "\[default 0.1\]" || fail "reference ($how): $(line nce-t)"
    line center-init | grep -q "\[default false\]" || fail "reference ($how): $(line center-init)"
done
# the augmentation flags: one value each, checked before anything starts
for bad in "--crop-scale 0.5|malformed value" "--crop-scale 0.5-0.1|crop scale range" \
           "--flip yes|expected true or false" "--jitter 1.5|colour jitter" "--gray 2|grayscale probability" \
           "--crop-scale 0.1-1,flip=1|without ',' or '='"; do
    args=${bad%%|*}; msg=${bad#*|}
    run 2 "$bin/npid-trainer" --data "$tmp" $args
    grep -q -- "$msg" "$tmp/err" || fail "trainer $args: $(cat "$tmp/err")"
done
run 2 "$bin/npid-trainer" --preset bogus --help
grep -q "expected reference, cifar or imagenet" "$tmp/err" || fail "--preset bogus: $(cat "$tmp/err")"

# endpoints follow NPID_PORT_BASE: bank base, tasks base + 1, events base + 2
export NPID_PORT_BASE=30100
run 0 "$bin/npid-trainer" --help
line bank | grep -q "127.0.0.1:30100\]" || fail "trainer --bank: $(line bank)"
line tasks | grep -q "127.0.0.1:30101\]" || fail "trainer --tasks: $(line tasks)"
line events | grep -q "127.0.0.1:30102\]" || fail "trainer --events: $(line events)"
run 0 "$bin/npid-bankd" --help
line bind | grep -q "127.0.0.1:30100\]" || fail "bankd --bind: $(line bind)"
run 0 "$bin/npid-loader" run --help
line tasks | grep -q "127.0.0.1:30101\]" || fail "loader --tasks: $(line tasks)"
run 0 "$bin/npid-evald" --help
line bank | grep -q "127.0.0.1:30100\]" || fail "evald --bank: $(line bank)"
line events | grep -q "127.0.0.1:30102\]" || fail "evald --events: $(line events)"
for bad in abc 70000 0; do
    NPID_PORT_BASE=$bad
    for p in trainer bankd "loader run" evald; do
        run 2 $(echo "$bin/npid-$p") --help
        grep -q "NPID_PORT_BASE=$bad: expected a port number" "$tmp/err" ||
            fail "npid-$p with NPID_PORT_BASE=$bad: $(cat "$tmp/err")"
    done
done
echo "it_cli_help: help on stdout without log lines, preset defaults, true/false, NPID_PORT_BASE" >&2
exit 0
