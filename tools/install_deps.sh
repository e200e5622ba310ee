#!/usr/bin/env bash
# tools/install_deps.sh — installs the Debian packages minidl builds with, if missing.
#
# Build: cmake, g++, make, OpenMP (libgomp comes with g++), fmt, doctest, zlib
# (gzip'd IDX files), nlohmann-json (safetensors headers), CLI11 (the minidl
# command). Data: Fashion-MNIST from dataset-fashion-mnist (about 30 MB).
# The CUDA toolkit (nvcc under /usr/local/cuda) is optional: without it minidl
# builds its CPU backend only (MINIDL_CUDA=AUTO). Needs root (or sudo) only when
# something is missing.
#
# --fuzz also installs what the libFuzzer targets build with (clang, its
# compiler-rt with libFuzzer and the sanitizers, LLVM's OpenMP): the `asan` preset.
set -euo pipefail

packages=(cmake g++ make libfmt-dev doctest-dev zlib1g-dev nlohmann-json3-dev libcli11-dev dataset-fashion-mnist)
if [ "${1:-}" = "--fuzz" ]; then packages=(clang libclang-rt-dev libomp-dev); fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install_deps: all packages present (${packages[*]})"
  exit 0
fi

echo "install_deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
