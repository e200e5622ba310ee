// cuda/sgemm.cu — a hand-written SGEMM, kept as five numbered versions (the
// kernels are in cuda/sgemm_kernels.cuh, so the CPU suite can also run them).
//
// Read them in order: each version changes one thing about the one before and
// says why it pays. cuBLAS (cuda/gemm.cu) is the yardstick; the tests check
// every version against it at awkward shapes, and `minidl bench gemm --device
// cuda` times them side by side (docs/cuda.md has the story with numbers).
//
// The problem: C (M, N) = alpha · A (M, K) · B (K, N) + beta · C, row-major C.
// 2·M·N·K flops over (MK + KN + MN) floats: at 4096³ that is 1365 flops per
// float, so a GPU that does ~67 TFLOP/s from ~4.8 TB/s of HBM is compute-bound
// — if each float fetched from memory is reused enough times on chip. Every
// version below is about reuse: registers and shared memory hold pieces of A
// and B so that each global load feeds many multiply-adds.
//
//   v1 naive        one thread per C element, A and B straight from global memory
//   v2 shared       32×32 tiles of A and B staged in shared memory: each global load used 32 times
//   v3 registers    64×64 block tiles, 4×4 outputs per thread held in registers
//   v4 vectorised   128×128 tiles, 8×8 per thread, float4 loads, double-buffered shared memory
//   v5 warp-tiled   v4's tiles arranged by warp (fewer shared-memory transactions), K in steps of 16
//
// Not written: split-K for skinny shapes, and the tensor-core (wgmma) path.
#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "cuda/sgemm_kernels.cuh"

namespace minidl::cuda {

using namespace sgemm;

void sgemm_handwritten(int version, int64_t M, int64_t N, int64_t K, float alpha, const TensorArg& A,
                       const TensorArg& B, float beta, const TensorArg& C, const GemmEpilogue& epilogue) {
  if (M == 0 || N == 0) return;
  const Gemm g{M,
               N,
               K,
               A.ptr<float>(),
               A.strides[0],
               A.strides[1],
               B.ptr<float>(),
               B.strides[0],
               B.strides[1],
               C.ptr<float>(),
               C.strides[0],
               alpha,
               beta,
               static_cast<const float*>(epilogue.bias),
               epilogue.bias_per_row,
               epilogue.relu};
  if (version < 1 || version > kSgemmVersions)
    throw Error("gemm: hand-written SGEMM version " + std::to_string(version) + " does not exist (1 to " +
                std::to_string(kSgemmVersions) + ")");
  const LaunchShape shape = launch_shape(version, M, N);
  if (shape.grid_rows > 65535)
    throw Error("gemm (hand-written): " + std::to_string(M) + " rows is more than this kernel's grid");
  switch (version) {
    case 1: sgemm_v1_naive<<<shape.grid, shape.block, 0, stream()>>>(g); break;
    case 2: sgemm_v2_shared<<<shape.grid, shape.block, 0, stream()>>>(g); break;
    case 3: sgemm_v3_registers<<<shape.grid, shape.block, 0, stream()>>>(g); break;
    case 4:
      sgemm_v4_vectorised<<<shape.grid, shape.block, 0, stream()>>>(g, vector_rows(g.A, g.a_rs, g.a_cs),
                                                                     vector_rows(g.B, g.b_rs, g.b_cs));
      break;
    default:
      sgemm_v5_warptiled<<<shape.grid, shape.block, 0, stream()>>>(g, vector_rows(g.A, g.a_rs, g.a_cs),
                                                                    vector_rows(g.B, g.b_rs, g.b_cs));
  }
  MINIDL_CUDA_CHECK(cudaGetLastError());
}

}  // namespace minidl::cuda
