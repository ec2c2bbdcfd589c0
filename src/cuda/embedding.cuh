// out[t, :] = fp32(table[ids[t], :]). ids: [n_tokens] int32, table: [vocab, d_model] F32 or BF16,
// out: [n_tokens, d_model] fp32. One block per token, threads stride the row (coalesced).
// BF16 → fp32 is exact (the high half of the fp32 bits). An out-of-range id yields a NaN row.
#pragma once

#include <cstdint>

namespace dsv4::cuda {

constexpr int kEmbeddingThreads = 256;

template <typename Element>
__device__ __forceinline__ float embedding_value(Element v);
template <>
__device__ __forceinline__ float embedding_value<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ float embedding_value<uint16_t>(uint16_t v) {
  return __uint_as_float(uint32_t(v) << 16);
}

template <typename Element>
__global__ void embedding_kernel(const int32_t* ids, const Element* table, int64_t vocab, int64_t d_model,
                                 float* out) {
  const int32_t id = ids[blockIdx.x];
  float* row_out = out + int64_t(blockIdx.x) * d_model;
  if (id < 0 || id >= vocab) {
    for (int64_t c = threadIdx.x; c < d_model; c += blockDim.x) row_out[c] = __uint_as_float(0x7FC00000u);
    return;
  }
  const Element* row = table + int64_t(id) * d_model;
  for (int64_t c = threadIdx.x; c < d_model; c += blockDim.x) row_out[c] = embedding_value(row[c]);
}

}  // namespace dsv4::cuda
