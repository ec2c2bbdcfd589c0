// The DeepSeek-V4 tensor schema (native DeepSeek names, dsv4-architecture.md §8.1) checked
// against a checkpoint: every tensor is classified into its model slot and format, decided per
// tensor from its dtype and companion tensors (§8.4), never from the layer index or
// hf_quant_config.json. Shapes are checked against the config; missing and unexpected tensors
// are reported.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/quant.h"
#include "core/safetensors.h"

namespace dsv4 {

// What part of the model a slot belongs to (for the census and the memory plan).
enum class WeightGroup {
  kEmbedding,
  kHead,
  kAttention,
  kCompressor,
  kIndexer,
  kRouter,
  kRoutedExperts,
  kSharedExperts,
  kHyperConnections,
  kNorms,
  kMtp
};
std::string_view weight_group_name(WeightGroup g);

// A linear layer's weight: [rows = out, cols = in], in any WeightFormat.
struct LinearWeight {
  std::string name;  // base name, e.g. "layers.3.attn.wq_a"
  WeightGroup group;
  WeightView view;
  int64_t bytes = 0;  // stored bytes, scales included
};

// A plain tensor (norm weight, mHC parameters, sinks, ape, router bias, tid2eid, ...).
struct PlainWeight {
  std::string name;  // full tensor name
  WeightGroup group;
  const TensorInfo* tensor = nullptr;
};

class WeightMap {
 public:
  // Classifies every tensor of `ckpt` against the schema of `cfg`. Never fails: problems are
  // collected (see problems(), status()) so `dsv4 inspect` can list them all.
  static WeightMap build(const ModelConfig& cfg, const Checkpoint& ckpt);

  const std::vector<std::string>& problems() const { return problems_; }
  // The first problem (and how many more), or ok.
  Status status() const;

  const LinearWeight* linear(const std::string& base) const;
  const PlainWeight* plain(const std::string& name) const;
  const std::map<std::string, LinearWeight>& linears() const { return linears_; }
  const std::map<std::string, PlainWeight>& plains() const { return plains_; }
  bool has_mtp() const { return has_mtp_; }

 private:
  std::map<std::string, LinearWeight> linears_;
  std::map<std::string, PlainWeight> plains_;
  std::vector<std::string> problems_;
  bool has_mtp_ = false;
  friend class WeightMapBuilder;
};

// Plain tensors as fp32 / int64 (accepting the dtypes checkpoints use for them).
std::vector<float> plain_to_f32(const TensorInfo& t);
std::vector<int64_t> plain_to_i64(const TensorInfo& t);

}  // namespace dsv4
