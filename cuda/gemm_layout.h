// cuda/gemm_layout.h — how a row-major minidl matrix is handed to cuBLAS, which
// is column-major. Plain C++ (no cuBLAS types), so the CPU suite checks the
// mapping against a column-major reference product (tests/test_cuda_emulated.cpp).
//
// A row-major (rows, cols) matrix read as column-major is its transpose, so
// C = A·B is computed as Cᵀ = Bᵀ·Aᵀ: B goes first, then A, and M and N swap.
// Each operand is then either
//   row-major (unit column stride): read as column-major it already is Xᵀ —
//     no transpose, leading dimension its row stride; or
//   column-major (unit row stride, a transposed view): it is X itself, so
//     cuBLAS transposes it — leading dimension its column stride;
// and an operand with neither stride 1 must be copied contiguous first.
#pragma once

#include <algorithm>
#include <cstdint>

namespace minidl::cuda {

struct CublasOperand {
  bool transpose = false;  // CUBLAS_OP_T rather than CUBLAS_OP_N
  int64_t ld = 0;          // leading dimension, ≥ 1
  bool usable = false;     // false: neither stride is 1 (copy it contiguous first)
};

// The operand for a row-major (rows, cols) matrix with strides (rs, cs). A
// dimension of size 1 leaves its stride free, so vectors fit either way.
inline CublasOperand cublas_operand(int64_t rows, int64_t cols, int64_t rs, int64_t cs) {
  if (cs == 1 || cols == 1) {
    const int64_t ld = rows == 1 ? std::max<int64_t>(cols, 1) : rs;
    if (ld >= std::max<int64_t>(cols, 1)) return {false, ld, true};
  }
  if (rs == 1 || rows == 1) {
    const int64_t ld = cols == 1 ? std::max<int64_t>(rows, 1) : cs;
    if (ld >= std::max<int64_t>(rows, 1)) return {true, ld, true};
  }
  return {};
}

// A batched product's operand: batch dims (sizes, strides, outer first) as one
// step between consecutive matrices, as a strided-batched GEMM takes it. True
// with `step` set when matrix i of the flattened batch starts at i · step (a
// broadcast batch, all strides 0, gives step 0); false when the dims do not
// collapse (a permuted batch, a broadcast inner dim under a real outer one).
inline bool batch_step(const int64_t* sizes, const int64_t* strides, int dims, int64_t& step) {
  step = 0;
  int64_t expected = -1;  // the stride the next dim out must have for the two to collapse
  for (int d = dims - 1; d >= 0; --d) {
    if (sizes[d] == 1) continue;  // a size-1 dim's stride is never used
    if (expected < 0)
      step = strides[d];  // the innermost dim that counts sets the step
    else if (strides[d] != expected)
      return false;
    expected = strides[d] * sizes[d];
  }
  return true;
}

}  // namespace minidl::cuda
