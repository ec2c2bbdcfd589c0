#include "core/config.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace dsv4 {
using json = nlohmann::json;

std::string_view attention_type_name(AttentionType t) {
  switch (t) {
    case AttentionType::kSliding:
      return "sliding";
    case AttentionType::kCSA:
      return "CSA";
    case AttentionType::kHCA:
      return "HCA";
  }
  return "?";
}

AttentionType ModelConfig::attention_type(int64_t layer) const {
  switch (compress_ratio(layer)) {
    case 4:
      return AttentionType::kCSA;
    case 128:
      return AttentionType::kHCA;
    default:
      return AttentionType::kSliding;
  }
}

ModelConfig ModelConfig::flash() {
  ModelConfig c;
  c.vocab_size = 129280;
  c.d_model = 4096;
  c.n_layers = 43;
  c.n_heads = 64;
  c.head_dim = 512;
  c.rope_dim = 64;
  c.q_lora_rank = 1024;
  c.o_groups = 8;
  c.o_lora_rank = 1024;
  c.sliding_window = 128;
  c.rope_theta = 10000;
  c.compress_rope_theta = 160000;
  c.yarn = {true, 16.0, 65536, 32.0, 1.0};
  c.max_position = 1048576;
  c.index_n_heads = 64;
  c.index_head_dim = 128;
  c.index_topk = 512;
  c.moe_intermediate = 2048;
  c.n_routed_experts = 256;
  c.n_shared_experts = 1;
  c.n_experts_per_token = 6;
  c.routed_scaling_factor = 1.5;
  c.n_hash_layers = 3;
  c.swiglu_limit = 10.0;
  c.hc_mult = 4;
  c.hc_sinkhorn_iters = 20;
  c.hc_eps = 1e-6;
  c.rms_norm_eps = 1e-6;
  c.n_mtp_layers = 1;
  c.compress_ratios = {0, 0};
  for (int i = 0; i < 20; ++i) c.compress_ratios.insert(c.compress_ratios.end(), {4, 128});
  c.compress_ratios.insert(c.compress_ratios.end(), {4, 0});
  return c;
}

ModelConfig ModelConfig::pro() {
  ModelConfig c = flash();
  c.d_model = 7168;
  c.n_layers = 61;
  c.n_heads = 128;
  c.q_lora_rank = 1536;
  c.o_groups = 16;
  c.index_topk = 1024;
  c.moe_intermediate = 3072;
  c.n_routed_experts = 384;
  c.routed_scaling_factor = 2.5;
  c.compress_ratios = {128, 128};
  for (int i = 0; i < 29; ++i) c.compress_ratios.insert(c.compress_ratios.end(), {4, 128});
  c.compress_ratios.insert(c.compress_ratios.end(), {4, 0});
  return c;
}

namespace {

// Field readers: each names the field and the file in its error.
class Reader {
 public:
  Reader(const json& j, std::string where) : j_(j), where_(std::move(where)) {}

  Status integer(const char* key, int64_t* out, bool required = true) {
    if (!j_.contains(key) || j_[key].is_null()) return required ? missing(key) : Status();
    if (!j_[key].is_number_integer())
      return Status::errorf("{}: field '{}': expected an integer, got {}", where_, key, j_[key].dump());
    *out = j_[key].get<int64_t>();
    return {};
  }
  Status number(const char* key, double* out, bool required = true) {
    if (!j_.contains(key) || j_[key].is_null()) return required ? missing(key) : Status();
    if (!j_[key].is_number())
      return Status::errorf("{}: field '{}': expected a number, got {}", where_, key, j_[key].dump());
    *out = j_[key].get<double>();
    return {};
  }
  Status string(const char* key, std::string* out, bool required = true) {
    if (!j_.contains(key) || j_[key].is_null()) return required ? missing(key) : Status();
    if (!j_[key].is_string())
      return Status::errorf("{}: field '{}': expected a string, got {}", where_, key, j_[key].dump());
    *out = j_[key].get<std::string>();
    return {};
  }
  Status missing(const char* key) const { return Status::errorf("{}: missing field '{}'", where_, key); }

 private:
  const json& j_;
  std::string where_;
};

Status parse_layer_schedule(const json& j, const std::string& where, ModelConfig* c) {
  if (j.contains("compress_ratios") && !j["compress_ratios"].is_null()) {
    const json& r = j["compress_ratios"];
    if (!r.is_array()) return Status::errorf("{}: field 'compress_ratios': expected an array", where);
    for (size_t i = 0; i < r.size(); ++i) {
      if (!r[i].is_number_integer())
        return Status::errorf("{}: field 'compress_ratios[{}]': expected an integer, got {}", where, i,
                              r[i].dump());
      c->compress_ratios.push_back(r[i].get<int>());
    }
    return {};
  }
  if (j.contains("layer_types") && j["layer_types"].is_array()) {
    const json& t = j["layer_types"];
    for (size_t i = 0; i < t.size(); ++i) {
      const std::string s = t[i].is_string() ? t[i].get<std::string>() : t[i].dump();
      if (s == "sliding_attention")
        c->compress_ratios.push_back(0);
      else if (s == "compressed_sparse_attention")
        c->compress_ratios.push_back(4);
      else if (s == "heavily_compressed_attention")
        c->compress_ratios.push_back(128);
      else
        return Status::errorf(
            "{}: field 'layer_types[{}]': unknown layer type '{}'; expected sliding_attention, "
            "compressed_sparse_attention or heavily_compressed_attention",
            where, i, s);
    }
    return {};
  }
  // Never fall back to a built-in schedule: HF's default is off by one against V4-Pro (§1.3).
  return Status::errorf("{}: missing field 'compress_ratios' (or 'layer_types')", where);
}

}  // namespace

Result<ModelConfig> parse_config(const std::string& text, const std::string& where) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded()) return Status::errorf("{}: not valid JSON", where);
  if (!j.is_object()) return Status::errorf("{}: expected a JSON object", where);

  // Refuse other architectures before reading fields they may not share.
  if (j.contains("model_type") && j["model_type"] != "deepseek_v4")
    return Status::errorf(
        "{}: field 'model_type': unsupported model '{}'; expected 'deepseek_v4'", where,
        j["model_type"].is_string() ? j["model_type"].get<std::string>() : j["model_type"].dump());
  if (j.contains("architectures") && j["architectures"].is_array()) {
    bool found = false;
    for (const auto& a : j["architectures"]) found |= (a == "DeepseekV4ForCausalLM");
    if (!found)
      return Status::errorf("{}: field 'architectures': {}; expected DeepseekV4ForCausalLM", where,
                            j["architectures"].dump());
  }
  for (const char* v41_key : {"engram_config", "engram_layers", "vision_config", "csa2_ratio"})
    if (j.contains(v41_key))
      return Status::errorf(
          "{}: field '{}' belongs to a later layout (DeepSeek-V4.1: engram, CSA2, "
          "vision); only DeepSeek-V4 is supported",
          where, v41_key);

  ModelConfig c;
  Reader r(j, where);
  DSV4_RETURN_IF_ERROR(r.integer("vocab_size", &c.vocab_size));
  DSV4_RETURN_IF_ERROR(r.integer("hidden_size", &c.d_model));
  DSV4_RETURN_IF_ERROR(r.integer("num_hidden_layers", &c.n_layers));
  DSV4_RETURN_IF_ERROR(r.integer("num_attention_heads", &c.n_heads));
  int64_t kv_heads = 1;
  DSV4_RETURN_IF_ERROR(r.integer("num_key_value_heads", &kv_heads, false));
  if (kv_heads != 1)
    return Status::errorf("{}: field 'num_key_value_heads': expected 1 (one shared K=V head), got {}", where,
                          kv_heads);
  DSV4_RETURN_IF_ERROR(r.integer("head_dim", &c.head_dim));
  DSV4_RETURN_IF_ERROR(r.integer("qk_rope_head_dim", &c.rope_dim));
  DSV4_RETURN_IF_ERROR(r.integer("q_lora_rank", &c.q_lora_rank));
  DSV4_RETURN_IF_ERROR(r.integer("o_groups", &c.o_groups));
  DSV4_RETURN_IF_ERROR(r.integer("o_lora_rank", &c.o_lora_rank));
  DSV4_RETURN_IF_ERROR(r.integer("sliding_window", &c.sliding_window));
  DSV4_RETURN_IF_ERROR(r.number("rope_theta", &c.rope_theta));
  DSV4_RETURN_IF_ERROR(r.number("compress_rope_theta", &c.compress_rope_theta));
  c.max_position = 1 << 20;
  DSV4_RETURN_IF_ERROR(r.integer("max_position_embeddings", &c.max_position, false));
  DSV4_RETURN_IF_ERROR(r.integer("index_n_heads", &c.index_n_heads));
  DSV4_RETURN_IF_ERROR(r.integer("index_head_dim", &c.index_head_dim));
  DSV4_RETURN_IF_ERROR(r.integer("index_topk", &c.index_topk));
  DSV4_RETURN_IF_ERROR(r.integer("moe_intermediate_size", &c.moe_intermediate));
  DSV4_RETURN_IF_ERROR(r.integer("n_routed_experts", &c.n_routed_experts));
  DSV4_RETURN_IF_ERROR(r.integer("n_shared_experts", &c.n_shared_experts));
  DSV4_RETURN_IF_ERROR(r.integer("num_experts_per_tok", &c.n_experts_per_token));
  DSV4_RETURN_IF_ERROR(r.number("routed_scaling_factor", &c.routed_scaling_factor));
  DSV4_RETURN_IF_ERROR(r.number("swiglu_limit", &c.swiglu_limit));
  DSV4_RETURN_IF_ERROR(r.integer("hc_mult", &c.hc_mult));
  DSV4_RETURN_IF_ERROR(r.integer("hc_sinkhorn_iters", &c.hc_sinkhorn_iters));
  DSV4_RETURN_IF_ERROR(r.number("hc_eps", &c.hc_eps));
  DSV4_RETURN_IF_ERROR(r.number("rms_norm_eps", &c.rms_norm_eps));
  DSV4_RETURN_IF_ERROR(r.integer("num_nextn_predict_layers", &c.n_mtp_layers, false));
  DSV4_RETURN_IF_ERROR(r.integer("bos_token_id", &c.bos_token_id, false));
  DSV4_RETURN_IF_ERROR(r.integer("eos_token_id", &c.eos_token_id, false));

  std::string scoring = "sqrtsoftplus", act = "silu";
  DSV4_RETURN_IF_ERROR(r.string("scoring_func", &scoring, false));
  if (scoring != "sqrtsoftplus")
    return Status::errorf("{}: field 'scoring_func': '{}'; expected 'sqrtsoftplus'", where, scoring);
  DSV4_RETURN_IF_ERROR(r.string("hidden_act", &act, false));
  if (act != "silu") return Status::errorf("{}: field 'hidden_act': '{}'; expected 'silu'", where, act);

  if (j.contains("num_hash_layers")) {
    DSV4_RETURN_IF_ERROR(r.integer("num_hash_layers", &c.n_hash_layers));
  } else if (j.contains("mlp_layer_types") && j["mlp_layer_types"].is_array()) {
    // Hash layers must lead the schedule (the router reads token ids only there).
    bool in_prefix = true;
    for (size_t i = 0; i < j["mlp_layer_types"].size(); ++i) {
      const json& t = j["mlp_layer_types"][i];
      if (t == "hash_moe") {
        if (!in_prefix)
          return Status::errorf("{}: field 'mlp_layer_types[{}]': hash_moe after a moe layer", where, i);
        ++c.n_hash_layers;
      } else if (t == "moe") {
        in_prefix = false;
      } else {
        return Status::errorf("{}: field 'mlp_layer_types[{}]': {}; expected 'hash_moe' or 'moe'", where, i,
                              t.dump());
      }
    }
  } else {
    return r.missing("num_hash_layers");
  }

  if (j.contains("rope_scaling") && j["rope_scaling"].is_object()) {
    const json& y = j["rope_scaling"];
    Reader ry(y, where + ": rope_scaling");
    std::string type;
    if (y.contains("type"))
      DSV4_RETURN_IF_ERROR(ry.string("type", &type));
    else
      DSV4_RETURN_IF_ERROR(ry.string("rope_type", &type));
    if (type != "yarn")
      return Status::errorf("{}: field 'rope_scaling.type': '{}'; expected 'yarn'", where, type);
    c.yarn.enabled = true;
    DSV4_RETURN_IF_ERROR(ry.number("factor", &c.yarn.factor));
    DSV4_RETURN_IF_ERROR(ry.integer("original_max_position_embeddings", &c.yarn.original_max_position));
    DSV4_RETURN_IF_ERROR(ry.number("beta_fast", &c.yarn.beta_fast, false));
    DSV4_RETURN_IF_ERROR(ry.number("beta_slow", &c.yarn.beta_slow, false));
  }

  DSV4_RETURN_IF_ERROR(parse_layer_schedule(j, where, &c));
  // HF folds compress_ratios into layer_types truncated to the trunk; keep the MTP entry when given.
  if (int64_t(c.compress_ratios.size()) < c.n_layers)
    return Status::errorf("{}: field 'compress_ratios': {} entries; expected at least num_hidden_layers = {}",
                          where, c.compress_ratios.size(), c.n_layers);
  DSV4_RETURN_IF_ERROR(c.validate().with_context(where));
  return c;
}

Status ModelConfig::validate() const {
  auto positive = [](const char* name, double v) -> Status {
    if (!(v > 0) || !std::isfinite(v))
      return Status::errorf("field '{}': expected a positive value, got {}", name, v);
    return {};
  };
  DSV4_RETURN_IF_ERROR(positive("vocab_size", double(vocab_size)));
  DSV4_RETURN_IF_ERROR(positive("hidden_size", double(d_model)));
  DSV4_RETURN_IF_ERROR(positive("num_hidden_layers", double(n_layers)));
  DSV4_RETURN_IF_ERROR(positive("num_attention_heads", double(n_heads)));
  DSV4_RETURN_IF_ERROR(positive("head_dim", double(head_dim)));
  DSV4_RETURN_IF_ERROR(positive("qk_rope_head_dim", double(rope_dim)));
  DSV4_RETURN_IF_ERROR(positive("q_lora_rank", double(q_lora_rank)));
  DSV4_RETURN_IF_ERROR(positive("o_groups", double(o_groups)));
  DSV4_RETURN_IF_ERROR(positive("o_lora_rank", double(o_lora_rank)));
  DSV4_RETURN_IF_ERROR(positive("sliding_window", double(sliding_window)));
  DSV4_RETURN_IF_ERROR(positive("rope_theta", rope_theta));
  DSV4_RETURN_IF_ERROR(positive("compress_rope_theta", compress_rope_theta));
  DSV4_RETURN_IF_ERROR(positive("index_n_heads", double(index_n_heads)));
  DSV4_RETURN_IF_ERROR(positive("index_head_dim", double(index_head_dim)));
  DSV4_RETURN_IF_ERROR(positive("index_topk", double(index_topk)));
  DSV4_RETURN_IF_ERROR(positive("moe_intermediate_size", double(moe_intermediate)));
  DSV4_RETURN_IF_ERROR(positive("n_routed_experts", double(n_routed_experts)));
  DSV4_RETURN_IF_ERROR(positive("num_experts_per_tok", double(n_experts_per_token)));
  DSV4_RETURN_IF_ERROR(positive("routed_scaling_factor", routed_scaling_factor));
  DSV4_RETURN_IF_ERROR(positive("swiglu_limit", swiglu_limit));
  DSV4_RETURN_IF_ERROR(positive("hc_mult", double(hc_mult)));
  DSV4_RETURN_IF_ERROR(positive("hc_sinkhorn_iters", double(hc_sinkhorn_iters)));
  DSV4_RETURN_IF_ERROR(positive("hc_eps", hc_eps));
  DSV4_RETURN_IF_ERROR(positive("rms_norm_eps", rms_norm_eps));
  DSV4_RETURN_IF_ERROR(positive("max_position_embeddings", double(max_position)));
  if (n_shared_experts < 0)
    return Status::errorf("field 'n_shared_experts': expected >= 0, got {}", n_shared_experts);
  if (rope_dim % 2 != 0 || rope_dim >= head_dim)
    return Status::errorf("field 'qk_rope_head_dim': {}; expected an even number below head_dim = {}",
                          rope_dim, head_dim);
  if (rope_dim >= index_head_dim || index_head_dim % 2 != 0)
    return Status::errorf("field 'index_head_dim': {}; expected an even number above qk_rope_head_dim = {}",
                          index_head_dim, rope_dim);
  if (n_heads % o_groups != 0)
    return Status::errorf("field 'o_groups': {} does not divide num_attention_heads = {}", o_groups, n_heads);
  if (n_experts_per_token > n_routed_experts)
    return Status::errorf("field 'num_experts_per_tok': {}; expected at most n_routed_experts = {}",
                          n_experts_per_token, n_routed_experts);
  if (n_hash_layers < 0 || n_hash_layers > n_layers)
    return Status::errorf("field 'num_hash_layers': {}; expected 0..num_hidden_layers = {}", n_hash_layers,
                          n_layers);
  // Packed FP4 experts: every expert K (hidden_size for w1/w3, moe_intermediate_size for w2) holds
  // whole MXFP4 blocks of 32 (which are also whole NVFP4 blocks of 16).
  if (d_model % 32 != 0)
    return Status::errorf("field 'hidden_size': {}; expected a multiple of 32 (FP4 expert blocks)", d_model);
  if (moe_intermediate % 32 != 0)
    return Status::errorf("field 'moe_intermediate_size': {}; expected a multiple of 32 (FP4 expert blocks)",
                          moe_intermediate);
  if (yarn.enabled &&
      (!(yarn.factor >= 1) || yarn.original_max_position <= 0 || !(yarn.beta_fast > yarn.beta_slow)))
    return Status::error(
        "field 'rope_scaling': expected factor >= 1, original_max_position_embeddings > 0 "
        "and beta_fast > beta_slow");
  if (bos_token_id < 0 || bos_token_id >= vocab_size || eos_token_id < 0 || eos_token_id >= vocab_size)
    return Status::errorf("fields 'bos_token_id'/'eos_token_id': {}/{}; expected ids below vocab_size = {}",
                          bos_token_id, eos_token_id, vocab_size);
  if (int64_t(compress_ratios.size()) < n_layers)
    return Status::errorf("field 'compress_ratios': {} entries; expected {}", compress_ratios.size(),
                          n_layers);
  for (size_t i = 0; i < compress_ratios.size(); ++i)
    if (compress_ratios[i] != 0 && compress_ratios[i] != 4 && compress_ratios[i] != 128)
      return Status::errorf("field 'compress_ratios[{}]': {}; expected 0 (sliding), 4 (CSA) or 128 (HCA)", i,
                            compress_ratios[i]);
  return {};
}

std::string ModelConfig::to_json() const {
  json j = {
      {"architectures", {"DeepseekV4ForCausalLM"}},
      {"model_type", "deepseek_v4"},
      {"vocab_size", vocab_size},
      {"hidden_size", d_model},
      {"num_hidden_layers", n_layers},
      {"num_attention_heads", n_heads},
      {"num_key_value_heads", 1},
      {"head_dim", head_dim},
      {"qk_rope_head_dim", rope_dim},
      {"q_lora_rank", q_lora_rank},
      {"o_groups", o_groups},
      {"o_lora_rank", o_lora_rank},
      {"sliding_window", sliding_window},
      {"rope_theta", rope_theta},
      {"compress_rope_theta", compress_rope_theta},
      {"max_position_embeddings", max_position},
      {"index_n_heads", index_n_heads},
      {"index_head_dim", index_head_dim},
      {"index_topk", index_topk},
      {"moe_intermediate_size", moe_intermediate},
      {"n_routed_experts", n_routed_experts},
      {"n_shared_experts", n_shared_experts},
      {"num_experts_per_tok", n_experts_per_token},
      {"routed_scaling_factor", routed_scaling_factor},
      {"scoring_func", "sqrtsoftplus"},
      {"topk_method", "noaux_tc"},
      {"norm_topk_prob", true},
      {"num_hash_layers", n_hash_layers},
      {"swiglu_limit", swiglu_limit},
      {"hidden_act", "silu"},
      {"hc_mult", hc_mult},
      {"hc_sinkhorn_iters", hc_sinkhorn_iters},
      {"hc_eps", hc_eps},
      {"rms_norm_eps", rms_norm_eps},
      {"num_nextn_predict_layers", n_mtp_layers},
      {"bos_token_id", bos_token_id},
      {"eos_token_id", eos_token_id},
      {"tie_word_embeddings", false},
      {"attention_bias", false},
      {"torch_dtype", "bfloat16"},
      {"compress_ratios", compress_ratios},
  };
  if (yarn.enabled)
    j["rope_scaling"] = {{"type", "yarn"},
                         {"factor", yarn.factor},
                         {"original_max_position_embeddings", yarn.original_max_position},
                         {"beta_fast", yarn.beta_fast},
                         {"beta_slow", yarn.beta_slow}};
  return j.dump(2) + "\n";
}

Result<ModelConfig> load_config(const std::string& model_dir) {
  const auto path = std::filesystem::path(model_dir) / "config.json";
  std::ifstream in(path);
  if (!in) return Status::errorf("{}: cannot open", path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), "config.json");
}

}  // namespace dsv4
