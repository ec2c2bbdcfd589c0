// Launchers and checked layers of moe_experts on sm_90a (contract in moe_experts_sm90.h, kernels
// in moe_experts_sm90.cuh). moe_gemm_config is the one place that sizes the grouped GEMM grids.
#include <algorithm>
#include <unordered_map>

#include "cuda/check.h"
#include "cuda/device_buffer.h"
#include "cuda/moe_experts_sm90.cuh"
#include "cuda/moe_experts_sm90.h"
#include "cuda/prefill_gemm_sm90.h"

namespace dsv4::cuda {
namespace {

constexpr size_t kMaxGemmSmem = 96 * 1024;  // B slice; the rest of the SM's 228 KB stays for other blocks

// K split of one decode GEMM: `splits` ranges of split_cols packed columns (a multiple of 256).
struct KSplit {
  int splits = 1;
  int split_cols = 0;
};

struct GemmConfig {
  bool per_slot;        // one work item per slot: no plan, the combine folded into the down GEMM
  bool prefill;         // the wgmma GEMMs of prefill_gemm_sm90 (items of ≤ 128 tokens)
  bool dense;           // one expert, top_k 1: cuBLAS on the matrices dequantized to BF16
  int token_tiles;      // tiles of 8 tokens per work item: 1, 2, 4 or 8
  int tokens_per_item;  // 8 · token_tiles (per-slot mode: 1 real token of 8 columns)
  int64_t max_items;    // worst case over all routings
  KSplit up, down;      // decode modes: K splits of the gate+up and down GEMMs
};

// Per-slot mode pays for an expert shared by two slots with a second read of its weights (from L2
// when the two blocks run together) and saves the plan and combine launches: worth it while slots
// are few enough that such collisions are rare. Its combine counters live in a fixed region at
// the start of the workspace, so that no other call's data ever lands on them.
constexpr int64_t kPerSlotMaxSlots = 16;
constexpr int64_t kCombineCounters = 4096;
int64_t down_row_blocks(int64_t d_model) {
  return (round_up(d_model, 16) / 16 + 2 * moe::kGemmWarps - 1) / (2 * moe::kGemmWarps);
}
int64_t up_row_blocks(int64_t d_ff) {
  return (round_up(d_ff, 128) / 16 + moe::kGemmWarps - 1) / moe::kGemmWarps;
}

// Split K when a decode GEMM's grid (row blocks × worst-case items) is far below the blocks that
// keep every SM streaming: one token's six experts are 192 blocks of 4 warps, the shared expert
// alone 32, too few loads in flight for the copy bandwidth. Splits are at least 256 columns; their
// arrival counters live in a fixed region (kSplitCounters ≥ kSplitTargetBlocks) after the combine
// counters, for the same reason as those.
constexpr int64_t kSplitCounters = 4096;
// Two blocks per SM on a 132-SM H100/H200: measured best of 0 (no split), 264 and 400 (`dsv4 bench
// moe`, docs/performance.md): one token's routed experts 68.4 / 59.1 / 67.6 µs (400 splits them
// three ways, 576 blocks: more than one wave), the shared expert 60.3 / 27.0 / 27.0 µs.
constexpr int64_t kSplitTargetBlocks = 264;
static_assert(kSplitTargetBlocks <= kSplitCounters);
KSplit k_split_for(int64_t blocks, int64_t cols_pad) {
  if (blocks >= kSplitTargetBlocks || cols_pad < 512) return {1, int(cols_pad)};
  const int64_t want = std::min((kSplitTargetBlocks + blocks - 1) / blocks, cols_pad / 256);
  const int64_t split_cols = round_up((cols_pad + want - 1) / want, 256);
  return {int((cols_pad + split_cols - 1) / split_cols), int(split_cols)};
}

// Tokens per expert are known only on the device. An item holds up to 8·token_tiles tokens of
// one expert, sized for the expected load (slots / experts hit, at most 64): decode gets 8-token
// items rather than MMAs over empty token columns (sizing by n_tokens made 64 tokens run 8 token
// tiles for ~1.5 tokens per expert: 36% of floor). An expert with more tokens takes several
// items (its weights re-read, mostly from L2). max_items bounds Σ ceil(count / item size).
// Prefill regime: from kMoePrefillMinTokensPerExpert expected tokens per expert on, the wgmma
// GEMMs (measured: 3.5x the decode kernels at 96 per expert, V4-Flash 4096 tokens; the decode
// kernels kept at 12 per expert, 512 tokens; the crossover in between is not measured yet).
constexpr int64_t kMoePrefillMinTokensPerExpert = 16;
// The wgmma GEMMs also take a grid of at least one CTA per SM. Below it the decode kernels, split
// over K, run instead: the shared expert (one expert) at up to 64 tokens runs beside the routed
// experts in Model::moe's branch, where a few wgmma CTAs would hold whole SMs for their long run
// (`bench model`, V4-Flash 4 layers, decode batch 32 / 64: 6.04–6.26 / 9.52–10.02 ms with this
// rule, 6.55 / 10.50 ms without; H100).
// Dense mode takes the one-expert, top-1 calls (the shared expert) from kMoeDenseMinTokens tokens
// (`bench moe --shape flash`, H100, µs, the shared expert alone / the layer with it in the branch;
// docs/performance.md): 128 tokens dense 83 / 1341, wgmma 154 / 1342; 512 dense 109 / 2266, decode
// kernels 452 / 2544; 4096 dense 447–480 / 3853–3920, wgmma 548–556 / 3888–3995. At 8–64 tokens the
// layer is slower with dense mode in its branch (8: 330 against 286; 64: 1127 against 1080–1105),
// though the shared expert alone is faster from 32 tokens.
constexpr int64_t kMoeDenseMinTokens = 128;
// Per-slot mode also needs slots ≤ n_experts: the shared expert (one expert) at 2–16 tokens would
// otherwise read its weights once per token; grouped mode reads them once per item.
GemmConfig moe_gemm_config(int64_t n_tokens, int64_t d_model, int64_t d_ff, int64_t n_experts, int64_t top_k,
                           MoeGemmRegime regime) {
  GemmConfig c{};
  if (regime == MoeGemmRegime::kDense ||
      (regime == MoeGemmRegime::kAuto && n_experts == 1 && top_k == 1 && n_tokens >= kMoeDenseMinTokens)) {
    c.dense = true;
    return c;
  }
  const int64_t slots = n_tokens * top_k, hit = std::max<int64_t>(1, std::min(n_experts, slots));
  const int64_t prefill_items = (slots + hit * (kMoePrefillTokensPerItem - 1)) / kMoePrefillTokensPerItem;
  const bool prefill =
      regime == MoeGemmRegime::kPrefill ||
      (slots / hit >= kMoePrefillMinTokensPerExpert && prefill_items * ((d_ff + 127) / 128) >= sm_count());
  if (!prefill && slots <= kPerSlotMaxSlots && slots <= n_experts &&
      n_tokens * down_row_blocks(d_model) <= kCombineCounters) {
    c.per_slot = true;
    c.token_tiles = 1;
    c.tokens_per_item = 8;
    c.max_items = slots;
  } else if (prefill) {
    c.prefill = true;
    c.tokens_per_item = kMoePrefillTokensPerItem;
    c.max_items = prefill_items;
    return c;
  } else {
    const int64_t tiles8 = (slots / hit + 7) / 8;
    c.token_tiles = tiles8 <= 1 ? 1 : tiles8 <= 2 ? 2 : tiles8 <= 4 ? 4 : 8;
    c.tokens_per_item = 8 * c.token_tiles;
    c.max_items = (slots + hit * (c.tokens_per_item - 1)) / c.tokens_per_item;
  }
  c.up = k_split_for(up_row_blocks(d_ff) * c.max_items, round_up(d_model, 128));
  c.down = k_split_for(down_row_blocks(d_model) * c.max_items, round_up(d_ff, 128));
  return c;
}

// K slice staged per pass: the fewest passes the shared-memory budget allows, balanced, in
// multiples of 256 columns (so a slice holds whole prefetch groups of chunks).
int k_slice_for(int64_t cols_pad, int tokens_per_item) {
  const int64_t max_cols =
      std::max<int64_t>(256, (int64_t(kMaxGemmSmem) / (2 * tokens_per_item) - 8) / 256 * 256);
  const int64_t passes = (cols_pad + max_cols - 1) / max_cols;
  return int(round_up((cols_pad + passes - 1) / passes, 256));
}

struct Workspace {
  uint32_t* combine_counters;  // [kCombineCounters], first: see kPerSlotMaxSlots
  uint32_t* split_counters;    // [kSplitCounters], second: see k_split_for
  int* tile_counter;           // [2], third, likewise: the prefill GEMMs' tile scheduler
  float* partials;             // split K only
  int4* items;
  int* n_items;
  int32_t* perm;
  int32_t* slot_pos;  // prefill only: the gather's slot → position
  __nv_bfloat16* act;
  __nv_bfloat16* slot_out;   // [slots, d_model] each slot's weighted output, BF16 (ops/moe_experts.h)
  __nv_bfloat16* x_perm;     // prefill: x gathered by position; dense: x as BF16
  __nv_bfloat16* w_gate_up;  // dense: W1 then W3 as BF16 [2 · round_up(d_ff, 16), round_up(d_model, 128)]
  __nv_bfloat16* w_down;     // dense: W2 as BF16 [round_up(d_model, 16), round_up(d_ff, 128)]
  float* gate_up;            // dense: [n_tokens, 2 · round_up(d_ff, 16)] unscaled W1 | W3 outputs
};

Workspace carve(void* base, int64_t n_tokens, int64_t d_model, int64_t d_ff, const GemmConfig& c,
                int64_t top_k, size_t* total) {
  const size_t slots = size_t(n_tokens * top_k), ld_act = size_t(round_up(d_ff, 128));
  size_t off = 0;
  auto take = [&](size_t bytes) {
    const size_t at = off;
    off += align_up(bytes);
    return static_cast<char*>(base) + at;
  };
  Workspace w{};
  w.combine_counters = reinterpret_cast<uint32_t*>(take(kCombineCounters * sizeof(uint32_t)));
  w.split_counters = reinterpret_cast<uint32_t*>(take(kSplitCounters * sizeof(uint32_t)));
  w.tile_counter = reinterpret_cast<int*>(take(2 * sizeof(int)));  // third, for the same reason
  if (c.dense) {
    const size_t ld_x = size_t(round_up(d_model, 128)), rows_up = 2 * size_t(round_up(d_ff, 16));
    w.x_perm = reinterpret_cast<__nv_bfloat16*>(take(size_t(n_tokens) * ld_x * 2));
    w.w_gate_up = reinterpret_cast<__nv_bfloat16*>(take(rows_up * ld_x * 2));
    w.w_down = reinterpret_cast<__nv_bfloat16*>(take(size_t(round_up(d_model, 16)) * ld_act * 2));
    w.gate_up = reinterpret_cast<float*>(take(size_t(n_tokens) * rows_up * sizeof(float)));
    w.act = reinterpret_cast<__nv_bfloat16*>(take(size_t(n_tokens) * ld_act * 2));
    if (total) *total = off;
    return w;
  }
  if (c.up.splits > 1 || c.down.splits > 1) {
    const size_t up = size_t(c.up.splits) * 2 * ld_act,
                 down = size_t(c.down.splits) * size_t(round_up(d_model, 16));
    w.partials = reinterpret_cast<float*>(take(slots * std::max(up, down) * sizeof(float)));
  }
  w.items = reinterpret_cast<int4*>(take(size_t(c.max_items) * sizeof(int4)));
  w.n_items = reinterpret_cast<int*>(take(sizeof(int)));
  w.perm = reinterpret_cast<int32_t*>(take(slots * sizeof(int32_t)));
  w.act = reinterpret_cast<__nv_bfloat16*>(take(slots * ld_act * 2));
  w.slot_out = reinterpret_cast<__nv_bfloat16*>(take(slots * size_t(d_model) * 2));
  if (c.prefill) {
    w.x_perm = reinterpret_cast<__nv_bfloat16*>(take(slots * size_t(round_up(d_model, 128)) * 2));
    w.slot_pos = reinterpret_cast<int32_t*>(take(slots * sizeof(int32_t)));
  }
  if (total) *total = off;
  return w;
}

template <WeightFormat F, int kTokenTiles, bool kGateUp, bool kSplit>
Status launch_gemm_split(const moe::GemmArgs& a, dim3 grid, cudaStream_t stream) {
  auto kernel = moe::moe_gemm_sm90_kernel<F, kTokenTiles, kGateUp, kSplit>;
  static const cudaError_t attr =  // once per instantiation
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(kMaxGemmSmem));
  DSV4_CUDA_TRY(attr);
  const size_t smem = size_t(kTokenTiles) * 8 * size_t(a.k_slice + 8) * 2;
  kernel<<<grid, moe::kGemmThreads, smem, stream>>>(a);
  DSV4_CUDA_LAUNCH_CHECK();
  return {};
}
template <WeightFormat F, int kTokenTiles, bool kGateUp>
Status launch_gemm(const moe::GemmArgs& a, dim3 grid, cudaStream_t stream) {
  return grid.z > 1 ? launch_gemm_split<F, kTokenTiles, kGateUp, true>(a, grid, stream)
                    : launch_gemm_split<F, kTokenTiles, kGateUp, false>(a, grid, stream);
}

template <WeightFormat F, bool kGateUp>
Status launch_gemm_tiles(const moe::GemmArgs& a, dim3 grid, int token_tiles, cudaStream_t stream) {
  switch (token_tiles) {
    case 1:
      return launch_gemm<F, 1, kGateUp>(a, grid, stream);
    case 2:
      return launch_gemm<F, 2, kGateUp>(a, grid, stream);
    case 4:
      return launch_gemm<F, 4, kGateUp>(a, grid, stream);
    default:
      return launch_gemm<F, 8, kGateUp>(a, grid, stream);
  }
}

template <bool kGateUp>
Status launch_gemm_format(WeightFormat f, const moe::GemmArgs& a, dim3 grid, int token_tiles,
                          cudaStream_t stream) {
  switch (f) {
    case WeightFormat::kNVFP4:
      return launch_gemm_tiles<WeightFormat::kNVFP4, kGateUp>(a, grid, token_tiles, stream);
    case WeightFormat::kMXFP4:
      return launch_gemm_tiles<WeightFormat::kMXFP4, kGateUp>(a, grid, token_tiles, stream);
    default:
      return launch_gemm_tiles<WeightFormat::kFP8Block128, kGateUp>(a, grid, token_tiles, stream);
  }
}

bool is_quantized(WeightFormat f) {
  return f == WeightFormat::kNVFP4 || f == WeightFormat::kMXFP4 || f == WeightFormat::kFP8Block128;
}

// Before the addend is read (the last kernel of every mode): the wait for its producer, if any.
Status wait_for_addend(const MoeExpertsSm90Params& p, cudaStream_t stream) {
  if (p.addend && p.addend_ready) DSV4_CUDA_TRY(cudaStreamWaitEvent(stream, p.addend_ready, 0));
  return {};
}

Status launch_combine(const MoeExpertsSm90Params& p, const Workspace& w, cudaStream_t stream) {
  DSV4_RETURN_IF_ERROR(wait_for_addend(p, stream));
  const moe::CombineArgs ca{p.expert_ids, w.slot_out,       p.addend,      p.y,
                            int(p.top_k), int(p.n_experts), int(p.d_model)};
  const dim3 grid_c(unsigned(p.n_tokens), unsigned((p.d_model + moe::kCombineCols - 1) / moe::kCombineCols));
  moe::moe_combine_kernel<<<grid_c, moe::kCombineThreads, 0, stream>>>(ca);
  DSV4_CUDA_LAUNCH_CHECK();
  return {};
}

template <WeightFormat F>
void launch_dense_dequantize(const MoeExpertsSm90Params& p, const Workspace& w, cudaStream_t stream) {
  const int64_t ld_x = round_up(p.d_model, 128), ld_act = round_up(p.d_ff, 128);
  const int64_t rows_up = round_up(p.d_ff, 16), rows_down = round_up(p.d_model, 16);
  const int64_t chunk = packed_chunk_k(F);
  const int64_t warps = 2 * (rows_up / 16) * (ld_x / chunk) + (rows_down / 16) * (ld_act / chunk);
  moe::moe_dense_dequantize_kernel<F><<<unsigned((warps * 32 + 255) / 256), 256, 0, stream>>>(
      p.table, int(rows_up), int(ld_x), int(rows_down), int(ld_act), w.w_gate_up, w.w_down);
}

// Dense mode (moe_experts_sm90.h): every token is slot t of the one expert.
Status launch_dense(const MoeExpertsSm90Params& p, const Workspace& w, cudaStream_t stream) {
  const int64_t n = p.n_tokens, ld_x = round_up(p.d_model, 128), ld_act = round_up(p.d_ff, 128);
  const int64_t rows_up = round_up(p.d_ff, 16);
  sm90::launch_x_to_bf16(p.x, n, p.d_model, ld_x, w.x_perm, stream);
  DSV4_CUDA_LAUNCH_CHECK();
  switch (p.format) {
    case WeightFormat::kNVFP4:
      launch_dense_dequantize<WeightFormat::kNVFP4>(p, w, stream);
      break;
    case WeightFormat::kMXFP4:
      launch_dense_dequantize<WeightFormat::kMXFP4>(p, w, stream);
      break;
    default:
      launch_dense_dequantize<WeightFormat::kFP8Block128>(p, w, stream);
      break;
  }
  DSV4_CUDA_LAUNCH_CHECK();
  // Unscaled (alpha 1): the kernels after each GEMM apply out_scale as the wgmma epilogues do.
  DSV4_RETURN_IF_ERROR(
      cublas_linear(p.cublas, w.w_gate_up, w.x_perm, w.gate_up, 2 * rows_up, ld_x, n, 1, 1.0f, stream));
  const unsigned per_row = unsigned(4 * moe::kDenseThreads);
  moe::moe_dense_swiglu_kernel<<<dim3(unsigned(n), unsigned((ld_act + per_row - 1) / per_row)),
                                 moe::kDenseThreads, 0, stream>>>(
      p.table, w.gate_up, int(p.d_ff), int(rows_up), int(ld_act), p.swiglu_limit, w.act);
  DSV4_CUDA_LAUNCH_CHECK();
  DSV4_RETURN_IF_ERROR(cublas_linear(p.cublas, w.w_down, w.act, p.y, p.d_model, ld_act, n, 1, 1.0f, stream));
  DSV4_RETURN_IF_ERROR(wait_for_addend(p, stream));
  moe::moe_dense_weight_kernel<<<dim3(unsigned(n), unsigned((p.d_model + per_row - 1) / per_row)),
                                 moe::kDenseThreads, 0, stream>>>(p.table, p.expert_ids, p.weights, p.addend,
                                                                  int(p.d_model), p.y);
  DSV4_CUDA_LAUNCH_CHECK();
  return {};
}

}  // namespace

bool moe_experts_sm90_dense(int64_t n_tokens, int64_t d_model, int64_t d_ff, int64_t n_experts, int64_t top_k,
                            MoeGemmRegime regime) {
  return moe_gemm_config(n_tokens, d_model, d_ff, n_experts, top_k, regime).dense;
}

WeightView packed_expert_view(const PackedLinearWeight& p, const uint8_t* d_data, const uint8_t* d_scales) {
  return {p.format, p.rows, p.cols, d_data, d_scales, p.out_scale};
}

size_t moe_experts_sm90_workspace_bytes(int64_t n_tokens, int64_t d_model, int64_t d_ff, int64_t n_experts,
                                        int64_t top_k, MoeGemmRegime regime) {
  size_t total = 0;
  carve(nullptr, n_tokens, d_model, d_ff, moe_gemm_config(n_tokens, d_model, d_ff, n_experts, top_k, regime),
        top_k, &total);
  return total;
}

Status moe_experts_sm90_launch(const MoeExpertsSm90Params& p, cudaStream_t stream) {
  if (p.n_tokens == 0) return {};
  const GemmConfig c = moe_gemm_config(p.n_tokens, p.d_model, p.d_ff, p.n_experts, p.top_k, p.regime);
  const Workspace w = carve(p.workspace, p.n_tokens, p.d_model, p.d_ff, c, p.top_k, nullptr);
  const int64_t slots = p.n_tokens * p.top_k;
  if (c.dense) return launch_dense(p, w, stream);

  if (!c.per_slot) {
    const moe::PlanArgs pa{
        p.expert_ids,     p.counts,          int(slots),
        int(p.n_experts), c.tokens_per_item, c.prefill ? int(kMoePrefillSmallItemTokens) : 0,
        w.items,          w.n_items,         w.perm,
        w.slot_pos};
    moe::moe_plan_kernel<<<1, moe::kPlanThreads, 0, stream>>>(pa);
    DSV4_CUDA_LAUNCH_CHECK();
  }
  if (c.prefill) {
    const MoePrefillArgs pa{p.x,     p.table,        p.format,  w.items,    w.n_items,  c.max_items,
                            w.perm,  w.slot_pos,     p.weights, p.n_tokens, p.d_model,  p.d_ff,
                            p.top_k, p.swiglu_limit, w.x_perm,  w.act,      w.slot_out, w.tile_counter};
    DSV4_RETURN_IF_ERROR(moe_prefill_gemms_sm90(pa, stream));
    return launch_combine(p, w, stream);
  }

  const int ld_act = int(round_up(p.d_ff, 128));
  moe::GemmArgs g{};
  g.table = p.table;
  g.items = w.items;
  g.n_items = w.n_items;
  g.perm = w.perm;
  g.expert_ids = c.per_slot ? p.expert_ids : nullptr;
  g.weights = p.weights;
  g.y = p.y;
  g.combine_counters = w.combine_counters;
  g.top_k = int(p.top_k);
  g.n_experts = int(p.n_experts);
  g.n_slots = int(slots);
  g.ld_act = ld_act;
  g.swiglu_limit = p.swiglu_limit;
  g.partials = w.partials;
  g.split_counters = w.split_counters;
  const int chunk_k = p.format == WeightFormat::kFP8Block128 ? 32 : 64;

  // Gate+up: rows d_ff (one 16-row tile of W1 and W3 per warp), K d_model, out act.
  g.x = p.x;
  g.act_out = w.act;
  g.rows = int(p.d_ff);
  g.rows_pad = int(round_up(p.d_ff, 16));
  g.cols = int(p.d_model);
  g.cols_pad = int(round_up(p.d_model, 128));
  g.k_slice = k_slice_for(c.up.split_cols, c.tokens_per_item);
  g.split_chunks = c.up.split_cols / chunk_k;
  g.ld_part = ld_act;
  const dim3 grid_up(unsigned(up_row_blocks(p.d_ff)), unsigned(c.max_items), unsigned(c.up.splits));
  DSV4_RETURN_IF_ERROR(launch_gemm_format<true>(p.format, g, grid_up, c.token_tiles, stream));

  // Down: rows d_model (two tiles of W2 per warp), K d_ff, out one BF16 row per slot.
  g.x = nullptr;
  g.act_out = nullptr;
  g.act = w.act;
  g.slot_out = w.slot_out;
  g.rows = int(p.d_model);
  g.rows_pad = int(round_up(p.d_model, 16));
  g.cols = int(p.d_ff);
  g.cols_pad = ld_act;
  g.k_slice = k_slice_for(c.down.split_cols, c.tokens_per_item);
  g.split_chunks = c.down.split_cols / chunk_k;
  g.ld_part = g.rows_pad;
  const dim3 grid_down(unsigned(down_row_blocks(p.d_model)), unsigned(c.max_items), unsigned(c.down.splits));
  DSV4_RETURN_IF_ERROR(launch_gemm_format<false>(p.format, g, grid_down, c.token_tiles, stream));
  if (!c.per_slot) return launch_combine(p, w, stream);
  if (!p.addend) return {};
  DSV4_RETURN_IF_ERROR(wait_for_addend(p, stream));
  const int64_t n4 = p.n_tokens * p.d_model / 4;  // d_model % 4 == 0
  moe::moe_add_kernel<<<unsigned((n4 + 255) / 256), 256, 0, stream>>>(
      reinterpret_cast<float4*>(p.y), reinterpret_cast<const float4*>(p.addend), n4);
  DSV4_CUDA_LAUNCH_CHECK();
  return {};
}

Status moe_experts_sm90(const MoeExpertsSm90Params& p, cudaStream_t stream) {
  auto where = [&] {
    return fmt::format("moe_experts_sm90 n_tokens={} d_model={} d_ff={} n_experts={} top_k={} {}", p.n_tokens,
                       p.d_model, p.d_ff, p.n_experts, p.top_k, weight_format_name(p.format));
  };
  if (!is_quantized(p.format))
    return Status::errorf("{}: unsupported expert format; expected NVFP4, MXFP4 or FP8 block-128", where());
  if (!p.x || !p.expert_ids || !p.weights || !p.table || !p.y)
    return Status::error(where() + ": null input or output");
  if (p.n_experts <= 0 || p.n_experts > kMoeMaxExperts || p.top_k <= 0 || p.top_k > kMoeMaxTopK)
    return Status::errorf("{}: expected 1 <= n_experts <= {} and 1 <= top_k <= {}", where(), kMoeMaxExperts,
                          kMoeMaxTopK);
  if (p.n_tokens < 0 || p.d_model <= 0 || p.d_ff <= 0 || p.n_tokens * p.top_k > INT32_MAX / 2 ||
      p.d_model > INT32_MAX / 2 || p.d_ff > INT32_MAX / 2)
    return Status::error(where() + ": sizes out of range");
  if (p.d_model % 4 != 0 || reinterpret_cast<uintptr_t>(p.x) % 16 != 0 ||
      reinterpret_cast<uintptr_t>(p.y) % 16 != 0 || reinterpret_cast<uintptr_t>(p.addend) % 16 != 0)
    return Status::error(where() + ": expected d_model % 4 == 0 and 16-byte aligned x, y and addend");
  const GemmConfig c = moe_gemm_config(p.n_tokens, p.d_model, p.d_ff, p.n_experts, p.top_k, p.regime);
  if (c.dense) {
    if (p.n_experts != 1 || p.top_k != 1)
      return Status::error(where() + ": dense mode takes one expert with top_k 1");
    if (p.n_tokens > 0 && !p.cublas) return Status::error(where() + ": dense mode needs a cuBLAS handle");
  }
  size_t need = 0;
  carve(nullptr, p.n_tokens, p.d_model, p.d_ff, c, p.top_k, &need);
  if (p.n_tokens > 0 && (!p.workspace || p.workspace_bytes < need))
    return Status::errorf("{}: workspace of {} bytes; expected {}", where(),
                          p.workspace ? p.workspace_bytes : 0, need);
  return moe_experts_sm90_launch(p, stream);
}

// ---- the backend's runner: expert tables per expert array, one growing workspace.

struct MoeExpertsSm90Runner::State {
  struct Table {
    std::vector<MoeExpertSm90> host;
    DeviceBuffer<MoeExpertSm90> device;
  };
  std::unordered_map<const ExpertWeights*, Table> tables;
  DeviceBuffer<uint8_t> workspace;
  uint64_t memory_epoch = 0;
};

MoeExpertsSm90Runner::MoeExpertsSm90Runner() : state_(std::make_unique<State>()) {}
MoeExpertsSm90Runner::~MoeExpertsSm90Runner() = default;
uint64_t MoeExpertsSm90Runner::memory_epoch() const {
  return state_->memory_epoch;
}

namespace {
bool same_entry(const MoeExpertSm90& a, const MoeExpertSm90& b) {
  for (int m = 0; m < 3; ++m)
    if (a.data[m] != b.data[m] || a.scales[m] != b.scales[m] || a.out_scale[m] != b.out_scale[m])
      return false;
  return true;
}
}  // namespace

Status MoeExpertsSm90Runner::run(const MoeExpertsParams& p, cudaStream_t stream, cublasHandle_t cublas,
                                 cudaEvent_t addend_ready, MoeGemmRegime regime) {
  if (!p.experts || p.n_experts <= 0 || p.n_experts > kMoeMaxExperts)
    return Status::errorf("moe_experts (cuda): n_experts {} with experts {}; expected 1..{} experts",
                          p.n_experts, p.experts ? "set" : "null", kMoeMaxExperts);
  const WeightFormat format = p.experts[0].w1.format;
  std::vector<MoeExpertSm90> host(size_t(p.n_experts));
  for (int64_t e = 0; e < p.n_experts; ++e) {
    const ExpertWeights& w = p.experts[e];
    const WeightView* m[3] = {&w.w1, &w.w3, &w.w2};
    for (int i = 0; i < 3; ++i) {
      const bool down = i == 2;
      const int64_t rows = down ? p.d_model : p.d_ff, cols = down ? p.d_ff : p.d_model;
      if (m[i]->format != format || m[i]->rows != rows || m[i]->cols != cols || !m[i]->data || !m[i]->scales)
        return Status::errorf(
            "moe_experts (cuda): expert {} matrix {} is {} [{}, {}]; expected packed {} [{}, {}] with data "
            "and scales",
            e,
            i == 0   ? "w1"
            : i == 1 ? "w3"
                     : "w2",
            weight_format_name(m[i]->format), m[i]->rows, m[i]->cols, weight_format_name(format), rows, cols);
      if (reinterpret_cast<uintptr_t>(m[i]->data) % 16 != 0 ||
          reinterpret_cast<uintptr_t>(m[i]->scales) % 16 != 0)
        return Status::errorf(
            "moe_experts (cuda): expert {} matrix {}: packed data or scales not 16-byte aligned", e, i);
      host[size_t(e)].data[i] = static_cast<const uint8_t*>(m[i]->data);
      host[size_t(e)].scales[i] = m[i]->scales;
      host[size_t(e)].out_scale[i] = m[i]->global_scale;
    }
  }
  State::Table& t = state_->tables[p.experts];
  bool same = t.host.size() == host.size();
  for (size_t e = 0; same && e < host.size(); ++e) same = same_entry(t.host[e], host[e]);
  if (!same) {
    ++state_->memory_epoch;
    DSV4_ASSIGN_OR_RETURN(t.device, DeviceBuffer<MoeExpertSm90>::create(host.size()));
    DSV4_CUDA_TRY(cudaMemcpyAsync(t.device.get(), host.data(), host.size() * sizeof(MoeExpertSm90),
                                  cudaMemcpyHostToDevice, stream));
    DSV4_CUDA_TRY(
        cudaStreamSynchronize(stream));  // `host` is about to move; the views changed, not a hot path
    t.host = std::move(host);
  }
  const size_t need =
      moe_experts_sm90_workspace_bytes(p.n_tokens, p.d_model, p.d_ff, p.n_experts, p.top_k, regime);
  DSV4_ASSIGN_OR_RETURN(const bool grew, grow(state_->workspace, need, state_->memory_epoch));
  if (grew)
    DSV4_CUDA_TRY(cudaMemsetAsync(state_->workspace.get(), 0, need, stream));  // its counters start at 0
  MoeExpertsSm90Params q;
  q.x = p.x;
  q.expert_ids = p.expert_ids;
  q.weights = p.weights;
  q.counts = p.counts;
  q.table = t.device.get();
  q.format = format;
  q.y = p.y;
  q.addend = p.addend;
  q.addend_ready = addend_ready;
  q.n_tokens = p.n_tokens;
  q.d_model = p.d_model;
  q.d_ff = p.d_ff;
  q.n_experts = p.n_experts;
  q.top_k = p.top_k;
  q.swiglu_limit = p.swiglu_limit;
  q.regime = regime;
  q.cublas = cublas;
  q.workspace = state_->workspace.get();
  q.workspace_bytes = state_->workspace.bytes();
  return moe_experts_sm90(q, stream);
}

}  // namespace dsv4::cuda
