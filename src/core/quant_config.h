// hf_quant_config.json of NVIDIA ModelOpt checkpoints. Two schemas exist for the same weights
// (dsv4-architecture.md §8.4): older revisions have quant_algo null and one entry per expert
// projection ("layers.0.ffn.experts.0.w1": {quant_algo, awq_block_size}); newer ones have
// quant_algo MIXED_PRECISION and one entry per layer ("layers.0.ffn.experts": {quant_algo,
// group_size}). Both are accepted and reported; neither decides a tensor's format (the weight
// map does, from dtypes and companion tensors).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace dsv4 {

struct HfQuantConfig {
  std::string producer;    // "modelopt 0.x" or "" when absent
  std::string quant_algo;  // "MIXED_PRECISION", "NVFP4", or "" for null (older schema)
  int64_t n_quantized_entries = 0;
  std::vector<std::string> algos;  // distinct per-entry algorithms, e.g. {"NVFP4"}
  int64_t group_size = 0;          // the NVFP4 group (16) when stated
  std::vector<std::string> exclude_modules;
};

Result<HfQuantConfig> parse_hf_quant_config(const std::string& text,
                                            const std::string& where = "hf_quant_config.json");
// Reads DIR/hf_quant_config.json; nullopt when the file is absent.
Result<std::optional<HfQuantConfig>> load_hf_quant_config(const std::string& model_dir);

}  // namespace dsv4
