// tools/bench/commands.h — the `minidl bench ...` subcommands.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace minidl::bench {

struct CommonOptions {
  bool json = false;
  bool markdown = false;
  bool csv = false;
  double min_seconds = 0.5;
  int min_runs = 10;
  int warmup = 3;
  bool cold = false;  // flush the caches (a 64 MiB sweep; on a GPU the L2) before every timed run
  std::string device = "cpu";  // cpu, cuda or cuda:N (the benchmarks that run on a GPU)
  bool graph = false;          // also time the call captured as a CUDA graph (train-step)
  std::string json_out = "";   // also write the JSON object to this file (atomically), whatever is printed
};

// SGEMM at each "MxNxK" shape: minidl's packed kernel, its reference loop (with
// --reference) and OpenBLAS when the tool was built with it, interleaved.
int bench_gemm(const std::vector<std::string>& shapes, bool with_reference, const CommonOptions& o);

// On a GPU (tools/bench/cuda.cpp, timed with CUDA events): cuBLAS strict fp32,
// cuBLAS TF32 and every hand-written SGEMM version, as TFLOP/s, the best
// hand-written one's share of cuBLAS, and cuBLAS's share of the fp32 peak.
int bench_gemm_cuda(const std::vector<std::string>& shapes, const CommonOptions& o);
// The fused cross_entropy (log_softmax + NLL) forward + backward on a GPU
// against the composed ops and a device-to-device copy of the logits.
int bench_loss_cuda(const std::vector<std::string>& shapes, const CommonOptions& o);

// One training step (forward, backward, AdamW) of a zoo model on fixed batches of
// Fashion-MNIST (the first `batches` of the training set, in order).
int bench_train_step(const std::string& model, int64_t batch, int64_t batches, const std::string& data_dir, bool raw,
                     const CommonOptions& o);

// Inference latency of a zoo model (eval mode, no autograd graph) at each batch
// size, on real images; warm (the same batch again) or, with --cold (as every
// bench), with the caches flushed before every run.
// With int8, the model with every Linear int8 dynamic is timed beside the f32 one, interleaved.
int bench_infer(const std::string& model, const std::vector<int64_t>& batch_sizes, const std::string& data_dir,
                bool raw, const CommonOptions& o, bool int8 = false);

// conv2d forward and forward + backward (input, weight, bias gradients) at each
// "NxCxHxW:OxK[:sS][:pP]" shape (e.g. 128x32x14x14:64x3:p1), in GFLOP/s.
int bench_conv(const std::vector<std::string>& shapes, const CommonOptions& o);
// --int8: f32 against the int8 convolution of dynamic quantization, forward, interleaved.
int bench_conv_int8(const std::vector<std::string>& shapes, const CommonOptions& o);
// --direct: a first layer's f32 convolution, the direct kernel writing channels
// last against im2col + GEMM (and that plus the transpose to channels last).
int bench_conv_direct(const std::vector<std::string>& shapes, const CommonOptions& o);

// The fused losses against the same loss composed from ops, forward + backward,
// interleaved, at each "NxC" shape: cross_entropy vs nll_loss(log_softmax), and
// kl_div_logits vs kl_div(log_softmax(s/T), softmax(t/T)), and distillation_loss vs
// α T² kl_div(log_softmax(s/T), softmax(t/T)) + (1 − α) cross_entropy (and vs
// kl_div_logits + cross_entropy, the two fused pieces added).
int bench_loss(const std::vector<std::string>& shapes, const CommonOptions& o);

// Single ops the training step spends time in (2×2 max pooling, full sum and
// max, ReLU) and the mlp's 256 → 10 head, whose time at batch 1 is mostly an
// op's fixed cost; each checked against f64 and timed alone, with the bandwidth.
int bench_ops(int64_t batch, const CommonOptions& o);

// The sparse sweep (tools/bench/sparse.cpp): dense against CSR, BSR and the
// structurally shrunk layer, over sparsities, shapes and batch sizes. Empty
// lists take the full grid (or the reduced one with quick).
struct SparseSweepOptions {
  bool quick = false;
  std::vector<std::string> shapes;  // "OUTxIN" (a Linear) or "convOUTxINxPOSITIONS"
  std::vector<int64_t> batches;
  std::vector<double> sparsities;    // fractions in [0, 1]
  std::vector<std::string> formats;  // "csr", "bsr4x4", ...
  std::vector<std::string> weights;  // checkpoints whose weights give the magnitude pattern
  std::string out;                   // also write the JSON here (atomically)
};
int bench_sparse(const SparseSweepOptions& s, const CommonOptions& o);
// The same question on a GPU (--device cuda): Linear shapes, CSR through the
// hand-written kernel and cuSPARSE, against cuBLAS dense and the shrunk layer.
int bench_sparse_cuda(const SparseSweepOptions& s, const CommonOptions& o);

// One classifier as every variant minidl makes of it (tools/bench/classifier.cpp):
// fp32 eager, int8 dynamic, and rows from checkpoints (a pruned model run as
// CSR, a channel-pruned one, a distilled student) — accuracy, size, and latency
// at each batch size interleaved, with a verdict per speed-up.
struct ClassifierOptions {
  std::string model = "mlp";  // a zoo name (runs/NAME.safetensors if trained there) or a checkpoint
  std::vector<int64_t> batches = {1, 32, 256};
  std::string sparse, shrunk, student;                         // optional checkpoints for those rows
  std::string data_dir = "/usr/share/datasets/fashion-mnist";  // nn::kFashionMnistDir
  int64_t limit_test = 0;
};
int bench_classifier(const ClassifierOptions& c, const CommonOptions& o);

}  // namespace minidl::bench
