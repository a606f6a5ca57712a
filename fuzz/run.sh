#!/bin/sh
# Runs one libFuzzer target for a bounded time and says what happened (mk/fuzz.mk).
#
# Usage: fuzz/run.sh DIR NAME SECONDS MAX_LEN
#   DIR/fuzz_NAME  the target; DIR/corpus-NAME  its corpus (created; new inputs go there, kept
#   across runs); DIR/seed-NAME  the seeds (read only); DIR/NAME.log  libFuzzer's whole output.
#
# Prints one line: "fuzz_NAME: 60 s, 1234567 runs (20576/s), cov 456 ft 1234, corpus 321
# inputs: no crash". When libFuzzer stops on a finding (crash, sanitizer report, leak,
# timeout, out-of-memory) it exits non-zero; this prints the report, where the input was
# saved (DIR/NAME-crash-<sha1>, -leak-, -timeout-, -oom-) and how to replay it, and exits 1.
set -u
[ $# -eq 4 ] || { echo "usage: fuzz/run.sh DIR NAME SECONDS MAX_LEN" >&2; exit 2; }
dir=$1 name=$2 secs=$3 max_len=$4
bin=$dir/fuzz_$name log=$dir/$name.log
[ -x "$bin" ] || { echo "fuzz_$name: $bin not built" >&2; exit 1; }
mkdir -p "$dir/corpus-$name" "$dir/seed-$name" || exit 1
"$bin" -max_total_time="$secs" -max_len="$max_len" -timeout=10 -rss_limit_mb=1024 \
    -print_final_stats=1 -artifact_prefix="$dir/$name-" "$dir/corpus-$name" "$dir/seed-$name" \
    >"$log" 2>&1
rc=$?
# the last status line: "#1234567 DONE cov: 456 ft: 1234 corp: 321/45Kb ... exec/s: 20576 ..."
last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
field() { v=$(echo "$last" | sed -n "s/.* $1: \([0-9]*\).*/\1/p"); echo "${v:-?}"; }
runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
corp=$(echo "$last" | sed -n 's/.* corp: \([0-9]*\).*/\1/p')
stats="${runs:-?} runs (${rate:-?}/s), cov $(field cov) ft $(field ft), corpus ${corp:-?} inputs"
if [ $rc -eq 0 ]; then
    echo "fuzz_$name: $secs s, $stats: no crash"
    exit 0
fi
saved=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
echo "fuzz_$name: FAILED (libFuzzer exit $rc) after $stats; its report:" >&2
# from the report's first line (a sanitizer, a failed check, libFuzzer's own), without
# ASan's shadow-memory dump, at most 60 lines
start=$(grep -n -m 1 -E 'ERROR: |runtime error:|check failed|^==[0-9]+==' "$log" | cut -d: -f1)
shadow='^(=>| +)0x[0-9a-f]+:|^Shadow byte|^ +[A-Z][A-Za-z ]+: +([0-9a-f]{2} ?)+$'
sed -n "${start:-1},\$p" "$log" | grep -v -E "$shadow|^#[0-9]+[[:space:]]|^INFO:" | head -n 60 >&2
if [ -n "$saved" ]; then
    echo "fuzz_$name: the input is saved as $saved; replay it with: $bin $saved" >&2
else
    echo "fuzz_$name: no input was saved; the whole output is in $log" >&2
fi
exit 1
