// cuda/stub.cpp — stands in for cuda/ when minidl is built without CUDA
// (MINIDL_CUDA=OFF, or AUTO without nvcc). Every call that needs a GPU says so.
#include "core/error.h"
#include "core/storage.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"

namespace minidl::cuda {

namespace {
[[noreturn]] void no_cuda(const char* what) {
  throw Error(std::string(what) + ": minidl was built without CUDA (configure with -DMINIDL_CUDA=ON and nvcc)");
}
}  // namespace

bool built_with_cuda() { return false; }
int device_count() { return 0; }
bool is_available() { return false; }
std::string unavailable_reason() { return "minidl was built without CUDA"; }
DeviceInfo device_info(int) { no_cuda("device_info"); }
Allocator& allocator(int) { no_cuda("cuda allocator"); }
AllocatorStats allocator_stats(int) { no_cuda("cuda allocator statistics"); }
void empty_cache(int) { no_cuda("cuda empty_cache"); }
void set_poison(bool) {}
Scratch::Scratch(size_t, int) { no_cuda("cuda scratch memory"); }
Scratch::~Scratch() = default;
void memcpy_host_to_device(void*, const void*, size_t, int) { no_cuda("copy to cuda"); }
void memcpy_device_to_host(void*, const void*, size_t, int) { no_cuda("copy from cuda"); }
void memcpy_device_to_device(void*, int, const void*, int, size_t) { no_cuda("copy between cuda devices"); }
void fill(const TensorArg&, double, int) { no_cuda("fill on cuda"); }
void synchronize(int) { no_cuda("cuda synchronize"); }
double time_with_events(const std::function<void()>&) { no_cuda("cuda event timing"); }
void flush_l2(int) { no_cuda("cuda flush_l2"); }
Graph::Graph(const std::function<void()>&) { no_cuda("cuda graph"); }
Graph::~Graph() = default;
void Graph::replay() { no_cuda("cuda graph replay"); }
int64_t Graph::nodes() const { return 0; }
bool capturing() { return false; }

// The kernels (cuda/kernels.h) that a CUDA build has in cuda/*.cu.
void copy(const TensorArg&, const TensorArg&) { no_cuda("copy"); }
void dropout_mask(const TensorArg&, double, uint64_t) { no_cuda("dropout"); }
void unary(UnaryOp, const TensorArg&, const TensorArg&, double, double) { no_cuda("unary"); }
void binary(BinaryOp, const TensorArg&, const TensorArg&, const TensorArg&) { no_cuda("binary"); }
void where(const TensorArg&, const TensorArg&, const TensorArg&, const TensorArg&) { no_cuda("where"); }
void reduce_rows(ReduceOp, const TensorArg&, const TensorArg&, const TensorArg&, double) { no_cuda("reduce_rows"); }
void gemm(int64_t, int64_t, int64_t, double, const TensorArg&, const TensorArg&, double, const TensorArg&, GemmKernel,
          const GemmEpilogue&) {
  no_cuda("gemm");
}
const char* gemm_kernel_name() { return "none (built without CUDA)"; }
bool have_cublas() { return false; }
void sgemm_handwritten(int, int64_t, int64_t, int64_t, float, const TensorArg&, const TensorArg&, float, const TensorArg&,
                       const GemmEpilogue&) {
  no_cuda("sgemm_handwritten");
}
void set_row_layout(RowLayout) {}  // a preference only: with no CUDA kernels there is nothing it could change
RowLayout row_layout() { return RowLayout::automatic; }
RowLayout automatic_row_layout(int64_t) { no_cuda("automatic_row_layout"); }
void softmax_rows(const TensorArg&, const TensorArg&, bool) { no_cuda("softmax_rows"); }
void softmax_rows_backward(const TensorArg&, const TensorArg&, const TensorArg&, bool) {
  no_cuda("softmax_rows_backward");
}
void cross_entropy_rows(const TensorArg&, const TensorArg&, const TensorArg&, const TensorArg&, const TensorArg&,
                        const CrossEntropyParams&, const TensorArg&) {
  no_cuda("cross_entropy_rows");
}
void cross_entropy_rows_backward(const TensorArg&, const TensorArg&, const TensorArg&, const TensorArg&,
                                 const TensorArg&, const TensorArg&, const CrossEntropyParams&) {
  no_cuda("cross_entropy_rows_backward");
}
void kl_div_rows(const TensorArg&, const TensorArg&, const TensorArg&, const TensorArg&, double) {
  no_cuda("kl_div_rows");
}
void kl_div_rows_backward(const TensorArg&, const TensorArg&, const TensorArg&, const TensorArg&, const TensorArg&,
                          const TensorArg&, const TensorArg&, double) {
  no_cuda("kl_div_rows_backward");
}
void find_out_of_range(const TensorArg&, const TensorArg&, int64_t, int64_t) { no_cuda("find_out_of_range"); }
void index_select(const TensorArg&, const TensorArg&, const TensorArg&) { no_cuda("index_select"); }
void index_add(const TensorArg&, const TensorArg&, const TensorArg&) { no_cuda("index_add"); }
void gather(const TensorArg&, const TensorArg&, const TensorArg&, int) { no_cuda("gather"); }
void scatter_add(const TensorArg&, const TensorArg&, const TensorArg&, int) { no_cuda("scatter_add"); }
void sgd_step(const TensorArg&, const TensorArg&, const TensorArg&, const SgdStepArgs&, const TensorArg&,
              const TensorArg&) {
  no_cuda("sgd_step");
}
void adam_step(const TensorArg&, const TensorArg&, const TensorArg&, const TensorArg&, const AdamStepArgs&,
               const TensorArg&, const TensorArg&) {
  no_cuda("adam_step");
}
void gemm_batched(int64_t, int64_t, int64_t, int64_t, const TensorArg&, int64_t, const TensorArg&, int64_t,
                  const TensorArg&, int64_t) {
  no_cuda("gemm");
}
void sparse_linear(const SparseMatrixArg&, const TensorArg&, const TensorArg&, const GemmEpilogue&, SpmmKernel) {
  no_cuda("sparse_linear");
}
const char* spmm_kernel_name(SpmmKernel) { return "none (built without CUDA)"; }
bool have_cusparse() { return false; }
void quantized_linear(const Int8LinearArgs&) { no_cuda("quantized_linear"); }
void linear_bf16(const Bf16LinearArgs&, GemmKernel) { no_cuda("linear_bf16"); }
const char* linear_bf16_kernel_name(GemmKernel) { return "none (built without CUDA)"; }
void conv2d_forward(const TensorArg&, const TensorArg&, const TensorArg&, const TensorArg&, const Conv2dParams&) {
  no_cuda("conv2d_forward");
}
void conv2d_backward(const TensorArg&, const TensorArg&, const TensorArg&, const TensorArg&, const TensorArg&,
                     const TensorArg&, const TensorArg&, const Conv2dParams&) {
  no_cuda("conv2d_backward");
}
void max_pool2d_forward(const TensorArg&, int32_t*, const TensorArg&, const Pool2dParams&) {
  no_cuda("max_pool2d_forward");
}
void max_pool2d_backward(const TensorArg&, const TensorArg&, const int32_t*) { no_cuda("max_pool2d_backward"); }
void avg_pool2d_forward(const TensorArg&, const TensorArg&, const Pool2dParams&) { no_cuda("avg_pool2d_forward"); }
void avg_pool2d_backward(const TensorArg&, const TensorArg&, const Pool2dParams&) { no_cuda("avg_pool2d_backward"); }
void adaptive_avg_pool2d_forward(const TensorArg&, const TensorArg&) { no_cuda("adaptive_avg_pool2d_forward"); }
void adaptive_avg_pool2d_backward(const TensorArg&, const TensorArg&) { no_cuda("adaptive_avg_pool2d_backward"); }
void batch_norm_stats(const TensorArg&, const TensorArg&, const TensorArg&) { no_cuda("batch_norm_stats"); }
void batch_norm_apply(const TensorArg&, const TensorArg&, const TensorArg&, const TensorArg&, const TensorArg&,
                      const TensorArg&) {
  no_cuda("batch_norm_apply");
}
void batch_norm_backward(const TensorArg&, const TensorArg&, const TensorArg&, const TensorArg&, const TensorArg&,
                         const TensorArg&, const TensorArg&, const TensorArg&, bool) {
  no_cuda("batch_norm_backward");
}
void distillation_rows(const TensorArg&, const TensorArg&, const TensorArg&, const TensorArg&, const TensorArg&,
                       const TensorArg&, const DistillationParams&, const TensorArg&) {
  no_cuda("distillation_rows");
}

}  // namespace minidl::cuda
