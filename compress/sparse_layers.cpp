#include "compress/sparse_layers.h"

#include "compress/probe.h"

#include <algorithm>
#include <chrono>
#include <functional>

#include "core/autograd.h"
#include "core/check.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"

namespace minidl::compress {

namespace {

double zero_fraction(const Tensor& w) {
  NoGradGuard no_grad;
  if (w.numel() == 0) return 0;
  return sum(eq(w, 0.0).to(DType::f64)).item() / static_cast<double>(w.numel());
}

std::string percent(double f) { return fmt::format("{:.1f}%", 100 * f); }

// Medians of a and b timed alternately (a b, b a, ...) for `rounds` rounds, after one warm-up each.
std::pair<double, double> time_side_by_side(const std::function<void()>& a, const std::function<void()>& b,
                                            int rounds) {
  auto seconds = [](const std::function<void()>& f) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  a(), b();
  std::vector<double> ta, tb;
  for (int r = 0; r < rounds; ++r) {
    if (r % 2 == 0) ta.push_back(seconds(a)), tb.push_back(seconds(b));
    else tb.push_back(seconds(b)), ta.push_back(seconds(a));
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  return {median(ta), median(tb)};
}

}  // namespace

// ---------------------------------------------------------------- SparseLinear

SparseLinear::SparseLinear(const nn::Linear& dense, SparseFormat format)
    : weight(SparseMatrix::from_dense(dense.weight.detach(), format, IndexWidth::automatic, dense.describe())),
      bias(dense.bias.defined() ? dense.bias.detach().clone() : Tensor()),
      in_features(dense.in_features), out_features(dense.out_features) {
  if (bias.defined()) register_buffer("bias", bias);
}

void SparseLinear::check_device(const Device& device) const {
  MINIDL_CHECK(device.is_cpu() || weight.format().is_csr(),
               "{}: to {}: on a GPU a sparse layer must be CSR, this one is {} (convert with SparseFormat::csr())",
               describe(), device, weight.format().name());
}
Tensor SparseLinear::forward(const Tensor& x) { return sparse_linear(x, weight, bias); }
Tensor SparseLinear::forward_fused(const Tensor& x, Activation act) { return sparse_linear(x, weight, bias, act); }

std::string SparseLinear::describe() const {
  return fmt::format("SparseLinear(in_features={}, out_features={}, {}, {} stored, {:.1f}% sparse)", in_features,
                     out_features, weight.format().name(), weight.stored(), 100 * (1 - weight.density()));
}

nlohmann::json SparseLinear::hyper_parameters() const {
  return {{"type", "SparseLinear"}, {"in_features", in_features}, {"out_features", out_features},
          {"format", weight.format().name()}};
}

// ---------------------------------------------------------------- SparseConv2d

namespace {
SparseMatrix flattened(const nn::Conv2d& dense, SparseFormat format) {
  MINIDL_CHECK(dense.options.groups == 1, "to sparse: {}: grouped convolutions have no sparse kernel",
               dense.describe());
  const Tensor w = dense.weight.detach();
  return SparseMatrix::from_dense(w.reshape({w.size(0), w.numel() / w.size(0)}), format, IndexWidth::automatic,
                                  dense.describe());
}
}  // namespace

SparseConv2d::SparseConv2d(const nn::Conv2d& dense, SparseFormat format)
    : weight(flattened(dense, format)), bias(dense.bias.defined() ? dense.bias.detach().clone() : Tensor()),
      in_channels(dense.in_channels), out_channels(dense.out_channels), kernel_size(dense.kernel_size),
      options(dense.options) {
  if (bias.defined()) register_buffer("bias", bias);
}

void SparseConv2d::check_device(const Device& device) const {
  MINIDL_CHECK(device.is_cpu(), "{}: to {}: the sparse convolution runs on the CPU only", describe(), device);
}
Tensor SparseConv2d::forward(const Tensor& x) {
  return sparse_conv2d(x, weight, bias, kernel_size, kernel_size, options);
}
Tensor SparseConv2d::forward_fused(const Tensor& x, Activation act) {
  return sparse_conv2d(x, weight, bias, kernel_size, kernel_size, options, act);
}

std::string SparseConv2d::describe() const {
  return fmt::format("SparseConv2d({}, {}, kernel_size={}, stride={}, padding={}, {}, {:.1f}% sparse)", in_channels,
                     out_channels, kernel_size, options.stride, options.padding, weight.format().name(),
                     100 * (1 - weight.density()));
}

nlohmann::json SparseConv2d::hyper_parameters() const {
  return {{"type", "SparseConv2d"}, {"in_channels", in_channels}, {"out_channels", out_channels},
          {"kernel_size", kernel_size}, {"format", weight.format().name()}};
}

// ---------------------------------------------------------------- to_sparse

std::vector<SparseChoice> to_sparse(nn::Module& model, SparseFormat format, const ToSparseOptions& o) {
  NoGradGuard no_grad;
  MINIDL_CHECK(!model.is_training(), "to_sparse: the model is in training mode; call eval() first (sparse layers "
                                     "are for inference)");
  MINIDL_CHECK(!o.measure || o.example.defined(), "to_sparse: measuring needs an example input (ToSparseOptions::example)");
  std::vector<SparseChoice> report;
  std::vector<std::pair<std::string, nn::ModulePtr>> candidates;
  std::vector<size_t> row;  // candidates[i]'s entry in report
  for (auto& [path, m] : model.named_modules()) {
    Tensor w;
    if (auto* l = dynamic_cast<nn::Linear*>(m.get())) w = l->weight;
    else if (auto* c = dynamic_cast<nn::Conv2d*>(m.get())) w = c->weight;
    else continue;
    MINIDL_CHECK(w.device().is_cpu() && w.dtype() == DType::f32, "to_sparse: {} ({}) is {} on {}; the sparse kernels "
                 "take f32 on the CPU", path, m->describe(), w.dtype(), w.device());
    SparseChoice r{.path = path, .layer = m->describe(), .sparsity = zero_fraction(w), .choice = "dense", .reason = ""};
    if (r.sparsity < o.min_sparsity) {
      r.reason = fmt::format("{} sparse, below the {} threshold", percent(r.sparsity), percent(o.min_sparsity));
      report.push_back(r);
      continue;
    }
    report.push_back(r);
    candidates.emplace_back(path, m);
    row.push_back(report.size() - 1);
  }

  // The sparse twin of each candidate (or why there is none).
  std::vector<nn::ModulePtr> twins(candidates.size());
  for (size_t i = 0; i < candidates.size(); ++i) {
    SparseChoice& r = report[row[i]];
    try {
      if (auto* l = dynamic_cast<nn::Linear*>(candidates[i].second.get())) twins[i] = std::make_shared<SparseLinear>(*l, format);
      else twins[i] = std::make_shared<SparseConv2d>(dynamic_cast<nn::Conv2d&>(*candidates[i].second), format);
      r.choice = format.name();
      r.reason = percent(r.sparsity) + " sparse";
    } catch (const Error& e) {
      r.reason = e.what();
    }
  }

  if (o.measure) {
    // Each candidate's real input: probes stand in for the layers while the example runs.
    const auto probes = run_with_probes(model, candidates, o.example);
    for (size_t i = 0; i < candidates.size(); ++i) {
      if (!twins[i]) continue;
      SparseChoice& r = report[row[i]];
      const Tensor x = probes[i]->input;
      if (!x.defined()) {
        twins[i] = nullptr, r.choice = "dense", r.reason = "the example never reached it";
        continue;
      }
      nn::Module& dense = *candidates[i].second;
      nn::Module& sparse = *twins[i];
      std::tie(r.dense_seconds, r.sparse_seconds) =
          time_side_by_side([&] { dense.forward(x); }, [&] { sparse.forward(x); }, o.rounds);
      const double ratio = r.dense_seconds / r.sparse_seconds;
      if (ratio > 1) {
        r.reason = fmt::format("{} sparse, measured {:.2f}x faster", percent(r.sparsity), ratio);
      } else {
        r.choice = "dense";
        r.reason = fmt::format("{} sparse, but {} measured {:.2f}x slower", percent(r.sparsity), format.name(),
                               1 / ratio);
        twins[i] = nullptr;
      }
    }
  }
  for (size_t i = 0; i < candidates.size(); ++i)
    if (twins[i]) model.replace(candidates[i].first, twins[i]);
  return report;
}

}  // namespace minidl::compress
