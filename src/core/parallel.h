// parallel_for: splits [0, n) into contiguous chunks over the CPU threads. The CPU backend uses it
// for GEMMs and experts; each chunk must write disjoint outputs.
#pragma once

#include <cstdint>
#include <functional>

namespace dsv4 {

// Threads used by parallel_for (default: hardware concurrency; DSV4_THREADS overrides).
int cpu_threads();
void set_cpu_threads(int n);

// Calls fn(begin, end) on chunks covering [0, n); runs inline when n is small or one thread.
void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk = 1);

}  // namespace dsv4
