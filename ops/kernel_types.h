// ops/kernel_types.h — the op codes shared by the CPU and CUDA kernels.
//
// The elementwise families are one kernel each, switching on these codes, so a
// new pointwise op is one enum value plus one line in each backend's functor.
#pragma once

#include <cstdint>

namespace minidl {

// y = f(x; a, b). a and b are the op's scalar parameters where it has any.
enum class UnaryOp : uint8_t {
  neg, exp, log, sqrt, abs, sign,
  relu, leaky_relu,   // a = negative slope
  sigmoid, tanh,
  gelu,               // exact: x * Phi(x)
  pow_scalar,         // x ^ a
  clamp,              // min(max(x, a), b)
  logical_not,
};

// An activation fused into the op before it (linear, conv2d): applied to the
// output while it is still in cache, instead of a separate pass over memory.
enum class Activation : uint8_t { none, relu };

// z = f(x, y). Comparisons and logical ops write bool.
enum class BinaryOp : uint8_t {
  add, sub, mul, div, pow, maximum, minimum,
  xlogy,              // x * log(y), 0 where x == 0
  gelu_backward,      // x = grad, y = input: grad * d gelu(y) / dy
  relu_backward,      // x = grad, y = output: y > 0 ? grad : 0
  eq, ne, lt, le, gt, ge, logical_and, logical_or,
};

constexpr bool writes_bool(BinaryOp op) { return op >= BinaryOp::eq; }

// Row reductions over the last axis of a (rows, cols) view.
enum class ReduceOp : uint8_t { sum, max, min, logsumexp, var };

// ---- parameters of the kernels both backends implement (ops/cpu/kernels.h, cuda/kernels.h)

// What happens to C after a GEMM, while each tile is still in registers or
// L1: C += bias (one value per column, as in a linear layer, or per row, as in a
// convolution's (O, positions) output), then C = max(C, 0). bias has C's dtype.
struct GemmEpilogue {
  const void* bias = nullptr;
  bool bias_per_row = false;
  bool relu = false;
};

// A sparse matrix W (rows, cols) as the sparse kernels see it: BSR with r×c
// blocks, of which CSR is the 1×1 case. Plain pointers; compress/sparse.h owns
// the arrays. Block row i (rows i·r .. i·r + r − 1) holds blocks
// [row_ptr[i], row_ptr[i + 1]); block p covers columns col_index[p]·c .. + c − 1
// and its r·c values sit row-major at values + p·r·c. rows and cols are
// multiples of r and c.
// The same non-zeros of a CSR matrix in a second layout, for the matrix-vector
// product (compress/sparse.h builds it; ops/cpu/spmm.cpp says why): rows in
// slices of kPanelLanes, one row per vector lane; columns in panels of
// kPanelWidth. Slice s and panel q hold the steps [step_ptr[s·panels + q],
// step_ptr[s·panels + q + 1]); step t gives lane l the value values[t·16 + l]
// at column q·32 + column[t·16 + l] — each lane's non-zeros in that panel one
// step at a time, and zeros (at column 0) once a lane has none left.
struct PanelMatrixArg {
  static constexpr int64_t kPanelLanes = 16, kPanelWidth = 32;
  int64_t rows = 0, cols = 0, slices = 0, panels = 0;
  const int32_t* step_ptr = nullptr;  // (slices · panels + 1)
  const uint8_t* column = nullptr;    // (steps, 16): 0 .. 31
  const float* values = nullptr;      // (steps, 16)
};

struct SparseMatrixArg {
  int64_t rows = 0, cols = 0;
  int64_t block_rows = 1, block_cols = 1;  // r, c
  const int32_t* row_ptr = nullptr;        // (rows / r + 1)
  const void* col_index = nullptr;         // (blocks): uint16 when index16, else int32
  bool index16 = false;
  const float* values = nullptr;           // (blocks, r, c)
  int64_t blocks = 0;                      // row_ptr's last entry, known on the host (cuSPARSE asks for it)
  const PanelMatrixArg* panels = nullptr;  // CSR only, and only once built: the batch-1 layout
  bool is_csr() const { return block_rows == 1 && block_cols == 1; }
};

struct Conv2dParams {
  int64_t stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups;
  bool relu = false;  // y = max(conv + bias, 0)
};

struct Pool2dParams {
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w;
  bool count_include_pad = true;  // avg only
};

// Cross-entropy over rows: targets equal to ignore_index contribute nothing.
struct CrossEntropyParams {
  int64_t ignore_index;
  double label_smoothing;
};

// The distillation loss α T² KL(p_t ‖ p_s) + (1 − α) CE (ops/loss.h); grad_scale
// multiplies the gradient the kernel writes (1/N for the batch mean).
struct DistillationParams {
  double temperature, alpha, grad_scale;
};

// The optimizers' update steps (ops/optim.h), as their kernels take them.
struct SgdStepArgs {
  double lr = 0.01, momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false;
  bool first_step = false;  // the momentum buffer starts as the gradient
};
struct AdamStepArgs {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0;
  bool decoupled_weight_decay = false;  // AdamW
  int64_t step = 1;                     // t, from 1: the bias corrections 1 − β^t
};

}  // namespace minidl
