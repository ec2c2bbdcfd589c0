// Interleaved partial RoPE in place: for pair i of the last rope_dim channels of each head,
// (a, b) → (a·cos φ − b·sin φ, b·cos φ + a·sin φ), φ = fp32(inv_freq[i] · fp32(pos)) (−φ if inverse).
// x: [n_rows, n_heads, head_dim] fp32, positions: [n_rows] int64, inv_freq: [rope_dim/2] fp32.
// One block per row, one thread per (head, pair). Products and sums are rounded separately
// (no FMA contraction) as in the CPU reference, so only cosf/sinf's last ulp can differ.
#pragma once

#include <cstdint>

namespace dsv4::cuda {

constexpr int kRopeThreads = 128;

__global__ void rope_kernel(float* x, const int64_t* positions, const float* inv_freq, int64_t n_heads,
                            int64_t head_dim, int64_t rope_dim, bool inverse) {
  const int64_t half = rope_dim / 2, offset = head_dim - rope_dim;
  const float pos = float(positions[blockIdx.x]);
  float* row = x + int64_t(blockIdx.x) * n_heads * head_dim;
  for (int64_t k = threadIdx.x; k < n_heads * half; k += blockDim.x) {
    const int64_t h = k / half, i = k % half;
    const float angle = __fmul_rn(inv_freq[i], pos);
    const float cos_a = cosf(angle);
    const float sin_a = inverse ? -sinf(angle) : sinf(angle);
    float* pair = row + h * head_dim + offset + 2 * i;
    const float a = pair[0], b = pair[1];
    pair[0] = __fsub_rn(__fmul_rn(a, cos_a), __fmul_rn(b, sin_a));
    pair[1] = __fadd_rn(__fmul_rn(b, cos_a), __fmul_rn(a, sin_a));
  }
}

}  // namespace dsv4::cuda
