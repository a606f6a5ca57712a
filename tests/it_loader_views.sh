#!/bin/sh
# Two views per image through real processes (npid-consume as the trainer, one
# npid-loader): with --views 2, view 0 is byte-identical to the one-view run (same pix_crc:
# the one-view seed derivation is unchanged), the second views differ from the first for
# every image under the random train transform, and equal them under the deterministic test
# transform (both views are the same source image).
set -u
name=it_loader_views
. "$(dirname "$0")/lib_consume.sh"

"$bin/npid-loader" synth --out "$tmp/data" --per-class 10 --test-per-class 0 --log-level warn \
    >/dev/null || fail "synth failed"
run() { r=$1; shift; consume_run "$r" 2 "$@"; }
run one
run two --views 2
run test2 --views 2 --no-train
"$bin/tools/npid-consume" --data "$tmp/data" --views 3 2>"$tmp/usage.log" >/dev/null
[ $? -eq 2 ] || fail "--views 3 should be a usage error"

[ "$(field "$tmp/one.json" pix_crc)" = "$(field "$tmp/two.json" pix_crc)" ] ||
    fail "view 0 differs from the one-view run: $(field "$tmp/one.json" pix_crc) vs $(field "$tmp/two.json" pix_crc)"
[ "$(field "$tmp/two.json" view1_crc)" != "$(field "$tmp/two.json" pix_crc)" ] || fail "view 1 == view 0"
[ "$(field "$tmp/two.json" views_identical)" = 0 ] ||
    fail "$(field "$tmp/two.json" views_identical) images have two identical train views"
[ "$(field "$tmp/test2.json" views_identical)" = 200 ] ||
    fail "test transform: $(field "$tmp/test2.json" views_identical) of 200 images have equal views"
echo "it_loader_views: view 0 == one-view run ($(field "$tmp/one.json" pix_crc)), 200/200 second train views differ, test-transform views equal"
