// mhc_post on the GPU: the contract of src/ops/mhc_post.h with device pointers.
#pragma once

#include <cuda_runtime.h>

#include "ops/mhc_post.h"

namespace dsv4::cuda {

// hc_mult must be 1…4 (DeepSeek-V4 uses 4).
Status mhc_post(const MhcPostParams& p, cudaStream_t stream);

}  // namespace dsv4::cuda
