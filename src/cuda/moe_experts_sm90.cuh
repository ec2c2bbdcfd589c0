// moe_experts kernels (sm_90a). y[t] = Σ_k w[t,k] · W2_e(swiglu(W1_e x[t], W3_e x[t])), e = id[t,k].
// Work items are (expert, first position, n tokens); a position holds a slot = token·top_k + k.
// Grouped mode: plan (one block) → offsets of the per-expert counts (the router's, or a
// shared-memory histogram of ids) → items of ≤ kTokenTiles·8 tokens and perm[position] = slot.
// Slots land in an expert's segment in atomic order, but every output column of an mma is
// computed from its own token alone, so results do not depend on that order. Per-slot mode (few
// tokens): item y is slot y, perm the identity, no plan launch.
// gemm: linear_sm90's decode scheme (swap AB, mma.sync m16n8k16, packed weights dequantized in
// registers, 2-4 chunks of 16 B per lane in flight) over a grid of row blocks × work items; B
// (the item's tokens, BF16) is staged per K slice in shared memory. Gate+up: a warp owns one
// 16-row tile of W1 and the same tile of W3, so its epilogue holds g and u of the same (row,
// token) and writes act = silu(min(g, L)) · clamp(u, ±L) as BF16. Down: a warp owns two tiles of
// W2; its epilogue writes slot_out[slot] = bf16(acc · out_scale · w[slot]). In per-slot mode the
// last of a token's slot blocks to finish a row block (arrival counter) also combines them into y.
// combine: y[t] = Σ over t's slots in ascending (expert id, slot) order, the CPU's summation order,
// in fp32 over the BF16 slot rows (half the bytes of fp32 ones, written by the down GEMM and read
// back here: the combine is DRAM-bound).
// Dense mode (one expert, top_k 1): cuBLAS GEMMs between the three moe_dense_* kernels at the end.
#pragma once

#include <cub/block/block_scan.cuh>

#include "cuda/arrival.cuh"
#include "cuda/linear_sm90.cuh"
#include "cuda/moe_experts_sm90.h"
#include "cuda/swiglu.cuh"

namespace dsv4::cuda::moe {

constexpr int kPlanThreads = 1024;
constexpr int kGemmWarps = 4;
constexpr int kGemmThreads = kGemmWarps * 32;
constexpr int kCombineThreads = 256;
constexpr int kCombineCols = 8 * kCombineThreads;  // columns per combine block

struct PlanArgs {
  const int32_t* expert_ids;  // [n_slots]
  const int32_t* counts;      // [n_experts] or null: counted here
  int n_slots, n_experts, tokens_per_item;
  // An expert whose tokens take n > 1 items shares them evenly among the n when each share fits
  // in even_share_tokens (prefill: 129–192 tokens run as two N = 96 tiles, not 128 + a padded
  // remainder); otherwise, and with 0, items of tokens_per_item and a remainder.
  int even_share_tokens;
  int4* items;        // [max_items] (expert, first position, n tokens, 0)
  int* n_items;       // [1]
  int32_t* perm;      // [n_slots] position → slot
  int32_t* slot_pos;  // [n_slots] slot → position, −1 for a skipped slot; or null (not written)
};

__global__ void __launch_bounds__(kPlanThreads) moe_plan_kernel(PlanArgs a) {
  __shared__ int cursor[kMoeMaxExperts];
  using Scan = cub::BlockScan<int, kPlanThreads>;
  __shared__ typename Scan::TempStorage scan_tmp;
  const int e = threadIdx.x;
  int count = 0;
  if (a.counts) {
    if (e < a.n_experts) count = max(a.counts[e], 0);
  } else {
    if (e < a.n_experts) cursor[e] = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < a.n_slots; i += kPlanThreads) {
      const int id = a.expert_ids[i];
      if (id >= 0 && id < a.n_experts) atomicAdd(&cursor[id], 1);
    }
    __syncthreads();
    if (e < a.n_experts) count = cursor[e];
  }
  const int n_it = (count + a.tokens_per_item - 1) / a.tokens_per_item;
  int offset, item0, total_items;
  Scan(scan_tmp).ExclusiveSum(count, offset);
  __syncthreads();
  Scan(scan_tmp).ExclusiveSum(n_it, item0, total_items);
  if (n_it > 1 && (count + n_it - 1) / n_it <= a.even_share_tokens) {
    const int share = count / n_it, extra = count % n_it;
    for (int j = 0; j < n_it; ++j)
      a.items[item0 + j] = make_int4(e, offset + j * share + min(j, extra), share + (j < extra), 0);
  } else {
    for (int j = 0; j < n_it; ++j)
      a.items[item0 + j] = make_int4(e, offset + j * a.tokens_per_item,
                                     min(a.tokens_per_item, count - j * a.tokens_per_item), 0);
  }
  if (threadIdx.x == 0) *a.n_items = total_items;
  if (e < a.n_experts) cursor[e] = offset;
  __syncthreads();
  for (int i = threadIdx.x; i < a.n_slots; i += kPlanThreads) {
    const int id = a.expert_ids[i];
    int pos = -1;
    if (id >= 0 && id < a.n_experts) {
      pos = atomicAdd(&cursor[id], 1);
      if (pos >= a.n_slots)
        pos = -1;  // counts that are not the ids' histogram stay in bounds
      else
        a.perm[pos] = i;
    }
    if (a.slot_pos) a.slot_pos[i] = pos;
  }
}

// Token t's valid slots in ascending (expert id, slot) order, the CPU's summation order, into
// order[0 .. *n_valid). Threads 0 .. top_k−1 take part; the caller synchronises after.
__device__ __forceinline__ void token_slot_order(const int32_t* expert_ids, int t, int top_k, int n_experts,
                                                 int* order, int* n_valid) {
  if (threadIdx.x >= top_k) return;
  const int s = threadIdx.x, id = expert_ids[t * top_k + s];
  const bool valid = id >= 0 && id < n_experts;
  int rank = 0;  // valid slots ordered before s
  for (int o = 0; o < top_k; ++o) {
    const int io = expert_ids[t * top_k + o];
    if (io >= 0 && io < n_experts && (io < id || (io == id && o < s))) ++rank;
  }
  if (valid) order[rank] = s;
  const unsigned vm = __ballot_sync(__activemask(), valid);
  if (s == 0) *n_valid = __popc(vm);
}

struct GemmArgs {
  const MoeExpertSm90* table;  // [n_experts]
  const int4* items;           // grouped mode: [max_items]
  const int* n_items;
  const int32_t* perm;         // grouped mode: [n_slots]
  const int32_t* expert_ids;   // per-slot mode: [n_slots] (items are slots); null in grouped mode
  const float* x;              // gate+up: [n_tokens, d_model] fp32
  const __nv_bfloat16* act;    // down: [n_slots, ld_act] BF16
  __nv_bfloat16* act_out;      // gate+up: [n_slots, ld_act]
  __nv_bfloat16* slot_out;     // down: [n_slots, d_model]
  const float* weights;        // [n_slots] routing weights
  float* y;                    // down, per-slot mode: [n_tokens, d_model], the folded combine
  uint32_t* combine_counters;  // down, per-slot mode: [n_tokens, gridDim.x]
  // Split K (gridDim.z splits of split_chunks packed chunks each): every split stores its unscaled
  // sums to partials [splits][n_slots][planes][ld_part] (planes: W1 and W3 for gate+up, one for
  // down; positions index n_slots); the last split to finish an (item, row block) adds them in
  // split order and runs the epilogue. split_counters: [gridDim.y][gridDim.x], 0 between launches.
  float* partials;
  uint32_t* split_counters;
  int split_chunks;
  int ld_part;
  int top_k, n_experts, n_slots;
  int rows;      // logical output rows: d_ff (gate+up) or d_model (down)
  int rows_pad;  // the weight's packed rows
  int cols;      // logical K: d_model (gate+up) or d_ff (down)
  int cols_pad;  // packed K (= ld of act for down)
  int ld_act;    // round_up(d_ff, 128)
  int k_slice;   // columns staged at once, a multiple of 256
  float swiglu_limit;
};

// kSplit: K split over gridDim.z (see GemmArgs). A separate instantiation, so that the unsplit
// kernel keeps its registers (the split bookkeeping takes its one-token-tile form from ~128 to ~155,
// 3 blocks per SM instead of 4; capping it at 128 spilled and ran 30% slower at 8 and 64 tokens).
template <WeightFormat F, int kTokenTiles, bool kGateUp, bool kSplit>
__global__ void __launch_bounds__(kGemmThreads) moe_gemm_sm90_kernel(GemmArgs a) {
  using sm90::Format;
  constexpr int kChunkK = Format<F>::kChunkK;
  constexpr int kPrefetch = kTokenTiles <= 2 ? 4 : 2;
  constexpr int kTok = kTokenTiles * 8;
  const bool per_slot = a.expert_ids != nullptr;
  __shared__ int order[kMoeMaxTopK];  // per-slot down: the token's slots in combine order
  __shared__ int n_valid;
  int expert, pos0, n_tok;
  if (per_slot) {
    pos0 = blockIdx.y, n_tok = 1;
    expert = a.expert_ids[pos0];
    if constexpr (!kGateUp) {
      token_slot_order(a.expert_ids, pos0 / a.top_k, a.top_k, a.n_experts, order, &n_valid);
      __syncthreads();
    }
    if (expert < 0 || expert >= a.n_experts) {  // a skipped slot
      if (!kGateUp && pos0 % a.top_k == 0 && n_valid == 0) {
        const int t = pos0 / a.top_k, row0 = blockIdx.x * kGemmWarps * 32;  // a token with no slot: y = 0
        for (int r = row0 + threadIdx.x; r < min(row0 + kGemmWarps * 32, a.rows); r += kGemmThreads)
          a.y[size_t(t) * a.rows + r] = 0.0f;
      }
      return;
    }
  } else {
    if (int(blockIdx.y) >= *a.n_items) return;  // the grid is sized for the worst case
    const int4 item = a.items[blockIdx.y];
    expert = item.x, pos0 = item.y, n_tok = item.z;
  }
  // The slot at position pos; −1 (an empty column) for a perm entry out of range.
  const auto slot_at = [&](int pos) {
    const int s = per_slot ? pos : a.perm[pos];
    return s >= 0 && s < a.n_slots ? s : -1;
  };
  const MoeExpertSm90& ex = a.table[expert];

  extern __shared__ uint4 moe_smem[];
  uint16_t* xs = reinterpret_cast<uint16_t*>(moe_smem);  // [kTok][ld] BF16
  __shared__ int src_row[kTok];  // x row (gate+up) or act row (down) of each token column; -1: none
  const int ld = a.k_slice + 8;  // row stride ≡ 4 words mod 32: conflict-free B fragment loads
  if (threadIdx.x < kTok) {
    const int tt = threadIdx.x, s = tt < n_tok ? slot_at(pos0 + tt) : -1;
    src_row[tt] = s < 0 ? -1 : kGateUp ? s / a.top_k : pos0 + tt;
  }

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t4 = lane % 4;
  const int n_tiles = a.rows_pad / 16, n_chunks = a.cols_pad / kChunkK;
  // Gate+up: tile m = 0 of W1, m = 1 of W3, same rows. Down: two consecutive tiles of W2.
  const int tile0 = kGateUp ? blockIdx.x * kGemmWarps + warp : (blockIdx.x * kGemmWarps + warp) * 2;
  int tiles[2];
  const uint4* wp[2];
  const uint8_t* sb[2];
  float os[2];
#pragma unroll
  for (int m = 0; m < 2; ++m) {
    const int mat = kGateUp ? m : 2;
    tiles[m] = min(kGateUp ? tile0 : tile0 + m, n_tiles - 1);  // past the end: recompute the last, unwritten
    wp[m] = reinterpret_cast<const uint4*>(ex.data[mat]) + size_t(tiles[m]) * n_chunks * 32 + lane;
    sb[m] = sm90::scale_base<F>(ex.scales[mat], tiles[m], n_chunks, a.cols_pad, g);
    os[m] = ex.out_scale[mat];
  }
  const bool active = tile0 < n_tiles;
  // This split's chunks [cb, cb + nc); slices of k_slice columns are staged from cb on.
  const int cb = kSplit ? blockIdx.z * a.split_chunks : 0,
            nc = kSplit ? min(a.split_chunks, n_chunks - cb) : n_chunks;
  const int cps = a.k_slice / kChunkK;  // chunks per slice
#pragma unroll
  for (int m = 0; m < 2; ++m) wp[m] += size_t(cb) * 32;

  uint4 wc[kPrefetch][2];
  uint2 sc[kPrefetch][2];
#pragma unroll
  for (int u = 0; u < kPrefetch; ++u)
#pragma unroll
    for (int m = 0; m < 2; ++m)
      if (active && u < nc) {
        wc[u][m] = __ldg(wp[m] + u * 32);
        sc[u][m] = sm90::scales_at<F>(sb[m], cb + u);
      }

  float acc[2][kTokenTiles][4] = {};
  // A slice holds a whole number of prefetch groups (k_slice a multiple of 256 columns), so the
  // chunks c .. c + kPrefetch − 1 of an iteration lie in the slice staged at slice_c0.
  for (int c = 0, slice_c0 = -cps; c < nc; c += kPrefetch) {
    // Stage the next K slice of B as BF16: the item's n_tok token rows (zeros for a skipped slot and
    // past cols). Rows from n_tok on stay unwritten: an mma output column depends on its own B
    // column alone, and those columns are never stored. Unrolled so several loads are in flight.
    if (c == slice_c0 + cps) {
      slice_c0 = c;
      const int k0 = (cb + c) * kChunkK, klen = min(a.k_slice, (cb + nc) * kChunkK - k0);
      __syncthreads();
      if constexpr (kGateUp) {
        const int quads = klen / 4;
#pragma unroll 4
        for (int i = threadIdx.x; i < n_tok * quads; i += kGemmThreads) {
          const int tt = i / quads, k = (i % quads) * 4, kg = k0 + k, r = src_row[tt];
          float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
          if (r >= 0 && kg < a.cols)
            v = __ldg(reinterpret_cast<const float4*>(a.x + size_t(r) * a.cols + kg));
          const __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y), hi = __floats2bfloat162_rn(v.z, v.w);
          *reinterpret_cast<uint2*>(&xs[tt * ld + k]) =
              make_uint2(*reinterpret_cast<const uint32_t*>(&lo), *reinterpret_cast<const uint32_t*>(&hi));
        }
      } else {
        const int octs = klen / 8;
#pragma unroll 4
        for (int i = threadIdx.x; i < n_tok * octs; i += kGemmThreads) {
          const int tt = i / octs, k = (i % octs) * 8, r = src_row[tt];
          uint4 v = make_uint4(0, 0, 0, 0);
          if (r >= 0) v = __ldg(reinterpret_cast<const uint4*>(a.act + size_t(r) * a.ld_act + k0 + k));
          *reinterpret_cast<uint2*>(&xs[tt * ld + k]) = make_uint2(v.x, v.y);
          *reinterpret_cast<uint2*>(&xs[tt * ld + k + 4]) = make_uint2(v.z, v.w);
        }
      }
      __syncthreads();
    }
    uint4 wn[kPrefetch][2];
    uint2 sn[kPrefetch][2];
#pragma unroll
    for (int u = 0; u < kPrefetch; ++u)
#pragma unroll
      for (int m = 0; m < 2; ++m)
        if (active && c + kPrefetch + u < nc) {
          wn[u][m] = __ldg(wp[m] + (c + kPrefetch + u) * 32);
          sn[u][m] = sm90::scales_at<F>(sb[m], cb + c + kPrefetch + u);
        }
    if (active) {
#pragma unroll
      for (int u = 0; u < kPrefetch; ++u) {
        if (c + u < nc) sm90::mma_chunk<F>(wc[u], sc[u], xs, ld, (c - slice_c0 + u) * kChunkK, g, t4, acc);
      }
    }
#pragma unroll
    for (int u = 0; u < kPrefetch; ++u)
#pragma unroll
      for (int m = 0; m < 2; ++m) {
        wc[u][m] = wn[u][m];
        sc[u][m] = sn[u][m];
      }
  }

  // Accumulator (row g | g+8, tokens 2·t4 | 2·t4+1).
  if constexpr (kSplit) {
    // Gate+up: planes W1 | W3 of rows < ld_act; down: rows of tiles tile0 + m < n_tiles. The last
    // split reads back exactly the elements each thread stored, so the sums are in split order.
    const auto part_at = [&](int split, int m, int row, int tt) {
      return a.partials + (size_t(split) * a.n_slots + (pos0 + tt)) * (kGateUp ? 2 : 1) * a.ld_part +
             (kGateUp ? m * a.ld_part : 0) + row;
    };
    const auto owned = [&](int m) { return kGateUp ? tile0 < a.ld_act / 16 : tile0 + m < n_tiles; };
    // f(accumulator, m, row, token) over the accumulators this thread owns.
    const auto for_each_owned = [&](auto&& f) {
#pragma unroll
      for (int m = 0; m < 2; ++m)
#pragma unroll
        for (int nt = 0; nt < kTokenTiles; ++nt)
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            const int row = (kGateUp ? tile0 : tile0 + m) * 16 + g + (j >= 2 ? 8 : 0),
                      tt = nt * 8 + 2 * t4 + (j & 1);
            if (owned(m) && tt < n_tok) f(acc[m][nt][j], m, row, tt);
          }
    };
    for_each_owned([&](float& v, int m, int row, int tt) { *part_at(blockIdx.z, m, row, tt) = v; });
    if (!block_arrive_last(&a.split_counters[blockIdx.y * gridDim.x + blockIdx.x], gridDim.z)) return;
    for_each_owned([&](float& v, int m, int row, int tt) {
      float sum = 0.0f;
      for (int z = 0; z < int(gridDim.z); ++z) sum += __ldcg(part_at(z, m, row, tt));
      v = sum;
    });
  }
  if constexpr (kGateUp) {
    // Tiles up to ld_act / 16 are written: rows past d_ff get 0 (the down GEMM reads them).
    if (tile0 >= a.ld_act / 16) return;
    const float L = a.swiglu_limit;
#pragma unroll
    for (int nt = 0; nt < kTokenTiles; ++nt)
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int row = tile0 * 16 + g + (j >= 2 ? 8 : 0), tt = nt * 8 + 2 * t4 + (j & 1);
        if (tt >= n_tok) continue;
        float v = 0.0f;
        if (row < a.rows) v = clamped_swiglu(acc[0][nt][j] * os[0], acc[1][nt][j] * os[1], L);
        a.act_out[size_t(pos0 + tt) * a.ld_act + row] = __float2bfloat16_rn(v);
      }
  } else {
#pragma unroll
    for (int m = 0; m < 2; ++m) {
      if (tile0 + m >= n_tiles) continue;
#pragma unroll
      for (int nt = 0; nt < kTokenTiles; ++nt)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int row = (tile0 + m) * 16 + g + (j >= 2 ? 8 : 0), tt = nt * 8 + 2 * t4 + (j & 1);
          if (row >= a.rows || tt >= n_tok) continue;
          const int slot = slot_at(pos0 + tt);
          if (slot >= 0)
            a.slot_out[size_t(slot) * a.rows + row] =
                __float2bfloat16_rn(acc[m][nt][j] * os[m] * a.weights[slot]);
        }
    }
    if (!per_slot) return;
    // Folded combine: the token's last slot block of this row block sums its slots' rows.
    const int t = pos0 / a.top_k;
    if (!block_arrive_last(&a.combine_counters[size_t(t) * gridDim.x + blockIdx.x], uint32_t(n_valid)))
      return;
    const int row0 = blockIdx.x * kGemmWarps * 32, nv = n_valid;
    for (int r = row0 + threadIdx.x; r < min(row0 + kGemmWarps * 32, a.rows); r += kGemmThreads) {
      float s = 0.0f;
      for (int i = 0; i < nv; ++i)
        s += __bfloat162float(__ldcg(a.slot_out + size_t(t * a.top_k + order[i]) * a.rows + r));
      a.y[size_t(t) * a.rows + r] = s;
    }
  }
}

struct CombineArgs {
  const int32_t* expert_ids;      // [n_tokens, top_k]
  const __nv_bfloat16* slot_out;  // [n_tokens·top_k, d_model]
  const float* addend;            // [n_tokens, d_model] or null
  float* y;                       // [n_tokens, d_model]
  int top_k, n_experts, d_model;
};

// grid (n_tokens, ⌈d_model / kCombineCols⌉); y[t, c] = Σ slot_out[t·top_k + s, c] (+ addend[t, c]),
// s in ascending (id, s) order, in fp32.
__global__ void __launch_bounds__(kCombineThreads) moe_combine_kernel(CombineArgs a) {
  __shared__ int order[kMoeMaxTopK];
  __shared__ int n_valid;
  const int t = blockIdx.x, k = a.top_k;
  token_slot_order(a.expert_ids, t, k, a.n_experts, order, &n_valid);
  __syncthreads();
  const int nv = n_valid;
  const __nv_bfloat16* base = a.slot_out + size_t(t) * k * a.d_model;
  float* y = a.y + size_t(t) * a.d_model;
  const float* add = a.addend ? a.addend + size_t(t) * a.d_model : nullptr;
  if ((a.d_model & 7) == 0) {  // 16-byte rows of 8 BF16
    const int c = blockIdx.y * kCombineCols + threadIdx.x * 8;
    if (c >= a.d_model) return;
    float s[8] = {};
    for (int r = 0; r < nv; ++r) {
      const uint4 v = *reinterpret_cast<const uint4*>(base + size_t(order[r]) * a.d_model + c);
      const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&w[i]));
        s[2 * i] += f.x, s[2 * i + 1] += f.y;
      }
    }
    if (add) {
      const float4 a0 = reinterpret_cast<const float4*>(add + c)[0],
                   a1 = reinterpret_cast<const float4*>(add + c)[1];
      s[0] += a0.x, s[1] += a0.y, s[2] += a0.z, s[3] += a0.w, s[4] += a1.x, s[5] += a1.y, s[6] += a1.z,
          s[7] += a1.w;
    }
    reinterpret_cast<float4*>(y + c)[0] = make_float4(s[0], s[1], s[2], s[3]);
    reinterpret_cast<float4*>(y + c)[1] = make_float4(s[4], s[5], s[6], s[7]);
  } else {
    for (int c = blockIdx.y * kCombineCols + threadIdx.x; c < min(a.d_model, (blockIdx.y + 1) * kCombineCols);
         c += kCombineThreads) {
      float s = 0.0f;
      for (int r = 0; r < nv; ++r) s += __bfloat162float(base[size_t(order[r]) * a.d_model + c]);
      y[c] = add ? s + add[c] : s;
    }
  }
}

// ---- Dense mode (one expert, top_k 1, many tokens: the shared expert in prefill): cuBLAS
// multiplies the expert's matrices dequantized to BF16; these kernels do the rest, with the
// prefill GEMM epilogues' arithmetic.

// table[0]'s W1 and W3 → gate_up [2 · rows_pad_up, cols_pad_up] (W1's rows, then W3's), its W2 →
// down [rows_pad_down, cols_pad_down], each times 2^bias (out_scale undoes it): one warp per packed
// (tile, chunk) of the three matrices.
template <WeightFormat F>
__global__ void moe_dense_dequantize_kernel(const MoeExpertSm90* table, int rows_pad_up, int cols_pad_up,
                                            int rows_pad_down, int cols_pad_down, __nv_bfloat16* gate_up,
                                            __nv_bfloat16* down) {
  constexpr int kChunkK = sm90::Format<F>::kChunkK;
  const int64_t up_items = int64_t(rows_pad_up / 16) * (cols_pad_up / kChunkK);
  const int64_t down_items = int64_t(rows_pad_down / 16) * (cols_pad_down / kChunkK);
  const int64_t item = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) / 32;  // warp-uniform
  const MoeExpertSm90& e = table[0];
  if (item < 2 * up_items) {
    const int m = item >= up_items ? 1 : 0;
    sm90::dequantize_packed_item<F>(e.data[m], e.scales[m], rows_pad_up, cols_pad_up, item - m * up_items,
                                    gate_up + size_t(m) * size_t(rows_pad_up) * size_t(cols_pad_up));
  } else if (item - 2 * up_items < down_items) {
    sm90::dequantize_packed_item<F>(e.data[2], e.scales[2], rows_pad_down, cols_pad_down, item - 2 * up_items,
                                    down);
  }
}

constexpr int kDenseThreads = 256;  // 4 columns per thread in the two kernels below

// act [n_tokens, ld_act] BF16 = the clamped SwiGLU of gate_up [n_tokens, 2 · rows_pad] fp32 (the
// unscaled W1 outputs, then W3's); columns d_ff..ld_act zero. grid (n_tokens, ⌈ld_act / 1024⌉).
__global__ void __launch_bounds__(kDenseThreads)
    moe_dense_swiglu_kernel(const MoeExpertSm90* table, const float* gate_up, int d_ff, int rows_pad,
                            int ld_act, float limit, __nv_bfloat16* act) {
  const int t = blockIdx.x, c = (blockIdx.y * kDenseThreads + threadIdx.x) * 4;
  if (c >= ld_act) return;
  const float s_gate = table[0].out_scale[0], s_up = table[0].out_scale[1];
  const float* g_row = gate_up + size_t(t) * 2 * rows_pad;
  float v[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  if (c + 4 <= d_ff) {  // rows_pad is a multiple of 16: both loads 16-byte aligned
    const float4 g4 = *reinterpret_cast<const float4*>(g_row + c);
    const float4 u4 = *reinterpret_cast<const float4*>(g_row + rows_pad + c);
    const float g[4] = {g4.x, g4.y, g4.z, g4.w}, u[4] = {u4.x, u4.y, u4.z, u4.w};
#pragma unroll
    for (int j = 0; j < 4; ++j) v[j] = clamped_swiglu(g[j] * s_gate, u[j] * s_up, limit);
  } else {
    for (int j = 0; j < 4 && c + j < d_ff; ++j)
      v[j] = clamped_swiglu(g_row[c + j] * s_gate, g_row[rows_pad + c + j] * s_up, limit);
  }
  __nv_bfloat162* out = reinterpret_cast<__nv_bfloat162*>(act + size_t(t) * ld_act + c);
  out[0] = __floats2bfloat162_rn(v[0], v[1]);
  out[1] = __floats2bfloat162_rn(v[2], v[3]);
}

// y [n_tokens, d_model] holds cuBLAS's unscaled down projection; y ← bf16(y · out_scale · w[t]) (the
// down epilogue's product, rounded as a slot output), or 0 where the token's id is not 0 (a skipped
// slot, as the combine leaves it); then + addend where given. grid (n_tokens, ⌈d_model / 1024⌉);
// d_model % 4 == 0.
__global__ void __launch_bounds__(kDenseThreads)
    moe_dense_weight_kernel(const MoeExpertSm90* table, const int32_t* expert_ids, const float* weights,
                            const float* addend, int d_model, float* y) {
  const int t = blockIdx.x, c = (blockIdx.y * kDenseThreads + threadIdx.x) * 4;
  if (c >= d_model) return;
  float4* p = reinterpret_cast<float4*>(y + size_t(t) * d_model + c);
  float4 v = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
  if (expert_ids[t] == 0) {
    const float s = table[0].out_scale[2], w = weights[t];
    const auto slot_value = [&](float acc) { return __bfloat162float(__float2bfloat16_rn(acc * s * w)); };
    v = *p;
    v.x = slot_value(v.x), v.y = slot_value(v.y), v.z = slot_value(v.z), v.w = slot_value(v.w);
  }
  if (addend) {
    const float4 a = *reinterpret_cast<const float4*>(addend + size_t(t) * d_model + c);
    v.x += a.x, v.y += a.y, v.z += a.z, v.w += a.w;
  }
  *p = v;
}

// y += addend over n4 groups of 4 floats (per-slot mode, whose combine is folded into the down GEMM).
__global__ void moe_add_kernel(float4* y, const float4* addend, int64_t n4) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n4) return;
  float4 v = y[i];
  const float4 a = addend[i];
  v.x += a.x, v.y += a.y, v.z += a.z, v.w += a.w;
  y[i] = v;
}

}  // namespace dsv4::cuda::moe
