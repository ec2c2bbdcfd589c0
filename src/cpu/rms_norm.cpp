// CPU reference of `rms_norm` (weighted and unweighted), fp32 statistics.
#include "ops/rms_norm.h"

#include <cmath>

#include "core/parallel.h"

namespace dsv4 {

Status check_rms_norm(const RmsNormParams& p) {
  if (!p.x || !p.y) return Status::error("rms_norm: null input or output");
  if (p.n_rows < 0 || p.dim <= 0)
    return Status::errorf("rms_norm: shape [{}, {}]; expected positive sizes", p.n_rows, p.dim);
  return {};
}

namespace cpu {

void rms_norm(const RmsNormParams& p) {
  parallel_for(
      p.n_rows,
      [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const float* x = p.x + r * p.dim;
          float* y = p.y + r * p.dim;
          float sum_sq = 0.0f;
          for (int64_t i = 0; i < p.dim; ++i) sum_sq += x[i] * x[i];
          const float inv_rms = 1.0f / std::sqrt(sum_sq / float(p.dim) + p.eps);
          for (int64_t i = 0; i < p.dim; ++i) {
            const float normed = x[i] * inv_rms;
            y[i] = p.weight ? p.weight[i] * normed : normed;
          }
        }
      },
      64);
}

}  // namespace cpu
}  // namespace dsv4
