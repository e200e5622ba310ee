// cuda/norm.cu — batch normalisation on the GPU, fused as on the CPU
// (ops/cpu/norm.cpp): the statistics and the backward's two sums are one block
// per channel, the normalisation one thread per element.
//
// x is viewed as (N, C, L) contiguous, L = H·W; channel c's M = N·L values are
// L-long runs strided by C·L. A block of 256 threads walks them (neighbouring
// threads, neighbouring addresses within a run) and reduces in double.
#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace minidl::cuda {

namespace {

struct Dims {
  int64_t N, C, L;
};
Dims dims_of(const TensorArg& x) { return {x.shape[0], x.shape[1], x.shape[2]}; }

// Position of the j-th value (0 ≤ j < N·L) of channel c.
__device__ inline int64_t channel_at(const Dims& d, int64_t c, int64_t j) {
  return ((j / d.L) * d.C + c) * d.L + j % d.L;
}

template <class T>
__global__ void stats_kernel(T* mean, T* var, const T* x, Dims d) {
  __shared__ double scratch[kWarp];
  const int64_t c = blockIdx.x, M = d.N * d.L;
  // Two passes: the mean, then squared deviations (no cancellation).
  double s = 0;
  for (int64_t j = threadIdx.x; j < M; j += blockDim.x) s += static_cast<double>(x[channel_at(d, c, j)]);
  const double mu = block_sum(s, scratch) / static_cast<double>(M);
  double ss = 0;
  for (int64_t j = threadIdx.x; j < M; j += blockDim.x) {
    const double dev = static_cast<double>(x[channel_at(d, c, j)]) - mu;
    ss += dev * dev;
  }
  ss = block_sum(ss, scratch);
  if (threadIdx.x == 0) {
    mean[c] = static_cast<T>(mu);
    var[c] = static_cast<T>(ss / static_cast<double>(M));  // biased: what normalisation uses
  }
}

// y = (x − mean) · invstd · w + b = x · scale + shift
template <class T>
__global__ void apply_kernel(T* y, const T* x, const T* mean, const T* invstd, const T* weight, const T* bias, Dims d) {
  MINIDL_CUDA_FOR(i, d.N * d.C * d.L) {
    const int64_t c = (i / d.L) % d.C;
    const T scale = invstd[c] * (weight ? weight[c] : T(1));
    const T shift = (bias ? bias[c] : T(0)) - mean[c] * scale;
    y[i] = x[i] * scale + shift;
  }
}

// Per channel: Σ dy and Σ dy·x̂, then (training) dx = w·invstd·(dy − mean(dy) − x̂·mean(dy·x̂)),
// (eval) dx = w·invstd·dy.
template <class T>
__global__ void backward_kernel(T* gx, T* gw, T* gb, const T* gy, const T* x, const T* mean, const T* invstd,
                                const T* weight, Dims d, bool training) {
  __shared__ double scratch[kWarp];
  const int64_t c = blockIdx.x, M = d.N * d.L;
  const double mu = mean[c], is = invstd[c];
  double sum_dy = 0, sum_dy_xhat = 0;
  for (int64_t j = threadIdx.x; j < M; j += blockDim.x) {
    const int64_t at = channel_at(d, c, j);
    const double g = gy[at];
    sum_dy += g;
    sum_dy_xhat += g * (static_cast<double>(x[at]) - mu) * is;
  }
  sum_dy = block_sum(sum_dy, scratch);
  sum_dy_xhat = block_sum(sum_dy_xhat, scratch);
  if (threadIdx.x == 0) {
    if (gw) gw[c] = static_cast<T>(sum_dy_xhat);
    if (gb) gb[c] = static_cast<T>(sum_dy);
  }
  if (!gx) return;
  const double k = (weight ? static_cast<double>(weight[c]) : 1.0) * is;
  const double mean_dy = training ? sum_dy / static_cast<double>(M) : 0;
  const double mean_dy_xhat = training ? sum_dy_xhat / static_cast<double>(M) : 0;
  for (int64_t j = threadIdx.x; j < M; j += blockDim.x) {
    const int64_t at = channel_at(d, c, j);
    const double xhat = (static_cast<double>(x[at]) - mu) * is;
    gx[at] = static_cast<T>(k * (static_cast<double>(gy[at]) - mean_dy - xhat * mean_dy_xhat));
  }
}

template <class T>
T* data_or_null(const TensorArg& a) {
  return a.data ? a.ptr<T>() : nullptr;
}

unsigned channel_blocks(const Dims& d) {
  if (d.C > 0x7fffffff) throw Error("batch_norm: more than 2^31 - 1 channels on CUDA");
  return static_cast<unsigned>(d.C);
}

}  // namespace

void batch_norm_stats(const TensorArg& mean, const TensorArg& var, const TensorArg& x) {
  const Dims d = dims_of(x);
  if (d.C == 0) return;
  dispatch_f32_f64(x.dtype, "batch_norm", [&](auto tag) {
    using T = decltype(tag);
    stats_kernel<T><<<channel_blocks(d), kThreads, 0, stream()>>>(mean.ptr<T>(), var.ptr<T>(), x.ptr<T>(), d);
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

void batch_norm_apply(const TensorArg& y, const TensorArg& x, const TensorArg& mean, const TensorArg& invstd,
                      const TensorArg& weight, const TensorArg& bias) {
  const Dims d = dims_of(x);
  const int64_t n = d.N * d.C * d.L;
  if (n == 0) return;
  dispatch_f32_f64(x.dtype, "batch_norm", [&](auto tag) {
    using T = decltype(tag);
    apply_kernel<T><<<blocks_for(n), kThreads, 0, stream()>>>(y.ptr<T>(), x.ptr<T>(), mean.ptr<T>(), invstd.ptr<T>(),
                                                 data_or_null<T>(weight), data_or_null<T>(bias), d);
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

void batch_norm_backward(const TensorArg& gx, const TensorArg& gw, const TensorArg& gb, const TensorArg& gy,
                         const TensorArg& x, const TensorArg& mean, const TensorArg& invstd, const TensorArg& weight,
                         bool training) {
  const Dims d = dims_of(x);
  if (d.C == 0) return;
  dispatch_f32_f64(x.dtype, "batch_norm backward", [&](auto tag) {
    using T = decltype(tag);
    backward_kernel<T><<<channel_blocks(d), kThreads, 0, stream()>>>(data_or_null<T>(gx), data_or_null<T>(gw), data_or_null<T>(gb),
                                                        gy.ptr<T>(), x.ptr<T>(), mean.ptr<T>(), invstd.ptr<T>(),
                                                        data_or_null<T>(weight), d, training);
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace minidl::cuda
