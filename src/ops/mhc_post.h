// mhc_post: the mHC expand after a sub-block (spec §4.3): h'_k = post_k · y + Σ_j comb[j, k] · h_j
// (comb applied transposed).
// GPU contract (cuda::mhc_post): fp32, as the reference.
#pragma once

#include <cstdint>

#include "core/status.h"

namespace dsv4 {

struct MhcPostParams {
  const float* y = nullptr;     // [n_tokens, d_model] sub-block output
  const float* h = nullptr;     // [n_tokens, hc_mult, d_model] streams that entered the site
  const float* post = nullptr;  // [n_tokens, hc_mult]
  const float* comb = nullptr;  // [n_tokens, hc_mult, hc_mult]
  float* out = nullptr;         // [n_tokens, hc_mult, d_model]; must not alias h
  int64_t n_tokens = 0;
  int64_t hc_mult = 0;
  int64_t d_model = 0;
};

Status check_mhc_post(const MhcPostParams& p);

namespace cpu {
void mhc_post(const MhcPostParams& p);
}  // namespace cpu

}  // namespace dsv4
