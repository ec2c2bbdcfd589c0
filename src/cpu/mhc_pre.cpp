// CPU reference of `mhc_pre` (spec §4.1).
#include "ops/mhc_pre.h"

#include <algorithm>
#include <vector>

#include "core/parallel.h"
#include "cpu/mhc_common.h"

namespace dsv4 {
using namespace cpu_mhc;

Status check_mhc_pre(const MhcPreParams& p) {
  DSV4_RETURN_IF_ERROR(check_streams("mhc_pre", p.h, p.x, p.n_tokens, p.hc_mult, p.d_model));
  if (!p.fn || !p.base || !p.scale || !p.post || !p.comb)
    return Status::error("mhc_pre: null parameter or output");
  if (p.sinkhorn_iters < 1)
    return Status::errorf("mhc_pre: sinkhorn_iters {}; expected >= 1", p.sinkhorn_iters);
  return {};
}

namespace cpu {

void mhc_pre(const MhcPreParams& p) {
  const int64_t n = p.hc_mult, D = p.d_model, n_mix = (2 + n) * n;
  parallel_for(p.n_tokens, [&](int64_t t0, int64_t t1) {
    std::vector<float> mix(static_cast<size_t>(n_mix)), pre(static_cast<size_t>(n));
    for (int64_t t = t0; t < t1; ++t) {
      const float* h = p.h + t * n * D;
      hc_mix(h, n * D, p.fn, n_mix, p.rms_eps, mix.data());
      float* post = p.post + t * n;
      float* C = p.comb + t * n * n;  // C[j * n + k]
      for (int64_t j = 0; j < n; ++j) {
        pre[size_t(j)] = sigmoid(mix[size_t(j)] * p.scale[0] + p.base[j]) + p.hc_eps;
        post[j] = 2.0f * sigmoid(mix[size_t(n + j)] * p.scale[1] + p.base[n + j]);
      }
      // Softmax along the last index (per row j), then + eps.
      for (int64_t j = 0; j < n; ++j) {
        float* row = C + j * n;
        for (int64_t k = 0; k < n; ++k)
          row[k] = mix[size_t(2 * n + j * n + k)] * p.scale[2] + p.base[2 * n + j * n + k];
        float mx = row[0];
        for (int64_t k = 1; k < n; ++k) mx = std::max(mx, row[k]);
        float sum = 0.0f;
        for (int64_t k = 0; k < n; ++k) sum += (row[k] = std::exp(row[k] - mx));
        for (int64_t k = 0; k < n; ++k) row[k] = row[k] / sum + p.hc_eps;
      }
      const auto normalize_columns = [&] {
        for (int64_t k = 0; k < n; ++k) {
          float sum = 0.0f;
          for (int64_t j = 0; j < n; ++j) sum += C[j * n + k];
          for (int64_t j = 0; j < n; ++j) C[j * n + k] /= sum + p.hc_eps;
        }
      };
      const auto normalize_rows = [&] {
        for (int64_t j = 0; j < n; ++j) {
          float sum = 0.0f;
          for (int64_t k = 0; k < n; ++k) sum += C[j * n + k];
          for (int64_t k = 0; k < n; ++k) C[j * n + k] /= sum + p.hc_eps;
        }
      };
      normalize_columns();
      for (int64_t it = 1; it < p.sinkhorn_iters; ++it) {
        normalize_rows();
        normalize_columns();
      }
      collapse(h, pre.data(), n, D, p.x + t * D);
    }
  });
}

}  // namespace cpu
}  // namespace dsv4
