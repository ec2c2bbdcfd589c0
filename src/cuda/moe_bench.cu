// bench_moe (moe_bench.h). Seven lines per case: moe_router (BF16 gate, dense mode, zero bias) on
// x; moe_experts (the routed experts, moe_experts_sm90) on the router's ids, weights and counts;
// moe_shared, the shared expert (FP8 block-128, one expert, as Model::moe runs it through the same
// op), in the mode moe_experts_sm90 chooses and in the other one (dense or not); moe_routed,
// router + routed experts; and moe, the whole layer as the model runs it: the shared expert in a
// branch beside router and routed experts, whose combine adds the shared output once the branch is
// done (MoeExpertsSm90Params::addend), again with the shared expert in both modes. Each rotation
// has its own x, so its own routing: enough rotations that consecutive calls do not find their
// experts in L2. Every routed expert has its own copy of the weights (one random packed expert
// replicated), so touched experts are distinct memory; the shared expert rotates over copies too
// (≥ 200 MB between uses).
// floor = max(bytes / copy bandwidth, flops / cuBLAS BF16 rate), bytes = the gate (router) +
// touched experts' packed weights + the shared expert + x + y; peer = the gate GEMM and, per
// touched expert and for the shared expert, gate|up and down GEMMs in BF16 through cuBLAS on the
// same token counts (selection, SwiGLU, combine and add not counted).
#include <algorithm>

#include "cuda/bench_util.h"
#include "cuda/check.h"
#include "cuda/device_buffer.h"
#include "cuda/linear_sm90.h"
#include "cuda/moe_bench.h"
#include "cuda/moe_experts_sm90.h"
#include "cuda/moe_router.h"

namespace dsv4::cuda {
namespace {

struct MoeShape {
  const char* name;
  int64_t d_model, d_ff, n_experts, top_k;
};

constexpr size_t kPeerBytesMax = size_t(20) << 30;

// One random expert (three matrices, rows/cols per MoE shape) packed in `format` and replicated
// `copies` times, each copy its own memory; table[i] views copy i.
struct ExpertCopies {
  DeviceBuffer<uint8_t> memory;
  DeviceBuffer<MoeExpertSm90> table;
  size_t expert_bytes = 0;  // packed data + scales of one copy
};
Result<ExpertCopies> replicate_expert(WeightFormat format, int64_t D, int64_t I, int64_t copies) {
  ExpertCopies out;
  std::vector<PackedLinearWeight> packed;
  for (int m = 0; m < 3; ++m) {
    const int64_t rows = m == 2 ? D : I, cols = m == 2 ? I : D;
    std::vector<float> w(size_t(rows * cols));
    uint64_t st = 0x9E3779B97F4A7C15ull + uint64_t(m);
    for (auto& v : w) {
      st ^= st << 13, st ^= st >> 7, st ^= st << 17;
      v = (float(uint32_t(st >> 40)) / float(1 << 24) - 0.5f) * 0.17f;
    }
    const QuantizedWeight q = quantize_weight(format, w.data(), rows, cols);
    DSV4_ASSIGN_OR_RETURN(PackedLinearWeight p, pack_linear_weight_sm90(q.view()));
    out.expert_bytes += p.data.size() + p.scales.size();
    packed.push_back(std::move(p));
  }
  DSV4_ASSIGN_OR_RETURN(out.memory, DeviceBuffer<uint8_t>::create(out.expert_bytes * size_t(copies)));
  std::vector<MoeExpertSm90> table(static_cast<size_t>(copies));
  size_t off = 0;
  for (int m = 0; m < 3; ++m) {
    DSV4_RETURN_IF_ERROR(out.memory.upload(packed[size_t(m)].data, off));
    table[0].data[m] = out.memory.get() + off;
    off += packed[size_t(m)].data.size();
    DSV4_RETURN_IF_ERROR(out.memory.upload(packed[size_t(m)].scales, off));
    table[0].scales[m] = out.memory.get() + off;
    off += packed[size_t(m)].scales.size();
    table[0].out_scale[m] = packed[size_t(m)].out_scale;
  }
  for (int64_t e = 1; e < copies; ++e) {
    DSV4_CUDA_TRY(cudaMemcpy(out.memory.get() + size_t(e) * out.expert_bytes, out.memory.get(),
                             out.expert_bytes, cudaMemcpyDeviceToDevice));
    for (int m = 0; m < 3; ++m) {
      table[size_t(e)].data[m] = table[0].data[m] + size_t(e) * out.expert_bytes;
      table[size_t(e)].scales[m] = table[0].scales[m] + size_t(e) * out.expert_bytes;
      table[size_t(e)].out_scale[m] = table[0].out_scale[m];
    }
  }
  DSV4_ASSIGN_OR_RETURN(out.table, DeviceBuffer<MoeExpertSm90>::create(table.size()));
  DSV4_RETURN_IF_ERROR(out.table.upload(table));
  return std::move(out);
}

// One rotation: its input and the router's outputs for it.
struct Rotation {
  DeviceBuffer<float> x;            // [n_tokens, d_model]
  DeviceBuffer<int32_t> ids;        // [n_tokens, top_k]
  DeviceBuffer<float> weights;      // [n_tokens, top_k]
  DeviceBuffer<int32_t> counts;     // [n_experts]
  std::vector<int32_t> per_expert;  // counts, on the host
  int64_t touched = 0;              // experts with a slot
};

}  // namespace

Status bench_moe(const MoeBenchOptions& opt) {
  DSV4_ASSIGN_OR_RETURN(const BenchDevice dev, open_bench_device("bench moe"));
  cublasHandle_t h = dev.cublas.get();
  const DeviceCeilings& ceil = dev.ceilings;
  DSV4_ASSIGN_OR_RETURN(const UniqueStream branch, create_stream());
  DSV4_ASSIGN_OR_RETURN(const UniqueEvent fork, create_event());
  DSV4_ASSIGN_OR_RETURN(const UniqueEvent join, create_event());
  DSV4_ASSIGN_OR_RETURN(const UniqueCublas shared_cublas, create_cublas());  // the shared expert's
  fmt::print(
      "moe = the layer: moe_router + routed experts + shared expert (in a branch; the routed combine "
      "adds its output); moe_routed = moe_router + routed experts; the parts alone on their own lines\n");
  fmt::print("op params | µs | GB/s | TFLOP/s | % of floor | x peer\n");

  for (const std::string& shape_name : opt.shapes) {
    const MoeShape s =
        shape_name == "pro" ? MoeShape{"pro", 7168, 3072, 384, 6} : MoeShape{"flash", 4096, 2048, 256, 6};
    const int64_t D = s.d_model, I = s.d_ff, E = s.n_experts, k = s.top_k;
    // Routed experts: one random expert, packed, replicated into every expert's own memory. The
    // shared expert (FP8 block-128, d_ff = moe_intermediate · 1 shared expert): copies rotated so
    // that ≥ kRotateBytes pass between uses of one.
    DSV4_ASSIGN_OR_RETURN(ExpertCopies routed, replicate_expert(opt.format, D, I, E));
    const size_t expert_bytes = routed.expert_bytes;
    const int64_t n_shared_copies = 8;
    DSV4_ASSIGN_OR_RETURN(ExpertCopies shared,
                          replicate_expert(WeightFormat::kFP8Block128, D, I, n_shared_copies));
    const double shared_bytes = double(shared.expert_bytes);

    // The router's gate (BF16, as stored in the checkpoints) and a zero selection bias.
    DSV4_ASSIGN_OR_RETURN(auto gate, DeviceBuffer<__nv_bfloat16>::create(size_t(E * D)));
    DSV4_ASSIGN_OR_RETURN(auto bias, DeviceBuffer<float>::create(size_t(E)));
    fill_random(gate.get(), gate.size(), 11);
    DSV4_CUDA_TRY(cudaMemset(bias.get(), 0, bias.bytes()));
    const double gate_bytes = double(E * D * 2);

    for (const int64_t T : opt.tokens) {
      DSV4_ASSIGN_OR_RETURN(auto scores, DeviceBuffer<float>::create(size_t(T * E)));
      DSV4_ASSIGN_OR_RETURN(auto counters, DeviceBuffer<uint32_t>::create(size_t(moe_router_counters(T))));
      DSV4_CUDA_TRY(cudaMemset(counters.get(), 0, counters.bytes()));
      DSV4_ASSIGN_OR_RETURN(auto y, DeviceBuffer<float>::create(size_t(T * D)));
      const size_t ws_bytes = moe_experts_sm90_workspace_bytes(T, D, I, E, k);
      DSV4_ASSIGN_OR_RETURN(auto ws, DeviceBuffer<uint8_t>::create(ws_bytes));
      DSV4_CUDA_TRY(cudaMemset(ws.get(), 0, ws_bytes));
      // The shared expert: every token on expert 0 with weight 1 (Model::moe's shared_ids and
      // shared_weights), its own output and workspace.
      DSV4_ASSIGN_OR_RETURN(auto y_shared, DeviceBuffer<float>::create(size_t(T * D)));
      DSV4_ASSIGN_OR_RETURN(auto shared_ids, DeviceBuffer<int32_t>::create(size_t(T)));
      DSV4_ASSIGN_OR_RETURN(auto shared_w, DeviceBuffer<float>::create(size_t(T)));
      DSV4_RETURN_IF_ERROR(shared_ids.upload(std::vector<int32_t>(size_t(T), 0)));
      DSV4_RETURN_IF_ERROR(shared_w.upload(std::vector<float>(size_t(T), 1.0f)));
      // Dense mode runs cuBLAS on a handle of its own (the branch runs it beside the main stream's
      // cuBLAS calls). The shared expert and the layer are also timed with the mode the automatic
      // choice did not take (dense, or the wgmma GEMMs where it took dense), on lines of their own.
      const bool shared_dense = moe_experts_sm90_dense(T, D, I, 1, 1);
      const MoeGemmRegime shared_other = shared_dense ? MoeGemmRegime::kPrefill : MoeGemmRegime::kDense;
      const char* other_name = shared_dense ? "prefill" : "dense";
      const size_t ws_shared_bytes = std::max(moe_experts_sm90_workspace_bytes(T, D, I, 1, 1),
                                              moe_experts_sm90_workspace_bytes(T, D, I, 1, 1, shared_other));
      DSV4_ASSIGN_OR_RETURN(auto ws_shared, DeviceBuffer<uint8_t>::create(ws_shared_bytes));
      DSV4_CUDA_TRY(cudaMemset(ws_shared.get(), 0, ws_shared_bytes));
      const auto route = [&](Rotation& r, cudaStream_t st) {
        MoeRouterParams p;
        p.x = r.x.get();
        p.gate = {WeightFormat::kBF16, E, D, gate.get(), nullptr, 1.0f};
        p.bias = bias.get();
        p.expert_ids = r.ids.get(), p.weights = r.weights.get(), p.counts = r.counts.get();
        p.n_tokens = T, p.d_model = D, p.n_experts = E, p.top_k = k, p.routed_scaling_factor = 1.5f;
        return moe_router(p, {scores.get(), counters.get()}, st);
      };
      // addend, addend_ready: the layer's shared expert output, added by the combine once the
      // branch that computes it is done (as Model::moe runs it).
      const auto experts = [&](Rotation& r, cudaStream_t st, const float* addend = nullptr,
                               cudaEvent_t addend_ready = nullptr) {
        MoeExpertsSm90Params p;
        p.x = r.x.get();
        p.expert_ids = r.ids.get(), p.weights = r.weights.get(), p.counts = r.counts.get();
        p.table = routed.table.get();
        p.format = opt.format;
        p.y = y.get();
        p.addend = addend, p.addend_ready = addend_ready;
        p.n_tokens = T, p.d_model = D, p.d_ff = I, p.n_experts = E, p.top_k = k;
        p.swiglu_limit = 10.0f;
        p.workspace = ws.get();
        p.workspace_bytes = ws_bytes;
        return moe_experts_sm90(p, st);
      };
      const auto shared_expert = [&](Rotation& r, int copy, cudaStream_t st,
                                     MoeGemmRegime regime = MoeGemmRegime::kAuto) {
        MoeExpertsSm90Params p;
        p.regime = regime;
        p.cublas = shared_cublas.get();
        p.x = r.x.get();
        p.expert_ids = shared_ids.get(), p.weights = shared_w.get(), p.counts = nullptr;
        p.table = shared.table.get() + copy % n_shared_copies;
        p.format = WeightFormat::kFP8Block128;
        p.y = y_shared.get();
        p.n_tokens = T, p.d_model = D, p.d_ff = I, p.n_experts = 1, p.top_k = 1;
        p.swiglu_limit = 10.0f;
        p.workspace = ws_shared.get();
        p.workspace_bytes = ws_shared_bytes;
        return moe_experts_sm90(p, st);
      };
      // Rotations: enough that the layer touches >= kRotateBytes of distinct experts between uses.
      std::vector<Rotation> rot;
      const auto add_rotation = [&]() -> Status {
        Rotation r;
        DSV4_ASSIGN_OR_RETURN(r.x, DeviceBuffer<float>::create(size_t(T * D)));
        DSV4_ASSIGN_OR_RETURN(r.ids, DeviceBuffer<int32_t>::create(size_t(T * k)));
        DSV4_ASSIGN_OR_RETURN(r.weights, DeviceBuffer<float>::create(size_t(T * k)));
        DSV4_ASSIGN_OR_RETURN(r.counts, DeviceBuffer<int32_t>::create(size_t(E)));
        fill_random(r.x.get(), r.x.size(), 100 + uint32_t(rot.size()));
        DSV4_RETURN_IF_ERROR(route(r, nullptr));
        DSV4_ASSIGN_OR_RETURN(r.per_expert, r.counts.download());
        for (int32_t c : r.per_expert) r.touched += c > 0;
        rot.push_back(std::move(r));
        return {};
      };
      DSV4_RETURN_IF_ERROR(add_rotation());
      const size_t touched_bytes = size_t(rot[0].touched) * expert_bytes;
      const int n_rot = int(std::clamp<size_t>((kRotateBytes + touched_bytes - 1) / touched_bytes, 1, 8));
      while (int(rot.size()) < n_rot) DSV4_RETURN_IF_ERROR(add_rotation());
      double touched = 0;
      for (const Rotation& r : rot) touched += double(r.touched) / n_rot;

      // time_graph_us calls with i past the batch for its warm-up: rotations cycle.
      DSV4_ASSIGN_OR_RETURN(const double router_us, time_graph_us(n_rot, [&](int i, cudaStream_t st) {
                              return route(rot[size_t(i % n_rot)], st);
                            }));
      DSV4_ASSIGN_OR_RETURN(const double experts_us, time_graph_us(n_rot, [&](int i, cudaStream_t st) {
                              return experts(rot[size_t(i % n_rot)], st);
                            }));
      DSV4_ASSIGN_OR_RETURN(const double routed_us,
                            time_graph_us(n_rot, [&](int i, cudaStream_t st) -> Status {
                              DSV4_RETURN_IF_ERROR(route(rot[size_t(i % n_rot)], st));
                              return experts(rot[size_t(i % n_rot)], st);
                            }));
      const int n_layer = int(std::max<int64_t>(n_rot, n_shared_copies));
      DSV4_ASSIGN_OR_RETURN(const double shared_us, time_graph_us(n_layer, [&](int i, cudaStream_t st) {
                              return shared_expert(rot[size_t(i % n_rot)], i, st);
                            }));
      DSV4_ASSIGN_OR_RETURN(const double shared_other_us, time_graph_us(n_layer, [&](int i, cudaStream_t st) {
                              return shared_expert(rot[size_t(i % n_rot)], i, st, shared_other);
                            }));
      // The layer as Model::moe runs it: the shared expert in a branch (a second stream forked off
      // and joined back by events) beside the router and the routed experts, whose combine adds its
      // output once the branch is done.
      const auto layer_us = [&](MoeGemmRegime shared_regime) {
        return time_graph_us(n_layer, [&](int i, cudaStream_t st) -> Status {
          Rotation& r = rot[size_t(i % n_rot)];
          DSV4_CUDA_TRY(cudaEventRecord(fork.get(), st));
          DSV4_CUDA_TRY(cudaStreamWaitEvent(branch.get(), fork.get(), 0));
          DSV4_RETURN_IF_ERROR(shared_expert(r, i, branch.get(), shared_regime));
          DSV4_CUDA_TRY(cudaEventRecord(join.get(), branch.get()));
          DSV4_RETURN_IF_ERROR(route(r, st));
          DSV4_RETURN_IF_ERROR(experts(r, st, y_shared.get(), join.get()));
          DSV4_CUDA_TRY(cudaStreamWaitEvent(st, join.get(), 0));  // a capture ends with its streams joined
          return Status{};
        });
      };
      DSV4_ASSIGN_OR_RETURN(const double us, layer_us(MoeGemmRegime::kAuto));
      DSV4_ASSIGN_OR_RETURN(const double other_us, layer_us(shared_other));

      // Peer: the gate GEMM, then BF16 experts (distinct memory up to kPeerBytesMax, then reused) on
      // rotation 0's counts.
      const Rotation& r0 = rot[0];
      const size_t peer_expert = size_t(3 * I * D);  // elements: w1|w3 [2I, D], w2 [D, I]
      const int64_t n_peer = std::min<int64_t>(r0.touched, int64_t(kPeerBytesMax / (peer_expert * 2)));
      DSV4_ASSIGN_OR_RETURN(auto pw, DeviceBuffer<__nv_bfloat16>::create(size_t(n_peer) * peer_expert));
      fill_random(pw.get(), pw.size(), 5);
      DSV4_ASSIGN_OR_RETURN(auto px, DeviceBuffer<__nv_bfloat16>::create(size_t(T * k * D)));
      DSV4_ASSIGN_OR_RETURN(auto pa, DeviceBuffer<__nv_bfloat16>::create(size_t(T * k * I)));
      DSV4_ASSIGN_OR_RETURN(auto py,
                            DeviceBuffer<float>::create(size_t(T * k) * size_t(std::max({2 * I, D, E}))));
      fill_random(px.get(), px.size(), 6);
      fill_random(pa.get(), pa.size(), 7);
      DSV4_CUDA_LAUNCH_CHECK();
      DSV4_ASSIGN_OR_RETURN(const double peer_router_us, time_graph_us(1, [&](int, cudaStream_t st) {
                              return cublas_bf16_gemm(h, st, gate.get(), px.get(), py.get(), E, D, T);
                            }));
      DSV4_ASSIGN_OR_RETURN(
          const double peer_experts_us, time_graph_us(1, [&](int, cudaStream_t st) -> Status {
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
      DSV4_ASSIGN_OR_RETURN(
          const double peer_shared_us, time_graph_us(1, [&](int, cudaStream_t st) -> Status {
            DSV4_RETURN_IF_ERROR(cublas_bf16_gemm(h, st, pw.get(), px.get(), py.get(), 2 * I, D, T));
            return cublas_bf16_gemm(h, st, pw.get() + 2 * I * D, pa.get(), py.get(), D, I, T);
          }));
      const auto line = [&](const std::string& what, double t_us, double bytes, double flops, double peer) {
        const double floor_us = std::max(bytes / (ceil.copy_gbs * 1e3), flops / (ceil.gemm_tflops * 1e6));
        fmt::print("{} | {:.2f} | {:.0f} | {:.1f} | {:.0f}% | {:.2f}x\n", what, t_us, bytes / (t_us * 1e3),
                   flops / (t_us * 1e6), 100.0 * floor_us / t_us, peer / t_us);
      };
      const double io_bytes = 2.0 * double(T * D * 4), expert_total = touched * double(expert_bytes);
      const double router_flops = 2.0 * double(T * E * D);
      const double expert_flops = 2.0 * double(T * k) * 3.0 * double(D) * double(I);
      const std::string params = fmt::format("shape={} format={} n_tokens={} experts_touched={:.1f}", s.name,
                                             weight_format_name(opt.format), T, touched);
      line(fmt::format("moe_router shape={} n_tokens={}", s.name, T), router_us,
           gate_bytes + double(T * D * 4), router_flops, peer_router_us);
      const double shared_flops = 2.0 * double(T) * 3.0 * double(D) * double(I);
      line("moe_experts " + params, experts_us, expert_total + io_bytes, expert_flops, peer_experts_us);
      const std::string shared_params = fmt::format("shape={} format=FP8-block128 n_tokens={}", s.name, T);
      line(fmt::format("moe_shared {} mode={}", shared_params, shared_dense ? "dense" : "grouped"), shared_us,
           shared_bytes + io_bytes, shared_flops, peer_shared_us);
      line(fmt::format("moe_shared {} mode={} (not chosen)", shared_params, other_name), shared_other_us,
           shared_bytes + io_bytes, shared_flops, peer_shared_us);
      line("moe_routed " + params, routed_us, gate_bytes + expert_total + io_bytes,
           router_flops + expert_flops, peer_router_us + peer_experts_us);
      const double layer_bytes = gate_bytes + expert_total + shared_bytes + io_bytes;
      const double layer_flops = router_flops + expert_flops + shared_flops;
      const double layer_peer = peer_router_us + peer_experts_us + peer_shared_us;
      line("moe " + params, us, layer_bytes, layer_flops, layer_peer);
      line(fmt::format("moe {} shared={} (not chosen)", params, other_name), other_us, layer_bytes,
           layer_flops, layer_peer);
    }
  }
  return {};
}

}  // namespace dsv4::cuda
