// cuda/optim.cu — the optimizers' update kernels, one fused pass per parameter.
//
// One thread per element running the same per-element update as the CPU
// (ops/optim_update.h: SgdUpdate, AdamUpdate): SGD reads p, g and the momentum
// buffer; Adam streams five arrays. Parameters are f32 or bf16; the arithmetic
// and the optimizer state are f32.
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "ops/optim_update.h"

namespace minidl::cuda {

namespace {

void check_operands(const char* op, const TensorArg& param, const TensorArg& grad) {
  if (!param.is_contiguous() || !grad.is_contiguous() || grad.dtype != param.dtype || grad.numel() != param.numel())
    throw Error(std::string(op) + ": parameter and gradient must be contiguous, of one dtype and size");
}

// `step`, when not null, is the optimizer's step count in device memory (the
// number of this step, advanced by a kernel just before), and `lr` its learning
// rate there (written by set_lr between steps): read here, so that a CUDA graph
// replaying the step sees each replay's count and rate, not the capture's.
template <class P>
__global__ void sgd_kernel(P* p, const P* g, float* buf, int64_t n, SgdUpdate update, const int64_t* step,
                           const double* lr) {
  if (step) update.first = *step == 1;
  if (lr) update.lr = static_cast<float>(*lr);
  MINIDL_CUDA_FOR(k, n) p[k] = P(update(static_cast<float>(p[k]), static_cast<float>(g[k]), buf ? buf + k : nullptr));
}

template <class P>
__global__ void adam_kernel(P* p, const P* g, float* m, float* v, int64_t n, AdamUpdate update, const int64_t* step,
                            const double* lr) {
  if (lr) update.set_lr(*lr);        // before set_step, which folds the rate into the step size
  if (step) update.set_step(*step);  // two f64 pows per thread: nothing beside five streamed arrays
  MINIDL_CUDA_FOR(k, n) p[k] = P(update(static_cast<float>(p[k]), static_cast<float>(g[k]), m[k], v[k]));
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
