// grouped_linear on the GPU: the contract of src/ops/grouped_linear.h with device pointers
// (x, y, and the weight's data and scales).
#pragma once

#include <cuda_runtime.h>

#include "ops/grouped_linear.h"

namespace dsv4::cuda {

// F32 and BF16 weights are read directly; FP8/MXFP4/NVFP4 weights are first expanded to a
// stream-ordered BF16 workspace by dequantize_bf16 (exact) and scaled by weight_scale_2 on use.
Status grouped_linear(const GroupedLinearParams& p, cudaStream_t stream);

}  // namespace dsv4::cuda
