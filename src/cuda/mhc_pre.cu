// Launcher of mhc_pre (see mhc_pre.cuh): dispatches on hc_mult, the token tile and the load width.
#include "cuda/check.h"
#include "cuda/hc_dispatch.h"
#include "cuda/mhc_launch.cuh"
#include "cuda/mhc_pre.cuh"
#include "cuda/mhc_pre.h"

namespace dsv4::cuda {
namespace {

template <int kHc, int kTok, int kVec>
Status launch(const MhcPreParams& p, const MhcGrid& g, cudaStream_t stream) {
  return launch_mhc_cluster(mhc_pre_kernel<kHc, kTok, kVec>, g, stream, p.h, p.fn, p.base, p.scale, p.x,
                            p.post, p.comb, p.n_tokens, p.d_model, int(p.sinkhorn_iters), p.rms_eps,
                            p.hc_eps);
}

}  // namespace

Status mhc_pre(const MhcPreParams& p, cudaStream_t stream) {
  DSV4_RETURN_IF_ERROR(check_mhc_pre(p));
  if (p.n_tokens == 0) return {};
  DSV4_ASSIGN_OR_RETURN(const MhcGrid g, mhc_grid(p.n_tokens, p.d_model, {p.h, p.fn, p.x}));
  return dispatch_hc_mult(p.hc_mult, "mhc_pre", [&](auto hc) {
    constexpr int kHc = decltype(hc)::value;
    if (g.vec == 1) return launch<kHc, 1, 1>(p, g, stream);
    return g.token_tile == 1 ? launch<kHc, 1, 4>(p, g, stream) : launch<kHc, kMhcTokenTile, 4>(p, g, stream);
  });
}

}  // namespace dsv4::cuda
