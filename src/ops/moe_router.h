// moe_router: the fused router (spec §4.4, HF DeepseekV4{TopK,Hash}Router), from the MoE input to
// the expert choice, its weights and the per-expert slot counts the grouped GEMMs need.
//   ℓ = x·W_gateᵀ in fp32 (W_gate F32 or BF16, both exact in fp32), summed in the router order below
//   σ = sqrt(softplus(ℓ)), softplus as PyTorch (identity above 20), computed by router_sigma below
//   dense: ids = top-k(σ + bias) (ties to the lower expert id); hash: ids = tid2eid[token]
//   w_k = σ[id_k] / (Σ σ[ids] + 1e-20) · routed_scaling_factor   (unbiased σ in both modes)
//   counts[e] = number of (token, slot) pairs with id e
// GPU contract (cuda::moe_router): the same bits — logits, σ, ids, weights and counts (below) —
// except for many tokens with a BF16 gate, whose logits run on the tensor cores
// (cuda/moe_router.h, kMoeRouterTensorCoreMinTokens: fp32-level error, ids equal up to near-ties).
// Router order: ℓ[t, e] is 32 partial sums, partial p taking the products x[t, c]·W[e, c] of the
// columns c with ⌊c/8⌋ mod 32 = p in ascending c, each product and each sum rounded to fp32 (no
// FMA); the partials are then combined pairwise as a warp's xor butterfly does (distances 16, 8,
// 4, 2, 1). Every backend sums in this order, so logits, and with them the expert choice, are
// bit-identical across backends (a near-tie decided by rounding would otherwise flip an expert).
#pragma once

#include <cmath>
#include <cstdint>

#include "core/quant.h"
#include "core/status.h"

#ifdef __CUDACC__
#define DSV4_HOST_DEVICE __host__ __device__
#else
#define DSV4_HOST_DEVICE
#endif

namespace dsv4 {

struct MoeRouterParams {
  const float* x = nullptr;            // [n_tokens, d_model]
  WeightView gate;                     // [n_experts, d_model] F32 or BF16
  const float* bias = nullptr;         // [n_experts] selection bias (dense mode); null in hash mode
  const int64_t* tid2eid = nullptr;    // [vocab_size, top_k] (hash mode); null in dense mode
  const int32_t* token_ids = nullptr;  // [n_tokens] (hash mode)
  int32_t* expert_ids = nullptr;       // [n_tokens, top_k]
  float* weights = nullptr;            // [n_tokens, top_k]
  int32_t* counts = nullptr;           // [n_experts]
  int64_t n_tokens = 0;
  int64_t d_model = 0;
  int64_t n_experts = 0;
  int64_t top_k = 0;
  int64_t vocab_size = 0;
  float routed_scaling_factor = 1.0f;
};

Status check_moe_router(const MoeRouterParams& p);

// The router order's shape: 32 partials (a warp's lanes), 8 consecutive columns per partial and step
// (one 16-byte BF16 load per lane).
constexpr int kRouterPartials = 32;
constexpr int kRouterGroup = 8;

// σ = sqrt(softplus(ℓ)) from IEEE +, −, ×, ÷, sqrt and exact scalings alone, so that the host and
// the device produce the same bits (libm's and CUDA's expf/log1pf differ in the last ulp, which
// could flip a near-tie in the top-k). Needs no FMA contraction: the CPU's x86-64 baseline has
// none and the CUDA router is compiled with --fmad=false. Within 2 ulp of the exact value
// (CpuOps.RouterSigmaIsAccurate).
//   softplus(ℓ) = max(ℓ, 0) + log1p(e), e = exp(−|ℓ|) ∈ (0, 1]; ℓ > 20 (or NaN): softplus = ℓ
//   exp: e = 2^k · P7(r), k = rint(y/ln2), r = y − k·ln2 (Cody-Waite split), |r| ≤ ln2/2
//   log1p: u = 1 + e, log(u) = j·ln2 + 2·atanh(f/(2+f)) with u = 2^j(1+f), times e/(u−1) (Goldberg)
DSV4_HOST_DEVICE inline float router_sigma(float logit) {
#ifdef __CUDA_ARCH__
  const auto rint_ = [](float v) { return rintf(v); };
  const auto ldexp_ = [](float v, int e) { return ldexpf(v, e); };
  const auto sqrt_ = [](float v) { return sqrtf(v); };
#else
  const auto rint_ = [](float v) { return std::nearbyint(v); };
  const auto ldexp_ = [](float v, int e) { return std::ldexp(v, e); };
  const auto sqrt_ = [](float v) { return std::sqrt(v); };
#endif
  if (!(logit <= 20.0f)) return sqrt_(logit);  // PyTorch's threshold (and NaN stays NaN)
  const float y = logit > 0.0f ? -logit : logit;
  float e = 0.0f;  // exp(y), 0 below the smallest subnormal
  if (y >= -104.0f) {
    const float k = rint_(y * 1.44269504f);
    const float r = (y - k * 0.693145751953125f) - k * 1.42860677e-06f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    const int ki = int(k);  // −150..0; two steps keep the subnormal range to one rounding
    e = ki >= -126 ? ldexp_(p, ki) : ldexp_(ldexp_(p, ki + 64), -64);
  }
  float log1p_e = e;  // e < 2^-24: log1p(e) = e in fp32
  const float u = 1.0f + e;
  if (u != 1.0f) {
    const bool halve = u > 1.41421356f;
    const float f = (halve ? u * 0.5f : u) - 1.0f;  // exact (Sterbenz)
    const float s = f / (2.0f + f), s2 = s * s;
    float q = 2.0f / 11.0f;
    q = q * s2 + 2.0f / 9.0f;
    q = q * s2 + 2.0f / 7.0f;
    q = q * s2 + 2.0f / 5.0f;
    q = q * s2 + 2.0f / 3.0f;
    q = q * s2 + 2.0f;
    const float log_u = s * q + (halve ? 0.693147181f : 0.0f);
    log1p_e = log_u * (e / (u - 1.0f));
  }
  return sqrt_((logit > 0.0f ? logit : 0.0f) + log1p_e);
}

namespace cpu {
void moe_router(const MoeRouterParams& p);
}  // namespace cpu

}  // namespace dsv4
