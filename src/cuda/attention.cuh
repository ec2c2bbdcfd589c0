// Sparse MQA with sinks on the tensor cores (contract: ops/attention.h). One CTA per (token, 64 heads,
// split): the heads are the MMA M dimension, so each listed kv row is read once for all of them. The
// token's list is compacted in list order (−1 and rows outside [0, n_kv) dropped); split z takes a
// contiguous share. Tiles of 64 rows are gathered into shared memory as BF16 (fp32 rows through
// registers, or a BF16 copy of the pool by cp.async, double-buffered); per tile S = Q·Kᵀ (warp w: heads
// 16·(w%4).., rows 32·(w/4)..), an online softmax in the log2 domain with an integer running max, the
// weights rounded to BF16 into P, and O += P·V (warp w: columns w·head_dim/8..), by mma.sync m16n8k16.
// q, out: [n_tokens, n_heads, head_dim] fp32; kv: [n_kv, kv_ld]. One split writes out with the sink;
// several write partials (m, l, O) that attention_combine_kernel merges with the sink in split order.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>
#include <type_traits>

#include "cuda/sm90_ptx.cuh"

namespace dsv4::cuda {

constexpr int kAttentionHeads = 64;      // heads per CTA (MMA M)
constexpr int kAttentionRows = 64;       // kv rows per tile
constexpr int kAttentionThreads = 256;   // 8 warps
constexpr int kAttentionListCap = 1024;  // compacted rows held in shared memory at a time
// 16-byte loads in flight per thread while gathering 64 fp32 rows (at most kMax): all of q's at once
// (no accumulators live yet), then 16 for a round's first kv tile and 8 for the later ones beside
// the 128 accumulator registers (more spills: ptxas -v).
template <int kHeadDim, int kMax>
constexpr int kAttentionBatch =
    kHeadDim * 64 / 4 / kAttentionThreads < kMax ? kHeadDim * 64 / 4 / kAttentionThreads : kMax;
constexpr float kLog2e = 1.4426950408889634f;

struct AttentionKernelParams {
  const float* q;         // [n_tokens, n_heads, head_dim]
  const void* kv;         // [n_kv, kv_ld] fp32 or BF16 (zero-padded to kv_ld)
  const int32_t* kv_idx;  // [n_tokens, n_sel]
  const float* sinks;     // [n_heads]
  float* out;             // [n_tokens, n_heads, head_dim]
  float* part_o;          // [n_tokens, n_heads, n_splits, head_dim] when n_splits > 1
  float2* part_ml;        // [n_tokens, n_heads, n_splits]: (running max, sum), log2 domain
  int64_t n_kv;
  int n_heads, head_dim, kv_ld, n_sel, n_splits;
  float scale_log2;  // head_dim^-½ · log2(e)
  bool vec4;         // head_dim % 4 == 0 and q, kv 16-byte aligned: float4 loads
};

// Shared memory of attention_kernel<kHeadDim>, in bytes (layout in the kernel).
constexpr int attention_smem_bytes(int head_dim_tile) {
  return (kAttentionHeads + 2 * kAttentionRows) * (head_dim_tile + 8) * 2 +
         kAttentionHeads * (kAttentionRows + 8) * 2 + kAttentionListCap * 4 + 6 * kAttentionHeads * 4 +
         32 * 4;
}

// Four consecutive fp32 values of a row (zeros past head_dim or for a null row) as 2 × BF16x2.
__device__ __forceinline__ uint2 load4_bf16(const float* row, int c, int head_dim, bool vec4) {
  float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  if (row && c < head_dim) {
    if (vec4) {
      v = __ldg(reinterpret_cast<const float4*>(row + c));
    } else {
      v.x = __ldg(row + c);
      if (c + 1 < head_dim) v.y = __ldg(row + c + 1);
      if (c + 2 < head_dim) v.z = __ldg(row + c + 2);
      if (c + 3 < head_dim) v.w = __ldg(row + c + 3);
    }
  }
  const __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y), hi = __floats2bfloat162_rn(v.z, v.w);
  return make_uint2(*reinterpret_cast<const uint32_t*>(&lo), *reinterpret_cast<const uint32_t*>(&hi));
}

// 64 rows × kHeadDim columns of fp32 (row r from row_of(r), null = zeros) into BF16 shared memory
// with row stride ld, kBatch loads in flight per thread.
template <int kHeadDim, int kBatch, typename RowOf>
__device__ __forceinline__ void gather_fp32_rows(__nv_bfloat16* dst, int ld, RowOf row_of, int head_dim,
                                                 bool vec4) {
  constexpr int kChunksPerRow = kHeadDim / 4, kChunks = 64 * kChunksPerRow;
  static_assert(kChunks % (kAttentionThreads * kBatch) == 0);
#pragma unroll 1
  for (int base = 0; base < kChunks; base += kAttentionThreads * kBatch) {
    uint2 v[kBatch];
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int i = base + b * kAttentionThreads + int(threadIdx.x);
      v[b] = load4_bf16(row_of(i / kChunksPerRow), (i % kChunksPerRow) * 4, head_dim, vec4);
    }
#pragma unroll
    for (int b = 0; b < kBatch; ++b) {
      const int i = base + b * kAttentionThreads + int(threadIdx.x);
      *reinterpret_cast<uint2*>(dst + (i / kChunksPerRow) * ld + (i % kChunksPerRow) * 4) = v[b];
    }
  }
}

// kv [n_kv, head_dim] fp32 → [n_kv, ld] BF16, columns head_dim..ld−1 zero (ld = head_dim rounded to 8).
__global__ void attention_kv_to_bf16_kernel(const float* kv, __nv_bfloat16* out, int64_t n_kv, int head_dim,
                                            int ld) {
  const int64_t n_pairs = n_kv * (ld / 2);
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n_pairs;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / (ld / 2);
    const int c = int(i % (ld / 2)) * 2;
    const float* row = kv + r * head_dim;
    const float x = c < head_dim ? row[c] : 0.0f, y = c + 1 < head_dim ? row[c + 1] : 0.0f;
    reinterpret_cast<__nv_bfloat162*>(out + r * ld)[c / 2] = __floats2bfloat162_rn(x, y);
  }
}

template <int kHeadDim, bool kKvBf16>
__global__ void __launch_bounds__(kAttentionThreads, 1) attention_kernel(const AttentionKernelParams p) {
  constexpr int kLdq = kHeadDim + 8, kLdp = kAttentionRows + 8;  // +16 bytes: conflict-free ldmatrix
  constexpr int kWarpCols = kHeadDim / 8, kColTiles = kWarpCols / 8;
  static_assert(kColTiles % 2 == 0, "head_dim tile must be a multiple of 128");
  extern __shared__ __align__(16) uint8_t smem[];
  __nv_bfloat16* q_s = reinterpret_cast<__nv_bfloat16*>(smem);                 // [64 heads][kLdq]
  __nv_bfloat16* k_s = q_s + kAttentionHeads * kLdq;                           // [2][64 rows][kLdq]
  __nv_bfloat16* p_s = k_s + 2 * kAttentionRows * kLdq;                        // [64 heads][kLdp]
  int32_t* rows_s = reinterpret_cast<int32_t*>(p_s + kAttentionHeads * kLdp);  // [kAttentionListCap]
  float* max_s = reinterpret_cast<float*>(rows_s + kAttentionListCap);         // [2 row halves][64]
  float* sum_s = max_s + 2 * kAttentionHeads;                                  // [2][64]
  float* corr_s = sum_s + 2 * kAttentionHeads;                                 // [64]
  float* m_s = corr_s + kAttentionHeads;                                       // [64]
  int* scan_s = reinterpret_cast<int*>(m_s + kAttentionHeads);                 // [8 warps]

  const int tid = int(threadIdx.x), lane = tid & 31, warp = tid >> 5, g = lane >> 2, t4 = lane & 3;
  const int64_t t = blockIdx.x;
  const int h0 = int(blockIdx.y) * kAttentionHeads, split = int(blockIdx.z);
  const int32_t* idx = p.kv_idx + t * p.n_sel;

  // Compaction, pass 1: thread tid owns list entries [j0, j1); its first valid entry's rank.
  const int per = (p.n_sel + kAttentionThreads - 1) / kAttentionThreads;
  const int j0 = min(tid * per, p.n_sel), j1 = min(j0 + per, p.n_sel);
  const auto valid = [&](int32_t row) { return row >= 0 && row < p.n_kv; };
  int count = 0;
  for (int j = j0; j < j1; ++j) count += valid(__ldg(idx + j));
  int incl = count;
#pragma unroll
  for (int o = 1; o < 32; o <<= 1) {
    const int v = __shfl_up_sync(0xffffffffu, incl, o);
    if (lane >= o) incl += v;
  }
  if (lane == 31) scan_s[warp] = incl;
  __syncthreads();
  int first_rank = incl - count, total = 0;
#pragma unroll
  for (int w = 0; w < kAttentionThreads / 32; ++w) {
    first_rank += w < warp ? scan_s[w] : 0;
    total += scan_s[w];
  }
  // This split's ranks [lo, hi): equal shares rounded up to whole tiles.
  const int share = (total + p.n_splits - 1) / p.n_splits;
  const int per_split = (share + kAttentionRows - 1) / kAttentionRows * kAttentionRows;
  const int lo = min(split * per_split, total), hi = min(lo + per_split, total);
  if (p.n_splits > 1 && lo == hi) {  // nothing to attend: a partial the combine skips
    if (tid < kAttentionHeads && h0 + tid < p.n_heads)
      p.part_ml[(t * p.n_heads + h0 + tid) * p.n_splits + split] = make_float2(-INFINITY, 0.0f);
    return;
  }

  const float* q_t = p.q + t * p.n_heads * p.head_dim;
  gather_fp32_rows<kHeadDim, kAttentionBatch<kHeadDim, 32>>(
      q_s, kLdq, [&](int r) { return h0 + r < p.n_heads ? q_t + int64_t(h0 + r) * p.head_dim : nullptr; },
      p.head_dim, p.vec4);

  const int mi = warp & 3, row_half = warp >> 2;  // S = Q·Kᵀ: heads 16·mi.., rows 32·row_half..
  const int c0 = warp * kWarpCols;                // P·V: columns c0..c0+kWarpCols−1
  float o[4][kColTiles][4];
#pragma unroll
  for (int a = 0; a < 4; ++a)
#pragma unroll
    for (int b = 0; b < kColTiles; ++b)
#pragma unroll
      for (int e = 0; e < 4; ++e) o[a][b][e] = 0.0f;
  float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.0f, 0.0f};  // heads 16·mi + g (+8)

  const uint32_t q_addr = ptx::smem_addr(q_s), k_addr = ptx::smem_addr(k_s), p_addr = ptx::smem_addr(p_s);

#pragma unroll 1
  for (int r0 = lo; r0 < hi; r0 += kAttentionListCap) {
    const int n_round = min(kAttentionListCap, hi - r0);
    {  // Compaction, pass 2: the round's rows in list order.
      int rank = first_rank;
      for (int j = j0; j < j1; ++j) {
        const int32_t row = __ldg(idx + j);
        if (!valid(row)) continue;
        if (rank >= r0 && rank < r0 + n_round) rows_s[rank - r0] = row;
        ++rank;
      }
    }
    __syncthreads();
    const int n_tiles = (n_round + kAttentionRows - 1) / kAttentionRows;
    const auto load_tile = [&](int tile, auto batch) {  // batch: std::integral_constant (fp32 rows)
      __nv_bfloat16* dst = k_s + (tile & 1) * kAttentionRows * kLdq;
      const int row0 = tile * kAttentionRows;
      if constexpr (kKvBf16) {
        constexpr int kChunksPerRow = kHeadDim / 8;
        const __nv_bfloat16* kv = static_cast<const __nv_bfloat16*>(p.kv);
        const uint32_t dst_addr = ptx::smem_addr(dst);
#pragma unroll 2
        for (int i = tid; i < kAttentionRows * kChunksPerRow; i += kAttentionThreads) {
          const int r = i / kChunksPerRow, c = (i % kChunksPerRow) * 8;
          const bool live = row0 + r < n_round && c < p.kv_ld;
          const __nv_bfloat16* src = live ? kv + int64_t(rows_s[row0 + r]) * p.kv_ld + c : kv;
          ptx::cp_async_16(dst_addr + uint32_t(r * kLdq + c) * 2, src, live ? 16 : 0);
        }
        ptx::cp_async_commit();
      } else {
        const float* kv = static_cast<const float*>(p.kv);
        gather_fp32_rows<kHeadDim, decltype(batch)::value>(
            dst, kLdq,
            [&](int r) { return row0 + r < n_round ? kv + int64_t(rows_s[row0 + r]) * p.kv_ld : nullptr; },
            p.head_dim, p.vec4);
      }
    };
    load_tile(0, std::integral_constant<int, kAttentionBatch<kHeadDim, 16>>());
#pragma unroll 1
    for (int tile = 0; tile < n_tiles; ++tile) {
      if (tile + 1 < n_tiles) {
        load_tile(tile + 1, std::integral_constant<int, kAttentionBatch<kHeadDim, 8>>());
        if constexpr (kKvBf16) ptx::cp_async_wait<1>();
      } else if constexpr (kKvBf16) {
        ptx::cp_async_wait<0>();
      }
      __syncthreads();  // tile's rows (and Q) in shared memory
      const uint32_t kt_addr = k_addr + uint32_t((tile & 1) * kAttentionRows * kLdq) * 2;
      const int n_live = min(kAttentionRows, n_round - tile * kAttentionRows);

      // S = Q·Kᵀ for heads 16·mi.., rows 32·row_half.. (4 n8 tiles).
      float s[4][4];
#pragma unroll
      for (int a = 0; a < 4; ++a)
#pragma unroll
        for (int e = 0; e < 4; ++e) s[a][e] = 0.0f;
#pragma unroll 4
      for (int ks = 0; ks < kHeadDim / 16; ++ks) {
        uint32_t qa[4];
        ptx::ldmatrix_x4(qa,
                         q_addr + uint32_t((16 * mi + (lane & 15)) * kLdq + ks * 16 + (lane >> 4) * 8) * 2);
#pragma unroll
        for (int np = 0; np < 2; ++np) {
          uint32_t kb[4];
          const int r = 32 * row_half + 16 * np + (lane & 7) + ((lane >> 4) << 3);
          ptx::ldmatrix_x4(kb, kt_addr + uint32_t(r * kLdq + ks * 16 + ((lane >> 3) & 1) * 8) * 2);
          ptx::mma_bf16_m16n8k16(s[2 * np], qa, kb[0], kb[1]);
          ptx::mma_bf16_m16n8k16(s[2 * np + 1], qa, kb[2], kb[3]);
        }
      }
      // Online softmax: this row_half's row maxima, exchanged with the other row_half through max_s.
      float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
      for (int nt = 0; nt < 4; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int col = 32 * row_half + 8 * nt + 2 * t4 + (e & 1);
          s[nt][e] = col < n_live ? s[nt][e] * p.scale_log2 : -INFINITY;
          tile_max[e >> 1] = fmaxf(tile_max[e >> 1], s[nt][e]);
        }
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 1));
        tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xffffffffu, tile_max[r], 2));
        if (t4 == 0) max_s[row_half * kAttentionHeads + 16 * mi + g + 8 * r] = tile_max[r];
      }
      __syncthreads();
      float base[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int head = 16 * mi + g + 8 * r;
        // An integer running max: the weights bf16(2^{x − m}) are bf16(2^x)·2^{−m} exactly, the same
        // whatever the tiling and splitting, and the rescalings are exact powers of two.
        const float m_new = ceilf(fmaxf(m_run[r], fmaxf(max_s[head], max_s[kAttentionHeads + head])));
        base[r] = m_new == -INFINITY ? 0.0f : m_new;
        const float corr =
            m_run[r] == -INFINITY ? 0.0f : ldexpf(1.0f, int(fmaxf(m_run[r] - base[r], -256.0f)));
        m_run[r] = m_new;
        l_run[r] *= corr;
        if (row_half == 0 && t4 == 0) corr_s[head] = corr;
      }
#pragma unroll
      for (int nt = 0; nt < 4; ++nt)
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const __nv_bfloat162 pb =
              __floats2bfloat162_rn(exp2f(s[nt][2 * r] - base[r]), exp2f(s[nt][2 * r + 1] - base[r]));
          l_run[r] += __low2float(pb) + __high2float(pb);
          *reinterpret_cast<__nv_bfloat162*>(p_s + (16 * mi + g + 8 * r) * kLdp + 32 * row_half + 8 * nt +
                                             2 * t4) = pb;
        }
      __syncthreads();  // P and corr_s complete

      // O = O·corr + P·V for all 64 heads, columns c0.. (kColTiles n8 tiles).
#pragma unroll
      for (int a = 0; a < 4; ++a) {
        const float lo_corr = corr_s[16 * a + g], hi_corr = corr_s[16 * a + g + 8];
#pragma unroll
        for (int b = 0; b < kColTiles; ++b) {
          o[a][b][0] *= lo_corr, o[a][b][1] *= lo_corr;
          o[a][b][2] *= hi_corr, o[a][b][3] *= hi_corr;
        }
      }
#pragma unroll
      for (int ks = 0; ks < kAttentionRows / 16; ++ks) {
        uint32_t pa[4][4];
#pragma unroll
        for (int a = 0; a < 4; ++a)
          ptx::ldmatrix_x4(pa[a],
                           p_addr + uint32_t((16 * a + (lane & 15)) * kLdp + ks * 16 + (lane >> 4) * 8) * 2);
#pragma unroll
        for (int np = 0; np < kColTiles / 2; ++np) {
          uint32_t vb[4];
          const int r = ks * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
          ptx::ldmatrix_x4_trans(vb, kt_addr + uint32_t(r * kLdq + c0 + 16 * np + (lane >> 4) * 8) * 2);
#pragma unroll
          for (int a = 0; a < 4; ++a) {
            ptx::mma_bf16_m16n8k16(o[a][2 * np], pa[a], vb[0], vb[1]);
            ptx::mma_bf16_m16n8k16(o[a][2 * np + 1], pa[a], vb[2], vb[3]);
          }
        }
      }
      __syncthreads();  // the tile's buffer, P and max_s may be overwritten
    }
  }

  // Per head: the running max and the sum over both halves.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l_run[r] += __shfl_xor_sync(0xffffffffu, l_run[r], 1);
    l_run[r] += __shfl_xor_sync(0xffffffffu, l_run[r], 2);
    const int head = 16 * mi + g + 8 * r;
    if (t4 == 0) {
      sum_s[row_half * kAttentionHeads + head] = l_run[r];
      if (row_half == 0) m_s[head] = m_run[r];
    }
  }
  __syncthreads();
  const bool pairs = (p.head_dim & 1) == 0;
#pragma unroll
  for (int a = 0; a < 4; ++a)
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int head = 16 * a + g + 8 * r, h = h0 + head;
      if (h >= p.n_heads) continue;
      const float m = m_s[head], l = sum_s[head] + sum_s[kAttentionHeads + head];
      float factor = 1.0f, *dst;
      if (p.n_splits == 1) {
        const float sink = p.sinks[h] * kLog2e, top = fmaxf(m, sink);
        const float keep = exp2f(m - top);
        factor = keep / (l * keep + exp2f(sink - top));
        dst = p.out + (t * p.n_heads + h) * p.head_dim;
      } else {
        const int64_t slot = (t * p.n_heads + h) * p.n_splits + split;
        if (warp == 0 && t4 == 0) p.part_ml[slot] = make_float2(m, l);
        dst = p.part_o + slot * p.head_dim;
      }
#pragma unroll
      for (int b = 0; b < kColTiles; ++b) {
        const int c = c0 + 8 * b + 2 * t4;
        const float x = o[a][b][2 * r] * factor, y = o[a][b][2 * r + 1] * factor;
        if (pairs && c + 1 < p.head_dim) {
          *reinterpret_cast<float2*>(dst + c) = make_float2(x, y);
        } else {
          if (c < p.head_dim) dst[c] = x;
          if (c + 1 < p.head_dim) dst[c + 1] = y;
        }
      }
    }
}

// out[t, h] = Σ_z O_z·2^{m_z − M} / (Σ_z l_z·2^{m_z − M} + 2^{sink − M}), M = max(sink, m_z), over
// the splits z in order (empty splits, m_z = −∞, skipped). One block per (t, h).
__global__ void attention_combine_kernel(const float* part_o, const float2* part_ml, const float* sinks,
                                         float* out, int n_heads, int head_dim, int n_splits) {
  extern __shared__ float weight_s[];  // [n_splits]
  __shared__ float den_s;
  const int64_t th = blockIdx.x;
  const float2* ml = part_ml + th * n_splits;
  if (threadIdx.x == 0) {
    const float sink = sinks[th % n_heads] * kLog2e;
    float top = sink;
    for (int z = 0; z < n_splits; ++z) top = fmaxf(top, ml[z].x);
    float den = exp2f(sink - top);
    for (int z = 0; z < n_splits; ++z) {
      const float w = ml[z].x == -INFINITY ? 0.0f : exp2f(ml[z].x - top);
      weight_s[z] = w;
      den += ml[z].y * w;
    }
    den_s = den;
  }
  __syncthreads();
  const float inv = 1.0f / den_s;
  const float* o = part_o + th * n_splits * head_dim;
  for (int c = int(threadIdx.x); c < head_dim; c += blockDim.x) {
    float acc = 0.0f;
    for (int z = 0; z < n_splits; ++z)
      if (weight_s[z] != 0.0f) acc += o[int64_t(z) * head_dim + c] * weight_s[z];
    out[th * head_dim + c] = acc * inv;
  }
}

}  // namespace dsv4::cuda
