// bench_model: the whole DeepSeek-V4 forward (Model::forward on the CUDA backend) at the real
// widths of V4-Flash or V4-Pro with random weights, cut to its first n layers so that it fits one
// GPU: decode steps at several batch sizes with every sequence `context` tokens deep, and the
// prefill that got them there, each beside its floor measured in the same run (STYLE.md
// "Benchmarks"). The peer, the same model in HF transformers, runs in its own process
// (scripts/bench_hf_model.py, scripts/bench_model.sh prints both side by side).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "model/synthetic.h"

namespace dsv4::cuda {

struct ModelBenchOptions {
  std::string shape = "flash";  // "flash", "pro"
  int64_t n_layers = 4;         // the first n layers: sliding (Flash), CSA, HCA, hash and dense routers
  std::vector<int64_t> batches{1, 8, 32, 64};
  int64_t context = 4096;       // tokens of history of every sequence when decode is timed
  int64_t decode_steps = 10;    // timed steps per batch size (after one eager and one recording step)
  int64_t prefill_rows = 8192;  // most rows one prefill forward carries
  CheckpointLayout layout = CheckpointLayout::kNvfp4;
  uint64_t seed = 1;
  std::string keep_dir;  // write the checkpoint here and keep it; empty: a temporary one, removed
};

// Prints the device and its measured ceilings, the layer schedule, the memory plan, then one
// line per case: `model params | ms | ms/layer | tok/s | GB/s | TFLOP/s | floor ms | % of floor`.
Status bench_model(const ModelBenchOptions& opt);

}  // namespace dsv4::cuda
