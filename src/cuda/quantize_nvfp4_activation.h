// quantize_nvfp4_activation on the GPU: the contract of src/ops/quantize_nvfp4_activation.h with
// device pointers, one launch, no host synchronisation, CUDA-graph safe.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "ops/quantize_nvfp4_activation.h"

namespace dsv4::cuda {

// The launch's counters (tickets, arrivals, amax bits): zero before the first call (allocate them
// zeroed); every call leaves them zero again.
constexpr int kQuantizeNvfp4Counters = 4;

// Needs x 16-byte aligned and codes 8-byte aligned.
Status quantize_nvfp4_activation(const QuantizeNvfp4ActivationParams& p, uint32_t* counters,
                                 cudaStream_t stream);

}  // namespace dsv4::cuda
