// core/autograd.h — the dynamic autograd graph: nodes, grad mode, the backward engine.
//
// Every op that runs with grad mode on, on an input that requires grad, records a
// Node on its output. The node holds edges to the nodes of its inputs (a leaf
// that requires grad gets an AccumulateGrad node that sums into leaf.grad) and a
// backward lambda written right under the op's forward:
//
//   Tensor y = exp_kernel(x);
//   record(y, "ExpBackward", {x}, [y = y.detach()](const Tensor& g, const NeedsGrad&) {
//     return grads{mul(g, y)};  // dy/dx = y
//   });
//
// backward() walks the graph in topological order without recursion, keeps one
// pending gradient per node, runs each backward with grad mode off, and frees
// the saved tensors as it goes unless retain_graph is set. First-order only.
//
// A backward lambda captures what it needs through saved(t): a detached handle,
// plus a note of t's storage version. If an in-place op changes that storage
// before backward runs (x.fill_(0) after y = mul(x, w)), backward stops with an
// error naming the node, instead of silently using the new values.
#pragma once

#include <functional>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace minidl {

// Grad mode is per thread and on by default.
bool grad_mode_enabled();
void set_grad_mode(bool enabled);

// RAII: no graph is recorded inside its scope (inference, optimizer steps).
class NoGradGuard {
 public:
  NoGradGuard() : previous_(grad_mode_enabled()) { set_grad_mode(false); }
  ~NoGradGuard() { set_grad_mode(previous_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

using grads = std::vector<Tensor>;
// needs[i]: whether input i wants a gradient; a backward may skip the others.
using NeedsGrad = std::vector<bool>;
using BackwardFn = std::function<grads(const Tensor& grad_output, const NeedsGrad& needs)>;

// A saved tensor's storage and the version it had when it was saved.
struct SavedVersion {
  std::weak_ptr<Storage> storage;
  uint64_t version = 0;
};

class Node {
 public:
  explicit Node(std::string name) : name_(std::move(name)) {}
  // Iterative: a long chain of nodes is torn down without one stack frame per node.
  virtual ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  const std::string& name() const { return name_; }
  // One edge per input; null where that input needs no gradient.
  std::vector<std::shared_ptr<Node>> next;
  // Shapes of the inputs, to check the gradients a backward returns.
  std::vector<Shape> input_shapes;
  // Set by retain_grad() on a non-leaf: this node's output, to receive its grad.
  std::weak_ptr<TensorImpl> retained_output;
  // What the backward captured with saved(), to check before it runs.
  std::vector<SavedVersion> saved_versions;

  virtual grads apply(const Tensor& grad_output) = 0;
  virtual void release() {}

 private:
  std::string name_;
};

// The node of an ordinary op: a backward lambda and what it captured.
class FunctionNode final : public Node {
 public:
  FunctionNode(std::string name, BackwardFn fn) : Node(std::move(name)), fn_(std::move(fn)) {}
  grads apply(const Tensor& grad_output) override;
  void release() override;

 private:
  BackwardFn fn_;
  bool released_ = false;
};

// The node of a leaf that requires grad: adds the incoming gradient to leaf.grad.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> leaf)
      : Node("AccumulateGrad"), leaf_(std::move(leaf)) {}
  grads apply(const Tensor& grad_output) override;

 private:
  std::shared_ptr<TensorImpl> leaf_;
};

// For backward lambdas' captures: t.detach(), and t's storage version noted for
// the record() call that follows, which checks it before the backward runs.
Tensor saved(const Tensor& t);

// True when grad mode is on and any defined input requires grad.
bool any_requires_grad(std::initializer_list<Tensor> inputs);
bool any_requires_grad(std::span<const Tensor> inputs);

// record()'s two halves: the node attached, or the versions saved() noted for
// it dropped when there is no node to check them.
void attach_node(Tensor& output, const char* name, std::span<const Tensor> inputs, BackwardFn fn);
void forget_saved();

// Attaches a backward node to `output` if any input requires grad (and grad mode
// is on). A template so that fn, the op's lambda, becomes a BackwardFn (a
// std::function: a heap allocation) only when a node is attached.
template <class Fn>
void record(Tensor& output, const char* name, std::span<const Tensor> inputs, Fn&& fn) {
  if (!any_requires_grad(inputs)) return forget_saved();
  attach_node(output, name, inputs, BackwardFn(std::forward<Fn>(fn)));
}
template <class Fn>
void record(Tensor& output, const char* name, std::initializer_list<Tensor> inputs, Fn&& fn) {
  record(output, name, std::span<const Tensor>(inputs.begin(), inputs.size()), std::forward<Fn>(fn));
}

// The engine behind Tensor::backward.
void run_backward(const Tensor& root, const Tensor& grad_root, bool retain_graph);

}  // namespace minidl
