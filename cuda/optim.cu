// cuda/optim.cu — the optimizers' update kernels, one fused pass per parameter.
//
// The same arithmetic as ops/cpu/optim.cpp, one thread per element: SGD reads
// p, g and the momentum buffer; Adam streams five arrays. Parameters are f32 or
// bf16; the arithmetic and the optimizer state are f32.
#include <cmath>

#include "cuda/common.cuh"
#include "cuda/kernels.h"

namespace minidl::cuda {

namespace {

void check_operands(const char* op, const TensorArg& param, const TensorArg& grad) {
  if (!param.is_contiguous() || !grad.is_contiguous() || grad.dtype != param.dtype || grad.numel() != param.numel())
    throw Error(std::string(op) + ": parameter and gradient must be contiguous, of one dtype and size");
}

template <class P>
__global__ void sgd_kernel(P* p, const P* g, float* buf, int64_t n, float lr, float wd, float mom, float damp,
                           bool first, bool nesterov) {
  MINIDL_CUDA_FOR(k, n) {
    const float pk = static_cast<float>(p[k]);
    float gk = static_cast<float>(g[k]) + wd * pk;
    if (buf) {
      buf[k] = first ? gk : mom * buf[k] + damp * gk;
      gk = nesterov ? gk + mom * buf[k] : buf[k];
    }
    p[k] = P(pk - lr * gk);
  }
}

template <class P>
__global__ void adam_kernel(P* p, const P* g, float* m, float* v, int64_t n, float lr, float wd, float b1, float b2,
                            float eps, float step_size, float inv_sqrt_bc2, bool decoupled) {
  MINIDL_CUDA_FOR(k, n) {
    float pk = static_cast<float>(p[k]);
    float gk = static_cast<float>(g[k]);
    if (decoupled)
      pk *= 1 - lr * wd;
    else
      gk += wd * pk;
    m[k] = b1 * m[k] + (1 - b1) * gk;
    v[k] = b2 * v[k] + (1 - b2) * gk * gk;
    p[k] = P(pk - step_size * m[k] / (sqrtf(v[k]) * inv_sqrt_bc2 + eps));
  }
}

}  // namespace

void sgd_step(const TensorArg& param, const TensorArg& grad, const TensorArg& buffer, const SgdStepArgs& a) {
  check_operands("sgd_step", param, grad);
  const int64_t n = param.numel();
  if (n == 0) return;
  dispatch_f32_bf16(param.dtype, "sgd_step", [&](auto tag) {
    using P = decltype(tag);
    sgd_kernel<P><<<blocks_for(n), kThreads>>>(param.ptr<P>(), grad.ptr<P>(), buffer.data ? buffer.ptr<float>() : nullptr,
                                               n, static_cast<float>(a.lr), static_cast<float>(a.weight_decay),
                                               static_cast<float>(a.momentum), static_cast<float>(1 - a.dampening),
                                               a.first_step, a.nesterov);
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

void adam_step(const TensorArg& param, const TensorArg& grad, const TensorArg& exp_avg, const TensorArg& exp_avg_sq,
               const AdamStepArgs& a) {
  check_operands("adam_step", param, grad);
  const int64_t n = param.numel();
  if (n == 0) return;
  const double bc1 = 1 - std::pow(a.beta1, static_cast<double>(a.step));
  const double bc2 = 1 - std::pow(a.beta2, static_cast<double>(a.step));
  dispatch_f32_bf16(param.dtype, "adam_step", [&](auto tag) {
    using P = decltype(tag);
    adam_kernel<P><<<blocks_for(n), kThreads>>>(
        param.ptr<P>(), grad.ptr<P>(), exp_avg.ptr<float>(), exp_avg_sq.ptr<float>(), n, static_cast<float>(a.lr),
        static_cast<float>(a.weight_decay), static_cast<float>(a.beta1), static_cast<float>(a.beta2),
        static_cast<float>(a.eps), static_cast<float>(a.lr / bc1), static_cast<float>(1 / std::sqrt(bc2)),
        a.decoupled_weight_decay);
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace minidl::cuda
