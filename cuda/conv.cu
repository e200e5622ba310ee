// cuda/conv.cu — conv2d forward and backward as im2col + GEMM.
//
// A convolution is a matrix product once the input is unrolled: for a chunk of
// B samples and group g, the column matrix col (C/G·kh·kw, B·Ho·Wo) holds in
// column (b, p) the input values that sample b's output position p sees, and
//
//   y[., g]  (O/G, B·Ho·Wo)   = W_g (O/G, C/G·kh·kw) · col             (+ bias, ReLU in the GEMM's epilogue)
//   gW_g     (O/G, C/G·kh·kw) += gy[., g] · colᵀ                       (colᵀ is col's strides swapped)
//   gcol     (C/G·kh·kw, B·Ho·Wo) = W_gᵀ · gy[., g],  then col2im adds gcol back into gx
//
// so all the arithmetic is cuda::gemm (cuBLAS or the hand-written SGEMM). The
// loop over chunks, and the permutes between y's (B, O, P) and the GEMM's
// (O, B·P), are conv_kernels::forward_chunks and backward_chunks
// (cuda/conv_kernels.cuh), which the CPU suite also runs on the host emulator;
// this file gives them their scratch and a Run that launches. col2im is written
// as a gather — each input cell sums the column entries that came from it — so
// it needs no atomics and is deterministic. cuDNN is the comparator in the
// benchmark, not the implementation.
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

// What forward_chunks and backward_chunks run on: kernel launches on the
// current stream and cuda::gemm.
struct OnTheGpu {
  template <class T>
  void im2col(T* col, const T* x, const Shape& s, const Conv2dParams& p, int64_t samples) const {
    im2col_kernel<T>
        <<<blocks_for(s.all_rows() * s.positions() * samples), kThreads, 0, stream()>>>(col, x, s, p, samples);
    MINIDL_CUDA_CHECK(cudaGetLastError());
  }
  template <class T>
  void col2im(T* gx, const T* gcol, const Shape& s, const Conv2dParams& p, int64_t samples) const {
    col2im_kernel<T><<<blocks_for(s.C * s.H * s.W * samples), kThreads, 0, stream()>>>(gx, gcol, s, p, samples);
    MINIDL_CUDA_CHECK(cudaGetLastError());
  }
  void gemm(int64_t M, int64_t N, int64_t K, double alpha, const TensorArg& A, const TensorArg& B, double beta,
            const TensorArg& C, const GemmEpilogue& epilogue = {}) const {
    cuda::gemm(M, N, K, alpha, A, B, beta, C, GemmKernel::best, epilogue);
  }
  void copy(const TensorArg& dst, const TensorArg& src) const { cuda::copy(dst, src); }
};

// Scratch for a chunk of `chunk` samples: the columns, and (chunk > 1) the
// output or gradient in the GEMM's channel-major layout.
struct ChunkScratch {
  ChunkScratch(const Shape& s, int64_t chunk, size_t element_size, int device)
      : col(static_cast<size_t>(chunk * s.all_rows() * s.positions()) * element_size, device),
        packed(chunk > 1 ? static_cast<size_t>(chunk * s.O * s.positions()) * element_size : 0, device) {}
  Scratch col, packed;
};

}  // namespace

void conv2d_forward(const TensorArg& y, const TensorArg& x, const TensorArg& w, const TensorArg& bias,
                    const Conv2dParams& p) {
  const Shape s = shape_of(x, w, y, p);
  if (s.N == 0 || s.O == 0 || s.positions() == 0) return;
  dispatch_f32_f64(x.dtype, "conv2d", [&](auto tag) {
    using T = decltype(tag);
    const int64_t chunk = samples_per_chunk(s, sizeof(T));
    ChunkScratch scratch(s, chunk, sizeof(T), current_device());
    forward_chunks(OnTheGpu{}, y.ptr<T>(), x.ptr<T>(), w.ptr<T>(), bias.data ? bias.ptr<T>() : nullptr, s, p, chunk,
                   static_cast<T*>(scratch.col.data()), static_cast<T*>(scratch.packed.data()));
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
    if (s.N == 0) return;
    const int64_t chunk = samples_per_chunk(s, esize);
    ChunkScratch scratch(s, chunk, esize, device);
    backward_chunks(OnTheGpu{}, gx.data ? gx.ptr<T>() : nullptr, gw.data ? gw.ptr<T>() : nullptr, gy, x.ptr<T>(),
                    w.ptr<T>(), s, p, chunk, static_cast<T*>(scratch.col.data()),
                    static_cast<T*>(scratch.packed.data()));
  });
}

}  // namespace minidl::cuda
