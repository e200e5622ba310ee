// tools/distill.cpp — `minidl distill --teacher CKPT --student mlp-small --T 4 --alpha 0.7 ...`.
//
// One run answers "does distillation help this student, here?":
//   1. the teacher (any checkpoint) runs once over the training set in eval mode
//      under no-grad, and its logits are kept (with --augment it runs on every
//      batch instead: each augmented image is new to it);
//   2. the student trains on distillation_loss (ops/loss.h): α T² KL + (1 − α) CE,
//      logging CE, the KL raw and T²-scaled, test accuracy and its agreement
//      with the teacher every epoch;
//   3. with --baseline the same student (same initialisation, seed, epochs,
//      schedule and batch order) trains on the labels alone, and the two test
//      accuracies are printed side by side; --seeds repeats both arms per seed
//      and reports mean and spread.
// --sweep trains one student per (T, α) of a grid instead. Every request is
// checked before training starts; the checkpoint is written last.
#include "tools/distill.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <numeric>
#include <random>

#include "core/file.h"
#include "minidl.h"
#include "tools/bench/benchmark.h"
#include "tools/bench/progress.h"

namespace minidl::tools {

namespace {

using namespace minidl::nn;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }
std::string pct(double f) { return fmt::format("{:.2f}%", 100 * f); }

// The teacher: one model, or an ensemble whose logits are averaged (Hinton et
// al. distilled an ensemble into one net; the mean of the logits is the
// renormalised geometric mean of the members' probabilities). Eval mode, no grad.
struct Teacher {
  std::vector<ModulePtr> models;
  Tensor operator()(const Tensor& images) const {
    NoGradGuard no_grad;
    Tensor total = (*models.front())(images);
    for (size_t i = 1; i < models.size(); ++i) total = add(total, (*models[i])(images));
    return models.size() == 1 ? total : div(total, scalar_like(static_cast<double>(models.size()), total));
  }
};

// f's logits for every sample of `data`, in order (row i is sample i), computed on `device`.
template <class Logits>
Tensor logits_of(const Logits& f, const ImageDataset& data, const Device& device) {
  NoGradGuard no_grad;
  DataLoader loader(data, {.batch_size = 500, .shuffle = false});
  loader.start_epoch(0);
  std::vector<Tensor> parts;
  while (auto b = loader.next()) parts.push_back(f(b->images.to(device)));
  return cat(parts, 0);
}

// The fraction of `predictions` (int64 classes) equal to `reference` (labels, or another model's predictions).
double agreement(const Tensor& predictions, const Tensor& reference) {
  return sum(eq(predictions, reference)).item() / static_cast<double>(predictions.numel());
}
Tensor predictions_of(Module& model, const ImageDataset& data, const Device& device) {
  model.eval();
  return argmax(logits_of([&](const Tensor& x) { return model(x); }, data, device), 1);
}

// A student to train: a zoo model initialised from `seed`, or a checkpoint (the
// same weights for every seed; a pruned checkpoint's masks are kept while it trains).
// It is moved to `device` before the pruner reads it, so the masks live there too.
struct Student {
  ModulePtr model;
  std::string arch;
  std::unique_ptr<compress::Pruner> pruner;
};
Student make_student(const std::string& student, uint64_t seed, const Device& device) {
  Student s;
  if (std::filesystem::is_regular_file(student)) {
    SafeTensors file = load_safetensors(student);
    s.model = load_model(file, student, &s.arch);
    MINIDL_CHECK(!compress::is_quantized(*s.model),
                 "distill: --student {} is int8 (minidl quantize wrote it), which does not train; distill into the "
                 "f32 checkpoint it came from",
                 student);
    s.model->to(device);
    s.pruner = std::make_unique<compress::Pruner>(*s.model);
    s.pruner->load_from(file, student);  // checks the weights are zero where the masks prune
  } else {
    const auto& zoo = model_names();
    MINIDL_CHECK(std::find(zoo.begin(), zoo.end(), student) != zoo.end(),
                 "distill: --student '{}' is neither a checkpoint file nor a zoo model ({})", student,
                 fmt::join(zoo, ", "));
    s.model = build_model(TrainConfig{.model = student, .seed = seed});
    s.model->to(device);
    s.arch = student;
    s.pruner = std::make_unique<compress::Pruner>(*s.model);
  }
  return s;
}

struct EpochLog {
  int64_t epoch = 0;
  double ce = 0, kl = 0, loss = 0, accuracy = 0, agreement = 0, seconds = 0;
  bool has_kl = false;
};
struct Arm {
  std::string name;  // "distilled" or "alone"
  uint64_t seed = 0;
  double temperature = 0, alpha = 0;
  std::vector<EpochLog> epochs;
  double accuracy = 0, agreement = 0;
  // Kept for the checkpoint only: its loss hook points at train_arm's locals, so
  // it must not train again.
  std::unique_ptr<Trainer> trainer;
  Student student;
};

nlohmann::json to_json(const Arm& a) {
  nlohmann::json epochs = nlohmann::json::array();
  for (const EpochLog& e : a.epochs)
    epochs.push_back({{"epoch", e.epoch},
                      {"ce", e.ce},
                      {"kl", e.has_kl ? nlohmann::json(e.kl) : nlohmann::json()},
                      {"kl_t2", e.has_kl ? nlohmann::json(e.kl * a.temperature * a.temperature) : nlohmann::json()},
                      {"loss", e.loss},
                      {"test_accuracy", e.accuracy},
                      {"agreement", e.agreement},
                      {"seconds", e.seconds}});
  return {{"arm", a.name},
          {"seed", a.seed},
          {"temperature", a.temperature},
          {"alpha", a.alpha},
          {"test_accuracy", a.accuracy},
          {"agreement", a.agreement},
          {"epochs", epochs}};
}

// Everything every arm shares: data, the teacher, its cached logits.
struct Setup {
  explicit Setup(const DistillOptions& options) : o(options), device(options.device) {}
  const DistillOptions& o;
  Device device;  // teacher, students, the cached logits
  ImageDataset train, test;
  Teacher teacher;
  Tensor teacher_train_logits;  // (train, C), or undefined with --augment or --no-cache
  Tensor teacher_test_predictions;
  double teacher_accuracy = 0;
};

// One epoch's line of the log.
void print_epoch(const Arm& a, const EpochLog& e) {
  const std::string kl = e.has_kl ? fmt::format("KL {:.4f} (T² KL {:.3f})", e.kl, e.kl * a.temperature * a.temperature)
                                  : std::string("KL -");
  std::printf("  %-9s seed %llu epoch %lld: CE %.4f  %s  loss %.4f  test %s  agreement %s  %.1f s\n", a.name.c_str(),
              static_cast<unsigned long long>(a.seed), static_cast<long long>(e.epoch), e.ce, kl.c_str(), e.loss,
              pct(e.accuracy).c_str(), pct(e.agreement).c_str(), e.seconds);
  std::fflush(stdout);
}

// Trains one student: distilled from the teacher (T, alpha) or alone.
Arm train_arm(const Setup& s, bool distilled, uint64_t seed, double T, double alpha) {
  const DistillOptions& o = s.o;
  Arm arm;
  arm.name = distilled ? "distilled" : "alone";
  arm.seed = seed, arm.temperature = T, arm.alpha = alpha;
  arm.student = make_student(o.student, seed, s.device);
  TrainConfig config{.model = arm.student.arch,
                     .epochs = o.epochs,
                     .batch = o.batch,
                     .lr = o.lr,
                     .schedule = o.schedule,
                     .augment = o.augment,
                     .seed = seed,
                     .limit_train = o.limit_train,
                     .limit_test = o.limit_test,
                     .data_dir = o.data_dir,
                     .device = o.device};
  double ce_sum = 0, kl_sum = 0;
  int64_t seen = 0;
  bool has_kl = false;
  std::mt19937_64 mix_rng(seed ^ 0x6d697875ull);  // --mixup's pairs and weights
  TrainHooks hooks;
  hooks.loss = [&](const Tensor& logits, const Batch& b) {
    const int64_t n = b.labels.numel();
    seen += n;
    Tensor teacher_logits;  // the lone student compares itself with cached logits only
    if (s.teacher_train_logits.defined())
      teacher_logits = index_select(s.teacher_train_logits, 0, b.indices);  // on the device, as the batch
    else if (distilled)
      teacher_logits = s.teacher(b.images);
    if (!distilled) {
      Tensor ce = cross_entropy(logits, b.labels);
      ce_sum += ce.item() * static_cast<double>(n);
      if (teacher_logits.defined()) {  // how far the lone student is from the teacher, for the log
        NoGradGuard no_grad;
        kl_sum += kl_div_logits(logits, teacher_logits, T).item() * static_cast<double>(n);
        has_kl = true;
      }
      return ce;
    }
    DistillationLoss l = distillation_loss_terms(logits, teacher_logits, b.labels, {.temperature = T, .alpha = alpha});
    ce_sum += l.ce.item() * static_cast<double>(n);
    kl_sum += l.kl.item() * static_cast<double>(n);
    has_kl = true;
    if (!o.mixup) return l.loss;
    // The same batch mixed with a shuffled copy of itself: images no label
    // describes, on which only the teacher can say what the student should answer.
    std::vector<int64_t> perm(static_cast<size_t>(n));
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), mix_rng);
    std::vector<float> lam(static_cast<size_t>(n));
    for (float& v : lam) v = std::uniform_real_distribution<float>(0.0f, 1.0f)(mix_rng);
    const Tensor l1 = from_vector<float>(lam, {n, 1, 1, 1}).to(b.images.device());
    const Tensor partner = index_select(b.images, 0, from_vector<int64_t>(perm, {n}).to(b.images.device()));
    const Tensor mixed = add(mul(b.images, l1), mul(partner, sub(scalar_like(1.0, l1), l1)));
    const Tensor match = distillation_loss_terms((*arm.student.model)(mixed), s.teacher(mixed), b.labels,
                                                 {.temperature = T, .alpha = 1.0})
                             .loss;  // α = 1: the teacher term alone, T² KL (the labels do not fit mixed images)
    return add(l.loss, mul(match, scalar_like(alpha, match)));
  };
  if (!arm.student.pruner->masks().empty()) hooks.after_step = arm.student.pruner->after_step();
  arm.trainer = std::make_unique<Trainer>(arm.student.model, config, hooks);
  const int64_t steps = s.train.size / o.batch + (s.train.size % o.batch != 0);
  const std::string title = distilled ? fmt::format("distilled (T {}, alpha {}), seed {}", T, alpha, seed)
                                      : fmt::format("alone, seed {}", seed);
  bench::Progress progress(title, o.epochs * steps, !o.json);
  for (int64_t e = 0; e < o.epochs; ++e) {
    ce_sum = kl_sum = 0, seen = 0;
    const EpochResult r =
        arm.trainer->run_epoch(s.train, s.test, [&](int64_t, int64_t, int64_t, double loss, double acc, double) {
          progress.step(fmt::format("loss {:.3f} acc {:.1f}%", loss, 100 * acc));
        });
    arm.epochs.push_back(
        {.epoch = e + 1,
         .ce = ce_sum / seen,
         .kl = kl_sum / seen,
         .loss = r.train_loss,
         .accuracy = r.test.accuracy,
         .agreement = agreement(predictions_of(*arm.student.model, s.test, s.device), s.teacher_test_predictions),
         .seconds = r.seconds,
         .has_kl = has_kl});
    if (!o.json) print_epoch(arm, arm.epochs.back());
  }
  arm.accuracy = arm.epochs.back().accuracy;
  arm.agreement = arm.epochs.back().agreement;
  return arm;
}

struct Spread {
  double mean = 0, std = 0;  // sample standard deviation (0 for one value)
};
Spread spread(const std::vector<double>& v) {
  Spread s;
  for (double x : v) s.mean += x / static_cast<double>(v.size());
  if (v.size() > 1) {
    for (double x : v) s.std += (x - s.mean) * (x - s.mean);
    s.std = std::sqrt(s.std / static_cast<double>(v.size() - 1));
  }
  return s;
}

}  // namespace

int run_distill(const DistillOptions& o) {
  // Every request is checked before any training.
  MINIDL_CHECK(o.temperature > 0 && std::isfinite(o.temperature), "distill: --T must be > 0, got {}", o.temperature);
  MINIDL_CHECK(o.alpha >= 0 && o.alpha <= 1, "distill: --alpha must be in [0, 1], got {}", o.alpha);
  for (double t : o.sweep_temperatures)
    MINIDL_CHECK(t > 0 && std::isfinite(t), "distill: sweep temperature {} must be > 0", t);
  for (double a : o.sweep_alphas) MINIDL_CHECK(a >= 0 && a <= 1, "distill: sweep alpha {} must be in [0, 1]", a);
  MINIDL_CHECK(o.epochs >= 1, "distill: --epochs must be >= 1, got {}", o.epochs);
  MINIDL_CHECK(!o.seeds.empty(), "distill: --seeds is empty");
  MINIDL_CHECK(!o.teachers.empty(), "distill: --teacher is required (a checkpoint minidl saved)");
  if (!o.out.empty()) prepare_output(o.out, "distill --out");
  for (const std::string& t : o.teachers)
    MINIDL_CHECK(std::filesystem::is_regular_file(t), "distill: --teacher {}: no such file", t);

  // The test split first: the teachers and the student are probed on it, and a
  // refused one is refused before the 60 000 training images are read.
  Setup s(o);
  s.test = load_mnist_format(o.data_dir, "t10k");
  if (o.limit_test > 0) s.test = s.test.subset(o.limit_test);
  std::vector<std::string> teacher_archs;
  int64_t teacher_classes = 0;
  for (const std::string& t : o.teachers) {
    std::string arch;
    ModulePtr m = load_model(t, &arch);  // a corrupt file is an error naming it
    m->to(s.device);  // a layer that cannot run there (a sparse convolution on a GPU) says so
    m->eval();
    const int64_t classes = classes_of(*m, s.test, fmt::format("distill: the teacher {}", t));
    MINIDL_CHECK(teacher_classes == 0 || classes == teacher_classes,
                 "distill: the teachers disagree on the number of classes: {} has {}, {} has {}", o.teachers.front(),
                 teacher_classes, t, classes);
    teacher_classes = classes;
    s.teacher.models.push_back(m);
    teacher_archs.push_back(arch);
  }
  const std::string teacher_name = fmt::format("{}", fmt::join(o.teachers, " + "));
  const std::string teacher_arch = fmt::format("{}", fmt::join(teacher_archs, " + "));
  {
    Student probe = make_student(o.student, o.seeds.front(), s.device);
    const int64_t student_classes = classes_of(*probe.model, s.test, fmt::format("distill: the student {}", o.student));
    MINIDL_CHECK(teacher_classes == student_classes,
                 "distill: the teacher {} has {} classes but the student {} has {}: they must predict the same classes",
                 teacher_name, teacher_classes, o.student, student_classes);
  }
  s.train = load_mnist_format(o.data_dir, "train");
  if (o.limit_train > 0) s.train = s.train.subset(o.limit_train);

  // The teacher, once: its test predictions (for agreement), and its training
  // logits unless augmentation makes every batch new.
  auto start = Clock::now();
  const Tensor teacher_test_logits = logits_of(s.teacher, s.test, s.device);
  s.teacher_test_predictions = argmax(teacher_test_logits, 1);
  s.teacher_accuracy = agreement(
      s.teacher_test_predictions,
      from_vector<int64_t>(std::vector<int64_t>(s.test.labels.begin(), s.test.labels.end()), {s.test.size})
          .to(s.device));
  double cache_seconds = 0;
  if (!o.augment && !o.no_cache) {
    start = Clock::now();
    s.teacher_train_logits = logits_of(s.teacher, s.train, s.device);
    sum(s.teacher_train_logits).item();  // waits for the GPU, so the time is the work's
    cache_seconds = seconds_since(start);
  }

  nlohmann::json j = {{"command", "distill"},
                      {"teacher", o.teachers},
                      {"teacher_model", teacher_arch},
                      {"teacher_test_accuracy", s.teacher_accuracy},
                      {"student", o.student},
                      {"epochs", o.epochs},
                      {"batch", o.batch},
                      {"lr", o.lr},
                      {"schedule", o.schedule},
                      {"augment", o.augment},
                      {"mixup", o.mixup},
                      {"seeds", o.seeds},
                      {"device", s.device.str()}};
  const int64_t distilled_runs = o.sweep ? static_cast<int64_t>(o.sweep_temperatures.size() * o.sweep_alphas.size())
                                         : static_cast<int64_t>(o.seeds.size());
  if (!o.json) {
    std::printf("teacher %s (%s): test accuracy %s\n", teacher_name.c_str(), teacher_arch.c_str(),
                pct(s.teacher_accuracy).c_str());
    if (o.mixup) std::printf("--mixup: the distilled student also matches the teacher on mixed images (run on every batch)\n");
    if (o.augment || o.no_cache)
      std::printf("%s: the teacher runs on every training batch\n", o.augment ? "augmentation on" : "--no-cache");
    else
      std::printf(
          "teacher logits for %lld training images cached in %.2f s, once; running the teacher on every "
          "batch instead costs about that again per epoch (time it with --no-cache): some %.0f s saved over "
          "%lld run(s) of %lld epochs\n",
          static_cast<long long>(s.train.size), cache_seconds,
          cache_seconds * static_cast<double>(distilled_runs * o.epochs) - cache_seconds,
          static_cast<long long>(distilled_runs), static_cast<long long>(o.epochs));
  }
  j["teacher_cache_seconds"] = s.teacher_train_logits.defined() ? nlohmann::json(cache_seconds) : nlohmann::json();

  std::unique_ptr<Arm> keep;  // the first distilled student, for --out
  if (o.sweep) {
    const uint64_t seed = o.seeds.front();
    Arm alone = train_arm(s, false, seed, o.temperature, o.alpha);
    nlohmann::json cells = nlohmann::json::array();
    std::vector<std::string> columns = {"T"};
    for (double a : o.sweep_alphas) columns.push_back(fmt::format("alpha {}", a));
    bench::Table table(fmt::format("test accuracy distilled (difference from alone, {}), seed {}, {} epochs",
                                   pct(alone.accuracy), seed, o.epochs),
                       columns);
    for (double T : o.sweep_temperatures) {
      std::vector<std::string> row = {fmt::format("{}", T)};
      for (double a : o.sweep_alphas) {
        Arm d = train_arm(s, true, seed, T, a);
        row.push_back(fmt::format("{} ({:+.2f})", pct(d.accuracy), 100 * (d.accuracy - alone.accuracy)));
        cells.push_back(to_json(d));
        if (!keep) keep = std::make_unique<Arm>(std::move(d));
      }
      table.add_row(row);
    }
    j["alone"] = to_json(alone);
    j["sweep"] = cells;
    j["table"] = table.json();
    if (!o.json) std::cout << "\n" << table.text();
  } else {
    nlohmann::json runs = nlohmann::json::array();
    std::vector<double> distilled_acc, alone_acc, diff;
    bench::Table table(fmt::format("test accuracy after {} epochs, T {}, alpha {}", o.epochs, o.temperature, o.alpha),
                       o.baseline ? std::vector<std::string>{"seed", "distilled", "alone", "difference",
                                                             "agreement distilled", "agreement alone"}
                                  : std::vector<std::string>{"seed", "distilled", "agreement"});
    for (uint64_t seed : o.seeds) {
      Arm d = train_arm(s, true, seed, o.temperature, o.alpha);
      runs.push_back(to_json(d));
      distilled_acc.push_back(d.accuracy);
      if (o.baseline) {
        Arm a = train_arm(s, false, seed, o.temperature, o.alpha);
        runs.push_back(to_json(a));
        alone_acc.push_back(a.accuracy);
        diff.push_back(d.accuracy - a.accuracy);
        table.add_row({std::to_string(seed), pct(d.accuracy), pct(a.accuracy),
                       fmt::format("{:+.2f} points", 100 * diff.back()), pct(d.agreement), pct(a.agreement)});
      } else {
        table.add_row({std::to_string(seed), pct(d.accuracy), pct(d.agreement)});
      }
      if (!keep) keep = std::make_unique<Arm>(std::move(d));
    }
    const Spread sd = spread(distilled_acc);
    nlohmann::json summary = {{"distilled", {{"mean", sd.mean}, {"std", sd.std}}}};
    if (o.baseline) {
      const Spread sa = spread(alone_acc), sdiff = spread(diff);
      const bool all_positive = std::all_of(diff.begin(), diff.end(), [](double d) { return d > 0; });
      table.add_row({"mean ± std", fmt::format("{} ± {:.2f}", pct(sd.mean), 100 * sd.std),
                     fmt::format("{} ± {:.2f}", pct(sa.mean), 100 * sa.std),
                     fmt::format("{:+.2f} ± {:.2f} points", 100 * sdiff.mean, 100 * sdiff.std), "", ""});
      summary["alone"] = {{"mean", sa.mean}, {"std", sa.std}};
      summary["difference"] = {{"mean", sdiff.mean}, {"std", sdiff.std}, {"every_seed_positive", all_positive}};
      if (!o.json)
        std::printf("\n%s", fmt::format("distilled against alone: {:+.2f} points (mean of {} seed(s)); {} of them "
                                        "positive\n",
                                        100 * sdiff.mean, diff.size(),
                                        std::count_if(diff.begin(), diff.end(), [](double d) { return d > 0; }))
                                .c_str());
    }
    j["runs"] = runs;
    j["summary"] = summary;
    j["table"] = table.json();
    if (!o.json) std::cout << "\n" << table.text();
  }

  // The checkpoint, last: the first distilled student, its masks if it was pruned,
  // and the recipe.
  if (!o.out.empty() && keep) {
    nlohmann::json recipe = {{"teacher", o.teachers}, {"temperature", keep->temperature},
                             {"alpha", keep->alpha},  {"epochs", o.epochs},
                             {"seed", keep->seed},    {"augment", o.augment}};
    Metadata extra = keep->student.pruner->masks().empty() ? Metadata{} : keep->student.pruner->checkpoint_metadata();
    extra["distill"] = recipe.dump();
    keep->trainer->save(o.out, keep->student.pruner->checkpoint_tensors(), extra);
    j["out"] = o.out;
    if (!o.json)
      std::printf("wrote %s (distilled, T %g, alpha %g, seed %llu)\n", o.out.c_str(), keep->temperature, keep->alpha,
                  static_cast<unsigned long long>(keep->seed));
  }
  if (o.json) std::cout << j.dump() << std::endl;
  return 0;
}

}  // namespace minidl::tools
