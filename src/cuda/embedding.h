// embedding on the GPU: the contract of src/ops/embedding.h with device pointers (ids, table,
// out); tables stored as F32 or BF16 (as in the checkpoints).
#pragma once

#include <cuda_runtime.h>

#include "ops/embedding.h"

namespace dsv4::cuda {

// The ids live on the device, so they are not range-checked here: a row whose id is outside
// [0, table.rows) is filled with NaN instead of reading out of bounds.
Status embedding(const EmbeddingParams& p, cudaStream_t stream);

}  // namespace dsv4::cuda
