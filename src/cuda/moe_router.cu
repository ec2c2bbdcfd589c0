// Launcher of moe_router (kernel in moe_router.cuh).
#include <algorithm>

#include "cuda/check.h"
#include "cuda/moe_router.cuh"
#include "cuda/moe_router.h"

namespace dsv4::cuda {

Status moe_router(const MoeRouterParams& p, cudaStream_t stream) {
  if (!p.logits || !p.expert_ids || !p.weights) return Status::error("moe_router: null input or output");
  if (p.n_tokens < 0 || p.n_tokens > INT32_MAX)
    return Status::errorf("moe_router: n_tokens {}; expected 0 <= n_tokens < 2^31", p.n_tokens);
  if (p.n_experts <= 0 || p.n_experts > kMoeRouterMaxExperts)
    return Status::errorf("moe_router: n_experts {}; expected 1..{}", p.n_experts, kMoeRouterMaxExperts);
  if (p.top_k <= 0 || p.top_k > p.n_experts || p.top_k > kMoeRouterMaxTopK)
    return Status::errorf("moe_router: top_k {}; expected 1..{}", p.top_k,
                          std::min(p.n_experts, kMoeRouterMaxTopK));
  if (!p.bias == !p.tid2eid)
    return Status::error("moe_router: expected exactly one of bias (dense) or tid2eid (hash)");
  if (p.tid2eid && (!p.token_ids || p.vocab_size <= 0))
    return Status::errorf("moe_router: hash mode needs token ids and a vocab size; got vocab_size {}",
                          p.vocab_size);
  if (p.n_tokens == 0) return {};
  const MoeRouterArgs a{
      p.logits,        p.bias,           p.tid2eid,    p.token_ids,  p.expert_ids,           p.weights,
      int(p.n_tokens), int(p.n_experts), int(p.top_k), p.vocab_size, p.routed_scaling_factor};
  const size_t smem = size_t(kMoeRouterWarps) * 2 * size_t(p.n_experts) * sizeof(float);
  const unsigned blocks = unsigned((p.n_tokens + kMoeRouterWarps - 1) / kMoeRouterWarps);
  moe_router_kernel<<<blocks, kMoeRouterWarps * 32, smem, stream>>>(a);
  DSV4_CUDA_LAUNCH_CHECK();
  return {};
}

}  // namespace dsv4::cuda
