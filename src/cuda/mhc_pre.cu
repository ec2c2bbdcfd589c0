// Launcher of mhc_pre (see mhc_pre.cuh): dispatches on hc_mult.
#include "cuda/check.h"
#include "cuda/mhc_pre.cuh"
#include "cuda/mhc_pre.h"

namespace dsv4::cuda {
namespace {

template <int kHc>
Status launch(const MhcPreParams& p, cudaStream_t stream) {
  mhc_pre_kernel<kHc><<<unsigned(p.n_tokens), kMhcThreads, 0, stream>>>(
      p.h, p.fn, p.base, p.scale, p.x, p.post, p.comb, p.d_model, int(p.sinkhorn_iters), p.rms_eps, p.hc_eps);
  DSV4_CUDA_LAUNCH_CHECK();
  return {};
}

}  // namespace

Status mhc_pre(const MhcPreParams& p, cudaStream_t stream) {
  DSV4_RETURN_IF_ERROR(check_mhc_pre(p));
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
      return Status::errorf("mhc_pre: hc_mult {}; expected 1 to 4", p.hc_mult);
  }
}

}  // namespace dsv4::cuda
