#include "ops/quant.h"

#include <cmath>
#include <limits>
#include <vector>

#include "core/autograd.h"
#include "core/check.h"
#include "cuda/kernels.h"
#include "ops/cpu/kernels.h"
#include "ops/elementwise.h"
#include "ops/factory.h"
#include "ops/reduce.h"

namespace minidl {

QuantizedWeight quantize_weight_int8(const Tensor& w_in, bool per_channel) {
  MINIDL_CHECK(w_in.dim() >= 2, "quantize_weight_int8: weight must be (out, in) or (out, C, kh, kw), got {}",
               w_in.shape());
  MINIDL_CHECK(w_in.dtype() == DType::f32 && w_in.device().is_cpu(),
               "quantize_weight_int8: expected an f32 CPU weight, got {} on {}", w_in.dtype(), w_in.device());
  NoGradGuard no_grad;
  const Tensor w = w_in.contiguous();
  const int64_t out = w.size(0), in = w.numel() / std::max<int64_t>(out, 1);  // a conv's C·kh·kw per channel
  const float* src = w.data_ptr<float>();
  Tensor q = empty(w.shape(), {.dtype = DType::int8});
  Tensor scale = empty({per_channel ? out : 1});
  int8_t* dst = q.data_ptr<int8_t>();
  float* s = scale.data_ptr<float>();
  auto range = [&](int64_t r0, int64_t r1) {
    float m = 0;
    for (int64_t i = r0 * in; i < r1 * in; ++i) {
      MINIDL_CHECK(std::isfinite(src[i]), "quantize_weight_int8: weight {} holds a non-finite value at row {}",
                   w.shape(), i / in);
      m = std::max(m, std::abs(src[i]));
    }
    return m > 0 ? m / 127.0f : 1.0f;
  };
  for (int64_t r = 0; r < (per_channel ? out : 1); ++r) s[r] = per_channel ? range(r, r + 1) : range(0, out);
  for (int64_t r = 0; r < out; ++r) {
    const float inv = 1.0f / s[per_channel ? r : 0];
    for (int64_t k = 0; k < in; ++k)
      dst[r * in + k] = static_cast<int8_t>(std::clamp(std::nearbyint(src[r * in + k] * inv), -127.0f, 127.0f));
  }
  return {q, scale};
}

Tensor dequantize_weight(const Tensor& values, const Tensor& scale) {
  NoGradGuard no_grad;
  Tensor v = values.to(DType::f32);
  Shape per_row(static_cast<size_t>(values.dim()), 1);  // (out, 1, ...) or (1, 1, ...): one scale per row
  per_row[0] = scale.numel() == 1 ? 1 : -1;
  return mul(v, scale.reshape(per_row));
}

namespace {
// The two layouts of an int8 weight: the CPU's VNNI panels, the GPU's padded rows.
enum class Int8Layout { cpu_panels, gpu_rows };

// Checks the weight and lays it out, on the host.
Int8Weight pack_on_host(const Tensor& values_in, const Tensor& scale_in, Int8Layout layout) {
  MINIDL_CHECK(values_in.defined() && values_in.dim() == 2 && values_in.dtype() == DType::int8,
               "int8 weight: expected int8 (out, in), got {} {}", values_in.defined() ? values_in.dtype() : DType::f32,
               values_in.defined() ? values_in.shape() : Shape{});
  MINIDL_CHECK(scale_in.defined() && scale_in.device() == values_in.device(),
               "int8 weight: values on {} but scale {}", values_in.device(),
               scale_in.defined() ? fmt::format("on {}", scale_in.device()) : std::string("undefined"));
  const int64_t out = values_in.size(0), in = values_in.size(1);
  MINIDL_CHECK(
      scale_in.dtype() == DType::f32 && scale_in.dim() == 1 && (scale_in.size(0) == out || scale_in.size(0) == 1),
      "int8 weight {}: scale must be f32 ({}) per channel or (1) per tensor, got {} {}", values_in.shape(), out,
      scale_in.dtype(), scale_in.shape());
  // Checked and laid out on the host (once per layer); pack_int8_weight moves it to the weight's device.
  const Tensor values = values_in.to(kCPU).contiguous(), scale_c = scale_in.to(kCPU).contiguous();
  const int8_t* v = values.data_ptr<int8_t>();
  for (int64_t i = 0; i < values.numel(); ++i)
    MINIDL_CHECK(v[i] != -128, "int8 weight {}: value -128 at row {}, column {}; symmetric weights lie in [-127, 127]",
                 values.shape(), i / in, i % in);
  Int8Weight w;
  w.out_features = out, w.in_features = in;
  w.scale = empty({out});
  const float* s = scale_c.data_ptr<float>();
  for (int64_t r = 0; r < out; ++r) {
    const float x = s[scale_c.numel() == 1 ? 0 : r];
    MINIDL_CHECK(std::isfinite(x) && x > 0, "int8 weight {}: scale {} of row {} is not a finite positive number",
                 values.shape(), x, r);
    w.scale.data_ptr<float>()[r] = x;
  }
  w.row_sums = empty({out}, {.dtype = DType::int32});
  if (layout == Int8Layout::gpu_rows) {
    // The GPU kernel's layout (cuda/qgemm_kernels.cuh): rows padded with zeros
    // to a multiple of 4 bytes, read a word of 4 values at a time.
    const int64_t Kp = cpu::qgemm_padded_k(in);
    Tensor rows = zeros({out, Kp}, {.dtype = DType::int8});
    int8_t* r = rows.data_ptr<int8_t>();
    for (int64_t n = 0; n < out; ++n) {
      int32_t sum = 0;
      for (int64_t k = 0; k < in; ++k) sum += r[n * Kp + k] = v[n * in + k];
      w.row_sums.data_ptr<int32_t>()[n] = sum;
    }
    w.packed = rows;
    return w;
  }
  w.packed = empty({cpu::qgemm_packed_bytes(out, in)}, {.dtype = DType::int8});
  cpu::qgemm_pack_weight(v, out, in, w.packed.data_ptr<int8_t>(), w.row_sums.data_ptr<int32_t>());
  return w;
}
}  // namespace

Int8Weight pack_int8_weight(const Tensor& values, const Tensor& scale) {
  if (!values.defined() || values.device().is_cpu()) return pack_on_host(values, scale, Int8Layout::cpu_panels);
  Int8Weight w = pack_on_host(values, scale, Int8Layout::gpu_rows);
  const Device device = values.device();
  w.packed = w.packed.to(device), w.row_sums = w.row_sums.to(device), w.scale = w.scale.to(device);
  return w;
}

Int8Weight pack_int8_weight_rows(const Tensor& values, const Tensor& scale) {
  MINIDL_CHECK(values.defined() && values.device().is_cpu(), "pack_int8_weight_rows: expects the values on the CPU");
  return pack_on_host(values, scale, Int8Layout::gpu_rows);
}

Tensor quantized_linear(const Tensor& x, const Int8Weight& w, const Tensor& bias_in, Activation act) {
  MINIDL_CHECK(w.defined(), "quantized_linear: the int8 weight is not packed");
  MINIDL_CHECK(x.dim() >= 1 && x.size(-1) == w.in_features,
               "quantized_linear: input {} has {} features but the int8 weight ({}, {}) expects {}", x.shape(),
               x.dim() >= 1 ? x.size(-1) : 0, w.out_features, w.in_features, w.in_features);
  MINIDL_CHECK(x.device() == w.device(), "quantized_linear: the input is on {} but the int8 weight on {}", x.device(),
               w.device());
  MINIDL_CHECK(x.dtype() == DType::f32, "quantized_linear: expected an f32 input, got {}", x.dtype());
  MINIDL_CHECK(!(x.requires_grad() && grad_mode_enabled()),
               "quantized_linear: int8 layers are for inference and have no gradient (run under NoGradGuard)");
  if (bias_in.defined()) {
    MINIDL_CHECK(bias_in.dim() == 1 && bias_in.size(0) == w.out_features && bias_in.dtype() == DType::f32,
                 "quantized_linear: bias {} {} does not match the weight (expected f32 [{}])", bias_in.dtype(),
                 bias_in.shape(), w.out_features);
    MINIDL_CHECK(bias_in.device() == x.device(), "quantized_linear: the input is on {} but the bias on {}", x.device(),
                 bias_in.device());
  }
  const int64_t K = w.in_features, N = w.out_features;
  const Tensor x2 = x.reshape({-1, K}).contiguous();
  const Tensor bias = bias_in.defined() ? bias_in.contiguous() : Tensor();
  const int64_t M = x2.size(0);
  Tensor y = empty({M, N}, {.dtype = DType::f32, .device = x.device()});
  Shape out_shape = x.shape();
  out_shape.back() = N;

  if (x.device().is_cuda()) {  // the same layer in three launches (cuda/qgemm.cu); a NaN input gives NaN outputs
    cuda::quantized_linear({.x = x2.data_ptr<float>(),
                            .M = M,
                            .K = K,
                            .ldx = K,
                            .w = w.packed.data_ptr<int8_t>(),
                            .w_row_sums = w.row_sums.data_ptr<int32_t>(),
                            .w_scale = w.scale.data_ptr<float>(),
                            .N = N,
                            .bias = bias.defined() ? bias.data_ptr<float>() : nullptr,
                            .relu = act == Activation::relu,
                            .y = y.data_ptr<float>(),
                            .ldy = N});
    return y.reshape(out_shape);
  }

  // The quantized activations: one buffer per thread, grown on demand.
  thread_local std::vector<uint8_t> xq;
  const int64_t Kp = cpu::qgemm_padded_k(K);
  if (xq.size() < static_cast<size_t>(M * Kp)) xq.resize(static_cast<size_t>(M * Kp));
  const float* xp = x2.data_ptr<float>();
  const cpu::QuantParams q = cpu::choose_quant_params(xp, M, K, K);
  cpu::quantize_rows_u8(xp, M, K, K, q, xq.data(), Kp);

  cpu::QGemmArgs a;
  a.M = M, a.N = N, a.K = K;
  a.x = xq.data(), a.ldx = Kp, a.x_scale = q.scale, a.x_zero_point = q.zero_point;
  a.w_packed = w.packed.data_ptr<int8_t>(), a.w_row_sums = w.row_sums.data_ptr<int32_t>();
  a.w_scale = w.scale.data_ptr<float>();
  a.bias = bias.defined() ? bias.data_ptr<float>() : nullptr;
  a.relu = act == Activation::relu;
  a.y = y.data_ptr<float>(), a.ldy = N;
  cpu::qgemm(a);
  return y.reshape(out_shape);
}

Int8ConvWeight pack_int8_conv_weight(const Tensor& values, const Tensor& scale) {
  MINIDL_CHECK(values.defined() && values.dim() == 4 && values.dtype() == DType::int8,
               "int8 conv weight: expected int8 (O, C, kh, kw), got {} {}",
               values.defined() ? values.dtype() : DType::f32, values.defined() ? values.shape() : Shape{});
  MINIDL_CHECK(values.device().is_cpu(),
               "int8 conv weight: the int8 convolution runs on the CPU only, but the weight is on {} (move the "
               "model to the CPU, or quantize only its Linear layers for the GPU)",
               values.device());
  const int64_t O = values.size(0), C = values.size(1), kh = values.size(2), kw = values.size(3);
  Int8ConvWeight w;
  w.in_channels = C, w.kernel_h = kh, w.kernel_w = kw;
  // (O, C, kh, kw) -> (O, kh, kw, C): each output channel's row in the order the patches are gathered.
  w.gemm =
      pack_on_host(values.permute({0, 2, 3, 1}).contiguous().reshape({O, kh * kw * C}), scale, Int8Layout::cpu_panels);
  return w;
}

Tensor quantized_conv2d(const Tensor& x_in, const Int8ConvWeight& w, const Tensor& bias_in, const Conv2dOptions& o,
                        Activation act) {
  MINIDL_CHECK(w.defined(), "quantized_conv2d: the int8 weight is not packed");
  MINIDL_CHECK(o.groups == 1, "quantized_conv2d: the int8 convolution takes groups = 1, got {}", o.groups);
  Shape y_shape;
  const Conv2dParams p =
      conv2d_params("quantized_conv2d", x_in.shape(), {w.gemm.out_features, w.in_channels, w.kernel_h, w.kernel_w},
                    bias_in, o, act, y_shape);
  MINIDL_CHECK(x_in.device().is_cpu(),
               "quantized_conv2d: the int8 convolution runs on the CPU only; the input is on {}", x_in.device());
  MINIDL_CHECK(x_in.dtype() == DType::f32, "quantized_conv2d: expected an f32 input, got {}", x_in.dtype());
  MINIDL_CHECK(!(x_in.requires_grad() && grad_mode_enabled()),
               "quantized_conv2d: int8 layers are for inference and have no gradient (run under NoGradGuard)");
  if (bias_in.defined())
    MINIDL_CHECK(bias_in.dtype() == DType::f32 && bias_in.device().is_cpu(),
                 "quantized_conv2d: expected an f32 bias on the CPU, got {} on {}", bias_in.dtype(), bias_in.device());
  Tensor y = empty(y_shape);
  run_quantized_conv2d(y, x_in.contiguous(), w, bias_in.defined() ? bias_in.contiguous() : Tensor(), p);
  return y;
}

void run_quantized_conv2d(const Tensor& y, const Tensor& x, const Int8ConvWeight& w, const Tensor& bias,
                          const Conv2dParams& p, const Pool2dParams* pool, bool gathered) {
  // Each of x and y contiguous, or channels last (a compiled plan's int8 chain).
  // A tensor that is both (C = 1, or 1×1 images) has the same bytes either way.
  auto channels_last = [](const Tensor& t, const char* what) {
    MINIDL_CHECK(t.is_contiguous() || t.is_channels_last(),
                 "quantized_conv2d: {} {} with strides {} is neither contiguous nor channels last", what, t.shape(),
                 t.strides());
    return !t.is_contiguous();
  };
  cpu::QConv2dArgs a;
  a.x = x.data_ptr<float>(), a.N = x.size(0), a.C = x.size(1), a.H = x.size(2), a.W = x.size(3);
  a.x_channels_last = channels_last(x, "x"), a.y_channels_last = channels_last(y, "y");
  a.O = w.gemm.out_features, a.kernel_h = w.kernel_h, a.kernel_w = w.kernel_w, a.params = p;
  a.w_packed = w.gemm.packed.data_ptr<int8_t>(), a.w_row_sums = w.gemm.row_sums.data_ptr<int32_t>();
  a.w_scale = w.gemm.scale.data_ptr<float>(), a.bias = bias.defined() ? bias.data_ptr<float>() : nullptr;
  a.max_pool = pool;
  a.y = y.data_ptr<float>(), a.Hy = y.size(2), a.Wy = y.size(3);
  a.patches = gathered ? cpu::QConvPatches::gathered : cpu::QConvPatches::best;
  cpu::qconv2d(a);
}

double sqnr_db(const Tensor& reference, const Tensor& approx) {
  MINIDL_CHECK(reference.shape() == approx.shape(), "sqnr_db: shapes differ: {} and {}", reference.shape(),
               approx.shape());
  NoGradGuard no_grad;
  const Tensor r = reference.to(DType::f64), a = approx.to(DType::f64);
  const double signal = sum(mul(r, r)).item();
  const Tensor d = sub(r, a);
  const double noise = sum(mul(d, d)).item();
  if (noise == 0) return std::numeric_limits<double>::infinity();
  return 10 * std::log10(signal / noise);
}

}  // namespace minidl
