// tools/bench/shapes.h — the shapes a person types on `minidl bench`'s command
// line, read strictly (core/parse.h): "4096x4096x4096" (gemm), "4096x1000"
// (loss), "128x1x28x28:32x3:p1" (conv), "1024x1024" or "conv64x288x196"
// (sparse). Each reader returns the shape or throws an Error naming the bench,
// the text and what is wrong in it; fuzz/targets.h (fuzz_text) holds them to that.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace minidl::bench {

// "4096x4096x4096" -> {4096, 4096, 4096}: exactly `count` whole numbers >= 1
// joined by 'x', or an error naming the bench, the text and what was expected
// (`expected`, e.g. "MxNxK, e.g. 1024x1024x1024").
std::vector<int64_t> parse_sizes(const std::string& spec, size_t count, const char* bench, const char* expected);

// A convolution: input (N, C, H, W), O output channels, a K x K kernel.
struct ConvShape {
  int64_t n, c, h, w, o, k, stride = 1, pad = 0;
};
// "NxCxHxW:OxK[:sS][:pP]", every size >= 1 and the padding >= 0.
ConvShape parse_conv_shape(const std::string& spec);

// A weight (out, in) as a Linear uses it (y = x · Wᵀ, batch rows), or as a
// convolution does after im2col (y = W · cols, `positions` columns per image).
struct SweepShape {
  std::string name;
  int64_t out = 0, in = 0, positions = 0;
  bool conv() const { return positions > 0; }
};
// "OUTxIN" (a Linear) or "convOUTxINxPOSITIONS" (an im2col'd convolution).
SweepShape parse_sweep_shape(const std::string& spec);

}  // namespace minidl::bench
