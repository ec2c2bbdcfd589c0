// CPU reference of `linear`: exact row dequantization, fp32 accumulation.
#include "ops/linear.h"

#include <vector>

#include "core/numeric.h"
#include "core/parallel.h"

namespace dsv4 {

Status check_linear(const LinearParams& p) {
  if (!p.x || !p.y || !p.w.data) return Status::error("linear: null input, output or weight");
  if (p.n_tokens < 0 || p.w.rows <= 0 || p.w.cols <= 0)
    return Status::errorf("linear: shape [{}, {}] x [{}, {}]ᵀ; expected positive sizes", p.n_tokens, p.w.cols,
                          p.w.rows, p.w.cols);
  if ((p.w.format == WeightFormat::kNVFP4 && p.w.cols % kNvfp4Block) ||
      (p.w.format == WeightFormat::kMXFP4 && p.w.cols % kMxfp4Block))
    return Status::errorf("linear: {} weight with {} in-features; expected whole scale blocks",
                          weight_format_name(p.w.format), p.w.cols);
  return {};
}

namespace cpu {

void linear(const LinearParams& p, ActivationPrecision x_precision) {
  const int64_t N = p.w.rows, K = p.w.cols, T = p.n_tokens;
  std::vector<float> x_bf16;  // [T, K], only for kBF16
  const float* x_all = p.x;
  if (x_precision == ActivationPrecision::kBF16) {
    x_bf16.resize(size_t(T * K));
    for (size_t i = 0; i < x_bf16.size(); ++i) x_bf16[i] = round_to_bf16(p.x[i]);
    x_all = x_bf16.data();
  }
  // Parallel over output rows: each weight row is dequantized once and used for every token.
  parallel_for(
      N,
      [&](int64_t n0, int64_t n1) {
        std::vector<float> row(static_cast<size_t>(K));
        for (int64_t n = n0; n < n1; ++n) {
          dequantize_row(p.w, n, row.data());
          for (int64_t t = 0; t < T; ++t) {
            const float* x = x_all + t * K;
            float acc = 0.0f;
            for (int64_t k = 0; k < K; ++k) acc += x[k] * row[size_t(k)];
            p.y[t * N + n] = acc;
          }
        }
      },
      /*min_chunk=*/16);
}

}  // namespace cpu
}  // namespace dsv4
