// bench_linear (linear_bench.h): floor = max(bytes / copy bandwidth, flops / cuBLAS BF16 rate),
// both measured here; peer = the same GEMM in BF16 through cuBLAS. Weights rotate over enough
// copies (≥ 200 MB) that L2 (50 MB) cannot hold them between launches of the same copy.
#include <cublas_v2.h>
#include <cuda_bf16.h>

#include <algorithm>
#include <random>
#include <vector>

#include "cuda/bench_util.h"
#include "cuda/check.h"
#include "cuda/device_buffer.h"
#include "cuda/linear_bench.h"
#include "cuda/linear_sm90.h"

namespace dsv4::cuda {
namespace {

struct Shape {
  const char* name;
  int64_t rows, cols;
};

std::vector<Shape> shapes_of(const std::string& s) {
  if (s == "flash") return {{"flash.w1", 2048, 4096}, {"flash.w2", 4096, 2048}};
  if (s == "pro") return {{"pro.w1", 3072, 7168}, {"pro.w2", 7168, 3072}};
  return {};
}

}  // namespace

Status bench_linear(const LinearBenchOptions& opt) {
  DSV4_ASSIGN_OR_RETURN(const BenchDevice dev, open_bench_device("bench linear"));
  cublasHandle_t h = dev.cublas.get();
  const double copy_gbs = dev.ceilings.copy_gbs, gemm_tflops = dev.ceilings.gemm_tflops;
  fmt::print("op params | µs | GB/s | TFLOP/s | % of floor | x peer\n");

  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 0.05f);
  for (const std::string& shape_name : opt.shapes)
    for (const Shape& sh : shapes_of(shape_name))
      for (const WeightFormat f : opt.formats) {
        std::vector<float> w(size_t(sh.rows * sh.cols));
        for (auto& v : w) v = dist(rng);
        const QuantizedWeight q = quantize_weight(f, w.data(), sh.rows, sh.cols);
        DSV4_ASSIGN_OR_RETURN(const PackedLinearWeight p, pack_linear_weight_sm90(q.view()));
        const size_t wbytes = p.data.size() + p.scales.size();
        const int copies = int(std::max<size_t>(2, (kRotateBytes + wbytes - 1) / wbytes));
        std::vector<DeviceBuffer<uint8_t>> dd, ds;
        std::vector<PackedWeightView> views;
        for (int i = 0; i < copies; ++i) {
          DSV4_ASSIGN_OR_RETURN(auto d, DeviceBuffer<uint8_t>::create(p.data.size()));
          DSV4_ASSIGN_OR_RETURN(auto s, DeviceBuffer<uint8_t>::create(std::max<size_t>(1, p.scales.size())));
          DSV4_RETURN_IF_ERROR(d.upload(p.data));
          if (!p.scales.empty()) DSV4_RETURN_IF_ERROR(s.upload(p.scales));
          views.push_back({p.format, p.rows, p.cols, p.rows_pad, p.cols_pad, d.get(), s.get(), p.out_scale});
          dd.push_back(std::move(d));
          ds.push_back(std::move(s));
        }
        const size_t peer_bytes = size_t(sh.rows * sh.cols) * 2;
        const int peer_copies = int(std::max<size_t>(2, (kRotateBytes + peer_bytes - 1) / peer_bytes));
        std::vector<DeviceBuffer<__nv_bfloat16>> pw;
        for (int i = 0; i < peer_copies; ++i) {
          DSV4_ASSIGN_OR_RETURN(auto b, DeviceBuffer<__nv_bfloat16>::create(size_t(sh.rows * sh.cols)));
          fill_random(b.get(), size_t(sh.rows * sh.cols), 10 + uint32_t(i));
          pw.push_back(std::move(b));
        }
        DSV4_CUDA_LAUNCH_CHECK();
        for (const int64_t t : opt.tokens) {
          DSV4_ASSIGN_OR_RETURN(auto x, DeviceBuffer<float>::create(size_t(t * sh.cols)));
          DSV4_ASSIGN_OR_RETURN(auto xb, DeviceBuffer<__nv_bfloat16>::create(size_t(t * sh.cols)));
          DSV4_ASSIGN_OR_RETURN(auto y, DeviceBuffer<float>::create(size_t(t * sh.rows)));
          fill_random(x.get(), size_t(t * sh.cols), 3);
          fill_random(xb.get(), size_t(t * sh.cols), 4);
          DSV4_CUDA_LAUNCH_CHECK();
          std::vector<std::pair<LinearPath, double>> timed;  // path, µs
          for (const LinearPath path : opt.paths) {
            if (!linear_path_runs(path, f, t, 1)) continue;
            const size_t ws_bytes = linear_sm90_workspace_bytes(views[0], t, 1, path);
            DSV4_ASSIGN_OR_RETURN(auto ws, DeviceBuffer<uint8_t>::create(ws_bytes));
            DSV4_RETURN_IF_ERROR(linear_sm90_prepare_workspace(ws.get(), ws_bytes, nullptr));
            DSV4_CUDA_TRY(cudaDeviceSynchronize());  // the timing stream does not wait for the default one
            DSV4_ASSIGN_OR_RETURN(
                const double us, time_graph_us(copies, [&](int i, cudaStream_t st) {
                  LinearSm90Params lp{x.get(), views[size_t(i % copies)], y.get(), t, ws.get(), ws_bytes, h};
                  lp.path = path;
                  return linear_sm90(lp, st);
                }));
            timed.emplace_back(path, us);
          }
          DSV4_ASSIGN_OR_RETURN(const double peer_us, time_graph_us(peer_copies, [&](int i, cudaStream_t st) {
                                  return cublas_bf16_gemm(h, st, pw[size_t(i % peer_copies)].get(), xb.get(),
                                                          y.get(), sh.rows, sh.cols, t);
                                }));
          const double bytes = double(wbytes) + double(t * sh.cols * 4) + double(t * sh.rows * 4);
          const double flops = 2.0 * double(t) * double(sh.rows) * double(sh.cols);
          const double floor_us = std::max(bytes / (copy_gbs * 1e3), flops / (gemm_tflops * 1e6));
          for (const auto& [path, us] : timed)
            fmt::print(
                "linear format={} shape={} [{}, {}] n_tokens={}{} | {:.2f} | {:.0f} | {:.1f} | {:.0f}% | "
                "{:.2f}x\n",
                weight_format_name(f), sh.name, sh.rows, sh.cols, t,
                path == LinearPath::kAuto ? std::string() : fmt::format(" path={}", linear_path_name(path)),
                us, bytes / (us * 1e3), flops / (us * 1e6), 100.0 * floor_us / us, peer_us / us);
        }
      }
  return {};
}

}  // namespace dsv4::cuda
