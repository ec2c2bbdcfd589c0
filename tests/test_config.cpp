// config.json parsing and validation (src/core/config.h) and hf_quant_config.json (both schemas).
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/config.h"
#include "core/quant_config.h"

namespace dsv4 {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const std::string kConfigs = std::string(DSV4_TEST_DATA) + "/configs/";

TEST(Config, PublishedFlashConfigParsesToTheFlashValues) {
  auto c = parse_config(read_file(kConfigs + "deepseek-v4-flash.json"));
  ASSERT_TRUE(c.ok()) << c.status().message();
  const ModelConfig f = ModelConfig::flash();
  EXPECT_EQ(c->d_model, 4096);
  EXPECT_EQ(c->n_layers, 43);
  EXPECT_EQ(c->compress_ratios, f.compress_ratios);
  EXPECT_EQ(c->compress_ratios.size(), 44u);
  EXPECT_EQ(c->index_topk, 512);
  EXPECT_DOUBLE_EQ(c->routed_scaling_factor, 1.5);
  EXPECT_TRUE(c->yarn.enabled);
  EXPECT_DOUBLE_EQ(c->yarn.factor, 16);
  EXPECT_EQ(c->yarn.original_max_position, 65536);
  // Schedule (§1.2): 0,1 sliding; even >= 2 CSA; odd >= 3 HCA; hash 0..2.
  EXPECT_EQ(c->attention_type(0), AttentionType::kSliding);
  EXPECT_EQ(c->attention_type(1), AttentionType::kSliding);
  EXPECT_EQ(c->attention_type(2), AttentionType::kCSA);
  EXPECT_EQ(c->attention_type(3), AttentionType::kHCA);
  EXPECT_EQ(c->attention_type(42), AttentionType::kCSA);
  EXPECT_TRUE(c->is_hash_layer(2));
  EXPECT_FALSE(c->is_hash_layer(3));
}

TEST(Config, PublishedProConfigParsesToTheProValues) {
  auto c = parse_config(read_file(kConfigs + "deepseek-v4-pro.json"));
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->d_model, 7168);
  EXPECT_EQ(c->n_layers, 61);
  EXPECT_EQ(c->n_heads, 128);
  EXPECT_EQ(c->compress_ratios, ModelConfig::pro().compress_ratios);
  // V4-Pro has no sliding-only trunk layer: 0 and 1 are HCA, 2 is CSA (not HF's shifted default).
  EXPECT_EQ(c->attention_type(0), AttentionType::kHCA);
  EXPECT_EQ(c->attention_type(1), AttentionType::kHCA);
  EXPECT_EQ(c->attention_type(2), AttentionType::kCSA);
  EXPECT_EQ(c->attention_type(3), AttentionType::kHCA);
  EXPECT_DOUBLE_EQ(c->routed_scaling_factor, 2.5);
}

TEST(Config, ToJsonRoundTrips) {
  for (const ModelConfig& c : {ModelConfig::flash(), ModelConfig::pro()}) {
    auto back = parse_config(c.to_json());
    ASSERT_TRUE(back.ok()) << back.status().message();
    EXPECT_EQ(back->to_json(), c.to_json());
  }
}

TEST(Config, LayerTypesAndMlpLayerTypesAreAccepted) {
  auto j = nlohmann::json::parse(read_file(kConfigs + "deepseek-v4-flash.json"));
  j.erase("compress_ratios");
  j.erase("num_hash_layers");
  j["num_hidden_layers"] = 4;
  j["layer_types"] = {"sliding_attention", "compressed_sparse_attention", "heavily_compressed_attention",
                      "compressed_sparse_attention"};
  j["mlp_layer_types"] = {"hash_moe", "hash_moe", "moe", "moe"};
  auto c = parse_config(j.dump());
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->compress_ratios, (std::vector<int>{0, 4, 128, 4}));
  EXPECT_EQ(c->n_hash_layers, 2);
  j["mlp_layer_types"] = {"moe", "hash_moe", "moe", "moe"};
  auto bad = parse_config(j.dump());
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("hash_moe after a moe layer"), std::string::npos);
}

TEST(Config, EveryRequiredFieldIsChecked) {
  const auto full = nlohmann::json::parse(read_file(kConfigs + "deepseek-v4-flash.json"));
  for (const char* key :
       {"vocab_size",       "hidden_size",      "num_hidden_layers",   "num_attention_heads",
        "head_dim",         "qk_rope_head_dim", "q_lora_rank",         "o_groups",
        "o_lora_rank",      "sliding_window",   "rope_theta",          "compress_rope_theta",
        "index_n_heads",    "index_head_dim",   "index_topk",          "moe_intermediate_size",
        "n_routed_experts", "n_shared_experts", "num_experts_per_tok", "routed_scaling_factor",
        "swiglu_limit",     "hc_mult",          "hc_sinkhorn_iters",   "hc_eps",
        "rms_norm_eps",     "num_hash_layers"}) {
    auto j = full;
    j.erase(key);
    auto c = parse_config(j.dump());
    ASSERT_FALSE(c.ok()) << key;
    EXPECT_EQ(c.status().message(), std::string("config.json: missing field '") + key + "'");
  }
}

TEST(Config, BadValuesNameTheField) {
  const auto full = nlohmann::json::parse(read_file(kConfigs + "deepseek-v4-flash.json"));
  const std::vector<std::pair<std::pair<std::string, nlohmann::json>, std::string>> cases = {
      {{"hidden_size", -4096}, "field 'hidden_size': expected a positive value"},
      {{"hidden_size", 4100}, "field 'hidden_size': 4100; expected a multiple of 32"},
      {{"num_key_value_heads", 8}, "field 'num_key_value_heads': expected 1"},
      {{"o_groups", 7}, "field 'o_groups': 7 does not divide num_attention_heads = 64"},
      {{"num_experts_per_tok", 300},
       "field 'num_experts_per_tok': 300; expected at most n_routed_experts = 256"},
      {{"qk_rope_head_dim", 63}, "field 'qk_rope_head_dim': 63; expected an even number"},
      {{"scoring_func", "softmax"}, "field 'scoring_func': 'softmax'; expected 'sqrtsoftplus'"},
      {{"hc_eps", 0}, "field 'hc_eps': expected a positive value"},
      {{"compress_ratios", nlohmann::json::array({0, 4})}, "'compress_ratios': 2 entries; expected at least"},
      {{"rope_scaling", {{"type", "linear"}, {"factor", 2}}},
       "field 'rope_scaling.type': 'linear'; expected 'yarn'"},
      {{"model_type", "deepseek_v32"}, "unsupported model 'deepseek_v32'"},
      {{"vision_config", nlohmann::json::object()}, "only DeepSeek-V4 is supported"},
      {{"num_hash_layers", 50}, "field 'num_hash_layers': 50"},
      {{"eos_token_id", 200000}, "expected ids below vocab_size"},
  };
  for (const auto& [kv, want] : cases) {
    auto j = full;
    j[kv.first] = kv.second;
    auto c = parse_config(j.dump());
    ASSERT_FALSE(c.ok()) << kv.first;
    EXPECT_NE(c.status().message().find(want), std::string::npos) << c.status().message();
    EXPECT_EQ(c.status().message().find('\n'), std::string::npos);  // one line
  }
}

TEST(QuantConfig, BothModelOptSchemasAreAccepted) {
  auto old_schema = parse_hf_quant_config(read_file(kConfigs + "hf_quant_config.old-schema.json"));
  ASSERT_TRUE(old_schema.ok()) << old_schema.status().message();
  EXPECT_EQ(old_schema->quant_algo, "");
  EXPECT_EQ(old_schema->n_quantized_entries, 6);
  EXPECT_EQ(old_schema->group_size, 16);
  EXPECT_EQ(old_schema->algos, std::vector<std::string>{"NVFP4"});
  auto new_schema = parse_hf_quant_config(read_file(kConfigs + "hf_quant_config.new-schema.json"));
  ASSERT_TRUE(new_schema.ok()) << new_schema.status().message();
  EXPECT_EQ(new_schema->quant_algo, "MIXED_PRECISION");
  EXPECT_EQ(new_schema->n_quantized_entries, 43);
  EXPECT_EQ(new_schema->group_size, 16);
  EXPECT_EQ(new_schema->exclude_modules.size(), 4u);
}

TEST(QuantConfig, MalformedFilesAreRefused) {
  EXPECT_FALSE(parse_hf_quant_config("{").ok());
  EXPECT_FALSE(parse_hf_quant_config("{\"producer\": {}}").ok());
  auto bad_group = parse_hf_quant_config(
      R"({"quantization": {"quant_algo": null, "quantized_layers": {"layers.0.ffn.experts.0.w1": {"quant_algo": "NVFP4", "awq_block_size": 32}}}})");
  ASSERT_FALSE(bad_group.ok());
  EXPECT_NE(bad_group.status().message().find("NVFP4 groups are 16"), std::string::npos);
}

}  // namespace
}  // namespace dsv4
