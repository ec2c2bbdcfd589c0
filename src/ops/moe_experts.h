// moe_experts: y[t] = Σ_k weight[t, k] · expert_{id[t, k]}(x[t]) with the clamped SwiGLU
// (spec §4.4): g = min(x·W1ᵀ, L), u = clamp(x·W3ᵀ, −L, L), expert(x) = (silu(g) · u)·W2ᵀ.
// As HF: the routing weight multiplies the W2 output; experts are summed in ascending id order.
// The shared expert is this op with one expert, id 0 and weight 1.
// GPU contract (cuda::moe_experts_sm90): x is rounded to BF16 (nearest even) before W1/W3 and the
// SwiGLU output (computed in fp32) is rounded to BF16 before W2; weights exact, fp32
// accumulation, the routing weight applied in fp32, slots summed in ascending expert id in fp32.
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
};

Status check_moe_experts(const MoeExpertsParams& p);

namespace cpu {
// kBF16: x and the SwiGLU output are rounded to BF16 where the GPU rounds them.
void moe_experts(const MoeExpertsParams& p, ActivationPrecision precision = ActivationPrecision::kF32);
}  // namespace cpu

}  // namespace dsv4
