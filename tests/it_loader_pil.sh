#!/bin/sh
# Pixel-exactness against Pillow/torchvision (Debian's python3-pil and python3-torchvision):
# crop + bilinear resize, brightness, contrast, saturation, hue, grayscale, flip and the
# ImageNet test transform, on hundreds of random images and parameters, through the
# tools/npid-pixop helper. Then the Gaussian blur against torchvision's gaussian_blur
# (float32 in both, summed in different orders, so a byte may round the other way): at 16,
# 32, 64 and 96 px with SimCLR's kernel side and on odd shapes, sigma in [0.1, 2] with both
# ends; every byte within 1 level and the mean difference below 0.05 (measured: see the
# last line). Skips when /usr/bin/python3 lacks PIL or torchvision.
set -u
bin=${NPID_BIN:?NPID_BIN not set}
/usr/bin/python3 -c "import PIL, numpy, torchvision" 2>/dev/null || {
    echo "it_loader_pil: /usr/bin/python3 without PIL/numpy/torchvision; skipping" >&2; exit 77; }
NPID_PIXOP="$bin/tools/npid-pixop" exec /usr/bin/python3 - <<'PY'
import os, subprocess, sys
import numpy as np
import torch
from PIL import Image
import torchvision.transforms as T
import torchvision.transforms.functional as F

exe = os.environ["NPID_PIXOP"]
rng = np.random.default_rng(20240601)
proc = subprocess.Popen([exe], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

def run(op, arr, nbytes, *args):
    h, w = arr.shape[:2]
    proc.stdin.write(("%s %d %d %s\n" % (op, w, h, " ".join(str(a) for a in args))).encode())
    proc.stdin.write(arr.tobytes())
    proc.stdin.flush()
    out = proc.stdout.read(nbytes)
    if len(out) != nbytes:
        sys.exit("it_loader_pil: npid-pixop %s failed (exit %s)" % (op, proc.poll()))
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

# Gaussian blur: torchvision's F.gaussian_blur on the PIL image (it blurs the uint8 tensor
# in float32 and rounds). Sigma as torch draws it (float32), sent exactly.
torch.set_num_threads(1)
blur_cases, blur_bytes, blur_sum, blur_max, blur_off, blur_bad = 0, 0, 0, 0, 0, []
shapes = [(s, s) for s in (16, 32, 64, 96) for _ in range(12)]
shapes += [(int(rng.integers(2, 50)), int(rng.integers(2, 50))) for _ in range(24)]
for t, (w, h) in enumerate(shapes):
    if w == h:
        k = max(3, (w // 10) // 2 * 2 + 1)  # SimCLR: radius = (size // 10) // 2
    else:
        k = 2 * int(rng.integers(0, (min(w, h) - 1) // 2 + 1)) + 1  # k // 2 < the shorter side
    sigma = float(np.float32(0.1 if t % 6 == 0 else 2.0 if t % 6 == 1 else rng.uniform(0.1, 2.0)))
    if t % 2:
        arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    else:
        yy, xx = np.mgrid[0:h, 0:w]
        arr = np.stack([xx * 255 // w, yy * 255 // h, 127 + 127 * np.sin(0.7 * xx + 0.4 * yy)], -1)
        arr = np.clip(arr + rng.integers(-5, 6, arr.shape), 0, 255).astype(np.uint8)
    want = np.asarray(F.gaussian_blur(Image.fromarray(arr, "RGB"), [k, k], [sigma, sigma])).reshape(-1)
    got = run("blur", arr, want.size, k, "%.9g" % sigma)
    d = np.abs(got.astype(np.int16) - want.astype(np.int16))
    blur_cases += 1
    blur_bytes += d.size
    blur_sum += int(d.sum())
    blur_off += int((d > 0).sum())
    blur_max = max(blur_max, int(d.max()))
    if d.max() > 1:
        blur_bad.append("blur %dx%d k %d sigma %.9g: max difference %d" % (w, h, k, sigma, d.max()))
proc.stdin.close()
if proc.wait() != 0:
    sys.exit("it_loader_pil: npid-pixop exited with status %d" % proc.returncode)
if bad:
    print("it_loader_pil: %d of %d cases differ from Pillow:\n  %s" % (len(bad), cases, "\n  ".join(bad[:10])), file=sys.stderr)
    sys.exit(1)
blur_mean = blur_sum / blur_bytes
blur_fig = ("%d blur cases, %d bytes: %d off by one, max difference %d, mean %.2g"
            % (blur_cases, blur_bytes, blur_off, blur_max, blur_mean))
if blur_bad or blur_mean >= 0.05:
    print("it_loader_pil: Gaussian blur differs from torchvision's gaussian_blur (%s):\n  %s"
          % (blur_fig, "\n  ".join(blur_bad[:10])), file=sys.stderr)
    sys.exit(1)
print("it_loader_pil: ok: %d cases pixel-identical to Pillow/torchvision" % cases, file=sys.stderr)
print("it_loader_pil: ok: %s against torchvision's gaussian_blur" % blur_fig, file=sys.stderr)
PY
