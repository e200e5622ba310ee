// nn/spec.h — model specs: the layer tree as JSON, and back into modules.
//
// Module::spec() writes a model as a tree of {"type": ..., hyper-parameters...,
// "children": [{"name", "spec"}...]}; module_from_spec() rebuilds the same tree
// from it. Checkpoints store the spec in their metadata ("model"), so a model
// built by hand, shrunk by structured pruning or converted to sparse or int8
// layers loads back without naming an architecture:
//
//   {"type": "Sequential", "children": [
//     {"name": "0", "spec": {"type": "Flatten"}},
//     {"name": "1", "spec": {"type": "Linear", "in_features": 784, "out_features": 64, "bias": true}}, ...]}
//
// Each layer type has one builder, registered by its type name. nn/ registers its
// own layers; compress/ registers its (SparseLinear, QuantLinear, ...) the same way.
#pragma once

#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "nn/module.h"

namespace minidl::nn {

// Reads one node of a spec, with errors that name where in the tree it is
// ("model spec at 3.conv1: 'kernel_size' must be an integer in [1, 64]").
class SpecReader {
 public:
  SpecReader(const nlohmann::json& node, std::string path, int depth, int64_t* budget);

  const std::string& path() const { return path_; }
  std::string type() const;
  int64_t integer(const char* key, int64_t lo, int64_t hi) const;
  double number(const char* key, double lo, double hi) const;
  bool boolean(const char* key) const;
  std::array<int64_t, 2> pair(const char* key, int64_t lo, int64_t hi) const;
  // The children, built (in order, with their names).
  std::vector<std::pair<std::string, ModulePtr>> children() const;
  // Whether the node lists any children (without building them).
  bool has_children() const;
  // A layer about to allocate `elements` parameter/buffer elements: checked
  // against what the checkpoint holds, so a corrupt spec cannot ask for 10¹² floats.
  void reserve(int64_t elements) const;
  [[noreturn]] void fail_here(const std::string& what) const;

 private:
  const nlohmann::json& at(const char* key) const;
  const nlohmann::json& node_;
  std::string path_;
  int depth_;
  int64_t* budget_;
};

using LayerBuilder = std::function<ModulePtr(const SpecReader&)>;

// Adds (or replaces) the builder for a layer type.
void register_layer_type(const std::string& type, LayerBuilder builder);
std::vector<std::string> registered_layer_types();

// Rebuilds a module tree from Module::spec(). `max_elements` bounds the
// parameters and buffers it may allocate (a checkpoint passes the number of
// elements it holds); errors are minidl::Error naming the node.
ModulePtr module_from_spec(const nlohmann::json& spec, int64_t max_elements = std::numeric_limits<int64_t>::max());

}  // namespace minidl::nn
