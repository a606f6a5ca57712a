#!/usr/bin/python3
"""Peer for bench_loader: PIL + torchvision decode and augmentation of the same image files
(JPEG, PNG or WebP), one process, the reference's transforms. Prints one JSON line:
{"img_per_s": ..., "n": ...}.

usage: loader.py --list FILE --preset cifar|imagenet --size S [--seconds T] [--aug crop-flip]
FILE holds one image path per line; images are decoded with PIL (Image.open + convert RGB)
and transformed, looping over the list until T seconds have passed. --aug crop-flip replaces
the preset's transform by RandomResizedCrop(S) (scale 0.08-1) + RandomHorizontalFlip."""
import argparse, json, sys, time

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--list", required=True)
    ap.add_argument("--preset", default="cifar")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--aug", default="")
    a = ap.parse_args()
    try:
        import torch
        from PIL import Image
        import torchvision.transforms as T
    except ImportError as e:
        print("peer unavailable: %s" % e, file=sys.stderr)
        sys.exit(77)
    torch.set_num_threads(1)
    if a.aug == "crop-flip":
        tf = T.Compose([T.RandomResizedCrop(a.size, scale=(0.08, 1.0)),
                        T.RandomHorizontalFlip()])
    elif a.preset == "cifar":
        tf = T.Compose([T.RandomResizedCrop(a.size, scale=(0.2, 1.0)),
                        T.ColorJitter(0.4, 0.4, 0.4, 0.4), T.RandomGrayscale(p=0.2)])
    else:
        tf = T.Compose([T.RandomResizedCrop(a.size, scale=(0.2, 1.0)), T.RandomGrayscale(p=0.2),
                        T.ColorJitter(0.4, 0.4, 0.4, 0.4), T.RandomHorizontalFlip()])
    paths = [l.strip() for l in open(a.list) if l.strip()]
    n = 0
    t0 = time.perf_counter()
    while True:
        for p in paths:
            with open(p, "rb") as f:
                img = Image.open(f).convert("RGB")
            out = tf(img)
            n += 1
            if n % 64 == 0 and time.perf_counter() - t0 > a.seconds:
                break
        else:
            continue
        break
    dt = time.perf_counter() - t0
    print(json.dumps({"img_per_s": n / dt, "n": n}))

if __name__ == "__main__":
    main()
