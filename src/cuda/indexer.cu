// Launcher of indexer (see indexer.cuh): scores into a stream-ordered workspace, then selection.
#include <cmath>
#include <cstdint>

#include "cuda/check.h"
#include "cuda/indexer.cuh"
#include "cuda/indexer.h"

namespace dsv4::cuda {
namespace {

template <int kEntries>
Status launch_indexer_scores(const IndexerParams& p, float* scores, float softmax_scale, float weights_scale,
                             int max_smem, cudaStream_t stream) {
  constexpr int64_t kBlockEntries = kIndexerEntryGroups * kEntries;
  const size_t smem = size_t(IndexerScoresSmem(p.n_heads, p.head_dim, kBlockEntries).total) * sizeof(float);
  if (smem > size_t(max_smem))
    return Status::errorf(
        "indexer: n_heads {} × head_dim {} needs {} bytes of shared memory; expected at most {}", p.n_heads,
        p.head_dim, smem, max_smem);
  DSV4_CUDA_TRY(cudaFuncSetAttribute(indexer_scores_kernel<kEntries>,
                                     cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  const dim3 grid(unsigned((p.n_entries + kBlockEntries - 1) / kBlockEntries), unsigned(p.n_tokens));
  indexer_scores_kernel<kEntries><<<grid, kIndexerThreads, smem, stream>>>(
      p.q, p.head_weights, p.keys, p.slots, p.positions, scores, p.n_heads, p.head_dim, p.n_entries, p.ratio,
      softmax_scale, weights_scale);
  DSV4_CUDA_LAUNCH_CHECK();
  return {};
}

}  // namespace

Status indexer(const IndexerParams& p, cudaStream_t stream) {
  DSV4_RETURN_IF_ERROR(check_indexer(p));
  if (p.n_tokens < 0 || p.n_entries < 0)
    return Status::errorf("indexer: {} tokens, {} entries; expected non-negative counts", p.n_tokens,
                          p.n_entries);
  if (p.n_tokens == 0) return {};
  if (p.n_tokens > 65535)
    return Status::errorf("indexer: {} tokens in one call; expected at most 65535", p.n_tokens);
  if (p.topk > kIndexerSortCapacity)
    return Status::errorf("indexer: topk {}; expected at most {}", p.topk, kIndexerSortCapacity);
  if (p.n_entries >= (int64_t(1) << 31))
    return Status::errorf("indexer: {} entries; expected fewer than 2^31", p.n_entries);
  if (p.n_entries > 0 && (p.head_dim % 4 != 0 || reinterpret_cast<uintptr_t>(p.q) % 16 != 0 ||
                          reinterpret_cast<uintptr_t>(p.keys) % 16 != 0))
    return Status::errorf("indexer: head_dim {}; expected a multiple of 4, with q and keys 16-byte aligned",
                          p.head_dim);
  // The same expressions as the CPU reference, so the scales are the same fp32 values.
  const float softmax_scale = 1.0f / std::sqrt(float(p.head_dim));
  const float weights_scale = 1.0f / std::sqrt(float(p.n_heads));
  float* scores = nullptr;  // [n_tokens, n_entries]
  if (p.n_entries > 0) {
    int device = 0, max_smem = 0;
    DSV4_CUDA_TRY(cudaGetDevice(&device));
    DSV4_CUDA_TRY(cudaDeviceGetAttribute(&max_smem, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    const int n_sms = sm_count();
    DSV4_CUDA_TRY(cudaMallocAsync(reinterpret_cast<void**>(&scores),
                                  size_t(p.n_tokens * p.n_entries) * sizeof(float), stream));
    // The widest tile (most reuse of each shared-memory load) that still gives every SM two blocks;
    // small decode batches take narrower tiles to spread over the SMs.
    const auto blocks = [&](int64_t entries_per_block) {
      return p.n_tokens * ((p.n_entries + entries_per_block - 1) / entries_per_block);
    };
    const Status s =
        blocks(kIndexerEntryGroups * 4) >= 2 * n_sms
            ? launch_indexer_scores<4>(p, scores, softmax_scale, weights_scale, max_smem, stream)
        : blocks(kIndexerEntryGroups * 2) >= 2 * n_sms
            ? launch_indexer_scores<2>(p, scores, softmax_scale, weights_scale, max_smem, stream)
            : launch_indexer_scores<1>(p, scores, softmax_scale, weights_scale, max_smem, stream);
    if (!s.ok()) {
      (void)cudaFreeAsync(scores, stream);
      return s;
    }
  }
  indexer_select_kernel<<<unsigned(p.n_tokens), kIndexerSelectThreads, 0, stream>>>(
      scores, p.positions, p.selected, p.n_entries, p.ratio, p.topk);
  DSV4_CUDA_LAUNCH_CHECK();
  if (scores) DSV4_CUDA_TRY(cudaFreeAsync(scores, stream));
  return {};
}

}  // namespace dsv4::cuda
