// bench_moe (moe_bench.h). Routing: each token picks top_k distinct experts uniformly at random
// (several routings rotate so consecutive calls do not find their experts in L2). Every expert
// has its own copy of the weights (one random packed expert replicated), so touched experts are
// distinct memory. floor = max(bytes / copy bandwidth, flops / cuBLAS BF16 rate), bytes = touched
// experts' packed weights + x + y; peer = per touched expert, gate|up and down GEMMs in BF16
// through cuBLAS on the same token counts (the SwiGLU and the combine not counted).
#include <algorithm>
#include <random>
#include <set>

#include "cuda/bench_util.h"
#include "cuda/check.h"
#include "cuda/device_buffer.h"
#include "cuda/linear_sm90.h"
#include "cuda/moe_bench.h"
#include "cuda/moe_experts_sm90.h"

namespace dsv4::cuda {
namespace {

struct MoeShape {
  const char* name;
  int64_t d_model, d_ff, n_experts, top_k;
};

constexpr size_t kRotateBytes = size_t(200) << 20;
constexpr size_t kPeerBytesMax = size_t(20) << 30;

struct Routing {
  std::vector<int32_t> ids;         // [n_tokens, top_k]
  std::vector<int64_t> per_expert;  // tokens per expert
  int64_t touched = 0;
};

Routing random_routing(int64_t T, const MoeShape& s, std::mt19937& rng) {
  Routing r;
  r.ids.resize(size_t(T * s.top_k));
  r.per_expert.assign(size_t(s.n_experts), 0);
  std::vector<int32_t> order(size_t(s.n_experts));
  for (size_t i = 0; i < order.size(); ++i) order[i] = int32_t(i);
  for (int64_t t = 0; t < T; ++t) {
    for (int64_t j = 0; j < s.top_k; ++j) {  // partial Fisher-Yates: k distinct experts
      std::uniform_int_distribution<int64_t> d(j, s.n_experts - 1);
      std::swap(order[size_t(j)], order[size_t(d(rng))]);
      r.ids[size_t(t * s.top_k + j)] = order[size_t(j)];
      ++r.per_expert[size_t(order[size_t(j)])];
    }
  }
  for (int64_t c : r.per_expert) r.touched += c > 0;
  return r;
}

}  // namespace

Status bench_moe(const MoeBenchOptions& opt) {
  if (device_count() == 0) return Status::error("bench moe: no CUDA device; expected a Hopper GPU");
  cudaDeviceProp prop{};
  DSV4_CUDA_TRY(cudaGetDeviceProperties(&prop, 0));
  cublasHandle_t h;
  if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) return Status::error("bench moe: cublasCreate failed");
  struct HandleGuard {
    cublasHandle_t h;
    ~HandleGuard() { cublasDestroy(h); }
  } guard{h};
  DSV4_ASSIGN_OR_RETURN(const DeviceCeilings ceil, measure_ceilings(h));
  fmt::print("device: {} ({} SMs, L2 {} MB)\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
  fmt::print("measured: copy {:.0f} GB/s (1 GiB D2D, read+write); cuBLAS BF16 GEMM 8192^3 {:.0f} TFLOP/s\n",
             ceil.copy_gbs, ceil.gemm_tflops);
  fmt::print("op params | µs | GB/s | TFLOP/s | % of floor | x peer\n");

  std::mt19937 rng(7);
  for (const std::string& shape_name : opt.shapes) {
    const MoeShape s =
        shape_name == "pro" ? MoeShape{"pro", 7168, 3072, 384, 6} : MoeShape{"flash", 4096, 2048, 256, 6};
    const int64_t D = s.d_model, I = s.d_ff, E = s.n_experts, k = s.top_k;
    // One random expert, packed, replicated into every expert's own device memory.
    std::vector<PackedLinearWeight> packed;
    size_t expert_bytes = 0;
    for (int m = 0; m < 3; ++m) {
      const int64_t rows = m == 2 ? D : I, cols = m == 2 ? I : D;
      std::vector<float> w(size_t(rows * cols));
      uint64_t st = 0x9E3779B97F4A7C15ull + uint64_t(m);
      for (auto& v : w) {
        st ^= st << 13, st ^= st >> 7, st ^= st << 17;
        v = (float(uint32_t(st >> 40)) / float(1 << 24) - 0.5f) * 0.17f;
      }
      const QuantizedWeight q = quantize_weight(opt.format, w.data(), rows, cols);
      DSV4_ASSIGN_OR_RETURN(PackedLinearWeight p, pack_linear_weight_sm90(q.view()));
      expert_bytes += p.data.size() + p.scales.size();
      packed.push_back(std::move(p));
    }
    DSV4_ASSIGN_OR_RETURN(auto all, DeviceBuffer<uint8_t>::create(expert_bytes * size_t(E)));
    std::vector<MoeExpertSm90> table(static_cast<size_t>(E));
    {
      size_t off = 0;
      for (int m = 0; m < 3; ++m) {
        DSV4_RETURN_IF_ERROR(all.upload(packed[size_t(m)].data, off));
        table[0].data[m] = all.get() + off;
        off += packed[size_t(m)].data.size();
        DSV4_RETURN_IF_ERROR(all.upload(packed[size_t(m)].scales, off));
        table[0].scales[m] = all.get() + off;
        off += packed[size_t(m)].scales.size();
        table[0].out_scale[m] = packed[size_t(m)].out_scale;
      }
      for (int64_t e = 1; e < E; ++e) {
        DSV4_CUDA_TRY(cudaMemcpy(all.get() + size_t(e) * expert_bytes, all.get(), expert_bytes,
                                 cudaMemcpyDeviceToDevice));
        for (int m = 0; m < 3; ++m) {
          table[size_t(e)].data[m] = table[0].data[m] + size_t(e) * expert_bytes;
          table[size_t(e)].scales[m] = table[0].scales[m] + size_t(e) * expert_bytes;
          table[size_t(e)].out_scale[m] = table[0].out_scale[m];
        }
      }
    }
    DSV4_ASSIGN_OR_RETURN(auto d_table, DeviceBuffer<MoeExpertSm90>::create(table.size()));
    DSV4_RETURN_IF_ERROR(d_table.upload(table));

    for (const int64_t T : opt.tokens) {
      // Routings: enough that the rotation touches ≥ kRotateBytes of distinct experts.
      std::vector<Routing> routings{random_routing(T, s, rng)};
      const size_t touched_bytes = size_t(routings[0].touched) * expert_bytes;
      const int n_rot = int(std::clamp<size_t>((kRotateBytes + touched_bytes - 1) / touched_bytes, 1, 8));
      while (int(routings.size()) < n_rot) routings.push_back(random_routing(T, s, rng));
      double touched = 0;
      for (const Routing& r : routings) touched += double(r.touched) / n_rot;
      std::vector<DeviceBuffer<int32_t>> d_ids;
      for (const Routing& r : routings) {
        DSV4_ASSIGN_OR_RETURN(auto b, DeviceBuffer<int32_t>::create(r.ids.size()));
        DSV4_RETURN_IF_ERROR(b.upload(r.ids));
        d_ids.push_back(std::move(b));
      }
      DSV4_ASSIGN_OR_RETURN(auto x, DeviceBuffer<float>::create(size_t(T * D)));
      DSV4_ASSIGN_OR_RETURN(auto y, DeviceBuffer<float>::create(size_t(T * D)));
      DSV4_ASSIGN_OR_RETURN(auto wts, DeviceBuffer<float>::create(size_t(T * k)));
      fill_random(x.get(), size_t(T * D), 3);
      fill_random(wts.get(), size_t(T * k), 4);
      DSV4_CUDA_LAUNCH_CHECK();
      const size_t ws_bytes = moe_experts_sm90_workspace_bytes(T, D, I, E, k);
      DSV4_ASSIGN_OR_RETURN(auto ws, DeviceBuffer<uint8_t>::create(ws_bytes));
      DSV4_ASSIGN_OR_RETURN(const double us, time_graph_us(n_rot, [&](int i, cudaStream_t st) {
                              MoeExpertsSm90Params p;
                              p.x = x.get();
                              p.expert_ids = d_ids[size_t(i % n_rot)].get();
                              p.weights = wts.get();
                              p.table = d_table.get();
                              p.format = opt.format;
                              p.y = y.get();
                              p.n_tokens = T, p.d_model = D, p.d_ff = I, p.n_experts = E, p.top_k = k;
                              p.swiglu_limit = 10.0f;
                              p.workspace = ws.get();
                              p.workspace_bytes = ws_bytes;
                              return moe_experts_sm90(p, st);
                            }));

      // Peer: BF16 experts (distinct memory up to kPeerBytesMax, then reused), routing 0's counts.
      const Routing& r0 = routings[0];
      const size_t peer_expert = size_t(3 * I * D);  // elements: w1|w3 [2I, D], w2 [D, I]
      const int64_t n_peer = std::min<int64_t>(r0.touched, int64_t(kPeerBytesMax / (peer_expert * 2)));
      DSV4_ASSIGN_OR_RETURN(auto pw, DeviceBuffer<__nv_bfloat16>::create(size_t(n_peer) * peer_expert));
      fill_random(pw.get(), pw.size(), 5);
      DSV4_ASSIGN_OR_RETURN(auto px, DeviceBuffer<__nv_bfloat16>::create(size_t(T * k * D)));
      DSV4_ASSIGN_OR_RETURN(auto pa, DeviceBuffer<__nv_bfloat16>::create(size_t(T * k * I)));
      DSV4_ASSIGN_OR_RETURN(auto py, DeviceBuffer<float>::create(size_t(T * k) * size_t(std::max(2 * I, D))));
      fill_random(px.get(), px.size(), 6);
      fill_random(pa.get(), pa.size(), 7);
      DSV4_CUDA_LAUNCH_CHECK();
      DSV4_ASSIGN_OR_RETURN(
          const double peer_us, time_graph_us(1, [&](int, cudaStream_t st) -> Status {
            int64_t pos = 0, slot = 0;
            for (int64_t e = 0; e < E; ++e) {
              const int64_t n = r0.per_expert[size_t(e)];
              if (n == 0) continue;
              const __nv_bfloat16* w = pw.get() + size_t(slot++ % n_peer) * peer_expert;
              DSV4_RETURN_IF_ERROR(cublas_bf16_gemm(h, st, w, px.get() + pos * D, py.get(), 2 * I, D, n));
              DSV4_RETURN_IF_ERROR(
                  cublas_bf16_gemm(h, st, w + 2 * I * D, pa.get() + pos * I, py.get(), D, I, n));
              pos += n;
            }
            return {};
          }));
      const double bytes = touched * double(expert_bytes) + 2.0 * double(T * D * 4);
      const double flops = 2.0 * double(T * k) * 3.0 * double(D) * double(I);
      const double floor_us = std::max(bytes / (ceil.copy_gbs * 1e3), flops / (ceil.gemm_tflops * 1e6));
      fmt::print(
          "moe shape={} format={} n_tokens={} experts_touched={:.1f} | {:.2f} | {:.0f} | {:.1f} | {:.0f}% | "
          "{:.2f}x\n",
          s.name, weight_format_name(opt.format), T, touched, us, bytes / (us * 1e3), flops / (us * 1e6),
          100.0 * floor_us / us, peer_us / us);
    }
  }
  return {};
}

}  // namespace dsv4::cuda
