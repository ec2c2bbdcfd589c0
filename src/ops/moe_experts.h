// moe_experts: y[t] = Σ_k weight[t, k] · expert_{id[t, k]}(x[t]) with the clamped SwiGLU
// (spec §4.4): g = min(x·W1ᵀ, L), u = clamp(x·W3ᵀ, −L, L), expert(x) = (silu(g) · u)·W2ᵀ.
// As HF: the routing weight multiplies the W2 output; experts are summed in ascending id order.
// The shared expert is this op with one expert, id 0 and weight 1.
// GPU contract (cuda::moe_experts_sm90): x is rounded to BF16 (nearest even) before W1/W3, the
// SwiGLU output (computed in fp32) to BF16 before W2, and each slot's weighted output (the W2
// output times the routing weight, in fp32) to BF16 before the slots are summed in ascending
// expert id in fp32, as the grouped kernels keep slot outputs in BF16 between the down GEMM and
// the combine (HF in BF16 rounds there too); weights exact, fp32 accumulation.
#pragma once

#include <cstdint>

#include "core/quant.h"
#include "core/status.h"
#include "ops/linear.h"

namespace dsv4 {

struct ExpertWeights {
  WeightView w1;  // [d_ff, d_model] gate
  WeightView w3;  // [d_ff, d_model] up
  WeightView w2;  // [d_model, d_ff] down
};

struct MoeExpertsParams {
  const float* x = nullptr;                // [n_tokens, d_model]
  const int32_t* expert_ids = nullptr;     // [n_tokens, top_k]
  const float* weights = nullptr;          // [n_tokens, top_k]
  const ExpertWeights* experts = nullptr;  // [n_experts]
  float* y = nullptr;                      // [n_tokens, d_model], overwritten
  int64_t n_tokens = 0;
  int64_t d_model = 0;
  int64_t d_ff = 0;
  int64_t n_experts = 0;
  int64_t top_k = 0;
  float swiglu_limit = 0.0f;
  // [n_experts] slots routed to each expert (moe_router's counts), or null. Given, they must be the
  // histogram of expert_ids (the CPU checks it; the GPU plans from them instead of counting).
  const int32_t* counts = nullptr;
  // [n_tokens, d_model] or null: added to y after the slots' sum, in fp32 (y[t] = Σ_k … + addend[t]);
  // Model::moe passes the shared expert's output. It may be an output of the backend's ended and
  // not yet joined branch (Backend::end_branch): the op waits for the branch before reading it.
  const float* addend = nullptr;
};

Status check_moe_experts(const MoeExpertsParams& p);

namespace cpu {
// kBF16: x, the SwiGLU output and each weighted slot output are rounded to BF16 where the GPU
// rounds them.
void moe_experts(const MoeExpertsParams& p, ActivationPrecision precision = ActivationPrecision::kF32);
}  // namespace cpu

}  // namespace dsv4
