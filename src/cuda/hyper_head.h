// hyper_head on the GPU: the contract of src/ops/hyper_head.h with device pointers.
#pragma once

#include <cuda_runtime.h>

#include "ops/hyper_head.h"

namespace dsv4::cuda {

// hc_mult must be 1…4 (DeepSeek-V4 uses 4).
Status hyper_head(const HyperHeadParams& p, cudaStream_t stream);

}  // namespace dsv4::cuda
