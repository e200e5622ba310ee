// cuda/reduce.cu — reductions over the rows of a (rows, cols) contiguous view.
//
// As on the CPU (ops/cpu/reduce.cpp) the op layer moves the reduced dims last,
// so one row kernel serves every reduction. One block per row: each thread
// folds the columns c = t, t + blockDim, ... into a partial, then the block
// combines the partials (a shuffle tree per warp, then across warps). Sums
// accumulate in double, as on the CPU, so long f32 rows stay accurate. The
// block is as wide as the row needs (32 threads for a 10-class row, 256 for
// a long one): a short row does not leave most of its block idle.
#include <cmath>

#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/reduce_kernels.cuh"

namespace minidl::cuda {

using namespace reduce;

void reduce_rows(ReduceOp op, const TensorArg& values, const TensorArg& indices, const TensorArg& x,
                 double correction) {
  const int64_t rows = x.shape[0], cols = x.shape[1];
  if (rows == 0) return;
  if (rows > 0x7fffffff) throw Error("reduce: more than 2^31 - 1 rows on CUDA");
  const int threads = row_threads(cols);
  int64_t* idx = indices.data ? indices.ptr<int64_t>() : nullptr;
  dispatch_numeric(x.dtype, "reduce", [&](auto tag) {
    reduce_rows_kernel<decltype(tag)><<<static_cast<unsigned>(rows), threads, 0, stream()>>>(op, values, idx, x, correction);
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace minidl::cuda
