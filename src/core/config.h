// DeepSeek-V4 config.json: parsing, validation of every field the engine uses, the per-layer
// schedule, and the published V4-Flash / V4-Pro values (dsv4-architecture.md §1).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace dsv4 {

enum class AttentionType { kSliding, kCSA, kHCA };  // compress ratio 0, 4, 128
std::string_view attention_type_name(AttentionType t);

struct YarnParams {
  bool enabled = false;
  double factor = 1.0;
  int64_t original_max_position = 0;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
};

struct ModelConfig {
  int64_t vocab_size = 0;
  int64_t d_model = 0;   // hidden_size
  int64_t n_layers = 0;  // num_hidden_layers (trunk; MTP excluded)
  int64_t n_heads = 0;   // num_attention_heads
  int64_t head_dim = 0;  // 512: one shared K=V head of this width
  int64_t rope_dim = 0;  // qk_rope_head_dim: RoPE on the last rope_dim channels
  int64_t q_lora_rank = 0;
  int64_t o_groups = 0;
  int64_t o_lora_rank = 0;
  int64_t sliding_window = 0;
  double rope_theta = 0;           // sliding-only layers
  double compress_rope_theta = 0;  // CSA/HCA layers (+ YaRN)
  YarnParams yarn;
  int64_t max_position = 0;
  int64_t index_n_heads = 0;
  int64_t index_head_dim = 0;
  int64_t index_topk = 0;
  int64_t moe_intermediate = 0;  // routed and shared expert width
  int64_t n_routed_experts = 0;
  int64_t n_shared_experts = 0;
  int64_t n_experts_per_token = 0;
  double routed_scaling_factor = 1.0;
  int64_t n_hash_layers = 0;
  double swiglu_limit = 0;
  int64_t hc_mult = 0;
  int64_t hc_sinkhorn_iters = 0;
  double hc_eps = 0;
  double rms_norm_eps = 0;
  int64_t n_mtp_layers = 0;  // num_nextn_predict_layers
  int64_t bos_token_id = 0;
  int64_t eos_token_id = 1;
  std::vector<int> compress_ratios;  // one per trunk layer, then one per MTP block (if given)

  AttentionType attention_type(int64_t layer) const;
  int compress_ratio(int64_t layer) const { return compress_ratios.at(size_t(layer)); }
  bool is_hash_layer(int64_t layer) const { return layer < n_hash_layers; }
  int64_t hc_mix_width() const { return (2 + hc_mult) * hc_mult; }  // 24 for hc_mult 4

  // The published configurations (dsv4-architecture.md §1.1).
  static ModelConfig flash();
  static ModelConfig pro();

  // Checks every field the engine relies on; errors name the field.
  Status validate() const;
  // A config.json (HF field names) that parse() reads back to this config.
  std::string to_json() const;
};

// Parses config.json text. `where` names the file in errors.
Result<ModelConfig> parse_config(const std::string& text, const std::string& where = "config.json");
Result<ModelConfig> load_config(const std::string& model_dir);

}  // namespace dsv4
