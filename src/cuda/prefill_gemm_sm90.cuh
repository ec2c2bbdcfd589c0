// Prefill GEMM (sm_90a): Yᵀ[rows, tokens] = W'[rows, K] · Xᵀ[K, tokens] per group (one weight,
// or one expert), W' the packed NVFP4/MXFP4/FP8 weight dequantized exactly to BF16 in registers.
// Swap AB: W' is wgmma's A operand from registers (64 rows per m64 block, the decode kernels'
// packed layout is already the A-fragment layout), the tokens' BF16 rows (K-major) are B in shared
// memory, written by TMA with the 128-byte swizzle. A tile = 256 weight rows × ≤ 128 tokens: two
// consumer warpgroups × two m64 blocks (gate+up: block 0 = W1 rows, block 1 = the same W3 rows, so
// the SwiGLU epilogue holds g and u of one output) and a producer warpgroup that streams, per stage
// of 128 K columns, the B tile (TMA boxes) and each 16-row tile's packed bytes and scales (bulk
// copies) into a kStages-deep ring guarded by full/empty mbarriers. Consumers dequantize one m64
// block's k64 half-stage into registers while the previous block's wgmmas run (a register buffer
// per block, wait_group 1).
// Persistent: a CTA per SM walks tiles blockIdx.x, + gridDim.x, ... (row block fastest, so the
// CTAs working on one item's B rows run together and share them in L2); the ring's stage count
// runs on across tiles, so the producer streams the next tile's first stages while the consumers
// finish the current one and run its epilogue. B is loaded in boxes of 32 token rows, only as many
// as the tile's tokens need (an item of 96 tokens loads 96 rows, not 128).
#pragma once

#include <cuda_bf16.h>

#include "cuda/linear_sm90.cuh"
#include "cuda/moe_experts_sm90.h"
#include "cuda/sm90_ptx.cuh"
#include "cuda/swiglu.cuh"

namespace dsv4::cuda::prefill {

constexpr int kWarpgroups = 2;                     // consumer warpgroups
constexpr int kBlocks = 2;                         // m64 blocks per consumer warpgroup
constexpr int kTiles = kWarpgroups * kBlocks * 4;  // 16-row weight tiles per CTA
constexpr int kRowsPerCta = kTiles * 16;           // 256 weight rows (gate+up: 128 act rows of W1 and W3)
constexpr int kTokensPerCta = 128;                 // the N tile; items hold ≤ 128 tokens
// Tiles of ≤ 96 tokens run wgmma N = 96, the rest N = 128: two N only, since ptxas serializes the
// wgmmas (C7512) once N = 128 shares the kernel with two other N. 96 fits V4-Flash's ~96 tokens
// per expert at 4096 tokens; smaller tiles pay MMAs over unused columns (their B rows are stale
// shared memory, their outputs never stored) but such tiles are bound by the weight stream.
constexpr int kSmallTileTokens = 96;
constexpr int kBoxRows = 32;  // token rows per TMA box of B
constexpr int kStageK = 128;  // K columns per pipeline stage
// + a producer warpgroup: register caps are per warpgroup, so the consumers can take 232 registers
// (128 accumulators, 2 × 16 A fragments) while the producer gives its share back.
constexpr int kThreads = (kWarpgroups + 1) * 128;
constexpr int kProducerWarp = kWarpgroups * 4;
constexpr int kProducerRegs = 40, kConsumerRegs = 232;
// setmaxnreg.inc waits until the registers that setmaxnreg.dec gave back cover it (a pool, not the
// whole register file): the caps must fit the launch's allocation, 168 per thread (65536 / 384
// rounded down to a multiple of 8; ptxas uses all of it), or the consumers wait forever.
constexpr int kLaunchRegs = (65536 / kThreads) / 8 * 8;
static_assert(128 * kProducerRegs + 128 * kWarpgroups * kConsumerRegs <= kThreads * kLaunchRegs);
constexpr int kSmemBudget = 200 * 1024;  // the stage ring; the rest of 227 KB holds barriers and slack

enum class Kind { kLinear, kGateUp, kDown };

template <WeightFormat F>
struct Stage {
  static constexpr int kChunkK = sm90::Format<F>::kChunkK;
  static constexpr int kChunks = kStageK / kChunkK;  // packed chunks per tile per stage: 2 (FP4), 4 (FP8)
  static constexpr int kScaleChunkBytes = F == WeightFormat::kNVFP4 ? 64 : F == WeightFormat::kMXFP4 ? 32 : 0;
  static constexpr int kTileBytes = kChunks * 512;
  static constexpr int kTileScaleBytes = kChunks * kScaleChunkBytes;
  static constexpr int kBoxBytes = kTokensPerCta * 64 * 2;  // one 64-column half of B: 128 rows × 64 BF16
  static constexpr int kBBytes = 2 * kBoxBytes;
  static constexpr int kWOffset = kBBytes;
  static constexpr int kSOffset = kWOffset + kTiles * kTileBytes;
  static constexpr int kBytes = kSOffset + kTiles * kTileScaleBytes;  // a multiple of 1024: B stays aligned
  static constexpr int kStages = kSmemBudget / kBytes;                // 4 (FP4), 3 (FP8)
  static_assert(kBytes % 1024 == 0 && kStages >= 2);
};

// What the consumers need of a tile, published by the producer in shared memory (a ring of
// kInfoSlots, written after the empty-wait of the tile's first stage and made visible by that
// stage's full barrier): the consumers never wait on global loads between tiles. kInfoSlots =
// kStages + 1 suffices: the producer can write tile i + kInfoSlots's entry only once every consumer
// warp has released a stage of tile i + 1, i.e. finished tile i's epilogue.
struct TileInfo {
  int rb, pos0, n_tok, pad;
  float out_scale[kBlocks];
  const uint8_t* scales[kBlocks];  // FP8: the consumers load the 128×128 block scales themselves
  int slot[kTokensPerCta];         // down: each token's slot and routing weight
  float route_w[kTokensPerCta];
};

// Dynamic shared memory a CTA asks for: the ring, barriers, the tile info ring, 1 KB of alignment
// slack.
template <WeightFormat F>
constexpr int info_slots() {
  return Stage<F>::kStages + 1;
}
template <WeightFormat F>
constexpr int smem_bytes() {
  return Stage<F>::kStages * Stage<F>::kBytes + 2 * Stage<F>::kStages * 8 +
         info_slots<F>() * int(sizeof(TileInfo)) + 1024;
}

struct GemmArgs {
  // Linear: the weight. MoE: the expert table (matrices 0 = W1, 1 = W3, 2 = W2) and the items.
  const uint8_t* w_data;
  const uint8_t* w_scales;
  float out_scale;
  const MoeExpertSm90* table;
  const int4* items;  // [max_items] (expert, first position, n tokens ≤ 128, 0)
  const int* n_items;
  const int32_t* perm;   // down: [n_slots] position → slot
  const float* route_w;  // down: [n_slots] routing weights
  int n_tokens;          // linear: tokens (rows of B)
  int row_blocks;        // tiles per item (linear: per 128-token tile) along the weight rows
  int max_tiles;         // row_blocks × (linear: token tiles; MoE: max_items)
  int rows, rows_pad;    // the weight's logical and packed rows
  int cols_pad;          // packed K = B's row length
  int ld_act;            // gate+up: act row stride (round_up(d_ff, 128))
  float swiglu_limit;
  __nv_bfloat16* act_out;   // gate+up: [positions, ld_act]
  float* out;               // linear: y [n_tokens, rows]
  __nv_bfloat16* slot_out;  // down: [n_slots, rows] BF16, rows even
  // The tile scheduler: [0] the next tile to hand out past the first wave, [1] CTAs done; both 0
  // between launches (the last CTA to finish zeroes them).
  int* tile_counter;
};

// Which packed 16-row tile CTA slot `slot` (= (warpgroup·2 + block)·4 + warp) computes in row
// block rb, and from which matrix of the group (0/1/2 as in MoeExpertSm90).
template <Kind K>
__device__ __forceinline__ int slot_tile(int rb, int slot) {
  if constexpr (K == Kind::kGateUp) return rb * (kTiles / 2) + (slot / 8) * 4 + slot % 4;
  return rb * kTiles + slot;
}
template <Kind K>
__device__ __forceinline__ int slot_matrix(int slot) {
  if constexpr (K == Kind::kGateUp) return (slot / 4) % 2;
  return K == Kind::kDown ? 2 : 0;
}

struct Item {
  int rb;  // row block
  int pos0, n_tok;
  const uint8_t* data[2];  // per block: the matrix it reads
  const uint8_t* scales[2];
  float out_scale[2];
};

// Tiles of this launch: MoE items are known only on the device.
template <Kind K>
__device__ __forceinline__ int n_tiles_of(const GemmArgs& a) {
  if constexpr (K == Kind::kLinear) return a.max_tiles;
  return a.row_blocks * *a.n_items;
}

template <Kind K>
__device__ __forceinline__ Item item_of(const GemmArgs& a, int tile) {
  Item it;
  it.rb = tile % a.row_blocks;
  const int w = tile / a.row_blocks;
  if constexpr (K == Kind::kLinear) {
    it.pos0 = w * kTokensPerCta;
    it.n_tok = min(kTokensPerCta, a.n_tokens - it.pos0);
#pragma unroll
    for (int m = 0; m < kBlocks; ++m)
      it.data[m] = a.w_data, it.scales[m] = a.w_scales, it.out_scale[m] = a.out_scale;
  } else {
    const int4 item = a.items[w];
    it.pos0 = item.y;
    it.n_tok = item.z;
    const MoeExpertSm90& ex = a.table[item.x];
#pragma unroll
    for (int m = 0; m < kBlocks; ++m) {
      const int mat = K == Kind::kGateUp ? m : 2;
      it.data[m] = ex.data[mat], it.scales[m] = ex.scales[mat], it.out_scale[m] = ex.out_scale[mat];
    }
  }
  return it;
}

// The consumer warpgroups: main loop over K stages, then the epilogue of kind K. N = wgmma N
// (kSmallTileTokens or kTokensPerCta).
// g0: the ring's running stage count at the tile's first stage.
template <WeightFormat F, Kind K, int N>
__device__ __forceinline__ void consume(const GemmArgs& a, const TileInfo& it, uint32_t g0, uint8_t* ring,
                                        uint64_t* full, uint64_t* empty) {
  using S = Stage<F>;
  constexpr int kSteps = sm90::Format<F>::kSteps;  // k16 steps per chunk: 4 (FP4), 2 (FP8)
  constexpr int kChunksPerHalf = S::kChunks / 2;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, gr = lane / 4, t4 = lane % 4;
  const int wg = warp / 4, q = warp % 4;
  const int n_stages = a.cols_pad / kStageK, n_chunks = a.cols_pad / S::kChunkK;
  int slot[kBlocks], tile[kBlocks];
#pragma unroll
  for (int m = 0; m < kBlocks; ++m) {
    slot[m] = (wg * kBlocks + m) * 4 + q;
    tile[m] = slot_tile<K>(it.rb, slot[m]);
  }

  float acc[kBlocks][N / 2];
#pragma unroll
  for (int m = 0; m < kBlocks; ++m)
#pragma unroll
    for (int i = 0; i < N / 2; ++i) acc[m][i] = 0.0f;
  // A fragments of one k64 unit (a half-stage of one m64 block) per block: block m's buffer is
  // rewritten only once the group that read it (two groups back) is done, so one group's
  // dequantization overlaps the previous group's wgmmas. Per-block 16-register buffers (not a
  // half-stage's 32 per buffer) leave ptxas the registers to keep the wgmmas asynchronous; with
  // fewer it serializes every wgmma (C7512), which cost ~25% of the tensor pipe (ncu: a
  // WARPGROUP.DEPBAR after each HGMMA was a third of all stall samples).
  uint32_t af[kBlocks][4][4];  // [block][k16 step][A fragment]
  // FP8: the stage's 128×128 block scale per block, loaded a stage ahead (a global load) from the
  // tile's row of block scales, located once.
  uint2 fp8_scale[kBlocks], fp8_next[kBlocks];
  const uint8_t* fp8_row[kBlocks];
  if constexpr (F == WeightFormat::kFP8Block128)
#pragma unroll
    for (int m = 0; m < kBlocks; ++m) {
      fp8_row[m] =
          sm90::scale_base<F>(it.scales[m], min(tile[m], a.rows_pad / 16 - 1), n_chunks, a.cols_pad, gr);
      fp8_next[m] = sm90::scales_at<F>(fp8_row[m], 0);
    }

  for (int st = 0; st < n_stages; ++st) {
    const uint32_t g = g0 + uint32_t(st), s = g % S::kStages;
    if constexpr (F == WeightFormat::kFP8Block128)
#pragma unroll
      for (int m = 0; m < kBlocks; ++m) {
        fp8_scale[m] = fp8_next[m];
        fp8_next[m] = sm90::scales_at<F>(fp8_row[m], min(st + 1, n_stages - 1) * S::kChunks);
      }
    ptx::mbar_wait(ptx::smem_addr(&full[s]), (g / S::kStages) & 1);
    const uint32_t b_addr = ptx::smem_addr(ring + s * S::kBytes);
#pragma unroll
    for (int h = 0; h < 2; ++h)
#pragma unroll
      for (int m = 0; m < kBlocks; ++m) {
        // The group's packed words and scales are read from shared memory before the wait, so
        // their latency hides behind it (ncu: the first dequant instruction after the loads was
        // the top short-scoreboard stall).
        uint4 w[kChunksPerHalf];
        uint2 sc[kChunksPerHalf];
#pragma unroll
        for (int c = 0; c < kChunksPerHalf; ++c) {
          const int cc = h * kChunksPerHalf + c;
          // ld.shared by shared-window address (a generic pointer into the ring compiles to LD.E).
          w[c] = ptx::lds128(b_addr + S::kWOffset + slot[m] * S::kTileBytes + cc * 512 + lane * 16);
          if constexpr (F == WeightFormat::kNVFP4)
            sc[c] = ptx::lds64(b_addr + S::kSOffset + slot[m] * S::kTileScaleBytes + cc * 64 + gr * 8);
          else if constexpr (F == WeightFormat::kMXFP4)
            sc[c] = make_uint2(
                ptx::lds32(b_addr + S::kSOffset + slot[m] * S::kTileScaleBytes + cc * 32 + gr * 4), 0);
          else
            sc[c] = fp8_scale[m];
        }
        // Groups run in order (h, m); block m's buffer was last read by the group two back. After
        // this wait at most the previous group runs: at (0, 1) every group of stage st − 1 is done.
        ptx::wgmma_wait<1>();
        if (h == 0 && m == 1 && st > 0 && lane == 0)
          ptx::mbar_arrive(ptx::smem_addr(&empty[(g - 1) % S::kStages]));
#pragma unroll
        for (int c = 0; c < kChunksPerHalf; ++c) {
          uint32_t chunk[kSteps][4];
          sm90::dequant_chunk<F>(w[c], sc[c], chunk);
#pragma unroll
          for (int k = 0; k < kSteps; ++k)
#pragma unroll
            for (int r = 0; r < 4; ++r) af[m][c * kSteps + k][r] = chunk[k][r];
        }
        ptx::wgmma_fence();
#pragma unroll
        for (int k = 0; k < 4; ++k)
          ptx::wgmma_rs_bf16<N>(acc[m], af[m][k], ptx::smem_desc_k_sw128(b_addr + h * S::kBoxBytes + k * 32),
                                1u);
        ptx::wgmma_commit();
      }
  }
  ptx::wgmma_wait<0>();
  if (lane == 0) ptx::mbar_arrive(ptx::smem_addr(&empty[(g0 + n_stages - 1) % S::kStages]));

  // Epilogue. acc[m][4j + r]: row g + 8·(r / 2) of the warp's tile, token 8j + 2·t4 + r % 2.
  if constexpr (K == Kind::kGateUp) {
    // Rows up to ld_act are written (rows past d_ff as 0: the down GEMM reads them as K).
    const float L = a.swiglu_limit;
    const int row0 = it.rb * (kRowsPerCta / 2) + wg * 64 + q * 16 + gr;
#pragma unroll
    for (int j = 0; j < N / 8; ++j)
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int row = row0 + 8 * (r / 2), tt = 8 * j + 2 * t4 + r % 2;
        if (tt >= it.n_tok) continue;
        float v = 0.0f;
        if (row < a.rows)
          v = clamped_swiglu(acc[0][4 * j + r] * it.out_scale[0], acc[1][4 * j + r] * it.out_scale[1], L);
        a.act_out[size_t(it.pos0 + tt) * a.ld_act + row] = __float2bfloat16_rn(v);
      }
  } else if constexpr (K == Kind::kDown) {
    // BF16 slot rows, two adjacent rows per 4-byte store: lanes gr and gr ^ 1 (lane ^ 4) swap
    // halves, so the even lane holds rows (gr, gr + 1) of token 2·t4 and the odd lane the same two
    // rows of token 2·t4 + 1 (half the store instructions of one BF16 each).
    const bool odd = gr & 1;
#pragma unroll
    for (int m = 0; m < kBlocks; ++m) {
      const int row = tile[m] * 16 + (gr & ~1);
#pragma unroll
      for (int j = 0; j < N / 8; ++j) {
        const int t0 = 8 * j + 2 * t4;
        float v[4];
#pragma unroll
        for (int r = 0; r < 4; ++r) v[r] = acc[m][4 * j + r] * it.out_scale[m] * it.route_w[t0 + r % 2];
        const float got0 = __shfl_xor_sync(0xffffffffu, odd ? v[0] : v[1], 4);
        const float got1 = __shfl_xor_sync(0xffffffffu, odd ? v[2] : v[3], 4);
        const int tt = t0 + odd;
        if (tt >= it.n_tok) continue;
        __nv_bfloat16* dst = a.slot_out + size_t(it.slot[tt]) * a.rows + row;
        if (row < a.rows)
          *reinterpret_cast<__nv_bfloat162*>(dst) =
              odd ? __floats2bfloat162_rn(got0, v[1]) : __floats2bfloat162_rn(v[0], got0);
        if (row + 8 < a.rows)
          *reinterpret_cast<__nv_bfloat162*>(dst + 8) =
              odd ? __floats2bfloat162_rn(got1, v[3]) : __floats2bfloat162_rn(v[2], got1);
      }
    }
  } else {
#pragma unroll
    for (int m = 0; m < kBlocks; ++m) {
      const int row0 = tile[m] * 16 + gr;
#pragma unroll
      for (int j = 0; j < N / 8; ++j)
#pragma unroll
        for (int r = 0; r < 4; ++r) {
          const int row = row0 + 8 * (r / 2), tt = 8 * j + 2 * t4 + r % 2;
          if (tt >= it.n_tok || row >= a.rows) continue;
          a.out[size_t(it.pos0 + tt) * a.rows + row] = acc[m][4 * j + r] * it.out_scale[m];
        }
    }
  }
}

// grid: persistent CTAs (≤ the SM count) over max_tiles tiles of kRowsPerCta weight rows [gate+up:
// act rows / 2] × one token tile or item. b_map: the BF16 B rows [rows of B, cols_pad], box 64 ×
// kBoxRows, 128-byte swizzle. CTA b takes tile b, then whichever tile the scheduler counter hands
// out next: a CTA that starts late (its SM still busy with a kernel of the branch beside it) or
// draws shorter tiles (N = 96) simply takes more or fewer, where a fixed stride made the last
// CTA set the end. The producer publishes each tile, and at the end a tile with n_tok = −1.
template <WeightFormat F, Kind K>
__global__ void __launch_bounds__(kThreads, 1)
    prefill_gemm_sm90_kernel(const __grid_constant__ CUtensorMap b_map, const GemmArgs a) {
  using S = Stage<F>;
  extern __shared__ uint8_t smem_raw[];
  uint8_t* ring =
      reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) & ~uintptr_t(1023));
  uint64_t* full = reinterpret_cast<uint64_t*>(ring + S::kStages * S::kBytes);
  uint64_t* empty = full + S::kStages;
  TileInfo* info = reinterpret_cast<TileInfo*>(empty + S::kStages);
  __shared__ int next_tile[2];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  if (threadIdx.x == 0) {
    for (int s = 0; s < S::kStages; ++s) {
      ptx::mbar_init(ptx::smem_addr(&full[s]), 1);                 // the producer's arrive + tx bytes
      ptx::mbar_init(ptx::smem_addr(&empty[s]), kWarpgroups * 4);  // one arrive per consumer warp
    }
    ptx::fence_mbar_init();
  }
  __syncthreads();
  const int n_tiles = n_tiles_of<K>(a), n_stages = a.cols_pad / kStageK;

  if (warp >= kProducerWarp) {
    ptx::setmaxnreg_dec<kProducerRegs>();
    // All four producer warps issue copies: a bulk copy takes the warp ~100 cycles (its operands
    // move to uniform registers, one lane at a time), so one warp issuing a stage's 32 weight and
    // scale copies was busy ~94% of the time and set the pace (ncu: it almost never waited on an
    // empty slot). Warp p: lanes 0-3 copy tile slots 4p..4p+3's packed bytes, lanes 4-7 their
    // scales, lane 0 two of the stage's eight B boxes; warp 0 also publishes the tile and arrives
    // with the stage's transaction bytes (copies that complete before that arrive leave the
    // barrier's tx-count negative for a while, which its phase allows).
    const int pw = warp - kProducerWarp;
    constexpr int kSlotsPerWarp = kTiles / 4, kBoxesPerHalf = kTokensPerCta / kBoxRows;
    const int n_chunks = a.cols_pad / S::kChunkK, n_wtiles = a.rows_pad / 16;
    const bool copies_data = lane < kSlotsPerWarp, copies_scales = !copies_data && lane < 2 * kSlotsPerWarp;
    const int my_slot = pw * kSlotsPerWarp + lane % kSlotsPerWarp, my_block = (my_slot / 4) % kBlocks;
    const uint32_t step = copies_data ? S::kTileBytes : S::kTileScaleBytes;
    const uint32_t dst_off =
        copies_data ? S::kWOffset + my_slot * S::kTileBytes : S::kSOffset + my_slot * S::kTileScaleBytes;
    const int box_half = pw / 2, box0 = (pw % 2) * (kBoxesPerHalf / 2);
    if (lane == 0) ptx::prefetch_tensor_map(&b_map);
    uint32_t g = 0;  // the ring's running stage count
    int local = 0;   // this CTA's tile count
    for (int tile = blockIdx.x; tile < n_tiles; ++local) {
      const Item it = item_of<K>(a, tile);
      const int my_tile = slot_tile<K>(it.rb, my_slot);
      const bool copies = my_tile < n_wtiles && (copies_data || (copies_scales && S::kTileScaleBytes > 0));
      const int boxes = (it.n_tok + kBoxRows - 1) / kBoxRows;
      uint32_t tx = 0;
      if (pw == 0) {
        int valid = 0;
        for (int sl = 0; sl < kTiles; ++sl) valid += slot_tile<K>(it.rb, sl) < n_wtiles;
        tx = 2 * boxes * kBoxRows * 128 + valid * (S::kTileBytes + S::kTileScaleBytes);
      }
      const uint8_t* src =
          copies_data
              ? (my_block ? it.data[1] : it.data[0]) + (size_t(my_tile) * n_chunks) * 512
              : (my_block ? it.scales[1] : it.scales[0]) + (size_t(my_tile) * n_chunks) * S::kScaleChunkBytes;
      for (int st = 0; st < n_stages; ++st, ++g) {
        const uint32_t s = g % S::kStages;
        if (g >= S::kStages) ptx::mbar_wait(ptx::smem_addr(&empty[s]), (g / S::kStages - 1) & 1);
        const uint32_t bar = ptx::smem_addr(&full[s]);
        const uint32_t stage = ptx::smem_addr(ring + s * S::kBytes);
        if (pw == 0) {
          if (st == 0) {  // publish the tile; the full barrier's arrive below releases these writes
            TileInfo& ti = info[local % info_slots<F>()];
            if (lane == 0) {
              ti.rb = it.rb, ti.pos0 = it.pos0, ti.n_tok = it.n_tok;
#pragma unroll
              for (int m = 0; m < kBlocks; ++m)
                ti.out_scale[m] = it.out_scale[m], ti.scales[m] = it.scales[m];
            }
            // The down GEMM's token table, read here rather than held in registers across the
            // wait (the ring's stages ahead of the consumers absorb its latency).
            if constexpr (K == Kind::kDown)
              for (int i = lane; i < it.n_tok; i += 32) {
                const int slot = a.perm[it.pos0 + i];
                ti.slot[i] = slot, ti.route_w[i] = a.route_w[slot];
              }
            __syncwarp();
          }
          if (lane == 0) ptx::mbar_arrive_expect_tx(bar, tx);
        }
        if (lane == 0)
          for (int b = box0; b < min(boxes, box0 + kBoxesPerHalf / 2); ++b)
            ptx::tma_load_2d(stage + box_half * S::kBoxBytes + b * kBoxRows * 128, &b_map,
                             st * kStageK + box_half * 64, it.pos0 + b * kBoxRows, bar);
        __syncwarp();
        if (copies) ptx::bulk_copy_g2s(stage + dst_off, src + size_t(st) * step, step, bar);
      }
      if (pw == 0 && lane == 0) next_tile[local % 2] = int(gridDim.x) + atomicAdd(&a.tile_counter[0], 1);
      ptx::named_barrier_sync(1, 128);  // the producer warps (double-buffered next_tile)
      tile = next_tile[local % 2];
    }
    if (pw == 0 && lane == 0) {
      // The end: a tile of no tokens in the next stage, once the consumers have released it.
      const uint32_t s = g % S::kStages;
      if (g >= S::kStages) ptx::mbar_wait(ptx::smem_addr(&empty[s]), (g / S::kStages - 1) & 1);
      info[local % info_slots<F>()].n_tok = -1;
      ptx::mbar_arrive(ptx::smem_addr(&full[s]));
      __threadfence();  // this CTA's last fetch from the counter comes before its "done"
      if (atomicAdd(&a.tile_counter[1], 1) == int(gridDim.x) - 1)
        a.tile_counter[0] = 0, a.tile_counter[1] = 0;
    }
    return;
  }

  ptx::setmaxnreg_inc<kConsumerRegs>();
  uint32_t g0 = 0;
  for (int local = 0;; g0 += uint32_t(n_stages), ++local) {
    // The tile's first stage is full: its info entry is written.
    ptx::mbar_wait(ptx::smem_addr(&full[g0 % S::kStages]), (g0 / S::kStages) & 1);
    const TileInfo& it = info[local % info_slots<F>()];
    if (it.n_tok < 0) break;
    if (it.n_tok > kSmallTileTokens)
      consume<F, K, kTokensPerCta>(a, it, g0, ring, full, empty);
    else
      consume<F, K, kSmallTileTokens>(a, it, g0, ring, full, empty);
  }
}

// MoE: x rows gathered by position and rounded to BF16, [positions, ld_x], columns past d_model
// zero, so each expert's tokens are contiguous rows for TMA. Token-major: a block reads one
// token's row once and writes it to each of its slots' positions (slot_pos, −1 for a skipped slot;
// gathering by position read each row top_k times, mostly from DRAM: 134 µs at V4-Flash 4096
// tokens). grid (n_tokens, ⌈ld_x / kGatherCols⌉); 8 columns per thread.
constexpr int kGatherThreads = 256;
constexpr int kGatherCols = 8 * kGatherThreads;
__global__ void __launch_bounds__(kGatherThreads)
    moe_gather_x_bf16_kernel(const float* x, const int32_t* slot_pos, int top_k, int d_model, int ld_x,
                             __nv_bfloat16* x_perm) {
  __shared__ int pos[kMoeMaxTopK];
  const int t = blockIdx.x;
  if (int(threadIdx.x) < top_k) pos[threadIdx.x] = slot_pos[size_t(t) * top_k + threadIdx.x];
  __syncthreads();
  const int c = blockIdx.y * kGatherCols + threadIdx.x * 8;
  if (c >= ld_x) return;
  const float* src = x + size_t(t) * d_model + c;
  float4 v0 = make_float4(0.0f, 0.0f, 0.0f, 0.0f), v1 = v0;
  if (c < d_model) v0 = __ldg(reinterpret_cast<const float4*>(src));  // d_model % 4 == 0
  if (c + 4 < d_model) v1 = __ldg(reinterpret_cast<const float4*>(src + 4));
  const __nv_bfloat162 p0 = __floats2bfloat162_rn(v0.x, v0.y), p1 = __floats2bfloat162_rn(v0.z, v0.w),
                       p2 = __floats2bfloat162_rn(v1.x, v1.y), p3 = __floats2bfloat162_rn(v1.z, v1.w);
  uint4 o;
  o.x = *reinterpret_cast<const uint32_t*>(&p0), o.y = *reinterpret_cast<const uint32_t*>(&p1);
  o.z = *reinterpret_cast<const uint32_t*>(&p2), o.w = *reinterpret_cast<const uint32_t*>(&p3);
  for (int k = 0; k < top_k; ++k)
    if (pos[k] >= 0) *reinterpret_cast<uint4*>(x_perm + size_t(pos[k]) * ld_x + c) = o;
}

}  // namespace dsv4::cuda::prefill
