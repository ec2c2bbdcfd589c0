// compressor_decode on the GPU: the contract of src/ops/compressor_decode.h with device pointers;
// one launch, CUDA-graph safe.
#pragma once

#include <cuda_runtime.h>

#include "ops/compressor_decode.h"

namespace dsv4::cuda {

Status compressor_decode(const CompressorDecodeParams& p, cudaStream_t stream);

}  // namespace dsv4::cuda
