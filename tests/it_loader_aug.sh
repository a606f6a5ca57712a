#!/bin/sh
# The augmentation override a task carries ("aug", the trainer's --crop-scale, --jitter,
# --gray, --flip) reaches the loaders, through real processes (npid-loader consume as the
# trainer, one npid-loader): a train transform overridden to crop=1-1 with no jitter and no
# grayscale is the identity, byte for byte the test transform's output; adding flip=1 mirrors
# about half the images (two views then agree for about half of them); an empty override is
# the preset; a bad override is refused before any task is sent.
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
crc() { field "$tmp/$1.json" pix_crc; }
[ "$(crc ident)" = "$(crc test)" ] || fail "crop=1-1 without jitter or grayscale is not the identity: $(crc ident) vs $(crc test)"
[ "$(crc flip)" != "$(crc ident)" ] || fail "flip=1 changed nothing"
same=$(field "$tmp/flip.json" views_identical)
[ "$same" -ge 30 ] && [ "$same" -le 70 ] || fail "flip=1: $same of 100 images have equal views (expected about 50)"
[ "$(crc empty)" = "$(crc preset)" ] || fail "an empty override is not the preset"
[ "$(crc gray)" != "$(crc preset)" ] || fail "gray=1 changed nothing"
"$bin/npid-loader" consume --data "$tmp/data" --bind "ipc://$tmp/bad.sock" --aug "blur=1" \
    >"$tmp/bad.json" 2>"$tmp/bad.log"
rc=$?
[ $rc -ne 0 ] && grep -q "unknown key 'blur'" "$tmp/bad.log" "$tmp/bad.json" || fail "--aug blur=1: exit $rc, $(cat "$tmp/bad.log")"
echo "it_loader_aug: crop=1-1 is the identity ($(crc ident)), views differ for $((100 - same))/100 under flip=1, empty = preset, bad refused"
