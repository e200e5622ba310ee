// ops/cpu/cpu_features.h — what this CPU can run, and which kernel path minidl uses.
//
// One binary runs on every x86-64-v3 (AVX2 + FMA) machine: the default build
// targets that baseline, and each ISA-specific kernel is compiled for its ISA
// alone (function target attributes) and chosen here at run time from CPUID —
// AVX-512 on a Zen 4 / Zen 5 / Sapphire Rapids, AVX2 elsewhere. Later paths
// (AVX512_BF16, VNNI, AMX) are detected here too for the kernels that use them.
//
// MINIDL_CPU=generic|avx2|avx512 caps the path (tests and benchmarks compare
// paths on one machine); asking for a path this CPU lacks is an error naming the
// missing feature. `minidl --version` prints what was detected and chosen.
#pragma once

#include <string>
#include <vector>

namespace minidl::cpu {

struct CpuFeatures {
  std::string vendor, model;  // "GenuineIntel", "Intel(R) Xeon(R) ..."
  bool avx2 = false, fma = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512_bf16 = false, avx512_vnni = false, avx_vnni = false;
  bool amx_tile = false, amx_bf16 = false, amx_int8 = false;  // CPU support; Linux still needs a permission request
};
// Read once from CPUID (and XGETBV: a feature counts only if the OS saves its registers).
const CpuFeatures& cpu_features();

// The kernel paths, each a superset of the one before.
enum class CpuPath { generic, avx2, avx512 };
const char* cpu_path_name(CpuPath path);
// True when this CPU can run the path.
bool cpu_path_supported(CpuPath path);
// Every path this CPU can run, from generic up.
std::vector<CpuPath> supported_cpu_paths();
// The path the kernels use: the best this CPU runs, capped by MINIDL_CPU or by a
// ScopedCpuPath. Throws when MINIDL_CPU names an unknown path or one this CPU lacks.
CpuPath cpu_path();

// Forces a path for the lifetime of the object (tests and benchmarks: run each
// path in one process). Throws if the CPU cannot run it.
class ScopedCpuPath {
 public:
  explicit ScopedCpuPath(CpuPath path);
  ~ScopedCpuPath();
  ScopedCpuPath(const ScopedCpuPath&) = delete;
  ScopedCpuPath& operator=(const ScopedCpuPath&) = delete;

 private:
  int previous_;
};

// True when the AMX tiles can be used in this process: the CPU has them (with
// AMX-INT8 and AMX-BF16), the OS saves their state, and Linux granted the
// tile-data permission — asked for once per process, on the first call
// (arch_prctl ARCH_REQ_XCOMP_PERM). The kernels also need the AVX-512 path.
bool amx_usable();

// "AVX2 FMA AVX-512F ... AMX-TILE; path avx512 (MINIDL_CPU unset)", for --version and benchmark headers.
std::string cpu_summary();

}  // namespace minidl::cpu
