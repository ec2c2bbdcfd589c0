// embedding: out[t, :] = table[ids[t], :] in fp32 (dsv4-architecture.md §3 step 1; no scaling).
// GPU contract (cuda::embedding): exact, as the reference.
#pragma once

#include <cstdint>

#include "core/quant.h"
#include "core/status.h"

namespace dsv4 {

struct EmbeddingParams {
  const int32_t* ids = nullptr;  // [n_tokens], each in [0, table.rows)
  WeightView table;              // [vocab, d_model] (BF16 or F32 in checkpoints)
  float* out = nullptr;          // [n_tokens, d_model]
  int64_t n_tokens = 0;
};

Status check_embedding(const EmbeddingParams& p);

namespace cpu {
void embedding(const EmbeddingParams& p);
}  // namespace cpu

}  // namespace dsv4
