// attention on the GPU: the contract of src/ops/attention.h with device pointers; one kernel
// serves decode (few tokens) and prefill (many tokens): the grid is one block per (token, head).
#pragma once

#include <cuda_runtime.h>

#include "ops/attention.h"

namespace dsv4::cuda {

// head_dim ≤ 512. kv_idx lives on the device and is not range-checked here: an entry outside
// [0, n_kv) is skipped like −1 rather than read out of bounds.
Status attention(const AttentionParams& p, cudaStream_t stream);

}  // namespace dsv4::cuda
