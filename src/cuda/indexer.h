// indexer on the GPU: the contract of src/ops/indexer.h with device pointers; the selected ids
// equal the CPU reference's exactly (the scores are computed in the same order, see indexer.cuh).
#pragma once

#include <cuda_runtime.h>

#include "ops/indexer.h"

namespace dsv4::cuda {

// Takes a stream-ordered workspace of n_tokens·n_entries floats (cudaMallocAsync).
Status indexer(const IndexerParams& p, cudaStream_t stream);

}  // namespace dsv4::cuda
