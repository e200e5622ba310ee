#include "compress/structured.h"

#include <algorithm>
#include <map>
#include <cmath>
#include <numeric>

#include "core/autograd.h"
#include "core/check.h"
#include "nn/layers.h"
#include "ops/factory.h"
#include "ops/index.h"

namespace minidl::compress {

namespace {

bool is_weighted(const nn::Module& m) {
  return dynamic_cast<const nn::Linear*>(&m) || dynamic_cast<const nn::Conv2d*>(&m);
}
// Modules a channel passes through unchanged, one value per channel in, one out.
bool is_per_channel(const nn::Module& m) {
  return dynamic_cast<const nn::ReLU*>(&m) || dynamic_cast<const nn::GELU*>(&m) ||
         dynamic_cast<const nn::Dropout*>(&m) || dynamic_cast<const nn::MaxPool2d*>(&m) ||
         dynamic_cast<const nn::AvgPool2d*>(&m) || dynamic_cast<const nn::AdaptiveAvgPool2d*>(&m) ||
         dynamic_cast<const nn::BatchNorm*>(&m) || dynamic_cast<const nn::Flatten*>(&m);
}

Tensor index_tensor(const std::vector<int64_t>& idx) {
  return from_vector<int64_t>(idx, {static_cast<int64_t>(idx.size())});
}

// Where a layer's outputs go: the per-channel modules they pass through (dotted
// paths; "" stands for a ReLU applied inside a block's forward rather than by a
// child module) and the layer that consumes them.
struct Chain {
  std::vector<std::string> between;
  std::string consumer;
};

// The chain of `name`: a child of the model (a Sequential's layer, followed to
// the next Linear/Conv2d), or "<block>.conv1" of a ResidualBlock child, whose
// outputs go through bn1 and a ReLU into conv2 and nowhere else (conv2's
// outputs meet the shortcut in the residual add: those channels are tied to
// the block's input and need the residual groups, not done yet). Throws naming
// what is wrong.
Chain locate(nn::Module& model, const std::string& name) {
  if (const auto dot = name.find('.'); dot != std::string::npos) {
    const std::string block = name.substr(0, dot);
    MINIDL_CHECK(name.substr(dot + 1) == "conv1" && dynamic_cast<nn::ResidualBlock*>(model.find(block).get()),
                 "prune_channels: '{}': inside the model only a residual block's conv1 can be channel-pruned (its "
                 "conv2 and the layers around a block are tied to the residual add)", name);
    MINIDL_CHECK(is_weighted(*model.find(name)), "prune_channels: '{}' is {}, not a Conv2d", name,
                 model.find(name)->describe());
    return {{block + ".bn1", ""}, block + ".conv2"};
  }
  const auto& children = model.children();
  size_t at = children.size();
  for (size_t i = 0; i < children.size(); ++i)
    if (children[i].first == name) at = i;
  if (at == children.size()) {
    std::vector<std::string> weighted;
    for (const auto& [n, m] : children)
      if (is_weighted(*m)) weighted.push_back(n);
    fail("prune_channels: no layer '{}' among the model's children (its Linear and Conv2d layers: {})", name,
         fmt::join(weighted, ", "));
  }
  MINIDL_CHECK(is_weighted(*children[at].second), "prune_channels: layer '{}' is {}, not a Linear or Conv2d", name,
               children[at].second->describe());
  Chain chain;
  for (size_t j = at + 1; j < children.size(); ++j) {
    const nn::Module& m = *children[j].second;
    if (is_weighted(m)) {
      if (auto* c = dynamic_cast<const nn::Conv2d*>(&m))
        MINIDL_CHECK(c->options.groups == 1, "prune_channels: '{}' feeds the grouped {} ('{}'), whose input "
                     "channels cannot be removed one by one", name, c->describe(), children[j].first);
      chain.consumer = children[j].first;
      return chain;
    }
    MINIDL_CHECK(is_per_channel(m), "prune_channels: the outputs of '{}' reach {} ('{}'), which channel pruning cannot "
                 "follow (a residual block ties its channels to the shortcut's)", name, m.describe(), children[j].first);
    chain.between.push_back(children[j].first);
  }
  fail("prune_channels: layer '{}' ({}) is the classifier: its outputs are the model's classes and are never pruned",
       name, children[at].second->describe());
}

Tensor weight_of(nn::Module& m) {
  return dynamic_cast<nn::Linear*>(&m) ? dynamic_cast<nn::Linear&>(m).weight : dynamic_cast<nn::Conv2d&>(m).weight;
}
Tensor bias_of(nn::Module& m) {
  return dynamic_cast<nn::Linear*>(&m) ? dynamic_cast<nn::Linear&>(m).bias : dynamic_cast<nn::Conv2d&>(m).bias;
}

// Output scores: the norm of each output's weights (rows of the (out, fan_in) view), or random.
std::vector<double> scores(const Tensor& weight, Criterion c, Generator* gen) {
  const int64_t out = weight.size(0), fan_in = weight.numel() / out;
  const auto w = weight.detach().contiguous().to_vector<float>();
  std::vector<double> s(static_cast<size_t>(out), 0.0);
  for (int64_t o = 0; o < out; ++o) {
    if (c == Criterion::random) {
      MINIDL_CHECK(gen != nullptr, "prune_channels: the random criterion needs a Generator");
      s[o] = static_cast<double>(gen->next_u64() >> 11);
      continue;
    }
    for (int64_t k = 0; k < fan_in; ++k) {
      const double v = w[o * fan_in + k];
      s[o] += c == Criterion::l1 ? std::abs(v) : v * v;
    }
  }
  return s;
}

// The channels to keep: all but the `drop` lowest scores (ties: the higher index
// goes first), ascending; `removed` gets the others, ascending.
std::vector<int64_t> kept_channels(const std::vector<double>& score, int64_t drop, std::vector<int64_t>* removed) {
  std::vector<int64_t> order(score.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return score[a] < score[b]; });
  std::vector<int64_t> kept(order.begin() + drop, order.end());
  std::sort(kept.begin(), kept.end());
  if (removed) {
    removed->assign(order.begin(), order.begin() + drop);
    std::sort(removed->begin(), removed->end());
  }
  return kept;
}

// A Linear or Conv2d with only the output rows `keep` (and their biases).
nn::ModulePtr with_outputs(nn::Module& m, const Tensor& keep) {
  const int64_t n = keep.numel();
  std::shared_ptr<nn::Module> shrunk;
  if (auto* l = dynamic_cast<nn::Linear*>(&m)) shrunk = std::make_shared<nn::Linear>(l->in_features, n, l->bias.defined());
  else {
    auto& c = dynamic_cast<nn::Conv2d&>(m);
    shrunk = std::make_shared<nn::Conv2d>(c.in_channels, n, c.kernel_size, c.options, c.bias.defined());
  }
  weight_of(*shrunk).copy_(index_select(weight_of(m), 0, keep));
  if (bias_of(m).defined()) bias_of(*shrunk).copy_(index_select(bias_of(m), 0, keep));
  return shrunk;
}

// A BatchNorm over the channels `keep` only: their statistics and affine pairs.
nn::ModulePtr with_channels(const nn::BatchNorm& bn, const Tensor& keep) {
  auto shrunk = std::make_shared<nn::BatchNorm>(keep.numel(), bn.expected_dims, bn.eps, bn.momentum);
  if (bn.weight.defined()) shrunk->weight.copy_(index_select(bn.weight, 0, keep));
  if (bn.bias.defined()) shrunk->bias.copy_(index_select(bn.bias, 0, keep));
  shrunk->running_mean.copy_(index_select(bn.running_mean, 0, keep));
  shrunk->running_var.copy_(index_select(bn.running_var, 0, keep));
  shrunk->num_batches_tracked.copy_(bn.num_batches_tracked);
  shrunk->train(bn.is_training());
  return shrunk;
}

// The columns of kept channels in a Linear that reads `spatial` values per channel.
std::vector<int64_t> channel_columns(const std::vector<int64_t>& kept, int64_t spatial) {
  std::vector<int64_t> cols;
  for (int64_t c : kept)
    for (int64_t q = 0; q < spatial; ++q) cols.push_back(c * spatial + q);
  return cols;
}

// What the removed input channels' constants add to each output of the
// consumer: its weight seen as (outputs, channels, per-channel inputs) — a
// Linear's columns c·S .. (c+1)·S − 1 (S = 1 unless after Flatten), a Conv2d's
// kh·kw taps — summed against each removed channel's constant.
std::vector<double> fold_constants(const Tensor& weight, int64_t channels, const std::vector<int64_t>& removed,
                                   const std::vector<double>& constant) {
  const int64_t out = weight.size(0), per_channel = weight.numel() / out / channels;
  const auto w = weight.detach().contiguous().to_vector<float>();
  std::vector<double> fold(static_cast<size_t>(out), 0.0);
  for (int64_t o = 0; o < out; ++o)
    for (size_t k = 0; k < removed.size(); ++k)
      for (int64_t q = 0; q < per_channel; ++q)
        fold[o] += w[(o * channels + removed[k]) * per_channel + q] * constant[k];
  return fold;
}

bool any_nonzero(const std::vector<double>& v) {
  return std::any_of(v.begin(), v.end(), [](double x) { return x != 0.0; });
}

// bias (or zeros, when the layer had none) + fold, as the shrunk layer's bias.
Tensor bias_plus(const Tensor& bias, const std::vector<double>& fold) {
  const auto n = static_cast<int64_t>(fold.size());
  std::vector<float> b = bias.defined() ? bias.to_vector<float>() : std::vector<float>(fold.size(), 0.0f);
  for (int64_t o = 0; o < n; ++o) b[o] = static_cast<float>(b[o] + fold[o]);
  return from_vector<float>(b, {n});
}

}  // namespace

std::vector<std::string> prunable_layers(nn::Module& model) {
  std::vector<std::string> layers;
  for (const auto& [name, m] : model.children()) {
    if (dynamic_cast<nn::ResidualBlock*>(m.get())) {
      layers.push_back(name + ".conv1");
      continue;
    }
    if (!is_weighted(*m)) continue;
    try {
      locate(model, name);
      layers.push_back(name);
    } catch (const Error&) {
      // the classifier, or outputs that reach a residual block: not prunable alone
    }
  }
  return layers;
}

Criterion parse_criterion(const std::string& name) {
  if (name == "l1") return Criterion::l1;
  if (name == "l2") return Criterion::l2;
  if (name == "random") return Criterion::random;
  fail("unknown ranking criterion '{}' (known: l1, l2, random)", name);
}

void check_channel_pruning(nn::Module& model, const std::vector<std::string>& layers, Amount amount) {
  for (const std::string& name : layers) {
    locate(model, name);
    const Tensor w = weight_of(*model.find(name));
    const int64_t drop = amount.of("prune_channels", "the outputs of layer '" + name + "'", w.size(0));
    MINIDL_CHECK(drop < w.size(0), "prune_channels: amount {} would remove all {} outputs of layer '{}'",
                 amount.to_json().dump(), w.size(0), name);
  }
}

std::vector<ChannelPruning> prune_channels(nn::Module& model, const std::vector<std::string>& layers, Amount amount,
                                           Criterion criterion, Generator* gen) {
  NoGradGuard no_grad;
  check_channel_pruning(model, layers, amount);  // everything is checked before anything changes

  // The biases as they are now: a removed channel's constant is its own bias,
  // not the one it has after an earlier layer's fold was added to it (in the
  // masked model a removed row ignores its inputs entirely).
  std::map<std::string, Tensor> original_bias;
  for (const std::string& name : layers)
    if (const Tensor b = bias_of(*model.find(name)); b.defined()) original_bias[name] = b.clone();

  std::vector<ChannelPruning> report;
  for (const std::string& name : layers) {
    const Chain chain = locate(model, name);
    nn::ModulePtr layer = model.find(name);
    auto* lin = dynamic_cast<nn::Linear*>(layer.get());
    auto* conv = dynamic_cast<nn::Conv2d*>(layer.get());
    const Tensor weight = lin ? lin->weight : conv->weight;
    const Tensor bias = lin ? lin->bias : conv->bias;
    const int64_t out = weight.size(0), drop = amount.of("prune_channels", name, out);

    std::vector<int64_t> removed;
    const std::vector<int64_t> kept = kept_channels(scores(weight, criterion, gen), drop, &removed);
    const Tensor keep = index_tensor(kept);

    // The shrunk layer: the kept rows of weight and bias.
    ChannelPruning r{.layer = name, .before = out, .after = static_cast<int64_t>(kept.size()), .kept = kept,
                     .consumer = chain.consumer, .exact = true, .note = ""};
    const int64_t n_kept = r.after;
    model.replace(name, with_outputs(*layer, keep));

    // What each removed channel still outputs in the masked model: its bias,
    // carried through the per-channel modules between here and the consumer.
    std::vector<double> constant(removed.size(), 0.0);
    if (original_bias.count(name)) {
      const auto b = original_bias[name].to_vector<float>();
      for (size_t k = 0; k < removed.size(); ++k) constant[k] = b[removed[k]];
    }
    bool flattened = false;
    for (const std::string& path : chain.between) {
      if (path.empty()) {  // a ReLU inside the block's forward
        for (double& v : constant) v = std::max(v, 0.0);
        continue;
      }
      nn::ModulePtr held = model.find(path);
      nn::Module& m = *held;
      if (auto* bn = dynamic_cast<nn::BatchNorm*>(&m)) {
        const auto mean = bn->running_mean.to_vector<float>(), var = bn->running_var.to_vector<float>();
        const auto g = bn->weight.defined() ? bn->weight.to_vector<float>() : std::vector<float>();
        const auto be = bn->bias.defined() ? bn->bias.to_vector<float>() : std::vector<float>();
        for (size_t k = 0; k < removed.size(); ++k) {
          const int64_t c = removed[k];
          double v = (constant[k] - mean[c]) / std::sqrt(static_cast<double>(var[c]) + bn->eps);
          constant[k] = v * (g.empty() ? 1.0 : g[c]) + (be.empty() ? 0.0 : be[c]);
        }
        model.replace(path, with_channels(*bn, keep));
      } else if (dynamic_cast<nn::ReLU*>(&m)) {
        for (double& v : constant) v = std::max(v, 0.0);
      } else if (dynamic_cast<nn::GELU*>(&m)) {
        for (double& v : constant) v = 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
      } else if (auto* avg = dynamic_cast<nn::AvgPool2d*>(&m); avg && avg->padding > 0) {
        r.exact = false;
        r.note = fmt::format("'{}' averages zero padding in at the borders", path);
      } else if (dynamic_cast<nn::Flatten*>(&m)) {
        flattened = true;
      }
      // Dropout (eval), max and adaptive pooling: a constant plane stays that constant.
    }

    // The consumer: drop the removed inputs, fold their constant into its bias.
    nn::ModulePtr consumer = model.find(chain.consumer);
    if (auto* nl = dynamic_cast<nn::Linear*>(consumer.get())) {
      MINIDL_CHECK(nl->in_features % out == 0, "prune_channels: '{}' has {} inputs, not a multiple of the {} channels of "
                   "'{}'", r.consumer, nl->in_features, out, name);
      const int64_t spatial = flattened ? nl->in_features / out : 1;
      MINIDL_CHECK(flattened || spatial * out == nl->in_features, "prune_channels: '{}' has {} inputs but '{}' {} outputs",
                   r.consumer, nl->in_features, name, out);
      const std::vector<int64_t> cols = channel_columns(kept, spatial);
      const std::vector<double> fold = fold_constants(nl->weight, out, removed, constant);
      auto shrunk = std::make_shared<nn::Linear>(static_cast<int64_t>(cols.size()), nl->out_features,
                                                 nl->bias.defined() || any_nonzero(fold));
      shrunk->weight.copy_(index_select(nl->weight, 1, index_tensor(cols)));
      if (shrunk->bias.defined()) shrunk->bias.copy_(bias_plus(nl->bias, fold));
      model.replace(r.consumer, shrunk);
    } else {
      auto* nc = dynamic_cast<nn::Conv2d*>(consumer.get());
      const std::vector<double> fold = fold_constants(nc->weight, out, removed, constant);
      if (any_nonzero(fold) && (nc->options.padding[0] > 0 || nc->options.padding[1] > 0)) {
        r.exact = false;
        r.note = fmt::format("'{}' zero-pads the removed channels' constant output at its borders; the fold is exact "
                             "in the interior only", r.consumer);
      }
      auto shrunk = std::make_shared<nn::Conv2d>(n_kept, nc->out_channels, nc->kernel_size, nc->options,
                                                 nc->bias.defined() || any_nonzero(fold));
      shrunk->weight.copy_(index_select(nc->weight, 1, keep));
      if (shrunk->bias.defined()) shrunk->bias.copy_(bias_plus(nc->bias, fold));
      model.replace(r.consumer, shrunk);
    }
    report.push_back(std::move(r));
  }
  for (auto& [n, m] : model.named_modules()) m->train(model.is_training());
  return report;
}

// ---------------------------------------------------------------- residual groups

namespace {

// One group: who writes its channels, who normalises them, who reads them.
struct Group {
  std::vector<std::string> producers, norms, readers;
};

// Walks the trunk child by child and cuts it into groups.
std::vector<Group> residual_groups(nn::Module& model) {
  std::vector<Group> groups;
  Group current;
  auto close = [&](std::vector<std::string> readers) {
    if (current.producers.empty()) return;
    current.readers.insert(current.readers.end(), readers.begin(), readers.end());
    groups.push_back(current);
    current = Group{};
  };
  for (const auto& [name, m] : model.children()) {
    if (dynamic_cast<nn::Conv2d*>(m.get())) {
      close({name});
      current.producers.push_back(name);
    } else if (dynamic_cast<nn::BatchNorm*>(m.get())) {
      MINIDL_CHECK(!current.producers.empty(), "prune_residual_groups: BatchNorm '{}' normalises no convolution", name);
      current.norms.push_back(name);
    } else if (auto* block = dynamic_cast<nn::ResidualBlock*>(m.get())) {
      const auto shortcut = block->shortcut();
      if (shortcut->size() == 0) {  // identity: reads and writes the group
        current.readers.push_back(name + ".conv1");
        current.producers.push_back(name + ".conv2");
        current.norms.push_back(name + ".bn2");
      } else {  // downsampling: ends the group, starts the next
        MINIDL_CHECK(shortcut->size() == 2 && dynamic_cast<nn::Conv2d*>((*shortcut)[0].get()) &&
                         dynamic_cast<nn::BatchNorm*>((*shortcut)[1].get()),
                     "prune_residual_groups: the shortcut of '{}' is not Conv2d + BatchNorm", name);
        close({name + ".conv1", name + ".shortcut.0"});
        current.producers = {name + ".conv2", name + ".shortcut.0"};
        current.norms = {name + ".bn2", name + ".shortcut.1"};
      }
    } else if (dynamic_cast<nn::Linear*>(m.get())) {
      close({name});
    } else if (!is_per_channel(*m)) {
      fail("prune_residual_groups: cannot follow the channels through {} ('{}')", m->describe(), name);
    }
  }
  MINIDL_CHECK(current.producers.empty(), "prune_residual_groups: the model's last channels reach no reader");
  return groups;
}

// The input-channel count a reader expects, and the positions per channel it reads them at.
int64_t reader_channels(nn::Module& m) {
  if (auto* c = dynamic_cast<nn::Conv2d*>(&m)) return c->in_channels;
  return dynamic_cast<nn::Linear&>(m).in_features;
}

}  // namespace

std::vector<ChannelPruning> prune_residual_groups(nn::Module& model, Amount amount, Criterion criterion,
                                                  Generator* gen) {
  NoGradGuard no_grad;
  const std::vector<Group> groups = residual_groups(model);
  MINIDL_CHECK(!groups.empty(), "prune_residual_groups: the model has no convolution trunk");
  // Checked before anything changes: every group's width agrees, and the amount leaves some.
  std::vector<int64_t> widths;
  for (const Group& g : groups) {
    const int64_t width = weight_of(*model.find(g.producers[0])).size(0);
    for (const std::string& p : g.producers)
      MINIDL_CHECK(weight_of(*model.find(p)).size(0) == width, "prune_residual_groups: '{}' writes {} channels, "
                   "'{}' {}: they are added together and must agree", p, weight_of(*model.find(p)).size(0),
                   g.producers[0], width);
    for (const std::string& r : g.readers)
      MINIDL_CHECK(reader_channels(*model.find(r)) % width == 0, "prune_residual_groups: '{}' reads {} inputs, not a "
                   "multiple of the {} channels of its group", r, reader_channels(*model.find(r)), width);
    const int64_t drop = amount.of("prune_residual_groups", "the channels of the group of '" + g.producers[0] + "'", width);
    MINIDL_CHECK(drop < width, "prune_residual_groups: amount {} would remove all {} channels of the group of '{}'",
                 amount.to_json().dump(), width, g.producers[0]);
    widths.push_back(width);
  }
  std::vector<ChannelPruning> report;
  for (size_t gi = 0; gi < groups.size(); ++gi) {
    const Group& g = groups[gi];
    const int64_t width = widths[gi], drop = amount.of("prune_residual_groups", g.producers[0], width);
    std::vector<double> score(static_cast<size_t>(width), 0.0);
    for (const std::string& p : g.producers) {
      const std::vector<double> s = scores(weight_of(*model.find(p)), criterion, gen);
      for (int64_t c = 0; c < width; ++c) score[c] += s[c];
    }
    const std::vector<int64_t> kept = kept_channels(score, drop, nullptr);
    const Tensor keep = index_tensor(kept);
    const int64_t n = static_cast<int64_t>(kept.size());
    for (const std::string& p : g.producers) model.replace(p, with_outputs(*model.find(p), keep));
    for (const std::string& b : g.norms) model.replace(b, with_channels(dynamic_cast<nn::BatchNorm&>(*model.find(b)), keep));
    for (const std::string& r : g.readers) {
      nn::ModulePtr m = model.find(r);
      if (auto* c = dynamic_cast<nn::Conv2d*>(m.get())) {
        auto shrunk = std::make_shared<nn::Conv2d>(n, c->out_channels, c->kernel_size, c->options, c->bias.defined());
        shrunk->weight.copy_(index_select(c->weight, 1, keep));
        if (c->bias.defined()) shrunk->bias.copy_(c->bias);
        model.replace(r, shrunk);
      } else {
        auto& l = dynamic_cast<nn::Linear&>(*m);
        const std::vector<int64_t> cols = channel_columns(kept, l.in_features / width);
        auto shrunk = std::make_shared<nn::Linear>(static_cast<int64_t>(cols.size()), l.out_features, l.bias.defined());
        shrunk->weight.copy_(index_select(l.weight, 1, index_tensor(cols)));
        if (l.bias.defined()) shrunk->bias.copy_(l.bias);
        model.replace(r, shrunk);
      }
    }
    // Without a BatchNorm to zero, a biased producer's removed channels still
    // output their bias: that case is prune_channels' (which folds it).
    bool biased = false;
    for (const std::string& p : g.producers) biased |= bias_of(*model.find(p)).defined();
    const bool exact = !(biased && g.norms.empty());
    report.push_back({.layer = fmt::format("{}", fmt::join(g.producers, " + ")), .before = width, .after = n,
                      .kept = kept, .consumer = fmt::format("{}", fmt::join(g.readers, ", ")), .exact = exact,
                      .note = exact ? "" : "biased producers without BatchNorm: the removed channels' biases are "
                                           "dropped, not folded (prune_channels folds them)"});
  }
  for (auto& [name, m] : model.named_modules()) m->train(model.is_training());
  return report;
}

}  // namespace minidl::compress
