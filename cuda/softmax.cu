// cuda/softmax.cu — softmax / log_softmax over rows, and the fused losses on the
// same row machinery: cross-entropy, the distillation KL (forward and backward),
// and the whole distillation loss with its gradient in one pass.
//
// One block per row, as wide as the row needs (32 threads for 10 classes, 256
// for 1000 or 32000): each thread walks the columns c = t, t + blockDim, …,
// which for neighbouring threads are neighbouring addresses (coalesced), and the
// block combines its partials with warp shuffles (cuda/device.cuh). The kernels
// are in cuda/softmax_kernels.cuh; this file launches them. A row's
// log-normaliser is found in two block reductions — its max, then Σ e^{x − max}
// — and kept as the two parts (max, log_sum), exactly as on the CPU
// (ops/cpu/softmax.cpp), so −log p_c = (max − x_c) + log_sum stays exact for
// logits of 1e4. Each kernel is one launch; nothing of size (rows, cols) is
// written but the output.
//
// An out-of-range target is found on the device: status (one int64) is set to
// all ones (−1) before the launch and each bad row does an atomicMin on it as
// unsigned, so it ends as the first bad row, or −1. The op raises the error
// when it reads status — one host round trip per call, not one per row.
#include <cmath>

#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/softmax_kernels.cuh"

namespace minidl::cuda {

using namespace rows;

namespace {

unsigned row_blocks(int64_t rows) {
  if (rows > 0x7fffffff) throw Error("softmax/loss kernels: more than 2^31 - 1 rows on CUDA");
  return static_cast<unsigned>(rows);
}

int64_t stride_of_scale(const TensorArg& scale) { return scale.ndim == 0 ? 0 : scale.strides[0]; }

}  // namespace

void softmax_rows(const TensorArg& y, const TensorArg& x, bool log) {
  const int64_t rows = x.shape[0], cols = x.shape[1];
  if (rows == 0 || cols == 0) return;
  dispatch_floating(x.dtype, log ? "log_softmax" : "softmax", [&](auto tag) {
    using T = decltype(tag);
    softmax_kernel<T><<<row_blocks(rows), row_threads(cols), 0, stream()>>>(y.ptr<T>(), x.ptr<T>(), cols, log);
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

void softmax_rows_backward(const TensorArg& gx, const TensorArg& g, const TensorArg& y, bool log) {
  const int64_t rows = y.shape[0], cols = y.shape[1];
  if (rows == 0 || cols == 0) return;
  dispatch_floating(y.dtype, log ? "log_softmax backward" : "softmax backward", [&](auto tag) {
    using T = decltype(tag);
    softmax_backward_kernel<T><<<row_blocks(rows), row_threads(cols), 0, stream()>>>(gx.ptr<T>(), g.ptr<T>(), y.ptr<T>(), cols, log);
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

void cross_entropy_rows(const TensorArg& loss, const TensorArg& lse, const TensorArg& logits, const TensorArg& target,
                        const TensorArg& weight, const CrossEntropyParams& p, const TensorArg& status) {
  const int64_t rows = logits.shape[0], cols = logits.shape[1];
  MINIDL_CUDA_CHECK(cudaMemsetAsync(status.data, 0xFF, sizeof(int64_t), stream()));  // −1: no bad row yet
  if (rows == 0) return;
  dispatch_floating(logits.dtype, "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    cross_entropy_kernel<T><<<row_blocks(rows), row_threads(cols), 0, stream()>>>(
        loss.ptr<T>(), lse.ptr<T>(), logits.ptr<T>(), target.ptr<int64_t>(), data_or_null<T>(weight), cols,
        p.ignore_index, p.label_smoothing, status.ptr<int64_t>());
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

void cross_entropy_rows_backward(const TensorArg& gx, const TensorArg& scale, const TensorArg& logits,
                                 const TensorArg& lse, const TensorArg& target, const TensorArg& weight,
                                 const CrossEntropyParams& p) {
  const int64_t rows = logits.shape[0], cols = logits.shape[1];
  if (rows == 0 || cols == 0) return;
  dispatch_floating(logits.dtype, "cross_entropy backward", [&](auto tag) {
    using T = decltype(tag);
    cross_entropy_backward_kernel<T><<<row_blocks(rows), row_threads(cols), 0, stream()>>>(
        gx.ptr<T>(), scale.ptr<T>(), stride_of_scale(scale), logits.ptr<T>(), lse.ptr<T>(), target.ptr<int64_t>(),
        data_or_null<T>(weight), cols, p.ignore_index, p.label_smoothing);
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

void kl_div_rows(const TensorArg& loss, const TensorArg& lse, const TensorArg& student, const TensorArg& teacher,
                 double temperature) {
  const int64_t rows = student.shape[0], cols = student.shape[1];
  if (rows == 0) return;
  dispatch_floating(student.dtype, "kl_div_logits", [&](auto tag) {
    using T = decltype(tag);
    kl_div_kernel<T><<<row_blocks(rows), row_threads(cols), 0, stream()>>>(loss.ptr<T>(), lse.ptr<T>(), student.ptr<T>(),
                                                              teacher.ptr<T>(), cols, temperature);
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

void kl_div_rows_backward(const TensorArg& gs, const TensorArg& gt, const TensorArg& scale, const TensorArg& student,
                          const TensorArg& teacher, const TensorArg& lse, const TensorArg& loss, double temperature) {
  const int64_t rows = student.shape[0], cols = student.shape[1];
  if (rows == 0 || cols == 0) return;
  dispatch_floating(student.dtype, "kl_div_logits backward", [&](auto tag) {
    using T = decltype(tag);
    kl_div_backward_kernel<T><<<row_blocks(rows), row_threads(cols), 0, stream()>>>(
        data_or_null<T>(gs), data_or_null<T>(gt), scale.ptr<T>(), stride_of_scale(scale), student.ptr<T>(),
        teacher.ptr<T>(), lse.ptr<T>(), loss.ptr<T>(), cols, temperature);
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

void distillation_rows(const TensorArg& kl, const TensorArg& ce, const TensorArg& grad, const TensorArg& student,
                       const TensorArg& teacher, const TensorArg& target, const DistillationParams& p,
                       const TensorArg& status) {
  const int64_t rows = student.shape[0], cols = student.shape[1];
  MINIDL_CUDA_CHECK(cudaMemsetAsync(status.data, 0xFF, sizeof(int64_t), stream()));  // −1: no bad row yet
  if (rows == 0) return;
  dispatch_floating(student.dtype, "distillation_loss", [&](auto tag) {
    using T = decltype(tag);
    distillation_kernel<T><<<row_blocks(rows), row_threads(cols), 0, stream()>>>(
        kl.ptr<T>(), ce.ptr<T>(), data_or_null<T>(grad), student.ptr<T>(), teacher.ptr<T>(), target.ptr<int64_t>(), cols,
        p.temperature, p.alpha * p.temperature * p.grad_scale, (1 - p.alpha) * p.grad_scale, status.ptr<int64_t>());
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace minidl::cuda
