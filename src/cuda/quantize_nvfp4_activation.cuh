// quantize_nvfp4_activation kernel: global = amax(|x|)/(6·448), then per 16-column block
// scale = e4m3(block_amax/(6·global)), codes = e2m1(x/(scale·global)), in ONE launch: the amax
// must be complete before any block quantizes, and a launch has no grid-wide barrier unless all
// its blocks are co-resident (a cooperative launch, which ties the grid to the occupancy). Instead
// each block draws a ticket (atomic counter): the first n_amax tickets reduce a chunk of x into the
// amax (atomicMax on its bits, exact and order-free), the rest quantize, waiting until all amax
// tickets are done. A waiting block only waits for tickets drawn before its own, by blocks already
// running that never wait, so the scheme cannot deadlock at any grid size. x is read twice (the
// second time mostly from L2). The last quantizing block resets the counters.
#pragma once

#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>

#include "cuda/reduce.cuh"

namespace dsv4::cuda::nvfp4_act {

constexpr int kThreads = 256;
constexpr int kAmaxChunk = kThreads * 32;  // elements per amax ticket
constexpr int kBlock = 16;                 // elements per block scale; one block per thread
enum Counter { kTicket, kAmaxDone, kQuantDone, kAmaxBits };

struct Args {
  const float* x;            // [n] (rows × cols, row-major)
  uint8_t* codes;            // [n/2]
  uint8_t* block_scales;     // [n/16]
  float* global_scale;       // [1]
  uint32_t* counters;        // [4]
  int64_t n;                 // elements, a multiple of 16
  uint32_t n_amax, n_quant;  // tickets of each kind
};

// std::max(a, b) as core/quant.cpp uses it, NaN behaviour included: (a < b) ? b : a.
__device__ __forceinline__ float host_max(float a, float b) {
  return a < b ? b : a;
}

// Nearest E2M1 code, ties to the even code, saturating at ±6, NaN → 0: core/numeric.h's
// f32_to_e2m1 (sm_90 has no e2m1 conversion instruction).
__device__ __forceinline__ uint32_t e2m1_code(float f) {
  if (isnan(f)) return 0;
  const uint32_t sign = signbit(f) ? 0x8u : 0x0u;
  const float a = fabsf(f);
  const uint32_t m = a <= 0.25f   ? 0
                     : a < 0.75f  ? 1
                     : a <= 1.25f ? 2
                     : a < 1.75f  ? 3
                     : a <= 2.5f  ? 4
                     : a < 3.5f   ? 5
                     : a <= 5.0f  ? 6
                                  : 7;
  return sign | m;
}

__global__ void __launch_bounds__(kThreads) quantize_nvfp4_activation_kernel(Args a) {
  __shared__ uint32_t ticket;
  __shared__ float scratch[32], global;
  if (threadIdx.x == 0) ticket = atomicAdd(&a.counters[kTicket], 1u);
  __syncthreads();
  const uint32_t tk = ticket;

  if (tk < a.n_amax) {  // amax of elements [tk·kAmaxChunk, +kAmaxChunk)
    const int64_t begin = int64_t(tk) * kAmaxChunk, end = min(begin + kAmaxChunk, a.n);
    float m = 0.0f;
    for (int64_t i = begin + threadIdx.x * 4; i < end; i += kThreads * 4) {
      const float4 v = __ldg(reinterpret_cast<const float4*>(a.x + i));
      m = host_max(host_max(host_max(host_max(m, fabsf(v.x)), fabsf(v.y)), fabsf(v.z)), fabsf(v.w));
    }
    m = warp_max(m);  // of non-NaN values: any order gives the same maximum
    if (threadIdx.x % 32 == 0) scratch[threadIdx.x / 32] = m;
    __syncthreads();
    if (threadIdx.x == 0) {
      for (int w = 1; w < kThreads / 32; ++w) m = fmaxf(m, scratch[w]);
      atomicMax(&a.counters[kAmaxBits], __float_as_uint(m));  // m ≥ 0: its bits order as it does
      __threadfence();
      atomicAdd(&a.counters[kAmaxDone], 1u);
    }
    return;
  }

  const uint32_t q = tk - a.n_amax;
  if (threadIdx.x == 0) {
    while (*reinterpret_cast<volatile uint32_t*>(&a.counters[kAmaxDone]) < a.n_amax) __nanosleep(64);
    __threadfence();
    const float amax = __uint_as_float(*reinterpret_cast<volatile uint32_t*>(&a.counters[kAmaxBits]));
    global = amax / (6.0f * 448.0f);
    if (q == 0) *a.global_scale = global;
  }
  __syncthreads();
  const float g = global;
  const int64_t b = int64_t(q) * kThreads + threadIdx.x;  // this thread's block of 16
  if (b * kBlock < a.n) {
    float v[kBlock];
    const float4* src = reinterpret_cast<const float4*>(a.x + b * kBlock);
#pragma unroll
    for (int i = 0; i < kBlock / 4; ++i) {
      const float4 f = __ldg(src + i);
      v[4 * i] = f.x, v[4 * i + 1] = f.y, v[4 * i + 2] = f.z, v[4 * i + 3] = f.w;
    }
    float amax = 0.0f;
#pragma unroll
    for (int i = 0; i < kBlock; ++i) amax = host_max(amax, fabsf(v[i]));
    const float block = g > 0.0f ? host_max(amax / (6.0f * g), 0.0f) : 0.0f;
    const __nv_fp8_storage_t scale = __nv_cvt_float_to_fp8(block, __NV_SATFINITE, __NV_E4M3);
    const float step = __half2float(__half(__nv_cvt_fp8_to_halfraw(scale, __NV_E4M3))) * g;
    uint32_t packed[2] = {0, 0};
    if (step > 0.0f) {
#pragma unroll
      for (int i = 0; i < kBlock; ++i) packed[i / 8] |= e2m1_code(v[i] / step) << (4 * (i % 8));
    }
    *reinterpret_cast<uint2*>(a.codes + b * (kBlock / 2)) = make_uint2(packed[0], packed[1]);
    a.block_scales[b] = scale;
  }

  __syncthreads();
  if (threadIdx.x == 0 && atomicAdd(&a.counters[kQuantDone], 1u) == a.n_quant - 1) {
    // Every ticket is drawn and every block has read the amax: reset for the next launch.
    a.counters[kTicket] = 0, a.counters[kAmaxDone] = 0, a.counters[kQuantDone] = 0, a.counters[kAmaxBits] = 0;
  }
}

}  // namespace dsv4::cuda::nvfp4_act
