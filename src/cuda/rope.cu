// Launcher of rope (see rope.cuh).
#include "cuda/check.h"
#include "cuda/rope.cuh"
#include "cuda/rope.h"

namespace dsv4::cuda {

Status rope(const RopeParams& p, cudaStream_t stream) {
  DSV4_RETURN_IF_ERROR(check_rope(p));
  if (p.n_rows < 0 || p.n_heads <= 0)
    return Status::errorf("rope: {} rows of {} heads; expected a positive head count", p.n_rows, p.n_heads);
  if (p.n_rows == 0) return {};
  const int64_t threads = p.n_rows * ((p.n_heads + kRopeHeads - 1) / kRopeHeads) * (p.rope_dim / 2);
  const int64_t blocks = (threads + kRopeThreads - 1) / kRopeThreads;
  if (blocks >= int64_t(1) << 31)
    return Status::errorf("rope: {} rows of {} heads; expected fewer than 2^31 blocks", p.n_rows, p.n_heads);
  rope_kernel<<<unsigned(blocks), kRopeThreads, 0, stream>>>(p.x, p.positions, p.inv_freq, p.n_rows,
                                                             p.n_heads, p.head_dim, p.rope_dim, p.inverse);
  DSV4_CUDA_LAUNCH_CHECK();
  return {};
}

}  // namespace dsv4::cuda
