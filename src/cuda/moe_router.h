// moe_router on the GPU: the contract of src/ops/moe_router.h with device pointers, one warp per
// token, no host synchronisation. Differences forced by device memory: token ids (hash mode) and
// tid2eid entries cannot be checked on the host, so a token whose id or table entry is out of
// range gets expert id -1 and weight 0 for that slot (moe_experts skips such slots).
#pragma once

#include <cuda_runtime.h>

#include "ops/moe_router.h"

namespace dsv4::cuda {

// Largest n_experts / top_k the kernel holds (scores in shared memory, ids one per lane).
constexpr int64_t kMoeRouterMaxExperts = 1024;
constexpr int64_t kMoeRouterMaxTopK = 32;

Status moe_router(const MoeRouterParams& p, cudaStream_t stream);

}  // namespace dsv4::cuda
