// CPU reference of `rope` and the frequency tables (HF DeepseekV4RotaryEmbedding and
// _compute_yarn_parameters, evaluated in fp32 as torch does).
#include "ops/rope.h"

#include <cmath>

#include "core/parallel.h"

namespace dsv4 {

std::vector<float> rope_inv_freq(const ModelConfig& cfg, bool compress) {
  const int64_t dim = cfg.rope_dim, half = dim / 2;
  const float base = float(compress ? cfg.compress_rope_theta : cfg.rope_theta);
  std::vector<float> inv_freq(static_cast<size_t>(half));
  // pos_freqs_i = base^(2i/dim), exponent formed in fp32 like torch.arange(0, dim, 2).float() / dim.
  std::vector<float> pos_freqs(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) pos_freqs[size_t(i)] = std::pow(base, float(2 * i) / float(dim));
  if (!compress || !cfg.yarn.enabled) {
    for (int64_t i = 0; i < half; ++i) inv_freq[size_t(i)] = 1.0f / pos_freqs[size_t(i)];
    return inv_freq;
  }
  // YaRN correction range in double (Python floats), truncated (HF default truncate=True).
  const auto correction_dim = [&](double n_rot) {
    return double(dim) * std::log(double(cfg.yarn.original_max_position) / (n_rot * 2 * M_PI)) /
           (2 * std::log(double(base)));
  };
  const double lo = std::max(std::floor(correction_dim(cfg.yarn.beta_fast)), 0.0);
  double hi = std::min(std::ceil(correction_dim(cfg.yarn.beta_slow)), double(dim - 1));
  if (lo == hi) hi += 0.001;  // HF: prevents a zero-width ramp
  const float factor = float(cfg.yarn.factor);
  for (int64_t i = 0; i < half; ++i) {
    const float ramp = std::clamp((float(i) - float(lo)) / float(hi - lo), 0.0f, 1.0f);
    const float extrapolation_factor = 1.0f - ramp;
    const float extrapolated = 1.0f / pos_freqs[size_t(i)];
    const float interpolated = 1.0f / (factor * pos_freqs[size_t(i)]);
    inv_freq[size_t(i)] = interpolated * (1.0f - extrapolation_factor) + extrapolated * extrapolation_factor;
  }
  return inv_freq;
}

Status check_rope(const RopeParams& p) {
  if (!p.x || !p.positions || !p.inv_freq) return Status::error("rope: null input, positions or frequencies");
  if (p.rope_dim <= 0 || p.rope_dim % 2 || p.rope_dim > p.head_dim)
    return Status::errorf("rope: rope_dim {} with head_dim {}; expected an even rope_dim <= head_dim",
                          p.rope_dim, p.head_dim);
  return {};
}

namespace cpu {

void rope(const RopeParams& p) {
  const int64_t half = p.rope_dim / 2, offset = p.head_dim - p.rope_dim;
  parallel_for(
      p.n_rows,
      [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; ++r) {
          const float pos = float(p.positions[r]);
          for (int64_t i = 0; i < half; ++i) {
            const float angle = p.inv_freq[i] * pos;
            const float cos_a = std::cos(angle);
            const float sin_a = p.inverse ? -std::sin(angle) : std::sin(angle);
            for (int64_t h = 0; h < p.n_heads; ++h) {
              float* pair = p.x + (r * p.n_heads + h) * p.head_dim + offset + 2 * i;
              const float a = pair[0], b = pair[1];
              pair[0] = a * cos_a - b * sin_a;
              pair[1] = b * cos_a + a * sin_a;
            }
          }
        }
      },
      16);
}

}  // namespace cpu
}  // namespace dsv4
