// tools/bench/common.h — what every `minidl bench ...` subcommand shares: options,
// output, and the checks that run before anything is timed.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "minidl.h"
#include "tools/bench/benchmark.h"
#include "tools/bench/commands.h"
#include "tools/bench/shapes.h"

#ifdef MINIDL_HAVE_OPENBLAS
extern "C" {
// The OpenBLAS entry points the comparisons need (declared here so the tool
// does not depend on which cblas.h flavour is installed).
enum CBLAS_ORDER_ { kRowMajor = 101 };
enum CBLAS_TRANSPOSE_ { kNoTrans = 111, kTrans = 112 };
void cblas_sgemm(int order, int transa, int transb, int m, int n, int k, float alpha, const float* a, int lda,
                 const float* b, int ldb, float beta, float* c, int ldc);
void cblas_sgemv(int order, int trans, int m, int n, float alpha, const float* a, int lda, const float* x, int incx,
                 float beta, float* y, int incy);
char* openblas_get_corename(void);
int openblas_get_num_threads(void);
void openblas_set_num_threads(int threads);
}
#endif

namespace minidl::bench {

// The run options and the clock for o.device: on the CPU the steady clock (and
// --cold sweeps the CPU caches), on a GPU CUDA events (and --cold flushes its L2).
Options to_options(const CommonOptions& o);
Timer timer_for(const CommonOptions& o);
int threads();
// Where a benchmark's times come from, for its title: "<GPU name>, CUDA events"
// or "<n> threads".
std::string timed_on(const CommonOptions& o);
// The table (text, Markdown or CSV) or the JSON on stdout, as the options say.
// Either way, with --json-out FILE the JSON also goes to FILE (write_json_out).
void emit(const Table& t, nlohmann::json j, const CommonOptions& o);
void write_json_out(const nlohmann::json& j, const CommonOptions& o);

// max |got − want| / max |want| (the error relative to the output's scale).
double relative_error(const Tensor& got, const Tensor& want);
// A benchmark never prints a time for a wrong result: throws naming what is wrong.
void require_close(const char* bench, const std::string& what, const Tensor& got, const Tensor& want,
                   double tolerance);
// Freivalds' check of C = A·B in O(n²): C·r against A·(B·r) for a random r, in f64.
void require_gemm(const char* who, const Tensor& A, const Tensor& B, const Tensor& C, uint64_t seed);
// The model's logits (and, with `labels`, every parameter's gradient) in f32
// against an f64 copy of the same model.
void require_model(const char* bench, nn::Module& model, const std::string& model_name, const Tensor& x,
                   const Tensor& labels);
#ifdef MINIDL_HAVE_OPENBLAS
// Gives OpenBLAS as many threads as minidl has (`--threads`, else one per core),
// so that a ratio compares like with like — unless OPENBLAS_NUM_THREADS is set,
// the user's own choice, which print_openblas_notes then points out. Returns
// OpenBLAS's thread count, for the JSON.
int match_openblas_threads();
// Which OpenBLAS kernel is in use, with a note when its threads will spin into
// the next variant, when they are not as many as minidl's, or when it picked
// kernels below this CPU's ISA.
void print_openblas_notes();
// C (M, N) = A (M, K) · B, all row-major with the given row strides; B is
// (K, N), or (N, K) read transposed when b_transposed. One row (M = 1) or
// one column (N = 1) goes to sgemv: OpenBLAS's sgemm packs its operands even
// then and runs several times slower than its own matrix-vector product, which
// is the fair comparator.
void openblas_gemm(int64_t M, int64_t N, int64_t K, const float* a, int64_t lda, const float* b, int64_t ldb,
                   bool b_transposed, float* c, int64_t ldc);
#endif
// FASTER, SLOWER, SAME or UNCLEAR for a speed-up measured round by round (the
// p10 and p90 of the per-round ratios): FASTER when nine rounds
// in ten were faster by more than 3%, SLOWER when nine in ten were slower by
// more than 3%, SAME when nine in ten were within ±3%, and UNCLEAR otherwise —
// never a verdict from one number.
const char* verdict(double p10, double p90);
// The first `count` test images of data_dir, normalised as training sees them;
// a test set of fewer images is repeated to make up `count`.
Tensor real_images(const std::string& data_dir, int64_t count);
// v with `digits` decimals.
std::string fixed(double v, int digits);

}  // namespace minidl::bench
