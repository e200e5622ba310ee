#include "ops/cpu/cpu_features.h"

#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <fmt/format.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "core/error.h"

namespace minidl::cpu {

namespace {
struct Regs {
  unsigned a = 0, b = 0, c = 0, d = 0;
};
Regs cpuid(unsigned leaf, unsigned sub = 0) {
  Regs r;
  __cpuid_count(leaf, sub, r.a, r.b, r.c, r.d);
  return r;
}
bool bit(unsigned reg, int i) { return (reg >> i) & 1u; }

uint64_t xgetbv0() {
  unsigned lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

CpuFeatures detect() {
  CpuFeatures f;
  const unsigned max_leaf = __get_cpuid_max(0, nullptr);
  Regs v = cpuid(0);
  char vendor[13] = {};
  std::memcpy(vendor, &v.b, 4), std::memcpy(vendor + 4, &v.d, 4), std::memcpy(vendor + 8, &v.c, 4);
  f.vendor = vendor;
  if (static_cast<unsigned>(__get_cpuid_max(0x80000000u, nullptr)) >= 0x80000004u) {
    char brand[49] = {};
    for (unsigned i = 0; i < 3; ++i) {
      Regs r = cpuid(0x80000002u + i);
      std::memcpy(brand + 16 * i, &r, 16);
    }
    f.model = brand;
    while (!f.model.empty() && f.model.back() == ' ') f.model.pop_back();
    while (!f.model.empty() && f.model.front() == ' ') f.model.erase(0, 1);
  }
  if (max_leaf < 7) return f;
  Regs l1 = cpuid(1);
  const bool osxsave = bit(l1.c, 27);
  const uint64_t xcr0 = osxsave ? xgetbv0() : 0;
  const bool os_avx = (xcr0 & 0x6) == 0x6;                 // XMM and YMM state
  const bool os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;  // opmask, ZMM_Hi256, Hi16_ZMM
  const bool os_amx = (xcr0 & 0x60000) == 0x60000;         // XTILECFG, XTILEDATA
  Regs l7 = cpuid(7, 0), l7_1 = cpuid(7, 1);
  f.fma = os_avx && bit(l1.c, 12);
  f.avx2 = os_avx && bit(l7.b, 5);
  f.avx512f = os_avx512 && bit(l7.b, 16);
  f.avx512dq = os_avx512 && bit(l7.b, 17);
  f.avx512bw = os_avx512 && bit(l7.b, 30);
  f.avx512vl = os_avx512 && bit(l7.b, 31);
  f.avx512_vnni = os_avx512 && bit(l7.c, 11);
  f.avx512_bf16 = os_avx512 && bit(l7_1.a, 5);
  f.avx_vnni = os_avx && bit(l7_1.a, 4);
  f.amx_bf16 = os_amx && bit(l7.d, 22);
  f.amx_tile = os_amx && bit(l7.d, 24);
  f.amx_int8 = os_amx && bit(l7.d, 25);
  return f;
}

// −1: no override; else a CpuPath value (ScopedCpuPath).
std::atomic<int> g_forced{-1};

CpuPath parse_path(const std::string& name) {
  for (CpuPath p : {CpuPath::generic, CpuPath::avx2, CpuPath::avx512})
    if (name == cpu_path_name(p)) return p;
  throw Error("MINIDL_CPU='" + name + "' is not a CPU path (known: generic, avx2, avx512)");
}

std::string missing_for(CpuPath p) {
  const CpuFeatures& f = cpu_features();
  if (p == CpuPath::avx512) return "avx512f/bw/vl/dq";
  if (p == CpuPath::avx2) return f.avx2 ? "fma" : "avx2";
  return "";
}

// The path MINIDL_CPU asks for (checked once), or the best supported.
CpuPath environment_path() {
  static const CpuPath path = [] {
    const char* env = std::getenv("MINIDL_CPU");
    if (!env || !*env) return supported_cpu_paths().back();
    CpuPath p = parse_path(env);
    if (!cpu_path_supported(p))
      throw Error(fmt::format("MINIDL_CPU={}: this CPU ({}) lacks {}", env, cpu_features().model, missing_for(p)));
    return p;
  }();
  return path;
}
}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

const char* cpu_path_name(CpuPath path) {
  switch (path) {
    case CpuPath::generic:
      return "generic";
    case CpuPath::avx2:
      return "avx2";
    case CpuPath::avx512:
      return "avx512";
  }
  return "?";
}

bool cpu_path_supported(CpuPath path) {
  const CpuFeatures& f = cpu_features();
  switch (path) {
    case CpuPath::generic:
      return true;
    case CpuPath::avx2:
      return f.avx2 && f.fma;
    case CpuPath::avx512:
      return f.avx2 && f.fma && f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq;
  }
  return false;
}

std::vector<CpuPath> supported_cpu_paths() {
  std::vector<CpuPath> out;
  for (CpuPath p : {CpuPath::generic, CpuPath::avx2, CpuPath::avx512})
    if (cpu_path_supported(p)) out.push_back(p);
  return out;
}

CpuPath cpu_path() {
  const int forced = g_forced.load(std::memory_order_relaxed);
  if (forced >= 0) return static_cast<CpuPath>(forced);
  return environment_path();
}

ScopedCpuPath::ScopedCpuPath(CpuPath path) : previous_(g_forced.load()) {
  if (!cpu_path_supported(path))
    throw Error(fmt::format("CPU path {}: this CPU ({}) lacks {}", cpu_path_name(path), cpu_features().model,
                            missing_for(path)));
  g_forced.store(static_cast<int>(path));
}
ScopedCpuPath::~ScopedCpuPath() { g_forced.store(previous_); }

bool amx_usable() {
  static const bool granted = [] {
    const CpuFeatures& f = cpu_features();
    if (!(f.amx_tile && f.amx_int8 && f.amx_bf16)) return false;
    // The tile data (8 KiB of state) is off by default for a Linux process: a
    // process asks for it before its first tile instruction, else that faults.
    constexpr long kReqXcompPerm = 0x1023, kXtiledata = 18;
    return syscall(SYS_arch_prctl, kReqXcompPerm, kXtiledata) == 0;
  }();
  return granted && cpu_path() == CpuPath::avx512;
}

std::string cpu_summary() {
  const CpuFeatures& f = cpu_features();
  std::string s;
  auto add = [&](bool on, const char* name) {
    if (!on) return;
    if (!s.empty()) s += ' ';
    s += name;
  };
  add(f.avx2, "AVX2"), add(f.fma, "FMA"), add(f.avx512f, "AVX-512F"), add(f.avx512bw, "AVX-512BW");
  add(f.avx512vl, "AVX-512VL"), add(f.avx512dq, "AVX-512DQ"), add(f.avx512_vnni, "AVX512_VNNI");
  add(f.avx512_bf16, "AVX512_BF16"), add(f.avx_vnni, "AVX-VNNI"), add(f.amx_tile, "AMX-TILE");
  add(f.amx_bf16, "AMX-BF16"), add(f.amx_int8, "AMX-INT8");
  std::string paths;
  for (CpuPath p : supported_cpu_paths()) {
    if (!paths.empty()) paths += ", ";
    paths += cpu_path_name(p);
  }
  const char* env = std::getenv("MINIDL_CPU");
  std::string chosen;
  try {
    chosen = cpu_path_name(cpu_path());
  } catch (const Error& e) {
    chosen = std::string("none (") + e.what() + ")";
  }
  return fmt::format("{} [{}]; paths {}; using {} (MINIDL_CPU {})", f.model.empty() ? f.vendor : f.model,
                     s.empty() ? "baseline x86-64" : s, paths, chosen,
                     env && *env ? std::string("=") + env : std::string("unset"));
}

}  // namespace minidl::cpu
