// ops/cpu/optim.cpp — the optimizers' update kernels: one pass over each parameter.
//
// Bandwidth-bound: SGD reads p, g and the momentum buffer and writes two of them;
// Adam streams five arrays. One fused loop per parameter (instead of one op per
// term) touches each element once; large parameters split across threads.
// Parameters are f32 or bf16; the arithmetic (ops/optim_update.h, shared with
// the CUDA kernels) and the state are f32.
#include <cmath>

#include "core/dtype_dispatch.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/loops.h"
#include "ops/optim_update.h"

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
    const SgdUpdate update(a);
    // Each thread works on its own copy of the update's constants: the compiler
    // then knows the stores to p cannot change them, and keeps them in registers.
    // Two loops, with and without the momentum buffer, so neither holds a branch and both vectorise.
    parallel_for(n > kOptimGrain, n, [&](int64_t k0, int64_t k1) {
      const SgdUpdate u = update;
      if (buf) {
        for (int64_t k = k0; k < k1; ++k)
          p[k] = static_cast<P>(u(static_cast<float>(p[k]), static_cast<float>(g[k]), buf + k));
      } else {
        for (int64_t k = k0; k < k1; ++k)
          p[k] = static_cast<P>(u(static_cast<float>(p[k]), static_cast<float>(g[k]), nullptr));
      }
    });
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
    const AdamUpdate update(a);
    parallel_for(n > kOptimGrain, n, [&](int64_t k0, int64_t k1) {
      const AdamUpdate u = update;  // this thread's copy, as in sgd_step
      for (int64_t k = k0; k < k1; ++k)
        p[k] = static_cast<P>(u(static_cast<float>(p[k]), static_cast<float>(g[k]), m[k], v[k]));
    });
  });
}

}  // namespace minidl::cpu
