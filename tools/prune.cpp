// tools/prune.cpp — `minidl prune CKPT --method ... --amount ... --out OUT`.
//
// One run answers "did pruning help?" for the user's model on the user's machine:
//   1. accuracy before, after pruning, and after fine-tuning (masks kept by the
//      training hook, or the gradual AGP schedule);
//   2. what is left, layer by layer (compress/report.h);
//   3. the latency of the same model as dense, masked-dense, CSR, BSR and
//      structurally shrunk, interleaved round by round at each batch size, each
//      with its speed-up over dense and a FASTER / SLOWER / SAME / UNCLEAR label
//      read from the spread of the per-round ratios.
// The pruned checkpoint (masks and recipe beside the model, or the shrunk model)
// is written atomically at the end, so a refused request writes nothing.
#include "tools/prune.h"

#include <cstdio>
#include <iostream>

#include "core/file.h"
#include "minidl.h"
#include "nn/spec.h"
#include "tools/bench/common.h"
#include "tools/bench/progress.h"

namespace minidl::tools {

namespace {

using namespace minidl::nn;
using compress::Amount;

bool is_weighted(const Module& m) { return dynamic_cast<const Linear*>(&m) || dynamic_cast<const Conv2d*>(&m); }

// A copy of the model: rebuilt from its spec, with the same tensors.
ModulePtr clone(Module& model) {
  ModulePtr copy = module_from_spec(model.spec());
  copy->load_state_dict(model.state_dict());
  copy->train(model.is_training());
  return copy;
}

// The layers to prune: those named, or every Linear/Conv2d (channel pruning:
// every one among the model's children but the last, the classifier).
std::vector<std::string> channel_layers(Module& model) {
  std::vector<std::string> layers = compress::prunable_layers(model);
  MINIDL_CHECK(!layers.empty(), "prune: the model has no layer whose channels can be pruned (before its classifier)");
  return layers;
}

std::vector<std::string> choose_layers(Module& model, const PruneOptions& o) {
  MINIDL_CHECK(!compress::is_quantized(model),
               "prune: {} is int8 (minidl quantize wrote it); prune the f32 checkpoint it came from, then quantize "
               "the pruned one",
               o.checkpoint);
  if (!o.layers.empty()) {
    for (const std::string& l : o.layers) {
      ModulePtr m = model.find(l);  // throws naming the path and the children there
      MINIDL_CHECK(is_weighted(*m), "prune: layer '{}' is {}, not a Linear or Conv2d", l, m->describe());
    }
    return o.layers;
  }
  if (o.method == "channel") return channel_layers(model);
  std::vector<std::string> layers;
  for (auto& [path, m] : model.named_modules())
    if (is_weighted(*m)) layers.push_back(path);
  MINIDL_CHECK(!layers.empty(), "prune: the model has no Linear or Conv2d layer to prune");
  return layers;
}

// Channel pruning of `layers`; with `whole_model`, a model with residual blocks
// first loses the same fraction of each residual group (the channels the adds
// tie together), then of its blocks' inner convolutions.
std::vector<compress::ChannelPruning> shrink(Module& model, const std::vector<std::string>& layers, bool whole_model,
                                             Amount amount, compress::Criterion criterion, Generator* gen) {
  std::vector<compress::ChannelPruning> report;
  bool residual = false;
  for (const auto& [name, m] : model.children()) residual |= dynamic_cast<ResidualBlock*>(m.get()) != nullptr;
  if (whole_model && residual) report = compress::prune_residual_groups(model, amount, criterion, gen);
  for (auto& r : compress::prune_channels(model, layers, amount, criterion, gen)) report.push_back(std::move(r));
  return report;
}

std::vector<std::string> weight_names(const std::vector<std::string>& layers) {
  std::vector<std::string> names;
  for (const std::string& l : layers) names.push_back(l + ".weight");
  return names;
}

std::string pct(double f) { return fmt::format("{:.2f}%", 100 * f); }

}  // namespace

namespace {

int run_sensitivity(const PruneOptions& o) {
  if (!o.out.empty()) prepare_output(o.out, "prune --sensitivity --out");
  std::string arch;
  ModulePtr model = load_model(o.checkpoint, &arch);
  model->eval();
  const std::vector<std::string> layers = choose_layers(*model, o);
  ImageDataset test = load_mnist_format(o.data_dir, "t10k");
  if (o.limit_test > 0) test = test.subset(o.limit_test);
  classes_of(*model, test, "prune --sensitivity: " + o.checkpoint);
  const double dense = evaluate(*model, test).accuracy;
  bench::Progress progress("sensitivity", static_cast<int64_t>(layers.size() * o.grid.size()));
  const auto points = compress::sensitivity(*model, weight_names(layers), o.grid, [&](Module& m) {
    progress.step();
    return evaluate(m, test).accuracy;
  });
  std::vector<std::string> columns = {"layer"};
  for (double s : o.grid) columns.push_back(fmt::format("{:g}%", 100 * s));
  bench::Table table(fmt::format("{} ({}): test accuracy with one layer L1-pruned (dense: {})", o.checkpoint, arch,
                                 pct(dense)),
                     columns);
  for (size_t l = 0; l < layers.size(); ++l) {
    std::vector<std::string> row = {layers[l]};
    for (size_t g = 0; g < o.grid.size(); ++g) row.push_back(pct(points[l * o.grid.size() + g].accuracy));
    table.add_row(row);
  }
  nlohmann::json j = {{"command", "prune --sensitivity"}, {"checkpoint", o.checkpoint}, {"model", arch},
                      {"dense_accuracy", dense}, {"grid", o.grid}, {"points", compress::to_json(points)},
                      {"table", table.json()}};
  if (!o.out.empty()) write_file_atomically(o.out, j.dump(1) + "\n", "prune --sensitivity");
  if (o.timing.json) std::cout << j.dump() << std::endl;
  else std::cout << table.text() << (o.out.empty() ? "" : "wrote " + o.out + " (plot it: python3 "
                                                          "tools/bench/plot_sensitivity.py " + o.out + " PNG)\n");
  return 0;
}

}  // namespace

int run_prune(const PruneOptions& o) {
  if (o.sensitivity) return run_sensitivity(o);
  const bool json = o.timing.json;
  // Every request is checked before any work: nothing is written for a bad one.
  MINIDL_CHECK(o.method == "l1" || o.method == "random" || o.method == "global" || o.method == "channel",
               "prune: unknown method '{}' (known: l1, random, global, channel)", o.method);
  MINIDL_CHECK(o.amount >= 0 && o.amount <= 1, "prune: --amount {} is outside [0, 1]", o.amount);
  MINIDL_CHECK(o.schedule == "oneshot" || o.schedule == "agp", "prune: unknown schedule '{}' (known: oneshot, agp)",
               o.schedule);
  MINIDL_CHECK(o.schedule != "agp" || o.finetune_epochs >= 1,
               "prune: --schedule agp prunes during fine-tuning; give --finetune-epochs N (N >= 1)");
  MINIDL_CHECK(o.schedule != "agp" || o.method == "global" || o.method == "l1",
               "prune: --schedule agp works with --method global or l1, not {}", o.method);
  MINIDL_CHECK(!o.out.empty(), "prune: --out is required (the pruned checkpoint to write)");
  prepare_output(o.out, "prune --out");
  const compress::SparseFormat bsr = compress::SparseFormat::parse(o.bsr);
  MINIDL_CHECK(!bsr.is_csr(), "prune: --bsr names a block format (bsr4x4, ...), not csr");
  const compress::Criterion criterion = compress::parse_criterion(o.criterion);

  std::string arch;
  ModulePtr model = load_model(o.checkpoint, &arch);
  ModulePtr original = load_model(o.checkpoint);
  model->eval(), original->eval();
  const std::vector<std::string> layers = choose_layers(*model, o);
  const Amount amount = Amount::fraction(o.amount);
  if (o.method == "channel") compress::check_channel_pruning(*model, layers, amount);  // before the evaluation
  ImageDataset test = load_mnist_format(o.data_dir, "t10k");
  if (o.limit_test > 0) test = test.subset(o.limit_test);
  classes_of(*model, test, "prune: " + o.checkpoint);

  nlohmann::json j = {{"command", "prune"}, {"checkpoint", o.checkpoint}, {"model", arch}, {"method", o.method},
                      {"amount", o.amount}, {"schedule", o.schedule}, {"layers", layers},
                      {"finetune_epochs", o.finetune_epochs}};
  if (!json)
    std::printf("%s (%s): %s pruning to %.1f%%, %s, %lld fine-tuning epochs, layers %s\n", o.checkpoint.c_str(),
                arch.c_str(), o.method.c_str(), 100 * o.amount, o.schedule.c_str(),
                static_cast<long long>(o.finetune_epochs), fmt::format("{}", fmt::join(layers, " ")).c_str());
  const double before = evaluate(*model, test).accuracy;

  // 1. Prune (one-shot now, or gradually while fine-tuning).
  compress::Pruner pruner(*model);
  Generator gen(o.seed);
  nlohmann::json channel_report = nlohmann::json::array();
  if (o.schedule == "oneshot") {
    if (o.method == "global") {
      pruner.global_unstructured(weight_names(layers), amount);
    } else if (o.method == "l1") {
      for (const std::string& w : weight_names(layers)) pruner.l1_unstructured(w, amount);
    } else if (o.method == "random") {
      for (const std::string& w : weight_names(layers)) pruner.random_unstructured(w, amount, gen);
    } else {
      for (const auto& r : shrink(*model, layers, o.layers.empty(), amount, criterion, &gen))
        channel_report.push_back({{"layer", r.layer}, {"before", r.before}, {"after", r.after},
                                  {"consumer", r.consumer}, {"exact", r.exact}, {"note", r.note}});
    }
  }
  const double after_pruning = o.schedule == "oneshot" ? evaluate(*model, test).accuracy : before;

  // 2. Fine-tune, keeping pruned weights at zero.
  TrainConfig config{.model = arch, .epochs = o.finetune_epochs, .batch = o.batch, .lr = o.lr, .seed = o.seed,
                     .limit_train = o.limit_train, .limit_test = o.limit_test, .data_dir = o.data_dir};
  TrainHooks hooks;
  if (o.method != "channel") hooks.after_step = pruner.after_step();
  std::vector<double> epochs_accuracy;
  if (o.finetune_epochs > 0) {
    ImageDataset train = load_mnist_format(o.data_dir, "train");
    if (o.limit_train > 0) train = train.subset(o.limit_train);
    const int64_t steps = o.finetune_epochs * (train.size / o.batch + (train.size % o.batch != 0));
    if (o.schedule == "agp")
      hooks.after_step = pruner.gradual(weight_names(layers),
                                        {.initial = 0, .final = o.amount, .begin_step = 0,
                                         .end_step = std::max<int64_t>(1, steps * 2 / 3),
                                         .every = std::max<int64_t>(1, steps / 30)},
                                        o.method == "global");
    Trainer trainer(model, config, hooks);
    bench::Progress progress("fine-tuning", steps);
    for (int64_t e = 0; e < o.finetune_epochs; ++e) {
      EpochResult r = trainer.run_epoch(train, test, [&](int64_t, int64_t, int64_t, double loss, double acc, double) {
        progress.step(fmt::format("loss {:.3f} acc {:.1f}%", loss, 100 * acc));
      });
      epochs_accuracy.push_back(r.test.accuracy);
    }
  }
  model->eval();
  const double finetuned = evaluate(*model, test).accuracy;

  // 3. What is left, per layer.
  const Tensor images = bench::real_images(o.data_dir, std::max<int64_t>(1, *std::max_element(
                                                                               o.latency_batches.begin(),
                                                                               o.latency_batches.end())));
  const auto sparsity = compress::sparsity_report(*model, images.narrow(0, 0, 1));

  // 4. The same model, five ways.
  struct Way {
    std::string name, note;
    ModulePtr model;
    bool check_against_masked = false;
  };
  std::vector<Way> ways = {{"dense", "the checkpoint as it came", original}};
  nlohmann::json conversions = nlohmann::json::array();
  auto describe_choices = [&](const std::string& way, const std::vector<compress::SparseChoice>& choices) {
    std::string dense;
    for (const auto& c : choices) {
      conversions.push_back({{"way", way}, {"layer", c.path}, {"choice", c.choice}, {"reason", c.reason}});
      if (c.choice == "dense") dense += (dense.empty() ? "" : ", ") + c.path;
    }
    return dense.empty() ? std::string("every layer sparse") : "dense: " + dense;
  };
  if (o.method == "channel") {
    ways.push_back({"shrunk", "channel-pruned and fine-tuned", model});
  } else {
    ways.push_back({"masked-dense", "zeros kept in the dense weights", model});
    const compress::ToSparseOptions convert{.measure = o.auto_select, .example = images};
    ModulePtr csr = clone(*model);
    csr->eval();
    const std::string csr_note =
        describe_choices("csr", compress::to_sparse(*csr, compress::SparseFormat::csr(), convert));
    ways.push_back({"csr", csr_note, csr, true});
    ModulePtr blocks = clone(*model);
    blocks->eval();
    const std::string bsr_note = describe_choices(bsr.name(), compress::to_sparse(*blocks, bsr, convert));
    ways.push_back({bsr.name(), bsr_note + " (unstructured zeros: blocks keep zeros)", blocks, true});
    try {
      ModulePtr shrunk = clone(*original);
      shrunk->eval();
      shrink(*shrunk, channel_layers(*shrunk), true, amount, compress::Criterion::l1, nullptr);
      ways.push_back({"shrunk", fmt::format("{:.0f}% of channels removed instead (not fine-tuned: its speed only)",
                                            100 * o.amount),
                      shrunk});
    } catch (const Error& e) {
      if (!json) std::printf("(no structured comparison: %s)\n", e.what());
    }
  }
  nlohmann::json latency = nlohmann::json::array();
  std::vector<std::string> columns = {"way"};
  for (int64_t b : o.latency_batches) {
    columns.push_back(fmt::format("batch {}", b));
    columns.push_back("vs dense");
  }
  columns.push_back("note");
  bench::Table table(fmt::format("latency, median [p10, p90] over interleaved rounds, {} threads", bench::threads()),
                     columns);
  std::vector<std::vector<std::string>> rows(ways.size());
  for (size_t w = 0; w < ways.size(); ++w) rows[w].push_back(ways[w].name);
  NoGradGuard no_grad;
  for (int64_t b : o.latency_batches) {
    const Tensor x = images.narrow(0, 0, b).contiguous();
    const Tensor masked_logits = ways[1].model->forward(x);
    for (const Way& w : ways)
      if (w.check_against_masked)
        bench::require_close("prune", w.name + " logits at batch " + std::to_string(b), w.model->forward(x),
                             masked_logits, 1e-4);
    std::vector<bench::Variant> variants;
    for (const Way& w : ways) variants.push_back({w.name, [&w, &x] { w.model->forward(x); }});
    const bench::SideBySide r = bench::run_side_by_side(variants, bench::to_options(o.timing));
    for (size_t w = 0; w < ways.size(); ++w) {
      const bench::Stats& s = r.stats[w];
      const char* label = w == 0 ? "BASELINE" : bench::verdict(r.speedup_p10[w], r.speedup_p90[w]);
      rows[w].push_back(fmt::format("{} [{}, {}]", bench::format_seconds(s.median), bench::format_seconds(s.p10),
                                    bench::format_seconds(s.p90)));
      rows[w].push_back(w == 0 ? "-" : fmt::format("{:.2f}x {}", r.speedup[w], label));
      latency.push_back({{"way", ways[w].name}, {"batch", b}, {"time", s.to_json()},
                         {"speedup", {{"median", r.speedup[w]}, {"p10", r.speedup_p10[w]}, {"p90", r.speedup_p90[w]}}},
                         {"verdict", label}});
    }
  }
  for (size_t w = 0; w < ways.size(); ++w) {
    rows[w].push_back(ways[w].note);
    table.add_row(rows[w]);
  }

  // 5. The checkpoint, last: nothing is written unless everything above worked.
  // The Trainer writes the checkpoint (model, spec, config); it wants a config
  // it could train with, even when nothing was fine-tuned.
  TrainConfig save_config = config;
  save_config.epochs = std::max<int64_t>(1, config.epochs);
  Trainer saver(model, save_config);
  Metadata extra = o.method == "channel" ? Metadata{} : pruner.checkpoint_metadata();
  extra["prune"] = j.dump();
  saver.save(o.out, o.method == "channel" ? StateDict{} : pruner.checkpoint_tensors(), extra);

  j["accuracy"] = {{"before", before}, {"after_pruning", o.schedule == "oneshot" ? nlohmann::json(after_pruning)
                                                                                 : nlohmann::json(nullptr)},
                   {"after_finetuning", finetuned}, {"per_epoch", epochs_accuracy}};
  j["sparsity"] = compress::to_json(sparsity);
  j["channels"] = channel_report;
  j["conversions"] = conversions;
  j["latency"] = latency;
  j["table"] = table.json();
  j["out"] = o.out;
  if (json) {
    std::cout << j.dump() << std::endl;
    return 0;
  }
  std::printf("\naccuracy: before %s, after pruning %s, after fine-tuning %s (%+.2f points against before)\n",
              pct(before).c_str(), o.schedule == "oneshot" ? pct(after_pruning).c_str() : "- (gradual)",
              pct(finetuned).c_str(), 100 * (finetuned - before));
  bench::Table layers_table("per layer", {"layer", "weight", "nnz", "sparsity", "dense bytes", "CSR bytes",
                                          "MACs dense", "MACs sparse"});
  for (const auto& l : sparsity)
    layers_table.add_row({l.path, fmt::format("{}", l.shape), std::to_string(l.nnz), pct(l.sparsity),
                          std::to_string(l.dense_bytes), std::to_string(l.csr_bytes), std::to_string(l.dense_macs),
                          std::to_string(l.sparse_macs)});
  std::cout << "\n" << layers_table.text() << "\n";
  if (o.auto_select)
    for (const auto& c : conversions)
      std::printf("%s, layer %s: %s (%s)\n", c["way"].get<std::string>().c_str(), c["layer"].get<std::string>().c_str(),
                  c["choice"].get<std::string>().c_str(), c["reason"].get<std::string>().c_str());
  std::cout << table.text();
  std::printf("FASTER/SLOWER: nine rounds in ten agree by more than 3%%; SAME: within 3%%; UNCLEAR: neither.\n");
  std::printf("wrote %s\n", o.out.c_str());
  return 0;
}

}  // namespace minidl::tools
