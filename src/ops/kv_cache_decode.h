// kv_cache_decode: a decode step's cache work for attention, for a batch of sequences with one
// token each. Each layer's cache is one pool of rows [n_slots, rows_per_slot, head_dim]; a slot's
// rows are its sliding-window ring (rows 0…window−1, row = position mod window) followed by its
// compressed entries (rows window…). For token t of slot s at position p it
//   stores kv[t] at ring row p mod window, then
//   lists in kv_idx[t, :] the pool rows its query attends, as global row numbers
//   s·rows_per_slot + r: its window (positions max(0, p−window+1)…p, oldest first), then
//   HCA: the admissible entries e < min((p + 1) div ratio, n_entries) in order;
//   CSA: the indexer's selection (selected[t, j] ≥ 0), in selection order; −1 pads the rest.
// The order matches the prefill path's lists, so `attention` sums the same rows in the same order.
// GPU contract (cuda::kv_cache_decode): copies and integer lists, identical to the reference.
#pragma once

#include <cstdint>

#include "core/status.h"

namespace dsv4 {

struct KvCacheDecodeParams {
  const float* kv = nullptr;           // [n_tokens, head_dim] this step's K=V rows (normed, RoPE'd)
  const int32_t* slots = nullptr;      // [n_tokens] distinct sequence slots
  const int64_t* positions = nullptr;  // [n_tokens]
  const int32_t* selected = nullptr;   // [n_tokens, n_entries_listed] CSA indexer picks, −1 = none
  float* cache = nullptr;              // [n_slots, rows_per_slot, head_dim]
  int32_t* kv_idx = nullptr;           // [n_tokens, window + n_entries_listed]
  int64_t n_tokens = 0;
  int64_t n_slots = 0;
  int64_t rows_per_slot = 0;
  int64_t head_dim = 0;
  int64_t window = 0;
  int64_t ratio = 0;             // HCA: source tokens per entry (0 for sliding and CSA layers)
  int64_t n_entries_listed = 0;  // HCA: entry capacity per slot; CSA: index_topk; sliding: 0
};

Status check_kv_cache_decode(const KvCacheDecodeParams& p);

namespace cpu {
void kv_cache_decode(const KvCacheDecodeParams& p);
}  // namespace cpu

}  // namespace dsv4
