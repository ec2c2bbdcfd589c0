// bench_linear: times cuda::linear_sm90 at real DeepSeek-V4 shapes against its floor and cuBLAS
// BF16 as the peer, all measured in the same run (STYLE.md "Benchmarks").
#pragma once

#include <string>
#include <vector>

#include "core/quant.h"
#include "core/status.h"
#include "cuda/linear_sm90.h"

namespace dsv4::cuda {

struct LinearBenchOptions {
  std::vector<WeightFormat> formats;
  std::vector<std::string> shapes;  // "flash", "pro"
  std::vector<int64_t> tokens;
  // Paths to time per case: kAuto (what the heuristic picks) and/or forced ones; a forced path that
  // cannot run the case (a quantized path for BF16, decode above its token limit) is skipped.
  std::vector<LinearPath> paths{LinearPath::kAuto};
};

// Prints the device line, the measured copy bandwidth and cuBLAS rate, then one line per case.
Status bench_linear(const LinearBenchOptions& opt);

}  // namespace dsv4::cuda
