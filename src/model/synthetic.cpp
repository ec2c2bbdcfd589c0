#include "model/synthetic.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>

#include "core/numeric.h"
#include "core/safetensors.h"

namespace dsv4 {
namespace {

class Generator {
 public:
  Generator(const ModelConfig& cfg, const SyntheticOptions& opt) : cfg_(cfg), opt_(opt), rng_(opt.seed) {}

  Status write(const std::string& dir) {
    const int64_t D = cfg_.d_model, nD = cfg_.hc_mult * D;
    plain_bf16("embed.weight", {cfg_.vocab_size, D}, 0.0f, 1.0f);
    plain_bf16("head.weight", {cfg_.vocab_size, D}, 0.0f, 1.0f / std::sqrt(float(D)));
    plain_bf16("norm.weight", {D}, 1.0f, 0.1f);
    hyper_head("", nD);
    for (int64_t i = 0; i < cfg_.n_layers; ++i)
      block("layers." + std::to_string(i) + ".", cfg_.compress_ratio(i), cfg_.is_hash_layer(i),
            expert_format(false));
    if (opt_.with_mtp) {
      for (int64_t j = 0; j < cfg_.n_mtp_layers; ++j) {
        const std::string p = "mtp." + std::to_string(j) + ".";
        const size_t idx = size_t(cfg_.n_layers + j);
        block(p, idx < cfg_.compress_ratios.size() ? cfg_.compress_ratios[idx] : 0, false,
              expert_format(true));
        linear(p + "e_proj", D, D, WeightFormat::kFP8Block128);
        linear(p + "h_proj", D, D, WeightFormat::kFP8Block128);
        for (const char* n : {"enorm.weight", "hnorm.weight", "norm.weight"})
          plain_bf16(p + n, {D}, 1.0f, 0.1f);
        hyper_head(p, nD);
      }
    }
    std::filesystem::create_directories(dir);
    {
      std::ofstream out(std::filesystem::path(dir) / "config.json");
      out << cfg_.to_json();
      if (!out) return Status::errorf("{}: cannot write config.json", dir);
    }
    if (opt_.layout == CheckpointLayout::kNvfp4) {
      std::ofstream out(std::filesystem::path(dir) / "hf_quant_config.json");
      out << hf_quant_config_json();
      if (!out) return Status::errorf("{}: cannot write hf_quant_config.json", dir);
    }
    if (opt_.shard_bytes > 0) return writer_.write_sharded(dir, opt_.shard_bytes);
    return writer_.write_file((std::filesystem::path(dir) / "model.safetensors").string());
  }

 private:
  // ModelOpt's newer schema (quant_algo MIXED_PRECISION, one entry per layer's experts).
  std::string hf_quant_config_json() const {
    std::string layers;
    for (int64_t i = 0; i < cfg_.n_layers; ++i)
      layers += fmt::format(
          "{}\n      \"layers.{}.ffn.experts\": {{\"quant_algo\": \"NVFP4\", \"group_size\": 16}}",
          i ? "," : "", i);
    return fmt::format(
        "{{\n  \"producer\": {{\"name\": \"modelopt\", \"version\": \"dsv4-synthetic\"}},\n"
        "  \"quantization\": {{\n    \"quant_algo\": \"MIXED_PRECISION\",\n    \"kv_cache_quant_algo\": "
        "null,\n"
        "    \"quantized_layers\": {{{}\n    }},\n"
        "    \"exclude_modules\": [\"*.attn.*\", \"*.ffn.shared_experts.*\", \"head\", \"mtp.*\"]\n  "
        "}}\n}}\n",
        layers);
  }

  // The MTP block keeps MXFP4 experts even in NVIDIA's NVFP4 checkpoints (§8.4).
  WeightFormat expert_format(bool mtp) const {
    return (opt_.layout == CheckpointLayout::kNvfp4 && !mtp) ? WeightFormat::kNVFP4 : WeightFormat::kMXFP4;
  }

  std::vector<float> randn(int64_t n, float mean, float stddev) {
    std::normal_distribution<float> dist(mean, stddev);
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = dist(rng_);
    return v;
  }

  void plain_f32(const std::string& name, std::vector<int64_t> shape, float mean, float stddev) {
    const int64_t n = std::accumulate(shape.begin(), shape.end(), int64_t(1), std::multiplies<>());
    writer_.add_f32(name, std::move(shape), randn(n, mean, stddev));
  }

  void plain_bf16(const std::string& name, std::vector<int64_t> shape, float mean, float stddev) {
    const int64_t n = std::accumulate(shape.begin(), shape.end(), int64_t(1), std::multiplies<>());
    const QuantizedWeight q = quantize_bf16(randn(n, mean, stddev).data(), 1, n);
    writer_.add(name, DType::kBF16, std::move(shape), q.data);
  }

  void linear(const std::string& base, int64_t rows, int64_t cols, WeightFormat format) {
    const std::vector<float> w = randn(rows * cols, 0.0f, 1.0f / std::sqrt(float(cols)));
    const QuantizedWeight q = quantize_weight(format, w.data(), rows, cols);
    switch (format) {
      case WeightFormat::kF32:
        writer_.add(base + ".weight", DType::kF32, {rows, cols}, q.data);
        break;
      case WeightFormat::kBF16:
        writer_.add(base + ".weight", DType::kBF16, {rows, cols}, q.data);
        break;
      case WeightFormat::kFP8Block128:
        writer_.add(base + ".weight", DType::kF8_E4M3, {rows, cols}, q.data);
        writer_.add(base + ".scale", DType::kF8_E8M0, {(rows + 127) / 128, (cols + 127) / 128}, q.scales);
        break;
      case WeightFormat::kMXFP4:
        writer_.add(base + ".weight", DType::kI8, {rows, cols / 2}, q.data);
        writer_.add(base + ".scale", DType::kF8_E8M0, {rows, cols / kMxfp4Block}, q.scales);
        break;
      case WeightFormat::kNVFP4: {
        writer_.add(base + ".weight", DType::kU8, {rows, cols / 2}, q.data);
        writer_.add(base + ".weight_scale", DType::kF8_E4M3, {rows, cols / kNvfp4Block}, q.scales);
        writer_.add_f32(base + ".weight_scale_2", {}, {q.global_scale});
        writer_.add_f32(base + ".input_scale", {}, {1.0f / (kE2M1Max * kE4M3Max)});
        break;
      }
    }
  }

  void hyper_head(const std::string& p, int64_t nD) {
    plain_f32(p + "hc_head_fn", {cfg_.hc_mult, nD}, 0.0f, 1.0f / std::sqrt(float(nD)));
    plain_f32(p + "hc_head_base", {cfg_.hc_mult}, 0.0f, 0.5f);
    plain_f32(p + "hc_head_scale", {1}, 1.0f, 0.1f);
  }

  void block(const std::string& p, int ratio, bool hash, WeightFormat experts) {
    const int64_t D = cfg_.d_model, hd = cfg_.head_dim, H = cfg_.n_heads, I = cfg_.moe_intermediate;
    const int64_t nD = cfg_.hc_mult * D, mix = cfg_.hc_mix_width();
    const auto fp8 = WeightFormat::kFP8Block128, bf16 = WeightFormat::kBF16;
    plain_bf16(p + "attn_norm.weight", {D}, 1.0f, 0.1f);
    plain_bf16(p + "ffn_norm.weight", {D}, 1.0f, 0.1f);
    for (const char* site : {"attn", "ffn"}) {
      const std::string s = p + "hc_" + site;
      plain_f32(s + "_fn", {mix, nD}, 0.0f, 1.0f / std::sqrt(float(nD)));
      plain_f32(s + "_base", {mix}, 0.0f, 0.5f);
      plain_f32(s + "_scale", {3}, 1.0f, 0.1f);
    }
    plain_f32(p + "attn.attn_sink", {H}, 0.0f, 1.0f);
    plain_bf16(p + "attn.q_norm.weight", {cfg_.q_lora_rank}, 1.0f, 0.1f);
    plain_bf16(p + "attn.kv_norm.weight", {hd}, 1.0f, 0.1f);
    linear(p + "attn.wq_a", cfg_.q_lora_rank, D, fp8);
    linear(p + "attn.wq_b", H * hd, cfg_.q_lora_rank, fp8);
    linear(p + "attn.wkv", hd, D, fp8);
    linear(p + "attn.wo_a", cfg_.o_groups * cfg_.o_lora_rank, (H / cfg_.o_groups) * hd, fp8);
    linear(p + "attn.wo_b", D, cfg_.o_groups * cfg_.o_lora_rank, fp8);
    if (ratio > 0) compressor(p + "attn.compressor.", ratio, hd);
    if (ratio == 4) {
      linear(p + "attn.indexer.wq_b", cfg_.index_n_heads * cfg_.index_head_dim, cfg_.q_lora_rank, fp8);
      linear(p + "attn.indexer.weights_proj", cfg_.index_n_heads, D, bf16);
      compressor(p + "attn.indexer.compressor.", ratio, cfg_.index_head_dim);
    }
    linear(p + "ffn.gate", cfg_.n_routed_experts, D, bf16);
    if (hash) {
      tid2eid(p + "ffn.gate.tid2eid");
    } else {
      plain_f32(p + "ffn.gate.bias", {cfg_.n_routed_experts}, 0.0f, 0.1f);
    }
    for (int64_t e = 0; e < cfg_.n_routed_experts; ++e) {
      const std::string x = p + "ffn.experts." + std::to_string(e) + ".";
      linear(x + "w1", I, D, experts);
      linear(x + "w3", I, D, experts);
      linear(x + "w2", D, I, experts);
    }
    if (cfg_.n_shared_experts > 0) {
      const int64_t Is = I * cfg_.n_shared_experts;
      linear(p + "ffn.shared_experts.w1", Is, D, fp8);
      linear(p + "ffn.shared_experts.w3", Is, D, fp8);
      linear(p + "ffn.shared_experts.w2", D, Is, fp8);
    }
  }

  void compressor(const std::string& p, int ratio, int64_t width) {
    const int64_t c = ratio == 4 ? 2 : 1;
    plain_f32(p + "ape", {ratio, c * width}, 0.0f, 0.5f);
    linear(p + "wkv", c * width, cfg_.d_model, WeightFormat::kBF16);
    linear(p + "wgate", c * width, cfg_.d_model, WeightFormat::kBF16);
    plain_bf16(p + "norm.weight", {width}, 1.0f, 0.1f);
  }

  // Each token gets k distinct experts, as DeepSeek's table does.
  void tid2eid(const std::string& name) {
    const int64_t V = cfg_.vocab_size, k = cfg_.n_experts_per_token, E = cfg_.n_routed_experts;
    std::vector<int64_t> ids(size_t(V * k));
    std::vector<int64_t> perm(static_cast<size_t>(E));
    std::iota(perm.begin(), perm.end(), 0);
    for (int64_t t = 0; t < V; ++t) {
      for (int64_t j = 0; j < k; ++j) {
        std::uniform_int_distribution<int64_t> pick(j, E - 1);
        std::swap(perm[size_t(j)], perm[size_t(pick(rng_))]);
        ids[size_t(t * k + j)] = perm[size_t(j)];
      }
    }
    std::vector<uint8_t> bytes(ids.size() * 8);
    std::memcpy(bytes.data(), ids.data(), bytes.size());
    writer_.add(name, DType::kI64, {V, k}, std::move(bytes));
  }

  const ModelConfig& cfg_;
  const SyntheticOptions& opt_;
  std::mt19937_64 rng_;
  SafetensorsWriter writer_;
};

}  // namespace

ModelConfig tiny_config() {
  ModelConfig c = ModelConfig::flash();
  c.vocab_size = 1024;
  c.d_model = 256;
  c.n_layers = 4;
  c.n_heads = 4;
  c.head_dim = 128;
  c.rope_dim = 64;
  c.q_lora_rank = 64;
  c.o_groups = 2;
  c.o_lora_rank = 64;
  c.sliding_window = 32;
  c.index_n_heads = 8;
  c.index_head_dim = 128;
  c.index_topk = 8;
  c.moe_intermediate = 64;
  c.n_routed_experts = 8;
  c.n_shared_experts = 1;
  c.n_experts_per_token = 2;
  c.n_hash_layers = 1;
  c.n_mtp_layers = 1;
  c.max_position = 4096;
  c.compress_ratios = {0, 4, 128, 4, 0};
  return c;
}

ModelConfig micro_config() {
  ModelConfig c = tiny_config();
  c.vocab_size = 64;
  c.d_model = 32;
  c.n_layers = 3;
  c.n_heads = 2;
  c.head_dim = 16;
  c.rope_dim = 8;
  c.q_lora_rank = 16;
  c.o_groups = 1;
  c.o_lora_rank = 16;
  c.sliding_window = 8;
  c.index_n_heads = 2;
  c.index_head_dim = 16;
  c.index_topk = 2;
  c.moe_intermediate = 32;
  c.n_routed_experts = 2;
  c.n_experts_per_token = 1;
  c.n_mtp_layers = 0;
  c.compress_ratios = {0, 4, 128};
  return c;
}

Status write_synthetic_checkpoint(const ModelConfig& cfg, const SyntheticOptions& opt,
                                  const std::string& dir) {
  DSV4_RETURN_IF_ERROR(cfg.validate());
  return Generator(cfg, opt).write(dir);
}

Result<CheckpointLayout> parse_checkpoint_layout(const std::string& name) {
  if (name == "nvfp4") return CheckpointLayout::kNvfp4;
  if (name == "mxfp4") return CheckpointLayout::kMxfp4;
  return Status::errorf("layout '{}': expected nvfp4 or mxfp4", name);
}

}  // namespace dsv4
