// Device helpers shared by mhc_pre and hyper_head: the mix projection of one token's flattened
// streams, mix[m] = (fn[m, :] · v) / rms(v), v: [width = hc_mult·d_model], fn: [kMix, width] fp32,
// computed by one block (strided coalesced pass, per-warp partials in shared memory), and the
// weighted collapse x = Σ_j pre_j · h_j.
#pragma once

#include <cstdint>

#include "cuda/reduce.cuh"

namespace dsv4::cuda {

constexpr int kMhcThreads = 256;

__device__ __forceinline__ float mhc_sigmoid(float x) {
  return 1.0f / (1.0f + expf(-x));
}

// Writes mix[0..kMix) to shared memory `mix`; partials: ≥ (kMhcThreads/32)·(kMix+1) shared floats.
// Ends with a barrier, so every thread may read mix.
template <int kMix>
__device__ void mhc_mix(const float* v, int64_t width, const float* fn, float rms_eps, float* partials,
                        float* mix) {
  float acc[kMix + 1] = {};  // the kMix dot products, then Σv²
  for (int64_t i = threadIdx.x; i < width; i += blockDim.x) {
    const float vi = v[i];
#pragma unroll
    for (int m = 0; m < kMix; ++m) acc[m] += fn[m * width + i] * vi;
    acc[kMix] += vi * vi;
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
#pragma unroll
  for (int m = 0; m <= kMix; ++m) {
    const float s = warp_sum(acc[m]);
    if (lane == 0) partials[warp * (kMix + 1) + m] = s;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float sum_sq = 0.0f;
    for (int w = 0; w < n_warps; ++w) sum_sq += partials[w * (kMix + 1) + kMix];
    partials[n_warps * (kMix + 1)] = 1.0f / sqrtf(sum_sq / float(width) + rms_eps);
  }
  __syncthreads();
  if (threadIdx.x < kMix) {
    float dot = 0.0f;
    for (int w = 0; w < n_warps; ++w) dot += partials[w * (kMix + 1) + threadIdx.x];
    mix[threadIdx.x] = dot * partials[n_warps * (kMix + 1)];
  }
  __syncthreads();
}

// x[c] = Σ_j pre[j] · h[j·d_model + c] for c < d_model, threads striding c.
template <int kHc>
__device__ void mhc_collapse(const float* h, const float* pre, int64_t d_model, float* x) {
  for (int64_t c = threadIdx.x; c < d_model; c += blockDim.x) {
    float acc = 0.0f;
#pragma unroll
    for (int j = 0; j < kHc; ++j) acc += pre[j] * h[j * d_model + c];
    x[c] = acc;
  }
}

}  // namespace dsv4::cuda
