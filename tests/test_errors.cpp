// tests/test_errors.cpp — bad input gets a clear minidl::Error naming the op
// and what was wrong: never a crash, an abort or a silent wrong answer.
#include <doctest/doctest.h>

#include <limits>

#include "core/parse.h"
#include "minidl.h"

using namespace minidl;

TEST_CASE("matmul: inner dimensions") {
  CHECK_THROWS_WITH_AS(matmul(zeros({32, 784}), zeros({512, 256})),
                       "matmul: cannot multiply [32, 784] by [512, 256]: inner dimensions 784 and 512 differ", Error);
  CHECK_THROWS_WITH_AS(matmul(zeros({2, 3, 4}), zeros({3, 5, 6})), doctest::Contains("inner dimensions 4 and 5"), Error);
  CHECK_THROWS_WITH_AS(matmul(zeros({2, 2, 3}), zeros({3, 3, 1})),
                       doctest::Contains("shapes [2] and [3] cannot be broadcast"), Error);
  CHECK_THROWS_WITH_AS(matmul(zeros({2, 2}), zeros({2, 2}, {.dtype = DType::f64})), "matmul: dtypes differ: f32 and f64",
                       Error);
  CHECK_THROWS_WITH_AS(matmul(zeros({2, 2}, {.dtype = DType::int64}), zeros({2, 2}, {.dtype = DType::int64})),
                       "matmul: expected f32 or f64 tensors, got int64", Error);
  CHECK_THROWS_WITH_AS(linear(zeros({8, 784}), zeros({10, 100})),
                       "linear: input [8, 784] has 784 features but weight [10, 100] expects 100", Error);
}

TEST_CASE("conv2d: channels, groups and sizes") {
  CHECK_THROWS_WITH_AS(conv2d(zeros({1, 3, 8, 8}), zeros({16, 1, 3, 3})),
                       "conv2d: input [1, 3, 8, 8] has 3 channels but weight [16, 1, 3, 3] with groups=1 expects 1", Error);
  CHECK_THROWS_WITH_AS(conv2d(zeros({1, 4, 8, 8}), zeros({3, 2, 3, 3}), Tensor(), {.groups = 2}),
                       "conv2d: out channels 3 (weight [3, 2, 3, 3]) are not divisible by groups=2", Error);
  CHECK_THROWS_WITH_AS(conv2d(zeros({1, 1, 2, 2}), zeros({1, 1, 3, 3})),
                       "conv2d: input [1, 1, 2, 2] (padded to 2x2) is smaller than the dilated kernel 3x3", Error);
  CHECK_THROWS_WITH_AS(conv2d(zeros({3, 8, 8}), zeros({1, 3, 3, 3})),
                       "conv2d: input must be 4-D (N, C, H, W), got [3, 8, 8]", Error);
  CHECK_THROWS_WITH_AS(conv2d(zeros({1, 1, 4, 4}), zeros({2, 1, 3, 3}), zeros({3})),
                       "conv2d: bias [3] does not match 2 out channels", Error);
  CHECK_THROWS_AS(conv2d(zeros({1, 1, 4, 4}), zeros({1, 1, 3, 3}), Tensor(), {.stride = {0, 1}}), Error);
  CHECK_THROWS_AS(max_pool2d(zeros({1, 1, 2, 2}), {3, 3}), Error);
}

TEST_CASE("broadcasting add") {
  CHECK_THROWS_WITH_AS(add(zeros({2, 3}), zeros({4})),
                       "add: shapes [2, 3] and [4] cannot be broadcast: size 3 vs 4 at dim 1 (counting from the left of "
                       "the broadcast shape)",
                       Error);
  CHECK_THROWS_WITH_AS(zeros({3}).expand({2, 4}), doctest::Contains("expand: the expanded size 4 must match"), Error);
  CHECK_THROWS_AS(where(gt(zeros({2}), 0.0), zeros({3}), zeros({3})), Error);
  CHECK_THROWS_WITH_AS(where(zeros({2}), zeros({2}), zeros({2})), "where: condition must be bool, got f32", Error);
}

TEST_CASE("cross_entropy and nll_loss: targets") {
  Tensor logits = zeros({4, 10});
  CHECK_THROWS_WITH_AS(cross_entropy(logits, from_vector<int64_t>({1, 2, 10, 3}, {4})),
                       "cross_entropy: target 10 (at position 2) is out of range for 10 classes", Error);
  CHECK_THROWS_WITH_AS(cross_entropy(logits, from_vector<int64_t>({-1, 0, 0, 0}, {4})),
                       "cross_entropy: target -1 (at position 0) is out of range for 10 classes", Error);
  CHECK_THROWS_WITH_AS(cross_entropy(logits, from_vector<int64_t>({1, 2, 3}, {3})),
                       "cross_entropy: target shape [3] does not match input [4, 10] (expected [4])", Error);
  CHECK_THROWS_WITH_AS(cross_entropy(logits, zeros({4})), "cross_entropy: target must hold int64 class indices, got f32",
                       Error);
  CHECK_THROWS_WITH_AS(nll_loss(logits, from_vector<int64_t>({1, 2, 3, 11}, {4})),
                       "nll_loss: target 11 (at position 3) is out of range for 10 classes", Error);
  CHECK_THROWS_AS(cross_entropy(logits, from_vector<int64_t>({1, 2, 3, 4}, {4}), {.label_smoothing = 1.5}), Error);
  CHECK_THROWS_WITH_AS(cross_entropy(logits, from_vector<int64_t>({1, 2, 3, 4}, {4}), {.weight = ones({3})}),
                       "cross_entropy: weight [3] must have one entry per class (10)", Error);
  CHECK_THROWS_WITH_AS(kl_div(zeros({2, 3}), zeros({3, 2})), "kl_div: input [2, 3] and target [3, 2] must have the same shape",
                       Error);
  CHECK_THROWS_WITH_AS(kl_div_logits(zeros({2, 3}), zeros({2, 4})),
                       "kl_div_logits: student logits [2, 3] and teacher logits [2, 4] must have the same shape", Error);
  CHECK_THROWS_WITH_AS(kl_div_logits(zeros({6}), zeros({6})), "kl_div_logits: expected (N, C) student logits, got [6]",
                       Error);
  CHECK_THROWS_WITH_AS(kl_div_logits(zeros({2, 3}), zeros({2, 3}), 0.0), "kl_div_logits: temperature must be > 0, got 0",
                       Error);
  CHECK_THROWS_AS(mse_loss(zeros({4, 1}), zeros({4})), Error);
}

TEST_CASE("backward twice") {
  Tensor x = ones({3}, {.requires_grad = true});
  Tensor y = sum(mul(x, x));
  y.backward();
  CHECK_THROWS_WITH_AS(y.backward(),
                       "backward: trying to backward through the graph a second time (SumBackward was already freed); "
                       "pass retain_graph=true to the first backward() if you need to",
                       Error);
}

TEST_CASE("views, indexing and reductions") {
  Tensor x = zeros({2, 3});
  CHECK_THROWS_WITH_AS(x.select(1, 3), "select: index 3 is out of range for dimension 1 of size 3 (shape [2, 3])", Error);
  CHECK_THROWS_WITH_AS(x.narrow(0, 1, 2),
                       "narrow: start 1 and length 2 are out of range for dimension 0 of size 2 (shape [2, 3])", Error);
  // start + length would overflow int64 here (and once passed as a view of 2 elements).
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max(), kMin = std::numeric_limits<int64_t>::min();
  CHECK_THROWS_WITH_AS(x.narrow(1, 1, kMax),
                       doctest::Contains("narrow: start 1 and length 9223372036854775807 are out"), Error);
  CHECK_THROWS_AS(x.narrow(1, 4, 0), Error);
  CHECK(x.narrow(1, 3, 0).shape() == Shape{2, 0});
  // slice clamps its ends as Python does, and a step of any length stays in range.
  Tensor r = arange(0, 5, 1, {.dtype = DType::f32}).reshape({1, 5});
  CHECK(r.slice(1, kMin, kMax).to_vector<float>() == std::vector<float>{0, 1, 2, 3, 4});
  CHECK(r.slice(1, 1, kMax, kMax).to_vector<float>() == std::vector<float>{1});
  CHECK(r.slice(1, 0, 5, 2).to_vector<float>() == std::vector<float>{0, 2, 4});
  CHECK(r.slice(1, 0, 5, 4).to_vector<float>() == std::vector<float>{0, 4});
  CHECK(r.slice(1, 3, 1).shape() == Shape{1, 0});
  CHECK_THROWS_WITH_AS(x.size(2), "size: dimension 2 out of range for a 2-d tensor (expected [-2, 1])", Error);
  CHECK_THROWS_WITH_AS(x.permute({0, 0}), "permute: dimension 0 repeats in [0, 0]", Error);
  CHECK_THROWS_WITH_AS(x.reshape({4, 2}), "reshape: shape [4, 2] is invalid for input of shape [2, 3] (6 elements)",
                       Error);
  CHECK_THROWS_WITH_AS(index_select(x, 1, from_vector<int64_t>({0, 5}, {2})),
                       "index_select: index 5 (at position 1) is out of range for size 3", Error);
  CHECK_THROWS_WITH_AS(gather(x, 1, from_vector<int64_t>({0, 1}, {2})),
                       "gather: index [2] and input [2, 3] must have the same number of dims", Error);
  CHECK_THROWS_WITH_AS(cat({x, zeros({2, 2})}, 0),
                       "cat: tensor 1 has shape [2, 2] but tensor 0 has shape [2, 3]; sizes must match except in dim 0",
                       Error);
  CHECK_THROWS_WITH_AS(max(zeros({2, 0}), 1), doctest::Contains("cannot reduce over a zero-size dimension"), Error);
  CHECK_THROWS_WITH_AS(ones({2}).item(), "item: a tensor with 2 elements (shape [2]) cannot be converted to a scalar",
                       Error);
  CHECK_THROWS_WITH_AS(mean(arange(3)), doctest::Contains("mean: expected a floating-point tensor, got int64"), Error);
  CHECK_THROWS_WITH_AS(ones({2}).data_ptr<double>(), "data_ptr: requested f64 but tensor is f32", Error);
  CHECK_THROWS_AS(zeros({-1}), Error);
  CHECK_THROWS_WITH_AS(zeros({1LL << 40, 1LL << 40}), "empty: shape [1099511627776, 1099511627776] is too large to allocate",
                       Error);
  CHECK_THROWS_WITH_AS(scalar_tensor(1).size(0), "size: dimension 0 requested of a 0-d tensor, which has none", Error);
  CHECK_THROWS_AS(scalar_tensor(1).select(0, 0), Error);
  CHECK_THROWS_AS(scalar_tensor(1).narrow(0, 0, 1), Error);
  CHECK_THROWS_AS(ones({1}).expand({-2}), Error);
  CHECK_THROWS_AS(arange(0, 1e300, 1), Error);
  CHECK_THROWS_AS(zeros({1, 2, 1, 1, 1, 1, 1, 1, 1}) + 1.0, Error);  // 9 dims: more than kernels take
  CHECK_THROWS_AS(arange(0, 1, 0), Error);
  CHECK_THROWS_WITH_AS(zeros({2}, {.dtype = DType::int64}).requires_grad_(),
                       "requires_grad_: only floating-point tensors can require grad, got int64", Error);
  CHECK_THROWS_AS(batch_norm(zeros({1, 3}), zeros({3}), ones({3}), Tensor(), Tensor(), true), Error);
  CHECK_THROWS_AS(dropout(ones({3}), 1.5, true), Error);
}

TEST_CASE("CUDA requests without a device say why") {
  if (cuda::is_available()) return;  // covered by the CUDA tests on a GPU machine
  CHECK_FALSE(cuda::unavailable_reason().empty());
  CHECK_THROWS_WITH_AS(zeros({2}, {.device = Device("cuda")}), doctest::Contains(cuda::unavailable_reason().c_str()), Error);
  CHECK_THROWS_WITH_AS(ones({2}).to(Device("cuda:0")), doctest::Contains(cuda::unavailable_reason().c_str()), Error);
}

TEST_CASE("the number readers take the whole text or nothing (core/parse.h)") {
  CHECK(parse_int("42") == 42);
  CHECK(parse_int("+3") == 3);
  CHECK(parse_int("-9223372036854775808") == std::numeric_limits<int64_t>::min());
  for (const char* bad : {"", "+", "-", "4.0", " 4", "4 ", "0x10", "9223372036854775808", "+-1", "--4", "1e3"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_int(bad).has_value());
  }
  CHECK(parse_real("0.5") == 0.5);
  CHECK(parse_real("-1e-3") == -1e-3);
  CHECK(parse_real("+2") == 2.0);
  CHECK(parse_real(".5") == 0.5);
  for (const char* bad : {"", "inf", "-inf", "nan", "1e999", "1,5", "0x1p3", " 1", "1 ", "+-1", "1.5.2"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_real(bad).has_value());
  }
  CHECK(parse_dims("128x784x512") == std::vector<int64_t>{128, 784, 512});
  CHECK(parse_dims("7") == std::vector<int64_t>{7});
  for (const char* bad :
       {"", "x", "1x", "x1", "1xx2", "0x4", "4x0", "+4x4", "4x-4", "4X4", "4 x4", "1x99999999999999999999"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_dims(bad).has_value());
  }
}
