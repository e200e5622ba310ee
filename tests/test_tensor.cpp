// tests/test_tensor.cpp — tensor metadata, views sharing storage, factories,
// dtype conversion and printing.
#include <doctest/doctest.h>

#include "minidl.h"
#include "tensor_literals.h"

using namespace minidl;
using minidl::testing::f32;

TEST_CASE("shape, strides and contiguity") {
  Tensor t = zeros({2, 3, 4});
  CHECK(t.shape() == Shape{2, 3, 4});
  CHECK(t.strides() == Shape{12, 4, 1});
  CHECK(t.numel() == 24);
  CHECK(t.size(-1) == 4);
  CHECK(t.is_contiguous());
  CHECK(t.dtype() == DType::f32);
  CHECK(t.device() == Device("cpu"));
  CHECK(reinterpret_cast<uintptr_t>(t.raw_data()) % kCpuAlignment == 0);
  Tensor p = t.permute({2, 0, 1});
  CHECK(p.shape() == Shape{4, 2, 3});
  CHECK(p.strides() == Shape{1, 12, 4});
  CHECK_FALSE(p.is_contiguous());
}

TEST_CASE("channels last: a permuted (N, H, W, C) tensor, not a contiguous one or another order") {
  const Tensor nhwc = zeros({2, 5, 4, 3});  // (N, H, W, C)
  const Tensor cl = nhwc.permute({0, 3, 1, 2});
  CHECK(cl.shape() == Shape{2, 3, 5, 4});
  CHECK(cl.strides() == Shape{60, 1, 12, 3});
  CHECK(cl.is_channels_last());
  CHECK_FALSE(cl.is_contiguous());
  CHECK_FALSE(zeros({2, 3, 5, 4}).is_channels_last());
  CHECK_FALSE(nhwc.permute({0, 3, 2, 1}).is_channels_last());           // (N, C, W, H): W and H swapped
  CHECK_FALSE(zeros({3, 5, 4}).permute({2, 0, 1}).is_channels_last());  // 3-D
  CHECK_FALSE(cl.narrow(1, 0, 2).is_channels_last());                   // two of three channels: not dense
  // One channel, or 1×1 images: the two layouts are the same bytes, and both tests say so.
  const Tensor one = zeros({2, 5, 4, 1}).permute({0, 3, 1, 2});
  CHECK((one.is_channels_last() && one.is_contiguous()));
  const Tensor pixel = zeros({2, 3, 1, 1});
  CHECK((pixel.is_channels_last() && pixel.is_contiguous()));
}

TEST_CASE("a write through a view shows in its base") {
  Tensor base = arange(0, 12, 1, {.dtype = DType::f32}).reshape({3, 4});
  base.select(0, 1).fill_(-1);                 // row 1
  base.narrow(1, 3, 1).fill_(7);               // last column
  base.t().select(0, 0).narrow(0, 0, 1).fill_(100);  // base[0][0] through a transpose
  CHECK(base.to_vector<float>() == std::vector<float>{100, 1, 2, 7, -1, -1, -1, 7, 8, 9, 10, 7});
  Tensor strided = base.slice(1, 0, 4, 2);     // columns 0 and 2
  strided.copy_(f32({1, 2}, {2}));             // broadcast row into every row
  CHECK(base.to_vector<float>() == std::vector<float>{1, 1, 2, 7, 1, -1, 2, 7, 1, 9, 2, 7});
  // views share storage; clone does not
  CHECK(base.view({12}).storage() == base.storage());
  CHECK(base.clone().storage() != base.storage());
}

TEST_CASE("contiguous() of a permuted tensor reorders the data") {
  Tensor x = arange(0, 6, 1, {.dtype = DType::f32}).reshape({2, 3});
  Tensor t = x.t();
  CHECK_FALSE(t.is_contiguous());
  Tensor c = t.contiguous();
  CHECK(c.is_contiguous());
  CHECK(c.storage() != x.storage());
  CHECK(c.to_vector<float>() == std::vector<float>{0, 3, 1, 4, 2, 5});
  CHECK(x.contiguous().is_same(x));  // already contiguous: the same tensor
  // a 3-D permutation
  Tensor y = arange(0, 24, 1, {.dtype = DType::f32}).reshape({2, 3, 4}).permute({2, 0, 1}).contiguous();
  CHECK(y.shape() == Shape{4, 2, 3});
  CHECK(y.to_vector<float>()[0] == 0);
  CHECK(y.to_vector<float>()[1] == 4);   // y[0][0][1] = x[0][1][0]
  CHECK(y.to_vector<float>()[6] == 1);   // y[1][0][0] = x[0][0][1]
}

TEST_CASE("view, reshape, squeeze, unsqueeze, flatten, expand") {
  Tensor x = zeros({2, 1, 3});
  CHECK(x.view({3, 2}).shape() == Shape{3, 2});
  CHECK(x.view({-1}).shape() == Shape{6});
  CHECK(x.squeeze().shape() == Shape{2, 3});
  CHECK(x.squeeze(0).shape() == Shape{2, 1, 3});  // size 2: unchanged
  CHECK(x.unsqueeze(-1).shape() == Shape{2, 1, 3, 1});
  CHECK(zeros({2, 3, 4, 5}).flatten(1, 2).shape() == Shape{2, 12, 5});
  Tensor e = f32({1, 2, 3}, {3, 1}).expand({3, 4});
  CHECK(e.strides() == Shape{1, 0});
  CHECK(e.to_vector<float>() == std::vector<float>{1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3});
  // view of a transposed tensor is refused; reshape copies
  Tensor t = zeros({3, 4}).t();
  CHECK_THROWS_WITH_AS(t.view({12}), doctest::Contains("use reshape()"), Error);
  CHECK(t.reshape({12}).is_contiguous());
  // but a compatible view of non-contiguous data works without a copy
  Tensor s = zeros({4, 6}).narrow(1, 0, 4);
  CHECK(s.view({4, 2, 2}).storage() == s.storage());
  CHECK_THROWS_AS(x.view({4}), Error);
  CHECK_THROWS_AS(x.view({-1, -1}), Error);
}

TEST_CASE("factories") {
  CHECK(ones({2, 2}).to_vector<float>() == std::vector<float>{1, 1, 1, 1});
  CHECK(full({3}, 2.5, {.dtype = DType::f64}).to_vector<double>() == std::vector<double>{2.5, 2.5, 2.5});
  CHECK(arange(5).to_vector<int64_t>() == std::vector<int64_t>{0, 1, 2, 3, 4});
  CHECK(arange(1, 2, 0.25).dtype() == DType::f32);  // not whole numbers: f32, as torch.arange
  CHECK(arange(1, 2, 0.25).to_vector<float>() == std::vector<float>{1, 1.25, 1.5, 1.75});
  CHECK(randint(0, 3, {2}, {}).dtype() == DType::int64);
  CHECK(eye(2, 3).to_vector<float>() == std::vector<float>{1, 0, 0, 0, 1, 0});
  // seeded generators repeat; different seeds differ
  Generator a(42), b(42), c(43);
  Tensor ra = randn({100}, {}, a), rb = randn({100}, {}, b), rc = randn({100}, {}, c);
  CHECK(ra.to_vector<float>() == rb.to_vector<float>());
  CHECK(ra.to_vector<float>() != rc.to_vector<float>());
  // randn has mean ~0, var ~1; rand is in [0, 1); randint in [low, high)
  Generator g(5);
  Tensor n = randn({20000}, {.dtype = DType::f64}, g);
  CHECK(std::abs(mean(n).item()) < 0.03);
  CHECK(std::abs(var(n).item() - 1) < 0.05);
  Tensor u = rand({20000}, {}, g);
  CHECK(min(u).item() >= 0);
  CHECK(max(u).item() < 1);
  CHECK(std::abs(mean(u).item() - 0.5) < 0.01);
  Tensor r = randint(-3, 4, {5000}, {}, g);
  CHECK(min(r).item() == -3);
  CHECK(max(r).item() == 3);
  // from raw data
  double raw[] = {1.5, -2, 3};
  CHECK(from_data(raw, {3}).to_vector<double>() == std::vector<double>{1.5, -2, 3});
  CHECK(zeros_like(r).dtype() == DType::int64);
}

TEST_CASE("dtype conversions, bf16 rounding, item") {
  Tensor x = f32({1.7f, -2.5f, 0.0f, 300.0f}, {4});
  CHECK(x.to(DType::int64).to_vector<int64_t>() == std::vector<int64_t>{1, -2, 0, 300});  // truncation, like C
  // out of range saturates (a plain C++ cast would be undefined behaviour); NaN gives 0
  CHECK(x.to(DType::int8).to_vector<int8_t>() == std::vector<int8_t>{1, -2, 0, 127});
  CHECK(f32({-1e30f, std::nanf("")}, {2}).to(DType::int32).to_vector<int32_t>() == std::vector<int32_t>{INT32_MIN, 0});
  CHECK(x.to(DType::boolean).to_vector<bool>() == std::vector<bool>{true, true, false, true});
  CHECK(x.to(DType::f64).dtype() == DType::f64);
  // bf16 keeps 8 bits of mantissa: 1 + 2^-8 rounds to even (1.0), 1 + 3·2^-8 rounds up to 1 + 2^-6
  Tensor b = f32({1.0f + 1.0f / 256, 1.0f + 3.0f / 256, 3.140625f}, {3}).to(DType::bf16);
  CHECK(b.to_vector<float>() == std::vector<float>{1.0f, 1.0f + 1.0f / 64, 3.140625f});
  CHECK(bf16(std::nanf("")).bits != 0);
  CHECK(std::isnan(static_cast<float>(bf16(std::nanf("")))));
  // elementwise math runs on bf16 tensors too (computed in f32)
  CHECK(add(b, b).to_vector<float>()[2] == 6.28125f);
  CHECK(full({1, 1}, 3.5).item() == 3.5);
  CHECK(sum(arange(3)).item() == 3);
}

TEST_CASE("printing looks like PyTorch") {
  CHECK(f32({1, 2, 3, 4}, {2, 2}).str() == "tensor([[1., 2.],\n        [3., 4.]])");
  CHECK(f32({1.5f, -2.25f}, {2}).str() == "tensor([ 1.5000, -2.2500])");
  CHECK(arange(3).str() == "tensor([0, 1, 2])");
  CHECK(scalar_tensor(2.5, {.dtype = DType::f64}).str() == "tensor(2.5000, dtype=f64)");
  CHECK(ones({2}, {.requires_grad = true}).str() == "tensor([1., 1.], requires_grad=True)");
  Tensor y = mul(ones({2}, {.requires_grad = true}), 2.0);
  CHECK(y.str() == "tensor([2., 2.], grad_fn=<MulBackward>)");
  CHECK(gt(arange(3), 0.5).str() == "tensor([False,  True,  True])");
  CHECK(f32({1e-5f, 1.0f}, {2}).str() == "tensor([1.0000e-05, 1.0000e+00])");
  std::string big = zeros({2000}).str();
  CHECK(big.find("...") != std::string::npos);
  CHECK(big.size() < 100);
  CHECK(zeros({0, 3}).str() == "tensor([], size=[0, 3])");
  // a summarised tensor whose hidden middle rows are wider than its edges
  Tensor wide = zeros({2000, 2});
  wide.narrow(0, 1, 1).fill_(-12345.5);
  CHECK(wide.str().find("-12345.5000") != std::string::npos);
}

TEST_CASE("devices parse and print") {
  CHECK(Device("cuda:1").index == 1);
  CHECK(Device("cuda").is_cuda());
  CHECK(Device("cpu").str() == "cpu");
  CHECK(Device("cuda:3").str() == "cuda:3");
  CHECK_THROWS_WITH_AS(Device("gpu"), "device: cannot parse 'gpu': expected 'cpu', 'cuda' or 'cuda:N'", Error);
  CHECK_THROWS_AS(Device("cuda:x"), Error);
  CHECK_THROWS_AS(Device("cuda:-1"), Error);
}

TEST_CASE("a transposed copy (the tiled 8x8 path) matches element by element, ragged edges and strides too") {
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{37, 45}, {64, 64}, {8, 9}, {2, 200}, {129, 3}}) {
    const int64_t r = rows, c = cols;
    CAPTURE(r);
    CAPTURE(c);
    Tensor a = arange(0, static_cast<double>(r * c), 1, {.dtype = DType::f32}).view({c, r});
    Tensor t = a.t().contiguous();  // (r, c)
    const auto av = a.to_vector<float>(), tv = t.to_vector<float>();
    int bad = 0;
    for (int64_t i = 0; i < r; ++i)
      for (int64_t j = 0; j < c; ++j) bad += tv[i * c + j] != av[j * r + i];
    CHECK(bad == 0);
    // Into a row-padded destination, and for int32 (moved as bits).
    Tensor padded = zeros({r, c + 5}).narrow(1, 0, c);
    padded.copy_(a.t());
    CHECK(padded.contiguous().to_vector<float>() == tv);
    Tensor ai = a.to(DType::int32);
    CHECK(ai.t().contiguous().to(DType::f32).to_vector<float>() == tv);
  }
}
