// ops/cpu/softmax.cpp — softmax / log_softmax over the rows of (rows, cols), and
// the fused losses built on the same row pass: cross-entropy, the distillation
// KL, and the whole distillation loss with its gradient.
//
// Numerically stable: subtract the row max before exp, so logits of ±1e4 give
// exact, finite results. Rows in parallel. Each function reads a row a few times
// while it is in L1 and writes it once: the fused forms replace chains of
// whole-tensor ops (exp, sum, mul, sub, gather, ...) that would each stream the
// tensor through memory. What is left is the exps — one to three per element —
// so they are exp_f32 (ops/cpu/exp.h) in loops marked `omp simd`: eight at a time.
//
// The row machinery every kernel here shares: row_max, row_sum_exp (optionally
// keeping each term), and LogSumExp, a row's log-normaliser kept in two parts.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/dtype_dispatch.h"
#include "ops/cpu/exp.h"
#include "ops/cpu/kernels.h"
#include "ops/cpu/loops.h"

namespace minidl::cpu {

namespace {

// max_c scale·x_c (scale > 0); an all −inf row gives 0, so its exps are 0s and its log −inf.
template <class C, class T>
C row_max(const T* x, int64_t cols, C scale = C(1)) {
  C m = -std::numeric_limits<C>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t c = 0; c < cols; ++c) m = std::max(m, scale * static_cast<C>(x[c]));
  return std::isinf(m) && m < 0 ? C(0) : m;
}

// Σ_c e^{scale·x_c − shift}, summed in Acc; with `terms`, each e^{...} is kept there too.
template <class C, class T, class Acc = C>
Acc row_sum_exp(const T* x, int64_t cols, C scale, C shift, C* terms = nullptr) {
  Acc sum = 0;
  if (terms) {
#pragma omp simd reduction(+ : sum)
    for (int64_t c = 0; c < cols; ++c) sum += terms[c] = exp_of(scale * static_cast<C>(x[c]) - shift);
  } else {
#pragma omp simd reduction(+ : sum)
    for (int64_t c = 0; c < cols; ++c) sum += exp_of(scale * static_cast<C>(x[c]) - shift);
  }
  return sum;
}

// log Σ_c exp(x_c) = max + log Σ_c exp(x_c − max), kept as the two parts: for
// logits of 1e4 their sum would round away the log term (10000.693 has a float
// ulp of 0.001), while −log p_c = (max − x_c) + log_sum stays exact.
template <class C>
struct LogSumExp {
  C max, log_sum;
  C log_p(C z) const { return (z - max) - log_sum; }  // log softmax at logit z
};
// Of the row scale·x (scale > 0: a softmax at temperature 1/scale).
template <class C, class T>
LogSumExp<C> row_logsumexp(const T* x, int64_t cols, C scale = C(1)) {
  const C m = row_max<C>(x, cols, scale);
  return {m, std::log(row_sum_exp<C>(x, cols, scale, m))};
}

// Scratch rows for one thread: grown, never shrunk, reused by every call on it.
template <class C>
C* thread_scratch(int64_t n) {
  thread_local std::vector<C> buffer;
  if (static_cast<int64_t>(buffer.size()) < n) buffer.resize(static_cast<size_t>(n));
  return buffer.data();
}

}  // namespace

void softmax_rows(const TensorArg& y, const TensorArg& x, bool log) {
  const int64_t rows = x.shape[0], cols = x.shape[1];
  dispatch_floating(x.dtype, log ? "log_softmax" : "softmax", [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    const T* xp = x.ptr<T>();
    T* yp = y.ptr<T>();
    parallel_for(rows * cols > kParallelGrain, rows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* in = xp + r * cols;
        T* out = yp + r * cols;
        const C m = row_max<C>(in, cols);
        if (log) {
          const C log_sum = std::log(row_sum_exp<C>(in, cols, C(1), m));
#pragma omp simd
          for (int64_t c = 0; c < cols; ++c) out[c] = T(static_cast<C>(in[c]) - m - log_sum);
        } else {
          C* e = thread_scratch<C>(cols);
          const C inv = C(1) / row_sum_exp<C>(in, cols, C(1), m, e);
#pragma omp simd
          for (int64_t c = 0; c < cols; ++c) out[c] = T(e[c] * inv);
        }
      }
    });
  });
}

void softmax_rows_backward(const TensorArg& gx, const TensorArg& g, const TensorArg& y, bool log) {
  const int64_t rows = y.shape[0], cols = y.shape[1];
  dispatch_floating(y.dtype, log ? "log_softmax backward" : "softmax backward", [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    const T* gp = g.ptr<T>();
    const T* yp = y.ptr<T>();
    T* out = gx.ptr<T>();
    parallel_for(rows * cols > kParallelGrain, rows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* gr = gp + r * cols;
        const T* yr = yp + r * cols;
        T* o = out + r * cols;
        C dot = 0;  // Σ g (log) or Σ g y (softmax)
        for (int64_t c = 0; c < cols; ++c)
          dot += log ? static_cast<C>(gr[c]) : static_cast<C>(gr[c]) * static_cast<C>(yr[c]);
        if (log) {
#pragma omp simd
          for (int64_t c = 0; c < cols; ++c) o[c] = T(static_cast<C>(gr[c]) - exp_of(static_cast<C>(yr[c])) * dot);
        } else {
          for (int64_t c = 0; c < cols; ++c) o[c] = T(static_cast<C>(yr[c]) * (static_cast<C>(gr[c]) - dot));
        }
      }
    });
  });
}

void cross_entropy_rows(const TensorArg& loss, const TensorArg& lse, const TensorArg& logits, const TensorArg& target,
                        const TensorArg& weight, const CrossEntropyParams& p, const TensorArg& status) {
  const int64_t rows = logits.shape[0], cols = logits.shape[1];
  int64_t bad_row = -1;
  dispatch_floating(logits.dtype, "cross_entropy", [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    const T* xp = logits.ptr<T>();
    const int64_t* tp = target.ptr<int64_t>();
    const T* wp = weight.data ? weight.ptr<T>() : nullptr;
    T* lp = loss.ptr<T>();
    T* sp = lse.ptr<T>();
    const C eps = static_cast<C>(p.label_smoothing);
    // Each thread's rows, returning the first whose target is out of range (rows if none).
    auto run_rows = [&](int64_t r0, int64_t r1) {
      int64_t first_bad = rows;
      for (int64_t r = r0; r < r1; ++r) {
        const T* x = xp + r * cols;
        const int64_t t = tp[r];
        const LogSumExp<C> s = row_logsumexp<C>(x, cols);
        sp[2 * r] = T(s.max), sp[2 * r + 1] = T(s.log_sum);
        if (t == p.ignore_index) {
          lp[r] = T(0);
          continue;
        }
        if (t < 0 || t >= cols) {
          first_bad = std::min(first_bad, r);
          lp[r] = T(0);
          continue;
        }
        // −log p_c = (max − x_c) + log_sum
        const C w_t = wp ? static_cast<C>(wp[t]) : C(1);
        C l = (C(1) - eps) * w_t * ((s.max - static_cast<C>(x[t])) + s.log_sum);
        if (eps != C(0)) {
          C smooth = 0;
          for (int64_t c = 0; c < cols; ++c)
            smooth += (wp ? static_cast<C>(wp[c]) : C(1)) * ((s.max - static_cast<C>(x[c])) + s.log_sum);
          l += eps / C(cols) * smooth;
        }
        lp[r] = T(l);
      }
      return first_bad;
    };
    const int64_t first_bad = parallel_first(rows * cols > kParallelGrain, rows, run_rows);
    if (first_bad < rows) bad_row = first_bad;
  });
  *status.ptr<int64_t>() = bad_row;
}

void cross_entropy_rows_backward(const TensorArg& gx, const TensorArg& scale, const TensorArg& logits,
                                 const TensorArg& lse, const TensorArg& target, const TensorArg& weight,
                                 const CrossEntropyParams& p) {
  const int64_t rows = logits.shape[0], cols = logits.shape[1];
  dispatch_floating(logits.dtype, "cross_entropy backward", [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    const T* xp = logits.ptr<T>();
    const T* sp = lse.ptr<T>();
    const T* gp = scale.ptr<T>();
    const int64_t g_stride = scale.ndim == 0 ? 0 : scale.strides[0];
    const int64_t* tp = target.ptr<int64_t>();
    const T* wp = weight.data ? weight.ptr<T>() : nullptr;
    T* out = gx.ptr<T>();
    const C eps = static_cast<C>(p.label_smoothing);
    C w_total = C(cols);  // W = Σ_c w_c
    if (wp) {
      w_total = 0;
      for (int64_t c = 0; c < cols; ++c) w_total += static_cast<C>(wp[c]);
    }
    parallel_for(rows * cols > kParallelGrain, rows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* x = xp + r * cols;
        T* o = out + r * cols;
        const int64_t t = tp[r];
        if (t == p.ignore_index) {
          std::fill(o, o + cols, T(0));
          continue;
        }
        const C g = static_cast<C>(gp[r * g_stride]);
        const LogSumExp<C> s{static_cast<C>(sp[2 * r]), static_cast<C>(sp[2 * r + 1])};
        const C hard = (C(1) - eps) * (wp ? static_cast<C>(wp[t]) : C(1));  // weight of (p − onehot_t)
        const C soft = eps / C(cols);
        // One loop, instantiated per weighting, so it holds no branch and vectorises.
        auto write = [&](auto weight_of) {
#pragma omp simd
          for (int64_t c = 0; c < cols; ++c) {
            const C prob = exp_of(s.log_p(static_cast<C>(x[c])));
            o[c] = T(g * (hard * prob + soft * (w_total * prob - weight_of(c))));
          }
        };
        if (wp)
          write([&](int64_t c) { return static_cast<C>(wp[c]); });
        else
          write([](int64_t) { return C(1); });
        o[t] = T(static_cast<C>(o[t]) - g * hard);
      }
    });
  });
}

// KL(p_t ‖ p_s) per row, p = softmax(logits / T). With z = x / T, log p_c = (z_c − max) − log_sum
// for each side; the row's loss is Σ_c p_t,c (log p_t,c − log p_s,c), a term that is 0
// where p_t,c underflows (its log stays finite, so no 0·∞).
void kl_div_rows(const TensorArg& loss, const TensorArg& lse, const TensorArg& student, const TensorArg& teacher,
                 double temperature) {
  const int64_t rows = student.shape[0], cols = student.shape[1];
  dispatch_floating(student.dtype, "kl_div_logits", [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    const T* sp = student.ptr<T>();
    const T* tp = teacher.ptr<T>();
    T* lp = loss.ptr<T>();
    T* stats = lse.ptr<T>();
    const C inv_t = C(1) / static_cast<C>(temperature);
    parallel_for(rows * cols > kParallelGrain, rows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* s = sp + r * cols;
        const T* t = tp + r * cols;
        const LogSumExp<C> ls = row_logsumexp<C>(s, cols, inv_t), lt = row_logsumexp<C>(t, cols, inv_t);
        C kl = 0;
#pragma omp simd reduction(+ : kl)
        for (int64_t c = 0; c < cols; ++c) {
          const C log_pt = lt.log_p(inv_t * static_cast<C>(t[c])), log_ps = ls.log_p(inv_t * static_cast<C>(s[c]));
          kl += exp_of(log_pt) * (log_pt - log_ps);
        }
        lp[r] = T(kl);
        T* st = stats + 4 * r;
        st[0] = T(ls.max), st[1] = T(ls.log_sum), st[2] = T(lt.max), st[3] = T(lt.log_sum);
      }
    });
  });
}

// ∂KL_r/∂s_c = (p_s,c − p_t,c) / T;   ∂KL_r/∂t_c = p_t,c (log p_t,c − log p_s,c − KL_r) / T.
void kl_div_rows_backward(const TensorArg& gs, const TensorArg& gt, const TensorArg& scale, const TensorArg& student,
                          const TensorArg& teacher, const TensorArg& lse, const TensorArg& loss, double temperature) {
  const int64_t rows = student.shape[0], cols = student.shape[1];
  dispatch_floating(student.dtype, "kl_div_logits backward", [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    const T* sp = student.ptr<T>();
    const T* tp = teacher.ptr<T>();
    const T* stats = lse.ptr<T>();
    const T* lp = loss.ptr<T>();
    const T* gp = scale.ptr<T>();
    const int64_t g_stride = scale.ndim == 0 ? 0 : scale.strides[0];
    T* gsp = gs.data ? gs.ptr<T>() : nullptr;
    T* gtp = gt.data ? gt.ptr<T>() : nullptr;
    const C inv_t = C(1) / static_cast<C>(temperature);
    parallel_for(rows * cols > kParallelGrain, rows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const T* s = sp + r * cols;
        const T* t = tp + r * cols;
        const T* st = stats + 4 * r;
        const LogSumExp<C> ls{static_cast<C>(st[0]), static_cast<C>(st[1])},
            lt{static_cast<C>(st[2]), static_cast<C>(st[3])};
        const C g = static_cast<C>(gp[r * g_stride]) * inv_t, kl = static_cast<C>(lp[r]);
        // One loop per gradient wanted, so neither holds a branch and both vectorise.
        if (gsp) {
          T* o = gsp + r * cols;
#pragma omp simd
          for (int64_t c = 0; c < cols; ++c)
            o[c] = T(g *
                     (exp_of(ls.log_p(inv_t * static_cast<C>(s[c]))) - exp_of(lt.log_p(inv_t * static_cast<C>(t[c])))));
        }
        if (gtp) {
          T* o = gtp + r * cols;
#pragma omp simd
          for (int64_t c = 0; c < cols; ++c) {
            const C log_pt = lt.log_p(inv_t * static_cast<C>(t[c])), log_ps = ls.log_p(inv_t * static_cast<C>(s[c]));
            o[c] = T(g * exp_of(log_pt) * (log_pt - log_ps - kl));
          }
        }
      }
    });
  });
}

// The distillation loss of each row, and its gradient, in one pass (kernels.h):
//   p_s = softmax(s / T), p_t = softmax(t / T), p = softmax(s)
//   kl_r = Σ_c p_t (log p_t − log p_s)          ce_r = −log p_y = (max s − s_y) + log Σ e^{s − max s}
//   g_c  = a (p_s,c − p_t,c) + b (p_c − [c = y]),  a = α T · grad_scale,  b = (1 − α) · grad_scale
// Three exps per element, each computed once: the row's terms e^{(s − max)/T},
// e^{(t − max)/T} and e^{s − max} go to a thread's scratch (3 × cols, in L1 at
// 1000 classes) on the pass that sums them, and the last pass only multiplies.
// A p_t,c that underflows to 0 adds 0 to kl_r (its log is finite: no 0 · ∞).
void distillation_rows(const TensorArg& kl, const TensorArg& ce, const TensorArg& grad, const TensorArg& student,
                       const TensorArg& teacher, const TensorArg& target, const DistillationParams& p,
                       const TensorArg& status) {
  const int64_t rows = student.shape[0], cols = student.shape[1];
  int64_t bad_row = -1;
  dispatch_floating(student.dtype, "distillation_loss", [&](auto tag) {
    using T = decltype(tag);
    using C = compute_t<T>;
    const T* sp = student.ptr<T>();
    const T* tp = teacher.ptr<T>();
    const int64_t* yp = target.ptr<int64_t>();
    T* klp = kl.ptr<T>();
    T* cep = ce.ptr<T>();
    T* gp = grad.data ? grad.ptr<T>() : nullptr;
    const C inv_t = C(1) / static_cast<C>(p.temperature);
    const C a = static_cast<C>(p.alpha * p.temperature * p.grad_scale),
            b = static_cast<C>((1 - p.alpha) * p.grad_scale);
    // Each thread's rows, returning the first whose target is out of range (rows if none).
    auto run_rows = [&](int64_t r0, int64_t r1) {
      int64_t first_bad = rows;
      for (int64_t r = r0; r < r1; ++r) {
        const T* s = sp + r * cols;
        const T* t = tp + r * cols;
        const int64_t y = yp[r];
        if (y < 0 || y >= cols) {
          first_bad = std::min(first_bad, r);
          klp[r] = cep[r] = T(0);
          continue;
        }
        C* es = thread_scratch<C>(3 * cols);  // e^{(s − max)/T}
        C* et = es + cols;                    // e^{(t − max)/T}
        C* e1 = et + cols;                    // e^{s − max}
        const C ms = row_max<C>(s, cols), mt = row_max<C>(t, cols);
        // The KL is small beside the logs it is made of (0.08 from terms of ±7 at T = 8),
        // so its parts are kept in double: the two sums of exps, and each
        // log p_t − log p_s = (t − s)/T + (max_s − max_t)/T + log Σ_s − log Σ_t.
        const double sum_s = row_sum_exp<C, T, double>(s, cols, inv_t, ms * inv_t, es);
        const double sum_t = row_sum_exp<C, T, double>(t, cols, inv_t, mt * inv_t, et);
        const C sum_1 = row_sum_exp<C>(s, cols, C(1), ms, e1);
        const double inv_td = 1.0 / p.temperature;
        const double shift = (double(ms) - double(mt)) * inv_td + (std::log(sum_s) - std::log(sum_t));
        const C inv_s = C(1.0 / sum_s), inv_tt = C(1.0 / sum_t);
        double kl_r = 0;
#pragma omp simd reduction(+ : kl_r)
        for (int64_t c = 0; c < cols; ++c)
          kl_r += double(et[c] * inv_tt) * ((double(t[c]) - double(s[c])) * inv_td + shift);
        klp[r] = T(kl_r);
        cep[r] = T((ms - static_cast<C>(s[y])) + std::log(sum_1));
        if (!gp) continue;
        T* g = gp + r * cols;
        const C inv_1 = C(1) / sum_1;
#pragma omp simd
        for (int64_t c = 0; c < cols; ++c) g[c] = T(a * (es[c] * inv_s - et[c] * inv_tt) + b * (e1[c] * inv_1));
        g[y] = T(static_cast<C>(g[y]) - b);
      }
      return first_bad;
    };
    const int64_t first_bad = parallel_first(rows * cols > kParallelGrain, rows, run_rows);
    if (first_bad < rows) bad_row = first_bad;
  });
  *status.ptr<int64_t>() = bad_row;
}

}  // namespace minidl::cpu
