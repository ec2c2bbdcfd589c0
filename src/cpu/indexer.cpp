// CPU reference of `indexer`: fp32 scores as HF computes them, causal admissibility, a stable
// top-k (ties to the lower entry index) and −1 padding.
#include "ops/indexer.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/parallel.h"

namespace dsv4 {

Status check_indexer(const IndexerParams& p) {
  if (!p.q || !p.head_weights || !p.positions || !p.selected)
    return Status::error("indexer: null input or output");
  if (p.n_entries > 0 && !p.keys) return Status::error("indexer: null keys");
  if (p.ratio <= 0 || p.topk <= 0 || p.n_heads <= 0 || p.head_dim <= 0)
    return Status::errorf("indexer: ratio {}, topk {}, n_heads {}, head_dim {}; expected positive sizes",
                          p.ratio, p.topk, p.n_heads, p.head_dim);
  return {};
}

namespace cpu {

void indexer(const IndexerParams& p) {
  const float softmax_scale = 1.0f / std::sqrt(float(p.head_dim));
  const float weights_scale = 1.0f / std::sqrt(float(p.n_heads));
  parallel_for(p.n_tokens, [&](int64_t t0, int64_t t1) {
    std::vector<float> score;
    std::vector<int32_t> order;
    for (int64_t t = t0; t < t1; ++t) {
      // Entries s < admissible are complete; the others score −inf and are never picked.
      const int64_t admissible = std::min((p.positions[t] + 1) / p.ratio, p.n_entries);
      const float* keys = p.keys + (p.slots ? p.slots[t] * p.n_entries * p.head_dim : 0);
      score.resize(size_t(admissible));
      order.resize(size_t(admissible));
      for (int64_t s = 0; s < admissible; ++s) {
        float acc = 0.0f;
        for (int64_t h = 0; h < p.n_heads; ++h) {
          const float* q = p.q + (t * p.n_heads + h) * p.head_dim;
          const float* key = keys + s * p.head_dim;
          float dot = 0.0f;
          for (int64_t i = 0; i < p.head_dim; ++i) dot += q[i] * key[i];
          acc += std::max(dot, 0.0f) * softmax_scale * (p.head_weights[t * p.n_heads + h] * weights_scale);
        }
        score[size_t(s)] = acc;
      }
      std::iota(order.begin(), order.end(), 0);
      // Stable sort by descending score: equal scores keep ascending entry order.
      std::stable_sort(order.begin(), order.end(),
                       [&](int32_t a, int32_t b) { return score[size_t(a)] > score[size_t(b)]; });
      int32_t* out = p.selected + t * p.topk;
      for (int64_t j = 0; j < p.topk; ++j) out[j] = j < admissible ? order[size_t(j)] : -1;
    }
  });
}

}  // namespace cpu
}  // namespace dsv4
