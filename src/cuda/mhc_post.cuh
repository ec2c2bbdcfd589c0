// mhc_post: out[t, k, c] = post[t, k] · y[t, c] + Σ_j comb[t, j, k] · h[t, j, c].
// y: [n_tokens, d_model], h/out: [n_tokens, n, d_model], post: [n_tokens, n], comb: [n_tokens, n, n].
// Memory-bound elementwise: one block per token, threads stride the channels (coalesced); the
// n + n² coefficients sit in shared memory.
#pragma once

#include <cstdint>

namespace dsv4::cuda {

constexpr int kMhcPostThreads = 256;

template <int kHc>
__global__ void mhc_post_kernel(const float* y, const float* h, const float* post, const float* comb,
                                float* out, int64_t d_model) {
  __shared__ float s_post[kHc], s_comb[kHc * kHc];
  const int64_t t = blockIdx.x;
  if (threadIdx.x < kHc) s_post[threadIdx.x] = post[t * kHc + threadIdx.x];
  if (threadIdx.x < kHc * kHc) s_comb[threadIdx.x] = comb[t * kHc * kHc + threadIdx.x];
  __syncthreads();
  const float* yt = y + t * d_model;
  const float* ht = h + t * kHc * d_model;
  float* ot = out + t * kHc * d_model;
  for (int64_t c = threadIdx.x; c < d_model; c += blockDim.x) {
    float hv[kHc];
#pragma unroll
    for (int j = 0; j < kHc; ++j) hv[j] = ht[j * d_model + c];
    const float yc = yt[c];
#pragma unroll
    for (int k = 0; k < kHc; ++k) {
      float acc = 0.0f;
#pragma unroll
      for (int j = 0; j < kHc; ++j) acc += s_comb[j * kHc + k] * hv[j];
      ot[k * d_model + c] = s_post[k] * yc + acc;
    }
  }
}

}  // namespace dsv4::cuda
