// ops/cpu/kernels.h — every CPU kernel minidl has, declared in one place.
//
// Kernels take TensorArg (pointer + dtype + shape + strides), never Tensor, and
// never allocate their outputs: the op layer (ops/*.cpp) checks shapes, allocates,
// and calls in here. Shapes in comments: N batch, C channels/classes, H W spatial.
#pragma once

#include <cstdint>

#include "core/kernel_arg.h"
#include "ops/kernel_types.h"
#include "ops/quant_math.h"

namespace minidl {
class Generator;
}

namespace minidl::cpu {

// dst (any strides) := src (same shape, any strides, any dtype; converts).
void copy(const TensorArg& dst, const TensorArg& src);
void fill(const TensorArg& dst, double value);
// dst := uniform[lo, hi) or normal(mean, std) or integers in [lo, hi), in row-major order.
void fill_uniform(const TensorArg& dst, double lo, double hi, Generator& gen);
void fill_normal(const TensorArg& dst, double mean, double std, Generator& gen);
void fill_randint(const TensorArg& dst, int64_t lo, int64_t hi, Generator& gen);
// keep (contiguous, floating) := dropout's scale mask: element i is 1/(1 − p) when
// dropout_bits(key, i) ≥ dropout_keep_threshold(p) (core/philox.h), else 0. A pure
// function of (key, i): the CUDA twin writes the same mask.
void dropout_mask(const TensorArg& keep, double p, uint64_t key);

// out (contiguous) := op(x). x has out's shape, any strides, out's dtype.
void unary(UnaryOp op, const TensorArg& out, const TensorArg& x, double a, double b);
// out := op(x, y). x and y are broadcast to out's shape already (stride 0) and share
// one dtype; out has that dtype, or bool for comparisons.
void binary(BinaryOp op, const TensorArg& out, const TensorArg& x, const TensorArg& y);
// out := cond ? x : y, all broadcast to out's shape.
void where(const TensorArg& out, const TensorArg& cond, const TensorArg& x, const TensorArg& y);

// x (rows, cols) contiguous -> values (rows), indices (rows, int64, may be null for
// sum/logsumexp/var). var divides by (cols - correction).
void reduce_rows(ReduceOp op, const TensorArg& values, const TensorArg& indices, const TensorArg& x,
                 double correction);

// C (M, N) := alpha * A (M, K) · B (K, N) + beta * C. Any strides on A and B (a
// transposed operand is just swapped strides); C has unit column stride. beta = 0
// overwrites C without reading it. `best` picks the fastest kernel this CPU runs
// (f32: packed AVX-512 or AVX2; f64: the reference loop; either, with at most 4
// rows, the small-M path that skips packing); tests name each one.
enum class GemmKernel { best, reference, generic, avx2, avx512, small_m };
// `epilogue` (ops/kernel_types.h): bias and ReLU applied per tile after the product.
void gemm(int64_t M, int64_t N, int64_t K, double alpha, const TensorArg& A, const TensorArg& B, double beta,
          const TensorArg& C, GemmKernel kernel = GemmKernel::best, const GemmEpilogue& epilogue = {});
bool gemm_kernel_supported(GemmKernel kernel);
const char* gemm_kernel_name(GemmKernel kernel);

// ---- f32 against a weight packed ahead of time (ops/cpu/gemm_packed.cpp)

// W (N, K) f32, row stride ldw, into gemm_packed_f32_elements(N, K) floats:
// 16-column panels, one f32 per lane per k.
int64_t gemm_packed_f32_elements(int64_t N, int64_t K);
void gemm_packed_f32_pack(const float* w, int64_t ldw, int64_t N, int64_t K, float* packed);
// y (M, N) = act(x (M, K) · Wᵀ + bias), all f32.
struct PackedGemmArgs {
  int64_t M = 0, N = 0, K = 0;
  const float* x = nullptr;  // (M, K), row stride ldx
  int64_t ldx = 0;
  const float* w_packed = nullptr;  // gemm_packed_f32_pack's layout
  const float* bias = nullptr;      // (N) or null
  bool relu = false;
  float* y = nullptr;  // (M, N), row stride ldy
  int64_t ldy = 0;
};
// The AVX-512 kernel where the path allows it (gemm_packed_f32_fast), else the
// reference loop over the same layout (also with force_reference, for tests).
void gemm_packed_f32(const PackedGemmArgs& args, bool force_reference = false);
bool gemm_packed_f32_fast();

// ---- bf16 (ops/cpu/gemm_bf16.cpp)

// W (N, K) bf16 bits, row stride ldw, into gemm_bf16_packed_elements(N, K)
// elements of the bf16 GEMM's layout (pairs of k per 32-bit lane, 16-column panels).
int64_t gemm_bf16_packed_elements(int64_t N, int64_t K);
void gemm_bf16_pack_weight(const uint16_t* w, int64_t ldw, int64_t N, int64_t K, uint16_t* packed);
// The same layout for Bᵀ, from B (K, N) f32, row stride ldb, rounded to bf16 on
// the way: the bf16 convolution packs its im2col columns with it.
void gemm_bf16_pack_columns(const float* b, int64_t ldb, int64_t K, int64_t N, uint16_t* packed);

// y (M, N) = act(x (M, K) · Wᵀ + bias): bf16 x and W, f32 sums, y f32 (y) or bf16 (y_bf16).
struct Bf16GemmArgs {
  int64_t M = 0, N = 0, K = 0;
  const uint16_t* x = nullptr;  // bf16 bits (M, K), row stride ldx
  int64_t ldx = 0;
  const uint16_t* w_packed = nullptr;  // gemm_bf16_pack_weight's layout
  const uint16_t* w = nullptr;         // or, for the small_m kernel, W as stored: (N, K), row stride ldw
  int64_t ldw = 0;
  const float* bias = nullptr;         // (N) or null
  bool relu = false;
  float* y = nullptr;           // one of y and y_bf16, row stride ldy
  uint16_t* y_bf16 = nullptr;
  int64_t ldy = 0;
};
// `best`: the AMX tiles where the CPU has them, else vdpbf16ps or the AVX-512
// converting kernel (whichever is faster on the core: gemm_bf16.cpp), else the
// reference loop; MINIDL_BF16_GEMM overrides. Tests run each this CPU has.
// `small_m` reads W as stored (args.w), for a few rows of x: eager linear
// layers at batch ≤ kBf16SmallM take it and skip packing; `best` never does.
enum class Bf16GemmKernel { best, reference, avx512_cvt, avx512_bf16, amx, small_m };
inline constexpr int64_t kBf16SmallM = 4;
void gemm_bf16(const Bf16GemmArgs& args, Bf16GemmKernel kernel = Bf16GemmKernel::best);
bool gemm_bf16_kernel_supported(Bf16GemmKernel kernel);
const char* gemm_bf16_kernel_name(Bf16GemmKernel kernel);
// Whether this CPU (on the path in use) has bf16 instructions, AVX512_BF16 or
// AMX-BF16 (false: every bf16 GEMM is a converting one, slower than f32).
bool gemm_bf16_is_native();
// Whether the bf16 GEMM `best` picks does more multiply-adds per second than the
// f32 GEMM: the AMX tiles, or vdpbf16ps where it issues at the FMA rate (not on
// Intel's AVX-512 cores, where the converting kernel, at the f32 rate, is
// chosen). bf16 convolutions (eager and compiled) take the bf16 GEMM only then.
bool gemm_bf16_outruns_f32();

// ---- int8 dynamic quantization (ops/cpu/qgemm.cpp)

// x ≈ scale · (q − zero_point), q in [0, 255]: an activation tensor's range,
// chosen per call from its minimum and maximum (always including 0); the
// formulas, shared with the GPU, are in ops/quant_math.h.
using minidl::QuantParams;
// x (M, K) f32, row stride ldx. Throws when x holds NaN or infinity.
QuantParams choose_quant_params(const float* x, int64_t M, int64_t K, int64_t ldx);
// out (M, qgemm_padded_k(K)) u8, row stride ldo := round(x / scale) + zero_point, clamped;
// the padding columns hold the zero point.
void quantize_rows_u8(const float* x, int64_t M, int64_t K, int64_t ldx, QuantParams q, uint8_t* out, int64_t ldo);
// out[i] := x[i] quantized the same way, for n contiguous values, nothing padded.
void quantize_span_u8(const float* x, int64_t n, QuantParams q, uint8_t* out);

// The int8 weight layout (qgemm.cpp's header): W (N, K) int8 row-major into
// `packed` (qgemm_packed_bytes(N, K) bytes), and each row's sum into row_sums (N).
int64_t qgemm_packed_bytes(int64_t N, int64_t K);
int64_t qgemm_padded_k(int64_t K);  // K rounded up to a multiple of 4
void qgemm_pack_weight(const int8_t* w, int64_t N, int64_t K, int8_t* packed, int32_t* row_sums);

// Where the int8 GEMM finds row m of x, when not at x + m·ldx: an implicit
// convolution (qconv.cpp) reads its patches in place, in the quantized image.
// Row m is the output position (b, r, c) = (m / (rows·cols), m / cols mod rows,
// m mod cols) and starts at x + b·block_stride + r·row_stride + c·ldx; its K
// bytes are `segments` runs of K / segments (one kernel row each), run s at
// s·segment_stride from that start.
struct QGemmRowGrid {
  int64_t cols = 0;  // 0: no grid, row m at x + m·ldx
  int64_t rows = 1, row_stride = 0, block_stride = 0;
  int64_t segments = 1, segment_stride = 0;
  // Whether row m lies at x + m·ldx after all, one run each (a 1×1 convolution
  // at stride 1, unpadded): qgemm then reads plain rows, on any kernel.
  bool one_stride(int64_t ldx) const {
    return segments == 1 && row_stride == cols * ldx && block_stride == rows * row_stride;
  }
};

// y (M, N) f32 = act(x_scale·w_scale[n]·(Σ_k x[m,k]·W[n,k] − x_zero_point·row_sums[n]) + bias[n]).
struct QGemmArgs {
  int64_t M = 0, N = 0, K = 0;
  const uint8_t* x = nullptr;  // (M, qgemm_padded_k(K)), row stride ldx; or on x_grid
  int64_t ldx = 0;
  QGemmRowGrid x_grid;  // with a grid, each run of K a whole number of groups of 4 bytes
  float x_scale = 1.0f;
  int32_t x_zero_point = 0;
  const int8_t* w_packed = nullptr;   // qgemm_pack_weight's layout
  const int32_t* w_row_sums = nullptr;  // (N)
  const float* w_scale = nullptr;       // (N)
  const float* bias = nullptr;          // (N) or null
  bool relu = false;
  float* y = nullptr;  // (M, N), row stride ldy
  int64_t ldy = 0;
};
// `best`: the AMX tiles (batches of 16 rows; the rest on AVX512-VNNI), else
// AVX512-VNNI, else AVX-VNNI, else AVX2, else the reference loop;
// MINIDL_INT8_GEMM overrides. All give the same integer sums (exact); tests run
// each this CPU has.
enum class QGemmKernel { best, reference, avx2, avx_vnni, avx512_vnni, amx };
void qgemm(const QGemmArgs& args, QGemmKernel kernel = QGemmKernel::best);
// What the AMX tiles of every thread multiply per second, int8 (tdpbusd) or bf16
// (tdpbf16ps), measured on registers alone (no memory); 0 without usable AMX.
double amx_peak_macs_per_second(bool bf16);
bool qgemm_kernel_supported(QGemmKernel kernel);
const char* qgemm_kernel_name(QGemmKernel kernel);
QGemmKernel qgemm_best_kernel();  // what `best` is on this CPU (after MINIDL_INT8_GEMM)
// Whether the kernel reads x on a QGemmRowGrid: all but AMX, whose tiles load
// rows of x at one stride (a grid whose rows are one stride apart runs on any).
bool qgemm_reads_grid(QGemmKernel kernel);

// The int8 convolution of dynamic quantization (ops/cpu/qconv.cpp), groups = 1:
// x quantized to u8 (channels last) from its range in this call, qgemm over the
// output positions' patches of K = kh·kw·C bytes in that order — read in place
// in the quantized image, or gathered into rows where the kernel or shape cannot
// — against the weight packed from (O, kh, kw, C) with the scale, bias and ReLU
// (params.relu) in its epilogue, then transposed into y (N, O, Hy, Wy) — max
// pooled first when max_pool is set (y then holds the pooled size). Throws when x
// holds NaN or infinity, as quantized_linear does. x and y may each be stored
// channels last instead, (N, H, W, C) and (N, Hy, Wy, O): a compiled plan chains
// int8 convolutions that way, with no transpose between them (compile/plan.cpp).
enum class QConvPatches { best, gathered };  // gathered: always into rows (tests, `bench conv`)
struct QConv2dArgs {
  const float* x = nullptr;  // (N, C, H, W) contiguous, or (N, H, W, C) if x_channels_last
  bool x_channels_last = false;
  int64_t N = 0, C = 0, H = 0, W = 0;
  int64_t O = 0, kernel_h = 0, kernel_w = 0;
  Conv2dParams params{1, 1, 0, 0, 1, 1, 1, false};
  const int8_t* w_packed = nullptr;     // qgemm_pack_weight of (O, kh·kw·C)
  const int32_t* w_row_sums = nullptr;  // (O)
  const float* w_scale = nullptr;       // (O)
  const float* bias = nullptr;          // (O) or null
  const Pool2dParams* max_pool = nullptr;
  float* y = nullptr;  // (N, O, Hy, Wy) contiguous, or (N, Hy, Wy, O) if y_channels_last
  int64_t Hy = 0, Wy = 0;
  bool y_channels_last = false;
  QGemmKernel kernel = QGemmKernel::best;
  QConvPatches patches = QConvPatches::best;
};
void qconv2d(const QConv2dArgs& args);

// C (rows, n) := W (rows, cols) · B (cols, n) for a sparse W (CSR or BSR,
// ops/kernel_types.h), then the epilogue (its bias one value per row of C, and
// ReLU). B and C are f32 with unit column stride. Each kernel is vectorised over
// B's columns (the batch, or a convolution's output positions); n == 1 is the
// matrix-vector product, which gathers B instead: with the gather instruction
// (avx2, avx512), with scalar loads (the *_loads kernels, the same otherwise),
// or from the panel layout (avx512_panels: w.panels must be set at n == 1).
// `best` is this CPU's fastest (AVX-512, else AVX2 for CSR; the reference loop
// otherwise; at batch 1 the panels where w has them, else gathers on Intel and
// loads elsewhere; MINIDL_SPMV=gathers|loads|panels overrides that batch-1
// choice for benchmarks); tests name each.
enum class SpmmKernel { best, reference, avx2, avx512, avx2_loads, avx512_loads, avx512_panels };
void spmm(const SparseMatrixArg& w, const TensorArg& B, const TensorArg& C, const GemmEpilogue& epilogue = {},
          SpmmKernel kernel = SpmmKernel::best);
// What the panel layout of a CSR matrix would be, counted before it is built,
// beside the CSR it would stand in for: spmv_panels_pay says whether `best`
// should run batch 1 from it (a cost model measured on Zen 5, ops/cpu/spmm.cpp;
// MINIDL_SPMV=panels says yes, gathers or loads no).
struct PanelPlan {
  int64_t rows = 0, nnz = 0, csr_bytes = 0;
  int64_t steps = 0, slice_panels = 0, panel_bytes = 0;  // steps of 16 slots, padding included
};
bool spmv_panels_pay(const PanelPlan& plan);
// Whether this CPU and this build run `kernel` for a matrix shaped like w (the
// AVX2 kernels are CSR only), and its name for tables.
bool spmm_kernel_supported(SpmmKernel kernel, const SparseMatrixArg& w);
const char* spmm_kernel_name(SpmmKernel kernel, const SparseMatrixArg& w);

// conv2d with a sparse weight W (O, C·kh·kw) (groups = 1): per sample, im2col
// then spmm straight into y[n] (O, Ho·Wo) — the im2col layout is the one the
// sparse kernel vectorises over, so nothing is transposed. x (N, C, H, W) and y
// contiguous f32, bias (O) or null data.
void sparse_conv2d_forward(const TensorArg& y, const TensorArg& x, const SparseMatrixArg& w, const TensorArg& bias,
                           int64_t kernel_h, int64_t kernel_w, const Conv2dParams& p);

// x (N, C, H, W), w (O, C/groups, kh, kw), bias (O) or null data -> y (N, O, Ho, Wo). All contiguous.
// w may be bf16 (with x f32: a bf16 conv2d, eager or compiled), for the bf16 GEMM.
// With max_pool (inference: the compiled plan's conv+relu+pool step), y is the
// convolution's output (after the bias and a fused ReLU) max-pooled by that window,
// (N, O, Hp, Wp), pooled plane by plane while each is in cache (pool_plane.h).
void conv2d_forward(const TensorArg& y, const TensorArg& x, const TensorArg& w, const TensorArg& bias,
                    const Conv2dParams& p, const Pool2dParams* max_pool = nullptr);
// A first layer's convolution (few input channels: the plan takes it up to a
// patch of kDirectConvMaxPatch values), computed channels last:
// y (N, Hy, Wy, O) := act(conv2d(x, w) + bias), max pooled when max_pool is set
// (y then holds the pooled size), or stored (N, O, Hy, Wy) with y_channels_first. x (N, C, H, W) and w (O, C, kh, kw)
// contiguous f32, groups = 1, bias (O) or null. An implicit GEMM over output
// positions in AVX-512 registers where conv2d_direct_fast (ops/cpu/conv_direct.cpp),
// else (and with force_reference) the same sums one at a time.
inline constexpr int64_t kDirectConvMaxPatch = 64;  // measured faster up to 144 (`minidl bench conv --direct`)
struct DirectConvArgs {
  const float* x = nullptr;
  int64_t N = 0, C = 0, H = 0, W = 0, O = 0, kernel_h = 0, kernel_w = 0;
  Conv2dParams params{1, 1, 0, 0, 1, 1, 1, false};
  const float* w = nullptr;
  const float* bias = nullptr;
  const Pool2dParams* max_pool = nullptr;
  float* y = nullptr;  // (N, Hy, Wy, O); or (N, O, Hy, Wy) if y_channels_first
  int64_t Hy = 0, Wy = 0;
  bool y_channels_first = false;  // each sample transposed from cache as it is stored
};
void conv2d_direct(const DirectConvArgs& args, bool force_reference = false);
bool conv2d_direct_fast();
// What both pooled convolutions (conv2d_forward, qconv2d with a max_pool) check:
// the window (positive sizes, padding at most half of it), and that y's Hy×Wy
// is the Ho×Wo convolution pooled by it; `op` names the kernel in the error.
void check_pooled_output(const char* op, const Pool2dParams& q, int64_t Ho, int64_t Wo, int64_t Hy, int64_t Wy);
// The convolution's own output size for an H×W input and a kh×kw kernel under p,
// checked (at least 1×1) and checked against y's Hy×Wy: that size, or with
// max_pool that size pooled (check_pooled_output). The inference kernels that
// take y's size from their caller (qconv2d, conv2d_direct) start with it.
struct ConvOutputSize {
  int64_t Ho, Wo;
};
ConvOutputSize checked_conv_output(const char* op, int64_t H, int64_t W, int64_t kh, int64_t kw, const Conv2dParams& p,
                                   const Pool2dParams* max_pool, int64_t Hy, int64_t Wy);
// gy (N, O, Ho, Wo) -> gx (N, C, H, W), gw (O, C/groups, kh, kw) and gb (O) = gy summed
// over N, Ho, Wo; an output with null data is not computed. With relu_out (the
// forward's output y of a fused ReLU; null data otherwise) gy counts only where y > 0.
void conv2d_backward(const TensorArg& gx, const TensorArg& gw, const TensorArg& gb, const TensorArg& gy,
                     const TensorArg& x, const TensorArg& w, const TensorArg& relu_out, const Conv2dParams& p);

// x (N, C, H, W) contiguous -> y (N, C, Ho, Wo), and argmax (N·C·Ho·Wo values: the
// winner's h·W + w within its plane) unless argmax is null. Planes < 2³¹ elements.
void max_pool2d_forward(const TensorArg& y, int32_t* argmax, const TensorArg& x, const Pool2dParams& p);
void max_pool2d_backward(const TensorArg& gx, const TensorArg& gy, const int32_t* argmax);
void avg_pool2d_forward(const TensorArg& y, const TensorArg& x, const Pool2dParams& p);
void avg_pool2d_backward(const TensorArg& gx, const TensorArg& gy, const Pool2dParams& p);
// Output cell (i, j) averages rows [floor(i*H/Ho), ceil((i+1)*H/Ho)) and likewise columns.
void adaptive_avg_pool2d_forward(const TensorArg& y, const TensorArg& x);
void adaptive_avg_pool2d_backward(const TensorArg& gx, const TensorArg& gy);

// ---- channels last (ops/cpu/channels_last.cpp): activations stored (N, P, C),
// P = H·W pixels of C channels each, beside the usual (N, C, P). A compiled plan
// keeps the values between int8 convolutions that way (compile/plan.cpp).
// y (N, P, C) := x (N, C, P), and back. Transposes of 8×8 blocks in registers;
// samples in parallel, so one sample (N = 1) runs on the calling thread — what
// the convolutions' per-sample stores inside their own parallel loops rely on.
void to_channels_last(float* y, const float* x, int64_t N, int64_t C, int64_t P);
void to_channels_first(float* y, const float* x, int64_t N, int64_t C, int64_t P);
// y (N, P, C) := relu(y + s), s (N, C, P) channels first: a residual join whose
// two sides are stored differently, s transposed as it is read.
void add_relu_channels_last(float* y, const float* s, int64_t N, int64_t C, int64_t P);
// y (N, C, P) := relu(y + s), s (N, P, C) channels last: the same join the other way round.
void add_relu_channels_first(float* y, const float* s, int64_t N, int64_t C, int64_t P);
// One sample: y (Hy, Wy, C) := x (H, W, C) max pooled by p, each window's pixels
// (clipped to the plane: padding never wins) compared as rows of C values. As
// max_pool2d: NaN propagates. Serial: callers run samples on their threads.
void max_pool_channels_last(float* y, const float* x, int64_t H, int64_t W, int64_t C, const Pool2dParams& p,
                            int64_t Hy, int64_t Wy);
// y (N, C) := the mean of x (N, P, C) over its P pixels, summed in pixel order:
// bit for bit what adaptive_avg_pool2d_forward gives for a 1×1 output.
void global_avg_pool_channels_last(float* y, const float* x, int64_t N, int64_t C, int64_t P);

// Batch norm over x (N, C, L) contiguous; per-channel tensors are (C).
// mean, var := the channel's mean and biased variance.
void batch_norm_stats(const TensorArg& mean, const TensorArg& var, const TensorArg& x);
// y := (x - mean) · invstd · weight + bias (weight, bias may have null data).
void batch_norm_apply(const TensorArg& y, const TensorArg& x, const TensorArg& mean, const TensorArg& invstd,
                      const TensorArg& weight, const TensorArg& bias);
// Gradients for x (through the batch statistics when training), weight and bias;
// an output with null data is skipped.
void batch_norm_backward(const TensorArg& gx, const TensorArg& gw, const TensorArg& gb, const TensorArg& gy,
                         const TensorArg& x, const TensorArg& mean, const TensorArg& invstd, const TensorArg& weight,
                         bool training);

// x (rows, cols) contiguous -> y (rows, cols): softmax or log_softmax of each row.
void softmax_rows(const TensorArg& y, const TensorArg& x, bool log);
// The backward of softmax_rows from its output y, one pass per row:
//   softmax: gx = y ⊙ (g − Σ g y);   log_softmax: gx = g − exp(y) Σ g.
void softmax_rows_backward(const TensorArg& gx, const TensorArg& g, const TensorArg& y, bool log);

// Cross-entropy over the rows of logits (rows, C), fused: log-softmax, the pick of
// the target, class weights, ignore_index and label smoothing in one pass per row.
//   loss_r = (1 − ε) w_t (−log p_t) + ε/C Σ_c w_c (−log p_c)   (0 for an ignored row)
// Writes loss (rows) and lse (rows, 2: the row's max and log Σ exp(x − max), kept
// for the backward), and status (one int64): the first row whose target is out
// of range (its loss is left 0), or −1. The op raises the error from status.
void cross_entropy_rows(const TensorArg& loss, const TensorArg& lse, const TensorArg& logits, const TensorArg& target,
                        const TensorArg& weight, const CrossEntropyParams& p, const TensorArg& status);
// gx_r = scale_r · [(1 − ε) w_t (p − onehot_t) + ε/C (W p − w)], p = exp(x − max − log_sum),
// W = Σ_c w_c; scale is one value per row (stride 0 for a broadcast scalar).
void cross_entropy_rows_backward(const TensorArg& gx, const TensorArg& scale, const TensorArg& logits,
                                 const TensorArg& lse, const TensorArg& target, const TensorArg& weight,
                                 const CrossEntropyParams& p);

// KL(softmax(teacher / T) ‖ softmax(student / T)) over the rows of two (rows, C)
// logit matrices, fused: both log-softmaxes and the sum in one pass per row.
// Writes loss (rows) and lse (rows, 4: max and log-sum of the student's, then the
// teacher's, scaled logits) for the backward.
void kl_div_rows(const TensorArg& loss, const TensorArg& lse, const TensorArg& student, const TensorArg& teacher,
                 double temperature);
// gs = scale_r (p_s − p_t) / T and gt = scale_r p_t (log p_t − log p_s − KL_r) / T;
// either may be null (not wanted). loss is kl_div_rows' output.
void kl_div_rows_backward(const TensorArg& gs, const TensorArg& gt, const TensorArg& scale, const TensorArg& student,
                          const TensorArg& teacher, const TensorArg& lse, const TensorArg& loss, double temperature);

// The whole distillation loss of each row, forward and gradient in one pass:
// student, teacher (rows, C) logits, target (rows) int64 ->
//   kl (rows) = KL(softmax(t / T) ‖ softmax(s / T)),  ce (rows) = −log softmax(s)_y,
//   grad (rows, C) = α T g (softmax(s / T) − softmax(t / T)) + (1 − α) g (softmax(s) − onehot(y)),
// g = p.grad_scale (1/rows for a batch mean); grad may be null (no gradient
// wanted). status (one int64): the first row whose target is out of [0, C), or −1.
void distillation_rows(const TensorArg& kl, const TensorArg& ce, const TensorArg& grad, const TensorArg& student,
                       const TensorArg& teacher, const TensorArg& target, const DistillationParams& p,
                       const TensorArg& status);

// status (one int64) := the position of the first value of index (int64,
// contiguous) outside [0, size) and not equal to `allowed`, or −1. The index ops
// and nll_loss run it before they read through the indices.
void find_out_of_range(const TensorArg& status, const TensorArg& index, int64_t size, int64_t allowed);

// View x as (outer, size, inner), contiguous. index int64 (n).
// out (outer, n, inner) := x[:, index, :]
void index_select(const TensorArg& out, const TensorArg& x, const TensorArg& index);
// out (outer, size, inner) += src (outer, n, inner) at [:, index, :]
void index_add(const TensorArg& out, const TensorArg& index, const TensorArg& src);
// out[... i_d ...] := x[... index[...] ...] along dim; out and index share a shape. All contiguous.
void gather(const TensorArg& out, const TensorArg& x, const TensorArg& index, int dim);
// out[... index[...] ...] += src[...] along dim (the backward of gather).
void scatter_add(const TensorArg& out, const TensorArg& index, const TensorArg& src, int dim);

// Optimizer updates, in place (ops/optim.h). param and grad contiguous, f32 or
// bf16, one dtype; state tensors f32; buffer may have null data (no momentum).
void sgd_step(const TensorArg& param, const TensorArg& grad, const TensorArg& buffer, const SgdStepArgs& a);
void adam_step(const TensorArg& param, const TensorArg& grad, const TensorArg& exp_avg, const TensorArg& exp_avg_sq,
               const AdamStepArgs& a);

}  // namespace minidl::cpu
