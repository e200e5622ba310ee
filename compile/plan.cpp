// compile/plan.cpp — lowering a module tree into a Plan (compile/plan.h).
//
// The lowering walks the tree once, running eager beside it on the example:
// eager's value after each layer gives the shape of the buffer the step writes,
// and at the end the whole plan is checked against eager's output. Each step is
// a closure over what it needs — packed weights, folded constants, its buffers —
// reading one slot and writing another; run() only calls them in order.
#include "compile/plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>

#include "compress/quantize.h"
#include "core/autograd.h"
#include "cuda/runtime.h"
#include "nn/layers.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/loops.h"
#include "ops/dispatch.h"
#include "ops/elementwise.h"
#include "ops/factory.h"
#include "ops/matmul.h"
#include "ops/quant.h"
#include "ops/reduce.h"

namespace minidl {

namespace {

using nn::Module;
using nn::ModulePtr;

std::string shape_str(const Shape& s) { return fmt::format("{}", s); }

template <class M>
M* as(const ModulePtr& m) {
  return dynamic_cast<M*>(m.get());
}

// ---------------------------------------------------------------- BatchNorm folding

// An eval-mode BatchNorm as y = x·scale[c] + shift[c], computed in f64.
struct Affine {
  std::vector<float> scale, shift;
};
Affine affine_of(const nn::BatchNorm& bn) {
  auto values = [](const Tensor& t) { return t.to(DType::f64).contiguous().to_vector<double>(); };
  const auto gamma = values(bn.weight), beta = values(bn.bias), mean = values(bn.running_mean),
             var = values(bn.running_var);
  Affine a;
  for (size_t c = 0; c < gamma.size(); ++c) {
    const double s = gamma[c] / std::sqrt(var[c] + bn.eps);
    a.scale.push_back(static_cast<float>(s));
    a.shift.push_back(static_cast<float>(beta[c] - mean[c] * s));
  }
  return a;
}

// A convolution with the BatchNorm after it folded in: conv(x, w·s) + (b·s + t)
// equals s·(conv(x, w) + b) + t for every output channel, because the conv is
// linear in w. f32 weights, or bf16 for a bf16 model where the bf16 GEMM
// outruns the f32 one (AMX, or vdpbf16ps at the FMA rate: the conv's GEMM is
// then a bf16 one; elsewhere a bf16 GEMM runs at the f32 rate at best, and the
// rounding of the columns would be pure cost, so the weights are widened); the
// ReLU fused.
struct FoldedConv {
  Tensor weight, bias;
  // An int8 convolution's (QuantConv2d) in place of `weight`: the layer's packed
  // weight and row sums, its scales with the BatchNorm's folded in.
  std::optional<Int8ConvWeight> int8;
  int64_t in_channels = 0, out_channels = 0, kernel_size = 0;
  Conv2dParams params{};
  std::optional<Pool2dParams> max_pool;  // a MaxPool2d after the conv (and its ReLU), done in its epilogue
};
FoldedConv fold(const nn::Conv2d& conv, const nn::BatchNorm* bn, bool relu) {
  FoldedConv f;
  const int64_t O = conv.out_channels;
  std::vector<double> w = conv.weight.to(DType::f64).contiguous().to_vector<double>();
  std::vector<double> b = conv.bias.defined() ? conv.bias.to(DType::f64).to_vector<double>() : std::vector<double>(O);
  if (bn) {
    MINIDL_CHECK(bn->features == O, "compile: {} follows {} with {} channels", bn->describe(), conv.describe(), O);
    const Affine a = affine_of(*bn);
    const int64_t per = static_cast<int64_t>(w.size()) / O;
    for (int64_t o = 0; o < O; ++o) {
      for (int64_t i = 0; i < per; ++i) w[o * per + i] *= a.scale[o];
      b[o] = b[o] * a.scale[o] + a.shift[o];
    }
  }
  const bool bf16 = conv.weight.dtype() == DType::bf16 && cpu::gemm_bf16_outruns_f32();
  f.weight = from_vector<double>(w, conv.weight.shape()).to(bf16 ? DType::bf16 : DType::f32);
  f.bias = from_vector<double>(b, {O}).to(DType::f32);
  const auto& o = conv.options;
  f.params = {o.stride[0], o.stride[1], o.padding[0], o.padding[1], o.dilation[0], o.dilation[1], o.groups, relu};
  f.in_channels = conv.in_channels, f.out_channels = O, f.kernel_size = conv.kernel_size;
  return f;
}

// The same for an int8 convolution. Its output is sx·sw[o]·(integer sum) + b[o],
// so a BatchNorm after it folds into the per-channel scale, sw[o]·s[o], and the
// bias, b[o]·s[o] + t[o]; the packed integers stay as they are. Without a
// BatchNorm the scales and bias are the layer's own, and the step gives eager's bits.
FoldedConv fold_int8(const compress::QuantConv2d& q, const nn::BatchNorm* bn, bool relu) {
  FoldedConv f;
  const int64_t O = q.out_channels;
  const Int8ConvWeight& w = q.packed();
  std::vector<float> scale = w.gemm.scale.to_vector<float>();
  std::vector<float> bias = q.bias.defined() ? q.bias.to_vector<float>() : std::vector<float>(O);
  if (bn) {
    MINIDL_CHECK(bn->features == O, "compile: {} follows {} with {} channels", bn->describe(), q.describe(), O);
    const Affine a = affine_of(*bn);
    for (int64_t o = 0; o < O; ++o) {
      scale[o] = static_cast<float>(double{scale[o]} * a.scale[o]);
      bias[o] = static_cast<float>(double{bias[o]} * a.scale[o] + a.shift[o]);
    }
  }
  f.int8 = w;
  f.int8->gemm.scale = from_vector<float>(scale, {O});
  f.bias = from_vector<float>(bias, {O});
  const auto& o = q.options;
  f.params = {o.stride[0], o.stride[1], o.padding[0], o.padding[1], o.dilation[0], o.dilation[1], 1, relu};
  f.in_channels = q.in_channels, f.out_channels = O, f.kernel_size = q.kernel_size;
  return f;
}

// A Conv2d or a QuantConv2d folded; nothing for any other layer.
std::optional<FoldedConv> fold_module(Module* m, const nn::BatchNorm* bn, bool relu) {
  if (auto* c = dynamic_cast<nn::Conv2d*>(m)) return fold(*c, bn, relu);
  if (auto* q = dynamic_cast<compress::QuantConv2d*>(m)) return fold_int8(*q, bn, relu);
  return std::nullopt;
}
Pool2dParams pool_params(const nn::Pool2dModule& pool) {
  return {pool.kernel, pool.kernel, pool.stride, pool.stride, pool.padding, pool.padding};
}

// What a step's description says of a convolution's GEMM: bf16 or int8 ("" for f32).
std::string gemm_note(const FoldedConv& f) {
  if (f.int8) return fmt::format(" [int8, {}]", cpu::qgemm_kernel_name(cpu::QGemmKernel::best));
  if (f.weight.dtype() != DType::bf16) return "";
  return fmt::format(" [bf16 GEMM, {}]", cpu::gemm_bf16_kernel_name(cpu::Bf16GemmKernel::best));
}

void run_conv(const FoldedConv& f, const Tensor& x, const Tensor& y) {
  const Pool2dParams* pool = f.max_pool ? &*f.max_pool : nullptr;
  if (!f.int8) {
    cpu::conv2d_forward(y.arg(), x.arg(), f.weight.arg(), f.bias.arg(), f.params, pool);
    return;
  }
  run_quantized_conv2d(y, x, *f.int8, f.bias, f.params, pool);
}

// A first layer's f32 convolution — a patch of a few values over the image's
// one or three channels — whose output an int8 convolution reads next: the
// direct kernel (ops/cpu/conv_direct.cpp) computes it channels last, with no
// im2col and no transpose at either end.
bool runs_direct(const FoldedConv& f) {
  return !f.int8 && f.weight.dtype() == DType::f32 && f.params.groups == 1 &&
         f.in_channels * f.kernel_size * f.kernel_size <= cpu::kDirectConvMaxPatch && cpu::conv2d_direct_fast();
}
void run_direct(const FoldedConv& f, const Tensor& x, const Tensor& y) {
  cpu::DirectConvArgs a;
  a.x = x.data_ptr<float>(), a.N = x.size(0), a.C = x.size(1), a.H = x.size(2), a.W = x.size(3);
  a.O = f.out_channels, a.kernel_h = a.kernel_w = f.kernel_size, a.params = f.params;
  a.w = f.weight.data_ptr<float>(), a.bias = f.bias.data_ptr<float>();
  a.max_pool = f.max_pool ? &*f.max_pool : nullptr;
  a.y = y.data_ptr<float>(), a.Hy = y.size(2), a.Wy = y.size(3);
  cpu::conv2d_direct(a);
}

// A 1×1 convolution over channels-last pixels is a linear layer over pixels:
// output pixel (n, oh, ow) holds W (O, C) times the C channels of input pixel
// (n, oh·sh, ow·sw), plus the bias — a GEMM whose rows are pixels, writing
// channels last. An f32 one (a residual block's projection shortcut that
// quantize_dynamic left f32) runs so on the packed GEMM of the Linear layers,
// its strided pixels first gathered into rows. Where that GEMM is the AVX-512
// one; elsewhere the convolution reads channels first, as before.
bool runs_on_pixels(const FoldedConv& f) {
  return !f.int8 && f.weight.dtype() == DType::f32 && f.kernel_size == 1 && f.params.pad_h == 0 &&
         f.params.pad_w == 0 && f.params.groups == 1 && !f.max_pool && cpu::gemm_packed_f32_fast();
}
struct PixelGemm {
  Tensor packed, bias, rows;  // rows: the gathered pixels (N·Ho·Wo, C) when strided
  int64_t C = 0, O = 0, stride_h = 1, stride_w = 1;
  bool relu = false;
};
PixelGemm pixel_gemm(const FoldedConv& f, const Shape& out_shape) {
  PixelGemm g;
  g.C = f.in_channels, g.O = f.out_channels, g.stride_h = f.params.stride_h, g.stride_w = f.params.stride_w;
  g.relu = f.params.relu, g.bias = f.bias;
  g.packed = empty({cpu::gemm_packed_f32_elements(g.O, g.C)});
  cpu::gemm_packed_f32_pack(f.weight.contiguous().data_ptr<float>(), g.C, g.O, g.C, g.packed.data_ptr<float>());
  if (g.stride_h != 1 || g.stride_w != 1) g.rows = empty({out_shape[0] * out_shape[2] * out_shape[3], g.C});
  return g;
}
// y (N, O, Ho, Wo) channels last := the 1×1 convolution of x (N, C, H, W) channels last.
void run_pixel_gemm(const PixelGemm& g, const Tensor& x, const Tensor& y) {
  const int64_t N = x.size(0), H = x.size(2), W = x.size(3), Ho = y.size(2), Wo = y.size(3), C = g.C;
  const float* rows = x.data_ptr<float>();
  if (g.rows.defined()) {  // every (sh, sw)-th pixel, C floats each, one after another
    float* out = g.rows.data_ptr<float>();
    const float* xp = rows;
    cpu::parallel_for(N * Ho * Wo * C >= cpu::kParallelGrain, N * Ho, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t n = r / Ho, oh = r % Ho;
        for (int64_t ow = 0; ow < Wo; ++ow)
          std::copy_n(xp + ((n * H + oh * g.stride_h) * W + ow * g.stride_w) * C, C, out + (r * Wo + ow) * C);
      }
    });
    rows = out;
  }
  cpu::PackedGemmArgs a;
  a.M = N * Ho * Wo, a.N = g.O, a.K = C, a.x = rows, a.ldx = C;
  a.w_packed = g.packed.data_ptr<float>(), a.bias = g.bias.data_ptr<float>(), a.relu = g.relu;
  a.y = y.data_ptr<float>(), a.ldy = g.O;
  cpu::gemm_packed_f32(a);
}

// The (N, C, H, W) view of N·C·H·W floats stored (N, H, W, C) — a channels-last slot.
Tensor channels_last_view(const Tensor& flat, const Shape& s) {
  return flat.view({s[0], s[2], s[3], s[1]}).permute({0, 3, 1, 2});
}
Tensor empty_channels_last(const Shape& s) { return channels_last_view(empty({s[0] * s[1] * s[2] * s[3]}), s); }
// Stored channels last and not also channels first (C = 1 or 1×1 images are the same bytes either way).
bool stored_channels_last(const Tensor& t) { return t.is_channels_last() && !t.is_contiguous(); }

// y = relu(y + s), elementwise over equal shapes stored alike (the residual join).
void add_relu(const Tensor& y, const Tensor& s) {
  float* yp = y.data_ptr<float>();
  const float* sp = s.data_ptr<float>();
  const int64_t n = y.numel();
  cpu::parallel_for(n >= cpu::kParallelGrain, n, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) yp[i] = std::max(yp[i] + sp[i], 0.0f);
  });
}

}  // namespace

// ---------------------------------------------------------------- the lowering

class Lowering {
 public:
  // f64: a model or an input in f64 runs every layer eagerly (the kernels the
  // plan lowers to are f32, bf16 and int8, and f64 is for checking, not speed).
  Lowering(Plan& plan, bool f64, bool channels_last) : p_(plan), f64_(f64), channels_last_(channels_last) {}

  // Lowers `layers` (a Sequential's children, in order) reading slot `in`, whose
  // eager value is `eager`; returns the output slot and leaves eager's output in `eager`.
  int sequence(const std::vector<ModulePtr>& layers, int in, Tensor& eager) {
    for (size_t i = 0; i < layers.size();) {
      Module& m = *layers[i];
      auto next = [&](size_t j) -> Module* { return i + j < layers.size() ? layers[i + j].get() : nullptr; };
      auto is_relu = [](Module* m) { return m && dynamic_cast<nn::ReLU*>(m); };
      auto step_eager = [&](size_t count) {
        for (size_t k = 0; k < count; ++k) eager = layers[i + k]->forward(eager);
        i += count;
      };
      auto* l = dynamic_cast<nn::Linear*>(&m);
      auto* s = dynamic_cast<nn::Sequential*>(&m);
      if (f64_ && !s) {  // f64 is for checking, not speed: every layer as it is, eagerly
        const Tensor before = eager;
        step_eager(1);
        in = eager_step(m, in, before, eager);
      } else if (l) {
        const bool relu = is_relu(next(1));
        // A bf16 GEMM writes bf16 when the next layer is a bf16 GEMM too.
        Module* after = next(relu ? 2 : 1);
        auto* next_linear = after ? dynamic_cast<nn::Linear*>(after) : nullptr;
        const bool bf16_out =
            l->weight.dtype() == DType::bf16 && next_linear && next_linear->weight.dtype() == DType::bf16;
        step_eager(relu ? 2 : 1);
        in = linear(*l, in, relu, bf16_out, eager.shape());
      } else if (auto* q = dynamic_cast<compress::QuantLinear*>(&m)) {
        const bool relu = is_relu(next(1));
        step_eager(relu ? 2 : 1);
        in = int8_linear(*q, in, relu, eager.shape());
      } else if (dynamic_cast<nn::Conv2d*>(&m) || dynamic_cast<compress::QuantConv2d*>(&m)) {
        auto* bn = next(1) ? dynamic_cast<nn::BatchNorm*>(next(1)) : nullptr;
        const bool relu = is_relu(next(bn ? 2 : 1));
        Module* after = next(1 + (bn != nullptr) + relu);
        auto* pool = after ? dynamic_cast<nn::MaxPool2d*>(after) : nullptr;
        const bool cl_out = reads_channels_last(next(1 + (bn != nullptr) + relu + (pool != nullptr)));
        step_eager(1 + (bn != nullptr) + relu + (pool != nullptr));
        in = conv(m, bn, relu, pool, in, eager.shape(), cl_out);
      } else if (auto* bn = dynamic_cast<nn::BatchNorm*>(&m)) {
        const bool relu = is_relu(next(1));
        step_eager(relu ? 2 : 1);
        in = batch_norm(*bn, relu, in);
      } else if (auto* r = dynamic_cast<nn::ResidualBlock*>(&m)) {
        const Tensor before = eager;
        const bool cl_out = reads_channels_last(next(1));
        step_eager(1);
        in = residual(*r, in, before, eager, cl_out);
      } else if (s) {
        std::vector<ModulePtr> children;
        for (const auto& [name, child] : s->children()) children.push_back(child);
        ++i;
        in = sequence(children, in, eager);
      } else if (dynamic_cast<nn::Dropout*>(&m)) {
        ++i;  // the identity in eval mode
      } else {
        const Tensor before = eager;
        step_eager(1);
        in = simple(m, in, before, eager);
      }
    }
    return in;
  }

  // The slot's value stored channels first: itself, or a new slot and a transposing step.
  int channels_first(int slot) {
    if (!is_channels_last(slot)) return slot;
    const Tensor& t = p_.slots_[slot];
    const int64_t N = t.size(0), C = t.size(1), P = t.size(2) * t.size(3);
    const int out = buffer(t.shape(), t.dtype());
    add("channels last -> channels first", slot, out, [=](const Tensor& in, Tensor& y) {
      cpu::to_channels_first(y.data_ptr<float>(), in.data_ptr<float>(), N, C, P);
    });
    return out;
  }

  // The slot's value as f32 stored channels first, (N, C, H, W) — what every
  // step but the int8 convolutions' reads: itself, or a new slot and a
  // conversion step.
  int as_f32(int slot) {
    slot = channels_first(slot);
    if (dtype(slot) == DType::f32) return slot;
    const int out = buffer(p_.slots_[slot].shape(), DType::f32);
    add(fmt::format("convert {} -> f32", dtype(slot)), slot, out,
        [](const Tensor& in, Tensor& out) { cpu::copy(out.arg(), in.arg()); });
    return out;
  }

 private:
  Plan& p_;
  bool f64_;
  bool channels_last_;  // CompileOptions::channels_last

  DType dtype(int slot) const { return p_.slots_[slot].dtype(); }

  // ---- channels last. An int8 convolution reads its input and writes its
  // output in either layout (ops/cpu/qconv.cpp); stored (N, H, W, C) it skips a
  // transpose at each end. So a step that runs int8 convolutions writes its
  // output channels last when the layer after it reads that layout without a
  // conversion: another int8 convolution, a residual block whose first
  // convolution and shortcut are int8 (or the identity), a global average
  // pool. Anything else gets channels first (as_f32 converts, should a slot
  // arrive otherwise). A channels-last slot is a permuted view, shape
  // (N, C, H, W) with its memory (N, H, W, C), as PyTorch's memory_format.
  bool is_channels_last(int slot) const { return stored_channels_last(p_.slots_[slot]); }
  bool reads_channels_last(Module* m) const { return channels_last_ && takes_channels_last(m); }
  // A convolution the lowering would run as a GEMM over pixels (runs_on_pixels, on its folded form).
  static bool pointwise_f32(Module* m) {
    auto* c = dynamic_cast<nn::Conv2d*>(m);
    return c && c->kernel_size == 1 && runs_on_pixels(fold(*c, nullptr, false));
  }
  static bool takes_channels_last(Module* m) {
    if (auto* s = dynamic_cast<nn::Sequential*>(m)) return s->size() > 0 && takes_channels_last((*s)[0].get());
    if (auto* q = dynamic_cast<compress::QuantConv2d*>(m)) return q->options.groups == 1;
    if (auto* pool = dynamic_cast<nn::AdaptiveAvgPool2d*>(m)) return pool->output_size == std::array<int64_t, 2>{1, 1};
    if (auto* r = dynamic_cast<nn::ResidualBlock*>(m)) {
      auto* sc = as<nn::Sequential>(r->child("shortcut"));
      const bool shortcut = sc && (sc->size() == 0 || takes_channels_last((*sc)[0].get()) ||
                                   (sc->size() == 2 && pointwise_f32((*sc)[0].get())));
      return takes_channels_last(r->child("conv1").get()) && shortcut;
    }
    return false;
  }

  Tensor keep(Tensor t) {
    p_.owned_.push_back(t);
    return t;
  }
  // What a folded convolution made (counted in buffer_bytes; an int8 layer's packed weight stays the layer's).
  void keep_folded(const FoldedConv& f) {
    for (const Tensor& t : {f.weight, f.bias, f.int8 ? f.int8->gemm.scale : Tensor()})
      if (t.defined()) keep(t);
  }
  int buffer(const Shape& shape, DType dt, bool channels_last = false) {
    p_.slots_.push_back(channels_last ? empty_channels_last(shape) : empty(shape, {.dtype = dt}));
    return static_cast<int>(p_.slots_.size()) - 1;
  }
  int view_slot(const Tensor& like) {  // a slot a step points at something (no buffer of its own)
    p_.slots_.push_back(like);
    return static_cast<int>(p_.slots_.size()) - 1;
  }
  void add(std::string what, int in, int out, std::function<void(const Tensor&, Tensor&)> run, bool eager = false) {
    p_.steps_.push_back({std::move(what), in, out, eager, std::move(run)});
  }

  int linear(nn::Linear& l, int in, bool relu, bool bf16_out, const Shape& out_shape) {
    in = channels_first(in);
    const int64_t K = l.in_features, N = l.out_features, M = p_.slots_[in].numel() / K;
    const std::string act = relu ? " +relu" : "";
    if (l.weight.dtype() == DType::f32) {
      const int x = as_f32(in), out = buffer(out_shape, DType::f32);
      const Tensor bias = l.bias.defined() ? keep(l.bias.contiguous().clone()) : Tensor();
      if (!cpu::gemm_packed_f32_fast()) {  // no AVX-512: the general GEMM, which packs per call
        const Tensor w = keep(l.weight.contiguous().clone());
        add(fmt::format("linear {}->{}{} [{}]", K, N, act, cpu::gemm_kernel_name(cpu::GemmKernel::best)), x, out,
            [=](const Tensor& xin, Tensor& y) {
              const GemmEpilogue e{.bias = bias.defined() ? bias.raw_data() : nullptr, .relu = relu};
              cpu::gemm(M, N, K, 1.0, xin.reshape({M, K}).arg(), w.t().arg(), 0.0, y.reshape({M, N}).arg(),
                        cpu::GemmKernel::best, e);
            });
        return out;
      }
      const Tensor packed = keep(empty({cpu::gemm_packed_f32_elements(N, K)}));
      const Tensor w = l.weight.contiguous();
      cpu::gemm_packed_f32_pack(w.data_ptr<float>(), K, N, K, packed.data_ptr<float>());
      add(fmt::format("linear {}->{}{} [f32 packed once, avx512]", K, N, act), x, out,
          [=](const Tensor& xin, Tensor& y) {
            cpu::PackedGemmArgs a;
            a.M = M, a.N = N, a.K = K, a.x = xin.data_ptr<float>(), a.ldx = K;
            a.w_packed = packed.data_ptr<float>(), a.bias = bias.defined() ? bias.data_ptr<float>() : nullptr;
            a.relu = relu, a.y = y.data_ptr<float>(), a.ldy = N;
            cpu::gemm_packed_f32(a);
          });
      return out;
    }
    if (l.weight.dtype() == DType::bf16) {
      const Bf16Weight w = pack_bf16_weight(l.weight);
      keep(w.packed);
      const Tensor bias = l.bias.defined() ? keep(l.bias.to(DType::f32).contiguous().clone()) : Tensor();
      // An f32 input is rounded to bf16 into the step's own buffer as it is read.
      const bool convert = dtype(in) != DType::bf16;
      const Tensor scratch = convert ? keep(empty({M, K}, {.dtype = DType::bf16})) : Tensor();
      const int out = buffer(out_shape, bf16_out ? DType::bf16 : DType::f32);
      add(fmt::format("linear {}->{}{} [bf16 packed once, {}{}{}]", K, N, act,
                      cpu::gemm_bf16_kernel_name(cpu::Bf16GemmKernel::best), convert ? ", input rounded to bf16" : "",
                      bf16_out ? ", bf16 out" : ""),
          in, out, [=](const Tensor& xin, Tensor& y) {
            if (convert) cpu::copy(scratch.arg(), xin.arg());
            cpu::Bf16GemmArgs a;
            a.M = M, a.N = N, a.K = K, a.ldx = K;
            a.x = static_cast<const uint16_t*>(convert ? scratch.raw_data() : xin.raw_data());
            a.w_packed = static_cast<const uint16_t*>(w.packed.raw_data());
            a.bias = bias.defined() ? bias.data_ptr<float>() : nullptr, a.relu = relu, a.ldy = N;
            if (bf16_out)
              a.y_bf16 = static_cast<uint16_t*>(y.raw_data());
            else
              a.y = y.data_ptr<float>();
            cpu::gemm_bf16(a);
          });
      return out;
    }
    fail("compile: linear lowering got a {} weight", l.weight.dtype());  // f64 models run eagerly (f64_)
  }

  // As quantized_linear (ops/quant.cpp), into the plan's buffers: the same
  // kernels in the same order, so the result is bit-identical to eager's.
  int int8_linear(compress::QuantLinear& q, int in, bool relu, const Shape& out_shape) {
    const Int8Weight& w = q.packed();
    const int64_t K = w.in_features, N = w.out_features, M = p_.slots_[in].numel() / K;
    const int64_t Kp = cpu::qgemm_padded_k(K);
    const int x = as_f32(in), out = buffer(out_shape, DType::f32);
    const Tensor xq = keep(empty({M * Kp}, {.dtype = DType::int8}));  // the u8 activations
    const Tensor packed = w.packed, sums = w.row_sums, scale = w.scale;
    const Tensor bias = q.bias.defined() ? keep(q.bias.contiguous().clone()) : Tensor();
    add(fmt::format("int8 linear {}->{}{} [{}]", K, N, relu ? " +relu" : "",
                    cpu::qgemm_kernel_name(cpu::QGemmKernel::best)),
        x, out, [=](const Tensor& xin, Tensor& y) {
          const float* xp = xin.data_ptr<float>();
          auto* xu = static_cast<uint8_t*>(xq.raw_data());
          const cpu::QuantParams qp = cpu::choose_quant_params(xp, M, K, K);
          cpu::quantize_rows_u8(xp, M, K, K, qp, xu, Kp);
          cpu::QGemmArgs a;
          a.M = M, a.N = N, a.K = K, a.x = xu, a.ldx = Kp, a.x_scale = qp.scale, a.x_zero_point = qp.zero_point;
          a.w_packed = packed.data_ptr<int8_t>(), a.w_row_sums = sums.data_ptr<int32_t>();
          a.w_scale = scale.data_ptr<float>(), a.bias = bias.defined() ? bias.data_ptr<float>() : nullptr;
          a.relu = relu, a.y = y.data_ptr<float>(), a.ldy = N;
          cpu::qgemm(a);
        });
    return out;
  }

  // A conv, with the BatchNorm, ReLU and MaxPool2d after it that are not null:
  // one step. out_shape: the last of them's output.
  // An int8 convolution (QuantConv2d) the same way: the kernel quantized_conv2d
  // runs, its scales and bias with the BatchNorm folded in, the pool in its pass.
  // channels_last: write the output channels last if the convolution is int8.
  int conv(Module& c, nn::BatchNorm* bn, bool relu, nn::MaxPool2d* pool, int in, const Shape& out_shape,
           bool channels_last) {
    FoldedConv f = *fold_module(&c, bn, relu);
    if (pool) f.max_pool = pool_params(*pool);
    keep_folded(f);
    const bool int8 = f.int8.has_value(), direct = channels_last && runs_direct(f);
    const int x = int8 && is_channels_last(in) ? in : as_f32(in);
    const int out = buffer(out_shape, DType::f32, (int8 && channels_last) || direct);
    add(fmt::format("{}conv {}->{} {}x{}{}{}{}{}{}", f.int8 ? "int8 " : "", f.in_channels, f.out_channels,
                    f.kernel_size, f.kernel_size, bn ? " +batchnorm (folded)" : "", relu ? " +relu" : "",
                    pool ? fmt::format(" +max pool {}x{}", pool->kernel, pool->kernel) : "", gemm_note(f),
                    direct ? " [direct, channels last]" : ""),
        x, out, [f, direct](const Tensor& xin, Tensor& y) {
          if (direct)
            run_direct(f, xin, y);
          else
            run_conv(f, xin, y);
        });
    return out;
  }

  int batch_norm(nn::BatchNorm& bn, bool relu, int in) {
    const Affine a = affine_of(bn);
    const int x = as_f32(in), out = buffer(p_.slots_[x].shape(), DType::f32);
    add(fmt::format("batchnorm {} as scale+shift{}", bn.features, relu ? " +relu" : ""), x, out,
        [a, relu](const Tensor& xin, Tensor& y) {
          const int64_t N = xin.size(0), C = xin.size(1), inner = xin.numel() / (N * C);
          const float* xp = xin.data_ptr<float>();
          float* yp = y.data_ptr<float>();
          for (int64_t n = 0; n < N; ++n)
            for (int64_t c = 0; c < C; ++c) {
              const int64_t base = (n * C + c) * inner;
              for (int64_t i = 0; i < inner; ++i) {
                const float v = xp[base + i] * a.scale[c] + a.shift[c];
                yp[base + i] = relu ? std::max(v, 0.0f) : v;
              }
            }
        });
    return out;
  }

  // conv1+bn1+relu, conv2+bn2, the shortcut (conv+bn, or x), then relu(sum): one step.
  // channels_last: write the output channels last if conv2 is int8.
  int residual(nn::ResidualBlock& r, int in, const Tensor& eager_in, const Tensor& eager_out, bool channels_last) {
    // Each convolution dense, or int8 (QuantConv2d); a pruned or otherwise replaced child runs the block eagerly.
    auto* b1 = as<nn::BatchNorm>(r.child("bn1"));
    auto* b2 = as<nn::BatchNorm>(r.child("bn2"));
    auto* sc = as<nn::Sequential>(r.child("shortcut"));
    nn::BatchNorm* sc_bn = sc && sc->size() == 2 ? as<nn::BatchNorm>((*sc)[1]) : nullptr;
    const std::optional<FoldedConv> f1 = b1 ? fold_module(r.child("conv1").get(), b1, true) : std::nullopt;
    const std::optional<FoldedConv> f2 = b2 ? fold_module(r.child("conv2").get(), b2, false) : std::nullopt;
    const bool projected = sc && sc->size() == 2;
    const std::optional<FoldedConv> fs =
        projected && sc_bn ? fold_module((*sc)[0].get(), sc_bn, false) : std::optional<FoldedConv>(FoldedConv{});
    const bool lowered = f1 && f2 && sc && (sc->size() == 0 || projected) && fs;
    if (!lowered) return simple(r, in, eager_in, eager_out);
    for (const FoldedConv* f : {&*f1, &*f2, &*fs}) keep_folded(*f);
    // Where each value is stored. int8 convolutions read and write either
    // layout; an f32 1×1 shortcut reads channels last as a GEMM over pixels and
    // writes it so (runs_on_pixels); other f32 convolutions are channels first
    // only. Where the sum and the shortcut differ, the join transposes the
    // shortcut as it adds it.
    const bool out_cl = channels_last && f2->int8, h_cl = channels_last_ && f1->int8 && f2->int8;
    const bool x_readable_cl = f1->int8 && (!projected || fs->int8 || runs_on_pixels(*fs));
    const int x = is_channels_last(in) && x_readable_cl ? in : as_f32(in);
    const bool x_cl = is_channels_last(x), on_pixels = projected && !fs->int8 && x_cl;
    const bool s_cl = projected && fs->int8 ? out_cl : x_cl;  // an f32 shortcut's output is stored as its input
    const std::optional<PixelGemm> pixels =
        on_pixels ? std::optional<PixelGemm>(pixel_gemm(*fs, eager_out.shape())) : std::nullopt;
    if (pixels) keep(pixels->packed);
    if (pixels && pixels->rows.defined()) keep(pixels->rows);
    const int out = buffer(eager_out.shape(), DType::f32, out_cl);
    auto scratch = [&](bool cl) {
      return keep(cl ? empty_channels_last(eager_out.shape()) : empty(eager_out.shape()));
    };
    const Tensor h = scratch(h_cl);  // conv1's output has the block's output shape
    const Tensor s = projected ? scratch(s_cl) : Tensor();
    // Each convolution named as it runs: quantize_dynamic leaves a short-patch one (a 1×1 shortcut) f32.
    auto form = [](const FoldedConv& f) { return f.int8 ? "int8 conv" : "conv"; };
    const std::string shortcut_form = !projected  ? "identity"
                                      : on_pixels ? "shortcut 1x1 conv+bn as a GEMM over pixels"
                                                  : fmt::format("shortcut {}+bn", form(*fs));
    const FoldedConv& noted = f1->int8 ? *f1 : f2->int8 ? *f2 : fs->int8 ? *fs : *f1;  // any int8 one names its kernel
    add(fmt::format("residual block {}->{} stride {}: {}+bn+relu, {}+bn, {}, add+relu{}", f1->in_channels,
                    f1->out_channels, f1->params.stride_h, form(*f1), form(*f2), shortcut_form, gemm_note(noted)),
        x, out, [=, f1 = *f1, f2 = *f2, fs = *fs](const Tensor& xin, Tensor& y) {
          run_conv(f1, xin, h);
          run_conv(f2, h, y);
          if (pixels)
            run_pixel_gemm(*pixels, xin, s);
          else if (projected)
            run_conv(fs, xin, s);
          const Tensor& other = projected ? s : xin;
          const int64_t N = y.size(0), C = y.size(1), P = y.size(2) * y.size(3);
          if (s_cl == out_cl)
            add_relu(y, other);
          else if (out_cl)  // a channels-last sum, a channels-first shortcut
            cpu::add_relu_channels_last(y.data_ptr<float>(), other.data_ptr<float>(), N, C, P);
          else
            cpu::add_relu_channels_first(y.data_ptr<float>(), other.data_ptr<float>(), N, C, P);
        });
    return out;
  }

  // Single layers with a kernel of their own, Flatten as a view, anything else eagerly.
  int simple(Module& m, int in, const Tensor& eager_in, const Tensor& eager_out) {
    if (dynamic_cast<nn::Flatten*>(&m)) {
      in = channels_first(in);  // flattens (C, H, W) in that order
      const int out = view_slot(p_.slots_[in].reshape(eager_out.shape()));
      const Shape shape = eager_out.shape();
      add("flatten (a view)", in, out, [shape](const Tensor& xin, Tensor& y) { y = xin.reshape(shape); });
      return out;
    }
    auto unary = [&](UnaryOp op, const char* name) {
      const int x = as_f32(in), out = buffer(eager_out.shape(), DType::f32);
      add(name, x, out, [op](const Tensor& xin, Tensor& y) { cpu::unary(op, y.arg(), xin.arg(), 0, 0); });
      return out;
    };
    if (dynamic_cast<nn::ReLU*>(&m)) return unary(UnaryOp::relu, "relu");
    if (dynamic_cast<nn::GELU*>(&m)) return unary(UnaryOp::gelu, "gelu");
    if (auto* pool = dynamic_cast<nn::Pool2dModule*>(&m)) {
      const Pool2dParams p = pool_params(*pool);
      const bool max = dynamic_cast<nn::MaxPool2d*>(&m) != nullptr;
      const int x = as_f32(in), out = buffer(eager_out.shape(), DType::f32);
      add(fmt::format("{} {}x{}", max ? "max pool" : "avg pool", p.kernel_h, p.kernel_w), x, out,
          [p, max](const Tensor& xin, Tensor& y) {
            if (max)
              cpu::max_pool2d_forward(y.arg(), nullptr, xin.arg(), p);
            else
              cpu::avg_pool2d_forward(y.arg(), xin.arg(), p);
          });
      return out;
    }
    if (dynamic_cast<nn::AdaptiveAvgPool2d*>(&m) && is_channels_last(in) && eager_out.size(2) == 1 &&
        eager_out.size(3) == 1) {
      const Tensor& t = p_.slots_[in];
      const int64_t N = t.size(0), C = t.size(1), P = t.size(2) * t.size(3);
      const int out = buffer(eager_out.shape(), DType::f32);
      add("global avg pool (reads channels last)", in, out, [=](const Tensor& xin, Tensor& y) {
        cpu::global_avg_pool_channels_last(y.data_ptr<float>(), xin.data_ptr<float>(), N, C, P);
      });
      return out;
    }
    if (dynamic_cast<nn::AdaptiveAvgPool2d*>(&m)) {
      const int x = as_f32(in), out = buffer(eager_out.shape(), DType::f32);
      add("adaptive avg pool", x, out,
          [](const Tensor& xin, Tensor& y) { cpu::adaptive_avg_pool2d_forward(y.arg(), xin.arg()); });
      return out;
    }
    return eager_step(m, in, eager_in, eager_out);
  }

  // Not lowered: the layer's own forward, on the dtype eager gave it.
  int eager_step(Module& m, int in, const Tensor& eager_in, const Tensor& eager_out) {
    const DType want = eager_in.dtype();
    in = channels_first(in);
    const int out = view_slot(eager_out);
    add(
        "eager " + m.describe() + " (not lowered: allocates per run)", in, out,
        [&m, want](const Tensor& xin, Tensor& y) { y = m.forward(xin.dtype() == want ? xin : xin.to(want)); }, true);
    return out;
  }
};

// ---------------------------------------------------------------- memory planning

// The lowering gave every step's output a buffer of its own. Most die young: a
// step's input is dead once its last reader has run. So, walking the steps in
// order, each output takes a free buffer that is large enough (the smallest
// such) or a new one, and every slot whose last reader has just run gives its
// buffer back — the way eager's allocator recycles a freed activation, but
// decided once. Fewer, hotter buffers: at batch 1 a small model's activations
// then stay in L1/L2 beside its weights.
void Plan::share_buffers() {
  const int n = static_cast<int>(slots_.size());
  std::vector<bool> owns(n, false);  // a buffer the lowering allocated (not the input, a view or an eager result)
  for (const Step& s : steps_) owns[s.out] = !s.eager && !s.what.starts_with("flatten");
  // A view keeps its source alive: slot k's buffer is read until the last reader of k or of any view of k.
  std::vector<int> root(n);
  for (int k = 0; k < n; ++k) root[k] = k;
  for (const Step& s : steps_)
    if (s.what.starts_with("flatten")) root[s.out] = root[s.in];
  std::vector<int> last_use(n, -1);
  for (int i = 0; i < static_cast<int>(steps_.size()); ++i) last_use[root[steps_[i].in]] = i;
  last_use[root[output_]] = static_cast<int>(steps_.size());  // the result outlives the run

  struct Buffer {
    Tensor storage;  // 1-D, its dtype's elements
    bool free = true;
  };
  std::vector<Buffer> pool;
  std::vector<int> held(n, -1);  // slot -> pool index
  for (int i = 0; i < static_cast<int>(steps_.size()); ++i) {
    const int out = steps_[i].out;
    if (owns[out]) {
      const Tensor& want = slots_[out];
      int best = -1;
      for (int b = 0; b < static_cast<int>(pool.size()); ++b)
        if (pool[b].free && pool[b].storage.dtype() == want.dtype() && pool[b].storage.numel() >= want.numel() &&
            (best < 0 || pool[b].storage.numel() < pool[best].storage.numel()))
          best = b;
      if (best < 0) {
        pool.push_back({empty({want.numel()}, {.dtype = want.dtype()}), true});
        best = static_cast<int>(pool.size()) - 1;
      }
      pool[best].free = false, held[out] = best;
      const Tensor flat = pool[best].storage.narrow(0, 0, want.numel());  // a channels-last slot stays one
      slots_[out] = stored_channels_last(want) ? channels_last_view(flat, want.shape()) : flat.view(want.shape());
    }
    for (int k = 0; k < n; ++k)
      if (held[k] >= 0 && last_use[k] == i) pool[held[k]].free = true, held[k] = -1;
  }
  shared_buffers_ = 0;
  for (const Buffer& b : pool)
    shared_buffers_ += b.storage.numel() * static_cast<int64_t>(element_size(b.storage.dtype()));
  buffer_count_ = static_cast<int64_t>(pool.size());
}

// ---------------------------------------------------------------- Plan

Tensor Plan::run(const Tensor& x) {
  MINIDL_CHECK(x.defined() && x.shape() == input_shape_ && x.dtype() == input_dtype_ && x.device() == device_,
               "plan: built for input {} {} on {}, got {} {} on {}: compile the model again for this shape",
               input_shape_, input_dtype_, device_, x.defined() ? shape_str(x.shape()) : "an undefined tensor",
               x.defined() ? x.dtype() : input_dtype_, x.defined() ? x.device() : kCPU);
  NoGradGuard no_grad;
  if (graph_) {  // the captured forward reads its input buffer: fill it, replay
    slots_[0].copy_(x);
    static_cast<cuda::Graph*>(graph_.get())->replay();
    return slots_[output_];
  }
  slots_[0] = x.contiguous();
  for (Step& s : steps_) s.run(slots_[s.in], slots_[s.out]);
  return slots_[output_];
}

std::vector<std::pair<std::string, double>> Plan::profile(const Tensor& x, int reps) {
  run(x);
  NoGradGuard no_grad;
  if (graph_) {  // one step, timed on the device
    std::vector<double> t;
    for (int r = 0; r < std::max(reps, 1); ++r) t.push_back(cuda::time_with_events([&] { run(x); }));
    std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
    return {{steps_.front().what, t[t.size() / 2]}};
  }
  std::vector<std::pair<std::string, double>> out;
  for (Step& s : steps_) {
    std::vector<double> t;
    for (int r = 0; r < std::max(reps, 1); ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      s.run(slots_[s.in], slots_[s.out]);
      t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
    out.emplace_back(s.what, t[t.size() / 2]);
  }
  return out;
}

int64_t Plan::buffer_bytes() const {
  int64_t b = shared_buffers_;
  for (const Tensor& t : owned_) b += t.numel() * static_cast<int64_t>(element_size(t.dtype()));
  return b;
}

int64_t Plan::eager_steps() const {
  return std::count_if(steps_.begin(), steps_.end(), [](const Step& s) { return s.eager; });
}

std::string Plan::describe() const {
  if (graph_)
    return fmt::format("plan for input {} {} on {}: the eager forward as one CUDA graph ({} nodes), replayed with "
                       "one launch\n",
                       input_shape_, input_dtype_, device_, graph_nodes_);
  std::string s = fmt::format("plan for input {} {}: {} steps\n", input_shape_, input_dtype_, steps_.size());
  for (size_t i = 0; i < steps_.size(); ++i) {
    const Tensor& out = slots_[steps_[i].out];
    s += fmt::format("  {:>2}. {}  -> {}{}\n", i + 1, steps_[i].what, out.shape(),
                     stored_channels_last(out) ? " channels last" : "");
  }
  s += fmt::format(
      "activations: {} shared buffers, {:.1f} KiB; with packed weights and scratch {:.1f} KiB, allocated once\n",
      buffer_count_, shared_buffers_ / 1024.0, buffer_bytes() / 1024.0);
  if (eager_steps() > 0) s += fmt::format("{} step(s) run eagerly (not lowered)\n", eager_steps());
  return s;
}

// A GPU plan: the eager forward, run once uncaptured (the index checks, cuBLAS's
// and the allocator's first calls), then captured on a static input buffer.
Plan Plan::cuda_graph(nn::Module& model, const Tensor& example) {
  NoGradGuard no_grad;
  Plan plan;
  plan.input_shape_ = example.shape();
  plan.input_dtype_ = example.dtype();
  plan.device_ = example.device();
  plan.slots_.push_back(example.contiguous().clone());  // the graph's input buffer
  const Tensor eager = model.forward(example).clone();
  plan.slots_.push_back(Tensor());
  auto graph = std::make_shared<cuda::Graph>([&] { plan.slots_[1] = model.forward(plan.slots_[0]); });
  plan.graph_nodes_ = graph->nodes();
  plan.graph_ = graph;
  plan.output_ = 1;
  plan.steps_.push_back({.what = "CUDA graph of the eager forward", .in = 0, .out = 1, .eager = false, .run = {}});
  const Tensor got = plan.run(example);
  MINIDL_CHECK(got.shape() == eager.shape(), "compile: the graph gives {} but eager {}", got.shape(), eager.shape());
  const double err = max(abs(sub(got.to(DType::f64), eager.to(DType::f64)))).item();
  const double scale = max(abs(eager.to(DType::f64))).item();
  MINIDL_CHECK(err <= 1e-5 * scale + 1e-6, "compile: the graph's replay differs from eager by {:.3g} (|value| {:.3g})",
               err, scale);
  return plan;
}

Plan compile(nn::Module& model, const Tensor& example, const CompileOptions& options) {
  MINIDL_CHECK(example.defined() && example.dim() >= 1, "compile: the example input is undefined or a scalar");
  MINIDL_CHECK(!model.is_training(),
               "compile: the model is in training mode; a plan is for inference (call model.eval() first)");
  for (const auto& [name, t] : model.named_parameters())
    MINIDL_CHECK(t.device() == example.device(), "compile: parameter '{}' is on {} but the example on {}", name,
                 t.device(), example.device());
  if (example.device().is_cuda()) return Plan::cuda_graph(model, example);
  NoGradGuard no_grad;
  Plan plan;
  plan.input_shape_ = example.shape();
  plan.input_dtype_ = example.dtype();
  plan.device_ = example.device();
  plan.slots_.push_back(example.contiguous());
  bool f64 = example.dtype() == DType::f64;
  for (const auto& [name, t] : model.named_parameters()) f64 |= t.dtype() == DType::f64;
  Lowering lower(plan, f64, options.channels_last);
  Tensor eager = example;
  std::vector<ModulePtr> top;
  if (auto* s = dynamic_cast<nn::Sequential*>(&model))
    for (const auto& [name, child] : s->children()) top.push_back(child);
  else
    top.push_back(std::shared_ptr<Module>(&model, [](Module*) {}));  // not owned: the caller's model
  const int out = lower.channels_first(lower.sequence(top, 0, eager));
  plan.output_ = plan.slots_[out].dtype() == DType::bf16 ? lower.as_f32(out) : out;  // bf16 logits come out f32
  plan.share_buffers();

  // The plan must give eager's answer on the example: to rounding where
  // everything is f32 (BatchNorm folding rounds differently), to bf16's or
  // int8's precision otherwise (eager bf16 rounds every layer's output to bf16;
  // the plan keeps f32 between non-GEMM layers).
  const Tensor got = plan.run(example).clone();
  const Tensor want = eager.to(got.dtype());
  MINIDL_CHECK(got.shape() == want.shape(), "compile: the plan gives {} but eager {} (a lowering bug)", got.shape(),
               want.shape());
  // (f64 runs eagerly, so it is held to the f32 bound too, and meets it exactly.)
  bool exact_dtypes = true;
  for (const auto& [name, t] : model.state_dict()) exact_dtypes &= t.dtype() != DType::bf16;
  exact_dtypes &= !compress::is_quantized(model) && example.dtype() != DType::bf16;
  const std::vector<double> g = got.to(DType::f64).to_vector<double>(), w = want.to(DType::f64).to_vector<double>();
  double err = 0, scale = 0;
  for (size_t i = 0; i < g.size(); ++i)
    err = std::max(err, std::abs(g[i] - w[i])), scale = std::max(scale, std::abs(w[i]));
  if (exact_dtypes) {
    MINIDL_CHECK(err <= 1e-4 * scale + 1e-5,
                 "compile: the plan's output differs from eager's by {:.3g} (largest |value| {:.3g}): a lowering "
                 "bug\n{}",
                 err, scale, plan.describe());
  } else {
    const double snr = sqnr_db(want, got);
    MINIDL_CHECK(snr >= 30, "compile: the plan's output is {:.1f} dB from eager's (need >= 30): a lowering bug\n{}",
                 snr, plan.describe());
  }
  return plan;
}

}  // namespace minidl
