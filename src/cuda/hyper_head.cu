// Launcher of hyper_head (see hyper_head.cuh): dispatches on hc_mult.
#include "cuda/check.h"
#include "cuda/hc_dispatch.h"
#include "cuda/hyper_head.cuh"
#include "cuda/hyper_head.h"

namespace dsv4::cuda {
namespace {

template <int kHc>
Status launch(const HyperHeadParams& p, cudaStream_t stream) {
  hyper_head_kernel<kHc><<<unsigned(p.n_tokens), kMhcThreads, 0, stream>>>(p.h, p.fn, p.base, p.scale, p.z,
                                                                           p.d_model, p.rms_eps, p.hc_eps);
  DSV4_CUDA_LAUNCH_CHECK();
  return {};
}

}  // namespace

Status hyper_head(const HyperHeadParams& p, cudaStream_t stream) {
  DSV4_RETURN_IF_ERROR(check_hyper_head(p));
  if (p.n_tokens == 0) return {};
  return dispatch_hc_mult(p.hc_mult, "hyper_head",
                          [&](auto hc) { return launch<decltype(hc)::value>(p, stream); });
}

}  // namespace dsv4::cuda
