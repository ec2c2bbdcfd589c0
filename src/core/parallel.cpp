#include "core/parallel.h"

#include <algorithm>
#include <cstdlib>
#include <thread>
#include <vector>

namespace dsv4 {
namespace {

int initial_threads() {
  if (const char* env = std::getenv("DSV4_THREADS")) {
    const int n = std::atoi(env);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

int& thread_setting() {
  static int n = initial_threads();
  return n;
}

}  // namespace

int cpu_threads() {
  return thread_setting();
}
void set_cpu_threads(int n) {
  thread_setting() = std::max(1, n);
}

void parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t min_chunk) {
  if (n <= 0) return;
  const int64_t threads =
      std::min<int64_t>(cpu_threads(), std::max<int64_t>(1, n / std::max<int64_t>(1, min_chunk)));
  if (threads <= 1) {
    fn(0, n);
    return;
  }
  std::vector<std::thread> pool;
  const int64_t chunk = (n + threads - 1) / threads;
  for (int64_t t = 1; t < threads; ++t) {
    const int64_t b = t * chunk, e = std::min(n, b + chunk);
    if (b < e) pool.emplace_back(fn, b, e);
  }
  fn(0, std::min(n, chunk));
  for (auto& th : pool) th.join();
}

}  // namespace dsv4
