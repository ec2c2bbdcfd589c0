// mhc_pre: the mHC collapse of one block site (spec §4.1, HF DeepseekV4HyperConnection).
//   mix = fn · (v / rms(v)),  v = the n streams flattened          [(2+n)·n]
//   pre  = sigmoid(mix[0:n]·scale₀ + base[0:n]) + hc_eps
//   post = 2·sigmoid(mix[n:2n]·scale₁ + base[n:2n])
//   comb = Sinkhorn(softmax_rows(mix[2n:]·scale₂ + base[2n:]) + hc_eps): columns first, then
//          (iters−1) × (rows, columns); every denominator gets + hc_eps
//   x = Σ_j pre_j · h_j
// GPU contract (cuda::mhc_pre): fp32 throughout, as the reference (tree sums for mix).
#pragma once

#include <cstdint>

#include "core/status.h"

namespace dsv4 {

struct MhcPreParams {
  const float* h = nullptr;      // [n_tokens, hc_mult, d_model] residual streams
  const float* fn = nullptr;     // [(2+hc_mult)·hc_mult, hc_mult·d_model]
  const float* base = nullptr;   // [(2+hc_mult)·hc_mult]
  const float* scale = nullptr;  // [3]
  float* x = nullptr;            // [n_tokens, d_model] collapsed input of the sub-block
  float* post = nullptr;         // [n_tokens, hc_mult]
  float* comb = nullptr;         // [n_tokens, hc_mult, hc_mult] comb[j, k]: stream j → stream k
  int64_t n_tokens = 0;
  int64_t hc_mult = 0;
  int64_t d_model = 0;
  int64_t sinkhorn_iters = 0;
  float rms_eps = 1e-6f;
  float hc_eps = 1e-6f;
};

Status check_mhc_pre(const MhcPreParams& p);

namespace cpu {
void mhc_pre(const MhcPreParams& p);
}  // namespace cpu

}  // namespace dsv4
