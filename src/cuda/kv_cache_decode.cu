// kv_cache_decode on the GPU (contract in src/ops/kv_cache_decode.h): one block per token stores
// its row in the ring and writes its row list, one list element per thread step.
#include "cuda/check.h"
#include "cuda/kv_cache_decode.h"

namespace dsv4::cuda {
namespace {

constexpr int kKvCacheDecodeThreads = 128;

__global__ void kv_cache_decode_kernel(KvCacheDecodeParams p) {
  const int64_t t = blockIdx.x, pos = p.positions[t], W = p.window;
  const int64_t base = int64_t(p.slots[t]) * p.rows_per_slot;
  float* ring_row = p.cache + (base + pos % W) * p.head_dim;
  for (int64_t c = threadIdx.x; c < p.head_dim; c += blockDim.x) ring_row[c] = p.kv[t * p.head_dim + c];
  const int64_t first = pos - (W - 1) > 0 ? pos - (W - 1) : 0;
  const int64_t n_sel = W + p.n_entries_listed;
  const int64_t n_hca = p.ratio > 0 ? min((pos + 1) / p.ratio, p.n_entries_listed) : 0;
  int32_t* idx = p.kv_idx + t * n_sel;
  for (int64_t j = threadIdx.x; j < n_sel; j += blockDim.x) {
    int64_t row = -1;
    if (j < W) {
      if (first + j <= pos) row = base + (first + j) % W;
    } else if (p.selected) {
      const int32_t e = p.selected[t * p.n_entries_listed + (j - W)];
      if (e >= 0) row = base + W + e;
    } else if (j - W < n_hca) {
      row = base + j;
    }
    idx[j] = int32_t(row);
  }
}

}  // namespace

Status kv_cache_decode(const KvCacheDecodeParams& p, cudaStream_t stream) {
  DSV4_RETURN_IF_ERROR(check_kv_cache_decode(p));
  if (p.n_tokens == 0) return {};
  kv_cache_decode_kernel<<<unsigned(p.n_tokens), kKvCacheDecodeThreads, 0, stream>>>(p);
  DSV4_CUDA_LAUNCH_CHECK();
  return {};
}

}  // namespace dsv4::cuda
