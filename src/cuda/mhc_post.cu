// Launcher of mhc_post (see mhc_post.cuh): dispatches on hc_mult and the load width.
#include <cstdint>

#include "cuda/check.h"
#include "cuda/hc_dispatch.h"
#include "cuda/mhc_post.cuh"
#include "cuda/mhc_post.h"

namespace dsv4::cuda {
namespace {

template <int kHc, int kVec>
Status launch(const MhcPostParams& p, cudaStream_t stream) {
  const int64_t channel_blocks = (p.d_model + kVec * kMhcPostThreads - 1) / (kVec * kMhcPostThreads);
  if (channel_blocks > 65535 || p.n_tokens >= int64_t(1) << 31)
    return Status::errorf("mhc_post: [{}, {}] tokens × channels; expected < 2^31 tokens, < 2^24 channels",
                          p.n_tokens, p.d_model);
  const dim3 grid(unsigned(p.n_tokens), unsigned(channel_blocks));
  mhc_post_kernel<kHc, kVec>
      <<<grid, kMhcPostThreads, 0, stream>>>(p.y, p.h, p.post, p.comb, p.out, p.d_model);
  DSV4_CUDA_LAUNCH_CHECK();
  return {};
}

bool aligned16(const void* ptr) {
  return reinterpret_cast<uintptr_t>(ptr) % 16 == 0;
}

}  // namespace

Status mhc_post(const MhcPostParams& p, cudaStream_t stream) {
  DSV4_RETURN_IF_ERROR(check_mhc_post(p));
  if (p.n_tokens == 0) return {};
  const bool vec = p.d_model % 4 == 0 && aligned16(p.y) && aligned16(p.h) && aligned16(p.out);
  return dispatch_hc_mult(p.hc_mult, "mhc_post", [&](auto hc) {
    constexpr int kHc = decltype(hc)::value;
    return vec ? launch<kHc, 4>(p, stream) : launch<kHc, 1>(p, stream);
  });
}

}  // namespace dsv4::cuda
