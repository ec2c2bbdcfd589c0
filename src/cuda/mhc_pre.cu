// Launcher of mhc_pre (see mhc_pre.cuh): dispatches on hc_mult.
#include "cuda/check.h"
#include "cuda/hc_dispatch.h"
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
  return dispatch_hc_mult(p.hc_mult, "mhc_pre",
                          [&](auto hc) { return launch<decltype(hc)::value>(p, stream); });
}

}  // namespace dsv4::cuda
