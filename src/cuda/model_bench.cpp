// bench_model (model_bench.h): the device line, the ceilings (1 GiB device-to-device copy, cuBLAS
// BF16 GEMM 8192³, bench_util.h), then the harness on make_cuda_backend.
#include "cuda/model_bench.h"

#include <cublas_v2.h>

#include "core/human_bytes.h"
#include "cuda/bench_util.h"
#include "cuda/check.h"
#include "cuda/cuda_backend.h"

namespace dsv4::cuda {

Status bench_model(const ModelBenchOptions& opt) {
  if (device_count() == 0) return Status::error("bench model: no CUDA device; expected a Hopper GPU");
  cudaDeviceProp prop{};
  DSV4_CUDA_TRY(cudaGetDeviceProperties(&prop, 0));
  BenchCeilings ceilings;
  {
    cublasHandle_t h;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) return Status::error("bench model: cublasCreate failed");
    const Result<DeviceCeilings> c = measure_ceilings(h);
    cublasDestroy(h);
    DSV4_RETURN_IF_ERROR(c.status());
    ceilings = {c->copy_gbs, c->gemm_tflops};
  }
  fmt::print("device: {} ({} SMs, L2 {} MB, {} memory)\n", prop.name, prop.multiProcessorCount,
             prop.l2CacheSize >> 20, human_bytes(int64_t(prop.totalGlobalMem)));
  fmt::print("measured: copy {:.0f} GB/s (1 GiB D2D, read+write); cuBLAS BF16 GEMM 8192^3 {:.0f} TFLOP/s\n",
             ceilings.copy_gbs, ceilings.gemm_tflops);
  return run_model_bench(
      opt, [] { return make_cuda_backend(); }, ceilings);
}

}  // namespace dsv4::cuda
