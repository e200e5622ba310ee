// tests/test_plan.cpp — compiled plans (compile/plan.h): the f32 GEMM against a
// weight packed ahead of time (both kernels against the f64 product); every zoo
// model's plan against eager, in f32 (BatchNorm folded: to rounding), bf16 and
// int8 (bit for bit); the fusions it reports; buffers reused across runs; the
// eager fallback for a layer it does not lower; and the errors (another shape,
// another dtype, training mode).
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "minidl.h"
#include "ops/cpu/kernels.h"

using namespace minidl;

namespace {

// A zoo model with weights and, for BatchNorm, statistics that are not the
// identity (so folding is really tested), in eval mode.
void randomize_batch_norms(nn::Module& m, Generator& gen) {
  NoGradGuard no_grad;
  for (auto& [path, sub] : m.named_modules())
    if (auto* bn = dynamic_cast<nn::BatchNorm*>(sub.get())) {
      const int64_t C = bn->features;
      bn->running_mean.copy_(mul(randn({C}, {}, gen), 0.3));
      bn->running_var.copy_(add(rand({C}, {}, gen), 0.5));
      bn->weight.copy_(add(mul(rand({C}, {}, gen), 1.0), 0.5));
      bn->bias.copy_(mul(randn({C}, {}, gen), 0.2));
    }
}
nn::ModulePtr model_with_statistics(const std::string& name, uint64_t seed) {
  Generator gen(seed);
  auto m = nn::build_model(name, gen);
  randomize_batch_norms(*m, gen);
  m->eval();
  return m;
}

// How many times `what` occurs in `text`.
int64_t count(const std::string& text, const std::string& what) {
  int64_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

double max_relative_error(const Tensor& got, const Tensor& want) {
  const auto g = got.to(DType::f64).to_vector<double>(), w = want.to(DType::f64).to_vector<double>();
  double err = 0, scale = 0;
  for (size_t i = 0; i < g.size(); ++i)
    err = std::max(err, std::abs(g[i] - w[i])), scale = std::max(scale, std::abs(w[i]));
  return err / scale;
}

}  // namespace

TEST_CASE("gemm_packed_f32: the AVX-512 kernel and the reference against the f64 product") {
  const int64_t shapes[][3] = {{1, 1, 1},   {1, 10, 784}, {2, 17, 5},    {3, 33, 31},
                               {6, 16, 64}, {7, 130, 3},  {13, 47, 257}, {64, 256, 512}};
  std::mt19937_64 rng(5);
  std::uniform_real_distribution<float> u(-1, 1);
  for (const auto& s : shapes) {
    const int64_t M = s[0], N = s[1], K = s[2];
    std::vector<float> x(M * K), w(N * K), bias(N);
    for (auto* v : {&x, &w, &bias})
      for (auto& e : *v) e = u(rng);
    std::vector<float> packed(cpu::gemm_packed_f32_elements(N, K));
    cpu::gemm_packed_f32_pack(w.data(), K, N, K, packed.data());
    for (bool reference : {true, false}) {
      if (!reference && !cpu::gemm_packed_f32_fast()) {
        MESSAGE("skipped the AVX-512 packed kernel: this CPU path lacks AVX-512");
        continue;
      }
      for (bool relu : {false, true}) {
        CAPTURE(M);
        CAPTURE(N);
        CAPTURE(K);
        CAPTURE(reference);
        std::vector<float> y(M * N, std::nanf(""));  // poisoned
        cpu::PackedGemmArgs a;
        a.M = M, a.N = N, a.K = K, a.x = x.data(), a.ldx = K, a.w_packed = packed.data();
        a.bias = relu ? nullptr : bias.data(), a.relu = relu, a.y = y.data(), a.ldy = N;
        cpu::gemm_packed_f32(a, reference);
        int bad = 0;
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = 0; n < N; ++n) {
            double e = relu ? 0.0 : bias[n], scale = std::abs(e);
            for (int64_t k = 0; k < K; ++k)
              e += double(x[m * K + k]) * w[n * K + k], scale += std::abs(double(x[m * K + k]) * w[n * K + k]);
            if (relu) e = std::max(e, 0.0);
            bad += !(std::abs(y[m * N + n] - e) <= 1e-6 * scale + 1e-6);
          }
        CHECK(bad == 0);
      }
    }
  }
}

TEST_CASE("compile: every zoo model's plan equals eager in f32, with the fusions it reports") {
  NoGradGuard no_grad;
  for (const auto& name : nn::model_names()) {
    CAPTURE(name);
    auto m = model_with_statistics(name, 11);
    Generator gen(12);
    for (int64_t batch : {1, 3}) {
      CAPTURE(batch);
      const Tensor x = randn({batch, 1, 28, 28}, {}, gen);
      Plan plan = compile(*m, x);
      CHECK(plan.eager_steps() == 0);
      CHECK(plan.activation_buffers() >= 1);
      CHECK(plan.activation_buffers() <= 3);  // a chain needs two, ping-pong; a residual step one more for x
      const Tensor want = m->forward(x);
      CHECK(max_relative_error(plan.run(x), want) < 1e-5);
      const std::string d = plan.describe();
      if (name == "cnn") CHECK(d.find("conv 1->32 3x3 +relu +max pool 2x2") != std::string::npos);
      if (name == "resnet-s") {
        CHECK(d.find("+batchnorm (folded) +relu") != std::string::npos);  // the stem
        CHECK(d.find("residual block 32->64 stride 2") != std::string::npos);
        CHECK(d.find("shortcut conv+bn") != std::string::npos);
        CHECK(d.find("identity") != std::string::npos);
      }
      if (name == "mlp" && cpu::gemm_packed_f32_fast())
        CHECK(d.find("linear 784->512 +relu [f32 packed once") != std::string::npos);
    }
  }
}

TEST_CASE("compile: a MaxPool2d after a conv (and its ReLU) becomes part of the conv's step") {
  // Without a BatchNorm the plan's convolution is eager's, so the two agree bit
  // for bit; with one, the folding rounds differently. A pool that follows
  // something else stays a step of its own.
  NoGradGuard no_grad;
  Generator gen(81);
  auto m = std::make_shared<nn::Sequential>();
  m->add(nn::make<nn::Conv2d>(3, 6, 3, Conv2dOptions{.padding = {1, 1}}, true, gen))
      .add(nn::make<nn::ReLU>())
      .add(nn::make<nn::MaxPool2d>(2));  // 23x22 -> 11x11 (the last row is not read)
  m->add(nn::make<nn::Conv2d>(6, 4, 3, Conv2dOptions{}, true, gen)).add(nn::make<nn::MaxPool2d>(3, 2, 1));  // 5x5
  m->add(nn::make<nn::Conv2d>(4, 5, 1, Conv2dOptions{}, true, gen))
      .add(nn::make<nn::ReLU>())
      .add(nn::make<nn::MaxPool2d>(2));  // 1x1 conv, odd width: 2x2
  m->add(nn::make<nn::AvgPool2d>(2));    // not a max pool: its own step
  m->eval();
  for (int64_t batch : {1, 5}) {
    CAPTURE(batch);
    const Tensor x = randn({batch, 3, 23, 22}, {}, gen);
    Plan plan = compile(*m, x);
    const std::string d = plan.describe();
    CHECK(d.find("conv 3->6 3x3 +relu +max pool 2x2") != std::string::npos);
    CHECK(d.find("conv 6->4 3x3 +max pool 3x3") != std::string::npos);
    CHECK(d.find("conv 4->5 1x1 +relu +max pool 2x2") != std::string::npos);
    CHECK(d.find("avg pool 2x2") != std::string::npos);
    CHECK(plan.steps() == 4);
    CHECK(plan.eager_steps() == 0);
    CHECK(plan.run(x).to_vector<float>() == m->forward(x).to_vector<float>());
  }
  // With a BatchNorm between the conv and the ReLU: folded, then pooled.
  auto bn = model_with_statistics("resnet-s", 82);  // a model whose BatchNorms hold real statistics
  auto stem = std::make_shared<nn::Sequential>();
  auto& layers = static_cast<nn::Sequential&>(*bn);
  stem->add(layers[0]).add(layers[1]).add(layers[2]).add(nn::make<nn::MaxPool2d>(2));  // conv, bn, relu, pool
  stem->eval();
  const Tensor x = randn({3, 1, 28, 28}, {}, gen);
  Plan plan = compile(*stem, x);
  CHECK(plan.describe().find("conv 1->32 3x3 +batchnorm (folded) +relu +max pool 2x2") != std::string::npos);
  CHECK(max_relative_error(plan.run(x), stem->forward(x)) < 1e-5);
}

TEST_CASE("compile: bf16 models' plans give eager bf16's answer, to bf16 precision") {
  NoGradGuard no_grad;
  for (const auto& name : nn::model_names()) {
    CAPTURE(name);
    auto m = model_with_statistics(name, 21);
    Generator gen(22);
    const Tensor x32 = randn({16, 1, 28, 28}, {}, gen);
    const Tensor y32 = m->forward(x32);
    m->to(DType::bf16);
    const Tensor x = x32.to(DType::bf16);
    Plan plan = compile(*m, x);
    const Tensor got = plan.run(x), eager = m->forward(x).to(DType::f32);
    CHECK(got.dtype() == DType::f32);
    CHECK(sqnr_db(eager, got) > 30);
    CHECK(sqnr_db(y32, got) > 25);  // and both near the f32 model
    if (name == "mlp") CHECK(plan.describe().find("bf16 packed once") != std::string::npos);
    // Convolutions run the bf16 GEMM where it outruns the f32 one; elsewhere the
    // plan keeps them in f32.
    if (name == "cnn")
      CHECK((plan.describe().find("+max pool 2x2 [bf16 GEMM") != std::string::npos) == cpu::gemm_bf16_outruns_f32());
  }
}

TEST_CASE("compile: an int8 model's plan is bit-identical to eager int8") {
  NoGradGuard no_grad;
  for (const char* name : {"mlp", "cnn"}) {
    CAPTURE(name);
    auto m = model_with_statistics(name, 31);
    compress::quantize_dynamic(*m);
    Generator gen(32);
    for (int64_t batch : {1, 20}) {
      const Tensor x = randn({batch, 1, 28, 28}, {}, gen);
      Plan plan = compile(*m, x);
      CHECK(plan.describe().find("int8 linear") != std::string::npos);
      CHECK(plan.run(x).to_vector<float>() == m->forward(x).to_vector<float>());
    }
  }
}

TEST_CASE("compile: int8 convolutions (with and without ReLU and max pool) are bit-identical to eager int8") {
  NoGradGuard no_grad;
  compress::QuantizeOptions with_convs;
  with_convs.convolutions = true;
  auto cnn = model_with_statistics("cnn", 33);
  compress::quantize_dynamic(*cnn, with_convs);
  // A conv alone, one with a ReLU, one with ReLU and a 3x3 max pool at stride 2 with padding.
  Generator init(34);
  auto mixed = nn::make<nn::Sequential>(std::vector<nn::ModulePtr>{
      nn::make<nn::Conv2d>(16, 16, 3, Conv2dOptions{.padding = {1, 1}}, true, init),
      nn::make<nn::Conv2d>(16, 16, 3, Conv2dOptions{.stride = {2, 2}}, false, init), nn::make<nn::ReLU>(),
      nn::make<nn::Conv2d>(16, 12, 3, Conv2dOptions{.padding = {1, 1}}, true, init), nn::make<nn::ReLU>(),
      nn::make<nn::MaxPool2d>(3, 2, 1), nn::make<nn::Flatten>()});
  mixed->eval();
  compress::quantize_dynamic(*mixed, with_convs);
  Generator gen(35);
  for (const auto& model_and_channels : {std::pair{cnn, int64_t{1}}, std::pair{nn::ModulePtr(mixed), int64_t{16}}}) {
    // (clang cannot CAPTURE a structured binding: plain names)
    const nn::ModulePtr& m = model_and_channels.first;
    const int64_t channels = model_and_channels.second;
    CAPTURE(channels);
    for (int64_t batch : {1, 20}) {
      const Tensor x = randn({batch, channels, 28, 28}, {}, gen);
      Plan plan = compile(*m, x);
      const std::string d = plan.describe();
      INFO(d);
      if (channels == 1) {
        CHECK(d.find("int8 conv 32->64 3x3 +relu +max pool 2x2") != std::string::npos);
        CHECK(d.find("conv 1->32 3x3 +relu +max pool 2x2") != std::string::npos);  // the short patch stays f32
      } else {
        CHECK(d.find("int8 conv 16->16 3x3 [") != std::string::npos);
        CHECK(d.find("int8 conv 16->16 3x3 +relu [") != std::string::npos);
        CHECK(d.find("int8 conv 16->12 3x3 +relu +max pool 3x3") != std::string::npos);
      }
      CHECK(d.find("eager") == std::string::npos);
      // The cnn's f32 conv1 feeds an int8 conv, so the plan computes it on the direct
      // kernel, channels last (compile.md): another f32 kernel, which need not round
      // as im2col + GEMM does. Channels first, every kernel is eager's.
      const Tensor want = m->forward(x);
      Plan channels_first = compile(*m, x, {.channels_last = false});
      CHECK(channels_first.run(x).to_vector<float>() == want.to_vector<float>());
      CHECK(sqnr_db(want, plan.run(x)) > 60);
    }
  }
}

TEST_CASE(
    "compile: a BatchNorm after an int8 convolution folds into its scales, in a Sequential and a residual block") {
  NoGradGuard no_grad;
  compress::QuantizeOptions with_convs;
  with_convs.convolutions = true;
  auto resnet = model_with_statistics("resnet-s", 36);  // trained-looking BatchNorm statistics
  compress::quantize_dynamic(*resnet, with_convs);
  Generator init(37);
  auto seq = nn::make<nn::Sequential>(
      std::vector<nn::ModulePtr>{nn::make<nn::Conv2d>(16, 24, 3, Conv2dOptions{.padding = {1, 1}}, false, init),
                                 nn::make<nn::BatchNorm2d>(24), nn::make<nn::ReLU>(), nn::make<nn::MaxPool2d>(2)});
  auto& bn = dynamic_cast<nn::BatchNorm&>(*(*seq)[1]);
  bn.running_mean = randn({24}, {}, init) * 0.1, bn.running_var = rand({24}, {}, init) + 0.5;
  bn.weight = randn({24}, {}, init), bn.bias = randn({24}, {}, init);  // negative scales too
  seq->eval();
  compress::quantize_dynamic(*seq, with_convs);
  Generator gen(38);
  for (const auto& model_and_channels : {std::pair{resnet, int64_t{1}}, std::pair{nn::ModulePtr(seq), int64_t{16}}}) {
    const nn::ModulePtr& m = model_and_channels.first;
    const int64_t channels = model_and_channels.second;
    CAPTURE(channels);
    const Tensor x = randn({8, channels, 28, 28}, {}, gen);
    Plan plan = compile(*m, x);
    const std::string d = plan.describe();
    INFO(d);
    CHECK(plan.eager_steps() == 0);
    if (channels == 1) {
      // conv2 int8 as conv1; the 1×1 shortcut's patch of 32 values stays f32 (kMinInt8ConvPatch).
      // (On the AVX-512 GEMM that f32 shortcut reads block 1's channels-last output as a GEMM over pixels.)
      const std::string shortcut =
          cpu::gemm_packed_f32_fast() ? "shortcut 1x1 conv+bn as a GEMM over pixels" : "shortcut conv+bn";
      CHECK(d.find("residual block 32->64 stride 2: int8 conv+bn+relu, int8 conv+bn, " + shortcut) !=
            std::string::npos);
    } else {
      CHECK(d.find("int8 conv 16->24 3x3 +batchnorm (folded) +relu +max pool 2x2") != std::string::npos);
    }
    // One rounding instead of two per output, and the next layer quantizes from that: near, not equal.
    const Tensor want = m->forward(x), got = plan.run(x);
    CHECK(sqnr_db(want, got) > 60);
  }
}

TEST_CASE("channels-last kernels: both transposes, the mixed residual join, the global average pool") {
  NoGradGuard no_grad;
  Generator gen(43);
  for (const Shape& shape : {Shape{3, 16, 7, 7}, Shape{2, 13, 5, 9}, Shape{1, 64, 14, 14}}) {  // ragged and whole 8×8s
    CAPTURE(shape);
    const int64_t N = shape[0], C = shape[1], P = shape[2] * shape[3];
    const Tensor x = randn(shape, {}, gen);                    // (N, C, H, W)
    const Tensor nhwc = x.permute({0, 2, 3, 1}).contiguous();  // the same values stored (N, H, W, C)
    Tensor to_last = full({N, shape[2], shape[3], C}, std::nan(""));
    cpu::to_channels_last(to_last.data_ptr<float>(), x.data_ptr<float>(), N, C, P);
    CHECK(to_last.to_vector<float>() == nhwc.to_vector<float>());
    Tensor to_first = full_like(x, std::nan(""));
    cpu::to_channels_first(to_first.data_ptr<float>(), nhwc.data_ptr<float>(), N, C, P);
    CHECK(to_first.to_vector<float>() == x.to_vector<float>());

    // relu(y + s) for a channels-last y and a channels-first s: relu(add) of the two, stored channels last.
    const Tensor s = randn(shape, {}, gen);
    Tensor y = nhwc.clone();
    cpu::add_relu_channels_last(y.data_ptr<float>(), s.data_ptr<float>(), N, C, P);
    CHECK(y.to_vector<float>() == relu(add(x, s)).permute({0, 2, 3, 1}).contiguous().to_vector<float>());
    // And a channels-first y with a channels-last s.
    Tensor y_first = x.clone();
    const Tensor s_last = s.permute({0, 2, 3, 1}).contiguous();
    cpu::add_relu_channels_first(y_first.data_ptr<float>(), s_last.data_ptr<float>(), N, C, P);
    CHECK(y_first.to_vector<float>() == relu(add(x, s)).to_vector<float>());

    // The global average pool of the channels-last values: adaptive_avg_pool2d's bits.
    Tensor pooled = full({N, C}, std::nan(""));
    cpu::global_avg_pool_channels_last(pooled.data_ptr<float>(), nhwc.data_ptr<float>(), N, C, P);
    CHECK(pooled.to_vector<float>() == adaptive_avg_pool2d(x, {1, 1}).to_vector<float>());
  }
}

TEST_CASE("compile: between int8 convolutions activations stay channels last, giving channels first's answer") {
  NoGradGuard no_grad;
  compress::QuantizeOptions with_convs;
  with_convs.convolutions = true;
  Generator init(44);
  const Conv2dOptions same{.padding = {1, 1}};
  // Every seam between the layouts, one block each (the comments: what the lowering must do).
  auto m = nn::make<nn::Sequential>(std::vector<nn::ModulePtr>{
      nn::make<nn::Conv2d>(8, 16, 3, same, false, init), nn::make<nn::BatchNorm2d>(16), nn::make<nn::ReLU>(),
      nn::make<nn::ResidualBlock>(16, 16, 1, init),  // 3 A: identity, every conv int8: channels last in and out
      nn::make<nn::ResidualBlock>(16, 32, 2, init),  // 4 P: the 1x1 shortcut over 16 stays f32: a GEMM over pixels
      nn::make<nn::ResidualBlock>(32, 32, 1, init),  // 5 B: conv2 made f32 below: channels-first sum, last shortcut
      nn::make<nn::ResidualBlock>(32, 48, 2, init),  // 6 D: channels-first input, f32 shortcut, channels-last sum
      nn::make<nn::ResidualBlock>(48, 48, 1, init),  // 7 C: bn2 replaced below: runs eagerly, its input converted
      nn::make<nn::ResidualBlock>(48, 64, 2, init),  // 8 E: int8 1x1 shortcut over 48, channels-last output
      nn::make<nn::AdaptiveAvgPool2d>(std::array<int64_t, 2>{1, 1}), nn::make<nn::Flatten>(),
      nn::make<nn::Linear>(64, 10, true, init)});
  randomize_batch_norms(*m, init);
  m->eval();
  compress::quantize_dynamic(*m, with_convs);
  m->replace("5.conv2", nn::make<nn::Conv2d>(32, 32, 3, same, false, init));
  m->replace("7.bn2", nn::make<nn::Dropout>(0.5));  // the identity in eval mode, but not a BatchNorm to fold
  m->eval();
  // Two int8 convolutions alone (no BatchNorm to fold): the plan must give eager's bits.
  auto pair = nn::make<nn::Sequential>(
      std::vector<nn::ModulePtr>{nn::make<nn::Conv2d>(8, 16, 3, same, true, init), nn::make<nn::ReLU>(),
                                 nn::make<nn::Conv2d>(16, 12, 3, Conv2dOptions{.stride = {2, 2}}, true, init)});
  pair->eval();
  compress::quantize_dynamic(*pair, with_convs);

  const bool pixels = cpu::gemm_packed_f32_fast();  // the f32 1x1 shortcut reads channels last on the AVX-512 GEMM only
  Generator gen(45);
  for (int64_t batch : {1, 5}) {
    CAPTURE(batch);
    const Tensor x = randn({batch, 8, 12, 12}, {}, gen), other = randn({batch, 8, 12, 12}, {}, gen);
    Plan last = compile(*m, x), first = compile(*m, x, {.channels_last = false});
    const std::string d = last.describe();
    INFO(d);
    CHECK(last.eager_steps() == 1);
    // Written channels last: the stem, A, P (D's input comes channels first from B),
    // D and E; the eager block's input converted; the pool reading E's as it is.
    CHECK(count(d, "] channels last") == (pixels ? 5 : 4));
    CHECK(count(d, "channels last -> channels first") == 1);
    CHECK(count(d, "global avg pool (reads channels last)") == 1);
    CHECK(count(d, "shortcut 1x1 conv+bn as a GEMM over pixels") == (pixels ? 1 : 0));
    CHECK(first.describe().find("channels last") == std::string::npos);
    for (const Tensor& input : {x, other}) {
      const Tensor want = first.run(input).clone(), got = last.run(input);
      // The same integers and sums, but the shortcut over pixels is another GEMM
      // than the convolution's, rounding its sums its own way.
      if (pixels)
        CHECK(sqnr_db(want, got) > 60);
      else
        CHECK(got.to_vector<float>() == want.to_vector<float>());
      CHECK(sqnr_db(m->forward(input), want) > 40);
    }

    const Tensor pair_x = randn({batch, 8, 12, 12}, {}, gen);
    Plan chained = compile(*pair, pair_x);
    CHECK(chained.describe().find("int8 conv 8->16 3x3 +relu [") != std::string::npos);
    CHECK(count(chained.describe(), "] channels last") == 1);  // the first conv's; the plan's output is channels first
    const Tensor out = chained.run(pair_x);
    CHECK(out.is_contiguous());
    CHECK(out.to_vector<float>() == pair->forward(pair_x).to_vector<float>());
  }
  // Odd and tiny images: ragged tiles and transposes, and blocks whose images end
  // 1x1 (where the two layouts are the same bytes, and a slot counts as channels first).
  for (const Shape& shape : {Shape{2, 8, 5, 7}, Shape{3, 8, 3, 3}}) {
    CAPTURE(shape);
    const Tensor x = randn(shape, {}, gen);
    Plan last = compile(*m, x), first = compile(*m, x, {.channels_last = false});
    CHECK(sqnr_db(first.run(x).clone(), last.run(x)) > 60);
  }

  // resnet-s quantized: the f32 stem computed channels last, every block channels last, the
  // first (f32) shortcut over pixels.
  auto resnet = model_with_statistics("resnet-s", 46);
  compress::quantize_dynamic(*resnet, with_convs);
  const Tensor tiny = randn({2, 1, 9, 7}, {}, gen);  // ends 3x2
  CHECK(sqnr_db(compile(*resnet, tiny, {.channels_last = false}).run(tiny).clone(), compile(*resnet, tiny).run(tiny)) >
        60);
  const Tensor x = randn({3, 1, 28, 28}, {}, gen);
  Plan last = compile(*resnet, x), first = compile(*resnet, x, {.channels_last = false});
  INFO(last.describe());
  // The stem (direct) and the three blocks; without AVX-512 blocks 2 and 3 only.
  CHECK(count(last.describe(), "] channels last") == (pixels ? 4 : 2));
  CHECK(sqnr_db(first.run(x).clone(), last.run(x)) > 60);
}

TEST_CASE("a plan reuses its buffers: every run writes the same output buffer, each with the right answer") {
  NoGradGuard no_grad;
  auto m = model_with_statistics("cnn", 41);
  Generator gen(42);
  const Tensor a = randn({2, 1, 28, 28}, {}, gen), b = randn({2, 1, 28, 28}, {}, gen);
  Plan plan = compile(*m, a);
  const Tensor ya = plan.run(a);
  const void* where = ya.raw_data();
  const std::vector<float> first = ya.to_vector<float>();
  const Tensor yb = plan.run(b);
  CHECK(yb.raw_data() == where);
  CHECK(max_relative_error(yb, m->forward(b)) < 1e-5);
  CHECK(first != yb.to_vector<float>());
  CHECK(plan.run(a).to_vector<float>() == first);  // the same buffer, a's answer again
  CHECK(yb.to_vector<float>() == first);           // (so keep a result with clone())
}

TEST_CASE("a layer the plan does not lower runs eagerly inside it, and describe() says so") {
  NoGradGuard no_grad;
  auto m = model_with_statistics("mlp", 51);
  compress::Pruner(*m).global_unstructured({"1.weight", "3.weight", "5.weight"}, compress::Amount::fraction(0.9));
  compress::to_sparse(*m, compress::SparseFormat::csr());
  Generator gen(52);
  const Tensor x = randn({4, 1, 28, 28}, {}, gen);
  Plan plan = compile(*m, x);
  CHECK(plan.eager_steps() == 3);
  CHECK(plan.describe().find("eager SparseLinear") != std::string::npos);
  CHECK(max_relative_error(plan.run(x), m->forward(x)) < 1e-5);
}

TEST_CASE("an f64 model's plan runs every layer eagerly, in f64") {
  NoGradGuard no_grad;
  auto m = model_with_statistics("cnn", 71);
  m->to(DType::f64);
  Generator gen(72);
  const Tensor x = randn({2, 1, 28, 28}, {}, gen).to(DType::f64);
  Plan plan = compile(*m, x);
  CHECK(plan.eager_steps() == 10);  // every layer
  CHECK(plan.run(x).dtype() == DType::f64);
  CHECK(plan.run(x).to_vector<double>() == m->forward(x).to_vector<double>());
}

TEST_CASE("compile and run refuse what they cannot do, naming it") {
  NoGradGuard no_grad;
  auto m = model_with_statistics("mlp", 61);
  Generator gen(62);
  Plan plan = compile(*m, randn({1, 1, 28, 28}, {}, gen));
  CHECK_THROWS_WITH_AS(plan.run(randn({2, 1, 28, 28}, {}, gen)),
                       doctest::Contains("built for input [1, 1, 28, 28] f32 on cpu, got [2, 1, 28, 28] f32"), Error);
  CHECK_THROWS_WITH_AS(plan.run(randn({1, 1, 28, 28}, {}, gen).to(DType::f64)),
                       doctest::Contains("compile the model again"), Error);
  m->train();
  CHECK_THROWS_WITH_AS(compile(*m, randn({1, 1, 28, 28}, {}, gen)), doctest::Contains("training mode"), Error);
  m->eval();
  CHECK_THROWS_WITH_AS(compile(*m, randn({1, 1, 14, 14}, {}, gen)), doctest::Contains("784"), Error);
}
