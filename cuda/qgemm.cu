// cuda/qgemm.cu — an int8 dynamic-quantized Linear on the GPU (the kernels and
// why they look as they do: cuda/qgemm_kernels.cuh). Three launches on minidl's
// stream and two scratch buffers from the caching allocator; no host round
// trip, so a CUDA graph captures it whole.
#include "core/check.h"
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/qgemm_kernels.cuh"
#include "cuda/runtime.h"

namespace minidl::cuda {

using namespace qgemm_kernels;

void quantized_linear(const Int8LinearArgs& a) {
  MINIDL_CHECK(a.ldx == a.K, "quantized_linear: the CUDA kernels take contiguous input rows (ldx {} for K {})", a.ldx,
               a.K);
  if (a.M == 0 || a.N == 0) return;
  MINIDL_CHECK((a.M + kQTile - 1) / kQTile <= 65535, "quantized_linear: a batch of {} rows is more than the CUDA "
               "kernel's {}", a.M, int64_t{65535} * kQTile);
  const int device = current_device();
  const int64_t words = (a.K + 3) / 4, n = a.M * a.K;

  // The partial ranges, then the parameters the epilogue reads.
  constexpr size_t kPartialBytes = kRangeBlocks * (2 * sizeof(float) + sizeof(int32_t));
  Scratch small(kPartialBytes + sizeof(QuantParams), device);
  auto* lo = static_cast<float*>(small.data());
  float* hi = lo + kRangeBlocks;
  auto* bad = reinterpret_cast<int32_t*>(hi + kRangeBlocks);
  auto* params = reinterpret_cast<QuantParams*>(bad + kRangeBlocks);
  Scratch xq(static_cast<size_t>(a.M * words) * sizeof(int32_t), device);
  auto* xq_words = static_cast<int32_t*>(xq.data());

  const unsigned partials = std::min<unsigned>(kRangeBlocks, blocks_for(n));
  range_kernel<<<partials, kThreads, 0, stream()>>>(a.x, n, lo, hi, bad);
  MINIDL_CUDA_CHECK(cudaGetLastError());
  quantize_kernel<<<blocks_for(a.M * words), kThreads, 0, stream()>>>(a.x, a.M, a.K, a.ldx, words, lo, hi, bad,
                                                                      static_cast<int>(partials), params, xq_words);
  MINIDL_CUDA_CHECK(cudaGetLastError());
  const dim3 grid(static_cast<unsigned>((a.N + kQTile - 1) / kQTile), static_cast<unsigned>((a.M + kQTile - 1) / kQTile));
  qgemm_kernel<<<grid, dim3(kQSide, kQSide), 0, stream()>>>(xq_words, reinterpret_cast<const int32_t*>(a.w), a.M, a.N,
                                                            words, a.w_row_sums, a.w_scale, a.bias, a.relu, params,
                                                            a.y, a.ldy);
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace minidl::cuda
