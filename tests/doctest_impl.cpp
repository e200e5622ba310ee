// tests/doctest_impl.cpp — doctest's implementation, compiled once for both
// test binaries (minidl_tests and minidl_cuda_tests), each of which has its own
// main(): tests/test_main.cpp and tests/test_cuda_main.cpp.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
