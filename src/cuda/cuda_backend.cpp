// make_cuda_backend: forwards each op to its launcher in src/cuda/ on one stream.
#include "cuda/cuda_backend.h"

#include "cuda/attention.h"
#include "cuda/compressor.h"
#include "cuda/embedding.h"
#include "cuda/grouped_linear.h"
#include "cuda/hyper_head.h"
#include "cuda/indexer.h"
#include "cuda/mhc_post.h"
#include "cuda/mhc_pre.h"
#include "cuda/moe_experts_sm90.h"
#include "cuda/moe_router.h"
#include "cuda/rms_norm.h"
#include "cuda/rope.h"

namespace dsv4 {
namespace {

class CudaBackend final : public Backend {
 public:
  explicit CudaBackend(cudaStream_t stream) : stream_(stream) {}
  std::string name() const override { return "cuda"; }

  Status embedding(const EmbeddingParams& p) override { return cuda::embedding(p, stream_); }
  Status linear(const LinearParams&) override { return not_yet("linear"); }
  Status grouped_linear(const GroupedLinearParams& p) override { return cuda::grouped_linear(p, stream_); }
  Status rms_norm(const RmsNormParams& p) override { return cuda::rms_norm(p, stream_); }
  Status rope(const RopeParams& p) override { return cuda::rope(p, stream_); }
  Status mhc_pre(const MhcPreParams& p) override { return cuda::mhc_pre(p, stream_); }
  Status mhc_post(const MhcPostParams& p) override { return cuda::mhc_post(p, stream_); }
  Status hyper_head(const HyperHeadParams& p) override { return cuda::hyper_head(p, stream_); }
  Status compressor(const CompressorParams& p) override { return cuda::compressor(p, stream_); }
  Status indexer(const IndexerParams& p) override { return cuda::indexer(p, stream_); }
  Status attention(const AttentionParams& p) override { return cuda::attention(p, stream_); }
  Status moe_router(const MoeRouterParams& p) override { return cuda::moe_router(p, stream_); }
  // Expert views must be packed device views (cuda::packed_expert_view, moe_experts_sm90.h).
  Status moe_experts(const MoeExpertsParams& p) override { return moe_experts_.run(p, stream_); }

 private:
  static Status not_yet(const char* op) {
    return Status::errorf("cuda backend: {} is not supported yet; expected a CUDA kernel (issue 4)", op);
  }
  cudaStream_t stream_;
  cuda::MoeExpertsSm90Runner moe_experts_;  // expert tables and workspace, reused across calls
};

}  // namespace

std::unique_ptr<Backend> make_cuda_backend(cudaStream_t stream) {
  return std::make_unique<CudaBackend>(stream);
}

}  // namespace dsv4
