// ops/cpu/conv_batching.h — how the convolutions split a batch of samples into
// GEMMs, and their scratch buffers; shared by the f32/bf16 convolution
// (conv.cpp) and the int8 one (qconv.cpp).
//
// One sample's GEMM is small (conv2 of the zoo's cnn: 64 × 196 × 288), and small
// GEMMs spend their time packing and synchronising; putting B samples side by
// side makes the GEMM B times wider. B is chosen so that a batch's workspaces
// (its unrolled patches and the GEMM's output: each written once and read once
// right after) stay around kWorkspaceBytes, in cache, and so that every thread
// gets a batch.
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/storage.h"
#include "ops/cpu/loops.h"

namespace minidl::cpu {

// How many samples share a GEMM, and how the batches are run.
struct Batching {
  int64_t N;  // samples
  int64_t B;  // samples in the largest batch (the workspaces' size)
  int64_t batches;
  bool parallel;  // batches on separate threads (else the GEMM is parallel inside)

  // Batch i: samples [first, first + count). Sizes differ by at most one.
  struct Range {
    int64_t first, count;
  };
  Range range(int64_t i) const {
    const int64_t first = N * i / batches;
    return {first, N * (i + 1) / batches - first};
  }
};

// Per thread: the unrolled patches and the GEMM's output (the backward's
// gathered gy) for B samples. Both count: a first layer has few input channels
// and many outputs (the cnn's conv1: K = 9, Og = 32), so its output workspace is
// 3.5 times its cols, and bounding cols alone gave it B = 64 and 8 MB per
// thread: its forward took 1.0–2.2 ms against 0.54–0.78 ms at any B from 1 to 32
// (docs/benchmarks.md).
inline constexpr int64_t kWorkspaceBytes = int64_t{2} << 20;

// N samples of `bytes_per_sample` bytes of workspace each.
inline Batching batching(int64_t N, int64_t bytes_per_sample) {
  if (N == 0) return {0, 1, 0, false};  // an empty batch: no work (gradients of weight and bias are 0)
  const int64_t threads = max_threads();
  int64_t B = std::clamp<int64_t>(kWorkspaceBytes / std::max<int64_t>(1, bytes_per_sample), 1, N);
  B = std::min(B, (N + threads - 1) / threads);  // at least one batch per thread
  int64_t batches = (N + B - 1) / B;
  // A whole number of batches per thread, all of (nearly) one size: 128 samples at
  // B = 9 would make 15 batches, one thread doing 8 while the other waits after 7.
  if (batches >= threads) batches = (batches + threads - 1) / threads * threads;
  return {N, (N + batches - 1) / batches, batches, batches >= threads && threads > 1};
}

// A scratch buffer of n elements from the caching CPU allocator: after the first
// step, a workspace of the same size is a reused block, not a fresh mapping.
template <class T>
class Workspace {
 public:
  explicit Workspace(int64_t n) : storage_(static_cast<size_t>(n) * sizeof(T), kCPU) {}
  T* data() { return static_cast<T*>(storage_.data()); }

 private:
  Storage storage_;
};

}  // namespace minidl::cpu
