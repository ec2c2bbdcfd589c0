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
  int64_t tiles = 0;   // clusters
  int n_sms = 0;
};

// Scalar loads are the fallback for odd widths; they keep one token per block.
inline Result<MhcGrid> mhc_grid(int64_t n_tokens, int64_t d_model,
                                std::initializer_list<const void*> pointers) {
  MhcGrid g;
  for (const void* ptr : pointers)
    if (reinterpret_cast<uintptr_t>(ptr) % 16 != 0) g.vec = 1;
  if (d_model % 4 != 0) g.vec = 1;
  g.token_tile = g.vec == 4 && n_tokens >= kMhcTokenTile ? kMhcTokenTile : 1;
  g.tiles = (n_tokens + g.token_tile - 1) / g.token_tile;
  int device = 0;
  DSV4_CUDA_TRY(cudaGetDevice(&device));
  DSV4_CUDA_TRY(cudaDeviceGetAttribute(&g.n_sms, cudaDevAttrMultiProcessorCount, device));
  return g;
}

// The largest cluster kKernel may use: kMhcWideCluster where the kernel may opt in to non-portable
// sizes and the device can place such a cluster (Hopper: 16 blocks in one GPC), else
// kMhcMaxCluster. Asked once per kernel (the first call runs eagerly, before any capture).
template <auto kKernel>
int mhc_largest_cluster() {
  static const int largest = [] {
    if (cudaFuncSetAttribute(kKernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1) != cudaSuccess) {
      cudaGetLastError();  // not an error of this launch: fall back to the portable size
      return kMhcMaxCluster;
    }
    cudaLaunchAttribute cluster{};
    cluster.id = cudaLaunchAttributeClusterDimension;
    cluster.val.clusterDim.x = kMhcWideCluster;
    cluster.val.clusterDim.y = 1;
    cluster.val.clusterDim.z = 1;
    cudaLaunchConfig_t config{};
    config.gridDim = dim3(kMhcWideCluster);
    config.blockDim = dim3(kMhcThreads);
    config.attrs = &cluster;
    config.numAttrs = 1;
    int clusters = 0;
    if (cudaOccupancyMaxActiveClusters(&clusters, kKernel, &config) != cudaSuccess || clusters < 1) {
      cudaGetLastError();
      return kMhcMaxCluster;
    }
    return kMhcWideCluster;
  }();
  return largest;
}

// kKernel over g.tiles clusters of kMhcThreads-thread blocks. Cluster size: enough blocks to give
// every SM one; the wide size only for ≤ 4 tiles (a GPC holds one such cluster of these
// one-block-per-SM kernels, but two of kMhcMaxCluster).
template <auto kKernel, typename... Args>
Status launch_mhc_cluster(const MhcGrid& g, cudaStream_t stream, Args... args) {
  const int size = g.tiles <= 4
                       ? mhc_largest_cluster<kKernel>()
                       : int(std::clamp<int64_t>((g.n_sms + g.tiles - 1) / g.tiles, 1, kMhcMaxCluster));
  if (g.tiles * size >= int64_t(1) << 31)
    return Status::errorf("mHC launch: {} tiles of tokens; expected fewer than 2^31 blocks", g.tiles);
  cudaLaunchAttribute cluster{};
  cluster.id = cudaLaunchAttributeClusterDimension;
  cluster.val.clusterDim.x = unsigned(size);
  cluster.val.clusterDim.y = 1;
  cluster.val.clusterDim.z = 1;
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(unsigned(g.tiles * size));
  config.blockDim = dim3(kMhcThreads);
  config.stream = stream;
  config.attrs = &cluster;
  config.numAttrs = 1;
  DSV4_CUDA_TRY(cudaLaunchKernelEx(&config, kKernel, args...));
  return {};
}

}  // namespace dsv4::cuda
