#include "nn/models.h"

#include "core/check.h"

namespace minidl::nn {

const std::vector<std::string>& model_names() {
  static const std::vector<std::string> names = {"mlp", "mlp-small", "cnn", "resnet-s"};
  return names;
}

std::shared_ptr<Sequential> build_model(const std::string& name, Generator& gen) {
  auto m = make<Sequential>();
  if (name == "mlp") {
    // 784-512-256-10
    m->add(make<Flatten>()).add(make<Linear>(784, 512, true, gen)).add(make<ReLU>());
    m->add(make<Linear>(512, 256, true, gen)).add(make<ReLU>()).add(make<Linear>(256, 10, true, gen));
  } else if (name == "mlp-small") {
    // 784-64-10: the usual distillation student
    m->add(make<Flatten>()).add(make<Linear>(784, 64, true, gen)).add(make<ReLU>());
    m->add(make<Linear>(64, 10, true, gen));
  } else if (name == "cnn") {
    // conv 1->32 3x3 pad 1, relu, pool 2, conv 32->64 3x3 pad 1, relu, pool 2, 3136 -> 128 -> 10
    Conv2dOptions same{.padding = {1, 1}};
    m->add(make<Conv2d>(1, 32, 3, same, true, gen)).add(make<ReLU>()).add(make<MaxPool2d>(2));
    m->add(make<Conv2d>(32, 64, 3, same, true, gen)).add(make<ReLU>()).add(make<MaxPool2d>(2));
    m->add(make<Flatten>()).add(make<Linear>(3136, 128, true, gen)).add(make<ReLU>());
    m->add(make<Linear>(128, 10, true, gen));
  } else if (name == "resnet-s") {
    // A small ResNet: a 3x3 stem, three residual stages (28x28x32, 14x14x64, 7x7x128),
    // global average pooling and a linear head. Batch norm throughout.
    m->add(make<Conv2d>(1, 32, 3, Conv2dOptions{.padding = {1, 1}}, false, gen)).add(make<BatchNorm2d>(32));
    m->add(make<ReLU>());
    m->add(make<ResidualBlock>(32, 32, 1, gen));
    m->add(make<ResidualBlock>(32, 64, 2, gen));
    m->add(make<ResidualBlock>(64, 128, 2, gen));
    m->add(make<AdaptiveAvgPool2d>(std::array<int64_t, 2>{1, 1})).add(make<Flatten>());
    m->add(make<Linear>(128, 10, true, gen));
  } else {
    fail("unknown model '{}' (known: mlp, mlp-small, cnn, resnet-s)", name);
  }
  return m;
}

}  // namespace minidl::nn
