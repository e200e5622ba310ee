// ops/cpu/optim.cpp — the optimizers' update kernels: one pass over each parameter.
//
// Bandwidth-bound: SGD reads p, g and the momentum buffer and writes two of them;
// Adam streams five arrays. One fused loop per parameter (instead of one op per
// term) touches each element once; large parameters split across threads.
// Parameters are f32 or bf16; the arithmetic and the state are f32.
#include <cmath>

#include "core/dtype_dispatch.h"
#include "ops/cpu/kernels.h"

namespace minidl::cpu {

namespace {
constexpr int64_t kOptimGrain = 65536;

void check_operands(const char* op, const TensorArg& param, const TensorArg& grad) {
  if (!param.is_contiguous() || !grad.is_contiguous() || grad.dtype != param.dtype || grad.numel() != param.numel())
    throw Error(std::string(op) + ": parameter and gradient must be contiguous, of one dtype and size");
}
}  // namespace

void sgd_step(const TensorArg& param, const TensorArg& grad, const TensorArg& buffer, const SgdStepArgs& a) {
  dispatch_f32_bf16(param.dtype, "sgd_step", [&](auto tag) {
    using P = decltype(tag);
    check_operands("sgd_step", param, grad);
    P* p = param.ptr<P>();
    const P* g = grad.ptr<P>();
    float* buf = buffer.ptr<float>();
    const int64_t n = param.numel();
    const float lr = static_cast<float>(a.lr), wd = static_cast<float>(a.weight_decay);
    const float mom = static_cast<float>(a.momentum), damp = static_cast<float>(1 - a.dampening);
    const bool first = a.first_step, nesterov = a.nesterov;
#pragma omp parallel for if (n > kOptimGrain)
    for (int64_t k = 0; k < n; ++k) {
      const float pk = static_cast<float>(p[k]);
      float gk = static_cast<float>(g[k]) + wd * pk;
      if (buf) {
        buf[k] = first ? gk : mom * buf[k] + damp * gk;
        gk = nesterov ? gk + mom * buf[k] : buf[k];
      }
      p[k] = static_cast<P>(pk - lr * gk);
    }
  });
}

void adam_step(const TensorArg& param, const TensorArg& grad, const TensorArg& exp_avg, const TensorArg& exp_avg_sq,
               const AdamStepArgs& a) {
  dispatch_f32_bf16(param.dtype, "adam_step", [&](auto tag) {
    using P = decltype(tag);
    check_operands("adam_step", param, grad);
    P* p = param.ptr<P>();
    const P* g = grad.ptr<P>();
    float* m = exp_avg.ptr<float>();
    float* v = exp_avg_sq.ptr<float>();
    const int64_t n = param.numel();
    const double bc1 = 1 - std::pow(a.beta1, static_cast<double>(a.step));
    const double bc2 = 1 - std::pow(a.beta2, static_cast<double>(a.step));
    const float lr = static_cast<float>(a.lr), wd = static_cast<float>(a.weight_decay);
    const float b1 = static_cast<float>(a.beta1), b2 = static_cast<float>(a.beta2), eps = static_cast<float>(a.eps);
    const float step_size = static_cast<float>(a.lr / bc1), inv_sqrt_bc2 = static_cast<float>(1 / std::sqrt(bc2));
    const bool decoupled = a.decoupled_weight_decay;
#pragma omp parallel for if (n > kOptimGrain)
    for (int64_t k = 0; k < n; ++k) {
      float pk = static_cast<float>(p[k]);
      float gk = static_cast<float>(g[k]);
      if (decoupled)
        pk *= 1 - lr * wd;
      else
        gk += wd * pk;
      m[k] = b1 * m[k] + (1 - b1) * gk;
      v[k] = b2 * v[k] + (1 - b2) * gk * gk;
      p[k] = static_cast<P>(pk - step_size * m[k] / (std::sqrt(v[k]) * inv_sqrt_bc2 + eps));
    }
  });
}

}  // namespace minidl::cpu
