// The CPU backend: every Backend method is check_<op>() followed by the fp32 reference cpu::<op>().
#include "model/backend.h"

namespace dsv4 {
namespace {

#define DSV4_CPU_OP(op, Params)               \
  Status op(const Params& p) override {       \
    DSV4_RETURN_IF_ERROR(check_##op(p));      \
    cpu::op(p);                               \
    return {};                                \
  }

class CpuBackend final : public Backend {
 public:
  std::string name() const override { return "cpu"; }
  DSV4_CPU_OP(embedding, EmbeddingParams)
  DSV4_CPU_OP(linear, LinearParams)
  DSV4_CPU_OP(grouped_linear, GroupedLinearParams)
  DSV4_CPU_OP(rms_norm, RmsNormParams)
  DSV4_CPU_OP(rope, RopeParams)
  DSV4_CPU_OP(mhc_pre, MhcPreParams)
  DSV4_CPU_OP(mhc_post, MhcPostParams)
  DSV4_CPU_OP(hyper_head, HyperHeadParams)
  DSV4_CPU_OP(compressor, CompressorParams)
  DSV4_CPU_OP(indexer, IndexerParams)
  DSV4_CPU_OP(attention, AttentionParams)
  DSV4_CPU_OP(moe_router, MoeRouterParams)
  DSV4_CPU_OP(moe_experts, MoeExpertsParams)
};

#undef DSV4_CPU_OP

}  // namespace

std::unique_ptr<Backend> make_cpu_backend() { return std::make_unique<CpuBackend>(); }

}  // namespace dsv4
