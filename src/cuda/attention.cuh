// Sparse MQA with sinks, one block per (token t, head h): s_j = (q[t,h]·kv[idx_j])·scale over the
// listed rows idx = kv_idx[t, :] (−1 skipped); out = Σ_j e^{s_j−M} kv[idx_j] / (Σ_j e^{s_j−M} +
// e^{sink_h−M}). q/out: [n_tokens, n_heads, head_dim], kv: [n_kv, head_dim] (K = V), kv_idx: [n_tokens,
// n_sel]. Each warp streams a strided subset of the rows with an online softmax (lane owns channels lane +
// 32·i, so row loads are coalesced), then the warps' (max, sum, acc) merge in shared memory with the sink.
// head_dim ≤ 32·kMaxPerLane. The shared kv rows are re-read per head through L2; a head-batched tile (all
// heads of a token per block) is the next step for decode.
#pragma once

#include <cstdint>

#include "cuda/reduce.cuh"

namespace dsv4::cuda {

constexpr int kAttentionWarps = 8;
constexpr int kAttentionMaxPerLane = 16;  // head_dim ≤ 512

__global__ void attention_kernel(const float* q, const float* kv, const int32_t* kv_idx, const float* sinks,
                                 float* out, int64_t n_heads, int64_t head_dim, int64_t n_kv, int64_t n_sel,
                                 float scale) {
  __shared__ float s_acc[kAttentionWarps][kAttentionMaxPerLane * 32];
  __shared__ float s_max[kAttentionWarps], s_sum[kAttentionWarps];
  const int64_t th = blockIdx.x;  // t · n_heads + h
  const int64_t t = th / n_heads, h = th % n_heads;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const float* qr = q + th * head_dim;
  float qv[kAttentionMaxPerLane], acc[kAttentionMaxPerLane];
#pragma unroll
  for (int i = 0; i < kAttentionMaxPerLane; ++i) {
    const int64_t c = lane + 32 * i;
    qv[i] = c < head_dim ? qr[c] : 0.0f;
    acc[i] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  const int32_t* idx = kv_idx + t * n_sel;
  for (int64_t j = warp; j < n_sel; j += kAttentionWarps) {
    const int32_t row = idx[j];
    if (row < 0 || row >= n_kv) continue;  // uniform across the warp
    const float* k = kv + int64_t(row) * head_dim;
    float kr[kAttentionMaxPerLane];
    float dot = 0.0f;
#pragma unroll
    for (int i = 0; i < kAttentionMaxPerLane; ++i) {
      const int64_t c = lane + 32 * i;
      kr[i] = c < head_dim ? k[c] : 0.0f;
      dot += qv[i] * kr[i];
    }
    const float s = warp_sum(dot) * scale;
    const float m_new = fmaxf(m, s);
    const float corr = expf(m - m_new), e = expf(s - m_new);
    l = l * corr + e;
#pragma unroll
    for (int i = 0; i < kAttentionMaxPerLane; ++i) acc[i] = acc[i] * corr + e * kr[i];
    m = m_new;
  }
#pragma unroll
  for (int i = 0; i < kAttentionMaxPerLane; ++i) s_acc[warp][lane + 32 * i] = acc[i];
  if (lane == 0) {
    s_max[warp] = m;
    s_sum[warp] = l;
  }
  __syncthreads();
  const float sink = sinks[h];
  float M = sink;
  for (int w = 0; w < kAttentionWarps; ++w) M = fmaxf(M, s_max[w]);
  float den = expf(sink - M);
  for (int w = 0; w < kAttentionWarps; ++w) den += s_sum[w] * expf(s_max[w] - M);
  float* o = out + th * head_dim;
  for (int64_t c = threadIdx.x; c < head_dim; c += blockDim.x) {
    float num = 0.0f;
    for (int w = 0; w < kAttentionWarps; ++w) num += s_acc[w][c] * expf(s_max[w] - M);
    o[c] = num / den;
  }
}

}  // namespace dsv4::cuda
