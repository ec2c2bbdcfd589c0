// Launcher of rms_norm (see rms_norm.cuh): the row team from dim (about 4 groups of kVec per
// thread), rows per block up to kRmsNormThreads threads, 16-byte loads when the rows allow them.
#include <algorithm>
#include <cstdint>

#include "cuda/check.h"
#include "cuda/rms_norm.cuh"
#include "cuda/rms_norm.h"

namespace dsv4::cuda {
namespace {

template <int kVec>
Status launch(const RmsNormParams& p, cudaStream_t stream) {
  const int64_t groups = p.dim / kVec, per_thread = 4;
  const int team =
      int(std::clamp<int64_t>((groups + 32 * per_thread - 1) / (32 * per_thread) * 32, 32, kRmsNormMaxTeam));
  // Short rows share a block, but never so many that a few rows leave SMs idle.
  const int n_sms = sm_count();
  const int rows_per_block =
      int(std::clamp<int64_t>((p.n_rows + n_sms - 1) / n_sms, 1, std::max(1, kRmsNormThreads / team)));
  const int64_t blocks = (p.n_rows + rows_per_block - 1) / rows_per_block;
  if (blocks >= int64_t(1) << 31)
    return Status::errorf("rms_norm: {} rows; expected fewer than 2^31 blocks of {}", p.n_rows,
                          rows_per_block);
  rms_norm_kernel<kVec><<<unsigned(blocks), dim3(unsigned(team), unsigned(rows_per_block)), 0, stream>>>(
      p.x, p.weight, p.y, p.n_rows, p.dim, p.eps);
  DSV4_CUDA_LAUNCH_CHECK();
  return {};
}

bool aligned16(const void* ptr) {
  return reinterpret_cast<uintptr_t>(ptr) % 16 == 0;
}

}  // namespace

Status rms_norm(const RmsNormParams& p, cudaStream_t stream) {
  DSV4_RETURN_IF_ERROR(check_rms_norm(p));
  if (p.n_rows == 0) return {};
  const bool vec = p.dim % 4 == 0 && aligned16(p.x) && aligned16(p.y) && aligned16(p.weight);
  return vec ? launch<4>(p, stream) : launch<1>(p, stream);
}

}  // namespace dsv4::cuda
