#include "core/caching_allocator.h"

#include <bit>
#include <cstdlib>
#include <string>

#include "core/check.h"
#include "core/parse.h"

namespace minidl {

size_t CachingAllocator::size_class(size_t nbytes) {
  if (nbytes <= 256) return (nbytes + kCpuAlignment - 1) / kCpuAlignment * kCpuAlignment;
  // Four steps per power of two: the step is a quarter of the largest power of
  // two not above nbytes, and the size rounds up to a whole number of steps.
  const size_t step = std::bit_floor(nbytes) / 4;
  return (nbytes + step - 1) / step * step;
}

CachingAllocator::CachingAllocator(Allocator& backing, size_t min_cached, size_t cache_limit)
    : backing_(backing), min_cached_(min_cached), cache_limit_(cache_limit) {}

CachingAllocator::~CachingAllocator() { empty_cache(); }

void* CachingAllocator::allocate(size_t nbytes) {
  if (nbytes == 0) return nullptr;
  const size_t size = size_class(nbytes);
  {
    std::lock_guard lock(mutex_);
    ++stats_.requests;
    stats_.bytes_in_use += static_cast<int64_t>(size);
    stats_.peak_bytes_in_use = std::max(stats_.peak_bytes_in_use, stats_.bytes_in_use);
    if (size >= min_cached_) {
      auto it = free_.find(size);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        ++stats_.cache_hits;
        stats_.bytes_cached -= static_cast<int64_t>(size);
        return p;
      }
      ++stats_.cache_misses;
    } else {
      ++stats_.small_allocs;
    }
  }
  try {
    return backing_.allocate(size);
  } catch (...) {
    // Out of memory with blocks parked here: give them back and try once more.
    empty_cache();
    try {
      return backing_.allocate(size);
    } catch (...) {
      std::lock_guard lock(mutex_);
      stats_.bytes_in_use -= static_cast<int64_t>(size);
      throw;
    }
  }
}

void CachingAllocator::deallocate(void* ptr, size_t nbytes) {
  if (ptr == nullptr) return;
  const size_t size = size_class(nbytes);
  {
    std::lock_guard lock(mutex_);
    stats_.bytes_in_use -= static_cast<int64_t>(size);
    if (size >= min_cached_ && stats_.bytes_cached + static_cast<int64_t>(size) <= static_cast<int64_t>(cache_limit_)) {
      free_[size].push_back(ptr);
      stats_.bytes_cached += static_cast<int64_t>(size);
      return;
    }
  }
  backing_.deallocate(ptr, size);
}

void CachingAllocator::empty_cache() {
  std::map<size_t, std::vector<void*>> blocks;
  {
    std::lock_guard lock(mutex_);
    blocks.swap(free_);
    stats_.bytes_cached = 0;
  }
  for (auto& [size, list] : blocks)
    for (void* p : list) backing_.deallocate(p, size);
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

void CachingAllocator::set_cache_limit(size_t bytes) {
  {
    std::lock_guard lock(mutex_);
    cache_limit_ = bytes;
    if (stats_.bytes_cached <= static_cast<int64_t>(bytes)) return;
  }
  empty_cache();
}

namespace {

// The backing CPU allocator: 64-byte-aligned blocks (one cache line, one AVX-512 vector).
class AlignedAllocator final : public Allocator {
 public:
  void* allocate(size_t nbytes) override {
    if (nbytes == 0) return nullptr;
    // aligned_alloc wants a size that is a multiple of the alignment.
    size_t rounded = (nbytes + kCpuAlignment - 1) / kCpuAlignment * kCpuAlignment;
    void* p = std::aligned_alloc(kCpuAlignment, rounded);
    MINIDL_CHECK(p != nullptr, "cpu allocator: out of memory allocating {} bytes", nbytes);
    return p;
  }
  void deallocate(void* ptr, size_t) override { std::free(ptr); }
};

size_t cpu_cache_limit() {
#if defined(MINIDL_ASAN)
  size_t mib = 0;  // under ASan every free really frees, so use-after-free is still caught
#else
  size_t mib = 2048;
#endif
  if (const char* env = std::getenv("MINIDL_CPU_CACHE_MB")) {
    // (2^40 MiB is an exbibyte; the bound keeps mib << 20 from wrapping around)
    const std::optional<int64_t> v = parse_int(env);
    MINIDL_CHECK(v && *v >= 0 && *v <= (int64_t{1} << 40),
                 "MINIDL_CPU_CACHE_MB='{}' is not a whole number of MiB from 0 to 2^40", env);
    mib = static_cast<size_t>(*v);
  }
  return mib << 20;
}

}  // namespace

CachingAllocator& cpu_caching_allocator() {
  // Never destroyed: Storages freed during static destruction still find it.
  static AlignedAllocator* backing = new AlignedAllocator;
  static CachingAllocator* instance = new CachingAllocator(*backing, size_t{64} << 10, cpu_cache_limit());
  return *instance;
}

}  // namespace minidl
