// linear: y[t, n] = Σ_k x[t, k] · W[n, k] for a weight in any stored format (WeightView).
// The one op behind every projection, expert GEMM, router gate and LM head. The CPU reference
// dequantizes each weight row exactly and accumulates in fp32.
#pragma once

#include <cstdint>

#include "core/quant.h"
#include "core/status.h"

namespace dsv4 {

struct LinearParams {
  const float* x = nullptr;  // [n_tokens, w.cols]
  WeightView w;              // [out = w.rows, in = w.cols]
  float* y = nullptr;        // [n_tokens, w.rows]
  int64_t n_tokens = 0;
};

Status check_linear(const LinearParams& p);

namespace cpu {
void linear(const LinearParams& p);
}  // namespace cpu

}  // namespace dsv4
