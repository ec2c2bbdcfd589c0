// bench_model: the whole DeepSeek-V4 forward on the CUDA backend at the real widths of V4-Flash or
// V4-Pro with random weights, cut to its first layers so that it fits one GPU (the harness:
// runtime/model_bench.h), beside the copy bandwidth and cuBLAS BF16 rate measured in the same run.
#pragma once

#include "core/status.h"
#include "runtime/model_bench.h"

namespace dsv4::cuda {

// Prints the device and its measured ceilings, then runs the harness on a CUDA backend.
Status bench_model(const ModelBenchOptions& opt);

}  // namespace dsv4::cuda
