// bench_moe: times the MoE layer (cuda::moe_router, the routed and the shared expert through
// cuda::moe_experts_sm90, the add) and its parts at DeepSeek-V4 shapes against their floors and
// cuBLAS BF16 per expert as the peer, all measured in the same run.
#pragma once

#include <string>
#include <vector>

#include "core/quant.h"
#include "core/status.h"

namespace dsv4::cuda {

struct MoeBenchOptions {
  WeightFormat format = WeightFormat::kNVFP4;
  std::vector<std::string> shapes;  // "flash", "pro"
  std::vector<int64_t> tokens;
};

// Prints the device line, the measured ceilings, then one line per case.
Status bench_moe(const MoeBenchOptions& opt);

}  // namespace dsv4::cuda
