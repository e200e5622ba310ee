// cuda/reduce.cu — reductions over the rows of a (rows, cols) contiguous view.
//
// As on the CPU (ops/cpu/reduce.cpp) the op layer moves the reduced dims last,
// so one row kernel serves every reduction. One block per row: each thread
// folds the columns c = t, t + blockDim, ... into a partial, then the block
// combines the partials (a shuffle tree per warp, then across warps). Sums
// accumulate in double, as on the CPU, so long f32 rows stay accurate. The
// block is as wide as the row needs (32 threads for a 10-class row, 256 for
// a long one): a short row does not leave most of its block idle.
//
// A few long rows — `sum(x)` of a large tensor is one row — are split across
// blocks instead (reduce::split_count), and a second launch combines each
// row's pieces: one block per row would keep one multiprocessor of a hundred
// busy. The kernels and the split: cuda/reduce_kernels.cuh.
#include <cmath>

#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/reduce_kernels.cuh"
#include "cuda/runtime.h"

namespace minidl::cuda {

using namespace reduce;

void reduce_rows(ReduceOp op, const TensorArg& values, const TensorArg& indices, const TensorArg& x,
                 double correction) {
  const int64_t rows = x.shape[0], cols = x.shape[1];
  if (rows == 0) return;
  if (rows > 0x7fffffff) throw Error("reduce: more than 2^31 - 1 rows on CUDA");
  int64_t* idx = indices.data ? indices.ptr<int64_t>() : nullptr;
  const int64_t splits = split_count(rows, cols);  // rows · splits ≤ kSplitBlocks when > 1
  dispatch_numeric(x.dtype, "reduce", [&](auto tag) {
    using T = decltype(tag);
    if (splits == 1) {
      reduce_rows_kernel<T>
          <<<static_cast<unsigned>(rows), row_threads(cols), 0, stream()>>>(op, values, idx, x, correction, 1, nullptr);
      return;
    }
    Scratch partials(static_cast<size_t>(rows * splits) * sizeof(Partial), current_device());
    auto* p = static_cast<Partial*>(partials.data());
    reduce_rows_kernel<T>
        <<<static_cast<unsigned>(rows * splits), kThreads, 0, stream()>>>(op, values, idx, x, correction, splits, p);
    MINIDL_CUDA_CHECK(cudaGetLastError());
    combine_kernel<T>
        <<<static_cast<unsigned>(rows), row_threads(splits), 0, stream()>>>(op, values, idx, x, correction, splits, p);
  });
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace minidl::cuda
