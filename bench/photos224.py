#!/usr/bin/python3
"""Makes ImageNet-sized JPEGs for the 224 px loader figures: the first --per-class test images
of every class of tinyimagenet10 (64 px photos), each upscaled with Pillow's bicubic filter to
a width and a height drawn independently and uniformly from [--min, --max] px (seeded: the
same set every time) and saved at quality 90 (4:2:0, Pillow's default), as an ImageFolder
OUT/train/<class>/<name>.jpg. Prints OUT on stdout.

OUT is a cache: when OUT/params.txt records the same source and parameters, nothing is
written again. It lives outside the repository (default /tmp/npid-photos224).

usage: photos224.py [--src DIR] [--out DIR] [--per-class N] [--min PX] [--max PX]
DIR defaults to $NPID_CACHE/tinyimagenet10 (else ~/.cache/npid/tinyimagenet10); exit 77 when
it or Pillow is missing."""
import argparse, os, random, shutil, sys, tempfile


def main():
    cache = os.environ.get("NPID_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "npid")
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", default=os.path.join(cache, "tinyimagenet10"))
    ap.add_argument("--out", default="/tmp/npid-photos224")
    ap.add_argument("--per-class", type=int, default=40)
    ap.add_argument("--min", type=int, default=300)
    ap.add_argument("--max", type=int, default=500)
    a = ap.parse_args()
    try:
        from PIL import Image
    except ImportError as e:
        print("photos224: %s" % e, file=sys.stderr)
        sys.exit(77)
    test = os.path.join(a.src, "test")
    if not os.path.isdir(test):
        print("photos224: %s not found" % test, file=sys.stderr)
        sys.exit(77)
    params = "src %s per-class %d min %d max %d quality 90 v1\n" % (
        os.path.abspath(a.src), a.per_class, a.min, a.max)
    try:
        with open(os.path.join(a.out, "params.txt")) as f:
            if f.read() == params:
                print(a.out)
                return
    except OSError:
        pass
    rng = random.Random(224)
    parent = os.path.dirname(os.path.abspath(a.out))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".photos224.", dir=parent)
    n = 0
    for cls in sorted(os.listdir(test)):
        cdir = os.path.join(test, cls)
        if not os.path.isdir(cdir):
            continue
        os.makedirs(os.path.join(tmp, "train", cls))
        names = sorted(x for x in os.listdir(cdir) if x.lower().endswith((".jpg", ".jpeg")))
        for name in names[:a.per_class]:
            w, h = rng.randint(a.min, a.max), rng.randint(a.min, a.max)
            with Image.open(os.path.join(cdir, name)) as im:
                big = im.convert("RGB").resize((w, h), Image.BICUBIC)
            big.save(os.path.join(tmp, "train", cls, os.path.splitext(name)[0] + ".jpg"),
                     quality=90)
            n += 1
    with open(os.path.join(tmp, "params.txt"), "w") as f:
        f.write(params)
    shutil.rmtree(a.out, ignore_errors=True)
    os.rename(tmp, a.out)
    print("photos224: %d images in %s" % (n, a.out), file=sys.stderr)
    print(a.out)


if __name__ == "__main__":
    main()
