// Random DeepSeek-V4 checkpoints in the native layout of either published variant, for the
// quick start, tests and benchmarks (no download needed). Weights are random but well scaled
// (activations stay O(1) through the layers), and every parameter HF initialises to a constant
// (sinks, router bias, mHC, ape) gets random values so no code path is hidden by zeros.
// Two writers share one walk over the tensor schema: write_synthetic_checkpoint quantizes random
// floats with the real quantizers (exact round trips; small models), write_random_bits_checkpoint
// draws the stored bits themselves on every core (real widths: one V4-Flash layer is ~3.7 GB).
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
  int64_t shard_bytes = 0;  // > 0: shards + model.safetensors.index.json (write_synthetic_checkpoint)
};

// A small config with every layer type (sliding, CSA, HCA), hash and dense MoE layers, and
// real head_dim / rope widths; cheap enough for CI.
ModelConfig tiny_config();
// The smallest config that still has every layer type and both routers (a ~40 kB checkpoint):
// for the bad-input corpus and tests that only need valid structure.
ModelConfig micro_config();
// The first n_layers trunk layers of cfg (its schedule and hash layers cut there), no MTP block:
// a published model at real widths, shortened to fit one GPU.
ModelConfig first_layers(const ModelConfig& cfg, int64_t n_layers);

// Writes config.json and the weights into `dir` (created if needed).
Status write_synthetic_checkpoint(const ModelConfig& cfg, const SyntheticOptions& opt,
                                  const std::string& dir);

// The same schema and layout as write_synthetic_checkpoint, written as one model.safetensors
// whose stored bits are drawn directly, in parallel (cpu_threads()): uniformly random e2m1 codes;
// block scales (E4M3 for NVFP4, E8M0 for MXFP4 and FP8) and FP8 codes drawn from a few binades,
// and a global scale, chosen so the dequantized weights have RMS ≈ 1/sqrt(in_features) like the
// N(0, 1/in_features) weights of the quantizing writer; BF16/F32 tensors ≈ normal. Deterministic
// for a seed and independent of the thread count. shard_bytes must be 0.
Status write_random_bits_checkpoint(const ModelConfig& cfg, const SyntheticOptions& opt,
                                    const std::string& dir);
// Bytes write_random_bits_checkpoint writes (tensor data and header), without writing.
int64_t random_bits_checkpoint_bytes(const ModelConfig& cfg, const SyntheticOptions& opt);

Result<CheckpointLayout> parse_checkpoint_layout(const std::string& name);

}  // namespace dsv4
