// fuzz/targets.h — what each fuzz target feeds its parser, shared by the libFuzzer
// entry points (fuzz/fuzz_*.cpp) and the regression test (tests/test_fuzz_inputs.cpp).
//
// A parser's promise: any input either parses or throws minidl::Error naming the
// file and what is wrong. Anything else — another exception escaping, a crash, a
// sanitizer report, a leak, a timeout, memory beyond the fuzzer's limit — is a
// finding: fix it, and keep the input under fuzz/regressions/<target>/.
#pragma once

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "compress/prune.h"
#include "compress/quantize.h"
#include "compress/sparse.h"
#include "core/autograd.h"
#include "core/device.h"
#include "core/error.h"
#include "core/parse.h"
#include "nn/idx.h"
#include "nn/safetensors.h"
#include "nn/train.h"
#include "ops/factory.h"
#include "tools/bench/shapes.h"

namespace minidl::fuzz {

// Bytes as a safetensors file.
inline void safetensors(const uint8_t* data, size_t size) {
  try {
    nn::parse_safetensors(reinterpret_cast<const char*>(data), size, "fuzz.safetensors");
  } catch (const Error&) {
  }
}

// The first byte picks labels (1-D) or images (3-D); the rest is the file, gzip'd or not.
inline void idx(const uint8_t* data, size_t size) {
  if (size < 1) return;
  const int ndim = data[0] & 1 ? 3 : 1;
  try {
    nn::parse_idx(nn::gunzip_maybe(data + 1, size - 1, "fuzz.idx", size_t{64} << 20), ndim, "fuzz.idx");
  } catch (const Error&) {
  }
}

// Bytes as a checkpoint: the model rebuilt from its spec and loaded, its pruning
// masks and recipe restored, then a Trainer resumed from the same file
// (optimizer state, epoch, history).
inline void checkpoint(const uint8_t* data, size_t size) {
  try {
    nn::SafeTensors file = nn::parse_safetensors(reinterpret_cast<const char*>(data), size, "fuzz.safetensors");
    nn::ModulePtr model = nn::load_model(file, "fuzz.safetensors");
    if (compress::is_quantized(*model)) {
      // An int8 model runs: its packed weights and scales passed load's checks.
      NoGradGuard no_grad;
      model->eval();
      Generator gen(0);
      model->forward(randn({1, 1, 4, 4}, {}, gen));
    }
    compress::Pruner(*model).load_from(file, "fuzz.safetensors");
    nn::TrainConfig config;
    config.model = "custom";
    nn::Trainer trainer(model, config);
    trainer.resume(file, "fuzz.safetensors");
  } catch (const Error&) {
  }
}

// ---- text: what a person types (core/parse.h, tools/bench/shapes.h, devices, formats)

namespace detail {

// A result that parsed but is wrong is a finding too: thrown as something other
// than minidl::Error, so that it escapes like a crash would.
inline void expect(bool ok, const std::string& what) {
  if (!ok) throw std::logic_error("fuzz_text: " + what);
}

// The int64 that `t` spells as [+-]digits, worked out the slow way: the oracle
// parse_int must agree with.
inline std::optional<int64_t> slow_int(const std::string& t) {
  size_t i = t.size() > 0 && (t[0] == '+' || t[0] == '-') ? 1 : 0;
  if (i == t.size()) return std::nullopt;
  __int128 v = 0;
  for (; i < t.size(); ++i) {
    if (t[i] < '0' || t[i] > '9') return std::nullopt;
    v = v * 10 + (t[i] - '0');
    if (v > (__int128{1} << 63)) return std::nullopt;
  }
  if (t[0] == '-') v = -v;
  if (v > INT64_MAX || v < INT64_MIN) return std::nullopt;
  return static_cast<int64_t>(v);
}

}  // namespace detail

// The first byte picks the reader (its low 3 bits), the rest is the text.
// Beyond "parses or throws minidl::Error", each reader's result is checked:
// parse_int against a slow oracle, the others by what they promise (sizes >= 1)
// or by printing what they read and reading it back.
inline void text(const uint8_t* data, size_t size) {
  if (size < 1) return;
  const std::string t(reinterpret_cast<const char*>(data) + 1, size - 1);
  using detail::expect;
  try {
    switch (data[0] & 7) {
      case 0: {
        const std::optional<int64_t> v = parse_int(t), want = detail::slow_int(t);
        expect(v == want, fmt::format("parse_int('{}') disagrees with the oracle", t));
        break;
      }
      case 1:
        if (const std::optional<double> v = parse_real(t)) {
          expect(std::isfinite(*v), fmt::format("parse_real('{}') is not finite", t));
          expect(parse_real(fmt::format("{}", *v)) == *v, fmt::format("parse_real('{}') does not read back", t));
        }
        break;
      case 2:
        if (const std::optional<std::vector<int64_t>> d = parse_dims(t)) {
          expect(!d->empty() && std::all_of(d->begin(), d->end(), [](int64_t x) { return x >= 1; }),
                 fmt::format("parse_dims('{}') gave a size < 1", t));
          expect(parse_dims(fmt::format("{}", fmt::join(*d, "x"))) == d,
                 fmt::format("parse_dims('{}') does not read back", t));
        }
        break;
      case 3: {
        const size_t count = ((data[0] >> 3) & 3) + 1;  // how many sizes parse_sizes expects
        expect(bench::parse_sizes(t, count, "fuzz", "sizes").size() == count, "parse_sizes: wrong count");
        break;
      }
      case 4: {
        const bench::ConvShape c = bench::parse_conv_shape(t);
        expect(std::min({c.n, c.c, c.h, c.w, c.o, c.k, c.stride}) >= 1 && c.pad >= 0,
               fmt::format("parse_conv_shape('{}') gave a size < 1 or a negative padding", t));
        break;
      }
      case 5: {
        const bench::SweepShape s = bench::parse_sweep_shape(t);
        expect(s.out >= 1 && s.in >= 1 && s.positions >= 0 && s.conv() == t.starts_with("conv"),
               fmt::format("parse_sweep_shape('{}') is inconsistent", t));
        break;
      }
      case 6: {
        const Device d(t);
        expect(Device(d.str()) == d, fmt::format("device '{}' does not read back from '{}'", t, d.str()));
        break;
      }
      default:
        expect(compress::SparseFormat::parse(t).name() == t, fmt::format("sparse format '{}' misread", t));
    }
  } catch (const Error&) {
  }
}

}  // namespace minidl::fuzz
