// The backend interface the model is written against: one method per op (the op names of
// src/ops/), each taking that op's params struct. The model owns the sequence logic (positions,
// caches, which keys each query sees); a backend owns only the math. Pointers in the params are
// in the backend's memory: host memory for the CPU backend.
#pragma once

#include <memory>
#include <string>

#include "core/status.h"
#include "ops/attention.h"
#include "ops/compressor.h"
#include "ops/embedding.h"
#include "ops/grouped_linear.h"
#include "ops/hyper_head.h"
#include "ops/indexer.h"
#include "ops/linear.h"
#include "ops/mhc_post.h"
#include "ops/mhc_pre.h"
#include "ops/moe_experts.h"
#include "ops/moe_router.h"
#include "ops/rms_norm.h"
#include "ops/rope.h"

namespace dsv4 {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  virtual Status embedding(const EmbeddingParams& p) = 0;
  virtual Status linear(const LinearParams& p) = 0;
  virtual Status grouped_linear(const GroupedLinearParams& p) = 0;
  virtual Status rms_norm(const RmsNormParams& p) = 0;
  virtual Status rope(const RopeParams& p) = 0;
  virtual Status mhc_pre(const MhcPreParams& p) = 0;
  virtual Status mhc_post(const MhcPostParams& p) = 0;
  virtual Status hyper_head(const HyperHeadParams& p) = 0;
  virtual Status compressor(const CompressorParams& p) = 0;
  virtual Status indexer(const IndexerParams& p) = 0;
  virtual Status attention(const AttentionParams& p) = 0;
  virtual Status moe_router(const MoeRouterParams& p) = 0;
  virtual Status moe_experts(const MoeExpertsParams& p) = 0;
};

// The fp32 CPU reference backend (src/cpu/): checks each call's params, then runs the op.
std::unique_ptr<Backend> make_cpu_backend();

}  // namespace dsv4
