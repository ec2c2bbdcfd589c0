// CPU reference of `hyper_head` (spec §5).
#include "ops/hyper_head.h"

#include <algorithm>
#include <vector>

#include "core/parallel.h"
#include "cpu/mhc_common.h"

namespace dsv4 {
using namespace cpu_mhc;

Status check_hyper_head(const HyperHeadParams& p) {
  DSV4_RETURN_IF_ERROR(check_streams("hyper_head", p.h, p.z, p.n_tokens, p.hc_mult, p.d_model));
  if (!p.fn || !p.base || !p.scale) return Status::error("hyper_head: null parameter");
  return {};
}

namespace cpu {

void hyper_head(const HyperHeadParams& p) {
  const int64_t n = p.hc_mult, D = p.d_model;
  parallel_for(p.n_tokens, [&](int64_t t0, int64_t t1) {
    std::vector<float> mix(static_cast<size_t>(n)), pre(static_cast<size_t>(n));
    for (int64_t t = t0; t < t1; ++t) {
      const float* h = p.h + t * n * D;
      hc_mix(h, n * D, p.fn, n, p.rms_eps, mix.data());
      for (int64_t j = 0; j < n; ++j)
        pre[size_t(j)] = sigmoid(mix[size_t(j)] * p.scale[0] + p.base[j]) + p.hc_eps;
      collapse(h, pre.data(), n, D, p.z + t * D);
    }
  });
}

}  // namespace cpu
}  // namespace dsv4
