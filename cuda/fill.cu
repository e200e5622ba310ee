// cuda/fill.cu — fill: every element of a strided tensor := value.
//
// The CUDA skeleton's one kernel. Bandwidth-bound: one thread per element in a
// grid-stride loop; each thread turns its linear index into an offset through
// the tensor's strides, so views (a column, a transposed block) fill correctly.
#include "cuda/check.h"
#include "cuda/runtime.h"

namespace minidl::cuda {

namespace {

template <class T>
__global__ void fill_kernel(TensorArg dst, T value, int64_t numel) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < numel; i += int64_t(gridDim.x) * blockDim.x) {
    int64_t rest = i, offset = 0;
    for (int d = dst.ndim - 1; d >= 0; --d) {
      offset += (rest % dst.shape[d]) * dst.strides[d];
      rest /= dst.shape[d];
    }
    dst.ptr<T>()[offset] = value;
  }
}

template <class T>
void launch(const TensorArg& dst, T value) {
  const int64_t numel = dst.numel();
  if (numel == 0) return;
  const int threads = 256;
  const int64_t blocks = std::min<int64_t>((numel + threads - 1) / threads, 65535);
  fill_kernel<T><<<static_cast<unsigned>(blocks), threads>>>(dst, value, numel);
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

void fill(const TensorArg& dst, double value, int device) {
  MINIDL_CUDA_CHECK(cudaSetDevice(device));
  switch (dst.dtype) {
    case DType::f32: return launch<float>(dst, static_cast<float>(value));
    case DType::f64: return launch<double>(dst, value);
    case DType::bf16: return launch<bf16>(dst, bf16(static_cast<float>(value)));
    case DType::int8: return launch<int8_t>(dst, static_cast<int8_t>(value));
    case DType::int32: return launch<int32_t>(dst, static_cast<int32_t>(value));
    case DType::int64: return launch<int64_t>(dst, static_cast<int64_t>(value));
    case DType::boolean: return launch<bool>(dst, value != 0);
  }
  throw Error("fill: unknown dtype on cuda");
}

}  // namespace minidl::cuda
