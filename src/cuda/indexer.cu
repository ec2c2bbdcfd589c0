// Launcher of indexer (see indexer.cuh): scores into a stream-ordered workspace, then selection.
#include <cmath>

#include "cuda/check.h"
#include "cuda/indexer.cuh"
#include "cuda/indexer.h"

namespace dsv4::cuda {

Status indexer(const IndexerParams& p, cudaStream_t stream) {
  DSV4_RETURN_IF_ERROR(check_indexer(p));
  if (p.n_tokens < 0 || p.n_entries < 0)
    return Status::errorf("indexer: {} tokens, {} entries; expected non-negative counts", p.n_tokens,
                          p.n_entries);
  if (p.n_tokens == 0) return {};
  if (p.n_tokens > 65535)
    return Status::errorf("indexer: {} tokens in one call; expected at most 65535", p.n_tokens);
  // The same expressions as the CPU reference, so the scales are the same fp32 values.
  const float softmax_scale = 1.0f / std::sqrt(float(p.head_dim));
  const float weights_scale = 1.0f / std::sqrt(float(p.n_heads));
  float* scores = nullptr;  // [n_tokens, n_entries]
  if (p.n_entries > 0) {
    const size_t smem = size_t(p.n_heads * p.head_dim + p.head_dim * (kIndexerTile + 1)) * sizeof(float);
    int device = 0, max_smem = 0;
    DSV4_CUDA_TRY(cudaGetDevice(&device));
    DSV4_CUDA_TRY(cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    if (smem > size_t(max_smem))
      return Status::errorf(
          "indexer: n_heads {} × head_dim {} needs {} bytes of shared memory; expected at most {}", p.n_heads,
          p.head_dim, smem, max_smem);
    DSV4_CUDA_TRY(
        cudaFuncSetAttribute(indexer_scores_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    DSV4_CUDA_TRY(cudaMallocAsync(reinterpret_cast<void**>(&scores),
                                  size_t(p.n_tokens * p.n_entries) * sizeof(float), stream));
    const dim3 grid(unsigned((p.n_entries + kIndexerTile - 1) / kIndexerTile), unsigned(p.n_tokens));
    indexer_scores_kernel<<<grid, kIndexerTile, smem, stream>>>(
        p.q, p.head_weights, p.keys, p.slots, p.positions, scores, p.n_heads, p.head_dim, p.n_entries,
        p.ratio, softmax_scale, weights_scale);
    DSV4_CUDA_LAUNCH_CHECK();
  }
  indexer_select_kernel<<<unsigned(p.n_tokens), kIndexerSelectThreads, 0, stream>>>(
      scores, p.positions, p.selected, p.n_entries, p.ratio, p.topk);
  DSV4_CUDA_LAUNCH_CHECK();
  if (scores) DSV4_CUDA_TRY(cudaFreeAsync(scores, stream));
  return {};
}

}  // namespace dsv4::cuda
