// attention: sparse MQA with per-head sinks (spec §4.2.7). Keys = values (one shared head).
// For head h and query t over the rows kv_idx[t, :] (−1 = unused):
//   s_j = (q[t,h] · kv[j]) · scale;  M = max(max_j s_j, sink_h)
//   out[t,h] = Σ_j exp(s_j − M) · kv[j] / (Σ_j exp(s_j − M) + exp(sink_h − M))
// The model gathers window keys and compressed entries into one kv pool and lists, per query,
// the rows it may see (sliding window ∪ HCA entries / indexer-selected CSA entries).
// GPU contract (cuda::attention): q and kv rounded to BF16 (nearest even); x_j = (q·kv[j]) ·
// fp32(scale·log2 e) summed in fp32; weights w_j = bf16(2^{x_j − M}) for an integer M ≥ max x_j (BF16
// rounds 2^{x_j} the same whatever the integer M, so w_j does not depend on how the kernel tiles or
// splits the rows); out = Σ w_j kv[j] / (Σ w_j + 2^{sink·log2 e − M}) in fp32.
// The CPU reference with ActivationPrecision::kBF16 computes exactly that (docs/numerics.md).
#pragma once

#include <cstdint>

#include "core/status.h"
#include "ops/linear.h"

namespace dsv4 {

struct AttentionParams {
  const float* q = nullptr;         // [n_tokens, n_heads, head_dim]
  const float* kv = nullptr;        // [n_kv, head_dim]
  const int32_t* kv_idx = nullptr;  // [n_tokens, n_sel] rows of kv, −1 = none
  const float* sinks = nullptr;     // [n_heads]
  float* out = nullptr;             // [n_tokens, n_heads, head_dim]
  int64_t n_tokens = 0;
  int64_t n_heads = 0;
  int64_t head_dim = 0;
  int64_t n_kv = 0;
  int64_t n_sel = 0;
  float scale = 0.0f;  // head_dim^-½
};

Status check_attention(const AttentionParams& p);

namespace cpu {
// kBF16: the GPU contract above (q, kv and the weights rounded to BF16).
void attention(const AttentionParams& p, ActivationPrecision precision = ActivationPrecision::kF32);
}  // namespace cpu

}  // namespace dsv4
