// CPU reference of `moe_router` (dense sqrt-softplus + bias selection, or hash table).
#include "ops/moe_router.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace dsv4 {
namespace {

// PyTorch's softplus (beta 1, threshold 20): identity above the threshold.
float softplus(float x) {
  return x > 20.0f ? x : std::log1p(std::exp(x));
}

}  // namespace

Status check_moe_router(const MoeRouterParams& p) {
  if (!p.logits || !p.expert_ids || !p.weights) return Status::error("moe_router: null input or output");
  if (p.top_k <= 0 || p.top_k > p.n_experts)
    return Status::errorf("moe_router: top_k {}; expected 1..{}", p.top_k, p.n_experts);
  if (!p.bias == !p.tid2eid)
    return Status::error("moe_router: expected exactly one of bias (dense) or tid2eid (hash)");
  if (p.tid2eid) {
    if (!p.token_ids) return Status::error("moe_router: hash mode needs token ids");
    for (int64_t t = 0; t < p.n_tokens; ++t)
      if (p.token_ids[t] < 0 || p.token_ids[t] >= p.vocab_size)
        return Status::errorf("moe_router: token {} has id {}; expected 0 <= id < {}", t, p.token_ids[t],
                              p.vocab_size);
  }
  return {};
}

namespace cpu {

void moe_router(const MoeRouterParams& p) {
  const int64_t E = p.n_experts, k = p.top_k;
  std::vector<float> score(static_cast<size_t>(E));
  std::vector<int32_t> order(static_cast<size_t>(E));
  for (int64_t t = 0; t < p.n_tokens; ++t) {
    for (int64_t e = 0; e < E; ++e) score[size_t(e)] = std::sqrt(softplus(p.logits[t * E + e]));
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
    for (int64_t j = 0; j < k; ++j)
      p.weights[t * k + j] = score[size_t(ids[j])] / (sum + 1e-20f) * p.routed_scaling_factor;
  }
}

}  // namespace cpu
}  // namespace dsv4
