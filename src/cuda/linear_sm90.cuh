// y[t, n] = out_scale · Σ_k bf16(x[t, k]) · W'[n, k]: W4A16/W8A16 decode GEMM, mma.sync m16n8k16.
// Swap AB: weights are the A operand (16 rows × k16, dequantized in registers), tokens the B
// operand (k16 × 8 tokens, from x staged as BF16 in shared memory), fp32 accumulators.
// W is packed (linear_sm90_pack.cpp): per 16-row tile and chunk, lane l holds 16 bytes that are
// exactly its A fragments, so a warp streams 512 contiguous bytes per load. Dequant is bit
// moves (e2m1 → BF16 ·2^-126, E4M3 → BF16 ·2^-120) and one HMUL2 by a pre-biased scale pair
// built with one PRMT + IMAD; the powers of two come back in out_scale. A block = 8 warps ×
// 2 tiles = 256 rows sharing one K slice of x; split-K over blockIdx.y fills the SMs when N alone
// cannot. Split-K is deterministic: each split stores its fp32 sums to a workspace and they are
// added in split order, by the last split to finish a row block (an arrival counter it resets)
// or by linear_split_reduce_sm90_kernel. Decode is memory-bound, so the tiling optimises bytes
// in flight (2-4 chunks of 16 B per lane prefetched) over reuse. Groups (grouped_linear): the
// rows form n_groups equal blocks of whole tiles, blockIdx.z is the group, and group g's rows
// read x[t, g, :]; one group is plain linear.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

#include "core/quant.h"
#include "cuda/linear_sm90.h"
#include "cuda/sm90_ptx.cuh"

namespace dsv4::cuda::sm90 {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;
constexpr int kTilesPerWarp = 2;  // 16-row tiles per warp: B fragments reused twice
constexpr int kRowsPerBlock = kWarps * kTilesPerWarp * 16;

// How the K splits of a decode launch are combined.
enum class SplitReduce {
  kNone,       // one split: y written directly
  kLastBlock,  // the last split to finish a row block sums the partials (counters[row block])
  kKernel,     // linear_split_reduce_sm90_kernel sums them (too many for one block)
};

struct DecodeArgs {
  const float* x;         // [n_tokens, n_groups, cols]
  const uint8_t* w;       // packed [rows_pad/16][cols_pad/chunk_k][32][16]
  const uint8_t* scales;  // packed, per format
  float* y;               // [n_tokens, rows]
  float* partials;        // split-K: [splits][n_tokens][rows] unscaled sums of each split
  int* counters;          // kLastBlock: [gridDim.z · gridDim.x] arrivals per row block, 0 between launches
  int n_tokens, rows, cols, rows_pad, cols_pad;
  int n_groups;     // gridDim.z
  int group_tiles;  // 16-row tiles per group (rows_pad / 16 for one group)
  int k_split;      // columns per blockIdx.y, a multiple of 128
  int splits;       // gridDim.y
  float out_scale;
  SplitReduce reduce;
};

template <WeightFormat F>
struct Format {
  static constexpr int kChunkK = F == WeightFormat::kFP8Block128 ? 32 : 64;
  static constexpr int kSteps = kChunkK / 16;
};

// Four BF16 pairs (value · 2^-126) from a word of eight e2m1 codes, in the packer's placement
// (kE2m1Pair*Rotation, linear_sm90.h): pair j comes out of the word rotated right by its rotation and
// masked, each code's sign at bit 15 (31) and its bits e1 e0 m at 8:6 (24:22), the bottom of the BF16
// exponent field (subnormal for code 0.5); pair 3's m bits take a rotation of their own. 9
// instructions per word, where nibbles in order took 15.
__device__ __forceinline__ uint32_t rotr(uint32_t q, int d) {
  return __funnelshift_r(q, q, d);
}
__device__ __forceinline__ void e2m1x8_to_bf16x2x4(uint32_t q, uint32_t (&p)[4]) {
  constexpr uint32_t kPair = 0x81C081C0u, kM = 0x00400040u;
  p[0] = q & kPair;
  p[1] = rotr(q, kE2m1Pair1Rotation) & kPair;
  p[2] = rotr(q, kE2m1Pair2Rotation) & kPair;
  p[3] = (rotr(q, kE2m1Pair3MantissaRotation) & kM) | (rotr(q, kE2m1Pair3Rotation) & (kPair & ~kM));
}
// Two E4M3 bytes at bits 15:8 and 31:24 → BF16 pair (value · 2^-120, subnormals included).
__device__ __forceinline__ uint32_t e4m3x2_to_bf16x2(uint32_t q) {
  return (q & 0x80008000u) | ((q & 0x7F007F00u) >> 4);
}
// Byte b of word s duplicated into both halves, then scaled and offset into BF16 bits.
template <int kMul, uint32_t kAdd>
__device__ __forceinline__ uint32_t scale_pair(uint32_t s, int b) {
  return __byte_perm(s, 0, 0x4040 | b | (b << 8)) * kMul + kAdd;
}
__device__ __forceinline__ uint32_t hmul2(uint32_t a, uint32_t b) {
  __nv_bfloat162 r = __hmul2(*reinterpret_cast<__nv_bfloat162*>(&a), *reinterpret_cast<__nv_bfloat162*>(&b));
  return *reinterpret_cast<uint32_t*>(&r);
}

// One chunk's A fragments a[step][0..3] for a lane, from its 16 bytes and its scale word(s).
template <WeightFormat F>
__device__ __forceinline__ void dequant_chunk(const uint4& w, const uint2& s,
                                              uint32_t (&a)[Format<F>::kSteps][4]) {
  const uint32_t q[4] = {w.x, w.y, w.z, w.w};
  if constexpr (F == WeightFormat::kFP8Block128) {
    const uint32_t sc = s.x | (s.x << 16);
#pragma unroll
    for (int st = 0; st < 2; ++st) {
      a[st][0] = hmul2(e4m3x2_to_bf16x2(__byte_perm(q[2 * st], 0, 0x1404)), sc);
      a[st][1] = hmul2(e4m3x2_to_bf16x2(__byte_perm(q[2 * st], 0, 0x3424)), sc);
      a[st][2] = hmul2(e4m3x2_to_bf16x2(__byte_perm(q[2 * st + 1], 0, 0x1404)), sc);
      a[st][3] = hmul2(e4m3x2_to_bf16x2(__byte_perm(q[2 * st + 1], 0, 0x3424)), sc);
    }
  } else {
#pragma unroll
    for (int st = 0; st < 4; ++st) {
      uint32_t s0, s1;  // rows g and g + 8
      if constexpr (F == WeightFormat::kNVFP4) {
        const uint32_t word = st < 2 ? s.x : s.y;
        s0 = scale_pair<16, 0x70007000u>(word, (2 * st) % 4);
        s1 = scale_pair<16, 0x70007000u>(word, (2 * st) % 4 + 1);
      } else {
        s0 = scale_pair<128, 0x40004000u>(s.x, 2 * (st / 2));
        s1 = scale_pair<128, 0x40004000u>(s.x, 2 * (st / 2) + 1);
      }
      uint32_t pairs[4];
      e2m1x8_to_bf16x2x4(q[st], pairs);
      a[st][0] = hmul2(pairs[0], s0);
      a[st][1] = hmul2(pairs[1], s1);
      a[st][2] = hmul2(pairs[2], s0);
      a[st][3] = hmul2(pairs[3], s1);
    }
  }
}

// Where a lane's scales for tile `tile` start: scales_at(base, c) then loads chunk c's word(s)
// with one shift and add (the loops keep the base in a register).
template <WeightFormat F>
__device__ __forceinline__ const uint8_t* scale_base(const uint8_t* scales, int tile, int n_chunks,
                                                     int cols_pad, int g) {
  if constexpr (F == WeightFormat::kNVFP4) {
    return scales + (size_t(tile) * n_chunks * 8 + g) * 8;
  } else if constexpr (F == WeightFormat::kMXFP4) {
    return scales + (size_t(tile) * n_chunks * 8 + g) * 4;
  } else {
    return scales + size_t(tile * 16 / 128) * (cols_pad / 128) * 2;
  }
}
template <WeightFormat F>
__device__ __forceinline__ uint2 scales_at(const uint8_t* base, int c) {
  if constexpr (F == WeightFormat::kNVFP4) {
    return __ldg(reinterpret_cast<const uint2*>(base) + c * 8);
  } else if constexpr (F == WeightFormat::kMXFP4) {
    return make_uint2(__ldg(reinterpret_cast<const uint32_t*>(base) + c * 8), 0);
  } else {
    return make_uint2(__ldg(reinterpret_cast<const uint16_t*>(base) + c * 32 / 128), 0);
  }
}
// The scale word(s) a lane needs for chunk c of tile `tile`.
template <WeightFormat F>
__device__ __forceinline__ uint2 load_scales(const uint8_t* scales, int tile, int c, int n_chunks,
                                             int cols_pad, int g) {
  return scales_at<F>(scale_base<F>(scales, tile, n_chunks, cols_pad, g), c);
}

// Σ_s partials[s·stride + i] for s = 0 .. splits−1, in that order: split-K's one summation order.
// L2 loads (.cg): the partials were written by other blocks.
__device__ __forceinline__ float split_sum(const float* partials, int splits, size_t stride, size_t i) {
  float sum = 0.0f;
#pragma unroll 8
  for (int s = 0; s < splits; ++s) sum += __ldcg(partials + size_t(s) * stride + i);
  return sum;
}

// kTokenTiles = ceil(n_tokens / 8) token tiles of the mma N dimension.
// One packed chunk of the decode GEMMs: dequantizes kTiles 16-row weight tiles (their lane's
// 16-byte word and scales) and multiplies them with kTokenTiles 8-token tiles of x (BF16 in
// shared memory, row stride ld, the chunk's columns starting at kc) into acc.
template <WeightFormat F, int kTiles, int kTokenTiles>
__device__ __forceinline__ void mma_chunk(const uint4 (&w)[kTiles], const uint2 (&s)[kTiles],
                                          const uint16_t* xs, int ld, int kc, int g, int t4,
                                          float (&acc)[kTiles][kTokenTiles][4]) {
  constexpr int kSteps = Format<F>::kSteps;
  uint32_t af[kTiles][kSteps][4];
#pragma unroll
  for (int m = 0; m < kTiles; ++m) dequant_chunk<F>(w[m], s[m], af[m]);
#pragma unroll
  for (int st = 0; st < kSteps; ++st)
#pragma unroll
    for (int nt = 0; nt < kTokenTiles; ++nt) {
      const uint16_t* xb = xs + (nt * 8 + g) * ld + kc + st * 16 + 2 * t4;
      const uint32_t b0 = *reinterpret_cast<const uint32_t*>(xb);
      const uint32_t b1 = *reinterpret_cast<const uint32_t*>(xb + 8);
#pragma unroll
      for (int m = 0; m < kTiles; ++m) ptx::mma_bf16_m16n8k16(acc[m][nt], af[m][st], b0, b1);
    }
}

template <WeightFormat F, int kTokenTiles>
__global__ void __launch_bounds__(kThreads) linear_decode_sm90_kernel(DecodeArgs a) {
  constexpr int kChunkK = Format<F>::kChunkK;
  constexpr int kPrefetch = kTokenTiles <= 2 ? 4 : 2;  // chunks in flight per lane
  extern __shared__ uint4 smem[];
  uint16_t* xs = reinterpret_cast<uint16_t*>(smem);  // [kTokenTiles*8][ld] BF16
  const int ld = a.k_split + 8;  // row stride ≡ 4 words mod 32: conflict-free B fragment loads
  const int k_begin = blockIdx.y * a.k_split;
  const int k_len = min(a.k_split, a.cols_pad - k_begin);

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t4 = lane % 4;
  const int n_chunks = a.cols_pad / kChunkK;
  const int group = blockIdx.z, tiles_end = (group + 1) * a.group_tiles;  // this group's tiles end
  const int tile0 = group * a.group_tiles + (blockIdx.x * kWarps + warp) * kTilesPerWarp;
  const bool active = tile0 < tiles_end;
  const float* x = a.x + size_t(group) * a.cols;
  const size_t x_stride = size_t(a.n_groups) * a.cols;
  const int c_begin = k_begin / kChunkK, nc = k_len / kChunkK;
  int tiles[kTilesPerWarp];
  const uint4* wp[kTilesPerWarp];
  const uint8_t* sb[kTilesPerWarp];
#pragma unroll
  for (int m = 0; m < kTilesPerWarp; ++m) {
    tiles[m] = min(tile0 + m, tiles_end - 1);  // a missing second tile recomputes the last, unwritten
    wp[m] = reinterpret_cast<const uint4*>(a.w) + (size_t(tiles[m]) * n_chunks + c_begin) * 32 + lane;
    sb[m] = scale_base<F>(a.scales, tiles[m], n_chunks, a.cols_pad, g);
  }
  // The first weight chunks are requested before x is staged: they do not depend on it.
  uint4 wc[kPrefetch][kTilesPerWarp];
  uint2 sc[kPrefetch][kTilesPerWarp];
#pragma unroll
  for (int u = 0; u < kPrefetch; ++u)
#pragma unroll
    for (int m = 0; m < kTilesPerWarp; ++m)
      if (active && u < nc) {
        wc[u][m] = __ldg(wp[m] + u * 32);
        sc[u][m] = scales_at<F>(sb[m], c_begin + u);
      }

  // Stage this block's K slice of x as BF16; tokens past n_tokens and columns past cols are 0.
  // 16-byte loads, unrolled so several are in flight (the checked layer ensures alignment).
  if ((a.cols & 3) == 0) {
    const int quads = k_len / 4;
#pragma unroll 4
    for (int i = threadIdx.x; i < kTokenTiles * 8 * quads; i += kThreads) {
      const int t = i / quads, k = (i % quads) * 4, kg = k_begin + k;
      float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      if (t < a.n_tokens && kg < a.cols)
        v = __ldg(reinterpret_cast<const float4*>(x + size_t(t) * x_stride + kg));
      const __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y), hi = __floats2bfloat162_rn(v.z, v.w);
      *reinterpret_cast<uint2*>(&xs[t * ld + k]) =
          make_uint2(*reinterpret_cast<const uint32_t*>(&lo), *reinterpret_cast<const uint32_t*>(&hi));
    }
  } else {
    const int half = k_len / 2;
    for (int i = threadIdx.x; i < kTokenTiles * 8 * half; i += kThreads) {
      const int t = i / half, k = (i % half) * 2, kg = k_begin + k;
      float v0 = 0.0f, v1 = 0.0f;
      if (t < a.n_tokens) {
        if (kg < a.cols) v0 = x[size_t(t) * x_stride + kg];
        if (kg + 1 < a.cols) v1 = x[size_t(t) * x_stride + kg + 1];
      }
      *reinterpret_cast<__nv_bfloat162*>(&xs[t * ld + k]) = __floats2bfloat162_rn(v0, v1);
    }
  }
  __syncthreads();

  float acc[kTilesPerWarp][kTokenTiles][4] = {};
  for (int c = 0; active && c < nc; c += kPrefetch) {
    uint4 wn[kPrefetch][kTilesPerWarp];
    uint2 sn[kPrefetch][kTilesPerWarp];
#pragma unroll
    for (int u = 0; u < kPrefetch; ++u)
#pragma unroll
      for (int m = 0; m < kTilesPerWarp; ++m)
        if (c + kPrefetch + u < nc) {
          wn[u][m] = __ldg(wp[m] + (c + kPrefetch + u) * 32);
          sn[u][m] = scales_at<F>(sb[m], c_begin + c + kPrefetch + u);
        }
#pragma unroll
    for (int u = 0; u < kPrefetch; ++u) {
      if (c + u < nc) mma_chunk<F>(wc[u], sc[u], xs, ld, (c + u) * kChunkK, g, t4, acc);
    }
#pragma unroll
    for (int u = 0; u < kPrefetch; ++u)
#pragma unroll
      for (int m = 0; m < kTilesPerWarp; ++m) {
        wc[u][m] = wn[u][m];
        sc[u][m] = sn[u][m];
      }
  }

  // Accumulator (row g | g+8, tokens 2·t4 | 2·t4+1) → y[token, row], or unscaled into this
  // split's slice of the partials.
  const size_t n_out = size_t(a.n_tokens) * a.rows;
  const bool split = a.reduce != SplitReduce::kNone;
  float* out = split ? a.partials + blockIdx.y * n_out : a.y;
  const float scale = split ? 1.0f : a.out_scale;
#pragma unroll
  for (int m = 0; m < kTilesPerWarp; ++m) {
    if (tile0 + m >= tiles_end) continue;
#pragma unroll
    for (int nt = 0; nt < kTokenTiles; ++nt)
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int row = (tile0 + m) * 16 + g + (j >= 2 ? 8 : 0), t = nt * 8 + 2 * t4 + (j & 1);
        if (row >= a.rows || t >= a.n_tokens) continue;
        out[size_t(t) * a.rows + row] = acc[m][nt][j] * scale;
      }
  }
  if (a.reduce != SplitReduce::kLastBlock) return;

  // The last split to arrive at this row block adds all splits' partials in split order and
  // leaves the counter at 0 for the next launch (or graph replay): every split has counted.
  __shared__ bool last;
  __threadfence();  // this block's partials are visible device-wide before it counts itself
  __syncthreads();
  int* const counter = &a.counters[blockIdx.z * gridDim.x + blockIdx.x];
  if (threadIdx.x == 0) {
    last = atomicAdd(counter, 1) == a.splits - 1;
    if (last) *counter = 0;
  }
  __syncthreads();
  if (!last) return;
  __threadfence();
  const int row0 = (group * a.group_tiles + blockIdx.x * kWarps * kTilesPerWarp) * 16;
  const int row_end = min(a.rows, tiles_end * 16);
  for (int i = threadIdx.x; i < a.n_tokens * kRowsPerBlock; i += kThreads) {
    const int t = i / kRowsPerBlock, row = row0 + i % kRowsPerBlock;
    if (row >= row_end) continue;
    const size_t o = size_t(t) * a.rows + row;
    a.y[o] = split_sum(a.partials, a.splits, n_out, o) * a.out_scale;
  }
}

// y[i] = out_scale · Σ_s partials[s][i] in split order, i < n_out = n_tokens · rows: split-K's
// reduction when the last split of a row block would have too many partials to add alone.
// Static, as x_to_bf16_sm90_kernel: other kernels include this header.
static __global__ void linear_split_reduce_sm90_kernel(const float* partials, float* y, int64_t n_out,
                                                       int splits, float out_scale) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n_out) y[i] = split_sum(partials, splits, size_t(n_out), size_t(i)) * out_scale;
}

// Packed weight → BF16 [rows_pad, cols_pad] (times 2^bias; the GEMM's alpha = out_scale undoes
// it), for cuBLAS: one warp per (tile, chunk) `item` < (rows_pad / 16) · (cols_pad / kChunkK).
template <WeightFormat F>
__device__ __forceinline__ void dequantize_packed_item(const uint8_t* w, const uint8_t* scales, int rows_pad,
                                                       int cols_pad, int64_t item, __nv_bfloat16* out) {
  constexpr int kChunkK = Format<F>::kChunkK, kSteps = Format<F>::kSteps;
  const int n_chunks = cols_pad / kChunkK;
  const int tile = int(item / n_chunks), c = int(item % n_chunks);
  const int lane = threadIdx.x % 32, g = lane / 4, t4 = lane % 4;
  const uint4 q = __ldg(reinterpret_cast<const uint4*>(w) + item * 32 + lane);
  uint32_t af[kSteps][4];
  dequant_chunk<F>(q, load_scales<F>(scales, tile, c, n_chunks, cols_pad, g), af);
#pragma unroll
  for (int st = 0; st < kSteps; ++st)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int row = tile * 16 + g + (j % 2) * 8, col = c * kChunkK + st * 16 + 2 * t4 + (j / 2) * 8;
      *reinterpret_cast<uint32_t*>(out + size_t(row) * cols_pad + col) = af[st][j];
    }
}

// The many-token linear's dequantization: the whole weight, a warp per item.
template <WeightFormat F>
__global__ void dequantize_packed_sm90_kernel(const uint8_t* w, const uint8_t* scales, int rows_pad,
                                              int cols_pad, __nv_bfloat16* out) {
  const int64_t item = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  if (item >= int64_t(rows_pad / 16) * (cols_pad / Format<F>::kChunkK)) return;
  dequantize_packed_item<F>(w, scales, rows_pad, cols_pad, item, out);
}

// x fp32 [rows, cols] → BF16 [rows, ld] (columns cols..ld zero), four columns per thread: grid
// (rows, ⌈ld / (4 · kXToBf16Threads)⌉). Static: other kernels (moe_experts_sm90) include this
// header for its decode helpers.
constexpr int kXToBf16Threads = 256;
static __global__ void __launch_bounds__(kXToBf16Threads)
    x_to_bf16_sm90_kernel(const float* x, int cols, int ld, __nv_bfloat16* out) {
  const int c = (blockIdx.y * kXToBf16Threads + threadIdx.x) * 4;
  if (c >= ld) return;
  const float* row = x + size_t(blockIdx.x) * cols;
  __nv_bfloat16* dst = out + size_t(blockIdx.x) * ld + c;
  if ((cols & 3) == 0 && (ld & 3) == 0 && c + 4 <= cols) {  // x 16-byte aligned (the callers check)
    const float4 v = *reinterpret_cast<const float4*>(row + c);
    reinterpret_cast<__nv_bfloat162*>(dst)[0] = __floats2bfloat162_rn(v.x, v.y);
    reinterpret_cast<__nv_bfloat162*>(dst)[1] = __floats2bfloat162_rn(v.z, v.w);
    return;
  }
  for (int j = 0; j < 4 && c + j < ld; ++j) dst[j] = __float2bfloat16_rn(c + j < cols ? row[c + j] : 0.0f);
}
static inline void launch_x_to_bf16(const float* x, int64_t rows, int64_t cols, int64_t ld,
                                    __nv_bfloat16* out, cudaStream_t stream) {
  const dim3 grid(unsigned(rows), unsigned((ld + 4 * kXToBf16Threads - 1) / (4 * kXToBf16Threads)));
  x_to_bf16_sm90_kernel<<<grid, kXToBf16Threads, 0, stream>>>(x, int(cols), int(ld), out);
}

}  // namespace dsv4::cuda::sm90
