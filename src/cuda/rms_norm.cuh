// y[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) (· weight). x, y: [n_rows, dim] row-major fp32,
// weight: [dim] or null. A team of blockDim.x threads (32…512, sized from dim) per row and
// blockDim.y rows per block, so one long row spreads its loads over many threads and short rows
// (per-head norms) share blocks. Each thread keeps its first kRmsNormCached groups of kVec elements
// of x and of the weight in registers (one read for dim ≤ kRmsNormCached·kVec·blockDim.x, every
// load issued before the reduction), reduces Σx² over the team, then writes. y may alias x: each
// element is read and written by the same thread, after the reduction.
#pragma once

#include <cstdint>

#include "cuda/reduce.cuh"
#include "cuda/vec.cuh"

namespace dsv4::cuda {

constexpr int kRmsNormThreads = 256;  // per block, unless one row needs a larger team
constexpr int kRmsNormMaxTeam = 512;  // threads per row at most
constexpr int kRmsNormCached = 8;     // groups per thread held in registers

template <int kVec>
__global__ void __launch_bounds__(kRmsNormMaxTeam)
    rms_norm_kernel(const float* x, const float* weight, float* y, int64_t n_rows, int64_t dim, float eps) {
  __shared__ float warp_sums[32];
  const int64_t row = int64_t(blockIdx.x) * blockDim.y + threadIdx.y;
  const bool active = row < n_rows;
  const float* xr = x + row * dim;
  float* yr = y + row * dim;
  const int64_t n_groups = dim / kVec;
  const int team = blockDim.x;
  FloatVec<kVec> cached[kRmsNormCached], cached_w[kRmsNormCached];  // the weight's loads overlap x's
  float sum_sq = 0.0f;
  if (active) {
#pragma unroll
    for (int k = 0; k < kRmsNormCached; ++k) {
      const int64_t g = threadIdx.x + int64_t(k) * team;
      cached[k] = g < n_groups ? load_floats<kVec>(xr + g * kVec) : FloatVec<kVec>{};
      cached_w[k] = weight && g < n_groups ? load_floats<kVec>(weight + g * kVec) : FloatVec<kVec>{};
    }
#pragma unroll
    for (int k = 0; k < kRmsNormCached; ++k)
#pragma unroll
      for (int e = 0; e < kVec; ++e) sum_sq += cached[k].e[e] * cached[k].e[e];
    for (int64_t g = threadIdx.x + int64_t(kRmsNormCached) * team; g < n_groups; g += team) {
      const FloatVec<kVec> v = load_floats<kVec>(xr + g * kVec);
#pragma unroll
      for (int e = 0; e < kVec; ++e) sum_sq += v.e[e] * v.e[e];
    }
  }
  sum_sq = warp_sum(sum_sq);
  if (team > 32) {  // the team's warps, in order (a team is whole warps of one row)
    const int warp = int(threadIdx.y * blockDim.x + threadIdx.x) >> 5, team_warps = team >> 5;
    if ((threadIdx.x & 31) == 0) warp_sums[warp] = sum_sq;
    __syncthreads();
    const int first = warp / team_warps * team_warps;
    sum_sq = 0.0f;
    for (int w = 0; w < team_warps; ++w) sum_sq += warp_sums[first + w];
  }
  if (!active) return;
  const float inv_rms = 1.0f / sqrtf(sum_sq / float(dim) + eps);
  const auto normalize = [&](int64_t g, const FloatVec<kVec>& v, const FloatVec<kVec>& w) {
    FloatVec<kVec> out;
#pragma unroll
    for (int e = 0; e < kVec; ++e) {
      const float normed = v.e[e] * inv_rms;
      out.e[e] = weight ? w.e[e] * normed : normed;
    }
    store_floats<kVec>(yr + g * kVec, out);
  };
#pragma unroll
  for (int k = 0; k < kRmsNormCached; ++k) {
    const int64_t g = threadIdx.x + int64_t(k) * team;
    if (g < n_groups) normalize(g, cached[k], cached_w[k]);
  }
  for (int64_t g = threadIdx.x + int64_t(kRmsNormCached) * team; g < n_groups; g += team)
    normalize(g, load_floats<kVec>(xr + g * kVec),
              weight ? load_floats<kVec>(weight + g * kVec) : FloatVec<kVec>{});
}

}  // namespace dsv4::cuda
