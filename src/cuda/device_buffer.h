// DeviceBuffer<T>: an owned, uninitialised device allocation of n elements (cudaMalloc/cudaFree),
// with checked host copies. For tests, tools and load-time setup; kernels take raw pointers.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <utility>
#include <vector>

#include "cuda/check.h"

namespace dsv4::cuda {

template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(n_, o.n_);
    return *this;
  }
  ~DeviceBuffer() { cudaFree(p_); }

  // Allocates n elements (at least one byte, so that empty buffers still have a distinct address).
  static Result<DeviceBuffer> allocate(size_t n) {
    DeviceBuffer b;
    const cudaError_t e = cudaMalloc(&b.p_, n * sizeof(T) + 1);
    if (e != cudaSuccess)
      return Status::errorf("DeviceBuffer: cudaMalloc of {} bytes failed: {}", n * sizeof(T) + 1,
                            cudaGetErrorString(e));
    b.n_ = n;
    return Result<DeviceBuffer>(std::move(b));
  }

  T* get() const { return p_; }
  size_t size() const { return n_; }

  // Copies v to the start of the buffer (v.size() <= size()).
  Status upload(const std::vector<T>& v) {
    if (v.size() > n_)
      return Status::errorf("DeviceBuffer: upload of {} elements; expected at most {}", v.size(), n_);
    DSV4_CUDA_TRY(cudaMemcpy(p_, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
    return {};
  }
  Result<std::vector<T>> download() const {
    std::vector<T> v(n_);
    DSV4_CUDA_TRY(cudaMemcpy(v.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
  }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

}  // namespace dsv4::cuda
