// cuda/pending.cpp — the CUDA twins (cuda/kernels.h) not written yet.
//
// Compiled in every build: with CUDA each says the kernel does not exist yet; in
// a build without CUDA, that minidl was built without it. The CUDA backend issue
// deletes each line here as the real kernel lands in cuda/<family>.cu.
#include "core/error.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"

namespace minidl::cuda {

namespace {
[[noreturn]] void pending(const char* kernel) {
  if (!built_with_cuda())
    throw Error(std::string(kernel) + ": minidl was built without CUDA (configure with -DMINIDL_CUDA=ON and nvcc)");
  throw Error(std::string(kernel) +
              ": no CUDA kernel yet (the CUDA backend issue adds it); move the tensors to the "
              "CPU with .to(\"cpu\") meanwhile");
}
}  // namespace

void copy(const TensorArg&, const TensorArg&) { pending("copy"); }
void unary(UnaryOp, const TensorArg&, const TensorArg&, double, double) { pending("unary"); }
void binary(BinaryOp, const TensorArg&, const TensorArg&, const TensorArg&) { pending("binary"); }
void where(const TensorArg&, const TensorArg&, const TensorArg&, const TensorArg&) { pending("where"); }
void reduce_rows(ReduceOp, const TensorArg&, const TensorArg&, const TensorArg&, double) { pending("reduce_rows"); }
void gemm(int64_t, int64_t, int64_t, double, const TensorArg&, const TensorArg&, double, const TensorArg&, GemmKernel,
          const GemmEpilogue&) {
  pending("gemm");
}
void conv2d_forward(const TensorArg&, const TensorArg&, const TensorArg&, const TensorArg&, const Conv2dParams&) {
  pending("conv2d_forward");
}
void conv2d_backward(const TensorArg&, const TensorArg&, const TensorArg&, const TensorArg&, const TensorArg&,
                     const TensorArg&, const TensorArg&, const Conv2dParams&) {
  pending("conv2d_backward");
}
void max_pool2d_forward(const TensorArg&, int32_t*, const TensorArg&, const Pool2dParams&) {
  pending("max_pool2d_forward");
}
void max_pool2d_backward(const TensorArg&, const TensorArg&, const int32_t*) { pending("max_pool2d_backward"); }
void avg_pool2d_forward(const TensorArg&, const TensorArg&, const Pool2dParams&) { pending("avg_pool2d_forward"); }
void avg_pool2d_backward(const TensorArg&, const TensorArg&, const Pool2dParams&) { pending("avg_pool2d_backward"); }
void adaptive_avg_pool2d_forward(const TensorArg&, const TensorArg&) { pending("adaptive_avg_pool2d_forward"); }
void adaptive_avg_pool2d_backward(const TensorArg&, const TensorArg&) { pending("adaptive_avg_pool2d_backward"); }
void batch_norm_stats(const TensorArg&, const TensorArg&, const TensorArg&) { pending("batch_norm_stats"); }
void batch_norm_apply(const TensorArg&, const TensorArg&, const TensorArg&, const TensorArg&, const TensorArg&,
                      const TensorArg&) {
  pending("batch_norm_apply");
}
void batch_norm_backward(const TensorArg&, const TensorArg&, const TensorArg&, const TensorArg&, const TensorArg&,
                         const TensorArg&, const TensorArg&, const TensorArg&, bool) {
  pending("batch_norm_backward");
}
void softmax_rows(const TensorArg&, const TensorArg&, bool) { pending("softmax_rows"); }
void softmax_rows_backward(const TensorArg&, const TensorArg&, const TensorArg&, bool) {
  pending("softmax_rows_backward");
}
void cross_entropy_rows(const TensorArg&, const TensorArg&, const TensorArg&, const TensorArg&, const TensorArg&,
                        const CrossEntropyParams&, const TensorArg&) {
  pending("cross_entropy_rows");
}
void cross_entropy_rows_backward(const TensorArg&, const TensorArg&, const TensorArg&, const TensorArg&,
                                 const TensorArg&, const TensorArg&, const CrossEntropyParams&) {
  pending("cross_entropy_rows_backward");
}
void kl_div_rows(const TensorArg&, const TensorArg&, const TensorArg&, const TensorArg&, double) {
  pending("kl_div_rows");
}
void kl_div_rows_backward(const TensorArg&, const TensorArg&, const TensorArg&, const TensorArg&, const TensorArg&,
                          const TensorArg&, const TensorArg&, double) {
  pending("kl_div_rows_backward");
}
void find_out_of_range(const TensorArg&, const TensorArg&, int64_t, int64_t) { pending("find_out_of_range"); }
void index_select(const TensorArg&, const TensorArg&, const TensorArg&) { pending("index_select"); }
void index_add(const TensorArg&, const TensorArg&, const TensorArg&) { pending("index_add"); }
void gather(const TensorArg&, const TensorArg&, const TensorArg&, int) { pending("gather"); }
void scatter_add(const TensorArg&, const TensorArg&, const TensorArg&, int) { pending("scatter_add"); }
void sgd_step(const TensorArg&, const TensorArg&, const TensorArg&, const SgdStepArgs&) { pending("sgd_step"); }
void adam_step(const TensorArg&, const TensorArg&, const TensorArg&, const TensorArg&, const AdamStepArgs&) {
  pending("adam_step");
}

}  // namespace minidl::cuda
