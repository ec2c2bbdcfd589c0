// What a user sees while a model loads: progress over the checkpoint's bytes (an updating line
// with rate and ETA on a terminal, plain log lines otherwise), and the memory plan: weights,
// caches, workspace and decode graphs against the backend's free memory, refused before loading
// when they will not fit.
#pragma once

#include <cstdint>
#include <string>

#include "core/config.h"
#include "core/status.h"
#include "model/backend.h"
#include "model/weight_map.h"

namespace dsv4 {

// Reads every safetensors file of the checkpoint once, front to back, so the weights are in the
// page cache before the model maps them (on a cold disk this is the whole load time), reporting
// progress on stderr.
Status read_checkpoint_with_progress(const std::string& model_dir, bool terminal);

// What a model will take from its backend's memory, against what the backend has free.
struct MemoryPlan {
  std::string backend;         // "cuda", "cpu"
  bool holds_weights = false;  // weights copied into the backend (CUDA) or read mapped (CPU)
  int64_t weight_bytes = 0;    // CUDA: the device copies; CPU: the mapped checkpoint bytes read
  int64_t context = 0;         // tokens per sequence the caches are planned for
  int64_t n_sequences = 1;     // sequences held at once
  int64_t cache_bytes = 0;     // per sequence at `context` tokens
  int64_t max_position = 0;    // the config's limit, and the cache one sequence there takes:
  int64_t max_position_cache_bytes = 0;
  int64_t workspace_bytes = 0;  // activations of one prefill forward and one decode step (estimate)
  int64_t graph_bytes = 0;      // recorded decode steps, one per batch size (CUDA; estimate)
  int64_t free_bytes = -1;      // the backend's free memory (device / RAM available); -1 unknown
  int64_t total_bytes = -1;

  // What must fit in free_bytes: everything on CUDA; all but the mapped weights on the CPU.
  int64_t required_bytes() const;
  std::string describe() const;
  // A one-line error when required_bytes() exceeds free_bytes.
  Status check() const;
};

// Sizes the plan from the checkpoint's weight map (MTP tensors are not loaded), for n_sequences
// of `context` tokens and prefill forwards of up to `chunk` rows.
MemoryPlan plan_memory(const ModelConfig& cfg, const WeightMap& weights, const BackendMemoryInfo& memory,
                       const std::string& backend, int64_t context, int64_t n_sequences, int64_t chunk);
// The same from a checkpoint directory (its headers only: cheap), before Model::load.
Result<MemoryPlan> plan_model_memory(const std::string& model_dir, const Backend& backend, int64_t context,
                                     int64_t n_sequences, int64_t chunk);

}  // namespace dsv4
