// Launcher and runner of moe_router (kernel in moe_router.cuh). router_tiling is the one place that
// sizes the grid. This file is compiled with --fmad=false (CMakeLists.txt): the router order
// rounds every product and sum, as the CPU reference does.
#include <algorithm>

#include "cuda/check.h"
#include "cuda/moe_router.cuh"
#include "cuda/moe_router.h"

namespace dsv4::cuda {
namespace {

// Tokens per tile and experts per warp: one token streams the gate once over all SMs (one row per
// warp); many tokens reuse each loaded gate octet for 8 tokens × 4 experts (compute-bound).
struct RouterTiling {
  int tokens, experts;
};
RouterTiling router_tiling(int64_t n_tokens) {
  if (n_tokens <= 1) return {1, 1};
  if (n_tokens <= 4) return {4, 1};
  if (n_tokens <= 32) return {8, 1};
  return {8, 4};
}

constexpr int64_t kMaxTokens = int64_t(65535) * 8;  // grid.y limit at 8 tokens per tile

template <bool kBf16, int kTok, int kExp, bool kFromLogits = false>
Status launch(const router::Args& a, cudaStream_t stream) {
  const dim3 grid(
      kFromLogits ? 1u : unsigned((a.n_experts + router::kWarps * kExp - 1) / (router::kWarps * kExp)),
      unsigned((a.n_tokens + kTok - 1) / kTok));
  const size_t smem = size_t(router::kWarps) * 2 * size_t(a.n_experts) * sizeof(float);
  router::moe_router_kernel<kBf16, kTok, kExp, kFromLogits><<<grid, router::kThreads, smem, stream>>>(a);
  DSV4_CUDA_LAUNCH_CHECK();
  return {};
}

// Many tokens with a BF16 gate: logits on the tensor cores, then selection alone.
Status launch_tensor_cores(const router::Args& a, cudaStream_t stream) {
  static const cudaError_t attr = cudaFuncSetAttribute(
      router::moe_router_logits_tc_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, router::kTcSmemBytes);
  DSV4_CUDA_TRY(attr);
  const dim3 grid(unsigned((a.n_experts + router::kTcExperts - 1) / router::kTcExperts),
                  unsigned((a.n_tokens + router::kTcTokens - 1) / router::kTcTokens));
  router::moe_router_logits_tc_kernel<<<grid, router::kTcThreads, router::kTcSmemBytes, stream>>>(a);
  DSV4_CUDA_LAUNCH_CHECK();
  return launch<true, 8, 1, true>(a, stream);
}

template <bool kBf16>
Status launch_tiling(const router::Args& a, RouterTiling t, cudaStream_t stream) {
  if (t.tokens == 1) return launch<kBf16, 1, 1>(a, stream);
  if (t.tokens == 4) return launch<kBf16, 4, 1>(a, stream);
  if (t.experts == 1) return launch<kBf16, 8, 1>(a, stream);
  return launch<kBf16, 8, 4>(a, stream);
}

}  // namespace

bool moe_router_bit_exact(int64_t n_tokens, WeightFormat gate_format) {
  return gate_format != WeightFormat::kBF16 || n_tokens < kMoeRouterTensorCoreMinTokens;
}

int64_t moe_router_counters(int64_t n_tokens) {
  return 1 + std::max<int64_t>(n_tokens, 1);  // tiles done + one arrival counter per tile (≤ tokens)
}

Status moe_router(const MoeRouterParams& p, const MoeRouterWorkspace& w, cudaStream_t stream) {
  auto where = [&] {
    return fmt::format("moe_router (cuda) n_tokens={} d_model={} n_experts={} top_k={}", p.n_tokens,
                       p.d_model, p.n_experts, p.top_k);
  };
  if (!p.x || !p.gate.data || !p.expert_ids || !p.weights || !p.counts || !w.scores || !w.counters)
    return Status::error(where() + ": null input, gate, output or workspace");
  if (p.gate.format != WeightFormat::kF32 && p.gate.format != WeightFormat::kBF16)
    return Status::errorf("{}: gate format {}; expected F32 or BF16", where(),
                          weight_format_name(p.gate.format));
  if (p.n_tokens < 0 || p.n_tokens > kMaxTokens)
    return Status::errorf("{}: expected 0 <= n_tokens <= {}", where(), kMaxTokens);
  if (p.n_experts <= 0 || p.n_experts > kMoeRouterMaxExperts)
    return Status::errorf("{}: expected 1 <= n_experts <= {}", where(), kMoeRouterMaxExperts);
  if (p.top_k <= 0 || p.top_k > std::min(p.n_experts, kMoeRouterMaxTopK))
    return Status::errorf("{}: expected 1 <= top_k <= {}", where(), std::min(p.n_experts, kMoeRouterMaxTopK));
  if (p.gate.rows != p.n_experts || p.gate.cols != p.d_model)
    return Status::errorf("{}: gate [{}, {}]; expected [n_experts, d_model]", where(), p.gate.rows,
                          p.gate.cols);
  if (p.d_model <= 0 || p.d_model % kRouterGroup != 0 || p.d_model > INT32_MAX / 2 ||
      reinterpret_cast<uintptr_t>(p.x) % 16 != 0 || reinterpret_cast<uintptr_t>(p.gate.data) % 16 != 0)
    return Status::errorf("{}: expected d_model a positive multiple of {} and 16-byte aligned x and gate",
                          where(), kRouterGroup);
  if (!p.bias == !p.tid2eid)
    return Status::error(where() + ": expected exactly one of bias (dense) or tid2eid (hash)");
  if (p.tid2eid && (!p.token_ids || p.vocab_size <= 0))
    return Status::errorf("{}: hash mode needs token ids and a vocab size; got vocab_size {}", where(),
                          p.vocab_size);
  if (p.n_tokens == 0) {
    DSV4_CUDA_TRY(cudaMemsetAsync(p.counts, 0, size_t(p.n_experts) * sizeof(int32_t), stream));
    return {};
  }
  const RouterTiling t = router_tiling(p.n_tokens);
  router::Args a{};
  a.x = p.x;
  a.gate = p.gate.data;
  a.bias = p.bias;
  a.tid2eid = p.tid2eid;
  a.token_ids = p.token_ids;
  a.expert_ids = p.expert_ids;
  a.weights = p.weights;
  a.counts = p.counts;
  a.scores = w.scores;
  a.tiles_done = w.counters;
  a.tile_arrivals = w.counters + 1;
  a.n_tokens = int(p.n_tokens);
  a.d_model = int(p.d_model);
  a.n_experts = int(p.n_experts);
  a.top_k = int(p.top_k);
  a.vocab_size = p.vocab_size;
  a.routed_scaling_factor = p.routed_scaling_factor;
  if (!moe_router_bit_exact(p.n_tokens, p.gate.format)) return launch_tensor_cores(a, stream);
  return p.gate.format == WeightFormat::kBF16 ? launch_tiling<true>(a, t, stream)
                                              : launch_tiling<false>(a, t, stream);
}

Status MoeRouterRunner::run(const MoeRouterParams& p, cudaStream_t stream) {
  const size_t n_scores = size_t(std::max<int64_t>(p.n_tokens, 0) * std::max<int64_t>(p.n_experts, 0));
  DSV4_RETURN_IF_ERROR(grow(scores_, n_scores, memory_epoch_).status());
  const size_t n_counters = size_t(moe_router_counters(std::max<int64_t>(p.n_tokens, 0)));
  DSV4_ASSIGN_OR_RETURN(const bool grew, grow(counters_, n_counters, memory_epoch_));
  if (grew) DSV4_CUDA_TRY(cudaMemsetAsync(counters_.get(), 0, counters_.bytes(), stream));
  return moe_router(p, {scores_.get(), counters_.get()}, stream);
}

}  // namespace dsv4::cuda
