// cuda/gemm.cu — the GEMM behind matmul and linear on the GPU: cuBLAS, or the
// hand-written SGEMM of cuda/sgemm.cu.
//
// Which one runs: the call's GemmKernel, else the environment variable
// MINIDL_CUDA_GEMM (for benchmarks: `cublas`, `cublas-tf32`, `cublas-bf16`,
// `handwritten`, or one version `v1` … `v5`), else cuBLAS in strict fp32.
//
// cuBLAS is column-major; minidl is row-major: C = A·B is computed as
// Cᵀ = Bᵀ·Aᵀ, transposed views read in place, and only an operand with neither
// stride 1 copied contiguous first (cuda/gemm_layout.h, which the CPU suite
// checks against a column-major reference).
//
// A linear layer's bias and ReLU: in f32 through cuBLASLt, whose epilogue adds
// the bias and clamps while the tile is still in registers (one pass over C
// instead of two); a per-row bias (a convolution's), f64, or a layout cuBLASLt
// turns down take cublasGemmEx and then one epilogue kernel.
//
// A bf16 Linear (linear_bf16, at the end): cublasGemmEx on bf16 operands into
// f32 sums, then one epilogue kernel; or the hand-written bf16 kernel
// (cuda/bf16_kernels.cuh).
#ifdef MINIDL_HAVE_CUBLAS
#include <cublasLt.h>
#include <cublas_v2.h>
#endif

#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/check.h"
#include "cuda/bf16_kernels.cuh"
#include "cuda/common.cuh"
#include "cuda/gemm_layout.h"
#include "cuda/kernels.h"
#include "cuda/runtime.h"

namespace minidl::cuda {

namespace {

#ifdef MINIDL_HAVE_CUBLAS
const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "cuBLAS error";
  }
}

#define MINIDL_CUBLAS_CHECK(expr)                                                                              \
  do {                                                                                                         \
    cublasStatus_t minidl_st_ = (expr);                                                                        \
    if (minidl_st_ != CUBLAS_STATUS_SUCCESS)                                                                   \
      throw ::minidl::Error(std::string("cuBLAS error: ") + cublas_status_name(minidl_st_) + " in " #expr " at " \
                            __FILE__ ":" + std::to_string(__LINE__));                                          \
  } while (0)

// One handle per device, made on first use and kept for the process.
cublasHandle_t handle() {
  return per_device<cublasHandle_t>([](cublasHandle_t& h) {
    MINIDL_CUBLAS_CHECK(cublasCreate(&h));
    MINIDL_CUBLAS_CHECK(cublasSetStream(h, stream()));  // minidl's stream, so graphs capture it
  });
}
#endif  // MINIDL_HAVE_CUBLAS

// What the environment asks for: a kernel, and for the hand-written one its version.
struct Choice {
  GemmKernel kernel = have_cublas() ? GemmKernel::cublas : GemmKernel::handwritten;  // cublas, cublas_tf32,
                                                                                     // cublas_bf16 or handwritten
  int version = kSgemmVersions;
};

Choice env_choice() {
  static const Choice choice = [] {
    Choice c;
    const char* env = std::getenv("MINIDL_CUDA_GEMM");
    if (!env || !*env) return c;
    const std::string v = env;
    if (v == "cublas") return c;
    if (v == "cublas-tf32" || v == "cublas-bf16") {
      c.kernel = v == "cublas-tf32" ? GemmKernel::cublas_tf32 : GemmKernel::cublas_bf16;
      return c;
    }
    if (v == "handwritten") {
      c.kernel = GemmKernel::handwritten;
      return c;
    }
    if (v.size() == 2 && v[0] == 'v' && v[1] >= '1' && v[1] < '1' + kSgemmVersions) {
      c.kernel = GemmKernel::handwritten;
      c.version = v[1] - '0';
      return c;
    }
    throw Error("MINIDL_CUDA_GEMM=" + v + ": expected cublas, cublas-tf32, cublas-bf16, handwritten or v1 … v" +
                std::to_string(kSgemmVersions));
  }();
  return choice;
}


#ifdef MINIDL_HAVE_CUBLAS
// How cuBLAS reads a row-major (rows, cols) operand (cuda/gemm_layout.h).
struct Operand {
  cublasOperation_t op;
  int64_t ld;
  bool usable;
};

Operand operand(const TensorArg& X, int64_t rows, int64_t cols) {
  const CublasOperand o = cublas_operand(rows, cols, X.strides[0], X.strides[1]);
  return {o.transpose ? CUBLAS_OP_T : CUBLAS_OP_N, o.ld, o.usable};
}

// A contiguous device copy of X, in scratch memory that `keep` owns.
TensorArg contiguous_copy(const TensorArg& X, int64_t rows, int64_t cols, std::vector<std::unique_ptr<Scratch>>& keep,
                          int device) {
  keep.push_back(std::make_unique<Scratch>(rows * cols * element_size(X.dtype), device));
  TensorArg c = X;
  c.data = keep.back()->data();
  c.strides[0] = cols;
  c.strides[1] = 1;
  copy(c, X);
  return c;
}

// cuBLASLt: one handle per device (the stream goes with each call).
cublasLtHandle_t lt_handle() {
  return per_device<cublasLtHandle_t>([](cublasLtHandle_t& h) { MINIDL_CUBLAS_CHECK(cublasLtCreate(&h)); });
}

// Owns cuBLASLt's descriptors for the length of one call.
struct LtDescriptors {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t first = nullptr, second = nullptr, out = nullptr;
  ~LtDescriptors() {
    if (out) cublasLtMatrixLayoutDestroy(out);
    if (second) cublasLtMatrixLayoutDestroy(second);
    if (first) cublasLtMatrixLayoutDestroy(first);
    if (op) cublasLtMatmulDescDestroy(op);
  }
};

// Cᵀ = Bᵀ · Aᵀ as cublasGemmEx would compute it, with the bias (one per column
// of C: per row of Cᵀ, which is what cuBLASLt's bias is) and ReLU in the
// epilogue. False when cuBLASLt has no algorithm for it (the caller then runs
// the two-pass path); any other failure is an error.
bool lt_gemm(int64_t M, int64_t N, int64_t K, float alpha, const TensorArg& A, const Operand& a, const TensorArg& B,
             const Operand& b, const TensorArg& C, int64_t ldc, cublasComputeType_t compute, const GemmEpilogue& e) {
  LtDescriptors d;
  MINIDL_CUBLAS_CHECK(cublasLtMatmulDescCreate(&d.op, compute, CUDA_R_32F));
  MINIDL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSA, &b.op, sizeof(b.op)));
  MINIDL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_TRANSB, &a.op, sizeof(a.op)));
  const cublasLtEpilogue_t epilogue = e.bias && e.relu ? CUBLASLT_EPILOGUE_RELU_BIAS
                                      : e.bias         ? CUBLASLT_EPILOGUE_BIAS
                                                       : CUBLASLT_EPILOGUE_RELU;
  MINIDL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue)));
  if (e.bias)
    MINIDL_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &e.bias, sizeof(e.bias)));
  // Each operand as stored: (rows, cols) column-major before its transpose.
  const bool bt = b.op == CUBLAS_OP_T, at = a.op == CUBLAS_OP_T;
  MINIDL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d.first, CUDA_R_32F, bt ? K : N, bt ? N : K, b.ld));
  MINIDL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d.second, CUDA_R_32F, at ? M : K, at ? K : M, a.ld));
  MINIDL_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d.out, CUDA_R_32F, N, M, ldc));
  constexpr size_t kWorkspace = 32 << 20;  // what NVIDIA suggests for Hopper
  Scratch workspace(kWorkspace, current_device());
  const float zero = 0.0f;
  // algo null: cuBLASLt runs its own heuristic for this shape and epilogue.
  const cublasStatus_t st = cublasLtMatmul(lt_handle(), d.op, &alpha, B.data, d.first, A.data, d.second, &zero, C.data,
                                           d.out, C.data, d.out, nullptr, workspace.data(), kWorkspace, stream());
  if (st == CUBLAS_STATUS_NOT_SUPPORTED) return false;
  MINIDL_CUBLAS_CHECK(st);
  return true;
}

void cublas_gemm(int64_t M, int64_t N, int64_t K, double alpha, TensorArg A, TensorArg B, double beta,
                 const TensorArg& C, GemmKernel kernel, const GemmEpilogue& epilogue) {
  const int device = current_device();
  std::vector<std::unique_ptr<Scratch>> keep;  // contiguous copies of operands cuBLAS cannot read in place
  Operand a = operand(A, M, K), b = operand(B, K, N);
  if (!a.usable) {
    A = contiguous_copy(A, M, K, keep, device);
    a = operand(A, M, K);
  }
  if (!b.usable) {
    B = contiguous_copy(B, K, N, keep, device);
    b = operand(B, K, N);
  }
  const bool f64 = C.dtype == DType::f64;
  const cudaDataType_t type = f64 ? CUDA_R_64F : CUDA_R_32F;
  const cublasComputeType_t compute = f64                                  ? CUBLAS_COMPUTE_64F
                                      : kernel == GemmKernel::cublas_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                      : kernel == GemmKernel::cublas_bf16 ? CUBLAS_COMPUTE_32F_FAST_16BF
                                                                          : CUBLAS_COMPUTE_32F;
  const float alpha_f = static_cast<float>(alpha), beta_f = static_cast<float>(beta);
  const void* alpha_p = f64 ? static_cast<const void*>(&alpha) : &alpha_f;
  const void* beta_p = f64 ? static_cast<const void*>(&beta) : &beta_f;
  const int64_t ldc = std::max<int64_t>(C.strides[0], N);
  const bool fusable = !f64 && beta == 0 && (epilogue.relu || (epilogue.bias && !epilogue.bias_per_row));
  if (fusable && lt_gemm(M, N, K, alpha_f, A, a, B, b, C, ldc, compute, epilogue)) return;
  // Cᵀ (N × M, column-major, ld ldc) = Bᵀ (N × K) · Aᵀ (K × M)
  MINIDL_CUBLAS_CHECK(cublasGemmEx(handle(), b.op, a.op, static_cast<int>(N), static_cast<int>(M), static_cast<int>(K),
                                   alpha_p, B.data, type, static_cast<int>(b.ld), A.data, type, static_cast<int>(a.ld),
                                   beta_p, C.data, type,
                                   static_cast<int>(ldc), compute, CUBLAS_GEMM_DEFAULT));
  if (epilogue.bias || epilogue.relu) {
    dispatch_f32_f64(C.dtype, "gemm epilogue", [&](auto tag) {
      using T = decltype(tag);
      epilogue_kernel<T><<<blocks_for(M * N), kThreads, 0, stream()>>>(C.ptr<T>(), C.strides[0], M, N,
                                                           static_cast<const T*>(epilogue.bias), epilogue.bias_per_row,
                                                           epilogue.relu);
    });
    MINIDL_CUDA_CHECK(cudaGetLastError());
  }
  // `keep` hands its copies back here; work queued later on the stream is all
  // that can reuse them, so the GEMM has read them by then.
}
#else
// Built without cuBLAS (not found beside the CUDA toolkit): every GEMM is the
// hand-written one, and asking for cuBLAS says so.
void cublas_gemm(int64_t, int64_t, int64_t, double, TensorArg, TensorArg, double, const TensorArg&, GemmKernel,
                 const GemmEpilogue&) {
  throw Error("gemm: this minidl was built without cuBLAS (CMake found none beside the CUDA toolkit); the "
              "hand-written SGEMM (MINIDL_CUDA_GEMM=handwritten, or v1 ... v" +
              std::to_string(kSgemmVersions) + ") runs f32");
}
#endif  // MINIDL_HAVE_CUBLAS

}  // namespace

void gemm(int64_t M, int64_t N, int64_t K, double alpha, const TensorArg& A, const TensorArg& B, double beta,
          const TensorArg& C, GemmKernel kernel, const GemmEpilogue& epilogue) {
  if (M == 0 || N == 0) return;
  if (M > 0x7fffffff || N > 0x7fffffff || K > 0x7fffffff)
    throw Error("gemm: dimensions " + std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K) +
                " do not fit cuBLAS's int");
  if (C.dtype != DType::f32 && C.dtype != DType::f64) unsupported_dtype("gemm on cuda", C.dtype);
  // f64 has only the cuBLAS path; f32 falls back to the hand-written one without cuBLAS.
  const Choice env = env_choice();
  const GemmKernel k = kernel == GemmKernel::best ? env.kernel : kernel;
  if (k == GemmKernel::handwritten) {
    if (C.dtype != DType::f32) unsupported_dtype("gemm (hand-written SGEMM)", C.dtype);
    sgemm_handwritten(env.version, M, N, K, static_cast<float>(alpha), A, B, static_cast<float>(beta), C, epilogue);
    return;
  }
  cublas_gemm(M, N, K, alpha, A, B, beta, C, k, epilogue);
}

void gemm_batched(int64_t batch, int64_t M, int64_t N, int64_t K, const TensorArg& A, int64_t stride_a,
                  const TensorArg& B, int64_t stride_b, const TensorArg& C, int64_t stride_c) {
  auto moved = [](TensorArg x, int64_t elems) {
    x.data = static_cast<char*>(x.data) + elems * static_cast<int64_t>(element_size(x.dtype));
    return x;
  };
  auto one_by_one = [&] {
    for (int64_t i = 0; i < batch; ++i)
      gemm(M, N, K, 1.0, moved(A, i * stride_a), moved(B, i * stride_b), 0.0, moved(C, i * stride_c));
  };
  if (batch == 0 || M == 0 || N == 0) return;
#ifdef MINIDL_HAVE_CUBLAS
  const Operand a = operand(A, M, K), b = operand(B, K, N);
  const GemmKernel k = env_choice().kernel;
  if (batch == 1 || k == GemmKernel::handwritten || !a.usable || !b.usable || C.strides[1] != 1 ||
      batch > 0x7fffffff || M > 0x7fffffff || N > 0x7fffffff || K > 0x7fffffff)
    return one_by_one();
  const bool f64 = C.dtype == DType::f64;
  if (!f64 && C.dtype != DType::f32) unsupported_dtype("gemm on cuda", C.dtype);
  const cudaDataType_t type = f64 ? CUDA_R_64F : CUDA_R_32F;
  const cublasComputeType_t compute = f64                                  ? CUBLAS_COMPUTE_64F
                                      : k == GemmKernel::cublas_tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                      : k == GemmKernel::cublas_bf16 ? CUBLAS_COMPUTE_32F_FAST_16BF
                                                                     : CUBLAS_COMPUTE_32F;
  const double one64 = 1, zero64 = 0;
  const float one32 = 1, zero32 = 0;
  const void* one = f64 ? static_cast<const void*>(&one64) : &one32;
  const void* zero = f64 ? static_cast<const void*>(&zero64) : &zero32;
  // As gemm: Cᵢᵀ = Bᵢᵀ · Aᵢᵀ, for every i in one call.
  MINIDL_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
      handle(), b.op, a.op, static_cast<int>(N), static_cast<int>(M), static_cast<int>(K), one, B.data, type,
      static_cast<int>(b.ld), stride_b, A.data, type, static_cast<int>(a.ld), stride_a, zero, C.data, type,
      static_cast<int>(std::max<int64_t>(C.strides[0], N)), stride_c, static_cast<int>(batch), compute,
      CUBLAS_GEMM_DEFAULT));
#else
  one_by_one();
#endif
}

void linear_bf16(const Bf16LinearArgs& a, GemmKernel kernel) {
  if (a.M == 0 || a.N == 0) return;
  MINIDL_CHECK(a.M <= 0x7fffffff && a.N <= 0x7fffffff && a.K <= 0x7fffffff,
               "linear_bf16: dimensions {}x{}x{} do not fit cuBLAS's int", a.M, a.N, a.K);
  MINIDL_CHECK((a.y != nullptr) != (a.y_bf16 != nullptr), "linear_bf16: exactly one of y and y_bf16");
  const auto* x = reinterpret_cast<const bf16*>(a.x);
  const auto* w = reinterpret_cast<const bf16*>(a.w);
  auto* y_bf16 = reinterpret_cast<bf16*>(a.y_bf16);
  const GemmKernel k = kernel == GemmKernel::best ? env_choice().kernel : kernel;
  if (k == GemmKernel::handwritten) {
    namespace bk = bf16_kernels;
    MINIDL_CHECK((a.M + bk::kBTile - 1) / bk::kBTile <= 65535,
                 "linear_bf16: a batch of {} rows is more than the hand-written kernel's {}", a.M,
                 int64_t{65535} * bk::kBTile);
    const dim3 grid(static_cast<unsigned>((a.N + bk::kBTile - 1) / bk::kBTile),
                    static_cast<unsigned>((a.M + bk::kBTile - 1) / bk::kBTile));
    bk::bf16_linear_kernel<<<grid, dim3(bk::kBSide, bk::kBSide), 0, stream()>>>(x, w, a.M, a.N, a.K, a.bias, a.relu,
                                                                                a.y, y_bf16, a.ldy);
    MINIDL_CUDA_CHECK(cudaGetLastError());
    return;
  }
#ifdef MINIDL_HAVE_CUBLAS
  // Cᵀ (N × M column-major: y's rows) = W (read as K × N column-major, transposed) · xᵀ (K × M).
  // f32 out into y itself when its rows are packed, else into scratch.
  const bool direct = a.y && a.ldy == a.N;
  std::unique_ptr<Scratch> scratch;
  if (!direct) scratch = std::make_unique<Scratch>(static_cast<size_t>(a.M * a.N) * sizeof(float), current_device());
  float* sums = direct ? a.y : static_cast<float*>(scratch->data());
  const float one = 1.0f, zero = 0.0f;
  const int M = static_cast<int>(a.M), N = static_cast<int>(a.N), K = static_cast<int>(a.K);
  MINIDL_CUBLAS_CHECK(cublasGemmEx(handle(), CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, a.w, CUDA_R_16BF, K, a.x,
                                   CUDA_R_16BF, K, &zero, sums, CUDA_R_32F, N, CUBLAS_COMPUTE_32F,
                                   CUBLAS_GEMM_DEFAULT));
  if (direct && !a.bias && !a.relu) return;
  bf16_kernels::epilogue_kernel<<<blocks_for(a.M * a.N), kThreads, 0, stream()>>>(sums, a.M, a.N, a.bias, a.relu, a.y,
                                                                                  y_bf16, a.ldy);
  MINIDL_CUDA_CHECK(cudaGetLastError());
#else
  throw Error(
      "linear_bf16: this minidl was built without cuBLAS; the hand-written bf16 kernel runs with "
      "MINIDL_CUDA_GEMM=handwritten");
#endif
}

const char* linear_bf16_kernel_name(GemmKernel kernel) {
  const GemmKernel k = kernel == GemmKernel::best ? env_choice().kernel : kernel;
  return k == GemmKernel::handwritten ? "hand-written bf16 (f32 FMA, no tensor cores)"
                                      : "cuBLAS (bf16 tensor cores, f32 sums)";
}

const char* gemm_kernel_name() {
  const Choice c = env_choice();
  if (c.kernel == GemmKernel::handwritten) {
    static const char* names[] = {"",
                                  "hand-written v1 (naive)",
                                  "hand-written v2 (shared tiles)",
                                  "hand-written v3 (register blocking)",
                                  "hand-written v4 (vectorised, double-buffered)",
                                  "hand-written v5 (warp-tiled)"};
    return names[c.version];
  }
  if (c.kernel == GemmKernel::cublas_tf32) return "cuBLAS (TF32 tensor cores)";
  if (c.kernel == GemmKernel::cublas_bf16) return "cuBLAS (bf16 tensor cores, f32 in and out)";
  return "cuBLAS (strict fp32)";
}

bool have_cublas() {
#ifdef MINIDL_HAVE_CUBLAS
  return true;
#else
  return false;
#endif
}

}  // namespace minidl::cuda
