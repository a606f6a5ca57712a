#!/usr/bin/python3
"""Peer for bench_decode: Pillow writes the PNG and WebP files and times its own decode of
the same bytes, one thread, in the same invocation as npid's.

usage: decode.py encode --list FILE --size S --out DIR
         FILE holds one source image path per line (JPEGs of any size); image i is resized to
         S x S (bicubic, when not already that size) and written as DIR/NNNN.png (Pillow's
         defaults: zlib level 6) and DIR/NNNN.webp (lossy, quality 90, default method).
         Prints {"n": images written}.
       decode.py time --dir DIR --ext png|webp --seconds T
         Reads every DIR/*.EXT into memory once, then decodes the bytes in a loop for T
         seconds with Image.open(BytesIO(b)).convert("RGB") and .load(). The first pass is
         untimed and gives "sha256", the digest of the RGB pixels of the files in name order
         (bench_decode compares it with its own). Prints {"img_per_s", "n", "sha256",
         "peer_name"}.
Exits 77 when PIL (or its WebP support) is missing."""
import argparse, hashlib, io, json, os, sys, time


def need_pil():
    try:
        import PIL
        from PIL import Image, features
    except ImportError as e:
        print("peer unavailable: %s" % e, file=sys.stderr)
        sys.exit(77)
    if not features.check("webp"):
        print("peer unavailable: Pillow has no WebP support", file=sys.stderr)
        sys.exit(77)
    return Image, "Pillow " + PIL.__version__


def encode(a):
    Image, _ = need_pil()
    os.makedirs(a.out, exist_ok=True)
    paths = [l.strip() for l in open(a.list) if l.strip()]
    for i, p in enumerate(paths):
        with Image.open(p) as src:
            im = src.convert("RGB")
        if im.size != (a.size, a.size):
            im = im.resize((a.size, a.size), Image.BICUBIC)
        stem = os.path.join(a.out, "%04d" % i)
        im.save(stem + ".png", "PNG")
        im.save(stem + ".webp", "WEBP", quality=90, lossless=False)
    print(json.dumps({"n": len(paths)}))


def timed(a):
    Image, name = need_pil()
    files = sorted(f for f in os.listdir(a.dir) if f.endswith("." + a.ext))
    blobs = []
    for f in files:
        with open(os.path.join(a.dir, f), "rb") as fh:
            blobs.append(fh.read())
    if not blobs:
        print("no .%s files in %s" % (a.ext, a.dir), file=sys.stderr)
        sys.exit(1)
    h = hashlib.sha256()
    for b in blobs:
        im = Image.open(io.BytesIO(b)).convert("RGB")
        im.load()
        h.update(im.tobytes())
    n = 0
    t0 = time.perf_counter()
    while True:
        for b in blobs:
            im = Image.open(io.BytesIO(b)).convert("RGB")
            im.load()
            n += 1
            if n % 64 == 0 and time.perf_counter() - t0 > a.seconds:
                break
        else:
            continue
        break
    dt = time.perf_counter() - t0
    print(json.dumps({"img_per_s": n / dt, "n": n, "sha256": h.hexdigest(), "peer_name": name}))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("encode")
    e.add_argument("--list", required=True)
    e.add_argument("--size", type=int, required=True)
    e.add_argument("--out", required=True)
    t = sub.add_parser("time")
    t.add_argument("--dir", required=True)
    t.add_argument("--ext", choices=("png", "webp"), required=True)
    t.add_argument("--seconds", type=float, default=3.0)
    a = ap.parse_args()
    encode(a) if a.cmd == "encode" else timed(a)


if __name__ == "__main__":
    main()
