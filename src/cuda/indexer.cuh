// Lightning indexer. score[t, s] = Σ_h ReLU(q[t,h]·key[s])·head_dim^-½·(w[t,h]·n_heads^-½) for
// admissible s < (pos_t+1) div ratio (keys of token t: block slots[t] of a pool when given); then per token
// the min(topk, admissible) best entries by (score desc, index asc), −1 after. q: [n_tokens, n_heads,
// head_dim], keys: [n_entries, head_dim]. Ids must equal the CPU's exactly, so every score is bit-identical
// to the CPU's: each head's dot is one serial chain over the channels and the head terms are summed
// serially in head order, with rounded (non-contracted) products.
//
// indexer_scores_kernel: a small SGEMM without split-K. Block = (tile of entries, token): q[t] (transposed,
// heads padded to a multiple of kIndexerHeadChunk with zeros) and the tile's keys (transposed) in shared
// memory; each of the 128 threads owns 8 heads × kEntries entries and runs their 8·kEntries dot chains in
// registers, channel by channel (the CPU's order per chain). The head terms ReLU(dot)·scale·w go to shared
// memory, then one thread per entry sums them in head order. Tiles past the token's admissible count are
// skipped: the selection never reads those scores.
//
// indexer_select_kernel: one block per token. Up to kIndexerSortCapacity admissible entries are bitonic-
// sorted in shared memory by a 64-bit key (score's order-preserving bits, then the complemented index), so
// the order is (score desc, index asc) with no ties. More entries: a radix select (4 passes of 8 bits over
// the scores) finds the topk-th largest score T; the entries above T and the lowest-indexed ones equal to T
// fill the topk slots, which are then sorted the same way. O(admissible) per token.
#pragma once

#include <cstdint>

namespace dsv4::cuda {

constexpr int kIndexerThreads = 128;
constexpr int kIndexerHeadsPerThread = 8;
constexpr int kIndexerHeadGroups = 8;  // threads along the heads
constexpr int kIndexerHeadChunk = kIndexerHeadsPerThread * kIndexerHeadGroups;
constexpr int kIndexerEntryGroups = kIndexerThreads / kIndexerHeadGroups;  // threads along the entries
constexpr int kIndexerSelectThreads = 512;
constexpr int kIndexerSortCapacity = 2048;  // entries sorted in shared memory; also the largest topk
constexpr int kIndexerRadixBits = 8;
constexpr int kIndexerRadixBins = 1 << kIndexerRadixBits;

__device__ __forceinline__ int64_t indexer_admissible(int64_t position, int64_t ratio, int64_t n_entries) {
  const int64_t a = (position + 1) / ratio;
  return a < n_entries ? a : n_entries;
}

// Shared-memory layout of indexer_scores_kernel, in floats; the host sizes the launch with it.
struct IndexerScoresSmem {
  int64_t padded_heads, q_stride, k_stride, t_stride, q_at, k_at, t_at, w_at, total;
  __host__ __device__ IndexerScoresSmem(int64_t n_heads, int64_t head_dim, int entries_per_block) {
    padded_heads = (n_heads + kIndexerHeadChunk - 1) / kIndexerHeadChunk * kIndexerHeadChunk;
    q_stride = padded_heads;           // s_q[c][h]: a thread's 8 heads are two 16-byte words
    k_stride = entries_per_block + 4;  // s_k[c][e]: 16-byte words; +4 spreads a warp's stores over banks
    t_stride = padded_heads + 1;       // s_t[e][h]: the head terms, one entry per row
    q_at = 0;
    k_at = q_at + head_dim * q_stride;
    // With one chunk of heads the terms are written after the last read of the keys, over them.
    const int64_t k_size = head_dim * k_stride, t_size = entries_per_block * t_stride;
    t_at = padded_heads == kIndexerHeadChunk ? k_at : k_at + k_size;
    w_at = padded_heads == kIndexerHeadChunk ? k_at + (k_size > t_size ? k_size : t_size) : t_at + t_size;
    total = w_at + padded_heads;
  }
};

// A thread's kEntries consecutive keys of one channel: one shared-memory load.
template <int kEntries>
struct IndexerKeys;
template <>
struct IndexerKeys<1> {
  float v;
  __device__ __forceinline__ float operator[](int) const { return v; }
};
template <>
struct IndexerKeys<2> {
  float2 v;
  __device__ __forceinline__ float operator[](int j) const { return j == 0 ? v.x : v.y; }
};
template <>
struct IndexerKeys<4> {
  float4 v;
  __device__ __forceinline__ float operator[](int j) const {
    return j == 0 ? v.x : j == 1 ? v.y : j == 2 ? v.z : v.w;
  }
};

// head_dim must be a multiple of 4 (16-byte loads). Dynamic shared memory: IndexerScoresSmem.total floats.
template <int kEntries>
__global__ void __launch_bounds__(kIndexerThreads)
    indexer_scores_kernel(const float* q, const float* head_weights, const float* keys, const int32_t* slots,
                          const int64_t* positions, float* scores, int64_t n_heads, int64_t head_dim,
                          int64_t n_entries, int64_t ratio, float softmax_scale, float weights_scale) {
  constexpr int kBlockEntries = kIndexerEntryGroups * kEntries;
  extern __shared__ __align__(16) float smem[];
  const IndexerScoresSmem L(n_heads, head_dim, kBlockEntries);
  float* s_q = smem + L.q_at;
  float* s_k = smem + L.k_at;
  float* s_t = smem + L.t_at;
  float* s_w = smem + L.w_at;
  const int64_t t = blockIdx.y, s0 = int64_t(blockIdx.x) * kBlockEntries;
  const int64_t admissible = indexer_admissible(positions[t], ratio, n_entries);
  if (s0 >= admissible) return;  // the whole tile is masked; nothing reads its scores
  if (slots) keys += int64_t(slots[t]) * n_entries * head_dim;
  const int tid = threadIdx.x, quads = int(head_dim / 4), n_heads_padded = int(L.padded_heads);
  const int q_stride = int(L.q_stride), k_stride = int(L.k_stride), t_stride = int(L.t_stride);
  // Transposed loads: consecutive threads take consecutive heads (entries), so the scalar stores of
  // each 16-byte word land in consecutive banks.
  const float* qt = q + t * n_heads * head_dim;
  for (int i = tid; i < n_heads_padded * quads; i += kIndexerThreads) {
    const int h = i % n_heads_padded, c = 4 * (i / n_heads_padded);
    const float4 v = h < n_heads ? *reinterpret_cast<const float4*>(qt + h * head_dim + c)
                                 : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    s_q[(c + 0) * q_stride + h] = v.x;
    s_q[(c + 1) * q_stride + h] = v.y;
    s_q[(c + 2) * q_stride + h] = v.z;
    s_q[(c + 3) * q_stride + h] = v.w;
  }
  for (int i = tid; i < kBlockEntries * quads; i += kIndexerThreads) {
    const int e = i % kBlockEntries, c = 4 * (i / kBlockEntries);
    const float4 v = s0 + e < admissible ? *reinterpret_cast<const float4*>(keys + (s0 + e) * head_dim + c)
                                         : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    s_k[(c + 0) * k_stride + e] = v.x;
    s_k[(c + 1) * k_stride + e] = v.y;
    s_k[(c + 2) * k_stride + e] = v.z;
    s_k[(c + 3) * k_stride + e] = v.w;
  }
  for (int h = tid; h < int(n_heads); h += kIndexerThreads)
    s_w[h] = __fmul_rn(head_weights[t * n_heads + h], weights_scale);
  __syncthreads();

  const int hg = tid % kIndexerHeadGroups, eg = tid / kIndexerHeadGroups;
  for (int hc = 0; hc < n_heads_padded; hc += kIndexerHeadChunk) {
    float dot[kIndexerHeadsPerThread][kEntries];
#pragma unroll
    for (int i = 0; i < kIndexerHeadsPerThread; ++i)
#pragma unroll
      for (int j = 0; j < kEntries; ++j) dot[i][j] = 0.0f;
    const float* qp = s_q + hc + hg * kIndexerHeadsPerThread;
    const float* kp = s_k + eg * kEntries;
#pragma unroll 4
    for (int c = 0; c < 4 * quads; ++c, qp += q_stride, kp += k_stride) {
      const float4 qa = *reinterpret_cast<const float4*>(qp);
      const float4 qb = *reinterpret_cast<const float4*>(qp + 4);
      const IndexerKeys<kEntries> kf = *reinterpret_cast<const IndexerKeys<kEntries>*>(kp);
      const float qv[kIndexerHeadsPerThread] = {qa.x, qa.y, qa.z, qa.w, qb.x, qb.y, qb.z, qb.w};
#pragma unroll
      for (int i = 0; i < kIndexerHeadsPerThread; ++i)
#pragma unroll
        for (int j = 0; j < kEntries; ++j) dot[i][j] = __fadd_rn(dot[i][j], __fmul_rn(qv[i], kf[j]));
    }
    __syncthreads();  // every read of s_k is done before s_t (which may overlay it) is written
#pragma unroll
    for (int i = 0; i < kIndexerHeadsPerThread; ++i) {
      const int h = hc + hg * kIndexerHeadsPerThread + i;
      if (h >= n_heads) break;
      const float w = s_w[h];
#pragma unroll
      for (int j = 0; j < kEntries; ++j)
        s_t[(eg * kEntries + j) * t_stride + h] =
            __fmul_rn(__fmul_rn(fmaxf(dot[i][j], 0.0f), softmax_scale), w);
    }
  }
  __syncthreads();
  const int64_t s = s0 + tid;
  if (tid < kBlockEntries && s < admissible) {
    const float* terms = s_t + tid * t_stride;
    float acc = 0.0f;
    for (int h = 0; h < int(n_heads); ++h) acc = __fadd_rn(acc, terms[h]);
    scores[t * n_entries + s] = acc;
  }
}

// The selection's 64-bit key: larger = earlier in (score desc, index asc). The score's bits are mapped
// so that unsigned order is float order (−0 as +0, as the CPU's comparison treats them equal).
__device__ __forceinline__ uint32_t indexer_score_bits(float score) {
  const uint32_t u = __float_as_uint(score == 0.0f ? 0.0f : score);
  return u & 0x80000000u ? ~u : u | 0x80000000u;
}
__device__ __forceinline__ uint64_t indexer_sort_key(uint32_t score_bits, int64_t s) {
  return uint64_t(score_bits) << 32 | uint32_t(~uint32_t(s));
}
// f(s, order bits of sc[s]) for this thread's entries s < admissible (s = base + q·blockDim.x +
// threadIdx.x), in batches of kBatch whose loads are all issued before any is used.
template <int kBatch, typename F>
__device__ __forceinline__ void for_each_score_bits(const float* sc, int64_t admissible, F&& f) {
  for (int64_t base = 0; base < admissible; base += int64_t(blockDim.x) * kBatch) {
    uint32_t u[kBatch];
#pragma unroll
    for (int q = 0; q < kBatch; ++q) {
      const int64_t s = base + q * blockDim.x + threadIdx.x;
      u[q] = s < admissible ? indexer_score_bits(sc[s]) : 0;
    }
#pragma unroll
    for (int q = 0; q < kBatch; ++q) {
      const int64_t s = base + q * blockDim.x + threadIdx.x;
      if (s < admissible) f(s, u[q]);
    }
  }
}

// Exclusive prefix count of `flag` over the block (in thread order) and the block's total.
// scratch: ≥ 32 uint32 of shared memory; the leading barrier allows back-to-back calls.
__device__ __forceinline__ uint32_t block_exclusive_count(bool flag, uint32_t* scratch, uint32_t* total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, n_warps = blockDim.x >> 5;
  const uint32_t ballot = __ballot_sync(0xffffffffu, flag);
  __syncthreads();
  if (lane == 0) scratch[warp] = __popc(ballot);
  __syncthreads();
  uint32_t before = 0, all = 0;
  for (int w = 0; w < n_warps; ++w) {
    before += w < warp ? scratch[w] : 0u;
    all += scratch[w];
  }
  *total = all;
  return before + __popc(ballot & ((1u << lane) - 1u));
}

__global__ void __launch_bounds__(kIndexerSelectThreads, 1)
    indexer_select_kernel(const float* scores, const int64_t* positions, int32_t* selected, int64_t n_entries,
                          int64_t ratio, int64_t topk) {
  constexpr int kBatch = 8;  // loads in flight per thread in the passes over the scores
  __shared__ uint64_t s_sort[kIndexerSortCapacity];
  __shared__ uint32_t s_hist[kIndexerRadixBins];
  __shared__ uint32_t s_scratch[32];
  __shared__ uint32_t s_digit, s_remaining, s_bin_count, s_count;
  const int tid = threadIdx.x;
  const int64_t t = blockIdx.x;
  const int64_t admissible = indexer_admissible(positions[t], ratio, n_entries);
  const float* sc = scores + t * n_entries;
  int32_t* out = selected + t * topk;
  const int64_t n_kept = admissible < topk ? admissible : topk;
  for (int64_t j = n_kept + tid; j < topk; j += blockDim.x) out[j] = -1;
  if (admissible == 0) return;

  int n_sort;  // keys in s_sort
  if (admissible <= kIndexerSortCapacity) {
#pragma unroll
    for (int r = 0; r < kIndexerSortCapacity / kIndexerSelectThreads; ++r) {  // all loads in flight
      const int s = r * kIndexerSelectThreads + tid;
      if (s < admissible) s_sort[s] = indexer_sort_key(indexer_score_bits(sc[s]), s);
    }
    n_sort = int(admissible);
  } else {
    // Radix select: after the pass at `shift`, prefix holds the top bits of T (the topk-th largest
    // score's bits) and remaining = how many of the entries matching prefix are still to take.
    uint32_t prefix = 0, mask = 0, remaining = uint32_t(topk), bin_count = 0;
    for (int shift = 32 - kIndexerRadixBits; shift >= 0; shift -= kIndexerRadixBits) {
      for (int i = tid; i < kIndexerRadixBins; i += blockDim.x) s_hist[i] = 0;
      __syncthreads();
      for_each_score_bits<kBatch>(sc, admissible, [&](int64_t, uint32_t u) {
        if ((u & mask) != prefix) return;
        // Lanes with the same digit add once: the first passes put most entries in a few bins.
        const uint32_t digit = (u >> shift) & (kIndexerRadixBins - 1);
        const uint32_t same = __match_any_sync(__activemask(), digit);
        if ((tid & 31) == __ffs(same) - 1) atomicAdd(&s_hist[digit], uint32_t(__popc(same)));
      });
      __syncthreads();
      // The digit d where the count of entries with a digit ≥ d first reaches `remaining`: thread i
      // takes bin 255 − i (descending digits), scans its warp, then adds the warps before it.
      const int lane = tid & 31, warp = tid >> 5;
      uint32_t own = 0, incl = 0;
      if (tid < kIndexerRadixBins) {
        own = incl = s_hist[kIndexerRadixBins - 1 - tid];
        for (int o = 1; o < 32; o <<= 1) {
          const uint32_t x = __shfl_up_sync(0xffffffffu, incl, o);
          if (lane >= o) incl += x;
        }
        if (lane == 31) s_scratch[warp] = incl;
      }
      __syncthreads();
      if (tid < kIndexerRadixBins) {
        for (int w = 0; w < warp; ++w) incl += s_scratch[w];
        if (incl >= remaining && incl - own < remaining) {
          s_digit = uint32_t(kIndexerRadixBins - 1 - tid);
          s_remaining = remaining - (incl - own);
          s_bin_count = own;
        }
      }
      __syncthreads();
      prefix |= s_digit << shift;
      mask |= uint32_t(kIndexerRadixBins - 1) << shift;
      remaining = s_remaining;
      bin_count = s_bin_count;
    }
    // prefix = T; bin_count entries equal T, of which `remaining` are taken (the lowest indices).
    const uint32_t n_above = uint32_t(topk) - remaining;
    const bool all_ties = bin_count == remaining;
    if (tid == 0) s_count = 0;
    __syncthreads();
    for_each_score_bits<kBatch>(sc, admissible, [&](int64_t s, uint32_t u) {
      if (u > prefix || (all_ties && u == prefix)) s_sort[atomicAdd(&s_count, 1u)] = indexer_sort_key(u, s);
    });
    if (!all_ties) {  // more entries tie at T than are taken: walk them in index order
      uint32_t taken = 0;
      for (int64_t base = 0; base < admissible && taken < remaining; base += blockDim.x) {
        const int64_t s = base + tid;
        const bool tie = s < admissible && indexer_score_bits(sc[s]) == prefix;
        uint32_t n_ties;
        const uint32_t rank = block_exclusive_count(tie, s_scratch, &n_ties);
        if (tie && taken + rank < remaining) s_sort[n_above + taken + rank] = indexer_sort_key(prefix, s);
        taken += n_ties;
      }
    }
    n_sort = int(topk);
  }
  // Bitonic sort of s_sort[0, n_padded) into descending order, padded with 0 (below every real key).
  int n_padded = 1;
  while (n_padded < n_sort) n_padded <<= 1;
  for (int i = n_sort + tid; i < n_padded; i += blockDim.x) s_sort[i] = 0;
  __syncthreads();
  for (int k = 2; k <= n_padded; k <<= 1)
    for (int j = k >> 1; j > 0; j >>= 1) {
      for (int i = tid; i < n_padded / 2; i += blockDim.x) {
        const int lo = 2 * i - (i & (j - 1)), hi = lo + j;
        const uint64_t a = s_sort[lo], b = s_sort[hi];
        if ((a < b) == ((lo & k) == 0)) s_sort[lo] = b, s_sort[hi] = a;
      }
      __syncthreads();
    }
  for (int64_t j = tid; j < n_kept; j += blockDim.x) out[j] = int32_t(~uint32_t(s_sort[j]));
}

}  // namespace dsv4::cuda
