// Launch shape of the cluster-based mHC mix kernels (mhc_pre, hyper_head; mhc_common.cuh): tokens
// per block, float4 or scalar loads, and the cluster size that spreads a few tiles over the GPU.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>

#include "core/status.h"
#include "cuda/check.h"
#include "cuda/mhc_common.cuh"

namespace dsv4::cuda {

struct MhcGrid {
  int token_tile = 1;  // kTok: 1 below kMhcTokenTile tokens (no idle token slots), else kMhcTokenTile
  int vec = 4;         // kVec: 4 when d_model % 4 == 0 and every pointer is 16-byte aligned, else 1
  int cluster = 1;     // blocks per tile, 1…kMhcMaxCluster: enough to give every SM a block
  unsigned blocks = 0;
};

// Scalar loads are the fallback for odd widths; they keep one token per block.
inline Result<MhcGrid> mhc_grid(int64_t n_tokens, int64_t d_model,
                                std::initializer_list<const void*> pointers) {
  MhcGrid g;
  for (const void* ptr : pointers)
    if (reinterpret_cast<uintptr_t>(ptr) % 16 != 0) g.vec = 1;
  if (d_model % 4 != 0) g.vec = 1;
  g.token_tile = g.vec == 4 && n_tokens >= kMhcTokenTile ? kMhcTokenTile : 1;
  const int64_t tiles = (n_tokens + g.token_tile - 1) / g.token_tile;
  const int n_sms = sm_count();
  g.cluster = int(std::clamp<int64_t>((n_sms + tiles - 1) / tiles, 1, kMhcMaxCluster));
  if (tiles * g.cluster > int64_t(1) << 31)
    return Status::errorf("mHC launch: {} tokens; expected fewer than 2^31 tiles", n_tokens);
  g.blocks = unsigned(tiles * g.cluster);
  return g;
}

// A launch of g.blocks blocks of kMhcThreads threads in clusters of g.cluster.
template <typename... Params, typename... Args>
Status launch_mhc_cluster(void (*kernel)(Params...), const MhcGrid& g, cudaStream_t stream, Args... args) {
  cudaLaunchAttribute cluster{};
  cluster.id = cudaLaunchAttributeClusterDimension;
  cluster.val.clusterDim.x = unsigned(g.cluster);
  cluster.val.clusterDim.y = 1;
  cluster.val.clusterDim.z = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(g.blocks);
  config.blockDim = dim3(kMhcThreads);
  config.stream = stream;
  config.attrs = &cluster;
  config.numAttrs = 1;
  DSV4_CUDA_TRY(cudaLaunchKernelEx(&config, kernel, Params(args)...));
  return {};
}

}  // namespace dsv4::cuda
