#!/bin/sh
# JPEG decoding at a reduced DCT scale against Pillow/torchvision on real photos: 300-500 px
# JPEGs made from tinyimagenet10 (bench/photos224.py), RandomResizedCrop boxes drawn by
# torchvision (scale 0.08-1) resized to S x S and the ImageNet test transform
# (Resize(256/224 S) + CenterCrop(S)), through tools/npid-pixop's file requests (the
# batcher's decode: image_decode_pick, augment_scale_denom, augment_apply_scaled). Decoded at
# full size, and at 1/1 when the rule picks it, every byte equals Pillow's full decode +
# crop + resize; the denominator is the largest k in {2, 4, 8} with ceil(crop side / k) >=
# S (test: ceil(short side / k) >= 256/224 S), computed here; at k > 1 each image's mean
# absolute difference from Pillow stays below 1.5, 3 and 6 levels at 1/2, 1/4 and 1/8 and
# below 1 over all scaled decodes (measured: the last line; docs/formats.md, "Decoding").
# Output sizes 224, 112, 64 and 32 px, so that every denominator occurs. Skips without
# Pillow/torchvision or without tinyimagenet10 in the cache.
set -u
bin=${NPID_BIN:?NPID_BIN not set}
root=${NPID_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
/usr/bin/python3 -c "import PIL, numpy, torchvision" 2>/dev/null || {
    echo "it_loader_dct_pil: /usr/bin/python3 without PIL/numpy/torchvision; skipping" >&2
    exit 77; }
tmp=$(mktemp -d /tmp/npid-it-dct-pil.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 "$root/bench/photos224.py" --out "$tmp/photos" --per-class 8 >/dev/null
rc=$?
[ $rc -eq 77 ] && { echo "it_loader_dct_pil: no tinyimagenet10 photos to upscale; skipping" >&2
                    exit 77; }
[ $rc -eq 0 ] || { echo "it_loader_dct_pil: FAIL: bench/photos224.py exit $rc" >&2; exit 1; }
NPID_PIXOP="$bin/tools/npid-pixop" PHOTOS="$tmp/photos" /usr/bin/python3 - <<'PY'
import glob, os, subprocess, sys
import numpy as np
import torch
from PIL import Image
import torchvision.transforms as T
import torchvision.transforms.functional as F

proc = subprocess.Popen([os.environ["NPID_PIXOP"]], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
files = sorted(glob.glob(os.environ["PHOTOS"] + "/train/*/*.jpg"))
torch.manual_seed(20261207)

def req(line, S):
    proc.stdin.write((line + "\n").encode())
    proc.stdin.flush()
    out = proc.stdout.read(S * S * 3 + 1)
    if len(out) != S * S * 3 + 1:
        sys.exit("it_loader_dct_pil: FAIL: npid-pixop '%s' failed (exit %s)" % (line, proc.poll()))
    return np.frombuffer(out[:-1], np.uint8).astype(np.int32), out[-1]

def rule(sides, need):
    k = 1
    for d in (2, 4, 8):
        if all(-(-s // d) >= need for s in sides):
            k = d
    return k

# per image, by denominator: what a coarser scale's own filter costs (worst measured: 1.0, 2.4, 5.0)
LIMIT = {2: 1.5, 4: 3.0, 8: 6.0}
bad, scaled, seen, per_k = [], [], {}, {}
for p in files:
    im = Image.open(p).convert("RGB")
    W, H = im.size
    for S in (224, 112, 64, 32):
        reqs = []
        for _ in range(3):
            i, j, h, w = T.RandomResizedCrop.get_params(im, (0.08, 1.0), (3 / 4, 4 / 3))
            ref = F.resized_crop(im, i, j, h, w, [S, S], T.InterpolationMode.BILINEAR)
            reqs.append(("crop %d %d %d %d %d" % (j, i, w, h, S), ref, rule((w, h), S)))
        R = S * 256 // 224
        ref = T.CenterCrop(S)(T.Resize(R)(im))
        reqs.append(("test imagenet %d" % S, ref, rule((min(W, H),), R)))
        for what, ref, want in reqs:
            ref = np.asarray(ref).reshape(-1).astype(np.int32)
            for dct in (0, 1):
                got, k = req("file %s %d %s" % (p, dct, what), S)
                tag = "%s %dx%d %s dct %d" % (os.path.basename(p), W, H, what, dct)
                if k != (want if dct else 1):
                    bad.append("%s: denominator %d, want %d" % (tag, k, want if dct else 1))
                    continue
                seen[k] = seen.get(k, 0) + 1
                d = np.abs(got - ref)
                if k == 1 and d.max() != 0:
                    bad.append("%s: %d bytes differ from Pillow at full size"
                               % (tag, (d != 0).sum()))
                if k > 1:
                    scaled.append((d.mean(), d.max()))
                    per_k.setdefault(k, []).append(d.mean())
                    if d.mean() >= LIMIT[k]:
                        bad.append("%s: mean |diff| %.2f at 1/%d" % (tag, d.mean(), k))
a = np.array(scaled) if scaled else np.zeros((1, 2))
if not scaled or len(seen) < 4:
    bad.append("denominators seen %s: expected 1, 2, 4 and 8" % sorted(seen.items()))
if a[:, 0].mean() >= 1.0:
    bad.append("mean |diff| %.3f over all scaled decodes" % a[:, 0].mean())
for b in bad[:20]:
    print("it_loader_dct_pil: FAIL: " + b, file=sys.stderr)
if bad:
    sys.exit(1)
print("it_loader_dct_pil: %d photos; full size exact; decodes by denominator %s; mean |diff| "
      "(worst image) %s; all scaled %.3f, largest byte difference %d"
      % (len(files), ", ".join("%d: %d" % kv for kv in sorted(seen.items())),
         ", ".join("1/%d %.3f (%.3f)" % (k, np.mean(v), np.max(v))
                   for k, v in sorted(per_k.items())),
         a[:, 0].mean(), a[:, 1].max()))
PY
