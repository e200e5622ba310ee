#include "compress/report.h"

#include "compress/probe.h"
#include "compress/sparse.h"
#include "core/autograd.h"
#include "nn/layers.h"
#include "ops/elementwise.h"
#include "ops/reduce.h"

namespace minidl::compress {

std::vector<LayerSparsity> sparsity_report(nn::Module& model, const Tensor& example) {
  NoGradGuard no_grad;
  std::vector<std::pair<std::string, nn::ModulePtr>> layers;
  for (auto& [path, m] : model.named_modules())
    if (dynamic_cast<nn::Linear*>(m.get()) || dynamic_cast<nn::Conv2d*>(m.get())) layers.emplace_back(path, m);
  const auto probes = run_with_probes(model, layers, example);
  std::vector<LayerSparsity> report;
  for (size_t i = 0; i < layers.size(); ++i) {
    const nn::Module& m = *layers[i].second;
    auto* lin = dynamic_cast<const nn::Linear*>(&m);
    const Tensor w = lin ? lin->weight : dynamic_cast<const nn::Conv2d&>(m).weight;
    LayerSparsity r{.path = layers[i].first, .layer = m.describe(), .shape = w.shape(), .numel = w.numel()};
    r.nnz = static_cast<int64_t>(sum(ne(w, 0.0).to(DType::f64)).item());
    r.sparsity = r.numel ? 1.0 - static_cast<double>(r.nnz) / static_cast<double>(r.numel) : 0.0;
    r.dense_bytes = r.numel * 4;
    const Tensor flat = w.detach().to(kCPU).to(DType::f32).reshape({w.size(0), w.numel() / w.size(0)});
    r.csr_bytes = SparseMatrix::from_dense(flat).bytes();
    const Tensor& y = probes[i]->output;
    const int64_t positions = (!lin && y.defined() && y.dim() == 4) ? y.size(2) * y.size(3) : 1;
    r.dense_macs = r.numel * positions;
    r.sparse_macs = r.nnz * positions;
    report.push_back(r);
  }
  return report;
}

nlohmann::json to_json(const std::vector<LayerSparsity>& report) {
  nlohmann::json j = nlohmann::json::array();
  for (const auto& r : report)
    j.push_back({{"layer", r.path}, {"module", r.layer}, {"shape", r.shape}, {"numel", r.numel}, {"nnz", r.nnz},
                 {"sparsity", r.sparsity}, {"dense_bytes", r.dense_bytes}, {"csr_bytes", r.csr_bytes},
                 {"dense_macs", r.dense_macs}, {"sparse_macs", r.sparse_macs}});
  return j;
}

}  // namespace minidl::compress
