// ops/optim.h — the optimizers' fused update steps, one kernel call per parameter.
//
// nn/optim.cpp writes each optimizer's equations once (as PyTorch documents them)
// and calls these for the arithmetic; each dispatches to the parameter's device
// (cpu::sgd_step / cuda::sgd_step). Parameters may be f32 or bf16: the update is
// computed in f32 and the state (momentum, Adam's moments) is always f32, so a
// bf16 model keeps full-precision optimizer state.
#pragma once

#include "core/tensor.h"
#include "ops/kernel_types.h"

namespace minidl {

// param (n) f32|bf16 and its gradient (same shape; converted to param's dtype);
// momentum_buffer f32 (n), undefined when momentum is 0. All updated in place.
//
// step_count, when given, is a 0-d int64 tensor on the parameter's device holding
// the number of the step being taken (1, 2, ...); the kernel reads it there in
// place of p.first_step / p.step. On a GPU that is what lets a CUDA graph replay
// an optimizer step: the count is advanced by a kernel inside the graph, where a
// number passed from the host would be frozen at its value at capture.
//
// lr, when given, is a 0-d f64 tensor on the parameter's device holding the
// learning rate, read in place of p.lr, for the same reason: a schedule writes
// it between replays (nn::Optimizer::set_lr). On a GPU it comes with a step_count.
void sgd_step(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer, const SgdStepArgs& p,
              const Tensor& step_count = Tensor(), const Tensor& lr = Tensor());

// param f32|bf16, grad, exp_avg and exp_avg_sq f32, all of param's shape.
void adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
               const AdamStepArgs& p, const Tensor& step_count = Tensor(), const Tensor& lr = Tensor());

}  // namespace minidl
