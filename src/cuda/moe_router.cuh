// moe_router kernel: w = sqrt(softplus(logit)); ids = top-k(w + bias) (ties to the lower id) or
// tid2eid[token]; weights = w[ids] / (Σ w[ids] + 1e-20) · routed_scaling_factor.
// One warp per token: the E scores live in shared memory ([warps][2][E] fp32); top-k is k rounds
// of a warp arg-max (lanes scan ascending ids, shuffles break ties to the lower id), so ids come
// out in the CPU reference's order. The weight sum runs in slot order like the reference, with
// IEEE division, so weights differ from the CPU only by the ulps of expf/log1pf.
#pragma once

#include <cstdint>

namespace dsv4::cuda {

constexpr int kMoeRouterWarps = 4;

struct MoeRouterArgs {
  const float* logits;       // [n_tokens, n_experts]
  const float* bias;         // [n_experts] or null (hash mode)
  const int64_t* tid2eid;    // [vocab_size, top_k] or null (dense mode)
  const int32_t* token_ids;  // [n_tokens] (hash mode)
  int32_t* expert_ids;       // [n_tokens, top_k]
  float* weights;            // [n_tokens, top_k]
  int n_tokens, n_experts, top_k;
  int64_t vocab_size;
  float routed_scaling_factor;
};

__global__ void __launch_bounds__(kMoeRouterWarps * 32) moe_router_kernel(MoeRouterArgs a) {
  extern __shared__ float router_smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int t = blockIdx.x * kMoeRouterWarps + warp;
  if (t >= a.n_tokens) return;  // no block-wide barrier below
  const int E = a.n_experts, k = a.top_k;
  float* score = router_smem + size_t(warp) * 2 * E;  // [E] sqrt(softplus)
  float* sel = score + E;                             // [E] selection score, -inf once taken
  for (int e = lane; e < E; e += 32) {
    const float l = a.logits[size_t(t) * E + e];
    const float s = sqrtf(l > 20.0f ? l : log1pf(expf(l)));  // PyTorch softplus threshold 20
    score[e] = s;
    if (a.bias) sel[e] = s + a.bias[e];
  }
  __syncwarp();
  int my_id = -1;  // lane j < k holds slot j
  if (a.tid2eid) {
    const int64_t tok = a.token_ids[t];
    if (lane < k && tok >= 0 && tok < a.vocab_size) {
      const int64_t e = a.tid2eid[tok * k + lane];
      if (e >= 0 && e < E) my_id = int(e);
    }
  } else {
    for (int j = 0; j < k; ++j) {
      float best = -INFINITY;
      int bi = 0x7FFFFFFF;
      for (int e = lane; e < E; e += 32) {
        const float v = sel[e];
        if (v > best) best = v, bi = e;  // ascending e, strict: the lower id wins a tie
      }
#pragma unroll
      for (int o = 16; o > 0; o /= 2) {
        const float ov = __shfl_xor_sync(0xFFFFFFFFu, best, o);
        const int oi = __shfl_xor_sync(0xFFFFFFFFu, bi, o);
        if (ov > best || (ov == best && oi < bi)) best = ov, bi = oi;
      }
      if (bi >= E) bi = -1;  // every remaining score NaN or -inf
      if (lane == 0 && bi >= 0) sel[bi] = -INFINITY;
      __syncwarp();
      if (lane == j) my_id = bi;
    }
  }
  const float s = my_id >= 0 ? score[my_id] : 0.0f;
  float sum = 0.0f;  // in slot order, as the reference
  for (int j = 0; j < k; ++j) sum += __shfl_sync(0xFFFFFFFFu, s, j);
  if (lane < k) {
    a.expert_ids[size_t(t) * k + lane] = my_id;
    a.weights[size_t(t) * k + lane] = my_id >= 0 ? s / (sum + 1e-20f) * a.routed_scaling_factor : 0.0f;
  }
}

}  // namespace dsv4::cuda
