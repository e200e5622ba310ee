// cuda/softmax_kernels.cuh — the row kernels of cuda/softmax.cu: softmax /
// log_softmax, cross-entropy, the distillation KL and the distillation loss,
// forward and backward (the design is in cuda/softmax.cu's header).
//
// Kept apart from their launchers so that two programs compile them: nvcc, for
// the GPU, and the host compiler through tests/cuda_emulator.h, which runs a
// block's threads (and warp shuffles) on the host: the CPU suite checks these
// kernels against the CPU's row kernels on machines without a GPU
// (tests/test_cuda_emulated.cpp). In an unnamed namespace, so each of the two
// gets its own copy.
#pragma once

#include <cmath>
#include <cstdint>

#include "cuda/device.cuh"

namespace minidl::cuda::rows {
namespace {

// Shared scratch for block reductions, typed per kernel (double-aligned).
template <class C>
__device__ C* reduction_scratch() {
  __shared__ double raw[kWarp];
  return reinterpret_cast<C*>(raw);
}

template <class C>
struct LogSumExp {
  C max, log_sum;
  __device__ C log_p(C z) const { return (z - max) - log_sum; }
};

// The log-normaliser of the row scale·x, every thread of the block taking part,
// in one pass over the row ("online softmax", Milakov & Gimelshein 2018): each
// thread keeps a running max m and Σ e^{z − m}, and when a larger z arrives it
// rescales the sum it has, s·e^{m − z} + 1, instead of reading the row again.
// The block then takes the largest of the threads' maxima, M, and adds their
// sums rescaled to it, s·e^{m − M}. An all −inf row gets max 0, so its exps are
// 0 and its log −inf (as on the CPU).
template <class C, class T>
__device__ LogSumExp<C> block_logsumexp(const T* x, int64_t cols, C scale, C* scratch) {
  C m = C(-INFINITY), s = 0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const C z = scale * static_cast<C>(x[c]);
    if (z > m) {
      s = s * exp(m - z) + C(1);  // e^{−inf} = 0 for the first value
      m = z;
    } else if (z != C(-INFINITY)) {
      s += exp(z - m);  // a NaN z lands here and makes the sum NaN, as on the CPU
    }
  }
  C row_max = block_max(m, scratch);
  const C mine = m == C(-INFINITY) ? C(0) : s * exp(m - row_max);
  const C total = block_sum(mine, scratch);
  if (isinf(row_max) && row_max < C(0)) row_max = C(0);
  return {row_max, log(total)};
}

template <class T>
__global__ void softmax_kernel(T* y, const T* x, int64_t cols, bool log_out) {
  using C = compute_t<T>;
  C* scratch = reduction_scratch<C>();
  const T* in = x + blockIdx.x * cols;
  T* out = y + blockIdx.x * cols;
  const LogSumExp<C> s = block_logsumexp<C>(in, cols, C(1), scratch);
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const C log_p = s.log_p(static_cast<C>(in[c]));
    out[c] = T(log_out ? log_p : exp(log_p));
  }
}

// softmax: gx = y ⊙ (g − Σ g y);   log_softmax: gx = g − exp(y) Σ g.
template <class T>
__global__ void softmax_backward_kernel(T* gx, const T* g, const T* y, int64_t cols, bool log_out) {
  using C = compute_t<T>;
  C* scratch = reduction_scratch<C>();
  const int64_t base = blockIdx.x * cols;
  C dot = 0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
    dot += log_out ? static_cast<C>(g[base + c]) : static_cast<C>(g[base + c]) * static_cast<C>(y[base + c]);
  dot = block_sum(dot, scratch);
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const C gc = static_cast<C>(g[base + c]), yc = static_cast<C>(y[base + c]);
    gx[base + c] = T(log_out ? gc - exp(yc) * dot : yc * (gc - dot));
  }
}

__device__ inline void report_bad_row(int64_t* status, int64_t row) {
  atomicMin(reinterpret_cast<unsigned long long*>(status), static_cast<unsigned long long>(row));
}

//   loss_r = (1 − ε) w_t (−log p_t) + ε/C Σ_c w_c (−log p_c)   (0 for an ignored or bad row)
template <class T>
__global__ void cross_entropy_kernel(T* loss, T* lse, const T* logits, const int64_t* target, const T* weight,
                                     int64_t cols, int64_t ignore_index, double label_smoothing, int64_t* status) {
  using C = compute_t<T>;
  C* scratch = reduction_scratch<C>();
  const int64_t r = blockIdx.x;
  const T* x = logits + r * cols;
  const LogSumExp<C> s = block_logsumexp<C>(x, cols, C(1), scratch);
  const int64_t t = target[r];  // the same for the whole block: every branch below is uniform
  if (threadIdx.x == 0) lse[2 * r] = T(s.max), lse[2 * r + 1] = T(s.log_sum);
  if (t == ignore_index || t < 0 || t >= cols) {
    if (threadIdx.x == 0) {
      loss[r] = T(0);
      if (t != ignore_index) report_bad_row(status, r);
    }
    return;
  }
  const C eps = static_cast<C>(label_smoothing);
  C smooth = 0;
  if (eps != C(0)) {
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x)
      smooth += (weight ? static_cast<C>(weight[c]) : C(1)) * ((s.max - static_cast<C>(x[c])) + s.log_sum);
    smooth = block_sum(smooth, scratch);
  }
  if (threadIdx.x == 0) {
    const C w_t = weight ? static_cast<C>(weight[t]) : C(1);
    loss[r] = T((C(1) - eps) * w_t * ((s.max - static_cast<C>(x[t])) + s.log_sum) + eps / C(cols) * smooth);
  }
}

// gx_r = g_r · [(1 − ε) w_t (p − onehot_t) + ε/C (W p − w)],  W = Σ_c w_c
template <class T>
__global__ void cross_entropy_backward_kernel(T* gx, const T* scale, int64_t scale_stride, const T* logits,
                                              const T* lse, const int64_t* target, const T* weight, int64_t cols,
                                              int64_t ignore_index, double label_smoothing) {
  using C = compute_t<T>;
  C* scratch = reduction_scratch<C>();
  const int64_t r = blockIdx.x;
  const T* x = logits + r * cols;
  T* o = gx + r * cols;
  const int64_t t = target[r];
  if (t == ignore_index) {
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) o[c] = T(0);
    return;
  }
  C w_total = C(cols);
  if (weight) {
    w_total = 0;
    for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) w_total += static_cast<C>(weight[c]);
    w_total = block_sum(w_total, scratch);
  }
  const C g = static_cast<C>(scale[r * scale_stride]);
  const LogSumExp<C> s{static_cast<C>(lse[2 * r]), static_cast<C>(lse[2 * r + 1])};
  const C eps = static_cast<C>(label_smoothing);
  const C hard = (C(1) - eps) * (weight ? static_cast<C>(weight[t]) : C(1)), soft = eps / C(cols);
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const C prob = exp(s.log_p(static_cast<C>(x[c])));
    const C w_c = weight ? static_cast<C>(weight[c]) : C(1);
    o[c] = T(g * (hard * (prob - (c == t ? C(1) : C(0))) + soft * (w_total * prob - w_c)));
  }
}

// KL(p_t ‖ p_s) per row, p = softmax(logits / T); a p_t that underflows adds 0
// (its log stays finite: no 0 · ∞). stats: (max, log_sum) of student, then teacher.
template <class T>
__global__ void kl_div_kernel(T* loss, T* stats, const T* student, const T* teacher, int64_t cols, double temperature) {
  using C = compute_t<T>;
  C* scratch = reduction_scratch<C>();
  const int64_t r = blockIdx.x;
  const T* s = student + r * cols;
  const T* t = teacher + r * cols;
  const C inv_t = C(1) / static_cast<C>(temperature);
  const LogSumExp<C> ls = block_logsumexp<C>(s, cols, inv_t, scratch), lt = block_logsumexp<C>(t, cols, inv_t, scratch);
  C kl = 0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const C log_pt = lt.log_p(inv_t * static_cast<C>(t[c])), log_ps = ls.log_p(inv_t * static_cast<C>(s[c]));
    kl += exp(log_pt) * (log_pt - log_ps);
  }
  kl = block_sum(kl, scratch);
  if (threadIdx.x == 0) {
    loss[r] = T(kl);
    T* st = stats + 4 * r;
    st[0] = T(ls.max), st[1] = T(ls.log_sum), st[2] = T(lt.max), st[3] = T(lt.log_sum);
  }
}

// ∂KL_r/∂s_c = (p_s,c − p_t,c) / T;   ∂KL_r/∂t_c = p_t,c (log p_t,c − log p_s,c − KL_r) / T.
template <class T>
__global__ void kl_div_backward_kernel(T* gs, T* gt, const T* scale, int64_t scale_stride, const T* student,
                                       const T* teacher, const T* stats, const T* loss, int64_t cols,
                                       double temperature) {
  using C = compute_t<T>;
  const int64_t r = blockIdx.x;
  const T* s = student + r * cols;
  const T* t = teacher + r * cols;
  const T* st = stats + 4 * r;
  const LogSumExp<C> ls{static_cast<C>(st[0]), static_cast<C>(st[1])}, lt{static_cast<C>(st[2]), static_cast<C>(st[3])};
  const C inv_t = C(1) / static_cast<C>(temperature);
  const C g = static_cast<C>(scale[r * scale_stride]) * inv_t, kl = static_cast<C>(loss[r]);
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const C log_pt = lt.log_p(inv_t * static_cast<C>(t[c])), log_ps = ls.log_p(inv_t * static_cast<C>(s[c]));
    if (gs) gs[r * cols + c] = T(g * (exp(log_ps) - exp(log_pt)));
    if (gt) gt[r * cols + c] = T(g * exp(log_pt) * (log_pt - log_ps - kl));
  }
}

// The whole distillation loss of a row and its gradient (ops/cpu/kernels.h):
//   kl_r = Σ_c p_t (log p_t − log p_s) at temperature T,  ce_r = −log softmax(s)_y,
//   g_c  = a (p_s,c − p_t,c) + b (softmax(s)_c − [c = y]),  a = α T · scale, b = (1 − α) · scale.
// As on the CPU the KL's parts are kept in double: a KL of 0.08 is built from
// terms of ±7 at T = 8. The exps are recomputed on the gradient pass instead of
// kept in scratch: on a GPU the row is re-read from L1/L2 and exp is cheap.
template <class T>
__global__ void distillation_kernel(T* kl, T* ce, T* grad, const T* student, const T* teacher, const int64_t* target,
                                    int64_t cols, double temperature, double a_scale, double b_scale,
                                    int64_t* status) {
  using C = compute_t<T>;
  __shared__ double scratch_d[kWarp];
  C* scratch = reduction_scratch<C>();
  const int64_t r = blockIdx.x;
  const T* s = student + r * cols;
  const T* t = teacher + r * cols;
  const int64_t y = target[r];  // uniform across the block
  if (y < 0 || y >= cols) {
    if (threadIdx.x == 0) {
      kl[r] = ce[r] = T(0);
      report_bad_row(status, r);
    }
    return;
  }
  const C inv_t = C(1) / static_cast<C>(temperature);
  C ms = C(-INFINITY), mt = C(-INFINITY);
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    ms = max(ms, static_cast<C>(s[c]));
    mt = max(mt, static_cast<C>(t[c]));
  }
  ms = block_max(ms, scratch);
  mt = block_max(mt, scratch);
  double sum_s = 0, sum_t = 0;
  C sum_1 = 0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const C sc = static_cast<C>(s[c]), tc = static_cast<C>(t[c]);
    sum_s += exp(inv_t * sc - ms * inv_t);
    sum_t += exp(inv_t * tc - mt * inv_t);
    sum_1 += exp(sc - ms);
  }
  sum_s = block_sum(sum_s, scratch_d);
  sum_t = block_sum(sum_t, scratch_d);
  sum_1 = block_sum(sum_1, scratch);
  const double inv_td = 1.0 / temperature;
  const double shift = (double(ms) - double(mt)) * inv_td + (log(sum_s) - log(sum_t));
  const C inv_s = C(1.0 / sum_s), inv_tt = C(1.0 / sum_t), inv_1 = C(1) / sum_1;
  double kl_r = 0;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const C et = exp(inv_t * static_cast<C>(t[c]) - mt * inv_t);
    kl_r += double(et * inv_tt) * ((double(t[c]) - double(s[c])) * inv_td + shift);
  }
  kl_r = block_sum(kl_r, scratch_d);
  if (threadIdx.x == 0) {
    kl[r] = T(kl_r);
    ce[r] = T((ms - static_cast<C>(s[y])) + log(sum_1));
  }
  if (!grad) return;
  const C a = static_cast<C>(a_scale), b = static_cast<C>(b_scale);
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) {
    const C sc = static_cast<C>(s[c]);
    const C es = exp(inv_t * sc - ms * inv_t), et = exp(inv_t * static_cast<C>(t[c]) - mt * inv_t);
    const C e1 = exp(sc - ms);
    grad[r * cols + c] = T(a * (es * inv_s - et * inv_tt) + b * (e1 * inv_1 - (c == y ? C(1) : C(0))));
  }
}

}  // namespace
}  // namespace minidl::cuda::rows
