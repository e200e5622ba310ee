// cuda/conv.cu — conv2d forward and backward as im2col + GEMM.
//
// A convolution is a matrix product once the input is unrolled: for sample n
// and group g, the column matrix col (C/G·kh·kw, Ho·Wo) holds in column p the
// input values that output position p's window sees, and then
//
//   y[n, g]  (O/G, Ho·Wo)      = W_g (O/G, C/G·kh·kw) · col             (+ bias, ReLU in the GEMM's epilogue)
//   gW_g     (O/G, C/G·kh·kw) += gy[n, g] · colᵀ                       (colᵀ is col's strides swapped)
//   gcol     (C/G·kh·kw, Ho·Wo) = W_gᵀ · gy[n, g],  then col2im adds gcol back into gx[n]
//
// so all the arithmetic is cuda::gemm (cuBLAS or the hand-written SGEMM). The
// column buffer is scratch from the caching allocator, one sample's worth,
// reused for every sample. col2im is written as a gather — each input cell
// sums the column entries that came from it — so it needs no atomics and is
// deterministic. cuDNN is the comparator in the benchmark, not the implementation.
#include <memory>
#include <utility>

#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/conv_kernels.cuh"
#include "cuda/runtime.h"

namespace minidl::cuda {

using namespace conv_kernels;

namespace {

// The convolution's sizes from its input x, weight w and output y.
Shape shape_of(const TensorArg& x, const TensorArg& w, const TensorArg& y, const Conv2dParams& p) {
  return {x.shape[0], x.shape[1], x.shape[2], x.shape[3], w.shape[0],
          w.shape[2], w.shape[3], y.shape[2], y.shape[3], p.groups};
}

// A (rows, cols) row-major matrix at `data` with row stride ld, as a kernel argument.
TensorArg matrix(void* data, DType t, int64_t rows, int64_t cols, int64_t ld) {
  TensorArg a;
  a.data = data;
  a.dtype = t;
  a.ndim = 2;
  a.shape[0] = rows, a.shape[1] = cols;
  a.strides[0] = ld, a.strides[1] = 1;
  return a;
}
TensorArg transposed(TensorArg a) {
  std::swap(a.shape[0], a.shape[1]);
  std::swap(a.strides[0], a.strides[1]);
  return a;
}

}  // namespace

void conv2d_forward(const TensorArg& y, const TensorArg& x, const TensorArg& w, const TensorArg& bias,
                    const Conv2dParams& p) {
  const Shape s = shape_of(x, w, y, p);
  if (s.N == 0 || s.O == 0 || s.positions() == 0) return;
  dispatch_f32_f64(x.dtype, "conv2d", [&](auto tag) {
    using T = decltype(tag);
    const size_t esize = sizeof(T);
    Scratch col(static_cast<size_t>(s.C * s.kh * s.kw * s.positions()) * esize, current_device());
    for (int64_t n = 0; n < s.N; ++n) {
      const T* xn = x.ptr<T>() + n * s.C * s.H * s.W;
      im2col_kernel<T><<<blocks_for(s.C * s.kh * s.kw * s.positions()), kThreads, 0, stream()>>>(static_cast<T*>(col.data()), xn,
                                                                                      s, p);
      MINIDL_CUDA_CHECK(cudaGetLastError());
      for (int64_t g = 0; g < s.G; ++g) {
        const T* bias_g = bias.data ? bias.ptr<T>() + g * s.og() : nullptr;
        const TensorArg Wg = matrix(w.ptr<T>() + g * s.og() * s.rows(), x.dtype, s.og(), s.rows(), s.rows());
        const TensorArg Cg =
            matrix(static_cast<T*>(col.data()) + g * s.rows() * s.positions(), x.dtype, s.rows(), s.positions(),
                   s.positions());
        const TensorArg Yg =
            matrix(y.ptr<T>() + (n * s.O + g * s.og()) * s.positions(), x.dtype, s.og(), s.positions(), s.positions());
        GemmEpilogue epilogue;  // bias per output channel = per row of y[n, g], then the fused ReLU
        epilogue.bias = bias_g;
        epilogue.bias_per_row = true;
        epilogue.relu = p.relu;
        gemm(s.og(), s.positions(), s.rows(), 1.0, Wg, Cg, 0.0, Yg, GemmKernel::best, epilogue);
      }
    }
  });
}

void conv2d_backward(const TensorArg& gx, const TensorArg& gw, const TensorArg& gb, const TensorArg& gy_in,
                     const TensorArg& x, const TensorArg& w, const TensorArg& relu_out, const Conv2dParams& p) {
  const Shape s = shape_of(x, w, gy_in, p);
  dispatch_f32_f64(x.dtype, "conv2d backward", [&](auto tag) {
    using T = decltype(tag);
    const size_t esize = sizeof(T);
    const int device = current_device();
    const int64_t gy_n = s.N * s.O * s.positions();
    // Through a fused ReLU: the masked gradient, in scratch.
    std::unique_ptr<Scratch> masked;
    const T* gy = gy_in.ptr<T>();
    if (relu_out.data && gy_n > 0) {
      masked = std::make_unique<Scratch>(static_cast<size_t>(gy_n) * esize, device);
      relu_mask_kernel<T><<<blocks_for(gy_n), kThreads, 0, stream()>>>(static_cast<T*>(masked->data()), gy, relu_out.ptr<T>(), gy_n);
      MINIDL_CUDA_CHECK(cudaGetLastError());
      gy = static_cast<const T*>(masked->data());
    }
    if (gb.data && s.O > 0) {
      const int64_t parts = reduce::split_count(s.O, s.N * s.positions());
      std::unique_ptr<Scratch> partials;
      if (parts > 1) partials = std::make_unique<Scratch>(static_cast<size_t>(s.O * parts) * sizeof(reduce::Partial), device);
      auto* p = parts > 1 ? static_cast<reduce::Partial*>(partials->data()) : nullptr;
      bias_grad_kernel<T><<<static_cast<unsigned>(s.O * parts), kThreads, 0, stream()>>>(gb.ptr<T>(), gy, s, parts, p);
      MINIDL_CUDA_CHECK(cudaGetLastError());
      if (parts > 1) {
        reduce::sum_parts_kernel<T><<<static_cast<unsigned>(s.O), row_threads(parts), 0, stream()>>>(gb.ptr<T>(), parts, p);
        MINIDL_CUDA_CHECK(cudaGetLastError());
      }
    }
    if (!gx.data && !gw.data) return;
    if (gw.data && s.N == 0) MINIDL_CUDA_CHECK(cudaMemsetAsync(gw.data, 0, gw.numel() * esize, stream()));
    const size_t col_bytes = static_cast<size_t>(s.C * s.kh * s.kw * s.positions()) * esize;
    Scratch col(col_bytes, device);
    for (int64_t n = 0; n < s.N; ++n) {
      T* colp = static_cast<T*>(col.data());
      if (gw.data) {
        im2col_kernel<T><<<blocks_for(s.C * s.kh * s.kw * s.positions()), kThreads, 0, stream()>>>(
            colp, x.ptr<T>() + n * s.C * s.H * s.W, s, p);
        MINIDL_CUDA_CHECK(cudaGetLastError());
        for (int64_t g = 0; g < s.G; ++g) {
          const TensorArg Gy = matrix(const_cast<T*>(gy) + (n * s.O + g * s.og()) * s.positions(), x.dtype, s.og(),
                                      s.positions(), s.positions());
          const TensorArg ColT = transposed(
              matrix(colp + g * s.rows() * s.positions(), x.dtype, s.rows(), s.positions(), s.positions()));
          const TensorArg Gw = matrix(gw.ptr<T>() + g * s.og() * s.rows(), x.dtype, s.og(), s.rows(), s.rows());
          gemm(s.og(), s.rows(), s.positions(), 1.0, Gy, ColT, n == 0 ? 0.0 : 1.0, Gw);  // summed over samples
        }
      }
      if (gx.data) {
        // gcol reuses the column buffer: this sample's im2col has been consumed by the GEMM above.
        for (int64_t g = 0; g < s.G; ++g) {
          const TensorArg WgT =
              transposed(matrix(w.ptr<T>() + g * s.og() * s.rows(), x.dtype, s.og(), s.rows(), s.rows()));
          const TensorArg Gy = matrix(const_cast<T*>(gy) + (n * s.O + g * s.og()) * s.positions(), x.dtype, s.og(),
                                      s.positions(), s.positions());
          const TensorArg Gcol =
              matrix(colp + g * s.rows() * s.positions(), x.dtype, s.rows(), s.positions(), s.positions());
          gemm(s.rows(), s.positions(), s.og(), 1.0, WgT, Gy, 0.0, Gcol);
        }
        col2im_kernel<T><<<blocks_for(s.C * s.H * s.W), kThreads, 0, stream()>>>(gx.ptr<T>() + n * s.C * s.H * s.W, colp, s, p);
        MINIDL_CUDA_CHECK(cudaGetLastError());
      }
    }
  });
}

}  // namespace minidl::cuda
