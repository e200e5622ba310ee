// ops/optim_update.h — the optimizers' per-element arithmetic, written once for
// both backends: ops/cpu/optim.cpp runs it in an OpenMP loop, cuda/optim.cu in a
// grid-stride loop. Plain host/device inline functions, f32 throughout.
#pragma once

#include <cmath>

#include "core/dtype.h"
#include "ops/kernel_types.h"

namespace minidl {

// SGD's step in f32, from SgdStepArgs (ops/kernel_types.h).
struct SgdUpdate {
  float lr, weight_decay, momentum, damp;  // damp = 1 − dampening
  bool first, nesterov;
  explicit SgdUpdate(const SgdStepArgs& a)
      : lr(static_cast<float>(a.lr)),
        weight_decay(static_cast<float>(a.weight_decay)),
        momentum(static_cast<float>(a.momentum)),
        damp(static_cast<float>(1 - a.dampening)),
        first(a.first_step),
        nesterov(a.nesterov) {}
  // The new value of parameter p with gradient g; buf (the momentum buffer, or
  // null without momentum) is updated in place.
  MINIDL_HOST_DEVICE float operator()(float p, float g, float* buf) const {
    g += weight_decay * p;
    if (buf) {
      *buf = first ? g : momentum * *buf + damp * g;
      g = nesterov ? g + momentum * *buf : *buf;
    }
    return p - lr * g;
  }
};

// Adam / AdamW's step in f32: the bias corrections 1 − β^t folded into the step
// size and the denominator once per call.
struct AdamUpdate {
  float lr, weight_decay, beta1, beta2, eps, step_size = 0, inv_sqrt_bc2 = 0;
  bool decoupled;
  double lr64, beta1_64, beta2_64;  // for the bias corrections, in f64
  explicit AdamUpdate(const AdamStepArgs& a)
      : lr(static_cast<float>(a.lr)),
        weight_decay(static_cast<float>(a.weight_decay)),
        beta1(static_cast<float>(a.beta1)),
        beta2(static_cast<float>(a.beta2)),
        eps(static_cast<float>(a.eps)),
        decoupled(a.decoupled_weight_decay),
        lr64(a.lr),
        beta1_64(a.beta1),
        beta2_64(a.beta2) {
    set_step(a.step);
  }
  // The learning rate (on the GPU, read from device memory); set_step folds it in.
  MINIDL_HOST_DEVICE void set_lr(double rate) {
    lr64 = rate;
    lr = static_cast<float>(rate);
  }
  // The bias corrections of step t (on the GPU, a kernel calls this with the
  // step count it reads from device memory).
  // (::pow, ::sqrt: the math library's, host and device, which minidl's tensor
  // ops of the same names would hide where both are declared.)
  MINIDL_HOST_DEVICE void set_step(int64_t t) {
    step_size = static_cast<float>(lr64 / (1 - ::pow(beta1_64, static_cast<double>(t))));
    inv_sqrt_bc2 = static_cast<float>(1 / ::sqrt(1 - ::pow(beta2_64, static_cast<double>(t))));
  }
  // The new value of p; the moments m and v are updated in place.
  MINIDL_HOST_DEVICE float operator()(float p, float g, float& m, float& v) const {
    // AdamW decays the weight itself; Adam adds L2 through the gradient.
    g = decoupled ? g : g + weight_decay * p;
    p = decoupled ? p * (1 - lr * weight_decay) : p;
    m = beta1 * m + (1 - beta1) * g;
    v = beta2 * v + (1 - beta2) * g * g;
#ifdef __CUDA_ARCH__
    const float root = sqrtf(v);
#else
    const float root = std::sqrt(v);
#endif
    return p - step_size * m / (root * inv_sqrt_bc2 + eps);
  }
};

}  // namespace minidl
