// attention: sparse MQA with per-head sinks (spec §4.2.7). Keys = values (one shared head).
// For head h and query t over the rows kv_idx[t, :] (−1 = unused):
//   s_j = (q[t,h] · kv[j]) · scale;  M = max(max_j s_j, sink_h)
//   out[t,h] = Σ_j exp(s_j − M) · kv[j] / (Σ_j exp(s_j − M) + exp(sink_h − M))
// The model gathers window keys and compressed entries into one kv pool and lists, per query,
// the rows it may see (sliding window ∪ HCA entries / indexer-selected CSA entries).
// GPU contract (cuda::attention): q and kv rounded to BF16 (nearest even) for the tensor cores, q·k
// summed in fp32; the softmax in fp32 online over tiles of rows, its weights e^{s_j − m} (m the
// running max) rounded to BF16 for P·V and summed as rounded into the denominator; P·V in fp32.
// The CPU reference with ActivationPrecision::kBF16 rounds q and kv alone (docs/numerics.md).
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
// kBF16: q and kv are rounded to BF16 first, as the GPU does.
void attention(const AttentionParams& p, ActivationPrecision precision = ActivationPrecision::kF32);
}  // namespace cpu

}  // namespace dsv4
