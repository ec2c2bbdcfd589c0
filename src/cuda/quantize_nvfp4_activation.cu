// Launcher of quantize_nvfp4_activation (kernel in quantize_nvfp4_activation.cuh).
#include "cuda/check.h"
#include "cuda/quantize_nvfp4_activation.cuh"
#include "cuda/quantize_nvfp4_activation.h"

namespace dsv4::cuda {

Status quantize_nvfp4_activation(const QuantizeNvfp4ActivationParams& p, uint32_t* counters,
                                 cudaStream_t stream) {
  DSV4_RETURN_IF_ERROR(check_quantize_nvfp4_activation(p));
  if (!counters) return Status::error("quantize_nvfp4_activation (cuda): null counters");
  if (reinterpret_cast<uintptr_t>(p.x) % 16 != 0 || reinterpret_cast<uintptr_t>(p.codes) % 8 != 0)
    return Status::error("quantize_nvfp4_activation (cuda): expected x 16-byte and codes 8-byte aligned");
  const int64_t n = p.rows * p.cols;
  if (n == 0) {  // the CPU's global scale of an empty tensor
    DSV4_CUDA_TRY(cudaMemsetAsync(p.global_scale, 0, sizeof(float), stream));
    return {};
  }
  nvfp4_act::Args a{};
  a.x = p.x;
  a.codes = p.codes;
  a.block_scales = p.block_scales;
  a.global_scale = p.global_scale;
  a.counters = counters;
  a.n = n;
  const int64_t n_amax = (n + nvfp4_act::kAmaxChunk - 1) / nvfp4_act::kAmaxChunk;
  const int64_t n_quant = (n / nvfp4_act::kBlock + nvfp4_act::kThreads - 1) / nvfp4_act::kThreads;
  if (n_amax + n_quant > INT32_MAX)
    return Status::errorf("quantize_nvfp4_activation (cuda): {} elements; expected fewer than 2^43", n);
  a.n_amax = uint32_t(n_amax);
  a.n_quant = uint32_t(n_quant);
  nvfp4_act::quantize_nvfp4_activation_kernel<<<unsigned(n_amax + n_quant), nvfp4_act::kThreads, 0, stream>>>(
      a);
  DSV4_CUDA_LAUNCH_CHECK();
  return {};
}

}  // namespace dsv4::cuda
