// hyper_head, one block per token: mix = fn·(v/rms(v)), v = h[t]: [n·d_model], fn: [n, n·d_model];
// pre = σ(mix·scale + base) + hc_eps; z[t] = Σ_j pre_j h[t, j]: [d_model]. Same mix pass as
// mhc_pre (mhc_common.cuh) with n rows instead of (2+n)·n.
#pragma once

#include <cstdint>

#include "cuda/mhc_common.cuh"

namespace dsv4::cuda {

template <int kHc>
__global__ void hyper_head_kernel(const float* h, const float* fn, const float* base, const float* scale,
                                  float* z, int64_t d_model, float rms_eps, float hc_eps) {
  __shared__ float partials[(kMhcThreads / 32) * (kHc + 1) + 1];
  __shared__ float mix[kHc];
  __shared__ float pre[kHc];
  const int64_t t = blockIdx.x;
  const float* ht = h + t * kHc * d_model;
  mhc_mix<kHc>(ht, kHc * d_model, fn, rms_eps, partials, mix);
  if (threadIdx.x < kHc)
    pre[threadIdx.x] = mhc_sigmoid(mix[threadIdx.x] * scale[0] + base[threadIdx.x]) + hc_eps;
  __syncthreads();
  mhc_collapse<kHc>(ht, pre, d_model, z + t * d_model);
}

}  // namespace dsv4::cuda
