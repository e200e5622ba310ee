#include "nn/module.h"

#include <functional>
#include <set>
#include <sstream>

#include "core/autograd.h"
#include "core/check.h"

namespace minidl::nn {

template <class F>
void Module::visit(const std::string& prefix, F&& f) const {
  f(prefix, *this);
  for (const auto& [name, child] : children_) child->visit(prefix + name + ".", f);
}

void Module::register_parameter(std::string name, Tensor& t) {
  MINIDL_CHECK(t.defined(), "register_parameter: '{}' is undefined", name);
  if (!t.requires_grad()) t.requires_grad_(true);
  params_.emplace_back(std::move(name), &t);
}

void Module::register_buffer(std::string name, Tensor& t) {
  MINIDL_CHECK(t.defined(), "register_buffer: '{}' is undefined", name);
  buffers_.emplace_back(std::move(name), &t);
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  visit("", [&](const std::string& prefix, const Module& m) {
    for (const auto& [name, t] : m.params_) out.emplace_back(prefix + name, *t);
  });
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  visit("", [&](const std::string& prefix, const Module& m) {
    for (const auto& [name, t] : m.buffers_) out.emplace_back(prefix + name, *t);
  });
  return out;
}

int64_t Module::parameter_count() const {
  int64_t n = 0;
  for (const Tensor& t : parameters()) n += t.numel();
  return n;
}

StateDict Module::state_dict() const {
  StateDict out;
  for (auto& [name, t] : named_parameters()) out[name] = t;
  for (auto& [name, t] : named_buffers()) out[name] = t;
  return out;
}

void Module::load_state_dict(const StateDict& state, bool strict) {
  NoGradGuard no_grad;
  std::set<std::string> used;
  auto load = [&](const std::string& name, Tensor& dst) {
    auto it = state.find(name);
    if (it == state.end()) {
      MINIDL_CHECK(!strict, "load_state_dict: missing tensor '{}' (shape {})", name, dst.shape());
      return;
    }
    const Tensor& src = it->second;
    MINIDL_CHECK(src.shape() == dst.shape(), "load_state_dict: tensor '{}' has shape {} but the model expects {}", name,
                 src.shape(), dst.shape());
    MINIDL_CHECK(src.dtype() == dst.dtype(), "load_state_dict: tensor '{}' has dtype {} but the model expects {}", name,
                 src.dtype(), dst.dtype());
    dst.copy_(src);
    used.insert(name);
  };
  visit("", [&](const std::string& prefix, const Module& m) {
    for (auto& [name, t] : m.params_) load(prefix + name, *t);
    for (auto& [name, t] : m.buffers_) load(prefix + name, *t);
  });
  if (strict)
    for (const auto& [name, t] : state)
      MINIDL_CHECK(used.count(name), "load_state_dict: unexpected tensor '{}' (shape {}) not in the model", name,
                   t.shape());
  for (auto& [path, m] : named_modules()) {
    try {
      m->after_load();
    } catch (const Error& e) {
      fail("load_state_dict: {}{}", path.empty() ? "" : path + ": ", e.what());
    }
  }
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

void Module::to(Device device) {
  std::function<void(const Module&)> check = [&](const Module& m) {
    m.check_device(device);
    for (const auto& [name, child] : m.children_) check(*child);
  };
  check(*this);
  NoGradGuard no_grad;
  for (auto& [name, t] : params_) *t = t->to(device).detach().requires_grad_(true);
  for (auto& [name, t] : buffers_) *t = t->to(device);
  for (auto& [name, child] : children_) child->to(device);
  moved_to(device);
}

Tensor Module::forward_fused(const Tensor&, Activation) { return Tensor(); }

nlohmann::json Module::spec() const {
  nlohmann::json j = hyper_parameters();
  if (!children_.empty()) {
    nlohmann::json kids = nlohmann::json::array();
    for (const auto& [name, child] : children_) kids.push_back({{"name", name}, {"spec", child->spec()}});
    j["children"] = std::move(kids);
  }
  return j;
}

std::shared_ptr<Module> Module::child(const std::string& name) const {
  for (const auto& [n, c] : children_)
    if (n == name) return c;
  std::string known;
  for (const auto& [n, c] : children_) known += (known.empty() ? "" : ", ") + n;
  fail("{}: no child named '{}' (children: {})", describe(), name, known.empty() ? "none" : known);
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_modules() {
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> out;
  // Pre-order; this module itself is reported with a non-owning pointer (it may
  // not be owned by a shared_ptr at all).
  out.emplace_back("", std::shared_ptr<Module>(std::shared_ptr<Module>(), this));
  auto walk = [&](auto&& self, const std::string& prefix, Module& m) -> void {
    for (const auto& [name, c] : m.children_) {
      std::string full = prefix.empty() ? name : prefix + "." + name;
      out.emplace_back(full, c);
      self(self, full, *c);
    }
  };
  walk(walk, "", *this);
  return out;
}

namespace {
// "3.conv1" -> {"3", "conv1"}
std::vector<std::string> split_path(const std::string& path) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    parts.push_back(path.substr(start, dot - start));
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return parts;
}
}  // namespace

std::shared_ptr<Module> Module::find(const std::string& path) {
  MINIDL_CHECK(!path.empty(), "find: empty module path");
  std::shared_ptr<Module> m;
  Module* at = this;
  for (const std::string& part : split_path(path)) {
    m = at->child(part);
    at = m.get();
  }
  return m;
}

std::shared_ptr<Module> Module::replace(const std::string& path, std::shared_ptr<Module> replacement) {
  MINIDL_CHECK(replacement != nullptr, "replace: the replacement for '{}' is null", path);
  auto dot = path.rfind('.');
  Module* parent = this;
  std::shared_ptr<Module> parent_owner;
  if (dot != std::string::npos) {
    parent_owner = find(path.substr(0, dot));
    parent = parent_owner.get();
  }
  const std::string name = dot == std::string::npos ? path : path.substr(dot + 1);
  for (auto& [n, c] : parent->children_) {
    if (n != name) continue;
    std::shared_ptr<Module> old = std::move(c);
    c = std::move(replacement);
    return old;
  }
  parent->child(name);  // throws naming the children
  return nullptr;
}

void Module::to(DType dtype) {
  MINIDL_CHECK(is_floating(dtype), "Module::to: expected a floating dtype, got {}", dtype);
  NoGradGuard no_grad;
  for (auto& [name, t] : params_)
    if (is_floating(t->dtype())) *t = t->to(dtype).detach().requires_grad_(true);
  for (auto& [name, t] : buffers_)
    if (is_floating(t->dtype())) *t = t->to(dtype);
  for (auto& [name, child] : children_) child->to(dtype);
}

void Module::zero_grad() {
  for (const Tensor& p : parameters()) p.set_grad(Tensor());
}

std::string Module::str() const {
  std::ostringstream os;
  os << describe();
  if (!children_.empty()) {
    os << "(\n";
    for (const auto& [name, child] : children_) {
      std::string inner = child->str();
      std::string indented;
      for (char c : inner) indented += c == '\n' ? std::string("\n  ") : std::string(1, c);
      os << "  (" << name << "): " << indented << "\n";
    }
    os << ")";
  }
  return os.str();
}

}  // namespace minidl::nn
