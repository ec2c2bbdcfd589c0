// BackendArray<T>: a growable array in a backend's memory (host for the CPU backend, device for
// CUDA), the model's stand-in for std::vector for activations, caches and small weights. Capacity
// only grows (doubling), so pointers stay put while the size stays within it: a decode step with
// the same batch reuses the same buffers.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "model/backend.h"

namespace dsv4 {

template <typename T>
class BackendArray {
 public:
  T* data() const { return buf_ ? static_cast<T*>(buf_->data()) : nullptr; }
  int64_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  void clear() { size_ = 0; }
  void swap(BackendArray& o) noexcept {
    std::swap(buf_, o.buf_);
    std::swap(size_, o.size_);
    std::swap(capacity_, o.capacity_);
  }

  // Sets the size to n, keeping the first min(n, size()) elements; new elements are undefined.
  Status resize(Backend& b, int64_t n) {
    if (n > capacity_) {
      const int64_t cap = std::max<int64_t>(n, 2 * capacity_);
      DSV4_ASSIGN_OR_RETURN(std::unique_ptr<BackendBuffer> grown, b.allocate(size_t(cap) * sizeof(T)));
      if (size_ > 0) DSV4_RETURN_IF_ERROR(b.copy(grown->data(), buf_->data(), size_t(size_) * sizeof(T)));
      buf_ = std::move(grown);
      capacity_ = cap;
    }
    size_ = n;
    return {};
  }
  // Appends n elements from backend memory (not from this array).
  Status append(Backend& b, const T* src, int64_t n) {
    const int64_t at = size_;
    DSV4_RETURN_IF_ERROR(resize(b, size_ + n));
    return n > 0 ? b.copy(data() + at, src, size_t(n) * sizeof(T)) : Status{};
  }
  // Drops the first n elements: in place when what stays does not overlap its new place (a
  // compressor keeps less than the windows it emitted), else through a fresh buffer.
  Status erase_front(Backend& b, int64_t n) {
    const int64_t rest_n = size_ - n;
    if (rest_n <= n) {
      if (rest_n > 0) DSV4_RETURN_IF_ERROR(b.copy(data(), data() + n, size_t(rest_n) * sizeof(T)));
      size_ = rest_n;
      return {};
    }
    BackendArray rest;
    DSV4_RETURN_IF_ERROR(rest.append(b, data() + n, size_ - n));
    swap(rest);
    return {};
  }
  // Replaces the contents with host data.
  Status assign(Backend& b, std::span<const T> host) {
    DSV4_RETURN_IF_ERROR(resize(b, int64_t(host.size())));
    return host.empty() ? Status{} : b.upload(data(), host.data(), host.size_bytes());
  }
  Result<std::vector<T>> download(Backend& b) const {
    std::vector<T> v(static_cast<size_t>(size_));
    if (size_ > 0) DSV4_RETURN_IF_ERROR(b.download(v.data(), data(), v.size() * sizeof(T)));
    return v;
  }

 private:
  std::unique_ptr<BackendBuffer> buf_;
  int64_t size_ = 0, capacity_ = 0;
};

}  // namespace dsv4
