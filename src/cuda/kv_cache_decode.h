// kv_cache_decode on the GPU: the contract of src/ops/kv_cache_decode.h with device pointers;
// one launch, CUDA-graph safe.
#pragma once

#include <cuda_runtime.h>

#include "ops/kv_cache_decode.h"

namespace dsv4::cuda {

Status kv_cache_decode(const KvCacheDecodeParams& p, cudaStream_t stream);

}  // namespace dsv4::cuda
