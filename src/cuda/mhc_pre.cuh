// mhc_pre fused, one block per token: mix = fn·(v/rms(v)) over the flattened streams
// v = h[t]: [hc_mult·d_model]; pre = σ(mix[0:n]·s₀ + b) + eps; post = 2σ(mix[n:2n]·s₁ + b);
// comb = Sinkhorn(softmax_rows(mix[2n:]·s₂ + b) + eps) (columns, then (iters−1)×(rows, columns),
// each denominator + eps); x = Σ_j pre_j h_j. fn: [(2+n)·n, n·d_model], comb: [n, n] per token
// as comb[j, k]. The n×n epilogue is tiny (16 values for n = 4), so thread 0 does it serially.
#pragma once

#include <cstdint>

#include "cuda/mhc_common.cuh"

namespace dsv4::cuda {

template <int kHc>
__global__ void mhc_pre_kernel(const float* h, const float* fn, const float* base, const float* scale,
                               float* x, float* post, float* comb, int64_t d_model, int sinkhorn_iters,
                               float rms_eps, float hc_eps) {
  constexpr int kMix = (2 + kHc) * kHc;
  __shared__ float partials[(kMhcThreads / 32) * (kMix + 1) + 1];
  __shared__ float mix[kMix];
  __shared__ float pre[kHc];
  const int64_t t = blockIdx.x;
  const float* ht = h + t * kHc * d_model;
  mhc_mix<kMix>(ht, kHc * d_model, fn, rms_eps, partials, mix);
  if (threadIdx.x == 0) {
    float C[kHc][kHc];  // C[j][k]: stream j → stream k
    for (int j = 0; j < kHc; ++j) {
      pre[j] = mhc_sigmoid(mix[j] * scale[0] + base[j]) + hc_eps;
      post[t * kHc + j] = 2.0f * mhc_sigmoid(mix[kHc + j] * scale[1] + base[kHc + j]);
    }
    for (int j = 0; j < kHc; ++j) {
      float mx = -INFINITY;
      for (int k = 0; k < kHc; ++k) {
        C[j][k] = mix[2 * kHc + j * kHc + k] * scale[2] + base[2 * kHc + j * kHc + k];
        mx = fmaxf(mx, C[j][k]);
      }
      float sum = 0.0f;
      for (int k = 0; k < kHc; ++k) sum += (C[j][k] = expf(C[j][k] - mx));
      for (int k = 0; k < kHc; ++k) C[j][k] = C[j][k] / sum + hc_eps;
    }
    for (int it = 0; it < sinkhorn_iters; ++it) {
      if (it > 0)
        for (int j = 0; j < kHc; ++j) {
          float sum = 0.0f;
          for (int k = 0; k < kHc; ++k) sum += C[j][k];
          for (int k = 0; k < kHc; ++k) C[j][k] /= sum + hc_eps;
        }
      for (int k = 0; k < kHc; ++k) {
        float sum = 0.0f;
        for (int j = 0; j < kHc; ++j) sum += C[j][k];
        for (int j = 0; j < kHc; ++j) C[j][k] /= sum + hc_eps;
      }
    }
    for (int j = 0; j < kHc; ++j)
      for (int k = 0; k < kHc; ++k) comb[(t * kHc + j) * kHc + k] = C[j][k];
  }
  __syncthreads();
  mhc_collapse<kHc>(ht, pre, d_model, x + t * d_model);
}

}  // namespace dsv4::cuda
