// bench_attention (attention_bench.h). The lists follow Model::attend_decode / attend_sequence:
// decode gives each sequence its own cache slot [window ring | E = context / ratio entries] with the
// ring full and every entry admissible (HCA lists them all, CSA a random top-k of them); prefill is
// one sequence from position 0, token i listing its window (oldest first) and the entries closed
// by then (HCA all, CSA a random top-k, −1 past them). Decode rotates enough copies of the pool that
// consecutive calls do not find it in L2. floor = max(bytes / copy bandwidth, flops / cuBLAS BF16
// rate) with bytes = q and out (fp32) + the kv rows read (fp32; prefill: the pool once) + the
// lists, flops = 4·n_heads·head_dim per listed row; peer = dense MQA through cuBLAS BF16, S = Q·Kᵀ
// then O = P·V with every token's heads against n_sel shared keys (no gather, no softmax).
#include <algorithm>
#include <numeric>
#include <random>

#include "cuda/attention.h"
#include "cuda/attention_bench.h"
#include "cuda/bench_util.h"
#include "cuda/check.h"
#include "cuda/device_buffer.h"

namespace dsv4::cuda {
namespace {

struct Shape {
  const char* name;
  int64_t n_heads, head_dim, window, topk;
};

struct Lists {
  int64_t n_kv = 0, n_sel = 0;
  std::vector<int32_t> idx;  // [n_tokens, n_sel]
  int64_t listed = 0;        // valid entries over all tokens
  int64_t pool_rows = 0;     // distinct rows read
};

int64_t ratio_of(const std::string& type) {
  return type == "csa" ? 4 : type == "hca" ? 128 : 0;
}

Lists decode_lists(const Shape& s, const std::string& type, int64_t batch, int64_t context,
                   std::mt19937& rng) {
  const int64_t ratio = ratio_of(type), E = ratio ? context / ratio : 0, per_slot = s.window + E;
  Lists l;
  l.n_kv = batch * per_slot;
  l.n_sel = s.window + (type == "hca" ? E : type == "csa" ? s.topk : 0);
  l.idx.assign(size_t(batch * l.n_sel), -1);
  std::vector<int32_t> entries(static_cast<size_t>(E));
  for (int64_t b = 0; b < batch; ++b) {
    int32_t* row = l.idx.data() + b * l.n_sel;
    const int32_t base = int32_t(b * per_slot);
    for (int64_t j = 0; j < std::min(s.window, context); ++j) row[j] = base + int32_t(j);
    std::iota(entries.begin(), entries.end(), base + int32_t(s.window));
    if (type == "csa") std::shuffle(entries.begin(), entries.end(), rng);
    const int64_t n_extra = type == "csa" ? std::min(s.topk, E) : type == "hca" ? E : 0;
    for (int64_t e = 0; e < n_extra; ++e) row[s.window + e] = entries[size_t(e)];
  }
  for (int32_t r : l.idx) l.listed += r >= 0;
  l.pool_rows = l.listed;
  return l;
}

Lists prefill_lists(const Shape& s, const std::string& type, int64_t n, std::mt19937& rng) {
  const int64_t ratio = ratio_of(type), E = ratio ? n / ratio : 0;
  Lists l;
  l.n_kv = n + E;
  l.n_sel = s.window + (type == "hca" ? E : type == "csa" ? s.topk : 0);
  l.idx.assign(size_t(n * l.n_sel), -1);
  std::vector<int32_t> picks;
  for (int64_t i = 0; i < n; ++i) {
    int32_t* row = l.idx.data() + i * l.n_sel;
    for (int64_t k = std::max<int64_t>(0, i - (s.window - 1)), j = 0; k <= i; ++k, ++j) row[j] = int32_t(k);
    const int64_t admissible = ratio ? std::min((i + 1) / ratio, E) : 0;
    picks.resize(size_t(admissible));
    std::iota(picks.begin(), picks.end(), int32_t(n));
    if (type == "csa") std::shuffle(picks.begin(), picks.end(), rng);
    const int64_t n_extra = type == "csa" ? std::min(s.topk, admissible) : admissible;
    for (int64_t e = 0; e < n_extra; ++e) row[s.window + e] = picks[size_t(e)];
  }
  for (int32_t r : l.idx) l.listed += r >= 0;
  l.pool_rows = l.n_kv;
  return l;
}

}  // namespace

Status bench_attention(const AttentionBenchOptions& opt) {
  DSV4_ASSIGN_OR_RETURN(const BenchDevice dev, open_bench_device("bench attention"));
  cublasHandle_t h = dev.cublas.get();
  const DeviceCeilings& ceil = dev.ceilings;
  fmt::print("peer = dense MQA GEMMs through cuBLAS BF16 (S = Q·Kᵀ, O = P·V over n_sel shared keys)\n");
  fmt::print("op params | µs | GB/s | TFLOP/s | % of floor | x peer\n");

  std::mt19937 rng(7);
  for (const std::string& shape_name : opt.shapes) {
    const Shape s =
        shape_name == "pro" ? Shape{"pro", 128, 512, 128, 1024} : Shape{"flash", 64, 512, 128, 512};
    const int64_t H = s.n_heads, hd = s.head_dim;
    struct Mode {
      bool decode;
      int64_t n;
    };
    std::vector<Mode> modes;
    for (int64_t b : opt.batches) modes.push_back({true, b});
    for (int64_t n : opt.prefills) modes.push_back({false, n});
    for (const Mode mode : modes) {
      for (const std::string& type : opt.types) {
        const int64_t T = mode.n;
        const Lists l =
            mode.decode ? decode_lists(s, type, T, opt.context, rng) : prefill_lists(s, type, T, rng);
        const size_t pool_bytes = size_t(l.n_kv * hd) * sizeof(float);
        const int n_rot = mode.decode ? int(std::clamp<size_t>(kRotateBytes / pool_bytes, 1, 16)) : 1;
        std::vector<DeviceBuffer<float>> pools;
        for (int r = 0; r < n_rot; ++r) {
          DSV4_ASSIGN_OR_RETURN(auto kv, DeviceBuffer<float>::create(size_t(l.n_kv * hd)));
          fill_random(kv.get(), kv.size(), 20 + uint32_t(r));
          pools.push_back(std::move(kv));
        }
        DSV4_ASSIGN_OR_RETURN(auto q, DeviceBuffer<float>::create(size_t(T * H * hd)));
        DSV4_ASSIGN_OR_RETURN(auto out, DeviceBuffer<float>::create(size_t(T * H * hd)));
        DSV4_ASSIGN_OR_RETURN(auto sinks, DeviceBuffer<float>::create(size_t(H)));
        DSV4_ASSIGN_OR_RETURN(auto idx, DeviceBuffer<int32_t>::create(l.idx.size()));
        fill_random(q.get(), q.size(), 3);
        fill_random(sinks.get(), sinks.size(), 4);
        DSV4_RETURN_IF_ERROR(idx.upload(l.idx));
        AttentionParams p{q.get(),
                          pools[0].get(),
                          idx.get(),
                          sinks.get(),
                          out.get(),
                          T,
                          H,
                          hd,
                          l.n_kv,
                          l.n_sel,
                          1.0f / std::sqrt(float(hd))};
        DSV4_ASSIGN_OR_RETURN(const AttentionPlan plan, attention_plan(p));
        DSV4_ASSIGN_OR_RETURN(auto ws,
                              DeviceBuffer<uint8_t>::create(std::max<size_t>(plan.workspace_bytes, 1)));
        DSV4_CUDA_LAUNCH_CHECK();
        DSV4_ASSIGN_OR_RETURN(const double us, time_graph_us(n_rot, [&](int i, cudaStream_t st) {
                                AttentionParams pi = p;
                                pi.kv = pools[size_t(i % n_rot)].get();
                                return attention(pi, ws.get(), ws.size(), st);
                              }));

        // Peer: the same heads against n_sel shared keys, dense.
        const int64_t M = T * H, N = l.n_sel;
        DSV4_ASSIGN_OR_RETURN(auto pq, DeviceBuffer<__nv_bfloat16>::create(size_t(M * hd)));
        DSV4_ASSIGN_OR_RETURN(auto pk, DeviceBuffer<__nv_bfloat16>::create(size_t(N * hd)));
        DSV4_ASSIGN_OR_RETURN(auto pp, DeviceBuffer<__nv_bfloat16>::create(size_t(M * N)));
        DSV4_ASSIGN_OR_RETURN(auto py, DeviceBuffer<float>::create(size_t(M * std::max(N, hd))));
        fill_random(pq.get(), pq.size(), 5);
        fill_random(pk.get(), pk.size(), 6);
        fill_random(pp.get(), pp.size(), 7);
        DSV4_CUDA_LAUNCH_CHECK();
        DSV4_ASSIGN_OR_RETURN(
            const double peer_us, time_graph_us(1, [&](int, cudaStream_t st) -> Status {
              DSV4_RETURN_IF_ERROR(cublas_bf16_gemm(h, st, pk.get(), pq.get(), py.get(), N, hd, M));
              return cublas_bf16_gemm(h, st, pk.get(), pp.get(), py.get(), hd, N, M);
            }));

        const double bytes =
            2.0 * double(T * H * hd) * 4 + double(l.pool_rows * hd) * 4 + double(l.idx.size()) * 4;
        const double flops = 4.0 * double(H * hd) * double(l.listed);
        const double floor_us = std::max(bytes / (ceil.copy_gbs * 1e3), flops / (ceil.gemm_tflops * 1e6));
        fmt::print(
            "attention shape={} type={} {}={} n_sel={} rows/token={:.0f} (kv {}, {} splits) | {:.2f} | "
            "{:.0f} | "
            "{:.1f} | {:.0f}% | {:.2f}x\n",
            s.name, type, mode.decode ? "decode_batch" : "prefill_tokens", T, l.n_sel,
            double(l.listed) / double(T), plan.kv_bf16 ? "bf16" : "fp32", plan.n_splits, us,
            bytes / (us * 1e3), flops / (us * 1e6), 100.0 * floor_us / us, peer_us / us);
      }
    }
  }
  return {};
}

}  // namespace dsv4::cuda
