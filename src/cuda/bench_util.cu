// Timing helpers of bench_util.h.
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <utility>
#include <vector>

#include "core/human_bytes.h"
#include "cuda/bench_util.h"
#include "cuda/check.h"
#include "cuda/device_buffer.h"
#include "cuda/stream_priority.h"

namespace dsv4::cuda {
namespace {

constexpr int kWarmup = 5;
constexpr int kRuns = 25;

__device__ uint32_t hash_index(size_t i, uint32_t seed) {
  uint32_t h = uint32_t(i) * 2654435761u ^ seed;
  h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
  return h;
}
__global__ void fill_bf16_kernel(__nv_bfloat16* p, size_t n, uint32_t seed) {
  const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n)
    p[i] = __float2bfloat16_rn((float(hash_index(i, seed) & 0xFFFF) / 65536.0f - 0.5f) * 0.1f + 1e-3f);
}
__global__ void fill_f32_kernel(float* p, size_t n, uint32_t seed) {
  const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) p[i] = (float(hash_index(i, seed) & 0xFFFF) / 65536.0f - 0.5f) * 2.0f + 1e-3f;
}

}  // namespace

void fill_random(__nv_bfloat16* p, size_t n, uint32_t seed, cudaStream_t st) {
  if (n) fill_bf16_kernel<<<unsigned((n + 255) / 256), 256, 0, st>>>(p, n, seed);
}
void fill_random(float* p, size_t n, uint32_t seed, cudaStream_t st) {
  if (n) fill_f32_kernel<<<unsigned((n + 255) / 256), 256, 0, st>>>(p, n, seed);
}

Result<UniqueStream> create_stream() {
  cudaStream_t s = nullptr;
  DSV4_CUDA_TRY(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return UniqueStream(s);
}
Result<UniqueCublas> create_cublas() {
  cublasHandle_t h = nullptr;
  if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) return Status::error("cublasCreate failed");
  return UniqueCublas(h);
}
Result<UniqueEvent> create_event() {
  cudaEvent_t e = nullptr;
  DSV4_CUDA_TRY(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  return UniqueEvent(e);
}

Result<double> time_graph_us(int batch, const std::function<Status(int, cudaStream_t)>& f) {
  cudaStream_t st;  // the critical path: a bench's branch (create_stream) runs beside it at the default
  DSV4_CUDA_TRY(cudaStreamCreateWithPriority(&st, cudaStreamNonBlocking, critical_stream_priority()));
  for (int i = 0; i < kWarmup; ++i) DSV4_RETURN_IF_ERROR(f(i, st));
  DSV4_CUDA_TRY(cudaStreamSynchronize(st));
  DSV4_CUDA_TRY(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < batch; ++i) {
    const Status s = f(i, st);
    if (!s.ok()) {
      cudaGraph_t g;
      cudaStreamEndCapture(st, &g);
      return s;
    }
  }
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  DSV4_CUDA_TRY(cudaStreamEndCapture(st, &graph));
  DSV4_CUDA_TRY(cudaGraphInstantiate(&exec, graph, kGraphInstantiateFlags));
  cudaEvent_t a, b;
  DSV4_CUDA_TRY(cudaEventCreate(&a));
  DSV4_CUDA_TRY(cudaEventCreate(&b));
  DSV4_CUDA_TRY(cudaGraphLaunch(exec, st));
  std::vector<double> t;
  for (int r = 0; r < kRuns; ++r) {
    DSV4_CUDA_TRY(cudaEventRecord(a, st));
    DSV4_CUDA_TRY(cudaGraphLaunch(exec, st));
    DSV4_CUDA_TRY(cudaEventRecord(b, st));
    DSV4_CUDA_TRY(cudaEventSynchronize(b));
    float ms = 0;
    DSV4_CUDA_TRY(cudaEventElapsedTime(&ms, a, b));
    t.push_back(ms * 1e3 / batch);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(st);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

Status cublas_bf16_gemm(cublasHandle_t h, cudaStream_t st, const __nv_bfloat16* w, const __nv_bfloat16* x,
                        float* y, int64_t n, int64_t k, int64_t t) {
  const float alpha = 1.0f, beta = 0.0f;
  cublasSetStream(h, st);
  const cublasStatus_t s = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, int(n), int(t), int(k), &alpha, w,
                                        CUDA_R_16BF, int(k), x, CUDA_R_16BF, int(k), &beta, y, CUDA_R_32F,
                                        int(n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  if (s != CUBLAS_STATUS_SUCCESS) return Status::errorf("cublasGemmEx: {}", cublasGetStatusString(s));
  return {};
}

Result<DeviceCeilings> measure_ceilings(cublasHandle_t h) {
  DeviceCeilings c{};
  {
    const size_t bytes = size_t(1) << 30;
    DSV4_ASSIGN_OR_RETURN(auto a, DeviceBuffer<uint8_t>::create(bytes));
    DSV4_ASSIGN_OR_RETURN(auto b, DeviceBuffer<uint8_t>::create(bytes));
    DSV4_CUDA_TRY(cudaMemset(a.get(), 1, bytes));
    DSV4_ASSIGN_OR_RETURN(
        const double us, time_graph_us(1, [&](int, cudaStream_t st) -> Status {
          DSV4_CUDA_TRY(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, st));
          return {};
        }));
    c.copy_gbs = 2.0 * double(bytes) / (us * 1e3);
  }
  {
    const int64_t n = 8192;
    DSV4_ASSIGN_OR_RETURN(auto a, DeviceBuffer<__nv_bfloat16>::create(size_t(n * n)));
    DSV4_ASSIGN_OR_RETURN(auto b, DeviceBuffer<__nv_bfloat16>::create(size_t(n * n)));
    DSV4_ASSIGN_OR_RETURN(auto y, DeviceBuffer<float>::create(size_t(n * n)));
    fill_random(a.get(), size_t(n * n), 1);
    fill_random(b.get(), size_t(n * n), 2);
    DSV4_CUDA_LAUNCH_CHECK();
    const auto gemm = [&](int, cudaStream_t st) {
      return cublas_bf16_gemm(h, st, a.get(), b.get(), y.get(), n, n, n);
    };
    DSV4_ASSIGN_OR_RETURN(const double cold_us, time_graph_us(1, gemm));
    c.gemm_cold_tflops = 2.0 * double(n) * n * n / (cold_us * 1e6);
    const auto start = std::chrono::steady_clock::now();
    while (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() <
           kGemmWarmSeconds) {
      for (int i = 0; i < 50; ++i) DSV4_RETURN_IF_ERROR(gemm(i, nullptr));
      DSV4_CUDA_TRY(cudaStreamSynchronize(nullptr));
    }
    DSV4_ASSIGN_OR_RETURN(const double us, time_graph_us(1, gemm));
    c.gemm_tflops = 2.0 * double(n) * n * n / (us * 1e6);
  }
  return c;
}

Result<BenchDevice> open_bench_device(const std::string& bench) {
  if (device_count() == 0) return Status::errorf("{}: no CUDA device; expected a Hopper GPU", bench);
  BenchDevice d;
  DSV4_CUDA_TRY(cudaGetDeviceProperties(&d.prop, 0));
  auto cublas = create_cublas();
  if (!cublas.ok()) return Status::errorf("{}: {}", bench, cublas.status().message());
  d.cublas = std::move(*cublas);
  DSV4_ASSIGN_OR_RETURN(d.ceilings, measure_ceilings(d.cublas.get()));
  fmt::print("device: {} ({} SMs, L2 {} MB, {} memory)\n", d.prop.name, d.prop.multiProcessorCount,
             d.prop.l2CacheSize >> 20, human_bytes(int64_t(d.prop.totalGlobalMem)));
  fmt::print(
      "measured: copy {:.0f} GB/s (1 GiB D2D, read+write); cuBLAS BF16 GEMM 8192^3 {:.0f} TFLOP/s sustained "
      "(after {:.0f} s of it; cold {:.0f})\n",
      d.ceilings.copy_gbs, d.ceilings.gemm_tflops, kGemmWarmSeconds, d.ceilings.gemm_cold_tflops);
  return std::move(d);  // Result's converting constructor takes an rvalue
}

}  // namespace dsv4::cuda
