// cuda/optim.cu — the optimizers' update steps: checks, then one fused pass per
// parameter (the kernels are in cuda/optim_kernels.cuh).
//
// One thread per element running the same per-element update as the CPU
// (ops/optim_update.h: SgdUpdate, AdamUpdate): SGD reads p, g and the momentum
// buffer; Adam streams five arrays. Parameters are f32 or bf16; the arithmetic
// and the optimizer state are f32.
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/optim_kernels.cuh"

namespace minidl::cuda {

using namespace optim_kernels;

namespace {

void check_operands(const char* op, const TensorArg& param, const TensorArg& grad) {
  if (!param.is_contiguous() || !grad.is_contiguous() || grad.dtype != param.dtype || grad.numel() != param.numel())
    throw Error(std::string(op) + ": parameter and gradient must be contiguous, of one dtype and size");
}

template <class T>
const T* or_null(const TensorArg& t) {
  return t.data ? t.ptr<T>() : nullptr;
}

}  // namespace

void sgd_step(const TensorArg& param, const TensorArg& grad, const TensorArg& buffer, const SgdStepArgs& a,
              const TensorArg& step_count, const TensorArg& lr) {
  check_operands("sgd_step", param, grad);
  const int64_t n = param.numel();
  if (n == 0) return;
  dispatch_f32_bf16(param.dtype, "sgd_step", [&](auto tag) {
    using P = decltype(tag);
    sgd_kernel<P><<<blocks_for(n), kThreads, 0, stream()>>>(
        param.ptr<P>(), grad.ptr<P>(), buffer.data ? buffer.ptr<float>() : nullptr, n, SgdUpdate(a),
        or_null<int64_t>(step_count), or_null<double>(lr));
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

void adam_step(const TensorArg& param, const TensorArg& grad, const TensorArg& exp_avg, const TensorArg& exp_avg_sq,
               const AdamStepArgs& a, const TensorArg& step_count, const TensorArg& lr) {
  check_operands("adam_step", param, grad);
  const int64_t n = param.numel();
  if (n == 0) return;
  dispatch_f32_bf16(param.dtype, "adam_step", [&](auto tag) {
    using P = decltype(tag);
    adam_kernel<P><<<blocks_for(n), kThreads, 0, stream()>>>(param.ptr<P>(), grad.ptr<P>(), exp_avg.ptr<float>(),
                                                             exp_avg_sq.ptr<float>(), n, AdamUpdate(a),
                                                             or_null<int64_t>(step_count), or_null<double>(lr));
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace minidl::cuda
