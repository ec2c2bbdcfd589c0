// moe_router: expert choice and weights from router logits (spec §4.4, HF DeepseekV4{TopK,Hash}Router).
//   σ = sqrt(softplus(logit)), softplus as PyTorch (identity above 20)
//   dense: ids = top-k(σ + bias) (ties to the lower expert id); hash: ids = tid2eid[token]
//   w_k = σ[id_k] / (Σ σ[ids] + 1e-20) · routed_scaling_factor   (unbiased σ in both modes)
// GPU contract (cuda::moe_router): fp32 from fp32 logits (the CUDA backend computes the gate with an
// fp32 SGEMM), the same ids (ties to the lower id); weights differ by expf/log1pf ulps.
#pragma once

#include <cstdint>

#include "core/status.h"

namespace dsv4 {

struct MoeRouterParams {
  const float* logits = nullptr;       // [n_tokens, n_experts] x·W_gateᵀ
  const float* bias = nullptr;         // [n_experts] selection bias (dense mode); null in hash mode
  const int64_t* tid2eid = nullptr;    // [vocab_size, top_k] (hash mode); null in dense mode
  const int32_t* token_ids = nullptr;  // [n_tokens] (hash mode)
  int32_t* expert_ids = nullptr;       // [n_tokens, top_k]
  float* weights = nullptr;            // [n_tokens, top_k]
  int64_t n_tokens = 0;
  int64_t n_experts = 0;
  int64_t top_k = 0;
  int64_t vocab_size = 0;
  float routed_scaling_factor = 1.0f;
};

Status check_moe_router(const MoeRouterParams& p);

namespace cpu {
void moe_router(const MoeRouterParams& p);
}  // namespace cpu

}  // namespace dsv4
