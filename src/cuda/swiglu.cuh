// The clamped SwiGLU of moe_experts (spec §4.4), one definition for every GPU path that computes
// it (the decode and prefill gate+up epilogues, dense mode's kernel): g and u are the scaled gate
// and up projections, act = silu(min(g, L)) · clamp(u, −L, L), in fp32 as cpu::moe_experts does.
#pragma once

namespace dsv4::cuda {

__device__ __forceinline__ float clamped_swiglu(float g, float u, float limit) {
  const float gt = fminf(g, limit);
  const float up = fminf(fmaxf(u, -limit), limit);
  return gt / (1.0f + expf(-gt)) * up;
}

}  // namespace dsv4::cuda
