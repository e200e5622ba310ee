// tests/test_fuzz_inputs.cpp — the fuzz targets' seed corpus and every kept
// regression input (fuzz/corpus, fuzz/regressions), run through the same input
// handling as the fuzzers (fuzz/targets.h) in the ordinary test build, so a fixed
// finding stays fixed even where no fuzzer runs.
#include <doctest/doctest.h>

#include <filesystem>

#include "core/file.h"
#include "fuzz/targets.h"
#include "temp_dir.h"

using namespace minidl;
namespace fs = std::filesystem;

namespace {
std::vector<fs::path> files_in(const std::string& sub) {
  std::vector<fs::path> out;
  const fs::path dir = fs::path(MINIDL_SOURCE_DIR) / "fuzz" / sub;
  if (fs::exists(dir))
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file() && e.path().filename().string()[0] != '.') out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}
}  // namespace

TEST_CASE("the fuzz seeds are valid inputs: each parses, each checkpoint loads and resumes") {
  auto st = files_in("corpus/safetensors");
  auto idx = files_in("corpus/idx");
  auto ck = files_in("corpus/checkpoint");
  REQUIRE(st.size() >= 2);
  REQUIRE(idx.size() >= 4);
  REQUIRE(ck.size() >= 3);
  auto text = files_in("corpus/text");
  REQUIRE(text.size() >= 10);
  for (const auto& p : st) {
    CAPTURE(p);
    std::vector<uint8_t> b = minidl::read_file(p);
    CHECK_NOTHROW(nn::parse_safetensors(reinterpret_cast<const char*>(b.data()), b.size(), p.string()));
  }
  for (const auto& p : idx) {
    CAPTURE(p);
    std::vector<uint8_t> b = minidl::read_file(p);
    REQUIRE(b.size() > 1);
    nn::IdxArray a =
        nn::parse_idx(nn::gunzip_maybe(b.data() + 1, b.size() - 1, p.string()), b[0] & 1 ? 3 : 1, p.string());
    CHECK(!a.data.empty());
  }
  for (const auto& p : ck) {
    CAPTURE(p);
    std::vector<uint8_t> b = minidl::read_file(p);
    nn::SafeTensors f = nn::parse_safetensors(reinterpret_cast<const char*>(b.data()), b.size(), p.string());
    nn::ModulePtr m = nn::load_model(f, p.string());
    CHECK_NOTHROW(compress::Pruner(*m).load_from(f, p.string()));
    if (compress::is_quantized(*m)) {  // an int8 model is for inference: it runs, it does not resume training
      NoGradGuard no_grad;
      m->eval();
      CHECK(m->forward(randn({2, 1, 4, 4})).shape() == Shape{2, 3});
      continue;
    }
    nn::TrainConfig c;
    c.model = "custom";
    nn::Trainer t(m, c);
    CHECK_NOTHROW(t.resume(f, p.string()));
    CHECK(t.optimizer().steps() == 1);
  }
  // Every text seed reads without an error: each is something a person would type.
  for (const auto& p : text) {
    CAPTURE(p);
    std::vector<uint8_t> b = minidl::read_file(p);
    REQUIRE(b.size() > 1);
    const std::string t(b.begin() + 1, b.end());
    switch (b[0] & 7) {
      case 0:
        CHECK(parse_int(t).has_value());
        break;
      case 1:
        CHECK(parse_real(t).has_value());
        break;
      case 2:
        CHECK(parse_dims(t).has_value());
        break;
      case 3:
        CHECK_NOTHROW(bench::parse_sizes(t, ((b[0] >> 3) & 3) + 1, "seed", "sizes"));
        break;
      case 4:
        CHECK_NOTHROW(bench::parse_conv_shape(t));
        break;
      case 5:
        CHECK_NOTHROW(bench::parse_sweep_shape(t));
        break;
      case 6:
        CHECK_NOTHROW(Device{t});
        break;
      default:
        CHECK_NOTHROW(compress::SparseFormat::parse(t));
    }
    CHECK_NOTHROW(fuzz::text(b.data(), b.size()));
  }
}

TEST_CASE("every kept fuzz finding is now a clear minidl::Error or a valid input, never a crash") {
  int n = 0;
  for (const char* target : {"safetensors", "idx", "checkpoint", "text"}) {
    for (const auto& p : files_in(std::string("regressions/") + target)) {
      CAPTURE(p);
      std::vector<uint8_t> b = minidl::read_file(p);
      // The target functions swallow minidl::Error; anything else escapes and fails here.
      if (std::string(target) == "safetensors") CHECK_NOTHROW(fuzz::safetensors(b.data(), b.size()));
      if (std::string(target) == "idx") CHECK_NOTHROW(fuzz::idx(b.data(), b.size()));
      if (std::string(target) == "checkpoint") CHECK_NOTHROW(fuzz::checkpoint(b.data(), b.size()));
      if (std::string(target) == "text") CHECK_NOTHROW(fuzz::text(b.data(), b.size()));
      ++n;
    }
  }
  MESSAGE(n << " kept fuzz inputs replayed");
}

TEST_CASE("checkpoint metadata that is not what minidl wrote is a clear error") {
  auto ck = files_in("corpus/checkpoint");
  REQUIRE(!ck.empty());
  std::vector<uint8_t> b = minidl::read_file(ck.front());
  nn::SafeTensors good = nn::parse_safetensors(reinterpret_cast<const char*>(b.data()), b.size(), "ck");
  auto resumed = [&](auto mutate) {
    nn::SafeTensors f = good;
    mutate(f.metadata);
    nn::ModulePtr m = nn::load_model(f, "ck");
    nn::TrainConfig c;
    c.model = "custom";
    nn::Trainer t(m, c);
    t.resume(f, "ck");
  };
  CHECK_THROWS_WITH_AS(resumed([](auto& m) { m["epoch"] = "two"; }),
                       doctest::Contains("'epoch' = 'two' is not an epoch"), Error);
  CHECK_THROWS_WITH_AS(resumed([](auto& m) { m["history"] = "{"; }), doctest::Contains("'history' is not a JSON array"),
                       Error);
  CHECK_THROWS_WITH_AS(resumed([](auto& m) { m["history"] = "[1E400]"; }),
                       doctest::Contains("'history' is not a JSON array"), Error);  // a number overflow
  CHECK_THROWS_WITH_AS(resumed([](auto& m) { m["history"] = R"([{"epoch": "x"}])"; }),
                       doctest::Contains("history entry 0 has no number 'epoch'"), Error);
  nn::SafeTensors bad_spec = good;
  for (const char* text : {"[1, 2", "{\"type\": 1E400}"}) {
    bad_spec.metadata["model"] = text;
    CHECK_THROWS_WITH_AS(nn::load_model(bad_spec, "ck"),
                         doctest::Contains("ck: the model spec in the metadata ('model') is not valid JSON"), Error);
  }
}
