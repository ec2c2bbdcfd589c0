// CPU reference of `mhc_post` (spec §4.3).
#include "ops/mhc_post.h"

#include <algorithm>
#include <vector>

#include "core/parallel.h"
#include "cpu/mhc_common.h"

namespace dsv4 {
using namespace cpu_mhc;

Status check_mhc_post(const MhcPostParams& p) {
  DSV4_RETURN_IF_ERROR(check_streams("mhc_post", p.h, p.out, p.n_tokens, p.hc_mult, p.d_model));
  if (!p.y || !p.post || !p.comb) return Status::error("mhc_post: null input");
  if (p.out == p.h)
    return Status::error("mhc_post: output aliases the input streams; expected a separate buffer");
  return {};
}

namespace cpu {

void mhc_post(const MhcPostParams& p) {
  const int64_t n = p.hc_mult, D = p.d_model;
  parallel_for(p.n_tokens, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const float* y = p.y + t * D;
      const float* h = p.h + t * n * D;
      const float* post = p.post + t * n;
      const float* C = p.comb + t * n * n;
      float* out = p.out + t * n * D;
      for (int64_t k = 0; k < n; ++k)
        for (int64_t c = 0; c < D; ++c) {
          float acc = 0.0f;
          for (int64_t j = 0; j < n; ++j) acc += C[j * n + k] * h[j * D + c];
          out[k * D + c] = post[k] * y[c] + acc;
        }
    }
  });
}

}  // namespace cpu
}  // namespace dsv4
