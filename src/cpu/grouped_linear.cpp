// CPU reference of `grouped_linear`: row-wise exact dequantization, fp32 accumulation.
#include "ops/grouped_linear.h"

#include <vector>

#include "core/parallel.h"

namespace dsv4 {

Status check_grouped_linear(const GroupedLinearParams& p) {
  if (!p.x || !p.y || !p.w.data) return Status::error("grouped_linear: null input, output or weight");
  if (p.n_groups <= 0 || p.w.rows % p.n_groups)
    return Status::errorf("grouped_linear: {} weight rows for {} groups; expected a positive multiple",
                          p.w.rows, p.n_groups);
  return {};
}

namespace cpu {

void grouped_linear(const GroupedLinearParams& p) {
  const int64_t N = p.w.rows, K = p.w.cols, G = p.n_groups, per_group = N / G;
  parallel_for(
      N,
      [&](int64_t n0, int64_t n1) {
        std::vector<float> row(static_cast<size_t>(K));
        for (int64_t n = n0; n < n1; ++n) {
          dequantize_row(p.w, n, row.data());
          const int64_t g = n / per_group;
          for (int64_t t = 0; t < p.n_tokens; ++t) {
            const float* x = p.x + (t * G + g) * K;
            float acc = 0.0f;
            for (int64_t k = 0; k < K; ++k) acc += x[k] * row[size_t(k)];
            p.y[t * N + n] = acc;
          }
        }
      },
      16);
}

}  // namespace cpu
}  // namespace dsv4
