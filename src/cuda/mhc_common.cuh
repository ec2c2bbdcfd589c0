// Device helpers shared by mhc_pre and hyper_head: the mix projection of a tile of tokens,
// mix[t, m] = (fn[m, :] · v_t) / rms(v_t), v_t = h[t]: [width = hc_mult·d_model], fn: [kMix, width]
// fp32, computed by a thread-block cluster, and the weighted collapse x = Σ_j pre_j · h_j.
// Why a cluster: at decode (1–64 tokens) the cost is streaming fn (1.5 MB at Flash widths) once,
// which one block per token cannot do fast; the cluster's blocks split the width, sum their partials
// through distributed shared memory in rank order, and share the collapse of the channels. No
// workspace, no host work: graph-safe. A block takes kTok tokens so that fn is read once per tile.
#pragma once

#include <cooperative_groups.h>

#include <cstdint>

#include "cuda/reduce.cuh"
#include "cuda/vec.cuh"

namespace dsv4::cuda {

constexpr int kMhcThreads = 256;
constexpr int kMhcMaxCluster = 8;  // the portable cluster size
constexpr int kMhcTokenTile = 4;   // tokens per block when there are enough tokens to fill tiles

__device__ __forceinline__ float mhc_sigmoid(float x) {
  return 1.0f / (1.0f + expf(-x));
}

// The cluster's share [begin, end) of n items for this block: contiguous, in rank order.
struct MhcShare {
  int64_t begin, end;
};

__device__ __forceinline__ MhcShare mhc_share(int64_t n, unsigned rank, unsigned n_ranks) {
  return {n * rank / n_ranks, n * (rank + 1) / n_ranks};
}

template <int kTok, int kMix>
struct MhcMixShared {
  float warp_part[kMhcThreads / 32][kTok * (kMix + 1)];  // per warp: kMix dots, then Σv², per token
  float block_part[kTok * (kMix + 1)];                   // this block's share; the peers read it
  float mix[kTok][kMix];                                 // the result, normalised by rms(v)
};

// Fills s.mix for the n_valid ≤ kTok tokens of the tile starting at h ([kTok, width]). Every
// block of the cluster calls it with the same tile; each sums its width share, then every block
// adds the cluster's partials in rank order (so all hold the same bits). Ends with a barrier.
template <int kTok, int kMix, int kVec>
__device__ void mhc_mix_cluster(const float* __restrict__ h, int64_t width, const float* __restrict__ fn,
                                int n_valid, float rms_eps, MhcMixShared<kTok, kMix>& s) {
  namespace cg = cooperative_groups;
  const cg::cluster_group cluster = cg::this_cluster();
  const MhcShare share = mhc_share(width / kVec, cluster.block_rank(), cluster.num_blocks());
  float acc[kTok][kMix + 1] = {};
  for (int64_t g = share.begin + threadIdx.x; g < share.end; g += blockDim.x) {
    FloatVec<kVec> v[kTok], f[kMix];  // every load of the group issued before the first use
#pragma unroll
    for (int t = 0; t < kTok; ++t)
      v[t] = t < n_valid ? load_floats<kVec>(h + t * width + g * kVec) : FloatVec<kVec>{};
#pragma unroll
    for (int m = 0; m < kMix; ++m) f[m] = load_floats<kVec>(fn + m * width + g * kVec);
#pragma unroll
    for (int m = 0; m < kMix; ++m)
#pragma unroll
      for (int t = 0; t < kTok; ++t)
#pragma unroll
        for (int e = 0; e < kVec; ++e) acc[t][m] += f[m].e[e] * v[t].e[e];
#pragma unroll
    for (int t = 0; t < kTok; ++t)
#pragma unroll
      for (int e = 0; e < kVec; ++e) acc[t][kMix] += v[t].e[e] * v[t].e[e];
  }
  constexpr int kParts = kTok * (kMix + 1);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int t = 0; t < kTok; ++t)
#pragma unroll
    for (int m = 0; m <= kMix; ++m) {
      const float sum = warp_sum(acc[t][m]);
      if (lane == 0) s.warp_part[warp][t * (kMix + 1) + m] = sum;
    }
  __syncthreads();
  for (int i = threadIdx.x; i < kParts; i += blockDim.x) {
    float sum = 0.0f;
    for (int w = 0; w < kMhcThreads / 32; ++w) sum += s.warp_part[w][i];
    s.block_part[i] = sum;
  }
  cluster.sync();                  // every block's partials are written (and visible across the cluster)
  float* totals = s.warp_part[0];  // this block's warp partials are consumed: reuse as scratch
  for (int i = threadIdx.x; i < kParts; i += blockDim.x) {
    float sum = 0.0f;
    for (unsigned r = 0; r < cluster.num_blocks(); ++r) sum += cluster.map_shared_rank(s.block_part, r)[i];
    totals[i] = sum;
  }
  cluster.sync();  // no peer reads this block's partials any more; totals are complete
  for (int i = threadIdx.x; i < kTok * kMix; i += blockDim.x) {
    const int t = i / kMix, m = i % kMix;
    const float inv_rms = 1.0f / sqrtf(totals[t * (kMix + 1) + kMix] / float(width) + rms_eps);
    s.mix[t][m] = totals[t * (kMix + 1) + m] * inv_rms;
  }
  __syncthreads();
}

// x[t, c] = Σ_j pre[t][j] · h[t, j, c] for the n_valid tokens of the tile (h: [kTok, kHc, d_model],
// x: [kTok, d_model]), over this block's share of the channels. The channels are shared by the
// ranks from first_rank on (the ranks before it have other work), or by rank 0 alone.
template <int kTok, int kHc, int kVec>
__device__ void mhc_collapse_cluster(const float* __restrict__ h, const float (*pre)[kHc], int64_t d_model,
                                     int n_valid, unsigned first_rank, float* __restrict__ x) {
  namespace cg = cooperative_groups;
  const cg::cluster_group cluster = cg::this_cluster();
  const unsigned rank = cluster.block_rank(), n_ranks = cluster.num_blocks();
  if (n_ranks <= first_rank) first_rank = 0;
  if (rank < first_rank) return;
  const MhcShare share = mhc_share(d_model / kVec, rank - first_rank, n_ranks - first_rank);
  for (int t = 0; t < n_valid; ++t)
    for (int64_t g = share.begin + threadIdx.x; g < share.end; g += blockDim.x) {
      FloatVec<kVec> hv[kHc];
#pragma unroll
      for (int j = 0; j < kHc; ++j) hv[j] = load_floats<kVec>(h + (t * kHc + j) * d_model + g * kVec);
      FloatVec<kVec> out;
#pragma unroll
      for (int e = 0; e < kVec; ++e) {
        float acc = 0.0f;
#pragma unroll
        for (int j = 0; j < kHc; ++j) acc += pre[t][j] * hv[j].e[e];
        out.e[e] = acc;
      }
      store_floats<kVec>(x + t * d_model + g * kVec, out);
    }
}

}  // namespace dsv4::cuda
