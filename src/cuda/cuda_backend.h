// The CUDA backend: the Backend interface (src/model/backend.h) over the kernels of src/cuda/.
// Every pointer in the params is device memory; ops are enqueued on the backend's stream and the
// caller synchronises. moe_experts takes expert views packed for the GPU (packed_expert_view in
// cuda/moe_experts_sm90.h). linear is not wired yet and returns an error Status.
#pragma once

#include <cuda_runtime.h>

#include <memory>

#include "model/backend.h"

namespace dsv4 {

std::unique_ptr<Backend> make_cuda_backend(cudaStream_t stream = nullptr);

}  // namespace dsv4
