#!/bin/sh
# One training step, npid against PyTorch from the same state (bench/peer/step_parity.py):
# an untrained resnet20 checkpoint (tools/npid-mkckpt) loaded into tools/npid-step and into the
# PyTorch network, the same inputs, positives and m = 4096 negatives; features, loss, Z, dL/df,
# the parameter update and the BN statistics must agree within float32 rounding (the script's
# tolerances). Also a check on every checkpoint reader outside C: the script parses the file.
# Then the same against torchvision.models' own networks (fc = Linear(C, 128)): resnet18 with
# the imagenet stem (7x7/2 conv, BN, ReLU, 3x3/2 max pool) at 64 px, batch 8, a few seconds;
# resnet50 (bottlenecks) at 64 px, batch 4, about 20 s, whose update is judged against the
# float64 step (step_parity.py, UPDATE_F64).
set -u
bin=${NPID_BIN:?NPID_BIN not set}
py=/usr/bin/python3
here=$(cd "$(dirname "$0")" && pwd)
$py -c 'import torch, numpy' 2>/dev/null ||
    { echo "it_step_parity: python3-torch and python3-numpy needed (deps/test.txt)" >&2; exit 77; }
[ -x "$bin/tools/npid-step" ] ||
    { echo "it_step_parity: $bin/tools/npid-step not built" >&2; exit 77; }
[ -n "${OPENBLAS_CORETYPE:-}" ] || export OPENBLAS_CORETYPE=Haswell
out=$(timeout 300 $py "$here/../bench/peer/step_parity.py" --bin "$bin" --model resnet20 \
    --batch 32 2>&1) || { echo "it_step_parity: FAIL: $out" >&2; exit 1; }
echo "it_step_parity: $(echo "$out" | tail -1 | cut -c1-220)"
out=$(timeout 300 $py "$here/../bench/peer/step_parity.py" --bin "$bin" --model resnet18 \
    --stem imagenet --size 64 --batch 8 2>&1) || { echo "it_step_parity: FAIL: $out" >&2; exit 1; }
echo "it_step_parity: $(echo "$out" | tail -1 | cut -c1-220)"
out=$(timeout 300 $py "$here/../bench/peer/step_parity.py" --bin "$bin" --model resnet50 \
    --stem imagenet --size 64 --batch 4 2>&1) || { echo "it_step_parity: FAIL: $out" >&2; exit 1; }
echo "it_step_parity: $(echo "$out" | tail -1 | cut -c1-220)"
