// bench_model (model_bench.h): the device line, the ceilings (1 GiB device-to-device copy, cuBLAS
// BF16 GEMM 8192³, bench_util.h), then the harness on make_cuda_backend.
#include "cuda/model_bench.h"

#include "cuda/bench_util.h"
#include "cuda/cuda_backend.h"

namespace dsv4::cuda {

Status bench_model(const ModelBenchOptions& opt) {
  DSV4_ASSIGN_OR_RETURN(BenchDevice dev, open_bench_device("bench model"));
  dev.cublas.reset();  // the model's backend makes its own
  const BenchCeilings ceilings{dev.ceilings.copy_gbs, dev.ceilings.gemm_tflops};
  return run_model_bench(
      opt, [] { return make_cuda_backend(); }, ceilings);
}

}  // namespace dsv4::cuda
