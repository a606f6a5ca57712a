#!/bin/sh
# The bad-image fixtures (tests/fixtures/bad-images/mkbad.c, 60+ JPEG, PNG and WebP files)
# inside a real dataset whose good images mix the three formats (two synth classes re-encoded
# by Pillow as PNG of several modes and as lossy and lossless WebP; the fixtures' valid PNG
# and WebP files; a PNG named .jpg and a JPEG named .png): `npid-loader check` reports each
# broken one with its path and specific reason and counts them, and no good image of any
# format; then a loader serves an epoch of the whole dataset: every bad image is substituted,
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
[ "$nfix" -ge 60 ] || fail "only $nfix fixtures"
# class circle as PNG (RGB, palette, grey, RGBA, grey+alpha in turn), class cross as WebP
# (lossy, lossless, lossy with alpha): same names but the extension, the JPEGs removed
if /usr/bin/python3 -c "import PIL.WebPImagePlugin" 2>/dev/null; then
    /usr/bin/python3 - "$tmp/data/train" <<'PY' || fail "re-encoding with Pillow"
import glob, os, sys
from PIL import Image
d = sys.argv[1]
for k, f in enumerate(sorted(glob.glob(d + "/circle/*.jpg"))):
    im = Image.open(f).convert("RGB")
    im = [im, im.convert("P", palette=Image.ADAPTIVE), im.convert("L"), im.convert("RGBA"),
          im.convert("LA")][k % 5]
    im.save(f[:-4] + ".png")
    os.remove(f)
for k, f in enumerate(sorted(glob.glob(d + "/cross/*.jpg"))):
    im = Image.open(f).convert("RGB")
    if k % 3 == 0:
        im.save(f[:-4] + ".webp", quality=75)
    elif k % 3 == 1:
        im.save(f[:-4] + ".webp", lossless=True)
    else:
        im.convert("RGBA").save(f[:-4] + ".webp", quality=60)
    os.remove(f)
PY
    [ "$(ls "$tmp/data/train/circle"/*.png | wc -l)" = 10 ] || fail "circle: not 10 PNGs"
    [ "$(ls "$tmp/data/train/cross"/*.webp | wc -l)" = 10 ] || fail "cross: not 10 WebPs"
    mixed="20 synth images as PNG and WebP"
else
    echo "it_loader_badimages: /usr/bin/python3 without PIL: synth images stay JPEG (the fixtures still mix formats)" >&2
    mixed="synth images all JPEG (no PIL)"
fi

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
[ "$nbad" -ge 45 ] || fail "only $nbad bad images reported"
# no good image of any format is reported
grep '"reason"' "$tmp/check.out" | grep -v '"path": "train/zz_bad/' && fail "good images reported bad"
for f in png_crc_idat.png webp_riff_too_big.webp png_huge.png webp_trunc_50.webp; do
    grep -q "\"path\": \"train/zz_bad/$f\"" "$tmp/check.out" || fail "$f not reported"
done
[ "$(grep -c '"reason"' "$tmp/check.out")" = "$nbad" ] || fail "count and reported lines differ"

# an epoch through a real loader: substitutes, flags, counts, logs
ep="ipc://$tmp/t.sock"
"$bin/tools/npid-consume" --data "$tmp/data" --bind "$ep" --epochs 1 --batch 16 --timeout-s 60 \
    >"$tmp/c.json" 2>"$tmp/c.log" &
cpid=$!; pids="$pids $cpid"
"$bin/npid-loader" --data "$tmp/data" --tasks "$ep" 2>"$tmp/loader.log" &
lpid=$!; pids="$pids $lpid"
wait "$cpid" || fail "consume failed: $(cat "$tmp/c.json")"
grep -q '"ok": true' "$tmp/c.json" || fail "not ok: $(cat "$tmp/c.json")"
[ "$(field "$tmp/c.json" bad_images)" = "$nbad" ] || fail "bad_images $(field "$tmp/c.json" bad_images), check said $nbad"
kill -0 "$lpid" 2>/dev/null || fail "the loader died"
grep -q "bad image substituted: train/zz_bad/many_scans.jpg: too many scans" "$tmp/loader.log" || fail "loader did not log path and reason"
grep -q "bad image substituted: train/zz_bad/png_crc_idat.png: corrupt PNG data: IDAT: CRC error" "$tmp/loader.log" || fail "loader did not log a PNG's path and reason"
grep -q "bad image substituted: train/zz_bad/webp_trunc_50.webp: truncated WebP" "$tmp/loader.log" || fail "loader did not log a WebP's path and reason"
echo "it_loader_badimages: ok: $nbad of $nfix fixtures rejected with reasons, $mixed, epoch complete" >&2
exit 0
