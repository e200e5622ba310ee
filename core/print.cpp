// core/print.cpp — Tensor::str(): a repr close to PyTorch's.
//
//   tensor([[ 1.0000, -2.5000],
//           [ 3.0000,  4.0000]], requires_grad=True)
#include <cmath>
#include <sstream>

#include "core/autograd.h"
#include "core/check.h"

namespace minidl {

namespace {

constexpr int64_t kSummarizeAbove = 1000;  // elements; then show 3 at each edge
constexpr int64_t kEdgeItems = 3;

struct Formatter {
  DType dtype;
  bool scientific = false;
  bool integral_values = false;  // floats that are all whole numbers print as "1."
  int width = 0;

  std::string format(double v) const {
    if (dtype == DType::boolean) return v != 0 ? "True" : "False";
    if (!is_floating(dtype)) return fmt::format("{}", static_cast<int64_t>(v));
    if (std::isnan(v)) return "nan";
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    if (scientific) return fmt::format("{:.4e}", v);
    if (integral_values) return fmt::format("{:.0f}.", v);
    return fmt::format("{:.4f}", v);
  }
};

Formatter make_formatter(DType dtype, const std::vector<double>& values) {
  Formatter f{dtype};
  if (is_floating(dtype)) {
    double max_abs = 0, min_abs = INFINITY;
    bool all_integral = true;
    for (double v : values) {
      if (!std::isfinite(v)) continue;
      max_abs = std::max(max_abs, std::abs(v));
      if (v != 0) min_abs = std::min(min_abs, std::abs(v));
      all_integral = all_integral && v == std::floor(v);
    }
    f.integral_values = all_integral && max_abs < 1e8;
    f.scientific = !f.integral_values && (max_abs >= 1e8 || (min_abs < 1e-4 && min_abs != INFINITY));
  }
  for (double v : values) f.width = std::max<int>(f.width, static_cast<int>(f.format(v).size()));
  return f;
}

// Recursively prints dims [d, ndim) of a row-major buffer starting at `base`.
void print_dim(std::ostringstream& os, const std::vector<double>& v, const Shape& shape, size_t d, int64_t base,
               int indent, const Formatter& f, bool summarize) {
  if (d == shape.size()) {
    std::string s = f.format(v[base]);
    if (static_cast<int>(s.size()) < f.width) os << std::string(f.width - s.size(), ' ');
    os << s;
    return;
  }
  int64_t n = shape[d], inner = 1;
  for (size_t k = d + 1; k < shape.size(); ++k) inner *= shape[k];
  os << '[';
  for (int64_t i = 0; i < n; ++i) {
    if (summarize && n > 2 * kEdgeItems && i == kEdgeItems) {
      os << (d + 1 == shape.size() ? "..., " : "...,\n" + std::string(indent + 1, ' '));
      i = n - kEdgeItems;
    }
    print_dim(os, v, shape, d + 1, base + i * inner, indent + 1, f, summarize);
    if (i + 1 < n) {
      os << ',';
      if (d + 1 == shape.size()) os << ' ';
      else os << std::string(shape.size() - d - 1, '\n') << std::string(indent + 1, ' ');
    }
  }
  os << ']';
}

}  // namespace

std::string Tensor::str() const {
  if (!defined()) return "tensor(undefined)";
  std::vector<double> values;
  {
    NoGradGuard no_grad;
    values = to_vector<double>();
  }
  bool summarize = numel() > kSummarizeAbove;
  Formatter f = make_formatter(dtype(), values);
  std::ostringstream os;
  os << "tensor(";
  if (numel() == 0) {
    os << "[]";
  } else {
    print_dim(os, values, shape(), 0, 0, 7, f, summarize);
  }
  if (numel() == 0 && dim() != 1) os << fmt::format(", size={}", shape());
  if (!device().is_cpu()) os << ", device='" << device().str() << "'";
  if (dtype() != DType::f32 && dtype() != DType::int64 && dtype() != DType::boolean) os << ", dtype=" << dtype_name(dtype());
  if (grad_fn()) os << ", grad_fn=<" << grad_fn()->name() << ">";
  else if (requires_grad()) os << ", requires_grad=True";
  os << ')';
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.str(); }

}  // namespace minidl
