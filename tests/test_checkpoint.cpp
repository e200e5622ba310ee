// tests/test_checkpoint.cpp — safetensors layout against the spec, round trips,
// corrupt files, atomic writes, output paths checked before a run, and resuming
// training.
#include <doctest/doctest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/file.h"
#include "minidl.h"
#include "nn/safetensors.h"
#include "nn/train.h"
#include "temp_dir.h"

using namespace minidl;
using namespace minidl::nn;
using minidl::testing::TempDir;
using minidl::testing::write_bytes;
namespace fs = std::filesystem;

namespace {

// A file with the given JSON header and data bytes.
std::vector<uint8_t> make_file(const std::string& json, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> b(8 + json.size() + data.size());
  uint64_t n = json.size();
  std::memcpy(b.data(), &n, 8);
  std::memcpy(b.data() + 8, json.data(), json.size());
  if (!data.empty()) std::memcpy(b.data() + 8 + json.size(), data.data(), data.size());
  return b;
}
}  // namespace

TEST_CASE("a minidl checkpoint is byte-for-byte valid safetensors") {
  TempDir dir;
  Tensor a = from_vector<float>({1.5f, -2.0f, 3.25f, 0.0f, 7.0f, 8.0f}, {2, 3});
  Tensor b = from_vector<int64_t>({-1, 1LL << 40}, {2});
  save_safetensors(dir / "x.safetensors", {{"w", a}, {"counts", b}}, {{"arch", "cnn"}});
  std::vector<uint8_t> f = read_file(dir / "x.safetensors");

  // 1. An 8-byte little-endian header length.
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | f[i];
  REQUIRE(8 + n <= f.size());
  // 2. The header: JSON, starting with '{', padded with spaces; data starts 8-byte aligned.
  std::string header(f.begin() + 8, f.begin() + 8 + static_cast<std::ptrdiff_t>(n));
  CHECK(header.front() == '{');
  CHECK((8 + n) % 8 == 0);
  nlohmann::json j = nlohmann::json::parse(header);
  CHECK(j["__metadata__"]["arch"] == "cnn");
  CHECK(j["w"]["dtype"] == "F32");
  CHECK(j["w"]["shape"] == nlohmann::json::array({2, 3}));
  CHECK(j["counts"]["dtype"] == "I64");
  // 3. The data: offsets relative to the end of the header, covering it exactly.
  auto wo = j["w"]["data_offsets"], co = j["counts"]["data_offsets"];
  CHECK(co[1].get<uint64_t>() - co[0].get<uint64_t>() == 16);
  CHECK(wo[1].get<uint64_t>() - wo[0].get<uint64_t>() == 24);
  CHECK(f.size() == 8 + n + 40);
  // 4. Raw little-endian values.
  float w0;
  std::memcpy(&w0, f.data() + 8 + n + wo[0].get<uint64_t>(), 4);
  CHECK(w0 == 1.5f);
  int64_t c1;
  std::memcpy(&c1, f.data() + 8 + n + co[0].get<uint64_t>() + 8, 8);
  CHECK(c1 == (1LL << 40));
}

TEST_CASE("round trip keeps every tensor, dtype and the metadata") {
  TempDir dir;
  Generator gen(4);
  StateDict in = {{"f32", randn({3, 4}, {}, gen)},
                  {"f64", randn({5}, {.dtype = DType::f64}, gen)},
                  {"bf16", randn({2, 2}, {}, gen).to(DType::bf16)},
                  {"i8", from_vector<int8_t>({-128, 0, 127}, {3})},
                  {"bool", from_vector<bool>({true, false}, {2})},
                  {"scalar", scalar_tensor(3.5)},
                  {"empty", zeros({0, 4})},
                  {"strided", randn({4, 6}, {}, gen).t()}};  // saved contiguous
  save_safetensors(dir / "r.safetensors", in, {{"k", "v"}});
  SafeTensors out = load_safetensors(dir / "r.safetensors");
  CHECK(out.metadata == Metadata{{"k", "v"}});
  REQUIRE(out.tensors.size() == in.size());
  for (const auto& [name_, t] : in) {
    const std::string name = name_;  // a plain copy for CAPTURE's lambda (clang 14)
    CAPTURE(name);
    const Tensor& u = out.tensors.at(name);
    CHECK(u.shape() == t.shape());
    CHECK(u.dtype() == t.dtype());
    CHECK(u.to(DType::f64).to_vector<double>() == t.to(DType::f64).to_vector<double>());
  }
}

TEST_CASE("corrupt safetensors files: errors name the tensor or the byte offset") {
  TempDir dir;
  auto expect = [&](const std::vector<uint8_t>& bytes, const char* message) {
    write_bytes(dir / "bad", bytes);
    CHECK_THROWS_WITH_AS(load_safetensors(dir / "bad"), doctest::Contains(message), Error);
  };
  std::vector<uint8_t> four_floats(16, 0);
  expect({1, 2, 3}, "too short for a safetensors file");
  expect({255, 255, 255, 255, 0, 0, 0, 0, '{'}, "header length 4294967295 (bytes 0-7) exceeds the file size");
  expect(make_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]})", four_floats),
         "invalid JSON header at byte offset");
  expect(make_file(R"([1, 2])", {}), "must start with '{'");
  expect(make_file(R"({"a":{"dtype":"F16","shape":[4],"data_offsets":[0,8]}})", std::vector<uint8_t>(8)),
         "tensor 'a' has dtype \"F16\" which minidl does not support");
  expect(make_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,12]}})", std::vector<uint8_t>(12)),
         "tensor 'a': shape [4] of f32 needs 16 bytes but data_offsets [0, 12] hold 12");
  expect(make_file(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::vector<uint8_t>(8)),
         "tensor 'a': data_offsets [0, 16] fall outside the 8 data bytes");
  expect(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", four_floats),
         "data bytes 0 to 8 are not covered by any tensor");
  expect(make_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", four_floats),
         "8 trailing data bytes after the last tensor");
  expect(make_file(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", std::vector<uint8_t>(4)),
         "negative or non-integer size");
  expect(make_file(R"({"a":{"dtype":"F32","shape":[4]}})", four_floats), "tensor 'a' needs dtype, shape and data_offsets");
  expect(make_file(R"({"a":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}})", {1, 7}), "is not a bool");
  CHECK_THROWS_WITH_AS(load_safetensors(dir / "missing"), doctest::Contains("cannot open"), Error);
}

TEST_CASE("writes are atomic: a failed save leaves the previous file intact and no temporary behind") {
  TempDir dir;
  const std::string path = dir / "model.safetensors";
  save_safetensors(path, {{"w", ones({3})}});
  std::vector<uint8_t> before = read_file(path);
  CHECK_THROWS_AS(save_safetensors(path, {{"__metadata__", zeros({1})}}), Error);
  CHECK(read_file(path) == before);
  CHECK_THROWS_AS(save_safetensors(dir / "no/such/dir/x.safetensors", {{"w", ones({3})}}), Error);
  CHECK_THROWS_WITH_AS(save_safetensors(path, {{"w", ones({3})}, {"hole", Tensor()}}),
                       doctest::Contains("save_safetensors: tensor 'hole' is undefined"), Error);
  CHECK(read_file(path) == before);
  save_safetensors(path, {{"w", zeros({3})}});  // overwriting succeeds
  CHECK(load_safetensors(path).tensors.at("w").to_vector<float>() == std::vector<float>{0, 0, 0});
  int files = 0;
  for (const auto& entry : fs::directory_iterator(dir.path)) files += entry.is_regular_file();
  CHECK(files == 1);
}

TEST_CASE("prepare_output: refuses a directory or a file in the way, before the run; makes missing directories") {
  TempDir dir;
  CHECK_THROWS_WITH_AS(prepare_output(dir.path.string(), "train --out"),
                       doctest::Contains(("train --out: " + dir.path.string() + " is a directory").c_str()), Error);
  const std::string file = dir / "model.safetensors";
  save_safetensors(file, {{"w", ones({3})}});
  CHECK_NOTHROW(prepare_output(file, "train --out"));  // an existing file is overwritten at the end
  CHECK(load_safetensors(file).tensors.count("w") == 1);
  CHECK_THROWS_WITH_AS(prepare_output(file + "/inner.safetensors", "distill --out"),
                       doctest::Contains(("distill --out: cannot make the directory " + file).c_str()), Error);
  const std::string nested = dir / "a/b/c.safetensors";
  prepare_output(nested, "prune --out");
  CHECK(fs::is_directory(dir / "a/b"));
  CHECK_FALSE(fs::exists(nested));  // the directories only: the file comes when the run ends
  CHECK_THROWS_WITH_AS(prepare_output("", "quantize --out"),
                       doctest::Contains("quantize --out: the output path is empty"), Error);
}

TEST_CASE("a checkpoint loads back into an identical model; unknown architectures are refused") {
  TempDir dir;
  ImageDataset train = load_mnist_format(kFashionMnistDir, "train").subset(512);
  ImageDataset test = load_mnist_format(kFashionMnistDir, "t10k").subset(256);
  TrainConfig c{.model = "mlp-small", .epochs = 2, .batch = 64, .limit_train = 512, .limit_test = 256};

  // Uninterrupted: two epochs.
  Trainer straight(build_model(c), c);
  straight.run_epoch(train, test);
  EpochResult s2 = straight.run_epoch(train, test);

  // Interrupted: one epoch, save, a fresh trainer resumes and runs the second.
  Trainer first(build_model(c), c);
  first.run_epoch(train, test);
  first.save(dir / "ckpt.safetensors");
  Trainer second(build_model(c), c);
  second.resume(dir / "ckpt.safetensors");
  CHECK(second.epochs_done() == 1);
  EpochResult r2 = second.run_epoch(train, test);
  CHECK(r2.train_loss == s2.train_loss);  // bit-identical: same batches, same optimizer state
  CHECK(r2.test.accuracy == s2.test.accuracy);

  std::string arch;
  auto model = load_model(dir / "ckpt.safetensors", &arch);
  CHECK(arch == "mlp-small");
  Tensor x = randn({2, 1, 28, 28});
  first.model().eval();
  CHECK(model->forward(x).to_vector<float>() == first.model().forward(x).to_vector<float>());

  // The wrong architecture, a missing tensor, and a foreign arch name are all clear errors.
  TrainConfig other = c;
  other.model = "mlp";
  CHECK_THROWS_WITH_AS(Trainer(build_model(other), other).resume(dir / "ckpt.safetensors"),
                       doctest::Contains("holds a different model ('mlp-small') than the one being trained ('mlp')"),
                       Error);
  SafeTensors f = load_safetensors(dir / "ckpt.safetensors");
  f.tensors.erase("3.bias");
  save_safetensors(dir / "missing.safetensors", f.tensors, f.metadata);
  CHECK_THROWS_WITH_AS(load_model(dir / "missing.safetensors"), doctest::Contains("missing tensor '3.bias'"), Error);
  f.metadata.erase("model");  // an older checkpoint: only the zoo name
  f.metadata["arch"] = "transformer";
  save_safetensors(dir / "arch.safetensors", f.tensors, f.metadata);
  CHECK_THROWS_WITH_AS(load_model(dir / "arch.safetensors"), doctest::Contains("unknown architecture 'transformer'"),
                       Error);
}
