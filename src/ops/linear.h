// linear: y[t, n] = Σ_k x[t, k] · W[n, k] for a weight in any stored format (WeightView).
// The one op behind every projection, expert GEMM and LM head (the router gate is moe_router's).
// The CPU reference dequantizes each weight row exactly and accumulates in fp32.
// GPU contract (cuda::linear_sm90 and the CUDA backend): y = Σ_k bf16(x[t, k]) · W[n, k] with x
// rounded to BF16 (nearest even) and W exact, fp32 accumulation, for quantized and BF16 weights;
// F32 weights keep x in fp32 (SGEMM).
#pragma once

#include <cstdint>

#include "core/quant.h"
#include "core/status.h"

namespace dsv4 {

// Where a CPU op keeps its activations: kF32 (the reference, docs/numerics.md) or kBF16, rounded
// (to nearest even) exactly where the op's GPU kernel rounds them (each op's "GPU contract").
enum class ActivationPrecision { kF32, kBF16 };

struct LinearParams {
  const float* x = nullptr;  // [n_tokens, w.cols]
  WeightView w;              // [out = w.rows, in = w.cols]
  float* y = nullptr;        // [n_tokens, w.rows]
  int64_t n_tokens = 0;
};

Status check_linear(const LinearParams& p);

namespace cpu {
// kBF16: x is rounded to BF16 first, as the GPU does for quantized and BF16 weights.
void linear(const LinearParams& p, ActivationPrecision x_precision = ActivationPrecision::kF32);
}  // namespace cpu

}  // namespace dsv4
