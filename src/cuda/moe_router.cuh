// moe_router kernel: ℓ = x·W_gateᵀ (router order), σ = router_sigma(ℓ), ids = top-k(σ + bias) (ties
// to the lower id) or tid2eid[token], weights = σ[ids] / (Σ σ[ids] + 1e-20) · scale, counts[E].
// Grid (expert groups, token tiles). Scores: a warp owns kExp gate rows × kTok tokens; lane l is
// partial l of the router order (columns 256·i + 8·l .. +7 of step i), so a warp reads 512 B of a
// BF16 gate row per step, and the xor butterfly is the order's final combination; the warp also
// takes σ, so the serial tail below does not. The last block to finish a token tile (arrival
// counter) selects for its tokens, one warp per token, scores in shared memory, k rounds of a warp
// arg-max; the last tile to finish counts the ids (a single tile is its own last). Counters reset
// themselves. Compiled with --fmad=false: products and sums round separately, as on the CPU.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "cuda/arrival.cuh"
#include "ops/moe_router.h"

namespace dsv4::cuda::router {

constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kStep = kRouterPartials * kRouterGroup;  // 256 columns per warp step

struct Args {
  const float* x;            // [n_tokens, d_model]
  const void* gate;          // [n_experts, d_model] F32 or BF16
  const float* bias;         // [n_experts] or null (hash mode)
  const int64_t* tid2eid;    // [vocab_size, top_k] or null (dense mode)
  const int32_t* token_ids;  // [n_tokens] (hash mode)
  int32_t* expert_ids;       // [n_tokens, top_k]
  float* weights;            // [n_tokens, top_k]
  int32_t* counts;           // [n_experts]
  float* scores;             // [n_tokens, n_experts] workspace: σ
  uint32_t* tiles_done;      // [1]
  uint32_t* tile_arrivals;   // [gridDim.y]
  int n_tokens, d_model, n_experts, top_k;
  int64_t vocab_size;
  float routed_scaling_factor;
};

// Eight consecutive gate elements of a row, as loaded (converted at use: BF16 → fp32 is exact).
template <bool kBf16>
struct GateOctet {
  uint4 v[kBf16 ? 1 : 2];
  __device__ __forceinline__ void load(const void* gate, size_t at) {
    if constexpr (kBf16) {
      v[0] = __ldg(reinterpret_cast<const uint4*>(static_cast<const __nv_bfloat16*>(gate) + at));
    } else {
      const uint4* p = reinterpret_cast<const uint4*>(static_cast<const float*>(gate) + at);
      v[0] = __ldg(p), v[1] = __ldg(p + 1);
    }
  }
  __device__ __forceinline__ float operator[](int c) const {
    const uint32_t* words = reinterpret_cast<const uint32_t*>(v);
    if constexpr (kBf16) return __uint_as_float(c % 2 ? words[c / 2] & 0xFFFF0000u : words[c / 2] << 16);
    return __uint_as_float(words[c]);
  }
};

// Steps whose loads are issued together (a memory round trip each): as deep as the registers for
// the x values allow.
template <int kTok, int kExp>
constexpr int kUnroll = kExp > 1    ? 1
                        : kTok == 1 ? 8
                        : kTok <= 4 ? 4
                                    : 2;

template <bool kBf16, int kTok, int kExp>
__global__ void __launch_bounds__(kThreads) moe_router_kernel(Args a) {
  static_assert(kTok * kExp <= 32, "one score per lane");
  extern __shared__ float router_smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int E = a.n_experts, D = a.d_model, k = a.top_k;
  const int t0 = blockIdx.y * kTok, e0 = (blockIdx.x * kWarps + warp) * kExp;

  // ---- Scores of kTok tokens × kExp experts; rows past the end read the last one, unwritten.
  {
    size_t xrow[kTok], wrow[kExp];
#pragma unroll
    for (int i = 0; i < kTok; ++i) xrow[i] = size_t(min(t0 + i, a.n_tokens - 1)) * D;
#pragma unroll
    for (int j = 0; j < kExp; ++j) wrow[j] = size_t(min(e0 + j, E - 1)) * D;
    float acc[kTok][kExp] = {};
    constexpr int kU = kUnroll<kTok, kExp>;
    const int steps = (D + kStep - 1) / kStep;
    for (int s0 = 0; s0 < steps; s0 += kU) {
      GateOctet<kBf16> w[kU][kExp];
      float4 xv[kU][kTok][2];
#pragma unroll
      for (int u = 0; u < kU; ++u) {
        const int col = (s0 + u) * kStep + lane * kRouterGroup;
        if (s0 + u < steps && col < D) {
#pragma unroll
          for (int j = 0; j < kExp; ++j) w[u][j].load(a.gate, wrow[j] + col);
#pragma unroll
          for (int i = 0; i < kTok; ++i) {
            const float4* xp = reinterpret_cast<const float4*>(a.x + xrow[i] + col);
            xv[u][i][0] = __ldg(xp), xv[u][i][1] = __ldg(xp + 1);
          }
        }
      }
#pragma unroll
      for (int u = 0; u < kU; ++u) {
        const int col = (s0 + u) * kStep + lane * kRouterGroup;
        if (s0 + u < steps && col < D) {
#pragma unroll
          for (int i = 0; i < kTok; ++i) {
            const float xs[8] = {xv[u][i][0].x, xv[u][i][0].y, xv[u][i][0].z, xv[u][i][0].w,
                                 xv[u][i][1].x, xv[u][i][1].y, xv[u][i][1].z, xv[u][i][1].w};
#pragma unroll
            for (int j = 0; j < kExp; ++j)
#pragma unroll
              for (int c = 0; c < 8; ++c) acc[i][j] = acc[i][j] + xs[c] * w[u][j][c];
          }
        }
      }
    }
    // Lane i·kExp + j takes value (i, j) (kTok·kExp <= 32), so σ is computed once per lane.
    float mine = 0.0f;
#pragma unroll
    for (int i = 0; i < kTok; ++i)
#pragma unroll
      for (int j = 0; j < kExp; ++j) {
#pragma unroll
        for (int d = kRouterPartials / 2; d >= 1; d /= 2)
          acc[i][j] = acc[i][j] + __shfl_xor_sync(0xFFFFFFFFu, acc[i][j], d);
        if (lane == i * kExp + j) mine = acc[i][j];
      }
    const int t = t0 + lane / kExp, e = e0 + lane % kExp;
    if (lane < kTok * kExp && t < a.n_tokens && e < E) a.scores[size_t(t) * E + e] = router_sigma(mine);
  }
  if (!block_arrive_last(&a.tile_arrivals[blockIdx.y], gridDim.x)) return;

  // ---- Selection for this tile's tokens, one warp per token.
  float* score = router_smem + size_t(warp) * 2 * E;  // [E] σ
  float* sel = score + E;                             // [E] σ + bias, −inf once taken
  for (int t = t0 + warp; t < min(t0 + kTok, a.n_tokens); t += kWarps) {
    for (int e = lane; e < E; e += 32) {
      const float s = __ldcg(a.scores + size_t(t) * E + e);
      score[e] = s;
      if (a.bias) sel[e] = s + a.bias[e];
    }
    __syncwarp();
    int my_id = -1;  // lane j < k holds slot j
    if (a.tid2eid) {
      const int64_t tok = a.token_ids[t];
      if (lane < k && tok >= 0 && tok < a.vocab_size) {
        const int64_t e = a.tid2eid[tok * k + lane];
        if (e >= 0 && e < E) my_id = int(e);
      }
    } else {
      for (int j = 0; j < k; ++j) {
        float best = -INFINITY;
        int bi = 0x7FFFFFFF;
        for (int e = lane; e < E; e += 32) {
          const float v = sel[e];
          if (v > best) best = v, bi = e;  // ascending e, strict: the lower id wins a tie
        }
#pragma unroll
        for (int o = 16; o > 0; o /= 2) {
          const float ov = __shfl_xor_sync(0xFFFFFFFFu, best, o);
          const int oi = __shfl_xor_sync(0xFFFFFFFFu, bi, o);
          if (ov > best || (ov == best && oi < bi)) best = ov, bi = oi;
        }
        if (bi >= E) bi = -1;  // every remaining score NaN or -inf
        if (lane == 0 && bi >= 0) sel[bi] = -INFINITY;
        __syncwarp();
        if (lane == j) my_id = bi;
      }
    }
    const float s = my_id >= 0 ? score[my_id] : 0.0f;
    float sum = 0.0f;  // in slot order, as the reference
    for (int j = 0; j < k; ++j) sum += __shfl_sync(0xFFFFFFFFu, s, j);
    if (lane < k) {
      a.expert_ids[size_t(t) * k + lane] = my_id;
      a.weights[size_t(t) * k + lane] = my_id >= 0 ? s / (sum + 1e-20f) * a.routed_scaling_factor : 0.0f;
    }
    __syncwarp();  // score and sel are rewritten for the warp's next token
  }
  if (gridDim.y > 1 && !block_arrive_last(a.tiles_done, gridDim.y)) return;
  __syncthreads();  // a single tile's ids were written by this block's other warps

  // ---- Counts over every token's ids (integer sums: any order gives the same).
  int* hist = reinterpret_cast<int*>(router_smem);  // [E]
  for (int e = threadIdx.x; e < E; e += kThreads) hist[e] = 0;
  __syncthreads();
  for (int i = threadIdx.x; i < a.n_tokens * k; i += kThreads) {
    const int id = __ldcg(a.expert_ids + i);
    if (id >= 0) atomicAdd(&hist[id], 1);
  }
  __syncthreads();
  for (int e = threadIdx.x; e < E; e += kThreads) a.counts[e] = hist[e];
}

}  // namespace dsv4::cuda::router
