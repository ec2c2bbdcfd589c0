// CPU reference of the mHC ops `mhc_pre`, `mhc_post` and `hyper_head` (spec §4.1, §4.3, §5).
// All three share the "mix = fn · (v / rms(v))" step over the flattened streams.
#include <cmath>
#include <vector>

#include "core/parallel.h"
#include "ops/hyper_head.h"
#include "ops/mhc_post.h"
#include "ops/mhc_pre.h"

namespace dsv4 {
namespace {

float sigmoid(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// mix[m] = Σ_i fn[m, i] · v[i] / rms(v) for the n_mix rows of fn (HF normalises v first).
void hc_mix(const float* v, int64_t width, const float* fn, int64_t n_mix, float rms_eps, float* mix) {
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
void collapse(const float* h, const float* pre, int64_t n, int64_t d, float* x) {
  for (int64_t c = 0; c < d; ++c) {
    float acc = 0.0f;
    for (int64_t j = 0; j < n; ++j) acc += pre[j] * h[j * d + c];
    x[c] = acc;
  }
}

Status check_streams(const char* op, const void* h, const void* out, int64_t n_tokens, int64_t hc_mult, int64_t d_model) {
  if (!h || !out) return Status::errorf("{}: null input or output", op);
  if (n_tokens < 0 || hc_mult <= 0 || d_model <= 0)
    return Status::errorf("{}: shape [{}, {}, {}]; expected positive sizes", op, n_tokens, hc_mult, d_model);
  return {};
}

}  // namespace

Status check_mhc_pre(const MhcPreParams& p) {
  DSV4_RETURN_IF_ERROR(check_streams("mhc_pre", p.h, p.x, p.n_tokens, p.hc_mult, p.d_model));
  if (!p.fn || !p.base || !p.scale || !p.post || !p.comb) return Status::error("mhc_pre: null parameter or output");
  if (p.sinkhorn_iters < 1) return Status::errorf("mhc_pre: sinkhorn_iters {}; expected >= 1", p.sinkhorn_iters);
  return {};
}

Status check_mhc_post(const MhcPostParams& p) {
  DSV4_RETURN_IF_ERROR(check_streams("mhc_post", p.h, p.out, p.n_tokens, p.hc_mult, p.d_model));
  if (!p.y || !p.post || !p.comb) return Status::error("mhc_post: null input");
  if (p.out == p.h) return Status::error("mhc_post: output aliases the input streams; expected a separate buffer");
  return {};
}

Status check_hyper_head(const HyperHeadParams& p) {
  DSV4_RETURN_IF_ERROR(check_streams("hyper_head", p.h, p.z, p.n_tokens, p.hc_mult, p.d_model));
  if (!p.fn || !p.base || !p.scale) return Status::error("hyper_head: null parameter");
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
        for (int64_t k = 0; k < n; ++k) row[k] = mix[size_t(2 * n + j * n + k)] * p.scale[2] + p.base[2 * n + j * n + k];
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

void hyper_head(const HyperHeadParams& p) {
  const int64_t n = p.hc_mult, D = p.d_model;
  parallel_for(p.n_tokens, [&](int64_t t0, int64_t t1) {
    std::vector<float> mix(static_cast<size_t>(n)), pre(static_cast<size_t>(n));
    for (int64_t t = t0; t < t1; ++t) {
      const float* h = p.h + t * n * D;
      hc_mix(h, n * D, p.fn, n, p.rms_eps, mix.data());
      for (int64_t j = 0; j < n; ++j) pre[size_t(j)] = sigmoid(mix[size_t(j)] * p.scale[0] + p.base[j]) + p.hc_eps;
      collapse(h, pre.data(), n, D, p.z + t * D);
    }
  });
}

}  // namespace cpu
}  // namespace dsv4
