// Launcher of mhc_post (see mhc_post.cuh): dispatches on hc_mult.
#include "cuda/check.h"
#include "cuda/hc_dispatch.h"
#include "cuda/mhc_post.cuh"
#include "cuda/mhc_post.h"

namespace dsv4::cuda {
namespace {

template <int kHc>
Status launch(const MhcPostParams& p, cudaStream_t stream) {
  mhc_post_kernel<kHc>
      <<<unsigned(p.n_tokens), kMhcPostThreads, 0, stream>>>(p.y, p.h, p.post, p.comb, p.out, p.d_model);
  DSV4_CUDA_LAUNCH_CHECK();
  return {};
}

}  // namespace

Status mhc_post(const MhcPostParams& p, cudaStream_t stream) {
  DSV4_RETURN_IF_ERROR(check_mhc_post(p));
  if (p.n_tokens == 0) return {};
  return dispatch_hc_mult(p.hc_mult, "mhc_post",
                          [&](auto hc) { return launch<decltype(hc)::value>(p, stream); });
}

}  // namespace dsv4::cuda
