// out[r, k] = bf16(value(code[r, k]) · scale[r, k / block]); one thread per output pair.
// Layouts as in src/core/quant.h: row-major [rows, cols], FP4 low nibble = even column,
// FP8 scales on a [ceil(rows/128), ceil(cols/128)] grid. Memory-bound and off the hot path
// (tests, load-time conversions), so it favours plainness over bandwidth.
#include <cuda_bf16.h>

#include "cuda/check.h"
#include "cuda/dequantize.h"

namespace dsv4::cuda {
namespace {

__device__ float e2m1_value(uint8_t code) {
  constexpr float kMagnitudes[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  const float m = kMagnitudes[code & 7];
  return (code & 8) ? -m : m;
}

__device__ float e8m0_value(uint8_t e) {
  return e == 0xFF ? __int_as_float(0x7FC00000) : exp2f(float(int(e) - 127));
}

__device__ float e4m3_value(uint8_t b) {
  const int exp = (b >> 3) & 0xF, mant = b & 7;
  if (exp == 0xF && mant == 7) return __int_as_float(0x7FC00000);
  const float mag = exp == 0 ? ldexpf(float(mant), -9) : ldexpf(float(8 + mant), exp - 10);
  return (b & 0x80) ? -mag : mag;
}

__global__ void dequantize_bf16_kernel(WeightView w, __nv_bfloat16* out) {
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= w.rows * w.cols) return;
  const int64_t r = idx / w.cols, k = idx % w.cols;
  const auto* bytes = static_cast<const uint8_t*>(w.data);
  float v = 0.0f;
  switch (w.format) {
    case WeightFormat::kF32:
      v = static_cast<const float*>(w.data)[idx];
      break;
    case WeightFormat::kBF16:
      out[idx] = static_cast<const __nv_bfloat16*>(w.data)[idx];
      return;
    case WeightFormat::kFP8Block128:
      v = e4m3_value(bytes[idx]) * e8m0_value(w.scales[(r / 128) * ((w.cols + 127) / 128) + k / 128]);
      break;
    case WeightFormat::kMXFP4: {
      const uint8_t byte = bytes[r * (w.cols / 2) + k / 2];
      v = e2m1_value(k % 2 ? byte >> 4 : byte & 0xF) * e8m0_value(w.scales[r * (w.cols / 32) + k / 32]);
      break;
    }
    case WeightFormat::kNVFP4: {
      const uint8_t byte = bytes[r * (w.cols / 2) + k / 2];
      v = e2m1_value(k % 2 ? byte >> 4 : byte & 0xF) * e4m3_value(w.scales[r * (w.cols / 16) + k / 16]);
      break;
    }
  }
  out[idx] = __float2bfloat16_rn(v);
}

}  // namespace

Status dequantize_bf16(const WeightView& w, uint16_t* out, cudaStream_t stream) {
  const int64_t n = w.rows * w.cols;
  if (n == 0) return {};
  constexpr int kThreads = 256;
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  dequantize_bf16_kernel<<<unsigned(blocks), kThreads, 0, stream>>>(w, reinterpret_cast<__nv_bfloat16*>(out));
  DSV4_CUDA_LAUNCH_CHECK();
  return {};
}

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

}  // namespace dsv4::cuda
