// cuda/spmm.cu — a pruned Linear layer on the GPU: Y = X · Wᵀ + bias with W in
// CSR, two ways.
//
//   handwritten  cuda/spmm_kernels.cuh: a warp per row of W, a readable kernel;
//   cusparse     cusparseSpMM, the vendor's, as the comparator (when linked).
//
// Both read X (N, in) and write Y (N, out) row-major as the layer holds them.
// cuSPARSE sees them as column-major matrices — X row-major is Xᵀ (in, N)
// column-major with leading dimension ldx — so C = W · Xᵀ lands in Y with no
// transpose. cuSPARSE has no epilogue; the bias and ReLU are one more pass.
// `best` is cuSPARSE when linked, else the hand-written kernel, and
// MINIDL_CUDA_SPMM=handwritten|cusparse names one for benchmarks.
#include <cstdlib>
#include <string>

#ifdef MINIDL_HAVE_CUSPARSE
#include <cusparse.h>
#endif

#include "core/check.h"
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/runtime.h"
#include "cuda/spmm_kernels.cuh"

namespace minidl::cuda {

using namespace spmm_kernels;

namespace {

#ifdef MINIDL_HAVE_CUSPARSE
#define MINIDL_CUSPARSE_CHECK(expr)                                                                              \
  do {                                                                                                           \
    cusparseStatus_t minidl_st_ = (expr);                                                                        \
    if (minidl_st_ != CUSPARSE_STATUS_SUCCESS)                                                                   \
      throw ::minidl::Error(std::string("cuSPARSE error: ") + cusparseGetErrorString(minidl_st_) + " in " #expr \
                            " at " __FILE__ ":" + std::to_string(__LINE__));                                     \
  } while (0)

// One handle per device, on minidl's stream (so a graph captures its work).
cusparseHandle_t handle() {
  return per_device<cusparseHandle_t>([](cusparseHandle_t& h) {
    MINIDL_CUSPARSE_CHECK(cusparseCreate(&h));
    MINIDL_CUSPARSE_CHECK(cusparseSetStream(h, stream()));
  });
}

void cusparse_linear(const SparseMatrixArg& w, const TensorArg& x, const TensorArg& y, const GemmEpilogue& e) {
  const int64_t N = x.shape[0];
  cusparseSpMatDescr_t a = nullptr;
  cusparseDnMatDescr_t b = nullptr, c = nullptr;
  MINIDL_CUSPARSE_CHECK(cusparseCreateCsr(&a, w.rows, w.cols, w.blocks, const_cast<int32_t*>(w.row_ptr),
                                          const_cast<void*>(w.col_index), const_cast<float*>(w.values),
                                          CUSPARSE_INDEX_32I, CUSPARSE_INDEX_32I, CUSPARSE_INDEX_BASE_ZERO, CUDA_R_32F));
  MINIDL_CUSPARSE_CHECK(cusparseCreateDnMat(&b, w.cols, N, x.strides[0], const_cast<void*>(x.data), CUDA_R_32F,
                                            CUSPARSE_ORDER_COL));
  MINIDL_CUSPARSE_CHECK(cusparseCreateDnMat(&c, w.rows, N, y.strides[0], y.data, CUDA_R_32F, CUSPARSE_ORDER_COL));
  const float one = 1.0f, zero = 0.0f;
  size_t bytes = 0;
  MINIDL_CUSPARSE_CHECK(cusparseSpMM_bufferSize(handle(), CUSPARSE_OPERATION_NON_TRANSPOSE,
                                                CUSPARSE_OPERATION_NON_TRANSPOSE, &one, a, b, &zero, c, CUDA_R_32F,
                                                CUSPARSE_SPMM_ALG_DEFAULT, &bytes));
  Scratch buffer(bytes, current_device());
  MINIDL_CUSPARSE_CHECK(cusparseSpMM(handle(), CUSPARSE_OPERATION_NON_TRANSPOSE, CUSPARSE_OPERATION_NON_TRANSPOSE,
                                     &one, a, b, &zero, c, CUDA_R_32F, CUSPARSE_SPMM_ALG_DEFAULT, buffer.data()));
  cusparseDestroySpMat(a);
  cusparseDestroyDnMat(b);
  cusparseDestroyDnMat(c);
  if (e.bias || e.relu) {
    const int64_t n = N * w.rows;
    epilogue_kernel<float><<<blocks_for(n), kThreads, 0, stream()>>>(y.ptr<float>(), y.strides[0], N, w.rows,
                                                                     static_cast<const float*>(e.bias), false, e.relu);
    MINIDL_CUDA_CHECK(cudaGetLastError());
  }
}
#endif  // MINIDL_HAVE_CUSPARSE

void handwritten_linear(const SparseMatrixArg& w, const TensorArg& x, const TensorArg& y, const GemmEpilogue& e) {
  const int64_t N = x.shape[0];
  const dim3 block(kWarp, kSpmmWarpsPerBlock);
  const auto row_blocks = static_cast<unsigned>((w.rows + kSpmmWarpsPerBlock - 1) / kSpmmWarpsPerBlock);
  const auto* cols = static_cast<const int32_t*>(w.col_index);
  const auto* bias = static_cast<const float*>(e.bias);
  if (N == 1) {
    csr_linear_kernel<1><<<dim3(row_blocks, 1), block, 0, stream()>>>(
        w.row_ptr, cols, w.values, w.rows, x.ptr<float>(), x.strides[0], y.ptr<float>(), y.strides[0], N, bias, e.relu);
  } else {
    const int64_t tiles = (N + kSpmmBatchTile - 1) / kSpmmBatchTile;
    MINIDL_CHECK(tiles <= 65535, "sparse_linear: a batch of {} is more than the CUDA kernel's {} rows", N,
                 65535 * kSpmmBatchTile);
    csr_linear_kernel<kSpmmBatchTile><<<dim3(row_blocks, static_cast<unsigned>(tiles)), block, 0, stream()>>>(
        w.row_ptr, cols, w.values, w.rows, x.ptr<float>(), x.strides[0], y.ptr<float>(), y.strides[0], N, bias, e.relu);
  }
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

SpmmKernel from_environment() {
  const char* env = std::getenv("MINIDL_CUDA_SPMM");
  if (!env || !*env) return have_cusparse() ? SpmmKernel::cusparse : SpmmKernel::handwritten;
  const std::string name = env;
  if (name == "handwritten") return SpmmKernel::handwritten;
  if (name == "cusparse") return SpmmKernel::cusparse;
  throw Error("MINIDL_CUDA_SPMM: unknown kernel '" + name + "' (expected handwritten or cusparse)");
}

}  // namespace

bool have_cusparse() {
#ifdef MINIDL_HAVE_CUSPARSE
  return true;
#else
  return false;
#endif
}

const char* spmm_kernel_name(SpmmKernel kernel) {
  if (kernel == SpmmKernel::best) kernel = from_environment();
  return kernel == SpmmKernel::cusparse ? "cuSPARSE SpMM (CSR)" : "hand-written CSR (warp per row)";
}

void sparse_linear(const SparseMatrixArg& w, const TensorArg& x, const TensorArg& y, const GemmEpilogue& epilogue,
                   SpmmKernel kernel) {
  MINIDL_CHECK(w.is_csr() && !w.index16, "sparse_linear: the CUDA kernels take CSR with 32-bit column indices");
  MINIDL_CHECK(x.dtype == DType::f32 && y.dtype == DType::f32 && x.strides[1] == 1 && y.strides[1] == 1,
               "sparse_linear: x and y must be f32 rows with unit column stride");
  if (x.shape[0] == 0 || w.rows == 0) return;
  if (kernel == SpmmKernel::best) kernel = from_environment();
  if (kernel == SpmmKernel::cusparse) {
#ifdef MINIDL_HAVE_CUSPARSE
    cusparse_linear(w, x, y, epilogue);
    return;
#else
    throw Error("sparse_linear: cuSPARSE was asked for, but this minidl was built without it (MINIDL_CUSPARSE)");
#endif
  }
  handwritten_linear(w, x, y, epilogue);
}

}  // namespace minidl::cuda
