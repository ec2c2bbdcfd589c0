// Launcher of rms_norm (see rms_norm.cuh).
#include "cuda/check.h"
#include "cuda/rms_norm.cuh"
#include "cuda/rms_norm.h"

namespace dsv4::cuda {

Status rms_norm(const RmsNormParams& p, cudaStream_t stream) {
  DSV4_RETURN_IF_ERROR(check_rms_norm(p));
  if (p.n_rows == 0) return {};
  rms_norm_kernel<<<unsigned(p.n_rows), kRmsNormThreads, 0, stream>>>(p.x, p.weight, p.y, p.dim, p.eps);
  DSV4_CUDA_LAUNCH_CHECK();
  return {};
}

}  // namespace dsv4::cuda
