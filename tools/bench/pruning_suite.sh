#!/bin/bash
# tools/bench/pruning_suite.sh — every measurement docs/benchmarks.md quotes for
# pruning and sparse kernels, in one run on a quiet machine (nothing else
# running: OpenMP and OpenBLAS threads spinning elsewhere skew every ratio).
#
#   tools/bench/pruning_suite.sh [OUT_DIR]      (default runs/pruning)
#
# Needs trained checkpoints runs/mlp.safetensors and runs/cnn.safetensors
# (minidl train --model mlp|cnn --epochs 3 --out runs/MODEL.safetensors; and
# runs/resnet-s.safetensors for its step, skipped without it), and
# for the comparisons libopenblas-dev (at configure time) and python3-torch.
set -euo pipefail
out=${1:-runs/pruning}
bin=./build/default/minidl
mkdir -p "$out"
# OpenBLAS 0.3.21 does not know Emerald/Sapphire Rapids and would fall back to
# its SSE3 (Prescott) kernels; its threads spin ~0.1 s after each call unless told.
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-SkylakeX} OPENBLAS_THREAD_TIMEOUT=4
lscpu > "$out/lscpu.txt"
$bin --version > "$out/version.txt"
if [ "${SKIP_SWEEP:-0}" != 1 ]; then
echo "== sweep"; time $bin bench sparse --weights runs/mlp.safetensors --weights runs/cnn.safetensors \
  --out "$out/sparse.json" > "$out/sparse.txt"
/usr/bin/python3 tools/bench/plot_sparse.py "$out/sparse.json" "$out/sparse.png"  # Debian's python3-matplotlib
fi
echo "== mlp, global 90%"; $bin prune runs/mlp.safetensors --method global --amount 0.9 --finetune-epochs 2 \
  --out "$out/mlp-global90.safetensors" --min-time 1 > "$out/mlp-global90.txt"
echo "== cnn, global 90%"; $bin prune runs/cnn.safetensors --method global --amount 0.9 --finetune-epochs 2 \
  --out "$out/cnn-global90.safetensors" --min-time 1 > "$out/cnn-global90.txt"
echo "== cnn, channel 50%"; $bin prune runs/cnn.safetensors --method channel --amount 0.5 --finetune-epochs 2 \
  --out "$out/cnn-channel50.safetensors" --min-time 1 > "$out/cnn-channel50.txt"
if [ -f runs/resnet-s.safetensors ]; then  # minidl train --model resnet-s --epochs 3 (about 9 min)
  echo "== resnet-s, channel 50%"; $bin prune runs/resnet-s.safetensors --method channel --amount 0.5 \
    --finetune-epochs 2 --out "$out/resnet-s-channel50.safetensors" --min-time 0.5 > "$out/resnet-s-channel50.txt"
fi
echo "== cnn sensitivity"; $bin prune runs/cnn.safetensors --sensitivity --out "$out/cnn-sensitivity.json" \
  > "$out/cnn-sensitivity.txt"
/usr/bin/python3 tools/bench/plot_sensitivity.py "$out/cnn-sensitivity.json" "$out/cnn-sensitivity.png"
echo "== mlp, global 90%, latency again (amounts are totals: re-pruning to 0.9 changes nothing)"
$bin prune "$out/mlp-global90.safetensors" --method global --amount 0.9 --out "$out/mlp-global90-again.safetensors" \
  --min-time 2 > "$out/mlp-global90-latency.txt"
echo "== against PyTorch"; /usr/bin/python3 tools/bench/sparse_vs_torch.py --threads 2 > "$out/sparse_vs_torch.txt"
echo "done: $out"
