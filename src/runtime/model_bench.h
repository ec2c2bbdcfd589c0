// The whole-model benchmark behind `dsv4 bench model`, written against the Backend interface:
// src/cuda/model_bench.h runs it on the GPU beside the device's measured ceilings; CI runs it on
// the CPU backend with a tiny model. A random-bits checkpoint of the model (write_random_bits_
// checkpoint) goes to a temporary directory, is loaded through Model::load and driven through the
// public API only: every sequence prefilled to `context` tokens, then decode steps of one token
// per sequence at each batch size, each case beside its floor. The peer, the same model in HF
// transformers, runs in its own process (scripts/bench_hf_model.py; scripts/bench_model.sh prints
// both side by side).
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/status.h"
#include "model/backend.h"
#include "model/synthetic.h"

namespace dsv4 {

struct ModelBenchOptions {
  ModelConfig model;            // e.g. first_layers(ModelConfig::flash(), 4)
  std::string shape = "flash";  // the model's name in the output
  std::vector<int64_t> batches{1, 8, 32, 64};
  int64_t context = 4096;       // tokens of history of every sequence when decode is timed
  int64_t decode_steps = 10;    // timed steps per batch size (after one eager and one recording step)
  int64_t prefill_rows = 8192;  // most rows one prefill forward carries
  bool decode_graphs = true;    // decode steps replayed as recorded graphs (Model::set_decode_graphs)
  CheckpointLayout layout = CheckpointLayout::kNvfp4;
  uint64_t seed = 1;
  std::string keep_dir;  // write the checkpoint here and keep it; empty: a temporary one, removed
};

// The device's ceilings, measured by the caller in the same run; NaN where unknown (no floor).
struct BenchCeilings {
  double copy_gbs = NAN;     // device-to-device copy, bytes read + written per second / 1e9
  double gemm_tflops = NAN;  // BF16 GEMM (cuBLAS) rate
};

// Prints the schedule, the memory plan, stage timings, then one line per case:
// `model params | ms | ms/layer | tok/s | GB/s | TFLOP/s | floor ms | % of floor`.
Status run_model_bench(const ModelBenchOptions& opt,
                       const std::function<std::unique_ptr<Backend>()>& make_backend,
                       const BenchCeilings& ceilings);

}  // namespace dsv4
