#include "compress/sparse.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <limits>
#include <mutex>

#include "core/autograd.h"
#include "core/check.h"
#include "ops/dispatch.h"
#include "ops/factory.h"

namespace minidl::compress {

namespace {

constexpr int64_t kBlockShapes[][2] = {{1, 4}, {4, 1}, {4, 4}, {8, 8}, {16, 16}};

void require_inference(const char* op, const Tensor& x) {
  MINIDL_CHECK(x.defined(), "{}: the input is undefined", op);
  MINIDL_CHECK(x.dtype() == DType::f32, "{}: expected an f32 input, got {}", op, x.dtype());
  MINIDL_CHECK(!(x.requires_grad() && grad_mode_enabled()),
               "{}: sparse layers are for inference and record no gradient; run under NoGradGuard (fine-tune the "
               "masked dense model instead)",
               op);
}

void require_cpu_inference(const char* op, const Tensor& x) {
  require_inference(op, x);
  MINIDL_CHECK(x.device().is_cpu(),
               "{}: this sparse product runs on the CPU; the input is on {} (on a GPU only sparse_linear with CSR runs)",
               op, x.device());
}

}  // namespace

// ---------------------------------------------------------------- formats

const std::vector<SparseFormat>& sparse_formats() {
  static const std::vector<SparseFormat> formats = [] {
    std::vector<SparseFormat> f{SparseFormat::csr()};
    for (const auto& b : kBlockShapes) f.push_back(SparseFormat::bsr(b[0], b[1]));
    return f;
  }();
  return formats;
}

std::string SparseFormat::name() const {
  return is_csr() ? "csr" : fmt::format("bsr{}x{}", block_rows, block_cols);
}

SparseFormat SparseFormat::parse(const std::string& name) {
  std::vector<std::string> known;
  for (const SparseFormat& f : sparse_formats()) {
    if (f.name() == name) return f;
    known.push_back(f.name());
  }
  fail("unknown sparse format '{}' (known: {})", name, fmt::join(known, ", "));
}

// ---------------------------------------------------------------- the panel layout

// Decided once, on the first batch-1 product that asks for it, and then built or
// declined (PanelMatrixArg in ops/kernel_types.h says what it holds;
// ops/cpu/spmm.cpp why, and when it pays). `state` is written under `mutex`
// once the arrays are final, and read without it.
struct SparseMatrix::Panels {
  enum State { undecided, built, declined };
  std::mutex mutex;
  std::atomic<State> state{undecided};
  std::vector<int32_t> step_ptr;
  std::vector<uint8_t> column;
  std::vector<float> values;
  PanelMatrixArg arg;
};

namespace {

// From CSR arrays whose columns rise along each row (as from_dense writes them):
// the step pointers, and with `fill` the steps themselves.
template <class Index>
void build_panels(int64_t rows, int64_t cols, const std::vector<int32_t>& row_ptr, const Index* col,
                  const float* values, bool fill, std::vector<int32_t>& step_ptr, std::vector<uint8_t>& column,
                  std::vector<float>& out) {
  constexpr int64_t L = PanelMatrixArg::kPanelLanes, W = PanelMatrixArg::kPanelWidth;
  const int64_t slices = (rows + L - 1) / L, panels = (cols + W - 1) / W;
  step_ptr.assign(1, 0);
  for (int64_t s = 0; s < slices; ++s) {
    // Each lane's next non-zero and its row's end; lanes past the last row stay empty.
    std::array<int64_t, L> next{}, end{};
    for (int64_t l = 0, row = s * L; l < L && row < rows; ++l, ++row) {
      next[l] = row_ptr[row];
      end[l] = row_ptr[row + 1];
    }
    for (int64_t q = 0; q < panels; ++q) {
      std::array<int64_t, L> stop = next;
      int64_t steps = 0;
      for (int64_t l = 0; l < L; ++l) {
        while (stop[l] < end[l] && col[stop[l]] < (q + 1) * W) ++stop[l];
        steps = std::max(steps, stop[l] - next[l]);
      }
      for (int64_t t = 0; fill && t < steps; ++t)
        for (int64_t l = 0; l < L; ++l) {
          const int64_t p = next[l] + t;
          const bool real = p < stop[l];
          out.push_back(real ? values[p] : 0.0f);
          column.push_back(static_cast<uint8_t>(real ? col[p] - q * W : 0));
        }
      next = stop;
      // Every step holds at least one non-zero, so there are no more steps than
      // non-zeros, and from_dense has checked those fit 32 bits.
      step_ptr.push_back(static_cast<int32_t>(step_ptr.back() + steps));
    }
  }
}

}  // namespace

// ---------------------------------------------------------------- SparseMatrix

SparseMatrix SparseMatrix::from_dense(const Tensor& w_in, SparseFormat format, IndexWidth width,
                                      const std::string& what) {
  MINIDL_CHECK(w_in.defined() && w_in.dim() == 2, "to sparse: {} must be 2-D, got {}", what,
               w_in.defined() ? w_in.shape() : Shape{});
  MINIDL_CHECK(w_in.device().is_cpu() && w_in.dtype() == DType::f32, "to sparse: {} must be f32 on the CPU, got {} on {}",
               what, w_in.dtype(), w_in.device());
  const bool known = std::find(sparse_formats().begin(), sparse_formats().end(), format) != sparse_formats().end();
  MINIDL_CHECK(known, "to sparse: {}: no kernels for {}x{} blocks (known: csr, bsr1x4, bsr4x1, bsr4x4, bsr8x8, bsr16x16)",
               what, format.block_rows, format.block_cols);
  const int64_t rows = w_in.size(0), cols = w_in.size(1), r = format.block_rows, c = format.block_cols;
  MINIDL_CHECK(rows % r == 0 && cols % c == 0,
               "to sparse: {} {}: {} blocks do not divide its shape ({} rows by {}, {} columns by {}); refused, not "
               "padded (choose a block that divides it, or CSR)",
               what, w_in.shape(), format.name(), rows, r, cols, c);
  const int64_t block_cols = cols / c;
  const bool fits16 = block_cols <= 65536;
  MINIDL_CHECK(width != IndexWidth::i16 || fits16,
               "to sparse: {} {}: 16-bit column indices hold at most 65536 block columns, it has {}", what,
               w_in.shape(), block_cols);
  Tensor w = w_in.contiguous();
  const float* src = w.data_ptr<float>();

  SparseMatrix m;
  m.panels_ = std::make_shared<Panels>();
  m.rows_ = rows, m.cols_ = cols, m.format_ = format;
  m.index16_ = width == IndexWidth::i16 || (width == IndexWidth::automatic && fits16);
  m.row_ptr_.reserve(static_cast<size_t>(rows / r + 1));
  m.row_ptr_.push_back(0);
  int64_t kept = 0;
  for (int64_t br = 0; br < rows / r; ++br) {
    for (int64_t bc = 0; bc < block_cols; ++bc) {
      bool any = false;
      for (int64_t i = 0; i < r && !any; ++i)
        for (int64_t j = 0; j < c && !any; ++j) any = src[(br * r + i) * cols + bc * c + j] != 0.0f;
      if (!any) continue;
      if (m.index16_) m.col16_.push_back(static_cast<uint16_t>(bc));
      else m.col32_.push_back(static_cast<int32_t>(bc));
      for (int64_t i = 0; i < r; ++i)
        for (int64_t j = 0; j < c; ++j) m.values_.push_back(src[(br * r + i) * cols + bc * c + j]);
      ++kept;
    }
    MINIDL_CHECK(kept <= std::numeric_limits<int32_t>::max(),
                 "to sparse: {} {} has more than 2^31 - 1 non-zero blocks (row pointers are 32-bit)", what,
                 w_in.shape());
    m.row_ptr_.push_back(static_cast<int32_t>(kept));
  }
  return m;
}

Tensor SparseMatrix::to_dense() const {
  Tensor d = zeros({rows_, cols_}, {.dtype = DType::f32});
  float* dst = d.data_ptr<float>();
  const int64_t r = format_.block_rows, c = format_.block_cols;
  for (int64_t br = 0; br + 1 < static_cast<int64_t>(row_ptr_.size()); ++br)
    for (int64_t p = row_ptr_[br]; p < row_ptr_[br + 1]; ++p) {
      const int64_t bc = index16_ ? col16_[p] : col32_[p];
      for (int64_t i = 0; i < r; ++i)
        for (int64_t j = 0; j < c; ++j) dst[(br * r + i) * cols_ + bc * c + j] = values_[(p * r + i) * c + j];
    }
  return d;
}

int64_t SparseMatrix::nnz() const {
  return std::count_if(values_.begin(), values_.end(), [](float v) { return v != 0.0f; });
}

double SparseMatrix::density() const {
  return rows_ * cols_ == 0 ? 0.0 : static_cast<double>(stored()) / static_cast<double>(rows_ * cols_);
}

int64_t SparseMatrix::bytes() const {
  return static_cast<int64_t>(values_.size() * sizeof(float) + col16_.size() * sizeof(uint16_t) +
                              col32_.size() * sizeof(int32_t) + row_ptr_.size() * sizeof(int32_t));
}

int64_t SparseMatrix::panel_bytes() const {
  if (!panels_ || panels_->state.load(std::memory_order_acquire) != Panels::built) return 0;
  const Panels& p = *panels_;
  return static_cast<int64_t>(p.step_ptr.size() * sizeof(int32_t) + p.column.size() + p.values.size() * sizeof(float));
}

SparseMatrixArg SparseMatrix::arg(PanelRequest request) const {
  SparseMatrixArg a;
  a.rows = rows_, a.cols = cols_;
  a.block_rows = format_.block_rows, a.block_cols = format_.block_cols;
  a.blocks = blocks();
  if (device_.is_cuda()) {
    a.row_ptr = device_row_ptr_.data_ptr<int32_t>();
    a.col_index = device_col_.raw_data();
    a.values = device_values_.data_ptr<float>();
    return a;
  }
  a.row_ptr = row_ptr_.data();
  a.index16 = index16_;
  a.col_index = index16_ ? static_cast<const void*>(col16_.data()) : static_cast<const void*>(col32_.data());
  a.values = values_.data();
  if (request == PanelRequest::none || !panels_ || !format_.is_csr() ||
      !cpu::spmm_kernel_supported(cpu::SpmmKernel::avx512_panels, a))
    return a;
  Panels& p = *panels_;
  // Decided (and built) once; `always` builds what if_it_pays declined.
  auto settled = [&](Panels::State s) {
    return s == Panels::built || (s == Panels::declined && request == PanelRequest::if_it_pays);
  };
  Panels::State state = p.state.load(std::memory_order_acquire);
  if (!settled(state)) {
    std::lock_guard lock(p.mutex);
    state = p.state.load(std::memory_order_relaxed);
    if (!settled(state)) {
      state = build_panels_for(p, request == PanelRequest::always) ? Panels::built : Panels::declined;
      p.state.store(state, std::memory_order_release);
    }
  }
  if (state == Panels::built) a.panels = &p.arg;
  return a;
}

// Under p.mutex: counts the layout's steps, asks whether it pays (unless
// `always`), and builds it where it does: whether it did.
bool SparseMatrix::build_panels_for(Panels& p, bool always) const {
  auto build = [&](bool fill) {
    if (index16_)
      build_panels(rows_, cols_, row_ptr_, col16_.data(), values_.data(), fill, p.step_ptr, p.column, p.values);
    else
      build_panels(rows_, cols_, row_ptr_, col32_.data(), values_.data(), fill, p.step_ptr, p.column, p.values);
  };
  constexpr int64_t L = PanelMatrixArg::kPanelLanes, W = PanelMatrixArg::kPanelWidth;
  const int64_t slices = (rows_ + L - 1) / L, panels = (cols_ + W - 1) / W;
  build(/*fill=*/false);
  const int64_t steps = p.step_ptr.back();
  const cpu::PanelPlan plan{.rows = rows_,
                            .nnz = stored(),
                            .csr_bytes = bytes(),
                            .steps = steps,
                            .slice_panels = slices * panels,
                            .panel_bytes = (slices * panels + 1) * 4 + steps * L * (4 + 1)};
  if (!always && !cpu::spmv_panels_pay(plan)) {
    p.step_ptr = {};
    return false;
  }
  build(/*fill=*/true);
  p.arg = {.rows = rows_,
           .cols = cols_,
           .slices = slices,
           .panels = panels,
           .step_ptr = p.step_ptr.data(),
           .column = p.column.data(),
           .values = p.values.data()};
  return true;
}

SparseMatrix SparseMatrix::to(const Device& device) const {
  SparseMatrix m = *this;
  m.device_ = device;
  m.device_row_ptr_ = m.device_col_ = m.device_values_ = Tensor();
  if (device.is_cpu()) return m;
  MINIDL_CHECK(format_.is_csr(), "sparse matrix to {}: the GPU kernels take CSR, this matrix is {}", device,
               format_.name());
  std::vector<int32_t> cols = col32_;
  if (index16_) cols.assign(col16_.begin(), col16_.end());
  auto i32 = [&](const std::vector<int32_t>& v) {
    return from_data(v.data(), {static_cast<int64_t>(v.size())}, {.dtype = DType::int32, .device = device});
  };
  m.device_row_ptr_ = i32(row_ptr_);
  m.device_col_ = i32(cols);
  m.device_values_ = from_data(values_.data(), {static_cast<int64_t>(values_.size())}, {.dtype = DType::f32, .device = device});
  return m;
}

// ---------------------------------------------------------------- products

namespace {

// The panel layout a batch-1 product asks for: where it pays under `best`,
// always for the kernel that reads it, never for the others.
PanelRequest batch_one_panels(cpu::SpmmKernel kernel) {
  if (kernel == cpu::SpmmKernel::best) return PanelRequest::if_it_pays;
  if (kernel == cpu::SpmmKernel::avx512_panels) return PanelRequest::always;
  return PanelRequest::none;
}

}  // namespace

Tensor sparse_matmul(const SparseMatrix& w, const Tensor& b_in, cpu::SpmmKernel kernel) {
  require_cpu_inference("sparse_matmul", b_in);
  MINIDL_CHECK(b_in.dim() == 2 && b_in.size(0) == w.cols(), "sparse_matmul: W {}x{} cannot multiply B {}", w.rows(),
               w.cols(), b_in.shape());
  Tensor b = b_in.stride(1) == 1 ? b_in : b_in.contiguous();
  Tensor c = empty({w.rows(), b.size(1)}, {.dtype = DType::f32});
  cpu::spmm(w.arg(b.size(1) == 1 ? batch_one_panels(kernel) : PanelRequest::none), b.arg(), c.arg(), {}, kernel);
  return c;
}

const char* sparse_linear_kernel_name() {
  static const SparseMatrix probe = SparseMatrix::from_dense(ones({1, 1}));
  return cpu::spmm_kernel_name(cpu::SpmmKernel::best, probe.arg());
}

Tensor sparse_linear(const Tensor& x, const SparseMatrix& w, const Tensor& bias, Activation act,
                     cpu::SpmmKernel kernel, cuda::SpmmKernel gpu_kernel) {
  require_inference("sparse_linear", x);
  MINIDL_CHECK(x.device() == w.device(),
               "sparse_linear: the input is on {} but the sparse weight on {} (move the weight with .to(device))",
               x.device(), w.device());
  MINIDL_CHECK(x.dim() == 2 && x.size(1) == w.cols(), "sparse_linear: input {} does not match weight ({}, {})",
               x.shape(), w.rows(), w.cols());
  if (bias.defined())
    MINIDL_CHECK(bias.dim() == 1 && bias.size(0) == w.rows() && bias.dtype() == DType::f32 &&
                     bias.device() == x.device(),
                 "sparse_linear: bias {} ({} on {}) does not match {} outputs on {}", bias.shape(), bias.dtype(),
                 bias.device(), w.rows(), x.device());
  Tensor b = bias.defined() ? bias.contiguous() : Tensor();
  const GemmEpilogue epilogue{.bias = b.defined() ? b.raw_data() : nullptr, .bias_per_row = true,
                              .relu = act == Activation::relu};
  const int64_t N = x.size(0);
  if (x.device().is_cuda()) {
    // The GPU kernels read x's rows and write y's as they are (cuda/spmm.cu).
    Tensor xc = x.stride(1) == 1 ? x : x.contiguous();
    Tensor y = empty({N, w.rows()}, {.dtype = DType::f32, .device = x.device()});
    cuda::sparse_linear(w.arg(), xc.arg(), y.arg(), epilogue, gpu_kernel);
    return y;
  }
  if (N == 1) {
    // xᵀ is a column: x itself, read with its stride (spmm copies it if strided).
    Tensor y = empty({1, w.rows()}, {.dtype = DType::f32});
    // The panel layout where the kernel may use it (built on the first call).
    cpu::spmm(w.arg(batch_one_panels(kernel)), x.t().arg(), y.t().arg(), epilogue, kernel);
    return y;
  }
  // xᵀ (in, N), its rows padded so they are not a multiple of 512 bytes apart: the
  // kernel reads a 64-column slice of every row, and at a power-of-two stride
  // those slices would all fall in a quarter of the L2's sets (measured at
  // 4096×4096, batch 256: 0.12× dense unpadded, see ops/cpu/spmm.cpp). A batch
  // under 16 is packed instead (ld = N): its rows then share cache lines, and
  // xᵀ stays in L1 (8 KiB at 1024 features and batch 2, against 64 KiB padded).
  int64_t ld = N < 16 ? N : (N + 15) / 16 * 16;
  if ((ld * 4) % 512 == 0) ld += 16;
  Tensor xt = empty({w.cols(), ld}, {.dtype = DType::f32}).narrow(1, 0, N);
  xt.copy_(x.t());
  Tensor yt = empty({w.rows(), N}, {.dtype = DType::f32});
  cpu::spmm(w.arg(), xt.arg(), yt.arg(), epilogue, kernel);
  return yt.t().contiguous();
}

Tensor sparse_conv2d(const Tensor& x_in, const SparseMatrix& w, const Tensor& bias, int64_t kh, int64_t kw,
                     const Conv2dOptions& o, Activation act) {
  require_cpu_inference("sparse_conv2d", x_in);
  MINIDL_CHECK(x_in.dim() == 4, "sparse_conv2d: input must be 4-D (N, C, H, W), got {}", x_in.shape());
  MINIDL_CHECK(o.groups == 1, "sparse_conv2d: groups must be 1, got {}", o.groups);
  const int64_t N = x_in.size(0), C = x_in.size(1), H = x_in.size(2), W = x_in.size(3), O = w.rows();
  MINIDL_CHECK(kh >= 1 && kw >= 1 && w.cols() == C * kh * kw,
               "sparse_conv2d: input {} has {} channels but the weight ({}, {}) with a {}x{} kernel expects {}",
               x_in.shape(), C, O, w.cols(), kh, kw, kh * kw > 0 ? w.cols() / (kh * kw) : 0);
  if (bias.defined())
    MINIDL_CHECK(bias.dim() == 1 && bias.size(0) == O && bias.dtype() == DType::f32,
                 "sparse_conv2d: bias {} does not match {} out channels", bias.shape(), O);
  for (int i = 0; i < 2; ++i)
    MINIDL_CHECK(o.stride[i] >= 1 && o.dilation[i] >= 1 && o.padding[i] >= 0,
                 "sparse_conv2d: stride {} and dilation {} must be >= 1 and padding {} >= 0", o.stride, o.dilation,
                 o.padding);
  const int64_t eff_h = o.dilation[0] * (kh - 1) + 1, eff_w = o.dilation[1] * (kw - 1) + 1;
  const int64_t Hp = H + 2 * o.padding[0], Wp = W + 2 * o.padding[1];
  MINIDL_CHECK(Hp >= eff_h && Wp >= eff_w, "sparse_conv2d: input {} (padded to {}x{}) is smaller than the kernel {}x{}",
               x_in.shape(), Hp, Wp, eff_h, eff_w);
  const int64_t Ho = (Hp - eff_h) / o.stride[0] + 1, Wo = (Wp - eff_w) / o.stride[1] + 1;
  const Conv2dParams p{o.stride[0], o.stride[1], o.padding[0], o.padding[1], o.dilation[0], o.dilation[1], 1,
                       act == Activation::relu};
  Tensor x = x_in.contiguous();
  Tensor b = bias.defined() ? bias.contiguous() : Tensor();
  Tensor y = empty({N, O, Ho, Wo}, {.dtype = DType::f32});
  cpu::sparse_conv2d_forward(y.arg(), x.arg(), w.arg(), arg_or_null(b), kh, kw, p);
  return y;
}

}  // namespace minidl::compress
