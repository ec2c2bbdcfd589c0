// Helpers shared by the CPU mHC ops (mhc_pre, mhc_post, hyper_head): the "mix = fn · (v / rms(v))"
// step over the flattened streams, the weighted stream collapse, and argument checks.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "core/status.h"

namespace dsv4::cpu_mhc {

inline float sigmoid(float x) {
  return 1.0f / (1.0f + std::exp(-x));
}

// mix[m] = Σ_i fn[m, i] · v[i] / rms(v) for the n_mix rows of fn (HF normalises v first).
inline void hc_mix(const float* v, int64_t width, const float* fn, int64_t n_mix, float rms_eps, float* mix) {
  float sum_sq = 0.0f;
  for (int64_t i = 0; i < width; ++i) sum_sq += v[i] * v[i];
  const float inv_rms = 1.0f / std::sqrt(sum_sq / float(width) + rms_eps);
  std::vector<float> normed(static_cast<size_t>(width));
  for (int64_t i = 0; i < width; ++i) normed[size_t(i)] = v[i] * inv_rms;
  for (int64_t m = 0; m < n_mix; ++m) {
    const float* row = fn + m * width;
    float acc = 0.0f;
    for (int64_t i = 0; i < width; ++i) acc += row[i] * normed[size_t(i)];
    mix[m] = acc;
  }
}

// x = Σ_j pre_j · h_j over the n streams of one token.
inline void collapse(const float* h, const float* pre, int64_t n, int64_t d, float* x) {
  for (int64_t c = 0; c < d; ++c) {
    float acc = 0.0f;
    for (int64_t j = 0; j < n; ++j) acc += pre[j] * h[j * d + c];
    x[c] = acc;
  }
}

inline Status check_streams(const char* op, const void* h, const void* out, int64_t n_tokens, int64_t hc_mult,
                            int64_t d_model) {
  if (!h || !out) return Status::errorf("{}: null input or output", op);
  if (n_tokens < 0 || hc_mult <= 0 || d_model <= 0)
    return Status::errorf("{}: shape [{}, {}, {}]; expected positive sizes", op, n_tokens, hc_mult, d_model);
  return {};
}

}  // namespace dsv4::cpu_mhc
