// Launcher of grouped_linear (see grouped_linear.cuh).
#include "cuda/check.h"
#include "cuda/dequantize.h"
#include "cuda/grouped_linear.cuh"
#include "cuda/grouped_linear.h"

namespace dsv4::cuda {

Status grouped_linear(const GroupedLinearParams& p, cudaStream_t stream) {
  DSV4_RETURN_IF_ERROR(check_grouped_linear(p));
  if (p.n_tokens < 0)
    return Status::errorf("grouped_linear: {} tokens; expected a non-negative count", p.n_tokens);
  if (p.n_tokens == 0 || p.w.rows == 0) return {};
  const dim3 grid(unsigned((p.w.rows + kGroupedLinearWarps - 1) / kGroupedLinearWarps),
                  unsigned((p.n_tokens + kGroupedLinearTokens - 1) / kGroupedLinearTokens));
  const unsigned threads = 32 * kGroupedLinearWarps;
  switch (p.w.format) {
    case WeightFormat::kF32:
      grouped_linear_kernel<<<grid, threads, 0, stream>>>(p.x, static_cast<const float*>(p.w.data), p.y,
                                                          p.n_tokens, p.n_groups, p.w.rows, p.w.cols, 1.0f);
      DSV4_CUDA_LAUNCH_CHECK();
      return {};
    case WeightFormat::kBF16:
      grouped_linear_kernel<<<grid, threads, 0, stream>>>(p.x, static_cast<const uint16_t*>(p.w.data), p.y,
                                                          p.n_tokens, p.n_groups, p.w.rows, p.w.cols, 1.0f);
      DSV4_CUDA_LAUNCH_CHECK();
      return {};
    default:
      break;
  }
  // Quantized formats: exact BF16 operand (NVFP4 without weight_scale_2), then the plain kernel.
  uint16_t* w_bf16 = nullptr;  // [rows, cols]
  DSV4_CUDA_TRY(cudaMallocAsync(reinterpret_cast<void**>(&w_bf16),
                                size_t(p.w.rows * p.w.cols) * sizeof(uint16_t), stream));
  const Status s = [&]() -> Status {
    DSV4_RETURN_IF_ERROR(dequantize_bf16(p.w, w_bf16, stream));
    const float global_scale = p.w.format == WeightFormat::kNVFP4 ? p.w.global_scale : 1.0f;
    grouped_linear_kernel<<<grid, threads, 0, stream>>>(p.x, w_bf16, p.y, p.n_tokens, p.n_groups, p.w.rows,
                                                        p.w.cols, global_scale);
    DSV4_CUDA_LAUNCH_CHECK();
    return {};
  }();
  DSV4_CUDA_TRY(cudaFreeAsync(w_bf16, stream));
  return s;
}

}  // namespace dsv4::cuda
