// examples/consumer/main.cpp — builds a small classifier from minidl's layers,
// fits it to a synthetic two-class problem, saves it, loads it back without
// naming its architecture, and checks both give the same predictions.
// Built against the installed package (find_package(minidl)); exits non-zero on failure.
#include <cstdio>
#include <filesystem>

#include "minidl.h"

using namespace minidl;
using namespace minidl::nn;

int main() {
  Generator gen(7);
  // Points in the plane, labelled by which side of the circle of radius 1 they lie.
  Tensor x = randn({256, 2}, {}, gen);
  Tensor labels = gt(sum(mul(x, x), {1}), scalar_tensor(1.0)).to(DType::int64);

  auto model = make<Sequential>();
  model->add(make<Linear>(2, 32, true, gen)).add(make<ReLU>()).add(make<Linear>(32, 2, true, gen));
  AdamW opt(model->named_parameters(), {.lr = 0.03});
  double first = 0, last = 0;
  for (int step = 0; step < 200; ++step) {
    Tensor loss = cross_entropy(model->forward(x), labels);
    if (step == 0) first = loss.item();
    last = loss.item();
    opt.zero_grad();
    loss.backward();
    opt.step();
  }
  NoGradGuard no_grad;
  const double accuracy = mean(eq(argmax(model->forward(x), 1), labels).to(DType::f32)).item();
  std::printf("loss %.4f -> %.4f, training accuracy %.1f%%\n", first, last, 100 * accuracy);

  const std::string path = (std::filesystem::temp_directory_path() / "minidl_consumer.safetensors").string();
  save_safetensors(path, model->state_dict(), {{"model", model->spec().dump()}});
  ModulePtr loaded = load_model(path);
  const bool same = loaded->forward(x).to_vector<float>() == model->forward(x).to_vector<float>();
  std::filesystem::remove(path);
  std::printf("reloaded from its own spec: %s\n", same ? "same predictions" : "DIFFERENT predictions");
  return last < first && accuracy > 0.9 && same ? 0 : 1;
}
