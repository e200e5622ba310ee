// tests/test_main.cpp — main() of minidl_tests: doctest's, with its command line
// (ctest runs one test file per entry: --source-file=*test_x.cpp).
#include <doctest/doctest.h>

int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  return context.run();
}
