#!/usr/bin/env bash
# tools/gpu_check.sh — the one script a session with a lent GPU machine runs there.
#
# Here, first (copies the headers and the dataset the GPU machine lacks):
#   tools/gpu_check.sh prepare
# Then on the device (the `run` tool), carrying .deps:
#   bash tools/gpu_check.sh            # writes logs under $OUT
#
# It configures with CUDA on for sm_90, builds, runs the whole suite (the CUDA
# tests must run there, not skip), then the GPU benchmarks (cuBLAS against the
# hand-written SGEMMs, the fused loss against a device copy, single ops (the
# full sum and max: the split row reduction), training steps, the
# sparse Linear against cuBLAS dense, the int8 mlp against the f32 one) and
# one epoch of cnn on the GPU beside one on the CPU, a distillation from it
# on both, and `bench classifier` of that cnn and its student on the GPU. Everything it prints also
# lands in $OUT/gpu_check.log, each benchmark's JSON in $OUT/<name>.json.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "prepare" ]; then
  # The header-only dependencies (and zlib's headers; its library is on every
  # Linux) that the GPU machine, with no package manager, may lack. CMake uses
  # these only where the package itself is missing.
  mkdir -p .deps/include
  cp -r /usr/include/doctest /usr/include/fmt /usr/include/nlohmann /usr/include/CLI .deps/include/
  cp /usr/include/zlib.h /usr/include/zconf.h .deps/include/
  # The tests and benchmarks train on Fashion-MNIST (30 MB of gzip'd IDX files).
  cp -r /usr/share/datasets/fashion-mnist .deps/
  du -sh .deps
  echo "prepared .deps (doctest, fmt, nlohmann, CLI11, zlib.h headers; fashion-mnist); carry .deps"
  exit 0
fi

OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1

if [ ! -e /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] && [ -d .deps/fashion-mnist ]; then
  mkdir -p /usr/share/datasets && cp -r .deps/fashion-mnist /usr/share/datasets/
fi

echo "== device"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv || true
nvcc --version | tail -2

echo "== configure + build (MINIDL_CUDA=ON, sm_90)"
cmake -S . -B build/gpu -DCMAKE_BUILD_TYPE=Release -DMINIDL_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 || exit 1
cmake --build build/gpu -j16 || exit 1

echo "== CUDA tests (must run, not skip)"
timeout 240 ./build/gpu/tests/minidl_cuda_tests --success=false
cuda_rc=$?
echo "minidl_cuda_tests exit code: $cuda_rc (77 would mean skipped: a failure here)"

echo "== full suite (each step under a timeout, so a hang cannot eat the machine's time)"
# (passive OpenMP waits, as in the test presets: eight tests share the cores)
OMP_WAIT_POLICY=passive timeout 300 ctest --test-dir build/gpu -j8 --output-on-failure -E test_cuda  # test_cuda ran just above
suite_rc=$?

echo "== GPU benchmarks (CUDA events; each result checked against the CPU before timing)"
M=./build/gpu/minidl
bench_rc=0
run_bench() {  # name, then the command; the table on the log, the JSON beside it (one run: --json-out)
  local name=$1; shift
  echo "-- $name: $*"
  timeout 120 "$@" --json-out "$OUT/$name.json" || bench_rc=1
}
run_bench gemm $M bench gemm --device cuda --shapes 4096x4096x4096 8192x8192x8192 1024x1024x1024 128x784x512 \
  --min-time 0.3 --min-runs 5 --warmup-runs 2
run_bench loss $M bench loss --device cuda --shapes 4096x32000 4096x1000 4096x10 --min-time 0.3
run_bench conv $M bench conv --device cuda --min-time 0.3
run_bench ops $M bench ops --device cuda --min-time 0.2
echo "-- conv against cuDNN (PyTorch's conv2d), alternating rounds"
timeout 180 python3 tools/bench/conv_vs_cudnn.py --minidl $M --rounds 3 > "$OUT/conv_vs_cudnn.txt" 2>&1 || bench_rc=1
cat "$OUT/conv_vs_cudnn.txt"
run_bench train_step_cnn $M bench train-step --device cuda --graph --model cnn --batch 128 --min-time 0.5
for model in mlp cnn resnet-s; do
  run_bench infer_$model $M bench infer --device cuda --graph --model $model --batch 1 128 --min-time 0.3
done
run_bench infer_int8_mlp $M bench infer --device cuda --int8 --model mlp --batch 1 128 4096 --min-time 0.3
run_bench train_step_mlp $M bench train-step --device cuda --graph --model mlp --batch 128 --min-time 0.5
run_bench train_step_resnet $M bench train-step --device cuda --graph --model resnet-s --batch 128 --min-time 0.5
run_bench sparse $M bench sparse --device cuda --quick --batch 1 256 2048 --min-time 0.05

echo "== one epoch of cnn, GPU then CPU (same seed, same data order)"
timeout 120 $M train --model cnn --epochs 1 --device cuda --out "$OUT/cnn-gpu.safetensors" || bench_rc=1
timeout 120 $M train --model cnn --epochs 1 --device cpu --out "$OUT/cnn-cpu.safetensors" || bench_rc=1

echo "== distillation on the GPU: mlp-small from the GPU's cnn, against the student alone; then the same on the CPU"
timeout 120 $M distill --teacher "$OUT/cnn-gpu.safetensors" --student mlp-small --epochs 1 --baseline --device cuda \
  --out "$OUT/distilled-gpu.safetensors" || bench_rc=1
timeout 120 $M distill --teacher "$OUT/cnn-gpu.safetensors" --student mlp-small --epochs 1 --baseline --device cpu \
  || bench_rc=1

echo "== the classic table on the GPU: the GPU's cnn as fp32 eager / graph, bf16 (+ graph), int8 (+ graph), and the student"
timeout 180 $M bench classifier --device cuda --model "$OUT/cnn-gpu.safetensors" --student "$OUT/distilled-gpu.safetensors" \
  --batch 1 256 --limit-test 2000 --min-time 0.2 --markdown --json-out "$OUT/classifier_cnn.json" || bench_rc=1

echo "exit codes: cuda tests $cuda_rc, suite $suite_rc, benchmarks $bench_rc"
[ "$cuda_rc" -eq 0 ] && [ "$suite_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
