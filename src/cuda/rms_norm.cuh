// y[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) (· weight). x, y: [n_rows, dim] row-major fp32,
// weight: [dim] or null. One block per row: a strided, coalesced pass for Σx², a block reduction,
// then a second pass over the (L1/L2-resident) row. y may alias x: each element is read and
// written by the same thread, after the reduction.
#pragma once

#include <cstdint>

#include "cuda/reduce.cuh"

namespace dsv4::cuda {

constexpr int kRmsNormThreads = 256;

__global__ void rms_norm_kernel(const float* x, const float* weight, float* y, int64_t dim, float eps) {
  __shared__ float scratch[32];
  const float* xr = x + int64_t(blockIdx.x) * dim;
  float* yr = y + int64_t(blockIdx.x) * dim;
  float sum_sq = 0.0f;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) sum_sq += xr[i] * xr[i];
  sum_sq = block_sum(sum_sq, scratch);
  const float inv_rms = 1.0f / sqrtf(sum_sq / float(dim) + eps);
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    const float normed = xr[i] * inv_rms;
    yr[i] = weight ? weight[i] * normed : normed;
  }
}

}  // namespace dsv4::cuda
