// mhc_post: out[t, k, c] = post[t, k] · y[t, c] + Σ_j comb[t, j, k] · h[t, j, c].
// y: [n_tokens, d_model], h/out: [n_tokens, n, d_model], post: [n_tokens, n], comb: [n_tokens, n, n].
// Memory-bound elementwise: a 2-D grid of (tokens, channel blocks), each thread one group of kVec
// channels (16-byte loads when kVec = 4), so a single token still spreads over several SMs; the
// n + n² coefficients sit in shared memory.
#pragma once

#include <cstdint>

#include "cuda/vec.cuh"

namespace dsv4::cuda {

constexpr int kMhcPostThreads = 256;

template <int kHc, int kVec>
__global__ void __launch_bounds__(kMhcPostThreads)
    mhc_post_kernel(const float* y, const float* h, const float* post, const float* comb, float* out,
                    int64_t d_model) {
  __shared__ float s_post[kHc], s_comb[kHc * kHc];
  const int64_t t = blockIdx.x;
  if (threadIdx.x < kHc) s_post[threadIdx.x] = post[t * kHc + threadIdx.x];
  if (threadIdx.x < kHc * kHc) s_comb[threadIdx.x] = comb[t * kHc * kHc + threadIdx.x];
  __syncthreads();
  const int64_t c = (int64_t(blockIdx.y) * blockDim.x + threadIdx.x) * kVec;
  if (c >= d_model) return;
  const float* ht = h + t * kHc * d_model;
  float* ot = out + t * kHc * d_model;
  FloatVec<kVec> hv[kHc];
#pragma unroll
  for (int j = 0; j < kHc; ++j) hv[j] = load_floats<kVec>(ht + j * d_model + c);
  const FloatVec<kVec> yc = load_floats<kVec>(y + t * d_model + c);
#pragma unroll
  for (int k = 0; k < kHc; ++k) {
    FloatVec<kVec> o;
#pragma unroll
    for (int e = 0; e < kVec; ++e) {
      float acc = 0.0f;
#pragma unroll
      for (int j = 0; j < kHc; ++j) acc += s_comb[j * kHc + k] * hv[j].e[e];
      o.e[e] = s_post[k] * yc.e[e] + acc;
    }
    store_floats<kVec>(ot + k * d_model + c, o);
  }
}

}  // namespace dsv4::cuda
