// CPU reference of `moe_experts`: tokens are gathered per expert, each expert runs three `linear`
// calls (parallel over weight rows), outputs are added in ascending expert id order as HF does.
#include "ops/moe_experts.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/numeric.h"
#include "ops/linear.h"

namespace dsv4 {

Status check_moe_experts(const MoeExpertsParams& p) {
  if (!p.x || !p.expert_ids || !p.weights || !p.experts || !p.y)
    return Status::error("moe_experts: null input or output");
  for (int64_t i = 0; i < p.n_tokens * p.top_k; ++i)
    if (p.expert_ids[i] < 0 || p.expert_ids[i] >= p.n_experts)
      return Status::errorf("moe_experts: expert_ids[{}] = {}; expected 0 <= id < {}", i, p.expert_ids[i],
                            p.n_experts);
  if (p.counts) {
    std::vector<int32_t> hist(size_t(p.n_experts), 0);
    for (int64_t i = 0; i < p.n_tokens * p.top_k; ++i) ++hist[size_t(p.expert_ids[i])];
    for (int64_t e = 0; e < p.n_experts; ++e)
      if (p.counts[e] != hist[size_t(e)])
        return Status::errorf("moe_experts: counts[{}] = {}; expected {} (the ids' histogram)", e,
                              p.counts[e], hist[size_t(e)]);
  }
  for (int64_t e = 0; e < p.n_experts; ++e) {
    const ExpertWeights& w = p.experts[e];
    if (w.w1.rows != p.d_ff || w.w1.cols != p.d_model || w.w3.rows != p.d_ff || w.w3.cols != p.d_model ||
        w.w2.rows != p.d_model || w.w2.cols != p.d_ff)
      return Status::errorf(
          "moe_experts: expert {} weights [{}, {}], [{}, {}], [{}, {}]; expected w1/w3 [{}, {}], w2 [{}, {}]",
          e, w.w1.rows, w.w1.cols, w.w3.rows, w.w3.cols, w.w2.rows, w.w2.cols, p.d_ff, p.d_model, p.d_model,
          p.d_ff);
  }
  return {};
}

namespace cpu {

void moe_experts(const MoeExpertsParams& p, ActivationPrecision precision) {
  const int64_t D = p.d_model, I = p.d_ff, k = p.top_k;
  const bool bf16 = precision == ActivationPrecision::kBF16;
  std::fill(p.y, p.y + p.n_tokens * D, 0.0f);
  std::vector<int64_t> tokens;
  std::vector<float> token_weight, x, gate, up, act, out;
  for (int64_t e = 0; e < p.n_experts; ++e) {
    tokens.clear();
    token_weight.clear();
    for (int64_t t = 0; t < p.n_tokens; ++t)
      for (int64_t j = 0; j < k; ++j)
        if (p.expert_ids[t * k + j] == e) {
          tokens.push_back(t);
          token_weight.push_back(p.weights[t * k + j]);
        }
    const int64_t n = int64_t(tokens.size());
    if (n == 0) continue;
    x.resize(size_t(n * D));
    gate.resize(size_t(n * I));
    up.resize(size_t(n * I));
    act.resize(size_t(n * I));
    out.resize(size_t(n * D));
    for (int64_t i = 0; i < n; ++i) std::copy_n(p.x + tokens[size_t(i)] * D, D, x.data() + i * D);
    const ExpertWeights& w = p.experts[e];
    linear({x.data(), w.w1, gate.data(), n}, precision);
    linear({x.data(), w.w3, up.data(), n}, precision);
    const float limit = p.swiglu_limit;
    for (int64_t i = 0; i < n * I; ++i) {
      const float g = std::min(gate[size_t(i)], limit);
      const float u = std::clamp(up[size_t(i)], -limit, limit);
      const float a = g / (1.0f + std::exp(-g)) * u;
      act[size_t(i)] = bf16 ? round_to_bf16(a) : a;
    }
    linear({act.data(), w.w2, out.data(), n});
    for (int64_t i = 0; i < n; ++i) {
      float* y = p.y + tokens[size_t(i)] * D;
      for (int64_t c = 0; c < D; ++c) {
        const float v = out[size_t(i * D + c)] * token_weight[size_t(i)];
        y[c] += bf16 ? round_to_bf16(v) : v;
      }
    }
  }
  if (p.addend)
    for (int64_t i = 0; i < p.n_tokens * D; ++i) p.y[i] += p.addend[i];
}

}  // namespace cpu
}  // namespace dsv4
