#include "nn/spec.h"

#include <map>
#include <mutex>

#include "core/check.h"
#include "nn/layers.h"

namespace minidl::nn {

namespace {
constexpr int kMaxDepth = 64;              // nesting of containers in a spec
constexpr int64_t kMaxFeatures = 1 << 24;  // any one size of a layer
constexpr int64_t kMaxKernel = 64;

std::string child_path(const std::string& parent, const std::string& name) {
  return parent.empty() ? name : parent + "." + name;
}
// The registered builder for r's type, run on r (defined with the registry below).
ModulePtr build_node(const SpecReader& r);
}  // namespace

SpecReader::SpecReader(const nlohmann::json& node, std::string path, int depth, int64_t* budget)
    : node_(node), path_(std::move(path)), depth_(depth), budget_(budget) {
  if (!node_.is_object()) fail_here(fmt::format("expected an object, got {}", node_.type_name()));
  if (depth_ > kMaxDepth) fail_here(fmt::format("nested deeper than {} levels", kMaxDepth));
}

void SpecReader::fail_here(const std::string& what) const {
  fail("model spec at {}: {}", path_.empty() ? "the root" : path_, what);
}

const nlohmann::json& SpecReader::at(const char* key) const {
  auto it = node_.find(key);
  if (it == node_.end()) fail_here(fmt::format("missing '{}'", key));
  return *it;
}

std::string SpecReader::type() const {
  const nlohmann::json& t = at("type");
  if (!t.is_string()) fail_here("'type' must be a string");
  return t.get<std::string>();
}

int64_t SpecReader::integer(const char* key, int64_t lo, int64_t hi) const {
  const nlohmann::json& v = at(key);
  if (!v.is_number_integer()) fail_here(fmt::format("'{}' must be an integer in [{}, {}]", key, lo, hi));
  // Unsigned values above int64's range do not fit: compare before converting.
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi))
    fail_here(fmt::format("'{}' = {} is outside [{}, {}]", key, v.get<uint64_t>(), lo, hi));
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi) fail_here(fmt::format("'{}' = {} is outside [{}, {}]", key, x, lo, hi));
  return x;
}

double SpecReader::number(const char* key, double lo, double hi) const {
  const nlohmann::json& v = at(key);
  if (!v.is_number()) fail_here(fmt::format("'{}' must be a number in [{}, {}]", key, lo, hi));
  const double x = v.get<double>();
  if (!(x >= lo && x <= hi)) fail_here(fmt::format("'{}' = {} is outside [{}, {}]", key, x, lo, hi));
  return x;
}

bool SpecReader::boolean(const char* key) const {
  const nlohmann::json& v = at(key);
  if (!v.is_boolean()) fail_here(fmt::format("'{}' must be true or false", key));
  return v.get<bool>();
}

std::array<int64_t, 2> SpecReader::pair(const char* key, int64_t lo, int64_t hi) const {
  const nlohmann::json& v = at(key);
  auto ok = [&](const nlohmann::json& e) {
    return e.is_number_integer() && !(e.is_number_unsigned() && e.get<uint64_t>() > static_cast<uint64_t>(hi)) &&
           e.get<int64_t>() >= lo && e.get<int64_t>() <= hi;
  };
  if (!v.is_array() || v.size() != 2 || !ok(v[0]) || !ok(v[1]))
    fail_here(fmt::format("'{}' must be two integers in [{}, {}]", key, lo, hi));
  return {v[0].get<int64_t>(), v[1].get<int64_t>()};
}

void SpecReader::reserve(int64_t elements) const {
  if (elements > *budget_)
    fail_here(fmt::format("the layer needs {} parameter elements but only {} are left in the checkpoint", elements,
                          *budget_));
  *budget_ -= elements;
}

bool SpecReader::has_children() const {
  auto it = node_.find("children");
  return it != node_.end() && !(it->is_array() && it->empty());
}

std::vector<std::pair<std::string, ModulePtr>> SpecReader::children() const {
  std::vector<std::pair<std::string, ModulePtr>> out;
  auto it = node_.find("children");
  if (it == node_.end()) return out;
  if (!it->is_array()) fail_here("'children' must be an array");
  for (const nlohmann::json& c : *it) {
    if (!c.is_object() || !c.contains("name") || !c["name"].is_string() || !c.contains("spec"))
      fail_here("each child must be {\"name\": string, \"spec\": object}");
    std::string name = c["name"].get<std::string>();
    if (name.empty() || name.find('.') != std::string::npos)
      fail_here(fmt::format("child name '{}' must be non-empty and without dots", name));
    for (const auto& [n, m] : out)
      if (n == name) fail_here(fmt::format("two children named '{}'", name));
    SpecReader r(c["spec"], child_path(path_, name), depth_ + 1, budget_);
    out.emplace_back(name, build_node(r));
  }
  return out;
}

// ---------------------------------------------------------------- the registry

}  // namespace minidl::nn

// compress/ sits above nn/ and defines the builders of its layers; the registry
// lists them below because a static library leaves out an object file nothing
// calls, and with it any registration the file would make of itself.
namespace minidl::compress {
nn::ModulePtr build_quant_linear(const nn::SpecReader& r);
nn::ModulePtr build_quant_conv2d(const nn::SpecReader& r);
}

namespace minidl::nn {

namespace {
std::mutex g_registry_mutex;

std::map<std::string, LayerBuilder>& registry();

// A leaf layer has no children in its spec: say so rather than drop them silently.
void no_children(const SpecReader& r) {
  if (r.has_children()) r.fail_here("this layer type has no children");
}

ModulePtr build_linear(const SpecReader& r) {
  no_children(r);
  const int64_t in = r.integer("in_features", 1, kMaxFeatures), out = r.integer("out_features", 1, kMaxFeatures);
  const bool bias = r.boolean("bias");
  r.reserve(in * out + (bias ? out : 0));
  Generator gen(0);  // the values are overwritten by the checkpoint
  return make<Linear>(in, out, bias, gen);
}

ModulePtr build_conv2d(const SpecReader& r) {
  no_children(r);
  const int64_t in = r.integer("in_channels", 1, kMaxFeatures), out = r.integer("out_channels", 1, kMaxFeatures);
  const int64_t k = r.integer("kernel_size", 1, kMaxKernel);
  Conv2dOptions o{.stride = r.pair("stride", 1, kMaxKernel),
                  .padding = r.pair("padding", 0, kMaxKernel),
                  .dilation = r.pair("dilation", 1, kMaxKernel),
                  .groups = r.integer("groups", 1, kMaxFeatures)};
  const bool bias = r.boolean("bias");
  if (in % o.groups != 0 || out % o.groups != 0)
    r.fail_here(fmt::format("groups {} must divide in_channels {} and out_channels {}", o.groups, in, out));
  r.reserve(out * (in / o.groups) * k * k + (bias ? out : 0));
  Generator gen(0);
  return make<Conv2d>(in, out, k, o, bias, gen);
}

template <class BN>
ModulePtr build_batch_norm(const SpecReader& r) {
  no_children(r);
  const int64_t n = r.integer("features", 1, kMaxFeatures);
  r.reserve(4 * n + 1);
  return make<BN>(n, r.number("eps", 0, 1), r.number("momentum", 0, 1));
}

template <class Pool>
ModulePtr build_pool(const SpecReader& r) {
  no_children(r);
  return make<Pool>(r.integer("kernel_size", 1, kMaxKernel), r.integer("stride", 1, kMaxKernel),
                    r.integer("padding", 0, kMaxKernel));
}

ModulePtr build_sequential(const SpecReader& r) {
  auto seq = make<Sequential>();
  auto kids = r.children();
  for (size_t i = 0; i < kids.size(); ++i) {
    if (kids[i].first != std::to_string(i))
      r.fail_here(fmt::format("Sequential children are named 0, 1, ...; child {} is named '{}'", i, kids[i].first));
    seq->add(kids[i].second);
  }
  return seq;
}

ModulePtr build_residual_block(const SpecReader& r) {
  auto kids = r.children();
  const char* names[] = {"conv1", "bn1", "conv2", "bn2", "shortcut"};
  if (kids.size() != 5) r.fail_here("a ResidualBlock has five children: conv1, bn1, conv2, bn2, shortcut");
  for (size_t i = 0; i < 5; ++i)
    if (kids[i].first != names[i])
      r.fail_here(fmt::format("child {} of a ResidualBlock must be '{}', got '{}'", i, names[i], kids[i].first));
  auto shortcut = std::dynamic_pointer_cast<Sequential>(kids[4].second);
  if (!shortcut) r.fail_here("a ResidualBlock's shortcut must be a Sequential");
  return std::make_shared<ResidualBlock>(kids[0].second, kids[1].second, kids[2].second, kids[3].second, shortcut);
}

template <class Leaf>
ModulePtr build_plain(const SpecReader& r) {
  no_children(r);
  return make<Leaf>();
}

std::map<std::string, LayerBuilder>& registry() {
  static std::map<std::string, LayerBuilder> builders = {
      {"Linear", build_linear},
      {"Conv2d", build_conv2d},
      {"BatchNorm1d", build_batch_norm<BatchNorm1d>},
      {"BatchNorm2d", build_batch_norm<BatchNorm2d>},
      {"ReLU", build_plain<ReLU>},
      {"GELU", build_plain<GELU>},
      {"Flatten", build_plain<Flatten>},
      {"Dropout",
       [](const SpecReader& r) -> ModulePtr {
         no_children(r);
         return make<Dropout>(r.number("p", 0, 1), static_cast<uint64_t>(r.integer("seed", 0, INT64_MAX)));
       }},
      {"MaxPool2d", build_pool<MaxPool2d>},
      {"AvgPool2d", build_pool<AvgPool2d>},
      {"AdaptiveAvgPool2d",
       [](const SpecReader& r) -> ModulePtr {
         no_children(r);
         return make<AdaptiveAvgPool2d>(r.pair("output_size", 1, kMaxFeatures));
       }},
      {"Sequential", build_sequential},
      {"ResidualBlock", build_residual_block},
      {"QuantLinear", compress::build_quant_linear},
      {"QuantConv2d", compress::build_quant_conv2d},
  };
  return builders;
}

ModulePtr build_node(const SpecReader& r) {
  const std::string type = r.type();
  LayerBuilder builder;
  {
    std::lock_guard<std::mutex> lock(g_registry_mutex);
    auto& reg = registry();
    auto it = reg.find(type);
    if (it == reg.end()) {
      std::string known;
      for (const auto& [name, b] : reg) known += (known.empty() ? "" : ", ") + name;
      r.fail_here(fmt::format("unknown layer type '{}' (known: {})", type, known));
    }
    builder = it->second;
  }
  return builder(r);  // outside the lock: containers build their children through here
}
}  // namespace

void register_layer_type(const std::string& type, LayerBuilder builder) {
  MINIDL_CHECK(!type.empty() && builder, "register_layer_type: needs a name and a builder");
  std::lock_guard<std::mutex> lock(g_registry_mutex);
  registry()[type] = std::move(builder);
}

std::vector<std::string> registered_layer_types() {
  std::lock_guard<std::mutex> lock(g_registry_mutex);
  std::vector<std::string> out;
  for (const auto& [name, b] : registry()) out.push_back(name);
  return out;
}

ModulePtr module_from_spec(const nlohmann::json& spec, int64_t max_elements) {
  int64_t budget = max_elements;
  SpecReader r(spec, "", 0, &budget);
  return build_node(r);
}

}  // namespace minidl::nn
