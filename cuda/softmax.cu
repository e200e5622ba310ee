// cuda/softmax.cu — softmax / log_softmax over rows, and the fused losses on the
// same row machinery: cross-entropy, the distillation KL (forward and backward),
// and the whole distillation loss with its gradient in one pass.
//
// The kernels are in cuda/softmax_kernels.cuh; this file chooses their layout
// and launches them. Memory-bound: each kernel reads its rows once or twice and
// writes only its output, so what matters is bytes in flight. Short rows take a
// warp each, 8 rows to a block (a 10-class row would leave a block-per-row
// launch with 32-thread blocks, half the SM's threads at most, and a shared-
// memory round trip and two barriers per reduction); rows past 1024 columns take
// a block of 256 threads each. Either way rows move in 16-byte chunks, and
// neighbouring threads read neighbouring chunks (coalesced). A row's
// log-normaliser comes from one online pass and is kept as (max, log_sum),
// exactly as on the CPU (ops/cpu/softmax.cpp), so −log p_c = (max − x_c) +
// log_sum stays exact for logits of 1e4. Each kernel is one launch; nothing of
// size (rows, cols) is written but the output.
//
// An out-of-range target is found on the device: status (one int64) is set to
// all ones (−1) before the launch and each bad row does an atomicMin on it as
// unsigned, so it ends as the first bad row, or −1. The op raises the error
// when it reads status — one host round trip per call, not one per row.
#include <cmath>
#include <cstdlib>
#include <string>

#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/softmax_kernels.cuh"

namespace minidl::cuda {

using namespace rows;

namespace {

RowLayout from_environment() {
  const char* env = std::getenv("MINIDL_CUDA_ROWS");
  if (!env || !*env) return RowLayout::automatic;
  const std::string name = env;
  if (name == "warp") return RowLayout::warp;
  if (name == "block") return RowLayout::block;
  throw Error("MINIDL_CUDA_ROWS: unknown layout '" + name + "' (expected warp or block)");
}

RowLayout& chosen_layout() {
  static RowLayout layout = from_environment();
  return layout;
}

// launch(row, geometry) with the row layout for rows of `cols`: row is a
// WarpRow or a BlockRow, whose type picks the kernel's instantiation.
template <class Launch>
void launch_rows(int64_t rows, int64_t cols, Launch launch) {
  if (rows > 0x7fffffff) throw Error("softmax/loss kernels: more than 2^31 - 1 rows on CUDA");
  RowLayout layout = chosen_layout();
  if (layout == RowLayout::automatic) layout = layout_for(cols);
  const Geometry g = geometry(layout, rows, cols);
  if (layout == RowLayout::warp)
    launch(WarpRow{}, g);
  else
    launch(BlockRow{}, g);
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

int64_t stride_of_scale(const TensorArg& scale) { return scale.ndim == 0 ? 0 : scale.strides[0]; }

}  // namespace

void set_row_layout(RowLayout layout) { chosen_layout() = layout; }
RowLayout row_layout() { return chosen_layout(); }
RowLayout automatic_row_layout(int64_t cols) { return layout_for(cols); }

void softmax_rows(const TensorArg& y, const TensorArg& x, bool log) {
  const int64_t rows = x.shape[0], cols = x.shape[1];
  if (rows == 0 || cols == 0) return;
  dispatch_floating(x.dtype, log ? "log_softmax" : "softmax", [&](auto tag) {
    using T = decltype(tag);
    launch_rows(rows, cols, [&](auto row, const Geometry& g) {
      softmax_kernel<T, decltype(row)><<<g.grid, g.block, 0, stream()>>>(y.ptr<T>(), x.ptr<T>(), rows, cols, log);
    });
  });
}

void softmax_rows_backward(const TensorArg& gx, const TensorArg& g, const TensorArg& y, bool log) {
  const int64_t rows = y.shape[0], cols = y.shape[1];
  if (rows == 0 || cols == 0) return;
  dispatch_floating(y.dtype, log ? "log_softmax backward" : "softmax backward", [&](auto tag) {
    using T = decltype(tag);
    launch_rows(rows, cols, [&](auto row, const Geometry& geo) {
      softmax_backward_kernel<T, decltype(row)>
          <<<geo.grid, geo.block, 0, stream()>>>(gx.ptr<T>(), g.ptr<T>(), y.ptr<T>(), rows, cols, log);
    });
  });
}

void cross_entropy_rows(const TensorArg& loss, const TensorArg& lse, const TensorArg& logits, const TensorArg& target,
                        const TensorArg& weight, const CrossEntropyParams& p, const TensorArg& status) {
  const int64_t rows = logits.shape[0], cols = logits.shape[1];
  MINIDL_CUDA_CHECK(cudaMemsetAsync(status.data, 0xFF, sizeof(int64_t), stream()));  // −1: no bad row yet
  if (rows == 0) return;
  dispatch_floating(logits.dtype, "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    launch_rows(rows, cols, [&](auto row, const Geometry& g) {
      cross_entropy_kernel<T, decltype(row)><<<g.grid, g.block, 0, stream()>>>(
          loss.ptr<T>(), lse.ptr<T>(), logits.ptr<T>(), target.ptr<int64_t>(), data_or_null<T>(weight), rows, cols,
          p.ignore_index, p.label_smoothing, status.ptr<int64_t>());
    });
  });
}

void cross_entropy_rows_backward(const TensorArg& gx, const TensorArg& scale, const TensorArg& logits,
                                 const TensorArg& lse, const TensorArg& target, const TensorArg& weight,
                                 const CrossEntropyParams& p) {
  const int64_t rows = logits.shape[0], cols = logits.shape[1];
  if (rows == 0 || cols == 0) return;
  dispatch_floating(logits.dtype, "cross_entropy backward", [&](auto tag) {
    using T = decltype(tag);
    launch_rows(rows, cols, [&](auto row, const Geometry& g) {
      cross_entropy_backward_kernel<T, decltype(row)><<<g.grid, g.block, 0, stream()>>>(
          gx.ptr<T>(), scale.ptr<T>(), stride_of_scale(scale), logits.ptr<T>(), lse.ptr<T>(), target.ptr<int64_t>(),
          data_or_null<T>(weight), rows, cols, p.ignore_index, p.label_smoothing);
    });
  });
}

void kl_div_rows(const TensorArg& loss, const TensorArg& lse, const TensorArg& student, const TensorArg& teacher,
                 double temperature) {
  const int64_t rows = student.shape[0], cols = student.shape[1];
  if (rows == 0) return;
  dispatch_floating(student.dtype, "kl_div_logits", [&](auto tag) {
    using T = decltype(tag);
    launch_rows(rows, cols, [&](auto row, const Geometry& g) {
      kl_div_kernel<T, decltype(row)><<<g.grid, g.block, 0, stream()>>>(loss.ptr<T>(), lse.ptr<T>(), student.ptr<T>(),
                                                                        teacher.ptr<T>(), rows, cols, temperature);
    });
  });
}

void kl_div_rows_backward(const TensorArg& gs, const TensorArg& gt, const TensorArg& scale, const TensorArg& student,
                          const TensorArg& teacher, const TensorArg& lse, const TensorArg& loss, double temperature) {
  const int64_t rows = student.shape[0], cols = student.shape[1];
  if (rows == 0 || cols == 0) return;
  dispatch_floating(student.dtype, "kl_div_logits backward", [&](auto tag) {
    using T = decltype(tag);
    launch_rows(rows, cols, [&](auto row, const Geometry& g) {
      kl_div_backward_kernel<T, decltype(row)><<<g.grid, g.block, 0, stream()>>>(
          data_or_null<T>(gs), data_or_null<T>(gt), scale.ptr<T>(), stride_of_scale(scale), student.ptr<T>(),
          teacher.ptr<T>(), lse.ptr<T>(), loss.ptr<T>(), rows, cols, temperature);
    });
  });
}

void distillation_rows(const TensorArg& kl, const TensorArg& ce, const TensorArg& grad, const TensorArg& student,
                       const TensorArg& teacher, const TensorArg& target, const DistillationParams& p,
                       const TensorArg& status) {
  const int64_t rows = student.shape[0], cols = student.shape[1];
  MINIDL_CUDA_CHECK(cudaMemsetAsync(status.data, 0xFF, sizeof(int64_t), stream()));  // −1: no bad row yet
  if (rows == 0) return;
  dispatch_floating(student.dtype, "distillation_loss", [&](auto tag) {
    using T = decltype(tag);
    launch_rows(rows, cols, [&](auto row, const Geometry& g) {
      distillation_kernel<T, decltype(row)><<<g.grid, g.block, 0, stream()>>>(
          kl.ptr<T>(), ce.ptr<T>(), data_or_null<T>(grad), student.ptr<T>(), teacher.ptr<T>(), target.ptr<int64_t>(),
          rows, cols, p.temperature, p.alpha * p.temperature * p.grad_scale, (1 - p.alpha) * p.grad_scale,
          status.ptr<int64_t>());
    });
  });
}

}  // namespace minidl::cuda
