// mhc_pre fused: mix = fn·(v/rms(v)) over the flattened streams v = h[t]: [hc_mult·d_model];
// pre = σ(mix[0:n]·s₀ + b) + eps; post = 2σ(mix[n:2n]·s₁ + b); comb = Sinkhorn(softmax_rows(
// mix[2n:]·s₂ + b) + eps) (columns, then (iters−1)×(rows, columns), each denominator + eps);
// x = Σ_j pre_j h_j. fn: [(2+n)·n, n·d_model], comb: [n, n] per token as comb[j, k].
// One cluster per tile of kTok tokens (mhc_common.cuh): the mix over the cluster; then the block
// of rank 0 writes post and comb while the others collapse a share of the channels each. The n×n
// epilogue runs in one warp per token, lane j·n + k holding comb[j, k], sums in the CPU's order.
#pragma once

#include <cstdint>

#include "cuda/mhc_common.cuh"

namespace dsv4::cuda {

// Lanes < kHc² of one warp: entry (j, k) = (lane / kHc, lane % kHc) of the token's comb; the
// whole warp calls it (shuffles). Writes pre[0..kHc) (every block), post and comb (when non-null).
template <int kHc>
__device__ void mhc_pre_epilogue(const float* mix, const float* base, const float* scale, int sinkhorn_iters,
                                 float hc_eps, float* pre, float* post, float* comb) {
  const int lane = threadIdx.x & 31;
  if (lane < kHc) {
    pre[lane] = mhc_sigmoid(mix[lane] * scale[0] + base[lane]) + hc_eps;
    if (post) post[lane] = 2.0f * mhc_sigmoid(mix[kHc + lane] * scale[1] + base[kHc + lane]);
  }
  if (!comb) return;
  const int l = lane < kHc * kHc ? lane : 0, j = l / kHc, k = l % kHc;
  const auto row_sum = [&](float v) {  // Σ_k' v[j, k'] in k' order, as the CPU
    float sum = 0.0f;
#pragma unroll
    for (int kk = 0; kk < kHc; ++kk) sum += __shfl_sync(0xffffffffu, v, j * kHc + kk);
    return sum;
  };
  const auto column_sum = [&](float v) {  // Σ_j' v[j', k] in j' order
    float sum = 0.0f;
#pragma unroll
    for (int jj = 0; jj < kHc; ++jj) sum += __shfl_sync(0xffffffffu, v, jj * kHc + k);
    return sum;
  };
  float c = mix[2 * kHc + l] * scale[2] + base[2 * kHc + l];
  float mx = -INFINITY;
#pragma unroll
  for (int kk = 0; kk < kHc; ++kk) mx = fmaxf(mx, __shfl_sync(0xffffffffu, c, j * kHc + kk));
  c = expf(c - mx);
  c = c / row_sum(c) + hc_eps;
  for (int it = 0; it < sinkhorn_iters; ++it) {
    if (it > 0) c /= row_sum(c) + hc_eps;
    c /= column_sum(c) + hc_eps;
  }
  if (lane < kHc * kHc) comb[lane] = c;
}

template <int kHc, int kTok, int kVec>
__global__ void __launch_bounds__(kMhcThreads, 1)
    mhc_pre_kernel(const float* h, const float* fn, const float* base, const float* scale, float* x,
                   float* post, float* comb, int64_t n_tokens, int64_t d_model, int sinkhorn_iters,
                   float rms_eps, float hc_eps) {
  constexpr int kMix = (2 + kHc) * kHc;
  __shared__ MhcMixShared<kTok, kMix> s;
  __shared__ float pre[kTok][kHc];
  namespace cg = cooperative_groups;
  const cg::cluster_group cluster = cg::this_cluster();
  const int64_t t0 = int64_t(blockIdx.x / cluster.num_blocks()) * kTok;
  const int n_valid = int(n_tokens - t0 < kTok ? n_tokens - t0 : kTok);
  const float* ht = h + t0 * kHc * d_model;
  mhc_mix_cluster<kTok, kMix, kVec>(ht, kHc * d_model, fn, n_valid, rms_eps, s);
  const int warp = threadIdx.x >> 5;
  if (warp < n_valid) {
    const bool writer = cluster.block_rank() == 0;
    const int64_t t = t0 + warp;
    mhc_pre_epilogue<kHc>(s.mix[warp], base, scale, sinkhorn_iters, hc_eps, pre[warp],
                          writer ? post + t * kHc : nullptr, writer ? comb + t * kHc * kHc : nullptr);
  }
  __syncthreads();
  // Rank 0's Sinkhorn (the longest serial part) overlaps the other ranks' collapse.
  mhc_collapse_cluster<kTok, kHc, kVec>(ht, pre, d_model, n_valid, 1, x + t0 * d_model);
}

}  // namespace dsv4::cuda
