#include "core/autograd.h"

#include <unordered_map>

#include "core/check.h"
#include "ops/elementwise.h"

namespace minidl {

namespace {
thread_local bool g_grad_mode = true;
// saved() calls since the last record(): an op's lambda captures are evaluated
// right before its record() call, which takes them.
thread_local std::vector<SavedVersion> g_pending_saved;

// The edge for an input: its grad_fn, or its leaf accumulator, or null.
std::shared_ptr<Node> edge_of(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return nullptr;
  TensorImpl* impl = t.impl();
  if (impl->grad_fn) return impl->grad_fn;
  if (auto acc = impl->grad_accumulator.lock()) return acc;
  auto acc = std::make_shared<AccumulateGrad>(t.impl_ptr());
  impl->grad_accumulator = acc;
  return acc;
}

// grad := grad + g, or a private copy of g the first time.
void accumulate_into(Tensor& slot, const Tensor& g) {
  if (!slot.defined()) {
    slot = g.clone();
  } else {
    slot = add(slot, g);
  }
}
}  // namespace

Node::~Node() {
  // Destroying the last owner of a node would destroy its inputs' nodes from
  // inside this destructor, and theirs from inside those: one frame per node.
  // Instead, take over the edges of every node whose last owner we are, so each
  // dies with no edges left.
  std::vector<std::shared_ptr<Node>> stack = std::move(next);
  while (!stack.empty()) {
    std::shared_ptr<Node> node = std::move(stack.back());
    stack.pop_back();
    if (node && node.use_count() == 1) {
      for (auto& edge : node->next) stack.push_back(std::move(edge));
      node->next.clear();
    }
  }
}

Tensor saved(const Tensor& t) {
  // Without grad mode record() attaches nothing and the capture is dropped, so
  // the handle itself will do: no detached copy, nothing to note (inference
  // under NoGradGuard pays nothing for the graph it does not build).
  if (!t.defined() || !g_grad_mode) return t;
  g_pending_saved.push_back({t.storage(), t.storage()->version()});
  return t.detach();
}

bool grad_mode_enabled() { return g_grad_mode; }
void set_grad_mode(bool enabled) { g_grad_mode = enabled; }

grads FunctionNode::apply(const Tensor& grad_output) {
  MINIDL_CHECK(!released_,
               "backward: trying to backward through the graph a second time ({} was already "
               "freed); pass retain_graph=true to the first backward() if you need to",
               name());
  for (const SavedVersion& s : saved_versions) {
    auto storage = s.storage.lock();
    MINIDL_CHECK(!storage || storage->version() == s.version,
                 "backward: a tensor that {} saved for its gradient was modified by an in-place operation after the "
                 "forward (saved at version {}, now version {}); clone it before changing it in place, or change it "
                 "after backward",
                 name(), s.version, storage ? storage->version() : 0);
  }
  NeedsGrad needs(next.size());
  for (size_t i = 0; i < next.size(); ++i) needs[i] = next[i] != nullptr;
  return fn_(grad_output, needs);
}

void FunctionNode::release() {
  fn_ = nullptr;  // drops the saved tensors the lambda captured
  saved_versions.clear();
  released_ = true;
}

grads AccumulateGrad::apply(const Tensor& grad_output) {
  Tensor g = grad_output;
  if (g.dtype() != leaf_->dtype) g = g.to(leaf_->dtype);
  accumulate_into(leaf_->grad, g);
  return {};
}

bool any_requires_grad(std::span<const Tensor> inputs) {
  if (!g_grad_mode) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}
bool any_requires_grad(std::initializer_list<Tensor> inputs) {
  return any_requires_grad(std::span<const Tensor>(inputs.begin(), inputs.size()));
}

void forget_saved() { g_pending_saved.clear(); }

void attach_node(Tensor& output, const char* name, std::span<const Tensor> inputs, BackwardFn fn) {
  auto node = std::make_shared<FunctionNode>(name, std::move(fn));
  // Copied, not moved, then cleared: the pending list keeps its buffer for the
  // next op's saved() calls.
  node->saved_versions = g_pending_saved;
  g_pending_saved.clear();
  node->next.reserve(inputs.size());
  for (const Tensor& t : inputs) {
    node->next.push_back(edge_of(t));
    node->input_shapes.push_back(t.defined() ? t.shape() : Shape{});
  }
  output.impl()->grad_fn = std::move(node);
  output.impl()->requires_grad = true;
}

void run_backward(const Tensor& root, const Tensor& grad_root, bool retain_graph) {
  std::shared_ptr<Node> root_node = edge_of(root);
  MINIDL_CHECK(root_node != nullptr,
               "backward: tensor does not require grad and has no grad_fn (shape {})", root.shape());
  NoGradGuard no_grad;  // backward bodies build no graph

  // 1. Collect the nodes reachable from the root and count, for each, how many
  //    edges point at it: a node runs once all of its consumers have run.
  std::unordered_map<Node*, int> dependencies;
  std::vector<Node*> stack{root_node.get()};
  dependencies[root_node.get()] = 0;
  while (!stack.empty()) {
    Node* node = stack.back();
    stack.pop_back();
    for (const auto& next : node->next) {
      if (!next) continue;
      auto [it, inserted] = dependencies.try_emplace(next.get(), 0);
      ++it->second;
      if (inserted) stack.push_back(next.get());
    }
  }

  // 2. Kahn's algorithm: run a node when all its consumers have run. A node no
  //    gradient reached (all its consumers returned undefined) is skipped but
  //    still releases its children.
  std::unordered_map<Node*, Tensor> pending;
  pending[root_node.get()] = grad_root;
  std::vector<Node*> ready{root_node.get()};
  while (!ready.empty()) {
    Node* node = ready.back();
    ready.pop_back();
    grads input_grads;
    if (auto it = pending.find(node); it != pending.end()) {
      Tensor grad = std::move(it->second);
      pending.erase(it);
      if (auto out = node->retained_output.lock()) accumulate_into(out->grad, grad);
      input_grads = node->apply(grad);
    }
    if (!retain_graph) node->release();

    for (size_t i = 0; i < node->next.size(); ++i) {
      Node* next = node->next[i].get();
      if (!next) continue;
      if (i < input_grads.size() && input_grads[i].defined()) {
        const Tensor& g = input_grads[i];
        MINIDL_CHECK(g.shape() == node->input_shapes[i],
                     "backward: {} returned a gradient of shape {} for input {} of shape {}",
                     node->name(), g.shape(), i, node->input_shapes[i]);
        auto [slot, inserted] = pending.try_emplace(next, g);
        if (!inserted) slot->second = add(slot->second, g);
      }
      if (--dependencies[next] == 0) ready.push_back(next);
    }
  }
}

}  // namespace minidl
