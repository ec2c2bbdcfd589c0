// Launcher of attention (see attention.cuh).
#include "cuda/attention.cuh"
#include "cuda/attention.h"
#include "cuda/check.h"

namespace dsv4::cuda {

Status attention(const AttentionParams& p, cudaStream_t stream) {
  if (!p.q || !p.kv_idx || !p.sinks || !p.out) return Status::error("attention: null input or output");
  if (p.n_kv > 0 && !p.kv) return Status::error("attention: null kv");
  if (p.n_tokens < 0 || p.n_heads <= 0 || p.head_dim <= 0 || p.n_sel < 0 || p.n_kv < 0)
    return Status::errorf(
        "attention: n_tokens {}, n_heads {}, head_dim {}, n_sel {}, n_kv {}; expected positive sizes",
        p.n_tokens, p.n_heads, p.head_dim, p.n_sel, p.n_kv);
  if (p.head_dim > 32 * kAttentionMaxPerLane)
    return Status::errorf("attention: head_dim {}; expected at most {}", p.head_dim,
                          32 * kAttentionMaxPerLane);
  if (p.n_tokens == 0) return {};
  attention_kernel<<<unsigned(p.n_tokens * p.n_heads), 32 * kAttentionWarps, 0, stream>>>(
      p.q, p.kv, p.kv_idx, p.sinks, p.out, p.n_heads, p.head_dim, p.n_kv, p.n_sel, p.scale);
  DSV4_CUDA_LAUNCH_CHECK();
  return {};
}

}  // namespace dsv4::cuda
