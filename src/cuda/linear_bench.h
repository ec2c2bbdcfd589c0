// bench_linear: times cuda::linear_sm90 at real DeepSeek-V4 shapes against its floor and cuBLAS
// BF16 as the peer, all measured in the same run (STYLE.md "Benchmarks").
#pragma once

#include <string>
#include <vector>

#include "core/quant.h"
#include "core/status.h"

namespace dsv4::cuda {

struct LinearBenchOptions {
  std::vector<WeightFormat> formats;
  std::vector<std::string> shapes;  // "flash", "pro"
  std::vector<int64_t> tokens;
};

// Prints the device line, the measured copy bandwidth and cuBLAS rate, then one line per case.
Status bench_linear(const LinearBenchOptions& opt);

}  // namespace dsv4::cuda
