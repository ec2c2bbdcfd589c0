// Lightning indexer. score[t, s] = Σ_h ReLU(q[t,h]·key[s])·head_dim^-½·(w[t,h]·n_heads^-½) for
// admissible s < (pos_t+1) div ratio (keys of token t: block slots[t] of a pool when given); then per token
// the min(topk, admissible) best entries by (score desc, index asc), −1 after. q: [n_tokens, n_heads,
// head_dim], keys: [n_entries, head_dim]. Ids must equal the CPU's exactly, so each score is summed serially
// in the CPU's order with rounded (non-contracted) products: bit-identical scores. indexer_scores_kernel:
// block = (token, tile of kIndexerTile entries), q[t] and the transposed key tile in shared memory, one entry
// per thread. indexer_select_kernel: one block per token; each admissible entry's rank = number of entries
// ordered before it, so rank < topk writes it to slot rank (O(admissible²) per token).
#pragma once

#include <cstdint>

namespace dsv4::cuda {

constexpr int kIndexerTile = 64;
constexpr int kIndexerSelectThreads = 512;
constexpr int kIndexerSelectChunk = 2048;

__device__ __forceinline__ int64_t indexer_admissible(int64_t position, int64_t ratio, int64_t n_entries) {
  const int64_t a = (position + 1) / ratio;
  return a < n_entries ? a : n_entries;
}

// Dynamic shared memory: n_heads·head_dim + head_dim·(kIndexerTile+1) floats.
__global__ void indexer_scores_kernel(const float* q, const float* head_weights, const float* keys,
                                      const int32_t* slots, const int64_t* positions, float* scores,
                                      int64_t n_heads, int64_t head_dim, int64_t n_entries, int64_t ratio,
                                      float softmax_scale, float weights_scale) {
  extern __shared__ float smem[];
  float* s_q = smem;                       // [n_heads · head_dim]
  float* s_k = smem + n_heads * head_dim;  // [head_dim][kIndexerTile + 1]
  const int64_t t = blockIdx.y, s0 = int64_t(blockIdx.x) * kIndexerTile;
  const int64_t admissible = indexer_admissible(positions[t], ratio, n_entries);
  if (slots) keys += int64_t(slots[t]) * n_entries * head_dim;
  if (s0 >= admissible) {  // the whole tile is masked
    const int64_t s = s0 + threadIdx.x;
    if (s < n_entries) scores[t * n_entries + s] = -INFINITY;
    return;
  }
  for (int64_t i = threadIdx.x; i < n_heads * head_dim; i += blockDim.x)
    s_q[i] = q[t * n_heads * head_dim + i];
  for (int64_t i = threadIdx.x; i < kIndexerTile * head_dim; i += blockDim.x) {
    const int64_t e = i / head_dim, c = i % head_dim;
    s_k[c * (kIndexerTile + 1) + e] = s0 + e < n_entries ? keys[(s0 + e) * head_dim + c] : 0.0f;
  }
  __syncthreads();
  const int64_t s = s0 + threadIdx.x;
  if (s >= n_entries) return;
  float acc = -INFINITY;
  if (s < admissible) {
    acc = 0.0f;
    for (int64_t h = 0; h < n_heads; ++h) {
      const float* qh = s_q + h * head_dim;
      float dot = 0.0f;
      for (int64_t c = 0; c < head_dim; ++c)
        dot = __fadd_rn(dot, __fmul_rn(qh[c], s_k[c * (kIndexerTile + 1) + threadIdx.x]));
      const float w = __fmul_rn(head_weights[t * n_heads + h], weights_scale);
      acc = __fadd_rn(acc, __fmul_rn(__fmul_rn(fmaxf(dot, 0.0f), softmax_scale), w));
    }
  }
  scores[t * n_entries + s] = acc;
}

__global__ void indexer_select_kernel(const float* scores, const int64_t* positions, int32_t* selected,
                                      int64_t n_entries, int64_t ratio, int64_t topk) {
  __shared__ float chunk[kIndexerSelectChunk];
  const int64_t t = blockIdx.x;
  const int64_t admissible = indexer_admissible(positions[t], ratio, n_entries);
  const float* sc = scores + t * n_entries;
  int32_t* out = selected + t * topk;
  const int64_t n_kept = admissible < topk ? admissible : topk;
  for (int64_t j = n_kept + threadIdx.x; j < topk; j += blockDim.x) out[j] = -1;
  // Every thread walks its candidates in lockstep rounds so that all take part in each chunk load.
  for (int64_t base = 0; base < admissible; base += blockDim.x) {
    const int64_t s = base + threadIdx.x;
    const float mine = s < admissible ? sc[s] : 0.0f;
    int64_t rank = 0;
    for (int64_t c0 = 0; c0 < admissible; c0 += kIndexerSelectChunk) {
      const int64_t len = admissible - c0 < kIndexerSelectChunk ? admissible - c0 : kIndexerSelectChunk;
      __syncthreads();
      for (int64_t i = threadIdx.x; i < len; i += blockDim.x) chunk[i] = sc[c0 + i];
      __syncthreads();
      if (s < admissible)
        for (int64_t i = 0; i < len; ++i) {
          const float other = chunk[i];
          rank += other > mine || (other == mine && c0 + i < s);
        }
    }
    if (s < admissible && rank < topk) out[rank] = int32_t(s);
  }
}

}  // namespace dsv4::cuda
