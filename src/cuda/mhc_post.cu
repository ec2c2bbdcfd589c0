// Launcher of mhc_post (see mhc_post.cuh): dispatches on hc_mult.
#include "cuda/check.h"
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
  switch (p.hc_mult) {
    case 1:
      return launch<1>(p, stream);
    case 2:
      return launch<2>(p, stream);
    case 3:
      return launch<3>(p, stream);
    case 4:
      return launch<4>(p, stream);
    default:
      return Status::errorf("mhc_post: hc_mult {}; expected 1 to 4", p.hc_mult);
  }
}

}  // namespace dsv4::cuda
