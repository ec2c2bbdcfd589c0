// Launcher of embedding (see embedding.cuh).
#include "cuda/check.h"
#include "cuda/embedding.cuh"
#include "cuda/embedding.h"

namespace dsv4::cuda {

Status embedding(const EmbeddingParams& p, cudaStream_t stream) {
  if (!p.ids || !p.out || !p.table.data) return Status::error("embedding: null ids, output or table");
  if (p.n_tokens < 0 || p.table.rows <= 0 || p.table.cols <= 0)
    return Status::errorf("embedding: {} tokens, table [{}, {}]; expected a non-empty table", p.n_tokens,
                          p.table.rows, p.table.cols);
  if (p.n_tokens == 0) return {};
  const WeightView& t = p.table;
  switch (t.format) {
    case WeightFormat::kF32:
      embedding_kernel<<<unsigned(p.n_tokens), kEmbeddingThreads, 0, stream>>>(
          p.ids, static_cast<const float*>(t.data), t.rows, t.cols, p.out);
      break;
    case WeightFormat::kBF16:
      embedding_kernel<<<unsigned(p.n_tokens), kEmbeddingThreads, 0, stream>>>(
          p.ids, static_cast<const uint16_t*>(t.data), t.rows, t.cols, p.out);
      break;
    default:
      return Status::errorf("embedding: table format {}; expected F32 or BF16",
                            std::string(weight_format_name(t.format)));
  }
  DSV4_CUDA_LAUNCH_CHECK();
  return {};
}

}  // namespace dsv4::cuda
