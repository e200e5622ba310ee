// tests/test_cuda_main.cpp — main() of the CUDA tests (tests/test_cuda.cpp).
//
// Without a usable device (no GPU, no driver, or a build without CUDA) it
// prints why and exits 77, which ctest reports as "Skipped" — never a failure,
// never a silent pass. With one, it turns on the allocator's poisoning and runs
// the tests (doctest's implementation: tests/doctest_impl.cpp).
#include <doctest/doctest.h>

#include <cstdio>

#include "minidl.h"

int main(int argc, char** argv) {
  using namespace minidl;
  if (!cuda::is_available()) {
    std::printf("test_cuda: SKIPPED: %s (built with CUDA: %s)\n", cuda::unavailable_reason().c_str(),
                cuda::built_with_cuda() ? "yes" : "no");
    return 77;
  }
  cuda::set_poison(true);
  doctest::Context context(argc, argv);
  return context.run();
}
