#include "model/weight_map.h"

#include <cmath>
#include <cstring>
#include <set>

#include "core/numeric.h"

namespace dsv4 {

std::string_view weight_group_name(WeightGroup g) {
  switch (g) {
    case WeightGroup::kEmbedding:
      return "embedding";
    case WeightGroup::kHead:
      return "lm head";
    case WeightGroup::kAttention:
      return "attention";
    case WeightGroup::kCompressor:
      return "compressor";
    case WeightGroup::kIndexer:
      return "indexer";
    case WeightGroup::kRouter:
      return "router";
    case WeightGroup::kRoutedExperts:
      return "routed experts";
    case WeightGroup::kSharedExperts:
      return "shared experts";
    case WeightGroup::kHyperConnections:
      return "mHC";
    case WeightGroup::kNorms:
      return "norms";
    case WeightGroup::kMtp:
      return "mtp";
  }
  return "?";
}

namespace {

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

}  // namespace

// Walks the schema, consuming checkpoint tensors as it resolves each slot.
class WeightMapBuilder {
 public:
  WeightMapBuilder(const ModelConfig& cfg, const Checkpoint& ckpt, WeightMap* out)
      : cfg_(cfg), ckpt_(ckpt), out_(out) {}

  void run() {
    const int64_t D = cfg_.d_model;
    const int64_t nD = cfg_.hc_mult * D;
    plain("embed.weight", WeightGroup::kEmbedding, {cfg_.vocab_size, D}, kFloat);
    plain("head.weight", WeightGroup::kHead, {cfg_.vocab_size, D}, kFloat);
    plain("norm.weight", WeightGroup::kNorms, {D}, kFloat);
    hyper_head("", WeightGroup::kHyperConnections, nD);
    for (int64_t i = 0; i < cfg_.n_layers; ++i)
      block("layers." + std::to_string(i) + ".", cfg_.compress_ratio(i), cfg_.is_hash_layer(i), false);

    // MTP blocks are optional (HF drops them); when present they must be complete.
    bool any_mtp = false;
    for (const auto& [name, _] : ckpt_.tensors()) any_mtp |= name.rfind("mtp.", 0) == 0;
    if (any_mtp) {
      out_->has_mtp_ = true;
      for (int64_t j = 0; j < cfg_.n_mtp_layers; ++j) {
        const std::string p = "mtp." + std::to_string(j) + ".";
        const size_t idx = size_t(cfg_.n_layers + j);
        const int ratio = idx < cfg_.compress_ratios.size() ? cfg_.compress_ratios[idx] : 0;
        block(p, ratio, false, true);
        linear(p + "e_proj", WeightGroup::kMtp, D, D);
        linear(p + "h_proj", WeightGroup::kMtp, D, D);
        plain(p + "enorm.weight", WeightGroup::kMtp, {D}, kFloat);
        plain(p + "hnorm.weight", WeightGroup::kMtp, {D}, kFloat);
        plain(p + "norm.weight", WeightGroup::kMtp, {D}, kFloat);
        hyper_head(p, WeightGroup::kMtp, nD);
      }
    }
    for (const auto& [name, t] : ckpt_.tensors())
      if (!consumed_.count(name))
        problem(fmt::format("{}: unexpected tensor '{}' {} {}", t.file, name, dtype_name(t.dtype),
                            t.shape_string()));
  }

 private:
  enum DTypes { kFloat, kIndex };

  void problem(std::string p) { out_->problems_.push_back(std::move(p)); }

  const TensorInfo* take(const std::string& name) {
    const TensorInfo* t = ckpt_.find(name);
    if (t) consumed_.insert(name);
    return t;
  }

  // Checks a companion tensor's dtype and shape; returns it or null after recording a problem.
  const TensorInfo* expect(const std::string& name, DType dtype, const std::vector<int64_t>& shape) {
    const TensorInfo* t = take(name);
    if (!t) {
      problem(fmt::format("missing tensor '{}' ({} {})", name, dtype_name(dtype), shape_str(shape)));
      return nullptr;
    }
    if (t->dtype != dtype) {
      problem(fmt::format("{}: tensor '{}': dtype {}, expected {}", t->file, name, dtype_name(t->dtype),
                          dtype_name(dtype)));
      return nullptr;
    }
    if (t->shape != shape) {
      problem(fmt::format("{}: tensor '{}': shape {}, expected {}", t->file, name, t->shape_string(),
                          shape_str(shape)));
      return nullptr;
    }
    return t;
  }

  // A scalar F32 tensor ([] or [1]) holding a finite, non-zero scale.
  const TensorInfo* expect_scalar_scale(const std::string& name, bool required) {
    const TensorInfo* t = ckpt_.find(name);
    if (!t) {
      if (required) problem(fmt::format("missing tensor '{}' (F32 scalar)", name));
      return nullptr;
    }
    consumed_.insert(name);
    if (t->dtype != DType::kF32 || t->numel() != 1) {
      problem(fmt::format("{}: tensor '{}': {} {}, expected an F32 scalar", t->file, name,
                          dtype_name(t->dtype), t->shape_string()));
      return nullptr;
    }
    float v;
    std::memcpy(&v, t->data, 4);
    if (!std::isfinite(v) || v == 0) {
      problem(fmt::format("{}: tensor '{}': value {}; expected a finite non-zero scale", t->file, name, v));
      return nullptr;
    }
    return t;
  }

  void linear(const std::string& base, WeightGroup group, int64_t rows, int64_t cols) {
    const std::string wname = base + ".weight";
    const TensorInfo* w = take(wname);
    if (!w) {
      problem(fmt::format("missing tensor '{}' (linear [{}, {}])", wname, rows, cols));
      return;
    }
    LinearWeight lw{base, group, {}, 0};
    lw.view.rows = rows;
    lw.view.cols = cols;
    lw.view.data = w->data;
    lw.bytes = w->nbytes();
    const TensorInfo* s = nullptr;
    const bool has_scale = ckpt_.find(base + ".scale") != nullptr;
    const bool has_weight_scale = ckpt_.find(base + ".weight_scale") != nullptr;

    if (w->dtype == DType::kU8 && has_weight_scale) {  // NVFP4 (ModelOpt)
      lw.view.format = WeightFormat::kNVFP4;
      if (cols % kNvfp4Block)
        return problem(fmt::format("tensor '{}': in-features {} not a multiple of 16", wname, cols));
      if (!check_shape(*w, {rows, cols / 2})) return;
      s = expect(base + ".weight_scale", DType::kF8_E4M3, {rows, cols / kNvfp4Block});
      const TensorInfo* g = expect_scalar_scale(base + ".weight_scale_2", true);
      expect_scalar_scale(base + ".input_scale", false);
      if (!s || !g) return;
      std::memcpy(&lw.view.global_scale, g->data, 4);
      lw.bytes += g->nbytes();
    } else if ((w->dtype == DType::kI8 || w->dtype == DType::kU8) && has_scale) {  // MXFP4
      lw.view.format = WeightFormat::kMXFP4;
      if (cols % kMxfp4Block)
        return problem(fmt::format("tensor '{}': in-features {} not a multiple of 32", wname, cols));
      if (!check_shape(*w, {rows, cols / 2})) return;
      s = expect(base + ".scale", DType::kF8_E8M0, {rows, cols / kMxfp4Block});
      if (!s) return;
    } else if (w->dtype == DType::kF8_E4M3) {  // FP8 block-128
      lw.view.format = WeightFormat::kFP8Block128;
      if (!check_shape(*w, {rows, cols})) return;
      s = expect(base + ".scale", DType::kF8_E8M0, {ceil_div(rows, kFp8Block), ceil_div(cols, kFp8Block)});
      if (!s) return;
    } else if (w->dtype == DType::kBF16 || w->dtype == DType::kF32) {
      lw.view.format = w->dtype == DType::kBF16 ? WeightFormat::kBF16 : WeightFormat::kF32;
      if (!check_shape(*w, {rows, cols})) return;
    } else {
      return problem(fmt::format(
          "{}: tensor '{}': dtype {} {} is no known weight format; expected U8+weight_scale (NVFP4), "
          "I8+scale (MXFP4), F8_E4M3+scale (FP8 block-128), BF16 or F32",
          w->file, wname, dtype_name(w->dtype), w->shape_string()));
    }
    if (s) {
      lw.view.scales = s->data;
      lw.bytes += s->nbytes();
    }
    out_->linears_.emplace(base, lw);
  }

  bool check_shape(const TensorInfo& t, const std::vector<int64_t>& shape) {
    if (t.shape == shape) return true;
    problem(fmt::format("{}: tensor '{}': shape {}, expected {}", t.file, t.name, t.shape_string(),
                        shape_str(shape)));
    return false;
  }

  void plain(const std::string& name, WeightGroup group, const std::vector<int64_t>& shape, DTypes kind) {
    const TensorInfo* t = take(name);
    if (!t) {
      problem(fmt::format("missing tensor '{}' {}", name, shape_str(shape)));
      return;
    }
    const bool dtype_ok = kind == kFloat ? (t->dtype == DType::kF32 || t->dtype == DType::kBF16)
                                         : (t->dtype == DType::kI64 || t->dtype == DType::kI32);
    if (!dtype_ok) {
      problem(fmt::format("{}: tensor '{}': dtype {}, expected {}", t->file, name, dtype_name(t->dtype),
                          kind == kFloat ? "F32 or BF16" : "I64 or I32"));
      return;
    }
    if (!check_shape(*t, shape)) return;
    out_->plains_.emplace(name, PlainWeight{name, group, t});
  }

  void hyper_head(const std::string& p, WeightGroup group, int64_t nD) {
    plain(p + "hc_head_fn", group, {cfg_.hc_mult, nD}, kFloat);
    plain(p + "hc_head_base", group, {cfg_.hc_mult}, kFloat);
    plain(p + "hc_head_scale", group, {1}, kFloat);
  }

  void block(const std::string& p, int ratio, bool hash, bool mtp) {
    const int64_t D = cfg_.d_model, hd = cfg_.head_dim, H = cfg_.n_heads, I = cfg_.moe_intermediate;
    const int64_t nD = cfg_.hc_mult * D, mix = cfg_.hc_mix_width();
    const auto g = [&](WeightGroup normal) { return mtp ? WeightGroup::kMtp : normal; };
    plain(p + "attn_norm.weight", g(WeightGroup::kNorms), {D}, kFloat);
    plain(p + "ffn_norm.weight", g(WeightGroup::kNorms), {D}, kFloat);
    for (const char* site : {"attn", "ffn"}) {
      const std::string s = p + "hc_" + site;
      plain(s + "_fn", g(WeightGroup::kHyperConnections), {mix, nD}, kFloat);
      plain(s + "_base", g(WeightGroup::kHyperConnections), {mix}, kFloat);
      plain(s + "_scale", g(WeightGroup::kHyperConnections), {3}, kFloat);
    }
    const WeightGroup attn = g(WeightGroup::kAttention);
    plain(p + "attn.attn_sink", attn, {H}, kFloat);
    plain(p + "attn.q_norm.weight", attn, {cfg_.q_lora_rank}, kFloat);
    plain(p + "attn.kv_norm.weight", attn, {hd}, kFloat);
    linear(p + "attn.wq_a", attn, cfg_.q_lora_rank, D);
    linear(p + "attn.wq_b", attn, H * hd, cfg_.q_lora_rank);
    linear(p + "attn.wkv", attn, hd, D);
    linear(p + "attn.wo_a", attn, cfg_.o_groups * cfg_.o_lora_rank, (H / cfg_.o_groups) * hd);
    linear(p + "attn.wo_b", attn, D, cfg_.o_groups * cfg_.o_lora_rank);
    if (ratio > 0) compressor(p + "attn.compressor.", g(WeightGroup::kCompressor), ratio, hd);
    if (ratio == 4) {
      const WeightGroup idx = g(WeightGroup::kIndexer);
      linear(p + "attn.indexer.wq_b", idx, cfg_.index_n_heads * cfg_.index_head_dim, cfg_.q_lora_rank);
      linear(p + "attn.indexer.weights_proj", idx, cfg_.index_n_heads, D);
      compressor(p + "attn.indexer.compressor.", idx, ratio, cfg_.index_head_dim);
    }
    const WeightGroup router = g(WeightGroup::kRouter);
    linear(p + "ffn.gate", router, cfg_.n_routed_experts, D);
    if (hash) {
      plain(p + "ffn.gate.tid2eid", router, {cfg_.vocab_size, cfg_.n_experts_per_token}, kIndex);
      check_tid2eid(p + "ffn.gate.tid2eid");
    } else {
      plain(p + "ffn.gate.bias", router, {cfg_.n_routed_experts}, kFloat);
    }
    const WeightGroup experts = g(WeightGroup::kRoutedExperts);
    for (int64_t e = 0; e < cfg_.n_routed_experts; ++e) {
      const std::string x = p + "ffn.experts." + std::to_string(e) + ".";
      linear(x + "w1", experts, I, D);
      linear(x + "w3", experts, I, D);
      linear(x + "w2", experts, D, I);
    }
    if (cfg_.n_shared_experts > 0) {
      const WeightGroup shared = g(WeightGroup::kSharedExperts);
      const int64_t Is = I * cfg_.n_shared_experts;
      linear(p + "ffn.shared_experts.w1", shared, Is, D);
      linear(p + "ffn.shared_experts.w3", shared, Is, D);
      linear(p + "ffn.shared_experts.w2", shared, D, Is);
    }
  }

  void compressor(const std::string& p, WeightGroup group, int ratio, int64_t width) {
    const int64_t c = ratio == 4 ? 2 : 1;  // CSA keeps two overlapping series
    plain(p + "ape", group, {ratio, c * width}, kFloat);
    linear(p + "wkv", group, c * width, cfg_.d_model);
    linear(p + "wgate", group, c * width, cfg_.d_model);
    plain(p + "norm.weight", group, {width}, kFloat);
  }

  void check_tid2eid(const std::string& name) {
    auto it = out_->plains_.find(name);
    if (it == out_->plains_.end()) return;
    const std::vector<int64_t> ids = plain_to_i64(*it->second.tensor);
    const int64_t k = cfg_.n_experts_per_token;
    for (size_t i = 0; i < ids.size(); ++i) {
      if (ids[i] < 0 || ids[i] >= cfg_.n_routed_experts) {
        problem(fmt::format("{}: tensor '{}': entry [{}, {}] = {}; expected an expert id below {}",
                            it->second.tensor->file, name, int64_t(i) / k, int64_t(i) % k, ids[i],
                            cfg_.n_routed_experts));
        return;
      }
    }
  }

  const ModelConfig& cfg_;
  const Checkpoint& ckpt_;
  WeightMap* out_;
  std::set<std::string> consumed_;
};

WeightMap WeightMap::build(const ModelConfig& cfg, const Checkpoint& ckpt) {
  WeightMap m;
  WeightMapBuilder(cfg, ckpt, &m).run();
  return m;
}

Status WeightMap::status() const {
  if (problems_.empty()) return {};
  if (problems_.size() == 1) return Status::error(problems_[0]);
  return Status::errorf("{} (and {} more problems)", problems_[0], problems_.size() - 1);
}

const LinearWeight* WeightMap::linear(const std::string& base) const {
  auto it = linears_.find(base);
  return it == linears_.end() ? nullptr : &it->second;
}

const PlainWeight* WeightMap::plain(const std::string& name) const {
  auto it = plains_.find(name);
  return it == plains_.end() ? nullptr : &it->second;
}

std::vector<float> plain_to_f32(const TensorInfo& t) {
  std::vector<float> out(size_t(t.numel()));
  if (t.dtype == DType::kF32) {
    std::memcpy(out.data(), t.data, out.size() * 4);
  } else if (t.dtype == DType::kBF16) {
    for (size_t i = 0; i < out.size(); ++i) {
      uint16_t b;
      std::memcpy(&b, t.data + 2 * i, 2);
      out[i] = bf16_to_f32(b);
    }
  }
  return out;
}

std::vector<int64_t> plain_to_i64(const TensorInfo& t) {
  std::vector<int64_t> out(size_t(t.numel()));
  if (t.dtype == DType::kI64) {
    std::memcpy(out.data(), t.data, out.size() * 8);
  } else if (t.dtype == DType::kI32) {
    for (size_t i = 0; i < out.size(); ++i) {
      int32_t v;
      std::memcpy(&v, t.data + 4 * i, 4);
      out[i] = v;
    }
  }
  return out;
}

}  // namespace dsv4
