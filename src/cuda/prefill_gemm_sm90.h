// The prefill regime of linear and moe_experts on Hopper (sm_90a): a wgmma + TMA GEMM over packed
// NVFP4/MXFP4/FP8 weights (kernels and design in prefill_gemm_sm90.cuh). The decode regime is
// linear_sm90.cuh / moe_experts_sm90.cuh; the heuristics that choose between them are
// linear_sm90_path (linear_sm90.cu) and moe_gemm_config (moe_experts_sm90.cu). Raw launchers: the
// callers have checked shapes, pointers and the workspace. No host synchronisation.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "core/status.h"
#include "cuda/linear_sm90.h"
#include "cuda/moe_experts_sm90.h"

namespace dsv4::cuda {

// The CTA tile (weight rows × tokens), for cost models.
int64_t prefill_rows_per_cta();
int64_t prefill_tokens_per_cta();

// y [n_tokens, w.rows] fp32 = x_bf16 [n_tokens, w.cols_pad] · W'ᵀ · w.out_scale. x_bf16's columns
// past w.cols are zero; x_bf16, w.data and w.scales 16-byte aligned.
// tile_counter: two ints, zero between calls (the kernel leaves them zero), one call at a time.
Status prefill_linear_sm90(const PackedWeightView& w, const __nv_bfloat16* x_bf16, int64_t n_tokens, float* y,
                           int* tile_counter, cudaStream_t stream);

// The grouped GEMMs of moe_experts for many tokens per expert, after the plan kernel:
// gather x → x_perm (BF16, by position), gate+up with the clamped SwiGLU → act, down with the
// routing weight → slot_out (one BF16 row per slot, ops/moe_experts.h's rounding point). Items hold ≤
// kMoePrefillTokensPerItem tokens.
constexpr int kMoePrefillTokensPerItem = 128;
// Items of ≤ this many tokens take the GEMMs' smaller wgmma tile (N = 96).
constexpr int kMoePrefillSmallItemTokens = 96;
struct MoePrefillArgs {
  const float* x;              // [n_tokens, d_model]
  const MoeExpertSm90* table;  // [n_experts], device; every data/scales pointer 16-byte aligned
  WeightFormat format;
  const int4* items;  // [max_items] from the plan (expert, first position, n ≤ 128, 0)
  const int* n_items;
  int64_t max_items;
  const int32_t* perm;      // [n_slots] position → slot (token · top_k + k)
  const int32_t* slot_pos;  // [n_slots] slot → position, −1 for a skipped slot
  const float* weights;     // [n_slots] routing weights
  int64_t n_tokens, d_model, d_ff, top_k;
  float swiglu_limit;
  __nv_bfloat16* x_perm;    // [n_slots, round_up(d_model, 128)]
  __nv_bfloat16* act;       // [n_slots, round_up(d_ff, 128)]
  __nv_bfloat16* slot_out;  // [n_slots, d_model]; d_model even
  int* tile_counter;        // two ints, zero between calls (the GEMMs leave them zero)
};
Status moe_prefill_gemms_sm90(const MoePrefillArgs& a, cudaStream_t stream);

}  // namespace dsv4::cuda
