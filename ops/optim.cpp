// ops/optim.cpp — the optimizer update steps: checks, then the device's kernel.
#include "ops/optim.h"

#include "core/check.h"
#include "cuda/kernels.h"
#include "ops/cpu/kernels.h"
#include "ops/dispatch.h"

namespace minidl {

namespace {
// The gradient as the kernels read it: contiguous, in the parameter's dtype.
Tensor kernel_grad(const char* op, const Tensor& param, const Tensor& grad) {
  MINIDL_CHECK(grad.shape() == param.shape(), "{}: gradient of shape {} for a parameter of shape {}", op, grad.shape(),
               param.shape());
  MINIDL_CHECK(param.is_contiguous(), "{}: the parameter must be contiguous (shape {}, strides {})", op, param.shape(),
               param.strides());
  MINIDL_CHECK(param.dtype() == DType::f32 || param.dtype() == DType::bf16,
               "{}: parameters must be f32 or bf16, got {}", op, param.dtype());
  return grad.dtype() == param.dtype() ? grad.contiguous() : grad.to(param.dtype()).contiguous();
}
void check_state(const char* op, const Tensor& param, const Tensor& state, const char* what) {
  MINIDL_CHECK(state.shape() == param.shape() && state.dtype() == DType::f32 && state.is_contiguous(),
               "{}: {} must be a contiguous f32 tensor of the parameter's shape {}, got {} {}", op, what, param.shape(),
               state.dtype(), state.shape());
}
// The step number from step_count (checked) on the CPU; on a GPU the kernel reads it.
void check_step_count(const char* op, const Tensor& param, const Tensor& step_count) {
  MINIDL_CHECK(step_count.dtype() == DType::int64 && step_count.numel() == 1 && step_count.device() == param.device(),
               "{}: step_count must be one int64 on the parameter's device {}, got {} {} on {}", op, param.device(),
               step_count.dtype(), step_count.shape(), step_count.device());
}
void check_lr(const char* op, const Tensor& param, const Tensor& step_count, const Tensor& lr) {
  MINIDL_CHECK(lr.dtype() == DType::f64 && lr.numel() == 1 && lr.device() == param.device(),
               "{}: lr must be one f64 on the parameter's device {}, got {} {} on {}", op, param.device(), lr.dtype(),
               lr.shape(), lr.device());
  MINIDL_CHECK(step_count.defined() || param.device().is_cpu(),
               "{}: a learning rate on the GPU comes with its step count (the kernel folds both)", op);
}
int64_t host_step(const Tensor& step_count) {
  const double t = step_count.item();
  MINIDL_CHECK(t >= 1, "optimizer step: step_count must be at least 1, got {}", t);
  return static_cast<int64_t>(t);
}
}  // namespace

void sgd_step(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer, const SgdStepArgs& p,
              const Tensor& step_count, const Tensor& lr) {
  Device device = common_device("sgd_step", {param, grad, momentum_buffer});
  Tensor g = kernel_grad("sgd_step", param, grad);
  if (momentum_buffer.defined()) check_state("sgd_step", param, momentum_buffer, "momentum_buffer");
  if (step_count.defined()) check_step_count("sgd_step", param, step_count);
  if (lr.defined()) check_lr("sgd_step", param, step_count, lr);
  if (device.is_cuda()) {
    cuda::sgd_step(param.arg(), g.arg(), arg_or_null(momentum_buffer), p, arg_or_null(step_count), arg_or_null(lr));
  } else {
    SgdStepArgs a = p;
    if (step_count.defined()) a.first_step = host_step(step_count) == 1;
    if (lr.defined()) a.lr = lr.item();
    cpu::sgd_step(param.arg(), g.arg(), arg_or_null(momentum_buffer), a);
  }
  param.bump_version();
  if (momentum_buffer.defined()) momentum_buffer.bump_version();
}

void adam_step(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
               const AdamStepArgs& p, const Tensor& step_count, const Tensor& lr) {
  Device device = common_device("adam_step", {param, grad, exp_avg, exp_avg_sq});
  Tensor g = kernel_grad("adam_step", param, grad);
  check_state("adam_step", param, exp_avg, "exp_avg");
  check_state("adam_step", param, exp_avg_sq, "exp_avg_sq");
  if (step_count.defined()) check_step_count("adam_step", param, step_count);
  if (lr.defined()) check_lr("adam_step", param, step_count, lr);
  if (device.is_cuda()) {
    cuda::adam_step(param.arg(), g.arg(), exp_avg.arg(), exp_avg_sq.arg(), p, arg_or_null(step_count), arg_or_null(lr));
  } else {
    AdamStepArgs a = p;
    if (step_count.defined()) a.step = host_step(step_count);
    if (lr.defined()) a.lr = lr.item();
    cpu::adam_step(param.arg(), g.arg(), exp_avg.arg(), exp_avg_sq.arg(), a);
  }
  param.bump_version();
  exp_avg.bump_version();
  exp_avg_sq.bump_version();
}

}  // namespace minidl
