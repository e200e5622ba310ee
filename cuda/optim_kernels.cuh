// cuda/optim_kernels.cuh — the optimizers' update kernels of cuda/optim.cu, one
// fused pass per parameter: one thread per element running the same
// per-element update as the CPU (ops/optim_update.h: SgdUpdate, AdamUpdate).
//
// Kept apart from their launchers so the host compiler also builds them through
// tests/cuda_emulator.h, and the CPU suite checks them against the CPU's
// updates (tests/test_cuda_emulated.cpp) — in particular the step count and
// learning rate they read from device memory. In an unnamed namespace: each
// program that includes this header gets its own copy.
#pragma once

#include <cstdint>

#include "cuda/device.cuh"
#include "ops/optim_update.h"

namespace minidl::cuda::optim_kernels {
namespace {

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

}  // namespace
}  // namespace minidl::cuda::optim_kernels
