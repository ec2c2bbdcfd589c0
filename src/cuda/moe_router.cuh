// moe_router kernel: ℓ = x·W_gateᵀ (router order), σ = router_sigma(ℓ), ids = top-k(σ + bias) (ties
// to the lower id) or tid2eid[token], weights = σ[ids] / (Σ σ[ids] + 1e-20) · scale, counts[E].
// Grid (expert groups, token tiles). Scores: a warp owns kExp gate rows × kTok tokens; lane l is
// partial l of the router order (columns 256·i + 8·l .. +7 of step i), so a warp reads 512 B of a
// BF16 gate row per step, and the xor butterfly is the order's final combination; the warp also
// takes σ, so the serial tail below does not. The last block to finish a token tile (arrival
// counter) selects for its tokens, one warp per token, scores in shared memory, k rounds of a warp
// arg-max; the last tile to finish counts the ids (a single tile is its own last). Counters reset
// themselves. Compiled with --fmad=false: products and sums round separately, as on the CPU.
// From kMoeRouterTensorCoreMinTokens tokens with a BF16 gate the logits come from
// moe_router_logits_tc_kernel (at the end of this file) instead, and this kernel only selects.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "cuda/arrival.cuh"
#include "cuda/sm90_ptx.cuh"
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
  float* scores;             // [n_tokens, n_experts] workspace: σ (the logits on the tensor-core path)
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

// kFromLogits: moe_router_logits_tc_kernel already wrote the logits into a.scores (and zeroed the
// counts); the grid is (1, token tiles), each block takes σ and selects for its tile and counts its
// ids with global atomics (integer sums: any order gives the same).
template <bool kBf16, int kTok, int kExp, bool kFromLogits = false>
__global__ void __launch_bounds__(kThreads) moe_router_kernel(Args a) {
  static_assert(kTok * kExp <= 32, "one score per lane");
  extern __shared__ float router_smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int E = a.n_experts, D = a.d_model, k = a.top_k;
  const int t0 = blockIdx.y * kTok, e0 = (blockIdx.x * kWarps + warp) * kExp;

  // ---- Scores of kTok tokens × kExp experts; rows past the end read the last one, unwritten.
  if constexpr (!kFromLogits) {
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
  if constexpr (!kFromLogits)
    if (!block_arrive_last(&a.tile_arrivals[blockIdx.y], gridDim.x)) return;

  // ---- Selection for this tile's tokens, one warp per token.
  float* score = router_smem + size_t(warp) * 2 * E;  // [E] σ
  float* sel = score + E;                             // [E] σ + bias, −inf once taken
  for (int t = t0 + warp; t < min(t0 + kTok, a.n_tokens); t += kWarps) {
    for (int e = lane; e < E; e += 32) {
      float s = __ldcg(a.scores + size_t(t) * E + e);
      if constexpr (kFromLogits) s = router_sigma(s);
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
      if (kFromLogits && my_id >= 0) atomicAdd(&a.counts[my_id], 1);  // zeroed by the logits kernel
    }
    __syncwarp();  // score and sel are rewritten for the warp's next token
  }
  if (kFromLogits || (gridDim.y > 1 && !block_arrive_last(a.tiles_done, gridDim.y))) return;
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

// ---- Logits on the tensor cores (many tokens, BF16 gate): ℓ = x·Wᵀ with x split exactly into
// three BF16 terms (x = hi + mid + lo: 8 + 8 + 8 significant bits cover fp32's 24), each
// multiplied by the BF16 gate with fp32 accumulation: products are exact, so ℓ carries fp32-level
// error (a different summation order than the router order, so not its bits: an expert choice can
// differ from the CPU's only at a near-tie).
// Block: two warpgroups on one tile of 64 tokens × 128 experts; wgmma m64n128k16 with A (the
// split x, warp w of a warpgroup: tokens 16w..16w+15) from registers and B (the gate) from shared
// memory. The 64-column chunks of x (fp32, padded rows) and the gate (128-byte rows, 128B-swizzled
// as the descriptor reads them) arrive by cp.async in pairs, two pairs ahead; warpgroup h takes
// chunk 2i + h of pair i, so one warpgroup's wgmmas run while the other splits x or drains. Each
// chunk's 12 wgmmas start from zero and the chunk is added to fp32 totals with IEEE adds (the
// tensor cores' own accumulation then spans 192 products, not d_model·3); the two warpgroups'
// totals are summed through shared memory at the end. The logits go to a.scores; the selection
// kernel takes σ. Compiled with --fmad=false like the rest of the file (the split's subtractions
// are exact either way).
constexpr int kTcTokens = 64, kTcExperts = 128, kTcK = 64, kTcWarpgroups = 2, kTcAheadPairs = 2;
constexpr int kTcThreads = 128 * kTcWarpgroups;
constexpr int kTcStages = kTcWarpgroups * (kTcAheadPairs + 1);  // the pair in use + those in flight
constexpr int kTcLdx = kTcK + 8;  // floats per staged x row: the 64-bit fragment loads are conflict-free
constexpr int kTcGateBytes = kTcExperts * kTcK * 2;
constexpr int kTcStageBytes = (kTcGateBytes + kTcTokens * kTcLdx * 4 + 1023) / 1024 * 1024;
constexpr int kTcSmemBytes = kTcStages * kTcStageBytes + 1024;  // + alignment of the first stage
static_assert(kTcK * 2 == 128, "a staged gate row is one 128-byte swizzle row");
static_assert(kTcTokens * kTcExperts * 4 <= kTcStages * kTcStageBytes, "the final sum fits the stages");

__device__ __forceinline__ uint32_t bf16x2_bits(float lo_elem, float hi_elem) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo_elem, hi_elem);
  return *reinterpret_cast<const uint32_t*>(&v);
}
// (v0, v1) → the three BF16x2 terms of its exact split.
__device__ __forceinline__ void split3(uint2 bits, uint32_t& hi, uint32_t& mid, uint32_t& lo) {
  const float v0 = __uint_as_float(bits.x), v1 = __uint_as_float(bits.y);
  hi = bf16x2_bits(v0, v1);
  const float r0 = v0 - __uint_as_float(hi << 16), r1 = v1 - __uint_as_float(hi & 0xFFFF0000u);
  mid = bf16x2_bits(r0, r1);
  lo = bf16x2_bits(r0 - __uint_as_float(mid << 16), r1 - __uint_as_float(mid & 0xFFFF0000u));
}

__global__ void __launch_bounds__(kTcThreads, 1) moe_router_logits_tc_kernel(Args a) {
  extern __shared__ unsigned char tc_smem_raw[];
  const int tid = threadIdx.x, wg = tid / 128, warp = tid / 32 % 4, lane = tid % 32, g = lane / 4,
            t4 = lane % 4;
  const int E = a.n_experts, D = a.d_model;
  const int t0 = blockIdx.y * kTcTokens, e0 = blockIdx.x * kTcExperts;
  const int chunks = (D + kTcK - 1) / kTcK;
  if (blockIdx.x == 0 && blockIdx.y == 0)  // for the selection kernel's atomics
    for (int e = tid; e < E; e += kTcThreads) a.counts[e] = 0;
  const uint32_t smem = (ptx::smem_addr(tc_smem_raw) + 1023) & ~1023u;

  // Per chunk each thread copies one 16-byte column piece of 4 x rows (tid / 16 + 16j, floats
  // 4·(tid % 16)..) and of 4 gate rows (tid / 8 + 32j, BF16 8·(tid % 8).., stored at piece
  // (tid % 8) ^ (row % 8)); rows past the end read the last one (their results are not written),
  // columns past d_model are zero-filled.
  constexpr int kRows = 4;
  const float* x_src[kRows];
  const uint16_t* w_src[kRows];
#pragma unroll
  for (int j = 0; j < kRows; ++j) {
    x_src[j] = a.x + size_t(min(t0 + tid / 16 + 16 * j, a.n_tokens - 1)) * D + 4 * (tid % 16);
    w_src[j] =
        static_cast<const uint16_t*>(a.gate) + size_t(min(e0 + tid / 8 + 32 * j, E - 1)) * D + 8 * (tid % 8);
  }
  const uint32_t w_dst = uint32_t((tid / 8) * 128 + ((tid % 8) ^ (tid / 8 % 8)) * 16);
  const uint32_t x_dst = uint32_t(kTcGateBytes + ((tid / 16) * kTcLdx + 4 * (tid % 16)) * 4);
  auto load_pair = [&](int pair) {
#pragma unroll
    for (int h = 0; h < kTcWarpgroups; ++h) {
      const int chunk = pair * kTcWarpgroups + h, k0 = chunk * kTcK;
      if (chunk >= chunks) break;
      const uint32_t stage = smem + uint32_t((chunk % kTcStages) * kTcStageBytes);
      const bool x_live = k0 + 4 * (tid % 16) < D, w_live = k0 + 8 * (tid % 8) < D;
#pragma unroll
      for (int j = 0; j < kRows; ++j) {
        ptx::cp_async_16(stage + w_dst + uint32_t(j * 32 * 128), w_live ? w_src[j] + k0 : w_src[j],
                         w_live ? 16 : 0);
        ptx::cp_async_16(stage + x_dst + uint32_t(j * 16 * kTcLdx * 4), x_live ? x_src[j] + k0 : x_src[j],
                         x_live ? 16 : 0);
      }
    }
    ptx::cp_async_commit();
  };

  float total[kTcExperts / 2] = {}, acc[kTcExperts / 2];
  uint32_t af[2][3][4];  // two k16 steps' split A fragments: one may still be read by a running group
  const int pairs = (chunks + kTcWarpgroups - 1) / kTcWarpgroups;
#pragma unroll
  for (int p = 0; p < kTcAheadPairs; ++p) load_pair(p);
  for (int p = 0; p < pairs; ++p) {
    ptx::cp_async_wait<kTcAheadPairs - 1>();
    ptx::fence_proxy_async_shared();
    // Pair p has landed for every thread, and every wgmma of pair p − 1 is done (each warpgroup
    // drains its chunk): their stages may be refilled.
    __syncthreads();
    load_pair(p + kTcAheadPairs);
    const int chunk = p * kTcWarpgroups + wg;
    if (chunk >= chunks) continue;
    const uint32_t stage = smem + uint32_t((chunk % kTcStages) * kTcStageBytes);
#pragma unroll
    for (int ks = 0; ks < kTcK / 16; ++ks) {
      uint32_t(&f)[3][4] = af[ks % 2];
      // A fragment: (row g, k..k+1), (row g+8, k..), (row g, k+8..), (row g+8, k+8..).
      const uint32_t xa = stage + uint32_t(kTcGateBytes + ((16 * warp + g) * kTcLdx + ks * 16 + 2 * t4) * 4);
      split3(ptx::lds64(xa), f[0][0], f[1][0], f[2][0]);
      split3(ptx::lds64(xa + 8 * kTcLdx * 4), f[0][1], f[1][1], f[2][1]);
      split3(ptx::lds64(xa + 32), f[0][2], f[1][2], f[2][2]);
      split3(ptx::lds64(xa + 8 * kTcLdx * 4 + 32), f[0][3], f[1][3], f[2][3]);
      ptx::wgmma_fence();
#pragma unroll
      for (int term = 2; term >= 0; --term)  // smallest terms first; the chunk's first starts from zero
        ptx::wgmma_rs_bf16<kTcExperts>(acc, f[term], ptx::smem_desc_k_sw128(stage + ks * 32),
                                       ks > 0 || term < 2 ? 1u : 0u);
      ptx::wgmma_commit();
      ptx::wgmma_wait<1>();  // the previous step's group is done: its fragments may be rewritten
    }
    ptx::wgmma_wait<0>();
#pragma unroll
    for (int i = 0; i < kTcExperts / 2; ++i) total[i] += acc[i];
  }
  ptx::cp_async_wait<0>();
  __syncthreads();  // the stages are free: warpgroup 1 hands its totals over
  float* other = reinterpret_cast<float*>(tc_smem_raw + (smem - ptx::smem_addr(tc_smem_raw)));
  if (wg == 1)
#pragma unroll
    for (int i = 0; i < kTcExperts / 2; ++i) other[(i * 4 + warp) * 32 + lane] = total[i];
  __syncthreads();
  if (wg == 1) return;
    // total[4j + r]: token 16·warp + g + 8·(r / 2), expert 8j + 2·t4 + r % 2.
#pragma unroll
  for (int j = 0; j < kTcExperts / 8; ++j)
#pragma unroll
    for (int r = 0; r < 4; r += 2) {
      const int t = t0 + 16 * warp + g + 8 * (r / 2), e = e0 + 8 * j + 2 * t4;
      const float l0 = total[4 * j + r] + other[((4 * j + r) * 4 + warp) * 32 + lane];
      const float l1 = total[4 * j + r + 1] + other[((4 * j + r + 1) * 4 + warp) * 32 + lane];
      if (t >= a.n_tokens || e >= E) continue;
      float* dst = a.scores + size_t(t) * E + e;
      if (e + 1 < E && E % 2 == 0) {
        *reinterpret_cast<float2*>(dst) = make_float2(l0, l1);
      } else {
        dst[0] = l0;
        if (e + 1 < E) dst[1] = l1;
      }
    }
}

}  // namespace dsv4::cuda::router
