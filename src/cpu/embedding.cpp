// CPU reference of `embedding`: one exact row dequantization per token.
#include "ops/embedding.h"

namespace dsv4 {

Status check_embedding(const EmbeddingParams& p) {
  if (!p.ids || !p.out || !p.table.data) return Status::error("embedding: null ids, output or table");
  for (int64_t t = 0; t < p.n_tokens; ++t)
    if (p.ids[t] < 0 || p.ids[t] >= p.table.rows)
      return Status::errorf("embedding: token {} has id {}; expected 0 <= id < {}", t, p.ids[t],
                            p.table.rows);
  return {};
}

namespace cpu {

void embedding(const EmbeddingParams& p) {
  for (int64_t t = 0; t < p.n_tokens; ++t) dequantize_row(p.table, p.ids[t], p.out + t * p.table.cols);
}

}  // namespace cpu
}  // namespace dsv4
