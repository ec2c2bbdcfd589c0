// kVec consecutive fp32 values moved as one access: 16 bytes when kVec = 4 (the launcher checks
// that the row width is a multiple of 4 and the pointers are 16-byte aligned), one float otherwise.
#pragma once

namespace dsv4::cuda {

template <int kVec>
struct FloatVec {
  float e[kVec];
};

template <int kVec>
__device__ __forceinline__ FloatVec<kVec> load_floats(const float* p) {
  if constexpr (kVec == 4) {
    const float4 f = *reinterpret_cast<const float4*>(p);
    return {{f.x, f.y, f.z, f.w}};
  } else {
    return {{*p}};
  }
}

template <int kVec>
__device__ __forceinline__ void store_floats(float* p, const FloatVec<kVec>& v) {
  if constexpr (kVec == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(v.e[0], v.e[1], v.e[2], v.e[3]);
  } else {
    *p = v.e[0];
  }
}

}  // namespace dsv4::cuda
