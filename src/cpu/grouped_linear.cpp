// CPU reference of `grouped_linear`: row-wise exact dequantization, fp32 accumulation.
#include "ops/grouped_linear.h"

#include <vector>

#include "core/numeric.h"
#include "core/parallel.h"

namespace dsv4 {

Status check_grouped_linear(const GroupedLinearParams& p) {
  if (p.n_groups <= 0 || p.w.rows % p.n_groups)
    return Status::errorf("grouped_linear: {} weight rows for {} groups; expected a positive multiple",
                          p.w.rows, p.n_groups);
  const Status s = check_linear({p.x, p.w, p.y, p.n_tokens});
  if (!s.ok()) return s.with_context(fmt::format("grouped_linear ({} groups)", p.n_groups));
  return {};
}

namespace cpu {

void grouped_linear(const GroupedLinearParams& p, ActivationPrecision x_precision) {
  const int64_t N = p.w.rows, K = p.w.cols, G = p.n_groups, per_group = N / G;
  std::vector<float> x_bf16;  // [T, G, K], only for kBF16
  const float* x_all = p.x;
  if (x_precision == ActivationPrecision::kBF16) {
    x_bf16.resize(size_t(p.n_tokens * G * K));
    for (size_t i = 0; i < x_bf16.size(); ++i) x_bf16[i] = round_to_bf16(p.x[i]);
    x_all = x_bf16.data();
  }
  // Parallel over output rows: each weight row is dequantized once and used for every token.
  parallel_for(
      N,
      [&](int64_t n0, int64_t n1) {
        std::vector<float> row(static_cast<size_t>(K));
        for (int64_t n = n0; n < n1; ++n) {
          dequantize_row(p.w, n, row.data());
          const int64_t g = n / per_group;
          for (int64_t t = 0; t < p.n_tokens; ++t) {
            const float* x = x_all + (t * G + g) * K;
            float acc = 0.0f;
            for (int64_t k = 0; k < K; ++k) acc += x[k] * row[size_t(k)];
            p.y[t * N + n] = acc;
          }
        }
      },
      /*min_chunk=*/16);
}

}  // namespace cpu
}  // namespace dsv4
