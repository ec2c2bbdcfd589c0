// Timing helpers for the GPU benchmarks (STYLE.md "Benchmarks"): CUDA-graph timing with events
// (median of runs after warm-up) and the device ceilings measured in the same run.
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <functional>
#include <memory>
#include <string>

#include "core/status.h"

namespace dsv4::cuda {

// Timed runs rotate over copies of their weights (or caches) that together span at least this
// many bytes, 4x the H100's 50 MB L2, so each run reads from HBM as the model does.
constexpr size_t kRotateBytes = size_t(200) << 20;

// Median over 25 runs of (time of `batch` calls f(i, stream), captured once into a CUDA graph)
// / batch, in microseconds, after 5 warm-up calls outside the graph. The stream has
// critical_stream_priority(): a branch forked off it (create_stream) yields to it, as in the model.
Result<double> time_graph_us(int batch, const std::function<Status(int, cudaStream_t)>& f);

// The GEMM ceiling is taken after kGemmWarmSeconds of the same GEMM: under sustained tensor-core
// load the H100 reaches its power cap and lowers its clock (1980 → ~1710 MHz at ~690 W, measured),
// and the benchmarks' long graphs run in that state, so a first, cold run's burst rate would set
// their floors too low (docs/performance.md, "Ceilings under sustained load"). The cold rate is
// kept for the record.
constexpr double kGemmWarmSeconds = 2.0;
struct DeviceCeilings {
  double copy_gbs;          // 1 GiB device-to-device copy, bytes read + written
  double gemm_tflops;       // cuBLAS BF16 GEMM 8192³, fp32 accumulate and output, sustained
  double gemm_cold_tflops;  // the same, the process's first runs of it
};
Result<DeviceCeilings> measure_ceilings(cublasHandle_t h);

// What every GPU benchmark starts from: the device (a one-line error naming `bench` without one), a
// cuBLAS handle for the peers and the ceilings measured now, printed as the run's first two lines.
struct CublasDestroy {
  void operator()(cublasHandle_t h) const { cublasDestroy(h); }
};
using UniqueCublas = std::unique_ptr<cublasContext, CublasDestroy>;
Result<UniqueCublas> create_cublas();
struct BenchDevice {
  cudaDeviceProp prop{};
  UniqueCublas cublas;
  DeviceCeilings ceilings{};
};
Result<BenchDevice> open_bench_device(const std::string& bench);

// A non-blocking stream and an event without timing, for a bench's branch (a second stream forked
// off and joined back by events, as the CUDA backend's Backend::begin_branch).
struct StreamDestroy {
  void operator()(cudaStream_t s) const { cudaStreamDestroy(s); }
};
struct EventDestroy {
  void operator()(cudaEvent_t e) const { cudaEventDestroy(e); }
};
using UniqueStream = std::unique_ptr<CUstream_st, StreamDestroy>;
using UniqueEvent = std::unique_ptr<CUevent_st, EventDestroy>;
Result<UniqueStream> create_stream();
Result<UniqueEvent> create_event();

// y [t, n] fp32 = x [t, k] · w [n, k]ᵀ, BF16 operands, through cuBLAS on `st`.
Status cublas_bf16_gemm(cublasHandle_t h, cudaStream_t st, const __nv_bfloat16* w, const __nv_bfloat16* x,
                        float* y, int64_t n, int64_t k, int64_t t);

// Fills with hashed values in ±0.05 (BF16) or ±1 (fp32), never all zero.
void fill_random(__nv_bfloat16* p, size_t n, uint32_t seed, cudaStream_t st = nullptr);
void fill_random(float* p, size_t n, uint32_t seed, cudaStream_t st = nullptr);

}  // namespace dsv4::cuda
