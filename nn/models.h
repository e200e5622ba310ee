// nn/models.h — the model zoo, buildable by name (`minidl train --model cnn`).
//
// Each model is a Sequential whose parameter names match the PyTorch definition
// in tools/bench/torch_models.py, so checkpoints load on either side.
#pragma once

#include <string>
#include <vector>

#include "core/generator.h"
#include "nn/layers.h"

namespace minidl::nn {

// "mlp", "mlp-small", "cnn", "resnet-s"; for 1×28×28 inputs and 10 classes.
std::shared_ptr<Sequential> build_model(const std::string& name, Generator& gen = default_generator());
const std::vector<std::string>& model_names();

}  // namespace minidl::nn
