// tests/test_cuda.cpp — the CUDA skeleton: device query, allocator, copies, the fill kernel.
//
// Its own binary: without a usable device (no GPU, no driver, or a build without
// CUDA) it prints why and exits 77, which ctest reports as "Skipped" — never a
// failure, never a silent pass.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>

#include "minidl.h"

using namespace minidl;

int main(int argc, char** argv) {
  if (!cuda::is_available()) {
    std::printf("test_cuda: SKIPPED: %s (built with CUDA: %s)\n", cuda::unavailable_reason().c_str(),
                cuda::built_with_cuda() ? "yes" : "no");
    return 77;
  }
  doctest::Context context(argc, argv);
  return context.run();
}

TEST_CASE("device query") {
  CHECK(cuda::built_with_cuda());
  CHECK(cuda::device_count() >= 1);
  cuda::DeviceInfo info = cuda::device_info(0);
  MESSAGE("cuda:0 is " << info.name << ", sm_" << info.major << info.minor << ", " << info.multiprocessors
                       << " SMs, " << info.total_memory / (1 << 20) << " MiB");
  CHECK(info.major >= 5);
  CHECK(info.total_memory > 0);
  CHECK_THROWS_WITH_AS(cuda::device_info(cuda::device_count()), doctest::Contains("does not exist"), Error);
}

TEST_CASE("host -> device -> host round trip keeps every value and dtype") {
  Generator gen(1);
  Tensor x = randn({37, 129}, {.dtype = DType::f64}, gen);
  Tensor d = x.to(Device("cuda:0"));
  CHECK(d.device() == Device("cuda:0"));
  CHECK(d.to(kCPU).to_vector<double>() == x.to_vector<double>());
  Tensor i = randint(-1000, 1000, {1000}, {}, gen);
  CHECK(i.to(Device("cuda")).to(kCPU).to_vector<int64_t>() == i.to_vector<int64_t>());
  // a non-contiguous host tensor goes up contiguous; conversion happens on the host side
  Tensor t = x.t();
  CHECK(t.to(Device("cuda")).to(kCPU).to_vector<double>() == t.contiguous().to_vector<double>());
  CHECK(x.to(Device("cuda")).to(kCPU).to(DType::f32).to_vector<float>() == x.to(DType::f32).to_vector<float>());
  // device -> device
  Tensor d2 = empty({37, 129}, {.dtype = DType::f64, .device = Device("cuda")});
  d2.copy_(d);
  CHECK(d2.to(kCPU).to_vector<double>() == x.to_vector<double>());
}

TEST_CASE("the fill kernel, also through a strided view") {
  for (DType t : kAllDTypes) {
    CAPTURE(t);
    Tensor d = full({5, 7}, 3, {.dtype = t, .device = Device("cuda")});
    CHECK(d.to(kCPU).to(DType::f64).to_vector<double>() == std::vector<double>(35, 3.0));
  }
  Tensor d = zeros({4, 6}, {.device = Device("cuda")});
  d.narrow(1, 2, 3).fill_(1.5);  // columns 2..4 of every row
  std::vector<float> host = d.to(kCPU).to_vector<float>();
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 6; ++c) CHECK(host[r * 6 + c] == (c >= 2 && c < 5 ? 1.5f : 0.0f));
  cuda::synchronize(0);
}

TEST_CASE("ops without a CUDA kernel yet, and mixed devices, are clear errors") {
  Tensor d = ones({3}, {.device = Device("cuda")});
  CHECK_THROWS_WITH_AS(exp(d), doctest::Contains("exp: no CUDA kernel for this op yet"), Error);
  CHECK_THROWS_WITH_AS(add(d, ones({3})), "add: expected all tensors on the same device, got cuda:0 and cpu", Error);
}
