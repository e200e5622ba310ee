#include "tools/bench/shapes.h"

#include <fmt/format.h>

#include "core/check.h"
#include "core/parse.h"

namespace minidl::bench {

std::vector<int64_t> parse_sizes(const std::string& spec, size_t count, const char* bench, const char* expected) {
  const std::optional<std::vector<int64_t>> dims = parse_dims(spec);
  if (!dims || dims->size() != count)
    throw Error(fmt::format("bench {}: cannot parse shape '{}' (expected {}; {} whole numbers >= 1 joined by 'x')",
                            bench, spec, expected, count));
  return *dims;
}

ConvShape parse_conv_shape(const std::string& spec) {
  std::vector<std::string> fields;
  for (size_t start = 0;;) {  // split at every ':' (an empty field is kept, and refused below)
    const size_t colon = spec.find(':', start);
    fields.push_back(spec.substr(start, colon - start));
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  if (fields.size() < 2)
    throw Error(
        fmt::format("bench conv: cannot parse shape '{}' (expected NxCxHxW:OxK[:sS][:pP], e.g. "
                    "128x1x28x28:32x3:p1)",
                    spec));
  const std::vector<int64_t> x =
      parse_sizes(fields[0], 4, "conv", fmt::format("NxCxHxW, the input of '{}'", spec).c_str());
  const std::vector<int64_t> w =
      parse_sizes(fields[1], 2, "conv", fmt::format("OxK, the kernel of '{}'", spec).c_str());
  ConvShape s{.n = x[0], .c = x[1], .h = x[2], .w = x[3], .o = w[0], .k = w[1]};
  auto whole = [&](const std::string& text, const char* what, int64_t least) {
    const std::optional<int64_t> v = parse_int(text);
    if (!v || *v < least)
      throw Error(
          fmt::format("bench conv: {} in '{}' is '{}'; it must be a whole number >= {}", what, spec, text, least));
    return *v;
  };
  for (size_t i = 2; i < fields.size(); ++i) {
    const std::string& f = fields[i];
    if (f.starts_with('s'))
      s.stride = whole(f.substr(1), "the stride", 1);
    else if (f.starts_with('p'))
      s.pad = whole(f.substr(1), "the padding", 0);
    else
      throw Error(fmt::format("bench conv: '{}' in '{}' is neither sS nor pP", f, spec));
  }
  return s;
}

SweepShape parse_sweep_shape(const std::string& spec) {
  const bool conv = spec.starts_with("conv");
  const std::optional<std::vector<int64_t>> dims = parse_dims(std::string_view(spec).substr(conv ? 4 : 0));
  if (!dims || dims->size() != (conv ? 3u : 2u))
    throw Error("bench sparse: cannot parse shape '" + spec +
                "' (expected OUTxIN, e.g. 1024x1024, or convOUTxINxPOSITIONS, e.g. conv64x288x196)");
  return {.name = spec, .out = (*dims)[0], .in = (*dims)[1], .positions = conv ? (*dims)[2] : 0};
}

}  // namespace minidl::bench
