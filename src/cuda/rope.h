// rope on the GPU: the contract of src/ops/rope.h with device pointers (x, positions, inv_freq;
// the frequencies come from rope_inv_freq(), uploaded once).
#pragma once

#include <cuda_runtime.h>

#include "ops/rope.h"

namespace dsv4::cuda {

Status rope(const RopeParams& p, cudaStream_t stream);

}  // namespace dsv4::cuda
