// device_count and sm_count (check.h).
#include "cuda/check.h"

#include <array>
#include <atomic>

namespace dsv4::cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

int sm_count() {
  constexpr int kFallback = 132;
  static std::array<std::atomic<int>, 64> cached{};  // by device index; 0 = not queried yet
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    cudaGetLastError();
    return kFallback;
  }
  if (device < int(cached.size()))
    if (const int n = cached[size_t(device)].load(std::memory_order_relaxed)) return n;
  int n = 0;
  if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || n <= 0) {
    cudaGetLastError();
    return kFallback;
  }
  if (device < int(cached.size())) cached[size_t(device)].store(n, std::memory_order_relaxed);
  return n;
}

}  // namespace dsv4::cuda
