// examples/fit_synthetic.cpp — the demo: fit a small MLP to three interleaved
// spirals with minidl's autograd, and watch the loss fall.
//
// Everything a training loop needs is here in miniature: parameters that require
// grad, a forward pass built from ops, cross_entropy, backward(), and an SGD
// step done under NoGradGuard. This is what nn::Linear, nn::Sequential and
// nn::SGD package (nn/layers.h, nn/optim.h; examples/consumer/main.cpp uses
// them): here the pieces are written out so you can see what they are made of.
//
//   ./build/default/examples/fit_synthetic [steps]
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "minidl.h"

using namespace minidl;

namespace {

// points (3 * n, 2), labels (3 * n) int64: class k is a noisy spiral arm rotated by 2πk/3.
void make_spirals(int64_t n, Generator& gen, Tensor& points, Tensor& labels) {
  std::vector<float> xy;
  std::vector<int64_t> y;
  for (int64_t k = 0; k < 3; ++k)
    for (int64_t i = 0; i < n; ++i) {
      double r = static_cast<double>(i) / n;
      double theta = 10.0 * r + 2.0 * M_PI * k / 3.0 + 0.15 * gen.normal();
      xy.push_back(static_cast<float>(r * std::cos(theta)));
      xy.push_back(static_cast<float>(r * std::sin(theta)));
      y.push_back(k);
    }
  points = from_vector(xy, {3 * n, 2});
  labels = from_vector(y, {3 * n});
}

// A linear layer's parameters with PyTorch's default init: U(-1/√in, 1/√in).
struct Linear {
  Tensor weight, bias;
  Linear(int64_t in, int64_t out, Generator& gen) {
    double bound = 1.0 / std::sqrt(static_cast<double>(in));
    weight = ((rand({out, in}, {}, gen) * 2.0 - 1.0) * bound).detach().requires_grad_(true);
    bias = ((rand({out}, {}, gen) * 2.0 - 1.0) * bound).detach().requires_grad_(true);
  }
  Tensor operator()(const Tensor& x) const { return linear(x, weight, bias); }
};

}  // namespace

int main(int argc, char** argv) {
  char* end = nullptr;
  const long steps = argc > 1 ? std::strtol(argv[1], &end, 10) : 1500;
  if (argc > 1 && (end == argv[1] || *end != '\0' || steps < 0 || steps > 1000000)) {
    std::fprintf(stderr, "fit_synthetic: steps must be a whole number in [0, 1000000], got '%s'\n", argv[1]);
    return 2;
  }
  Generator gen(0);
  Tensor points, labels;
  make_spirals(200, gen, points, labels);

  // 2 -> 64 -> 64 -> 3, ReLU between.
  Linear l1(2, 64, gen), l2(64, 64, gen), l3(64, 3, gen);
  std::vector<Tensor> params = {l1.weight, l1.bias, l2.weight, l2.bias, l3.weight, l3.bias};
  std::vector<Tensor> velocity;
  for (const Tensor& p : params) velocity.push_back(zeros_like(p));
  const double lr = 0.2, momentum = 0.9;

  std::printf("minidl demo: a 2-64-64-3 MLP on 600 points of three spirals, full-batch SGD with momentum\n");
  std::printf("%6s  %10s  %9s\n", "step", "loss", "accuracy");
  for (int step = 0; step <= steps; ++step) {
    Tensor logits = l3(relu(l2(relu(l1(points)))));
    Tensor loss = cross_entropy(logits, labels);
    for (const Tensor& p : params) p.set_grad(Tensor());
    loss.backward();
    {
      NoGradGuard no_grad;
      for (size_t i = 0; i < params.size(); ++i) {
        velocity[i] = velocity[i] * momentum + params[i].grad();
        Tensor(params[i]).copy_(params[i] - velocity[i] * lr);
      }
    }
    if (step % 100 == 0 || step == steps) {
      NoGradGuard no_grad;
      double accuracy = mean(eq(argmax(logits, 1), labels).to(DType::f32)).item();
      std::printf("%6d  %10.4f  %8.1f%%\n", step, loss.item(), 100 * accuracy);
    }
  }
  return 0;
}
