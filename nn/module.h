// nn/module.h — Module: a layer or model with named parameters, buffers and children.
//
// As torch.nn.Module: parameters (trained) and buffers (saved, not trained,
// e.g. BatchNorm's running statistics) are registered under names, children
// under theirs, and every query walks the tree to give dotted names such as
// "features.0.weight" — the same names PyTorch's state_dict uses, so weights
// move between the two.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace minidl::nn {

// name -> tensor, sorted by name (the order safetensors files use too).
using StateDict = std::map<std::string, Tensor>;

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  // Registered members are referred to by address: a Module never moves.
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return forward(x); }
  // One line describing this module alone, e.g. "Linear(784, 512)".
  virtual std::string describe() const = 0;
  // The whole tree, indented, like print(model) in PyTorch.
  std::string str() const;

  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  std::vector<Tensor> parameters() const;
  std::vector<std::pair<std::string, Tensor>> named_buffers() const;
  int64_t parameter_count() const;

  // Parameters and buffers by name.
  StateDict state_dict() const;
  // Copies values in (shapes and dtypes must match). Strict: every name must be
  // present and none extra; errors name the offending tensor.
  void load_state_dict(const StateDict& state, bool strict = true);

  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  void to(Device device);
  void zero_grad();

 protected:
  // Registers a member tensor; the module keeps its address, so `to()` and
  // `load_state_dict()` update the member itself.
  void register_parameter(std::string name, Tensor& t);
  void register_buffer(std::string name, Tensor& t);
  template <class M>
  std::shared_ptr<M> register_module(std::string name, std::shared_ptr<M> m) {
    children_.emplace_back(std::move(name), m);
    return m;
  }
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }

 private:
  template <class F>
  void visit(const std::string& prefix, F&& f) const;  // f(dotted_prefix, module)
  std::vector<std::pair<std::string, Tensor*>> params_, buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

using ModulePtr = std::shared_ptr<Module>;

}  // namespace minidl::nn
