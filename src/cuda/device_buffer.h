// DeviceBuffer<T>: an owned cudaMalloc allocation (move-only RAII). Creation returns Result so an
// out-of-memory is a Status, never an abort; the destructor frees without failing.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "core/round_up.h"
#include "cuda/check.h"

namespace dsv4::cuda {

template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  // Allocates n elements, at least one byte so that an empty buffer still has a distinct address.
  static Result<DeviceBuffer> create(size_t n) {
    DeviceBuffer b;
    const size_t bytes = n * sizeof(T) > 0 ? n * sizeof(T) : 1;
    const cudaError_t e = cudaMalloc(&b.p_, bytes);
    if (e != cudaSuccess) return Status::errorf("cudaMalloc: {} bytes; {}", bytes, cudaGetErrorString(e));
    b.n_ = n;
    return Result<DeviceBuffer>(std::move(b));
  }
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer() {
    if (p_) cudaFree(p_);
  }

  T* get() const { return p_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }

  Status upload(const T* src, size_t n, size_t offset = 0) {
    if (offset + n > n_)
      return Status::errorf("DeviceBuffer::upload: {} elements at {}; capacity {}", n, offset, n_);
    DSV4_CUDA_TRY(cudaMemcpy(p_ + offset, src, n * sizeof(T), cudaMemcpyHostToDevice));
    // From pageable memory cudaMemcpy returns once the source is staged, with the DMA possibly
    // still running on the legacy stream, which the backend's non-blocking streams do not wait
    // for: finish it here, so work queued next on any stream sees the data.
    DSV4_CUDA_TRY(cudaStreamSynchronize(cudaStreamLegacy));
    return {};
  }
  Status upload(const std::vector<T>& v, size_t offset = 0) { return upload(v.data(), v.size(), offset); }
  Result<std::vector<T>> download() const {
    std::vector<T> v(n_);
    const cudaError_t e = cudaMemcpy(v.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost);
    if (e != cudaSuccess) return Status::errorf("DeviceBuffer::download: {}", cudaGetErrorString(e));
    return v;
  }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

// Sub-buffers carved out of one workspace start at multiples of this (cudaMalloc's alignment).
constexpr size_t kWorkspaceAlign = 256;
constexpr size_t align_up(size_t bytes) {
  return size_t(round_up(int64_t(bytes), int64_t(kWorkspaceAlign)));
}

// Makes b hold at least n elements. A smaller buffer is replaced (its contents dropped; freeing it
// waits for work still using it) and ++*epoch: graphs recorded before hold the old address.
// Returns whether it reallocated, so the caller can initialise the new memory.
template <typename T>
Result<bool> grow(DeviceBuffer<T>& b, size_t n, uint64_t& epoch) {
  if (b.size() >= n) return false;
  DSV4_ASSIGN_OR_RETURN(b, DeviceBuffer<T>::create(n));
  ++epoch;
  return true;
}

}  // namespace dsv4::cuda
