// mhc_pre on the GPU: the contract of src/ops/mhc_pre.h with device pointers, fused in one kernel.
#pragma once

#include <cuda_runtime.h>

#include "ops/mhc_pre.h"

namespace dsv4::cuda {

// hc_mult must be 1…4 (DeepSeek-V4 uses 4).
Status mhc_pre(const MhcPreParams& p, cudaStream_t stream);

}  // namespace dsv4::cuda
