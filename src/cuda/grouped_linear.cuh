// y[t, g·P + r] = Σ_k x[t, g, k] · W[g·P + r, k]; x: [n_tokens, n_groups, K], W: [n_groups·P, K]
// (F32, or BF16 times global_scale), y: [n_tokens, n_groups·P]. One warp per weight row and
// kGroupedLinearTokens tokens: lanes stride k (coalesced), so each weight row is read once per
// token tile — memory-bound at decode, a plain (non-tensor-core) kernel at prefill.
#pragma once

#include <cstdint>

#include "cuda/reduce.cuh"

namespace dsv4::cuda {

constexpr int kGroupedLinearWarps = 8;
constexpr int kGroupedLinearTokens = 8;

__device__ __forceinline__ float grouped_linear_weight(float w, float) {
  return w;
}
__device__ __forceinline__ float grouped_linear_weight(uint16_t w, float global_scale) {
  return __fmul_rn(__uint_as_float(uint32_t(w) << 16), global_scale);
}

template <typename Element>
__global__ void grouped_linear_kernel(const float* x, const Element* w, float* y, int64_t n_tokens,
                                      int64_t n_groups, int64_t rows, int64_t k_dim, float global_scale) {
  const int lane = threadIdx.x & 31;
  const int64_t n = int64_t(blockIdx.x) * kGroupedLinearWarps + (threadIdx.x >> 5);
  if (n >= rows) return;
  const int64_t g = n / (rows / n_groups), t0 = int64_t(blockIdx.y) * kGroupedLinearTokens;
  const Element* wr = w + n * k_dim;
  float acc[kGroupedLinearTokens] = {};
  for (int64_t k = lane; k < k_dim; k += 32) {
    const float wk = grouped_linear_weight(wr[k], global_scale);
#pragma unroll
    for (int i = 0; i < kGroupedLinearTokens; ++i)
      if (t0 + i < n_tokens) acc[i] += x[((t0 + i) * n_groups + g) * k_dim + k] * wk;
  }
#pragma unroll
  for (int i = 0; i < kGroupedLinearTokens; ++i) {
    const float s = warp_sum(acc[i]);
    if (lane == 0 && t0 + i < n_tokens) y[(t0 + i) * rows + n] = s;
  }
}

}  // namespace dsv4::cuda
