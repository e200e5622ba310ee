// compress/sparse.h — sparse weight formats (CSR, BSR) and the products that use them.
//
//   auto w = compress::SparseMatrix::from_dense(linear.weight, SparseFormat::csr());
//   Tensor y = compress::sparse_linear(x, w, linear.bias);   // = x · Wᵀ + b, skipping the zeros
//
// CSR keeps, per row, the column and value of each non-zero; BSR keeps r×c dense
// blocks that hold at least one non-zero (CSR is BSR with 1×1 blocks, and both
// share one class and one set of kernels: ops/cpu/spmm.cpp). Column indices are
// 16-bit when the matrix has at most 65536 (block) columns — every weight of the
// zoo — and 32-bit otherwise: at batch 1 the product streams those bytes, so two
// saved bytes per non-zero are a third of the traffic.
//
// The formats live in host memory and the products run on the CPU, except
// sparse_linear with CSR, which also runs on a GPU: `w.to("cuda")` copies the
// arrays there (cuda/spmm.cu: a hand-written kernel and cuSPARSE). The other
// products refuse a CUDA tensor, saying so. The products are for inference: they record no autograd history and refuse
// an input that requires a gradient (fine-tune the masked dense model instead).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "cuda/kernels.h"
#include "ops/conv.h"
#include "ops/cpu/kernels.h"
#include "ops/kernel_types.h"

namespace minidl::compress {

// A storage format: r×c blocks, 1×1 being CSR.
struct SparseFormat {
  int64_t block_rows = 1, block_cols = 1;

  static SparseFormat csr() { return {1, 1}; }
  static SparseFormat bsr(int64_t r, int64_t c) { return {r, c}; }
  // "csr", or "bsr" + one of the block shapes the kernels are built for:
  // "bsr1x4", "bsr4x1", "bsr4x4", "bsr8x8", "bsr16x16". Throws naming the known ones.
  static SparseFormat parse(const std::string& name);
  std::string name() const;  // as parse() reads it
  bool is_csr() const { return block_rows == 1 && block_cols == 1; }
  bool operator==(const SparseFormat&) const = default;
};
// Every format parse() accepts, CSR first.
const std::vector<SparseFormat>& sparse_formats();

enum class IndexWidth { automatic, i16, i32 };

// Whether SparseMatrix::arg carries the batch-1 panel layout (below).
enum class PanelRequest { none, if_it_pays, always };

// W (rows, cols), f32, in CSR or BSR.
class SparseMatrix {
 public:
  SparseMatrix() = default;
  // The non-zeros of w (2-D, f32, on the CPU, any strides), or for BSR every
  // block holding one. A block shape that does not divide w's shape is refused
  // (not padded: padding would change the layer's shape), and so is a 16-bit
  // index for more than 65536 columns. `what` names w in errors.
  static SparseMatrix from_dense(const Tensor& w, SparseFormat format = SparseFormat::csr(),
                                 IndexWidth width = IndexWidth::automatic, const std::string& what = "weight");
  Tensor to_dense() const;

  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  const SparseFormat& format() const { return format_; }
  bool index16() const { return !col16_.empty() || (col32_.empty() && index16_); }
  int64_t blocks() const { return static_cast<int64_t>(row_ptr_.empty() ? 0 : row_ptr_.back()); }
  // Values stored (for BSR including the zeros inside kept blocks) and truly non-zero.
  int64_t stored() const { return static_cast<int64_t>(values_.size()); }
  int64_t nnz() const;
  // stored() / (rows · cols): what the kernels' work scales with.
  double density() const;
  // Bytes of values, column indices and row pointers; dense is rows · cols · 4.
  int64_t bytes() const;

  // What the kernels see (pointers into this object, on its device: keep it alive).
  // For CSR on the CPU, where this CPU runs the avx512_panels kernel, arg can
  // also carry the panel layout for the matrix-vector product (arg.panels):
  //   - PanelRequest::if_it_pays: where cpu::spmv_panels_pay says it is faster
  //     than CSR, decided on the first such call (what `best` at batch 1 asks);
  //   - PanelRequest::always: whatever it costs (the avx512_panels kernel named).
  // Built once and kept (thread-safe; copies share it). Otherwise arg.panels is null.
  SparseMatrixArg arg(PanelRequest panels = PanelRequest::none) const;
  // Bytes of the panel layout: 0 until a batch-1 product has built it, and 0
  // where it did not pay.
  int64_t panel_bytes() const;

  // A copy with its arrays on `device`. On a GPU: CSR only, the column indices
  // widened to 32 bits (what the CUDA kernels and cuSPARSE read); the host
  // arrays stay too, so to_dense() and to(kCPU) need no copy back.
  SparseMatrix to(const Device& device) const;
  const Device& device() const { return device_; }

 private:
  Device device_;
  Tensor device_row_ptr_, device_col_, device_values_;  // int32, int32, f32 on device_ when it is a GPU
  int64_t rows_ = 0, cols_ = 0;
  SparseFormat format_;
  bool index16_ = false;
  std::vector<int32_t> row_ptr_;  // (rows / r + 1)
  std::vector<uint16_t> col16_;   // (blocks) when 16-bit
  std::vector<int32_t> col32_;    // (blocks) when 32-bit
  std::vector<float> values_;     // (blocks, r, c)
  struct Panels;                  // the batch-1 layout's slot, shared by copies (sparse.cpp)
  std::shared_ptr<Panels> panels_;  // set by from_dense
  bool build_panels_for(Panels& p, bool always) const;
};

// x (N, in) -> y (N, out) = x · Wᵀ + bias, then act; W (out, in) sparse, bias
// (out) or undefined. x is f32, any strides, on W's device. On a GPU (CSR):
// cuda::sparse_linear with `gpu_kernel` (cuSPARSE or the hand-written kernel,
// cuda/kernels.h); on the CPU `kernel`. At N = 1 the kernel
// reads x as it is (a sparse matrix-vector product; with `best` from w's panel
// layout where it pays, with avx512_panels from it always: PanelRequest); otherwise x is
// transposed into (in, N), the layout the kernel vectorises over, and the
// (out, N) result back (both passes are O(N · (in + out)), small beside the product).
Tensor sparse_linear(const Tensor& x, const SparseMatrix& w, const Tensor& bias = {},
                     Activation act = Activation::none, cpu::SpmmKernel kernel = cpu::SpmmKernel::best,
                     cuda::SpmmKernel gpu_kernel = cuda::SpmmKernel::best);
// C (rows, n) = W (rows, cols) · B (cols, n), B f32 on the CPU (at n = 1 the
// panel layout as for sparse_linear).
Tensor sparse_matmul(const SparseMatrix& w, const Tensor& b, cpu::SpmmKernel kernel = cpu::SpmmKernel::best);
// The CPU kernel sparse_linear runs with `best` on a CSR weight, for tables.
const char* sparse_linear_kernel_name();
// conv2d with weight W (O, C·kh·kw) sparse (the dense weight (O, C, kh, kw)
// flattened), groups 1: x (N, C, H, W) -> (N, O, Ho, Wo).
Tensor sparse_conv2d(const Tensor& x, const SparseMatrix& w, const Tensor& bias, int64_t kernel_h, int64_t kernel_w,
                     const Conv2dOptions& options, Activation act = Activation::none);

}  // namespace minidl::compress
