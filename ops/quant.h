// ops/quant.h — int8 quantization: weights quantized ahead of time, activations
// per call ("dynamic" quantization, as torch.ao.quantization.quantize_dynamic).
//
//   QuantizedWeight q = quantize_weight_int8(linear.weight);       // int8 (out, in) + scales
//   Int8Weight packed = pack_int8_weight(q.values, q.scale);       // the GEMM's layout, once
//   Tensor y = quantized_linear(x, packed, linear.bias, Activation::relu);
//
// Weights are symmetric, w ≈ scale · q with q in [−127, 127], one scale per
// output channel (row) or one for the tensor. Activations are asymmetric
// unsigned bytes, x ≈ s · (q − z), s and z chosen from each call's min and max.
// The product runs in integers (ops/cpu/qgemm.cpp) and is rescaled to f32 with
// the bias in the GEMM's epilogue. Inference only: no gradients.
#pragma once

#include "core/tensor.h"
#include "ops/conv.h"
#include "ops/kernel_types.h"

namespace minidl {

struct QuantizedWeight {
  Tensor values;  // int8 (out, in) or a convolution's (out, C, kh, kw), in [−127, 127]
  Tensor scale;   // f32 (out) per channel, or (1) per tensor; each > 0
};
// w (out, ...) f32 -> its symmetric int8 quantization, the same shape (scale =
// max|w[o]| / 127 over everything of output channel o; an all-zero one gets scale 1).
QuantizedWeight quantize_weight_int8(const Tensor& w, bool per_channel = true);
// values · scale as f32, values' shape: what the int8 weight stands for.
Tensor dequantize_weight(const Tensor& values, const Tensor& scale);

// An int8 weight in the GEMM's packed layout, with what its epilogue needs.
// On the CPU `packed` is the VNNI panels of ops/cpu/qgemm.cpp; on a GPU the rows
// padded to a multiple of 4 bytes (cuda/qgemm_kernels.cuh). All on the device
// the values were on.
struct Int8Weight {
  Tensor packed;    // int8: CPU (cpu::qgemm_packed_bytes(out, in)); GPU (out, ⌈in / 4⌉ · 4)
  Tensor row_sums;  // int32 (out): Σ_k q[n, k], for the activations' zero point
  Tensor scale;     // f32 (out), a per-tensor scale repeated
  int64_t out_features = 0, in_features = 0;
  bool defined() const { return packed.defined(); }
  Device device() const { return packed.device(); }
};
// Checks values (int8 (out, in) in [−127, 127]) and scale ((out) or (1), finite, > 0), naming what is wrong,
// and packs for the device they are on.
Int8Weight pack_int8_weight(const Tensor& values, const Tensor& scale);
// The GPU's layout built and left on the host (CPU tensors): what
// pack_int8_weight moves to a GPU, and what the emulated kernel tests read.
Int8Weight pack_int8_weight_rows(const Tensor& values, const Tensor& scale);

// act(x (..., in) · dequant(W)ᵀ + bias (out)) -> (..., out) f32, with x quantized
// to u8 for this call. x f32 on the weight's device; an error when x requires
// grad. The CPU and a GPU give the same bits; a NaN or ±inf in x is an error on
// the CPU and NaN outputs on a GPU (which does not stop to ask).
Tensor quantized_linear(const Tensor& x, const Int8Weight& w, const Tensor& bias = Tensor(),
                        Activation act = Activation::none);

// An int8 convolution's weight: values (O, C, kh, kw) reordered channels last,
// (O, kh, kw, C) — the order in which the int8 convolution gathers each
// patch's bytes (ops/cpu/qconv.cpp) — and packed for the CPU's int8 GEMM. The
// int8 convolution runs on the CPU only: values on a GPU are an error.
struct Int8ConvWeight {
  Int8Weight gemm;  // (O, kh·kw·C)
  int64_t in_channels = 0, kernel_h = 0, kernel_w = 0;
  bool defined() const { return gemm.defined(); }
};
// Checks values (int8 (O, C, kh, kw) in [−127, 127]) and scale as pack_int8_weight does, and packs.
Int8ConvWeight pack_int8_conv_weight(const Tensor& values, const Tensor& scale);

// act(conv2d(x, dequant(W)) + bias), with x quantized to u8 for this call, as
// quantized_linear does: x (N, C, H, W) f32 on the CPU, groups = 1; o's stride,
// padding and dilation as conv2d's. An error when x requires grad, or holds NaN
// or infinity.
//   Tensor y = quantized_conv2d(x, packed, conv.bias, conv.options, Activation::relu);
Tensor quantized_conv2d(const Tensor& x, const Int8ConvWeight& w, const Tensor& bias = Tensor(),
                        const Conv2dOptions& o = {}, Activation act = Activation::none);
// quantized_conv2d's kernel call alone, unchecked, into y, max pooled when `pool`
// is set (y then has the pooled size): what a compiled plan's step runs. x and y
// f32 on the CPU, each contiguous or channels last (Tensor::is_channels_last: the
// plan chains int8 convolutions that way); bias f32 (O) or undefined; p as
// conv2d_params gives it.
// gathered: copy the patches into rows first even where the GEMM could read them
// in place (ops/cpu/qconv.cpp) — the same result; `bench conv --int8` times both.
void run_quantized_conv2d(const Tensor& y, const Tensor& x, const Int8ConvWeight& w, const Tensor& bias,
                          const Conv2dParams& p, const Pool2dParams* pool = nullptr, bool gathered = false);

// 10·log10(Σ reference² / Σ (reference − approx)²): how far below the signal the
// quantization error lies (dB; +inf when they are equal).
double sqnr_db(const Tensor& reference, const Tensor& approx);

}  // namespace minidl
