// ops/cpu/gemm.cpp — C (M, N) = alpha * A (M, K) · B (K, N) + beta * C.
//
// The reference-grade blocked GEMM. Compute-bound: the trick here is only to
// keep B's rows contiguous in the innermost loop (packing a KC×N panel of B once
// per K block, which also absorbs any transpose) and to parallelise over rows
// of C. The fast, register-blocked AVX-512 kernel is the fast-CPU issue's job and
// replaces the body of gemm() below, nothing else.
#include <algorithm>
#include <vector>

#include "ops/cpu/dispatch.h"
#include "ops/cpu/kernels.h"

namespace minidl::cpu {

namespace {
constexpr int64_t kBlockK = 256;
constexpr int64_t kBlockM = 32;

template <class T>
void gemm_typed(int64_t M, int64_t N, int64_t K, T alpha, const TensorArg& A, const TensorArg& B, T beta,
                const TensorArg& C) {
  const T* a = A.ptr<T>();
  const T* b = B.ptr<T>();
  T* c = C.ptr<T>();
  const int64_t a_rs = A.strides[0], a_cs = A.strides[1];
  const int64_t b_rs = B.strides[0], b_cs = B.strides[1];
  const int64_t c_rs = C.strides[0];

  // Scale C by beta first (beta == 0 overwrites, so C may hold garbage, even NaN).
#pragma omp parallel for if (M * N > 32768)
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) c[i * c_rs + j] = beta == T(0) ? T(0) : beta * c[i * c_rs + j];
  if (K == 0 || alpha == T(0)) return;

  std::vector<T> panel(static_cast<size_t>(std::min(K, kBlockK) * N));
  for (int64_t k0 = 0; k0 < K; k0 += kBlockK) {
    const int64_t kc = std::min(kBlockK, K - k0);
    // Pack B[k0:k0+kc, :] row-major: the inner loop below then reads it with stride 1.
#pragma omp parallel for if (kc * N > 32768)
    for (int64_t k = 0; k < kc; ++k)
      for (int64_t j = 0; j < N; ++j) panel[k * N + j] = b[(k0 + k) * b_rs + j * b_cs];

#pragma omp parallel for schedule(static) if (M * N * kc > 65536)
    for (int64_t i0 = 0; i0 < M; i0 += kBlockM) {
      const int64_t i1 = std::min(M, i0 + kBlockM);
      for (int64_t i = i0; i < i1; ++i) {
        T* c_row = c + i * c_rs;
        for (int64_t k = 0; k < kc; ++k) {
          const T aik = alpha * a[i * a_rs + (k0 + k) * a_cs];
          const T* b_row = panel.data() + k * N;
          for (int64_t j = 0; j < N; ++j) c_row[j] += aik * b_row[j];
        }
      }
    }
  }
}
}  // namespace

void gemm(int64_t M, int64_t N, int64_t K, double alpha, const TensorArg& A, const TensorArg& B, double beta,
          const TensorArg& C) {
  dispatch_f32_f64(C.dtype, "gemm", [&](auto tag) {
    using T = decltype(tag);
    gemm_typed<T>(M, N, K, T(alpha), A, B, T(beta), C);
  });
}

}  // namespace minidl::cpu
