#!/bin/sh
# Pixel-exactness against Pillow/torchvision (Debian's python3-pil and python3-torchvision):
# crop + bilinear resize, brightness, contrast, saturation, hue, grayscale, flip and the
# ImageNet test transform, on hundreds of random images and parameters, through the
# `npid-loader _pixop` hook. Skips when /usr/bin/python3 lacks PIL or torchvision.
set -u
bin=${NPID_BIN:?NPID_BIN not set}
/usr/bin/python3 -c "import PIL, numpy, torchvision" 2>/dev/null || {
    echo "it_loader_pil: /usr/bin/python3 without PIL/numpy/torchvision; skipping" >&2; exit 77; }
NPID_LOADER="$bin/npid-loader" exec /usr/bin/python3 - <<'PY'
import os, subprocess, sys
import numpy as np
from PIL import Image
import torchvision.transforms as T
import torchvision.transforms.functional as F

exe = os.environ["NPID_LOADER"]
rng = np.random.default_rng(20240601)
proc = subprocess.Popen([exe, "_pixop"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

def run(op, arr, nbytes, *args):
    h, w = arr.shape[:2]
    proc.stdin.write(("%s %d %d %s\n" % (op, w, h, " ".join(str(a) for a in args))).encode())
    proc.stdin.write(arr.tobytes())
    proc.stdin.flush()
    out = proc.stdout.read(nbytes)
    if len(out) != nbytes:
        sys.exit("it_loader_pil: _pixop %s failed (exit %s)" % (op, proc.poll()))
    return np.frombuffer(out, np.uint8)

bad = []
cases = 0
for t in range(150):
    w, h = int(rng.integers(1, 100)), int(rng.integers(1, 100))
    if t % 3 == 0:
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    else:
        yy, xx = np.mgrid[0:h, 0:w]
        arr = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 3 % 256], -1)
        arr = np.clip(arr + rng.integers(-20, 20, arr.shape), 0, 255).astype(np.uint8)
    im = Image.fromarray(arr, "RGB")
    x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
    cw, ch = int(rng.integers(1, w - x + 1)), int(rng.integers(1, h - y + 1))
    dw, dh = int(rng.integers(1, 70)), int(rng.integers(1, 70))
    f, hf = float(rng.uniform(0.6, 1.4)), float(rng.uniform(-0.4, 0.4))
    checks = [
        ("resize", F.resized_crop(im, y, x, ch, cw, [dh, dw], T.InterpolationMode.BILINEAR), (x, y, cw, ch, dw, dh)),
        ("brightness", F.adjust_brightness(im, f), (f,)),
        ("contrast", F.adjust_contrast(im, f), (f,)),
        ("saturation", F.adjust_saturation(im, f), (f,)),
        ("hue", F.adjust_hue(im, hf), (hf,)),
        ("grayscale", F.rgb_to_grayscale(im, 3), ()),
        ("flip", F.hflip(im), ()),
    ]
    if min(w, h) >= 8:
        s = int(rng.integers(1, min(w, h) + 1))
        checks.append(("test", T.CenterCrop(s)(T.Resize(s * 256 // 224)(im)), ("imagenet", s)))
    for op, ref, args in checks:
        cases += 1
        want = np.asarray(ref).reshape(-1)
        got = run(op, arr, want.size, *args)
        if got.shape != want.shape or not np.array_equal(got, want):
            bad.append("%s %dx%d %s: %d bytes differ" % (op, w, h, args,
                       -1 if got.shape != want.shape else int((got != want).sum())))
proc.stdin.close()
if proc.wait() != 0:
    sys.exit("it_loader_pil: _pixop exited with status %d" % proc.returncode)
if bad:
    print("it_loader_pil: %d of %d cases differ from Pillow:\n  %s" % (len(bad), cases, "\n  ".join(bad[:10])), file=sys.stderr)
    sys.exit(1)
print("it_loader_pil: ok: %d cases pixel-identical to Pillow/torchvision" % cases, file=sys.stderr)
PY
