// Launcher of hyper_head (see hyper_head.cuh): dispatches on hc_mult.
#include "cuda/check.h"
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
      return Status::errorf("hyper_head: hc_mult {}; expected 1 to 4", p.hc_mult);
  }
}

}  // namespace dsv4::cuda
