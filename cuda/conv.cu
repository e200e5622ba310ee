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
#include "cuda/runtime.h"

namespace minidl::cuda {

namespace {

struct Shape {
  int64_t N, C, H, W, O, kh, kw, Ho, Wo, G;
  MINIDL_HOST_DEVICE int64_t cg() const { return C / G; }              // input channels per group
  MINIDL_HOST_DEVICE int64_t og() const { return O / G; }              // output channels per group
  MINIDL_HOST_DEVICE int64_t rows() const { return cg() * kh * kw; }   // of the column matrix (one group)
  MINIDL_HOST_DEVICE int64_t positions() const { return Ho * Wo; }
};

Shape shape_of(const TensorArg& x, const TensorArg& w, const TensorArg& y, const Conv2dParams& p) {
  return {x.shape[0], x.shape[1], x.shape[2], x.shape[3], w.shape[0], w.shape[2], w.shape[3], y.shape[2], y.shape[3],
          p.groups};
}

// col (C·kh·kw, Ho·Wo) of one sample, all groups stacked: row (c, i, j), column (oh, ow)
// = x[c, oh·sh − ph + i·dh, ow·sw − pw + j·dw], or 0 in the padding.
template <class T>
__global__ void im2col_kernel(T* col, const T* x, Shape s, Conv2dParams p) {
  MINIDL_CUDA_FOR(e, s.C * s.kh * s.kw * s.positions()) {
    const int64_t ow = e % s.Wo, oh = (e / s.Wo) % s.Ho, r = e / s.positions();
    const int64_t j = r % s.kw, i = (r / s.kw) % s.kh, c = r / (s.kw * s.kh);
    const int64_t h = oh * p.stride_h - p.pad_h + i * p.dilation_h, w = ow * p.stride_w - p.pad_w + j * p.dilation_w;
    col[e] = h >= 0 && h < s.H && w >= 0 && w < s.W ? x[(c * s.H + h) * s.W + w] : T(0);
  }
}

// gx[c, h, w] = Σ over the (i, j) and (oh, ow) with oh·sh − ph + i·dh = h (likewise w) of gcol[(c, i, j), (oh, ow)].
template <class T>
__global__ void col2im_kernel(T* gx, const T* gcol, Shape s, Conv2dParams p) {
  MINIDL_CUDA_FOR(e, s.C * s.H * s.W) {
    const int64_t w = e % s.W, h = (e / s.W) % s.H, c = e / (s.W * s.H);
    T acc = 0;
    for (int64_t i = 0; i < s.kh; ++i) {
      const int64_t hh = h + p.pad_h - i * p.dilation_h;  // = oh · stride_h
      if (hh < 0 || hh % p.stride_h != 0 || hh / p.stride_h >= s.Ho) continue;
      const int64_t oh = hh / p.stride_h;
      for (int64_t j = 0; j < s.kw; ++j) {
        const int64_t ww = w + p.pad_w - j * p.dilation_w;
        if (ww < 0 || ww % p.stride_w != 0 || ww / p.stride_w >= s.Wo) continue;
        acc += gcol[((c * s.kh + i) * s.kw + j) * s.positions() + oh * s.Wo + ww / p.stride_w];
      }
    }
    gx[e] = acc;
  }
}

// g := g where y > 0, else 0 (the gradient through a fused ReLU).
template <class T>
__global__ void relu_mask_kernel(T* out, const T* g, const T* y, int64_t n) {
  MINIDL_CUDA_FOR(i, n) out[i] = y[i] > T(0) ? g[i] : T(0);
}

// gb[o] = Σ_{n, p} gy[n, o, p]: one block per output channel, reduced in double.
template <class T>
__global__ void bias_grad_kernel(T* gb, const T* gy, Shape s) {
  __shared__ double scratch[kWarp];
  const int64_t o = blockIdx.x, P = s.positions();
  double acc = 0;
  for (int64_t j = threadIdx.x; j < s.N * P; j += blockDim.x) acc += static_cast<double>(gy[((j / P) * s.O + o) * P + j % P]);
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) gb[o] = static_cast<T>(acc);
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

int current_device() {
  int d = 0;
  MINIDL_CUDA_CHECK(cudaGetDevice(&d));
  return d;
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
      bias_grad_kernel<T><<<static_cast<unsigned>(s.O), kThreads, 0, stream()>>>(gb.ptr<T>(), gy, s);
      MINIDL_CUDA_CHECK(cudaGetLastError());
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
