// rope: interleaved partial RoPE on the last rope_dim channels of every head (spec §2 P3/P4):
// pairs (a, b) = (x[d−r+2i], x[d−r+2i+1]) → (a·cos φ − b·sin φ, a·sin φ + b·cos φ), φ = pos·ω_i,
// computed as HF does: φ = fp32(ω_i)·fp32(pos) rounded to fp32, cos/sin in fp32.
// `inverse` rotates by −φ (attention output de-rotation, §4.2.8).
// GPU contract (cuda::rope): fp32, the same angle and rounding order; cosf/sinf's last ulp may differ.
#pragma once

#include <cstdint>
#include <vector>

#include "core/config.h"
#include "core/status.h"

namespace dsv4 {

// ω_i, i < rope_dim/2, as HF computes them in fp32. `compress` = the CSA/HCA set
// (compress_rope_theta + YaRN, lo = floor(c(β_fast)), hi = ceil(c(β_slow)), no mscale);
// otherwise the plain rope_theta set of sliding-only layers.
std::vector<float> rope_inv_freq(const ModelConfig& cfg, bool compress);

struct RopeParams {
  float* x = nullptr;                  // [n_rows, n_heads, head_dim], rotated in place
  const int64_t* positions = nullptr;  // [n_rows]
  const float* inv_freq = nullptr;     // [rope_dim / 2]
  int64_t n_rows = 0;
  int64_t n_heads = 0;
  int64_t head_dim = 0;
  int64_t rope_dim = 0;
  bool inverse = false;
};

Status check_rope(const RopeParams& p);

namespace cpu {
void rope(const RopeParams& p);
}  // namespace cpu

}  // namespace dsv4
