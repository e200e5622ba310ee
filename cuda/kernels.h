// cuda/kernels.h — the CUDA twin of every CPU kernel (ops/cpu/kernels.h).
//
// The same names and the same TensorArg signatures, so each op's device switch
// reads as one line:
//
//   if (device.is_cuda()) cuda::softmax_rows(y, x, log); else cpu::softmax_rows(y, x, log);
//
// Plain C++ (no CUDA headers). Kernels run on the current device and stream
// (cuda/runtime.h); pointers in TensorArg are device pointers. Each twin the
// CUDA backend has not written yet throws "<name>: no CUDA kernel yet"
// (cuda/pending.cpp); in a build without CUDA every one says "minidl was built
// without CUDA". Never a silent trip through the CPU.
#pragma once

#include <cstdint>

#include "core/kernel_arg.h"
#include "ops/kernel_types.h"

namespace minidl::cuda {

// dst (any strides) := src (same shape, any strides, any dtype; converts). Both on the device.
void copy(const TensorArg& dst, const TensorArg& src);
// keep (contiguous, floating) := dropout's scale mask, the same as cpu::dropout_mask's.
void dropout_mask(const TensorArg& keep, double p, uint64_t key);

void unary(UnaryOp op, const TensorArg& out, const TensorArg& x, double a, double b);
void binary(BinaryOp op, const TensorArg& out, const TensorArg& x, const TensorArg& y);
void where(const TensorArg& out, const TensorArg& cond, const TensorArg& x, const TensorArg& y);

void reduce_rows(ReduceOp op, const TensorArg& values, const TensorArg& indices, const TensorArg& x, double correction);

// C (M, N) := alpha · A (M, K) · B (K, N) + beta · C, then the epilogue; A and B
// any strides, C unit column stride (as cpu::gemm). f32 and f64. `best` is what
// MINIDL_CUDA_GEMM names (cublas, cublas-tf32, cublas-bf16, handwritten, v1 … v5), else
// cuBLAS in strict fp32 (cuda/gemm.cu).
// cublas_tf32 / cublas_bf16: f32 in and out, the products on tensor cores with the
// inputs rounded to TF32 (10-bit mantissa) or bf16 (7-bit): explicit options only.
enum class GemmKernel { best, cublas, cublas_tf32, cublas_bf16, handwritten };
void gemm(int64_t M, int64_t N, int64_t K, double alpha, const TensorArg& A, const TensorArg& B, double beta,
          const TensorArg& C, GemmKernel kernel = GemmKernel::best, const GemmEpilogue& epilogue = {});
// C_i := A_i · B_i for i < batch, where X_i is the 2-D matrix X (M, K) moved by
// i · stride_x elements (stride 0: one matrix for every i, a broadcast). One
// cublasGemmStridedBatchedEx call (one launch for all the products); the
// hand-written kernel, or an operand cuBLAS cannot read in place, loops over gemm.
void gemm_batched(int64_t batch, int64_t M, int64_t N, int64_t K, const TensorArg& A, int64_t stride_a,
                  const TensorArg& B, int64_t stride_b, const TensorArg& C, int64_t stride_c);
// What `best` runs, for tables ("cuBLAS (strict fp32)", "hand-written v4 (…)").
const char* gemm_kernel_name();
// Whether this build links cuBLAS (CMake links it when it finds it beside the
// CUDA toolkit; without it `best` is the hand-written SGEMM and f64 has no GEMM).
bool have_cublas();

// The hand-written SGEMM (cuda/sgemm.cu), one numbered version: 1 naive … 5
// warp-tiled. f32 only; same contract as gemm.
inline constexpr int kSgemmVersions = 5;
void sgemm_handwritten(int version, int64_t M, int64_t N, int64_t K, float alpha, const TensorArg& A,
                       const TensorArg& B, float beta, const TensorArg& C, const GemmEpilogue& epilogue = {});

// A pruned Linear on the GPU: y (N, out) := x (N, in) · Wᵀ, then the epilogue's
// bias (one per output) and ReLU; W CSR with 32-bit indices in device memory
// (compress::SparseMatrix::to), x and y f32 rows with unit column stride
// (cuda/spmm.cu). `best`: MINIDL_CUDA_SPMM if set, else cuSPARSE when linked,
// else the hand-written kernel.
enum class SpmmKernel { best, handwritten, cusparse };
void sparse_linear(const SparseMatrixArg& w, const TensorArg& x, const TensorArg& y, const GemmEpilogue& epilogue,
                   SpmmKernel kernel = SpmmKernel::best);
const char* spmm_kernel_name(SpmmKernel kernel);
bool have_cusparse();

// An int8 dynamic-quantized Linear (cuda/qgemm.cu): y (M, N) f32 := act(x (M, K)
// f32, quantized per call to u8 with one scale and zero point, times the int8
// weight, rescaled, + bias) — the CPU's int8 layer bit for bit (ops/quant_math.h).
// All pointers on the device.
struct Int8LinearArgs {
  const float* x = nullptr;  // (M, K), row stride ldx == K
  int64_t M = 0, K = 0, ldx = 0;
  const int8_t* w = nullptr;  // (N, ⌈K / 4⌉ · 4) row-major, zero padded, 4-byte aligned
  const int32_t* w_row_sums = nullptr;  // (N): Σ_k w[n, k]
  const float* w_scale = nullptr;       // (N)
  int64_t N = 0;
  const float* bias = nullptr;  // (N) or null
  bool relu = false;
  float* y = nullptr;
  int64_t ldy = 0;
};
void quantized_linear(const Int8LinearArgs& args);

// A bf16 Linear (inference): y (M, N) := act(x (M, K) · Wᵀ + bias), x and w (N, K)
// bf16 with contiguous rows, the sums in f32, the bias f32 (N) or null, y f32 or
// bf16 (one of y and y_bf16, row stride ldy) — the CPU's cpu::gemm_bf16 to
// rounding. `best`: cuBLAS (bf16 tensor cores) when linked and MINIDL_CUDA_GEMM
// does not name the hand-written kernels, else the hand-written bf16 kernel
// (cuda/bf16_kernels.cuh). All pointers on the device.
struct Bf16LinearArgs {
  const uint16_t* x = nullptr;  // bf16 bits
  const uint16_t* w = nullptr;
  int64_t M = 0, N = 0, K = 0;
  const float* bias = nullptr;
  bool relu = false;
  float* y = nullptr;
  uint16_t* y_bf16 = nullptr;
  int64_t ldy = 0;
};
void linear_bf16(const Bf16LinearArgs& args, GemmKernel kernel = GemmKernel::best);
const char* linear_bf16_kernel_name(GemmKernel kernel = GemmKernel::best);

void conv2d_forward(const TensorArg& y, const TensorArg& x, const TensorArg& w, const TensorArg& bias,
                    const Conv2dParams& p);
void conv2d_backward(const TensorArg& gx, const TensorArg& gw, const TensorArg& gb, const TensorArg& gy,
                     const TensorArg& x, const TensorArg& w, const TensorArg& relu_out, const Conv2dParams& p);

void max_pool2d_forward(const TensorArg& y, int32_t* argmax, const TensorArg& x, const Pool2dParams& p);
void max_pool2d_backward(const TensorArg& gx, const TensorArg& gy, const int32_t* argmax);
void avg_pool2d_forward(const TensorArg& y, const TensorArg& x, const Pool2dParams& p);
void avg_pool2d_backward(const TensorArg& gx, const TensorArg& gy, const Pool2dParams& p);
void adaptive_avg_pool2d_forward(const TensorArg& y, const TensorArg& x);
void adaptive_avg_pool2d_backward(const TensorArg& gx, const TensorArg& gy);

void batch_norm_stats(const TensorArg& mean, const TensorArg& var, const TensorArg& x);
void batch_norm_apply(const TensorArg& y, const TensorArg& x, const TensorArg& mean, const TensorArg& invstd,
                      const TensorArg& weight, const TensorArg& bias);
void batch_norm_backward(const TensorArg& gx, const TensorArg& gw, const TensorArg& gb, const TensorArg& gy,
                         const TensorArg& x, const TensorArg& mean, const TensorArg& invstd, const TensorArg& weight,
                         bool training);

// The fused row kernels (cuda/softmax.cu). Who reads a row: `automatic`, a warp
// per row up to 1024 columns and a block per row beyond; `warp` and `block` force
// one, for benchmarks (also MINIDL_CUDA_ROWS=warp|block). Either is correct at
// any row length.
enum class RowLayout { automatic, warp, block };
void set_row_layout(RowLayout layout);
RowLayout row_layout();                        // what set_row_layout (or MINIDL_CUDA_ROWS) chose
RowLayout automatic_row_layout(int64_t cols);  // what `automatic` picks for rows of `cols`: warp or block
// Remembers the layout in force and puts it back when it goes out of scope, so a
// benchmark or test may force layouts in between without leaving one behind.
class KeepRowLayout {
 public:
  KeepRowLayout() : before_(row_layout()) {}
  ~KeepRowLayout() { set_row_layout(before_); }
  KeepRowLayout(const KeepRowLayout&) = delete;
  KeepRowLayout& operator=(const KeepRowLayout&) = delete;

 private:
  RowLayout before_;
};
void softmax_rows(const TensorArg& y, const TensorArg& x, bool log);
void softmax_rows_backward(const TensorArg& gx, const TensorArg& g, const TensorArg& y, bool log);
void cross_entropy_rows(const TensorArg& loss, const TensorArg& lse, const TensorArg& logits, const TensorArg& target,
                        const TensorArg& weight, const CrossEntropyParams& p, const TensorArg& status);
void cross_entropy_rows_backward(const TensorArg& gx, const TensorArg& scale, const TensorArg& logits,
                                 const TensorArg& lse, const TensorArg& target, const TensorArg& weight,
                                 const CrossEntropyParams& p);
void kl_div_rows(const TensorArg& loss, const TensorArg& lse, const TensorArg& student, const TensorArg& teacher,
                 double temperature);
void kl_div_rows_backward(const TensorArg& gs, const TensorArg& gt, const TensorArg& scale, const TensorArg& student,
                          const TensorArg& teacher, const TensorArg& lse, const TensorArg& loss, double temperature);

// The whole distillation loss per row, forward and gradient in one pass (see cpu::distillation_rows).
void distillation_rows(const TensorArg& kl, const TensorArg& ce, const TensorArg& grad, const TensorArg& student,
                       const TensorArg& teacher, const TensorArg& target, const DistillationParams& p,
                       const TensorArg& status);

void find_out_of_range(const TensorArg& status, const TensorArg& index, int64_t size, int64_t allowed);
void index_select(const TensorArg& out, const TensorArg& x, const TensorArg& index);
void index_add(const TensorArg& out, const TensorArg& index, const TensorArg& src);
void gather(const TensorArg& out, const TensorArg& x, const TensorArg& index, int dim);
void scatter_add(const TensorArg& out, const TensorArg& index, const TensorArg& src, int dim);

// step_count: a device int64 holding the step's number (null data: use a.first_step / a.step);
// lr: a device f64 holding the learning rate (null data: use a.lr).
void sgd_step(const TensorArg& param, const TensorArg& grad, const TensorArg& buffer, const SgdStepArgs& a,
              const TensorArg& step_count, const TensorArg& lr);
void adam_step(const TensorArg& param, const TensorArg& grad, const TensorArg& exp_avg, const TensorArg& exp_avg_sq,
               const AdamStepArgs& a, const TensorArg& step_count, const TensorArg& lr);

}  // namespace minidl::cuda
