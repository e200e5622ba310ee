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

#include <nlohmann/json.hpp>

#include "core/tensor.h"
#include "ops/kernel_types.h"

namespace minidl::nn {

// name -> tensor, sorted by name (the order safetensors files use too).
using StateDict = std::map<std::string, Tensor>;
// (name, tensor) pairs in the module tree's order.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  // Registered members are referred to by address: a Module never moves.
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  virtual Tensor forward(const Tensor& x) = 0;
  Tensor operator()(const Tensor& x) { return forward(x); }
  // forward(x) followed by `act`, fused into the pass that writes the output —
  // or an undefined Tensor when this layer cannot fuse `act`, and the caller
  // then runs the activation itself. A layer opts in by overriding this; a
  // replacement layer (sparse, int8) that does not simply declines, so nothing
  // ever runs another layer's dense path in its place.
  virtual Tensor forward_fused(const Tensor& x, Activation act);
  // One line describing this module alone, e.g. "Linear(784, 512)".
  virtual std::string describe() const = 0;
  // What rebuilds this module alone: {"type": "Linear", "in_features": 784, ...}
  // (children are added by spec()). nn/spec.h turns specs back into modules.
  virtual nlohmann::json hyper_parameters() const = 0;
  // The whole tree: hyper_parameters() plus "children": [{"name", "spec"}...].
  nlohmann::json spec() const;
  // The whole tree, indented, like print(model) in PyTorch.
  std::string str() const;

  NamedTensors named_parameters() const;
  std::vector<Tensor> parameters() const;
  NamedTensors named_buffers() const;
  int64_t parameter_count() const;

  // Parameters and buffers by name.
  StateDict state_dict() const;
  // Called on every module of the tree once load_state_dict has copied the
  // values in: a layer that keeps data derived from its tensors (an int8
  // layer's packed weight) rebuilds and checks it here.
  virtual void after_load() {}
  // Copies values in (shapes and dtypes must match). Strict: every name must be
  // present and none extra; errors name the offending tensor.
  void load_state_dict(const StateDict& state, bool strict = true);

  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }
  // Moves every parameter and buffer to `device`. A layer that keeps data which
  // is not a registered tensor (a sparse layer's weight) moves it in moved_to();
  // a layer that cannot run there says so in check_device() first, before
  // anything in the tree has moved.
  void to(Device device);
  virtual void check_device(const Device&) const {}
  virtual void moved_to(const Device&) {}
  // Converts the floating-point parameters and buffers (not integer ones such as
  // BatchNorm's num_batches_tracked) to `dtype`, as model.to(torch.float64).
  void to(DType dtype);
  void zero_grad();

  // Direct children, in registration order, and every module of the tree with
  // its dotted name ("" for this one, "3", "3.conv1", ...), as PyTorch's named_modules().
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const { return children_; }
  std::shared_ptr<Module> child(const std::string& name) const;  // throws naming the module's children
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_modules();
  // The module at a dotted path ("3.conv1"), or an error naming the path.
  std::shared_ptr<Module> find(const std::string& path);
  // Replaces the module at a dotted path by `replacement`, in place (nested modules
  // too), and returns the one it replaced. The conversions (prune, to_sparse,
  // quantize) work through this.
  std::shared_ptr<Module> replace(const std::string& path, std::shared_ptr<Module> replacement);

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

 private:
  template <class F>
  void visit(const std::string& prefix, F&& f) const;  // f(dotted_prefix, module)
  std::vector<std::pair<std::string, Tensor*>> params_, buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

using ModulePtr = std::shared_ptr<Module>;

}  // namespace minidl::nn
