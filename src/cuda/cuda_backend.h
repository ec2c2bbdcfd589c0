// The CUDA backend: the Backend interface (src/model/backend.h) over the kernels of src/cuda/.
// Every pointer in the params is device memory; ops and copies are enqueued on the backend's
// stream (nullptr: a non-blocking stream of the backend's own, so that decode steps can be
// captured as CUDA graphs) and download()/synchronize() wait for them. linear
// runs linear_sm90 on weights packed by upload_linear_weight (SGEMM for F32 ones); moe_experts
// takes the same packed views (cuda::packed_expert_view in cuda/moe_experts_sm90.h).
#pragma once

#include <cuda_runtime.h>

#include <memory>

#include "model/backend.h"

namespace dsv4 {

std::unique_ptr<Backend> make_cuda_backend(cudaStream_t stream = nullptr);

}  // namespace dsv4
