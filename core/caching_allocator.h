// core/caching_allocator.h — keeps freed blocks for reuse instead of returning them.
//
// A training step allocates the same tensors every step: activations, gradients,
// workspaces. Handing each one back to the system and asking again next step costs
// far more than the arithmetic for the bandwidth-bound ops: a fresh multi-megabyte
// block comes from mmap, and every 4 KiB page of it faults and is zeroed by the
// kernel on first touch. So freed blocks go into bins by size class and the next
// request of that class takes one back, already mapped and warm.
//
// Size classes: a request is rounded up to one of four steps per power of two
// (2^k · {1, 1.25, 1.5, 1.75}), so at most 25% is wasted and blocks of nearly the
// same size are shared. Requests under `min_cached` go straight to the backing
// allocator (malloc is already fast there). Cached bytes are capped: a free that
// would exceed the cap returns the block instead. The same class can wrap any
// backing allocator, so the CUDA backend can put it in front of cudaMalloc.
#pragma once

// MINIDL_ASAN: built with AddressSanitizer (GCC says __SANITIZE_ADDRESS__, clang
// answers __has_feature(address_sanitizer)). The cache is off then.
#if defined(__SANITIZE_ADDRESS__)
#define MINIDL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MINIDL_ASAN 1
#endif
#endif

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <vector>

#include "core/storage.h"

namespace minidl {

struct AllocatorStats {
  int64_t requests = 0;          // allocate() calls with a non-zero size
  int64_t cache_hits = 0;        // a cacheable size, served from a cached block
  int64_t cache_misses = 0;      // a cacheable size, passed to the backing allocator
  int64_t small_allocs = 0;      // under the cached size: always the backing allocator
  int64_t bytes_in_use = 0;      // handed out and not yet freed (rounded sizes)
  int64_t peak_bytes_in_use = 0;
  int64_t bytes_cached = 0;      // freed, kept for reuse
};

class CachingAllocator final : public Allocator {
 public:
  // min_cached: smaller requests are not cached; cache_limit: most bytes kept.
  CachingAllocator(Allocator& backing, size_t min_cached, size_t cache_limit);
  ~CachingAllocator() override;

  void* allocate(size_t nbytes) override;
  void deallocate(void* ptr, size_t nbytes) override;

  // Returns every cached block to the backing allocator.
  void empty_cache();
  AllocatorStats stats() const;
  void set_cache_limit(size_t bytes);

  // The size a request is rounded up to (exposed for tests).
  static size_t size_class(size_t nbytes);

 private:
  Allocator& backing_;
  const size_t min_cached_;
  size_t cache_limit_;
  mutable std::mutex mutex_;
  std::map<size_t, std::vector<void*>> free_;  // size class -> cached blocks
  AllocatorStats stats_;
};

// The CPU allocator every Storage uses: a CachingAllocator over aligned malloc.
// Blocks of 64 KiB and more are cached, up to MINIDL_CPU_CACHE_MB (default 2048) MiB;
// none under AddressSanitizer, so it still sees every use after free.
CachingAllocator& cpu_caching_allocator();

}  // namespace minidl
