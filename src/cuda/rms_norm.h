// rms_norm on the GPU: the contract of src/ops/rms_norm.h with device pointers.
#pragma once

#include <cuda_runtime.h>

#include "ops/rms_norm.h"

namespace dsv4::cuda {

Status rms_norm(const RmsNormParams& p, cudaStream_t stream);

}  // namespace dsv4::cuda
