// CPU reference of `kv_cache_decode`: the ring store and the per-query row lists.
#include "ops/kv_cache_decode.h"

#include <algorithm>
#include <cstdint>

namespace dsv4 {

Status check_kv_cache_decode(const KvCacheDecodeParams& p) {
  if (!p.kv || !p.slots || !p.positions || !p.cache || !p.kv_idx)
    return Status::error("kv_cache_decode: null input, cache or output");
  if (p.n_tokens < 0 || p.n_slots <= 0 || p.head_dim <= 0 || p.window <= 0 || p.n_entries_listed < 0)
    return Status::errorf(
        "kv_cache_decode: n_tokens {}, n_slots {}, head_dim {}, window {}, n_entries_listed {}; expected "
        "positive sizes",
        p.n_tokens, p.n_slots, p.head_dim, p.window, p.n_entries_listed);
  if (p.ratio > 0 && p.selected)
    return Status::error("kv_cache_decode: give either ratio (HCA) or selected (CSA), not both");
  // CSA lists entries the indexer picked among those the slot holds; HCA lists up to its capacity.
  const int64_t listed_rows = p.ratio > 0 ? p.n_entries_listed : 0;
  if (p.rows_per_slot < p.window + listed_rows)
    return Status::errorf("kv_cache_decode: {} rows per slot; expected at least window {} + {} entries",
                          p.rows_per_slot, p.window, listed_rows);
  if (p.n_slots * p.rows_per_slot > int64_t(INT32_MAX))
    return Status::errorf("kv_cache_decode: {} slots × {} rows; expected at most 2^31 − 1 rows in the pool",
                          p.n_slots, p.rows_per_slot);
  return {};
}

namespace cpu {

void kv_cache_decode(const KvCacheDecodeParams& p) {
  const int64_t W = p.window, n_sel = W + p.n_entries_listed;
  for (int64_t t = 0; t < p.n_tokens; ++t) {
    const int64_t s = p.slots[t], pos = p.positions[t], base = s * p.rows_per_slot;
    std::copy_n(p.kv + t * p.head_dim, p.head_dim, p.cache + (base + pos % W) * p.head_dim);
    int32_t* idx = p.kv_idx + t * n_sel;
    std::fill_n(idx, n_sel, -1);
    const int64_t first = std::max<int64_t>(0, pos - (W - 1));
    for (int64_t k = first; k <= pos; ++k) idx[k - first] = int32_t(base + k % W);
    if (p.selected) {
      for (int64_t j = 0; j < p.n_entries_listed; ++j) {
        const int32_t e = p.selected[t * p.n_entries_listed + j];
        if (e >= 0) idx[W + j] = int32_t(base + W + e);
      }
    } else if (p.ratio > 0) {
      const int64_t n = std::min((pos + 1) / p.ratio, p.n_entries_listed);
      for (int64_t e = 0; e < n; ++e) idx[W + e] = int32_t(base + W + e);
    }
  }
}

}  // namespace cpu
}  // namespace dsv4
