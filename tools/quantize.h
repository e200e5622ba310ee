// tools/quantize.h — `minidl quantize CKPT --dynamic int8 --out OUT`: the int8
// model, what quantizing cost in accuracy and SQNR layer by layer, and its size.
#pragma once

#include <cstdint>
#include <string>

#include "nn/data.h"

namespace minidl::tools {

struct QuantizeOptions {
  std::string checkpoint, out;
  std::string dynamic = "int8";  // the only scheme so far
  bool per_tensor = false;       // one weight scale per tensor instead of per output channel
  bool convolutions = false;     // the convolutions too, where they gain (compress::QuantizeOptions)
  int64_t calibration = 256;     // images whose activations measure each layer's SQNR
  std::string data_dir = nn::kFashionMnistDir;
  int64_t limit_test = 0;  // evaluate on the first N test images (0: all)
  bool json = false;
};

int run_quantize(const QuantizeOptions& o);

}  // namespace minidl::tools
