// compressor on the GPU: the contract of src/ops/compressor.h with device pointers (prefill:
// many windows at once; decode: the model calls it with the one window a step completes).
#pragma once

#include <cuda_runtime.h>

#include "ops/compressor.h"

namespace dsv4::cuda {

Status compressor(const CompressorParams& p, cudaStream_t stream);

}  // namespace dsv4::cuda
