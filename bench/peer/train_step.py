#!/usr/bin/env python3
"""PyTorch peer of bench_train_step: the same networks, NCE head and SGD step on 2 threads.

Usage: /usr/bin/python3 bench/peer/train_step.py --model resnet18 [--stem cifar --batch 128
       --size 32 --steps N --threads 2]
Prints one JSON object on stdout: {"model", "train_img_per_s", "eval_img_per_s",
"train_img_per_cpu_s"} (images per second of process CPU time: a figure that shared,
noisy machines disturb less than wall time).
The networks follow ../shared/spec/algorithm.md (CIFAR ResNet18; half width; ResNet-20
with projection shortcuts), ending in Linear(low_dim) and L2 normalisation. The head is NCE
with one shared draw of m negatives from an n-row bank (scores as one B x m product)."""
import argparse
import json
import os
import sys
import time

# On a shared, oversubscribed machine libgomp's spinning threads waste the cores the peer
# needs (resnet20 measured 88 img/s spinning, 333 img/s passive): give the peer its best case.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """torchvision's v1.5 bottleneck: 1x1, 3x3 with the stride, 1x1 to 4x the width."""

    def __init__(self, cin, width, stride):
        super().__init__()
        cout = 4 * width
        self.conv1 = nn.Conv2d(cin, width, 1, 1, 0, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, 1, 0, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


# npid's presets (common/nn/net.c): stem width, stage widths, blocks per stage, strides, and
# the block (BasicBlock, or Bottleneck with outputs 4x the width)
PRESETS = {
    "resnet18": (64, [64, 128, 256, 512], [2, 2, 2, 2], [1, 2, 2, 2], BasicBlock),
    "resnet18-half": (32, [32, 64, 128, 256], [2, 2, 2, 2], [1, 2, 2, 2], BasicBlock),
    "resnet18-quarter": (16, [16, 32, 64, 128], [2, 2, 2, 2], [1, 2, 2, 2], BasicBlock),
    "resnet20": (16, [16, 32, 64], [3, 3, 3], [1, 2, 2], BasicBlock),
    "resnet34": (64, [64, 128, 256, 512], [3, 4, 6, 3], [1, 2, 2, 2], BasicBlock),
    "resnet50": (64, [64, 128, 256, 512], [3, 4, 6, 3], [1, 2, 2, 2], Bottleneck),
}

# npid's stems (common/nn/net.h, enum net_stem): cifar 3x3 stride 1; s2 3x3 stride 2; s4 s2
# and the first stage at stride 2; imagenet torchvision's 7x7 stride 2 pad 3 + BN + ReLU +
# MaxPool2d(3, 2, 1)
STEMS = ("cifar", "s2", "s4", "imagenet")


class Net(nn.Module):
    """npid's network: the preset's stages after the given stem, global average pool,
    Linear(low_dim), L2 normalisation; modules registered in npid's parameter order."""

    def __init__(self, model, low_dim, stem="cifar"):
        super().__init__()
        width, widths, depth, strides, block = PRESETS[model]
        if stem == "imagenet":
            self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, width, 3, 1 if stem == "cifar" else 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.pool = nn.MaxPool2d(3, 2, 1) if stem == "imagenet" else nn.Identity()
        strides = [strides[0] * (2 if stem == "s4" else 1)] + list(strides[1:])
        layers, cin = [], width
        for w, d, s in zip(widths, depth, strides):
            for i in range(d):
                layers.append(block(cin, w, s if i == 0 else 1))
                cin = w * (4 if block is Bottleneck else 1)
        self.layers = nn.Sequential(*layers)
        self.linear = nn.Linear(cin, low_dim)

    def forward(self, x):
        out = self.pool(F.relu(self.bn1(self.conv1(x))))
        out = self.layers(out)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return F.normalize(self.linear(out), dim=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet18", choices=sorted(PRESETS))
    ap.add_argument("--stem", default="cifar", choices=STEMS)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--m", type=int, default=4096)
    ap.add_argument("--n", type=int, default=50000)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    net = Net(a.model, 128, a.stem)
    opt = torch.optim.SGD(net.parameters(), lr=0.03, momentum=0.9, weight_decay=5e-4)
    bank = F.normalize(torch.randn(a.n, 128), dim=1)
    x = torch.randn(a.batch, 3, a.size, a.size)
    tau, z = 0.07, None
    c = a.m / a.n

    def step():
        nonlocal z
        idx = torch.randint(0, a.n, (a.batch,))
        neg_idx = torch.randint(0, a.n, (a.m,))
        pos, neg = bank[idx], bank[neg_idx]
        f = net(x)
        s0 = (f * pos).sum(1, keepdim=True)
        s = f @ neg.t()
        e0, e = torch.exp(s0 / tau), torch.exp(s / tau)
        if z is None:
            z = (torch.cat([e0, e], 1).mean() * a.n).item()
        p0, p = e0 / z, e / z
        loss = -(torch.log(p0 / (p0 + c + 1e-7)).sum()
                 + torch.log(c / (p + c + 1e-7)).sum()) / a.batch
        opt.zero_grad()
        loss.backward()
        opt.step()

    net.train()
    step()
    t, c0 = time.perf_counter(), time.process_time()
    for _ in range(a.steps):
        step()
    train = a.batch * a.steps / (time.perf_counter() - t)
    train_cpu = a.batch * a.steps / (time.process_time() - c0)
    net.eval()
    with torch.no_grad():
        net(x)
        t = time.perf_counter()
        for _ in range(a.steps):
            net(x)
        ev = a.batch * a.steps / (time.perf_counter() - t)
    print(json.dumps({"model": a.model, "train_img_per_s": train, "eval_img_per_s": ev,
                      "train_img_per_cpu_s": train_cpu}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
