// Interleaved partial RoPE in place: for pair i of the last rope_dim channels of each head,
// (a, b) → (a·cos φ − b·sin φ, b·cos φ + a·sin φ), φ = fp32(inv_freq[i] · fp32(pos)) (−φ if inverse).
// x: [n_rows, n_heads, head_dim] fp32, positions: [n_rows] int64, inv_freq: [rope_dim/2] fp32.
// One thread per (row, group of kRopeHeads heads, pair): the angle is shared by the heads of a
// group (one cosf/sinf for kRopeHeads pairs), and a one-token call still has n_heads/kRopeHeads ×
// rope_dim/2 threads. Products and sums are rounded separately (no FMA contraction) as in the CPU
// reference, so only cosf/sinf's last ulp can differ.
#pragma once

#include <cstdint>

namespace dsv4::cuda {

constexpr int kRopeThreads = 256;
constexpr int kRopeHeads = 8;

__global__ void __launch_bounds__(kRopeThreads)
    rope_kernel(float* x, const int64_t* positions, const float* inv_freq, int64_t n_rows, int64_t n_heads,
                int64_t head_dim, int64_t rope_dim, bool inverse) {
  const int64_t half = rope_dim / 2, offset = head_dim - rope_dim;
  const int64_t head_groups = (n_heads + kRopeHeads - 1) / kRopeHeads;
  const int64_t k = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= n_rows * head_groups * half) return;
  const int64_t i = k % half, group = k / half % head_groups, r = k / half / head_groups;
  const float angle = __fmul_rn(inv_freq[i], float(positions[r]));
  const float cos_a = cosf(angle);
  const float sin_a = inverse ? -sinf(angle) : sinf(angle);
  float* first = x + (r * n_heads + group * kRopeHeads) * head_dim + offset + 2 * i;
  const int heads =
      int(n_heads - group * kRopeHeads < kRopeHeads ? n_heads - group * kRopeHeads : kRopeHeads);
  float a[kRopeHeads], b[kRopeHeads];
#pragma unroll
  for (int h = 0; h < kRopeHeads; ++h)
    if (h < heads) a[h] = first[h * head_dim], b[h] = first[h * head_dim + 1];
#pragma unroll
  for (int h = 0; h < kRopeHeads; ++h)
    if (h < heads) {
      first[h * head_dim] = __fsub_rn(__fmul_rn(a[h], cos_a), __fmul_rn(b[h], sin_a));
      first[h * head_dim + 1] = __fadd_rn(__fmul_rn(b[h], cos_a), __fmul_rn(a[h], sin_a));
    }
}

}  // namespace dsv4::cuda
