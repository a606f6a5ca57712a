#!/bin/sh
# The bad-image fixtures (tests/fixtures/bad-images/mkbad.c, 30+ files) inside a real dataset:
# `npid-loader check` reports each broken one with its path and specific reason and counts
# them; then a loader serves an epoch of the whole dataset: every bad image is substituted,
# flagged and counted, its path and reason logged, and the epoch completes exactly once.
set -u
bin=${NPID_BIN:?NPID_BIN not set}
[ -x "$bin/tools/mkbad-images" ] || { echo "it_loader_badimages: $bin/tools/mkbad-images not built (make check builds it)" >&2; exit 77; }
tmp=$(mktemp -d /tmp/npid-it-bad.XXXXXX)
pids=""
cleanup() { for p in $pids; do kill -9 "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 1' INT TERM
fail() { echo "it_loader_badimages: $*" >&2; tail -n 5 "$tmp"/*.log >&2; exit 1; }
field() { sed -n "s/.*\"$2\": \"\{0,1\}\([^,\"}]*\).*/\1/p" "$1"; }

"$bin/npid-loader" synth --out "$tmp/data" --per-class 10 --test-per-class 0 --log-level warn >/dev/null || fail "synth"
"$bin/tools/mkbad-images" "$tmp/data/train/zz_bad" >"$tmp/expect.tsv" || fail "mkbad-images"
nfix=$(wc -l <"$tmp/expect.tsv")
[ "$nfix" -ge 30 ] || fail "only $nfix fixtures"

timeout 60 "$bin/npid-loader" check --data "$tmp/data" >"$tmp/check.out" 2>"$tmp/check.log" || fail "check failed"
summary=$(tail -n 1 "$tmp/check.out")
[ "$(echo "$summary" | sed -n 's/.*"images": \([0-9]*\).*/\1/p')" = $((100 + nfix)) ] || fail "wrong image count: $summary"
nbad=$(echo "$summary" | sed -n 's/.*"bad": \([0-9]*\).*/\1/p')
# every fixture with an expected reason is reported with it; "decodes" ones are not reported
tab=$(printf '\t')
while IFS="$tab" read -r name expect; do
    line=$(grep "\"path\": \"train/zz_bad/$name\"" "$tmp/check.out")
    case "$expect" in
        "(decodes)") [ -z "$line" ] || fail "$name should decode: $line" ;;
        "(either)") ;;
        *) echo "$line" | grep -q "$expect" || fail "$name: expected reason '$expect', got '$line'" ;;
    esac
done <"$tmp/expect.tsv"
[ "$nbad" -ge 20 ] || fail "only $nbad bad images reported"
[ "$(grep -c '"reason"' "$tmp/check.out")" = "$nbad" ] || fail "count and reported lines differ"

# an epoch through a real loader: substitutes, flags, counts, logs
ep="ipc://$tmp/t.sock"
"$bin/npid-loader" consume --data "$tmp/data" --bind "$ep" --epochs 1 --batch 16 --timeout-s 60 \
    >"$tmp/c.json" 2>"$tmp/c.log" &
cpid=$!; pids="$pids $cpid"
"$bin/npid-loader" --data "$tmp/data" --tasks "$ep" 2>"$tmp/loader.log" &
lpid=$!; pids="$pids $lpid"
wait "$cpid" || fail "consume failed: $(cat "$tmp/c.json")"
grep -q '"ok": true' "$tmp/c.json" || fail "not ok: $(cat "$tmp/c.json")"
[ "$(field "$tmp/c.json" bad_images)" = "$nbad" ] || fail "bad_images $(field "$tmp/c.json" bad_images), check said $nbad"
kill -0 "$lpid" 2>/dev/null || fail "the loader died"
grep -q "bad image substituted: train/zz_bad/many_scans.jpg: too many scans" "$tmp/loader.log" || fail "loader did not log path and reason"
echo "it_loader_badimages: ok: $nbad of $nfix fixtures rejected with reasons, epoch complete" >&2
exit 0
