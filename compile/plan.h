// compile/plan.h — a model lowered once into a static plan for inference.
//
//   NoGradGuard no_grad;
//   Plan plan = compile(*model, example);   // example: one input of the shape to serve
//   Tensor logits = plan.run(x);            // x: the example's shape and dtype
//   std::cout << plan.describe();           // the steps, what each fused, the buffers
//
// Eager execution walks the module tree on every call: it allocates each
// activation, records autograd bookkeeping (even if only to skip it), re-packs
// each weight for the GEMM, and runs BatchNorm as its own pass. A plan does all
// of that once, at compile time, for one input shape:
//   - activation buffers are allocated once and reused by every run — and
//     shared between steps whose values are not alive at once (share_buffers);
//   - Linear (+ ReLU) becomes one GEMM against a weight packed once (f32 in
//     ops/cpu/gemm_packed.cpp, bf16 in gemm_bf16.cpp, int8 as QuantLinear packed
//     it), the bias and ReLU in its epilogue;
//   - Conv2d + BatchNorm2d (+ ReLU) becomes one convolution: the BatchNorm's
//     affine map folded into the conv's weight and bias (w' = w·γ/σ,
//     b' = (b − μ)·γ/σ + β), the ReLU fused into the pass that writes it, and
//     a MaxPool2d after it pooling each output plane in that pass, while the
//     plane is in cache (the full-size output is never written);
//   - a ResidualBlock runs as one unit (both folded convs, the shortcut, the
//     add and the ReLU in one pass);
//   - Flatten is a view and Dropout (eval) disappears;
//   - between int8 convolutions the activations stay channels last, (N, H, W, C):
//     the layout the int8 convolution quantizes its input into and computes its
//     output in, so neither end transposes (CompileOptions::channels_last).
// A layer the lowering does not know (a sparse or a user's own layer) runs
// eagerly inside the plan, and describe() says so; the plan then refers to the
// model, which must outlive it. An f64 model or input runs every layer eagerly:
// the lowered kernels are f32, bf16 and int8.
//
// compile() checks the plan against eager on the example before returning it.
// run() on any other shape or dtype is an error naming both (compile again for
// that shape). The tensor run() returns is the plan's output buffer: the next
// run overwrites it (clone() to keep it).
//
// On a GPU (model and example on cuda:N) the plan is the eager forward captured
// once as a CUDA graph (cuda::Graph): every kernel launch of the forward, with
// its buffers, replayed by one launch — what the CPU plan saves by fusing and
// allocating once, the GPU saves mostly by not launching each kernel from the
// host. run() copies x into the graph's input buffer and replays; it does not
// wait for the GPU (reading the result does).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "nn/module.h"

namespace minidl {

struct CompileOptions;

class Plan {
 public:
  // Runs every step on x; x must have the example's shape, dtype and device.
  Tensor run(const Tensor& x);
  // One line per step: what it runs, the fusions, its kernel; then the buffers.
  std::string describe() const;
  const Shape& input_shape() const { return input_shape_; }
  int64_t steps() const { return static_cast<int64_t>(steps_.size()); }
  int64_t buffer_bytes() const;
  int64_t activation_buffers() const { return buffer_count_; }  // after sharing
  // Where the time goes: runs the plan on x once, then each step alone `reps`
  // times on the inputs the first run left in place; (step, median seconds).
  std::vector<std::pair<std::string, double>> profile(const Tensor& x, int reps = 20);
  // How many steps run a layer eagerly (0 when everything was lowered).
  int64_t eager_steps() const;

 private:
  friend class Lowering;
  friend Plan compile(nn::Module& model, const Tensor& example, const CompileOptions& options);
  static Plan cuda_graph(nn::Module& model, const Tensor& example);  // a GPU plan
  struct Step {
    std::string what;  // "linear 784->512 +relu [f32-packed-avx512]"
    int in = 0, out = 0;
    bool eager = false;
    std::function<void(const Tensor& in, Tensor& out)> run;
  };
  Shape input_shape_;
  DType input_dtype_ = DType::f32;
  Device device_;                     // where the plan runs
  std::shared_ptr<void> graph_;       // a GPU plan's cuda::Graph (compile/plan.cpp)
  int64_t graph_nodes_ = 0;
  std::vector<Tensor> slots_;  // slot 0 is the input; the rest are buffers (or views)
  std::vector<Step> steps_;
  std::vector<Tensor> owned_;  // weights and scratch the steps hold, for buffer_bytes()
  int output_ = 0;
  int64_t shared_buffers_ = 0, buffer_count_ = 0;  // the activations' buffers after share_buffers()
  void share_buffers();
};

struct CompileOptions {
  // Keep activations channels last between int8 convolutions (residual blocks,
  // a global average pool included). Off: every step's output is (N, C, H, W),
  // as in eager — the same values, bit for bit; for comparing the two.
  bool channels_last = true;
};

// Lowers `model` (eval mode, CPU, f32 or bf16 or int8 layers) for inputs shaped
// like `example`, or on a GPU captures its forward as a CUDA graph, and checks
// the plan's output on the example against eager's.
Plan compile(nn::Module& model, const Tensor& example, const CompileOptions& options = {});

}  // namespace minidl
