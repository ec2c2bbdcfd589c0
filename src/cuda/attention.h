// attention on the GPU: the contract of src/ops/attention.h with device pointers, on the tensor
// cores (attention.cuh). One kernel serves prefill and decode; the plan picks, per call, whether the
// kv pool is first converted to BF16 (when its rows are read many times over) and how many CTAs
// share each token's rows (split-KV, when the tokens alone cannot fill the GPU).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "ops/attention.h"

namespace dsv4::cuda {

struct AttentionPlan {
  int head_dim_tile = 0;       // the kernel's head_dim (128 or 512), zero-padded past head_dim
  bool kv_bf16 = false;        // convert the pool to BF16 in the workspace first
  int n_splits = 1;            // CTAs per (token, 64 heads); > 1: partials, then a combine kernel
  size_t workspace_bytes = 0;  // the BF16 pool and the partials
};

// The launch attention() makes for p on the current device; a pure function of the sizes and the
// device's SM count (p's pointers are not read), so a call with the same sizes repeats the same
// arithmetic.
Result<AttentionPlan> attention_plan(const AttentionParams& p);

// head_dim ≤ 512. kv_idx lives on the device and is not range-checked here: an entry outside
// [0, n_kv) is skipped like −1 rather than read out of bounds. workspace: ≥ the plan's
// workspace_bytes, device memory this call may overwrite (nothing when 0).
Status attention(const AttentionParams& p, void* workspace, size_t workspace_bytes, cudaStream_t stream);

}  // namespace dsv4::cuda
