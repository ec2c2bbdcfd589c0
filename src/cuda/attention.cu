// Launcher of attention (see attention.cuh): the plan, then the BF16 pool conversion, the kernel
// and the split combine on one stream; no allocation and no host synchronisation (graph-safe).
#include <algorithm>

#include "cuda/attention.cuh"
#include "cuda/attention.h"
#include "cuda/check.h"
#include "cuda/device_buffer.h"

namespace dsv4::cuda {
namespace {

constexpr int kMaxSplits = 64;

struct Layout {
  AttentionPlan plan;
  int kv_ld = 0;  // row stride of the kv the kernel reads
  size_t kv_bytes = 0, part_o_bytes = 0, part_ml_bytes = 0;
};

Status check_sizes(const AttentionParams& p) {
  if (p.n_tokens < 0 || p.n_heads <= 0 || p.head_dim <= 0 || p.n_sel < 0 || p.n_kv < 0)
    return Status::errorf(
        "attention: n_tokens {}, n_heads {}, head_dim {}, n_sel {}, n_kv {}; expected positive sizes",
        p.n_tokens, p.n_heads, p.head_dim, p.n_sel, p.n_kv);
  if (p.head_dim > 512) return Status::errorf("attention: head_dim {}; expected at most 512", p.head_dim);
  if (p.n_sel >= (int64_t(1) << 31) || p.n_heads >= (int64_t(1) << 24))
    return Status::errorf("attention: n_sel {}, n_heads {}; expected fewer than 2^31 and 2^24", p.n_sel,
                          p.n_heads);
  return {};
}

Result<Layout> layout(const AttentionParams& p) {
  DSV4_RETURN_IF_ERROR(check_sizes(p));
  const int sms = sm_count();
  Layout l;
  AttentionPlan& plan = l.plan;
  plan.head_dim_tile = p.head_dim <= 128 ? 128 : 512;
  // Each CTA holds one SM (~210 KB of shared memory at head_dim 512): split the rows while the
  // (token, head group) CTAs alone leave SMs idle, but never below one tile of rows per split.
  const int64_t ctas = p.n_tokens * ((p.n_heads + kAttentionHeads - 1) / kAttentionHeads);
  const int64_t max_splits =
      std::clamp<int64_t>((p.n_sel + kAttentionRows - 1) / kAttentionRows, 1, kMaxSplits);
  plan.n_splits = ctas >= sms || ctas == 0 ? 1 : int(std::clamp<int64_t>(sms / ctas, 1, max_splits));
  // The pool's rows are read ~n_tokens·n_sel / n_kv times each: converting them once pays off.
  plan.kv_bf16 = p.n_kv > 0 && 4 * p.n_kv <= p.n_tokens * p.n_sel;
  l.kv_ld = plan.kv_bf16 ? int((p.head_dim + 7) / 8 * 8) : int(p.head_dim);
  l.kv_bytes = plan.kv_bf16 ? align_up(size_t(p.n_kv) * size_t(l.kv_ld) * 2) : 0;
  if (plan.n_splits > 1) {
    const size_t slots = size_t(p.n_tokens * p.n_heads) * size_t(plan.n_splits);
    l.part_o_bytes = align_up(slots * size_t(p.head_dim) * sizeof(float));
    l.part_ml_bytes = align_up(slots * sizeof(float2));
  }
  plan.workspace_bytes = l.kv_bytes + l.part_o_bytes + l.part_ml_bytes;
  return l;
}

template <int kHeadDim, bool kKvBf16>
Status launch(const AttentionKernelParams& kp, int64_t n_tokens, int64_t n_heads, int n_splits,
              cudaStream_t stream) {
  constexpr int kSmem = attention_smem_bytes(kHeadDim);
  static const cudaError_t attr = cudaFuncSetAttribute(attention_kernel<kHeadDim, kKvBf16>,
                                                       cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
  DSV4_CUDA_TRY(attr);
  const dim3 grid(unsigned(n_tokens), unsigned((n_heads + kAttentionHeads - 1) / kAttentionHeads),
                  unsigned(n_splits));
  attention_kernel<kHeadDim, kKvBf16><<<grid, kAttentionThreads, kSmem, stream>>>(kp);
  DSV4_CUDA_LAUNCH_CHECK();
  return {};
}

}  // namespace

Result<AttentionPlan> attention_plan(const AttentionParams& p) {
  DSV4_ASSIGN_OR_RETURN(const Layout l, layout(p));
  return l.plan;
}

Status attention(const AttentionParams& p, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  if (!p.q || !p.kv_idx || !p.sinks || !p.out) return Status::error("attention: null input or output");
  if (p.n_kv > 0 && !p.kv) return Status::error("attention: null kv");
  DSV4_ASSIGN_OR_RETURN(const Layout l, layout(p));
  const AttentionPlan& plan = l.plan;
  if (workspace_bytes < plan.workspace_bytes || (plan.workspace_bytes > 0 && !workspace))
    return Status::errorf("attention: workspace of {} bytes; expected at least {} (attention_plan)",
                          workspace ? workspace_bytes : 0, plan.workspace_bytes);
  if (p.n_tokens == 0) return {};
  uint8_t* ws = static_cast<uint8_t*>(workspace);
  AttentionKernelParams kp{};
  kp.q = p.q;
  kp.kv = p.kv;
  kp.kv_idx = p.kv_idx;
  kp.sinks = p.sinks;
  kp.out = p.out;
  kp.n_kv = p.n_kv;
  kp.n_heads = int(p.n_heads);
  kp.head_dim = int(p.head_dim);
  kp.kv_ld = l.kv_ld;
  kp.n_sel = int(p.n_sel);
  kp.n_splits = plan.n_splits;
  kp.scale_log2 = p.scale * kLog2e;
  const auto aligned16 = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
  kp.vec4 = p.head_dim % 4 == 0 && aligned16(p.q) && aligned16(p.kv);
  if (plan.kv_bf16) {
    auto* kv_bf16 = reinterpret_cast<__nv_bfloat16*>(ws);
    const int64_t pairs = p.n_kv * (l.kv_ld / 2);
    const unsigned blocks = unsigned(std::min<int64_t>((pairs + 255) / 256, 4096));
    attention_kv_to_bf16_kernel<<<blocks, 256, 0, stream>>>(p.kv, kv_bf16, p.n_kv, int(p.head_dim), l.kv_ld);
    DSV4_CUDA_LAUNCH_CHECK();
    kp.kv = kv_bf16;
  }
  if (plan.n_splits > 1) {
    kp.part_o = reinterpret_cast<float*>(ws + l.kv_bytes);
    kp.part_ml = reinterpret_cast<float2*>(ws + l.kv_bytes + l.part_o_bytes);
  }
  const bool small = plan.head_dim_tile == 128;
  const Status s =
      small ? (plan.kv_bf16 ? launch<128, true>(kp, p.n_tokens, p.n_heads, plan.n_splits, stream)
                            : launch<128, false>(kp, p.n_tokens, p.n_heads, plan.n_splits, stream))
            : (plan.kv_bf16 ? launch<512, true>(kp, p.n_tokens, p.n_heads, plan.n_splits, stream)
                            : launch<512, false>(kp, p.n_tokens, p.n_heads, plan.n_splits, stream));
  DSV4_RETURN_IF_ERROR(s);
  if (plan.n_splits > 1) {
    attention_combine_kernel<<<unsigned(p.n_tokens * p.n_heads), 128, size_t(plan.n_splits) * sizeof(float),
                               stream>>>(kp.part_o, kp.part_ml, p.sinks, p.out, kp.n_heads, kp.head_dim,
                                         plan.n_splits);
    DSV4_CUDA_LAUNCH_CHECK();
  }
  return {};
}

}  // namespace dsv4::cuda
