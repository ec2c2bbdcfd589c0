// hyper_head: mix = fn·(v/rms(v)), v = h[t]: [n·d_model], fn: [n, n·d_model];
// pre = σ(mix·scale + base) + hc_eps; z[t] = Σ_j pre_j h[t, j]: [d_model]. The cluster mix and
// collapse of mhc_pre (mhc_common.cuh) with n rows instead of (2+n)·n.
#pragma once

#include <cstdint>

#include "cuda/mhc_common.cuh"

namespace dsv4::cuda {

template <int kHc, int kTok, int kVec>
__global__ void __launch_bounds__(kMhcThreads, 1)
    hyper_head_kernel(const float* h, const float* fn, const float* base, const float* scale, float* z,
                      int64_t n_tokens, int64_t d_model, float rms_eps, float hc_eps) {
  __shared__ MhcMixShared<kTok, kHc> s;
  __shared__ float pre[kTok][kHc];
  const int64_t t0 = int64_t(blockIdx.x / cooperative_groups::this_cluster().num_blocks()) * kTok;
  const int n_valid = int(n_tokens - t0 < kTok ? n_tokens - t0 : kTok);
  const float* ht = h + t0 * kHc * d_model;
  mhc_mix_cluster<kTok, kHc, kVec>(ht, kHc * d_model, fn, n_valid, rms_eps, s);
  if (threadIdx.x < kTok * kHc) {
    const int t = threadIdx.x / kHc, j = threadIdx.x % kHc;
    pre[t][j] = mhc_sigmoid(s.mix[t][j] * scale[0] + base[j]) + hc_eps;
  }
  __syncthreads();
  mhc_collapse_cluster<kTok, kHc, kVec>(ht, pre, d_model, n_valid, 0, z + t0 * d_model);
}

}  // namespace dsv4::cuda
