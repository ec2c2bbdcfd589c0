// Random DeepSeek-V4 checkpoints in the native layout of either published variant, for the
// quick start, tests and benchmarks (no download needed). Weights are random but well scaled
// (activations stay O(1) through the layers), and every parameter HF initialises to a constant
// (sinks, router bias, mHC, ape) gets random values so no code path is hidden by zeros.
#pragma once

#include <cstdint>
#include <string>

#include "core/config.h"
#include "core/quant.h"
#include "core/status.h"

namespace dsv4 {

// Which published layout to imitate (dsv4-architecture.md §8, hopper-kernels.md §2).
enum class CheckpointLayout {
  kNvfp4,  // NVIDIA ModelOpt: trunk experts NVFP4; attention/shared FP8 block-128; MTP experts MXFP4
  kMxfp4,  // DeepSeek native: experts MXFP4; attention/shared FP8 block-128
};

struct SyntheticOptions {
  CheckpointLayout layout = CheckpointLayout::kNvfp4;
  uint64_t seed = 1;
  bool with_mtp = true;     // write mtp.* blocks when the config has them
  int64_t shard_bytes = 0;  // > 0: shards + model.safetensors.index.json
};

// A small config with every layer type (sliding, CSA, HCA), hash and dense MoE layers, and
// real head_dim / rope widths; cheap enough for CI.
ModelConfig tiny_config();
// The smallest config that still has every layer type and both routers (a ~40 kB checkpoint):
// for the bad-input corpus and tests that only need valid structure.
ModelConfig micro_config();

// Writes config.json and the weights into `dir` (created if needed).
Status write_synthetic_checkpoint(const ModelConfig& cfg, const SyntheticOptions& opt,
                                  const std::string& dir);

Result<CheckpointLayout> parse_checkpoint_layout(const std::string& name);

}  // namespace dsv4
