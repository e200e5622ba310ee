// fuzz/make_seeds.cpp — writes the seed corpus under fuzz/corpus/ (committed; rerun
// only to change it): small valid inputs that reach every branch of each parser.
//
//   cmake --build --preset asan --target minidl_make_fuzz_seeds
//   ./build/asan/fuzz/minidl_make_fuzz_seeds fuzz/corpus
#include <fmt/format.h>
#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "compress/prune.h"
#include "compress/quantize.h"
#include "minidl.h"
#include "nn/safetensors.h"
#include "nn/train.h"

using namespace minidl;
using namespace minidl::nn;
namespace fs = std::filesystem;

namespace {
void write(const fs::path& path, const std::vector<uint8_t>& bytes) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}
std::vector<uint8_t> idx_file(std::vector<uint32_t> dims, uint8_t fill) {
  std::vector<uint8_t> b = {0, 0, 8, static_cast<uint8_t>(dims.size())};
  size_t n = 1;
  for (uint32_t d : dims) {
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(d >> s));
    n *= d;
  }
  for (size_t i = 0; i < n; ++i) b.push_back(static_cast<uint8_t>(fill + i));
  return b;
}
std::vector<uint8_t> gzip(const std::vector<uint8_t>& in) {
  z_stream zs{};
  deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
  std::vector<uint8_t> out(deflateBound(&zs, in.size()) + 32);
  zs.next_in = const_cast<Bytef*>(in.data()), zs.avail_in = static_cast<uInt>(in.size());
  zs.next_out = out.data(), zs.avail_out = static_cast<uInt>(out.size());
  deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}
// A checkpoint with optimizer state after one step, as `minidl train` writes it.
// With `prune`, half of each Linear's weights pruned and the masks saved beside the model.
void checkpoint(const fs::path& path, std::shared_ptr<Sequential> model, Shape input, bool prune = false) {
  TrainConfig c;
  c.model = "custom";
  Trainer t(model, c);
  Tensor loss = cross_entropy(model->forward(randn(input)), zeros({input[0]}, {.dtype = DType::int64}));
  loss.backward();
  t.optimizer().step();
  compress::Pruner pruner(*model);
  if (prune)
    for (const auto& [name, p] : model->named_parameters())
      if (p.dim() == 2) pruner.l1_unstructured(name, compress::Amount::fraction(0.5));
  t.save(path.string(), pruner.checkpoint_tensors(), pruner.checkpoint_metadata());
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  const fs::path dir = argv[1];
  for (const char* sub : {"safetensors", "idx", "checkpoint", "text"}) fs::create_directories(dir / sub);

  save_safetensors((dir / "safetensors/dtypes.safetensors").string(),
                   {{"f32", randn({2, 3})},
                    {"f64", randn({3}, {.dtype = DType::f64})},
                    {"i64", arange(4)},
                    {"bf16", randn({2, 2}).to(DType::bf16)},
                    {"flag", from_vector<bool>({true, false}, {2})},
                    {"empty", zeros({0, 3})},
                    {"scalar", scalar_tensor(1.5)}},
                   {{"note", "seed"}});

  // The first byte selects the IDX kind: 0 labels (1-D), 1 images (3-D).
  auto with_kind = [](uint8_t kind, std::vector<uint8_t> b) {
    b.insert(b.begin(), kind);
    return b;
  };
  write(dir / "idx/labels", with_kind(0, idx_file({5}, 3)));
  write(dir / "idx/labels.gz", with_kind(0, gzip(idx_file({5}, 3))));
  write(dir / "idx/images", with_kind(1, idx_file({2, 3, 3}, 7)));
  write(dir / "idx/images.gz", with_kind(1, gzip(idx_file({2, 3, 3}, 7))));

  Generator gen(1);
  auto small = make<Sequential>();
  small->add(make<Conv2d>(1, 2, 3, Conv2dOptions{.padding = {1, 1}}, true, gen))
      .add(make<BatchNorm2d>(2))
      .add(make<ReLU>())
      .add(make<MaxPool2d>(2))
      .add(make<Flatten>())
      .add(make<Dropout>(0.25, 3))
      .add(make<Linear>(8, 3, true, gen));
  checkpoint(dir / "checkpoint/small.safetensors", small, {2, 1, 4, 4});
  auto residual = make<Sequential>();
  residual->add(make<Conv2d>(1, 2, 3, Conv2dOptions{.padding = {1, 1}}, false, gen))
      .add(make<ResidualBlock>(2, 4, 2, gen))
      .add(make<AdaptiveAvgPool2d>(std::array<int64_t, 2>{1, 1}))
      .add(make<Flatten>())
      .add(make<GELU>())
      .add(make<Linear>(4, 3, true, gen));
  checkpoint(dir / "checkpoint/residual.safetensors", residual, {2, 1, 4, 4});
  Generator gen2(2);
  auto pruned = make<Sequential>();
  pruned->add(make<Flatten>())
      .add(make<Linear>(16, 6, true, gen2))
      .add(make<ReLU>())
      .add(make<Linear>(6, 3, true, gen2));
  checkpoint(dir / "checkpoint/pruned.safetensors", pruned, {2, 1, 4, 4}, /*prune=*/true);
  // An int8 model, as `minidl quantize` writes it (no optimizer state).
  Generator gen3(3);
  auto quantized = make<Sequential>();
  quantized->add(make<Flatten>())
      .add(make<Linear>(16, 6, true, gen3))
      .add(make<ReLU>())
      .add(make<Linear>(6, 3, false, gen3));
  quantized->eval();
  compress::quantize_dynamic(*quantized);
  save_model((dir / "checkpoint/quantized.safetensors").string(), *quantized, {{"quantization", "int8-dynamic"}});
  // And one with an int8 convolution (patch 16·3·3 = 144) beside an f32 one (patch 9).
  Generator gen4(4);
  auto quantized_conv = make<Sequential>();
  quantized_conv->add(make<Conv2d>(1, 16, 3, Conv2dOptions{.padding = {1, 1}}, true, gen4))
      .add(make<ReLU>())
      .add(make<Conv2d>(16, 8, 3, Conv2dOptions{.padding = {1, 1}}, false, gen4))
      .add(make<ReLU>())
      .add(make<MaxPool2d>(2))
      .add(make<Flatten>())
      .add(make<Linear>(8 * 2 * 2, 3, true, gen4));
  quantized_conv->eval();
  compress::QuantizeOptions with_convs;
  with_convs.convolutions = true;
  compress::quantize_dynamic(*quantized_conv, with_convs);
  save_model((dir / "checkpoint/quantized_conv.safetensors").string(), *quantized_conv,
             {{"quantization", "int8-dynamic"}});
  // The safetensors target reads checkpoints too.
  fs::copy_file(dir / "checkpoint/small.safetensors", dir / "safetensors/checkpoint.safetensors",
                fs::copy_options::overwrite_existing);

  // The text target: the first byte picks the reader (fuzz::text), the rest is
  // what a person would type to it.
  const std::vector<std::pair<uint8_t, std::string>> texts = {{0, "42"},
                                                              {0, "-9223372036854775808"},
                                                              {1, "0.5"},
                                                              {1, "-1e-3"},
                                                              {2, "128x784x512"},
                                                              {3 | (2 << 3), "33x17x65"},
                                                              {3, "7"},
                                                              {4, "128x1x28x28:32x3:p1"},
                                                              {4, "2x3x9x9:4x3:s2:p0"},
                                                              {5, "1024x1024"},
                                                              {5, "conv64x288x196"},
                                                              {6, "cuda:1"},
                                                              {6, "cpu"},
                                                              {7, "bsr4x4"},
                                                              {7, "csr"}};
  for (size_t i = 0; i < texts.size(); ++i) {
    std::vector<uint8_t> b = {texts[i].first};
    b.insert(b.end(), texts[i].second.begin(), texts[i].second.end());
    write(dir / fmt::format("text/{:02}", i), b);
  }
  std::printf("seeds written under %s\n", dir.c_str());
  return 0;
}
