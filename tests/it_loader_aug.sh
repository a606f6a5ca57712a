#!/bin/sh
# The augmentation override a task carries ("aug", the trainer's --crop-scale, --jitter,
# --gray, --flip, --blur) reaches the loaders, through real processes (npid-consume as
# the trainer, one npid-loader): a train transform overridden to crop=1-1 with no jitter and
# no grayscale is the identity, byte for byte the test transform's output; adding flip=1
# mirrors about half the images (two views then agree for about half of them); an empty
# override and blur=0 are the preset, blur=1 is not; a bad override (an unknown key, a blur
# probability out of [0,1] or not a number) is refused before any task is sent, and the
# trainer refuses a bad --blur with exit 2.
set -u
name=it_loader_aug
. "$(dirname "$0")/lib_consume.sh"

"$bin/npid-loader" synth --out "$tmp/data" --per-class 10 --test-per-class 0 --log-level warn \
    >/dev/null || fail "synth failed"
run() { r=$1; shift; consume_run "$r" 1 "$@"; }
ident="crop=1-1,jitter=0,gray=0"
run test --no-train
run ident --aug "$ident"
run flip --aug "$ident,flip=1" --views 2
run preset
run empty --aug ""
run gray --aug "gray=1"
run blur0 --aug "blur=0"
run blur --aug "blur=1"
run identblur --aug "$ident,blur=1"
crc() { field "$tmp/$1.json" pix_crc; }
[ "$(crc ident)" = "$(crc test)" ] || fail "crop=1-1 without jitter or grayscale is not the identity: $(crc ident) vs $(crc test)"
[ "$(crc flip)" != "$(crc ident)" ] || fail "flip=1 changed nothing"
same=$(field "$tmp/flip.json" views_identical)
[ "$same" -ge 30 ] && [ "$same" -le 70 ] || fail "flip=1: $same of 100 images have equal views (expected about 50)"
[ "$(crc empty)" = "$(crc preset)" ] || fail "an empty override is not the preset"
[ "$(crc gray)" != "$(crc preset)" ] || fail "gray=1 changed nothing"
[ "$(crc blur0)" = "$(crc preset)" ] || fail "blur=0 is not the preset: $(crc blur0) vs $(crc preset)"
[ "$(crc blur)" != "$(crc preset)" ] || fail "blur=1 changed nothing"
[ "$(crc identblur)" != "$(crc ident)" ] || fail "blur=1 on the identity changed nothing"
# bad_aug SPEC MESSAGE: consume refuses --aug SPEC (nonzero exit) saying MESSAGE
bad_aug() {
    "$bin/tools/npid-consume" --data "$tmp/data" --bind "ipc://$tmp/bad.sock" --aug "$1" \
        --timeout-s 10 >"$tmp/bad.json" 2>"$tmp/bad.log"
    rc=$?
    [ $rc -ne 0 ] && grep -q "$2" "$tmp/bad.log" "$tmp/bad.json" || fail "--aug $1: exit $rc, $(cat "$tmp/bad.log")"
}
bad_aug "solarize=1" "unknown key 'solarize'"
bad_aug "blur=-0.5" "blur probability -0.5 not in \[0,1\]"
bad_aug "blur=2" "blur probability 2 not in \[0,1\]"
bad_aug "blur=often" "augmentation 'blur=often': malformed value"
# bad_blur VALUE MESSAGE: npid-trainer --blur VALUE exits 2 saying MESSAGE, before any work
# (the timeout only bounds a trainer that wrongly accepts it and starts training)
bad_blur() {
    timeout -k 5 20 "$bin/npid-trainer" --data "$tmp/data" --run-dir "$tmp/run" --blur "$1" \
        >/dev/null 2>"$tmp/trainer.log"
    rc=$?
    [ $rc -eq 2 ] && grep -q "$2" "$tmp/trainer.log" || fail "npid-trainer --blur $1: exit $rc (expected 2), $(cat "$tmp/trainer.log")"
    [ ! -e "$tmp/run" ] || fail "npid-trainer --blur $1 created its run directory"
}
bad_blur often "augmentation 'blur=often': malformed value"
bad_blur -0.5 "blur probability -0.5 not in \[0,1\]"
bad_blur 2 "blur probability 2 not in \[0,1\]"
echo "it_loader_aug: crop=1-1 is the identity ($(crc ident)), views differ for $((100 - same))/100 under flip=1, empty = blur=0 = preset, blur=1 differs, bad refused (--blur 2: exit 2, $(head -n 1 "$tmp/trainer.log"))"
