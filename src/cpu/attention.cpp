// CPU reference of `attention`: one softmax over the listed kv rows plus the per-head sink,
// parallel over (token, head). kBF16 computes the GPU contract of ops/attention.h: q, kv and the
// weights rounded to BF16.
#include "ops/attention.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/numeric.h"
#include "core/parallel.h"

namespace dsv4 {

Status check_attention(const AttentionParams& p) {
  if (!p.q || !p.kv_idx || !p.sinks || !p.out) return Status::error("attention: null input or output");
  if (p.n_kv > 0 && !p.kv) return Status::error("attention: null kv");
  for (int64_t i = 0; i < p.n_tokens * p.n_sel; ++i)
    if (p.kv_idx[i] < -1 || p.kv_idx[i] >= p.n_kv)
      return Status::errorf("attention: kv_idx[{}] = {}; expected -1 or a row below {}", i, p.kv_idx[i],
                            p.n_kv);
  return {};
}

namespace cpu {

void attention(const AttentionParams& p, ActivationPrecision precision) {
  const int64_t d = p.head_dim;
  const bool bf16 = precision == ActivationPrecision::kBF16;
  const auto read = [bf16](float x) { return bf16 ? round_to_bf16(x) : x; };
  constexpr float kLog2e = 1.4426950408889634f;
  const float scale_log2 = p.scale * kLog2e;  // kBF16: the GPU's fp32 constant
  parallel_for(p.n_tokens * p.n_heads, [&](int64_t i0, int64_t i1) {
    std::vector<float> logit(static_cast<size_t>(p.n_sel)), q(static_cast<size_t>(d));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t t = i / p.n_heads, h = i % p.n_heads;
      for (int64_t c = 0; c < d; ++c) q[size_t(c)] = read(p.q[i * d + c]);
      const int32_t* idx = p.kv_idx + t * p.n_sel;
      float mx = bf16 ? -INFINITY : p.sinks[h];
      for (int64_t j = 0; j < p.n_sel; ++j) {
        if (idx[j] < 0) continue;
        const float* k = p.kv + int64_t(idx[j]) * d;
        float dot = 0.0f;
        for (int64_t c = 0; c < d; ++c) dot += q[size_t(c)] * read(k[c]);
        logit[size_t(j)] = bf16 ? dot * scale_log2 : dot * p.scale;
        mx = std::max(mx, logit[size_t(j)]);
      }
      float den;
      if (bf16) {  // weights bf16(2^{x_j − M}), M the integer ceil of the largest x_j
        const float m = mx == -INFINITY ? 0.0f : std::ceil(mx);
        den = std::exp2(p.sinks[h] * kLog2e - m);
        for (int64_t j = 0; j < p.n_sel; ++j)
          if (idx[j] >= 0) den += (logit[size_t(j)] = round_to_bf16(std::exp2(logit[size_t(j)] - m)));
      } else {
        den = std::exp(p.sinks[h] - mx);
        for (int64_t j = 0; j < p.n_sel; ++j)
          if (idx[j] >= 0) den += (logit[size_t(j)] = std::exp(logit[size_t(j)] - mx));
      }
      float* out = p.out + i * d;
      for (int64_t c = 0; c < d; ++c) out[c] = 0.0f;
      for (int64_t j = 0; j < p.n_sel; ++j) {
        if (idx[j] < 0) continue;
        const float prob = logit[size_t(j)] / den;
        const float* v = p.kv + int64_t(idx[j]) * d;
        for (int64_t c = 0; c < d; ++c) out[c] += prob * read(v[c]);
      }
    }
  });
}

}  // namespace cpu
}  // namespace dsv4
