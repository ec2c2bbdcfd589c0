// CPU reference of `moe_router`: gate logits in the router order (ops/moe_router.h), then the dense
// router_sigma + bias selection or the hash table, the renormalised weights and the counts.
#include "ops/moe_router.h"

#include <algorithm>
#include <numeric>
#include <vector>

#include "core/parallel.h"

namespace dsv4 {
namespace {

// Σ x[c]·w[c] in the router order: 32 partials over groups of 8 columns, then the xor butterfly.
// Products and sums round separately (the x86-64 baseline has no FMA to contract them into).
float router_dot(const float* x, const float* w, int64_t n) {
  float partial[kRouterPartials] = {};
  for (int64_t c = 0; c < n; ++c) {
    const int p = int((c / kRouterGroup) % kRouterPartials);
    const float product = x[c] * w[c];
    partial[p] = partial[p] + product;
  }
  for (int d = kRouterPartials / 2; d >= 1; d /= 2) {
    float next[kRouterPartials];
    for (int p = 0; p < kRouterPartials; ++p) next[p] = partial[p] + partial[p ^ d];
    std::copy(next, next + kRouterPartials, partial);
  }
  return partial[0];
}

}  // namespace

Status check_moe_router(const MoeRouterParams& p) {
  if (!p.x || !p.gate.data || !p.expert_ids || !p.weights || !p.counts)
    return Status::error("moe_router: null input, gate or output");
  if (p.gate.format != WeightFormat::kF32 && p.gate.format != WeightFormat::kBF16)
    return Status::errorf("moe_router: gate format {}; expected F32 or BF16 (the router runs unquantized)",
                          weight_format_name(p.gate.format));
  if (p.n_tokens < 0 || p.d_model <= 0 || p.n_experts <= 0 || p.gate.rows != p.n_experts ||
      p.gate.cols != p.d_model)
    return Status::errorf("moe_router: gate [{}, {}], n_tokens {}; expected gate [n_experts {}, d_model {}]",
                          p.gate.rows, p.gate.cols, p.n_tokens, p.n_experts, p.d_model);
  if (p.top_k <= 0 || p.top_k > p.n_experts)
    return Status::errorf("moe_router: top_k {}; expected 1..{}", p.top_k, p.n_experts);
  if (!p.bias == !p.tid2eid)
    return Status::error("moe_router: expected exactly one of bias (dense) or tid2eid (hash)");
  if (p.tid2eid) {
    if (!p.token_ids) return Status::error("moe_router: hash mode needs token ids");
    for (int64_t t = 0; t < p.n_tokens; ++t) {
      const int64_t tok = p.token_ids[t];
      if (tok < 0 || tok >= p.vocab_size)
        return Status::errorf("moe_router: token {} has id {}; expected 0 <= id < {}", t, tok, p.vocab_size);
      for (int64_t j = 0; j < p.top_k; ++j)
        if (p.tid2eid[tok * p.top_k + j] < 0 || p.tid2eid[tok * p.top_k + j] >= p.n_experts)
          return Status::errorf("moe_router: tid2eid[{}, {}] = {}; expected 0 <= id < {}", tok, j,
                                p.tid2eid[tok * p.top_k + j], p.n_experts);
    }
  }
  return {};
}

namespace cpu {

void moe_router(const MoeRouterParams& p) {
  const int64_t T = p.n_tokens, D = p.d_model, E = p.n_experts, k = p.top_k;
  std::vector<float> logits(size_t(T * E));  // [T, E]
  parallel_for(
      E,
      [&](int64_t e0, int64_t e1) {
        std::vector<float> row(static_cast<size_t>(D));
        for (int64_t e = e0; e < e1; ++e) {
          dequantize_row(p.gate, e, row.data());
          for (int64_t t = 0; t < T; ++t) logits[size_t(t * E + e)] = router_dot(p.x + t * D, row.data(), D);
        }
      },
      /*min_chunk=*/4);

  std::fill(p.counts, p.counts + E, 0);
  std::vector<float> score(static_cast<size_t>(E));
  std::vector<int32_t> order(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t e = 0; e < E; ++e) score[size_t(e)] = router_sigma(logits[size_t(t * E + e)]);
    int32_t* ids = p.expert_ids + t * k;
    if (p.tid2eid) {
      for (int64_t j = 0; j < k; ++j) ids[j] = int32_t(p.tid2eid[int64_t(p.token_ids[t]) * k + j]);
    } else {
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
        return score[size_t(a)] + p.bias[a] > score[size_t(b)] + p.bias[b];
      });
      for (int64_t j = 0; j < k; ++j) ids[j] = order[size_t(j)];
    }
    float sum = 0.0f;
    for (int64_t j = 0; j < k; ++j) sum += score[size_t(ids[j])];
    for (int64_t j = 0; j < k; ++j) {
      p.weights[t * k + j] = score[size_t(ids[j])] / (sum + 1e-20f) * p.routed_scaling_factor;
      ++p.counts[ids[j]];
    }
  }
}

}  // namespace cpu
}  // namespace dsv4
