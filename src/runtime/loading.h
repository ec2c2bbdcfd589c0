// What a user sees while a model loads: progress over the checkpoint's bytes (an updating line
// with rate and ETA on a terminal, plain log lines otherwise), and the memory plan.
#pragma once

#include <cstdint>
#include <string>

#include "core/config.h"
#include "core/status.h"

namespace dsv4 {

// Reads every safetensors file of the checkpoint once, front to back, so the weights are in the
// page cache before the model maps them (on a cold disk this is the whole load time), reporting
// progress on stderr.
Status read_checkpoint_with_progress(const std::string& model_dir, bool terminal);

struct MemoryPlan {
  int64_t weight_bytes = 0;     // stored checkpoint bytes (kept in their formats, mmapped)
  int64_t cache_bytes = 0;      // per sequence at `context` tokens
  int64_t workspace_bytes = 0;  // activations of one forward of `chunk` tokens
  std::string describe() const;
};

MemoryPlan plan_memory(const ModelConfig& cfg, int64_t weight_bytes, int64_t context, int64_t chunk);

}  // namespace dsv4
