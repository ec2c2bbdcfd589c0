// indexer: the lightning indexer's selection for CSA layers (spec §4.2.5, HF DeepseekV4Indexer):
//   score[t, s] = Σ_h (w[t, h] · n_heads^-½) · ReLU(q[t, h] · key[s]) · head_dim^-½
// entry s is admissible for the query at position p iff s < (p + 1) div ratio; the
// min(topk, n_entries) best admissible entries are kept, ties broken by the LOWER entry index,
// picks that are not admissible and unused slots are −1.
// GPU contract (cuda::indexer): fp32 scores bit-identical to the reference (serial sums in its
// order, no contraction), hence identical ids.
#pragma once

#include <cstdint>

#include "core/status.h"

namespace dsv4 {

struct IndexerParams {
  const float* q = nullptr;             // [n_tokens, n_heads, head_dim] RoPE applied
  const float* head_weights = nullptr;  // [n_tokens, n_heads] x·W_wᵀ (unscaled)
  const float* keys = nullptr;          // [n_entries, head_dim] indexer keys (normed, RoPE applied)
  const int64_t* positions = nullptr;   // [n_tokens]
  int32_t* selected = nullptr;          // [n_tokens, topk] entry ids, −1 = none
  int64_t n_tokens = 0;
  int64_t n_heads = 0;
  int64_t head_dim = 0;
  int64_t n_entries = 0;
  int64_t ratio = 0;
  int64_t topk = 0;
  // Decode over a batch of sequences: token t reads the key block keys + slots[t]·n_entries·head_dim
  // (keys is then [n_slots, n_entries, head_dim], n_entries a capacity). Null: one block for all.
  const int32_t* slots = nullptr;
};

Status check_indexer(const IndexerParams& p);

namespace cpu {
void indexer(const IndexerParams& p);
}  // namespace cpu

}  // namespace dsv4
