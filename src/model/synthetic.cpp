#include "model/synthetic.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <thread>

#include "core/numeric.h"
#include "core/parallel.h"
#include "core/safetensors.h"

namespace dsv4 {
namespace {

int64_t numel(const std::vector<int64_t>& shape) {
  return std::accumulate(shape.begin(), shape.end(), int64_t(1), std::multiplies<>());
}

// What the schema walk asks a writer for; the two writers differ only in how they make values.
class TensorMaker {
 public:
  virtual ~TensorMaker() = default;
  // An F32 or BF16 tensor of values ~ N(mean, stddev).
  virtual void plain(const std::string& name, DType dtype, std::vector<int64_t> shape, float mean,
                     float stddev) = 0;
  // A weight [rows, cols] in `format` with its companion tensors; values of RMS ≈ 1/sqrt(cols).
  virtual void linear(const std::string& base, int64_t rows, int64_t cols, WeightFormat format) = 0;
  // The hash router's table [vocab, k]: k distinct experts per token, as DeepSeek's table has.
  virtual void tid2eid(const std::string& name, int64_t vocab, int64_t k, int64_t n_experts) = 0;
};

// The DeepSeek-V4 tensor schema (the one WeightMap checks), always in the same order.
class SchemaWalk {
 public:
  SchemaWalk(const ModelConfig& cfg, const SyntheticOptions& opt, TensorMaker& m)
      : cfg_(cfg), opt_(opt), m_(m) {}

  void run() {
    const int64_t D = cfg_.d_model, nD = cfg_.hc_mult * D;
    m_.plain("embed.weight", DType::kBF16, {cfg_.vocab_size, D}, 0.0f, 1.0f);
    m_.plain("head.weight", DType::kBF16, {cfg_.vocab_size, D}, 0.0f, 1.0f / std::sqrt(float(D)));
    m_.plain("norm.weight", DType::kBF16, {D}, 1.0f, 0.1f);
    hyper_head("", nD);
    for (int64_t i = 0; i < cfg_.n_layers; ++i)
      block("layers." + std::to_string(i) + ".", cfg_.compress_ratio(i), cfg_.is_hash_layer(i),
            expert_format(false));
    if (!opt_.with_mtp) return;
    for (int64_t j = 0; j < cfg_.n_mtp_layers; ++j) {
      const std::string p = "mtp." + std::to_string(j) + ".";
      const size_t idx = size_t(cfg_.n_layers + j);
      block(p, idx < cfg_.compress_ratios.size() ? cfg_.compress_ratios[idx] : 0, false, expert_format(true));
      m_.linear(p + "e_proj", D, D, WeightFormat::kFP8Block128);
      m_.linear(p + "h_proj", D, D, WeightFormat::kFP8Block128);
      for (const char* n : {"enorm.weight", "hnorm.weight", "norm.weight"})
        m_.plain(p + n, DType::kBF16, {D}, 1.0f, 0.1f);
      hyper_head(p, nD);
    }
  }

 private:
  // The MTP block keeps MXFP4 experts even in NVIDIA's NVFP4 checkpoints (§8.4).
  WeightFormat expert_format(bool mtp) const {
    return (opt_.layout == CheckpointLayout::kNvfp4 && !mtp) ? WeightFormat::kNVFP4 : WeightFormat::kMXFP4;
  }

  void hyper_head(const std::string& p, int64_t nD) {
    m_.plain(p + "hc_head_fn", DType::kF32, {cfg_.hc_mult, nD}, 0.0f, 1.0f / std::sqrt(float(nD)));
    m_.plain(p + "hc_head_base", DType::kF32, {cfg_.hc_mult}, 0.0f, 0.5f);
    m_.plain(p + "hc_head_scale", DType::kF32, {1}, 1.0f, 0.1f);
  }

  void block(const std::string& p, int ratio, bool hash, WeightFormat experts) {
    const int64_t D = cfg_.d_model, hd = cfg_.head_dim, H = cfg_.n_heads, I = cfg_.moe_intermediate;
    const int64_t nD = cfg_.hc_mult * D, mix = cfg_.hc_mix_width();
    const auto fp8 = WeightFormat::kFP8Block128, bf16 = WeightFormat::kBF16;
    m_.plain(p + "attn_norm.weight", DType::kBF16, {D}, 1.0f, 0.1f);
    m_.plain(p + "ffn_norm.weight", DType::kBF16, {D}, 1.0f, 0.1f);
    for (const char* site : {"attn", "ffn"}) {
      const std::string s = p + "hc_" + site;
      m_.plain(s + "_fn", DType::kF32, {mix, nD}, 0.0f, 1.0f / std::sqrt(float(nD)));
      m_.plain(s + "_base", DType::kF32, {mix}, 0.0f, 0.5f);
      m_.plain(s + "_scale", DType::kF32, {3}, 1.0f, 0.1f);
    }
    m_.plain(p + "attn.attn_sink", DType::kF32, {H}, 0.0f, 1.0f);
    m_.plain(p + "attn.q_norm.weight", DType::kBF16, {cfg_.q_lora_rank}, 1.0f, 0.1f);
    m_.plain(p + "attn.kv_norm.weight", DType::kBF16, {hd}, 1.0f, 0.1f);
    m_.linear(p + "attn.wq_a", cfg_.q_lora_rank, D, fp8);
    m_.linear(p + "attn.wq_b", H * hd, cfg_.q_lora_rank, fp8);
    m_.linear(p + "attn.wkv", hd, D, fp8);
    m_.linear(p + "attn.wo_a", cfg_.o_groups * cfg_.o_lora_rank, (H / cfg_.o_groups) * hd, fp8);
    m_.linear(p + "attn.wo_b", D, cfg_.o_groups * cfg_.o_lora_rank, fp8);
    if (ratio > 0) compressor(p + "attn.compressor.", ratio, hd);
    if (ratio == 4) {
      m_.linear(p + "attn.indexer.wq_b", cfg_.index_n_heads * cfg_.index_head_dim, cfg_.q_lora_rank, fp8);
      m_.linear(p + "attn.indexer.weights_proj", cfg_.index_n_heads, D, bf16);
      compressor(p + "attn.indexer.compressor.", ratio, cfg_.index_head_dim);
    }
    m_.linear(p + "ffn.gate", cfg_.n_routed_experts, D, bf16);
    if (hash) {
      m_.tid2eid(p + "ffn.gate.tid2eid", cfg_.vocab_size, cfg_.n_experts_per_token, cfg_.n_routed_experts);
    } else {
      m_.plain(p + "ffn.gate.bias", DType::kF32, {cfg_.n_routed_experts}, 0.0f, 0.1f);
    }
    for (int64_t e = 0; e < cfg_.n_routed_experts; ++e) {
      const std::string x = p + "ffn.experts." + std::to_string(e) + ".";
      m_.linear(x + "w1", I, D, experts);
      m_.linear(x + "w3", I, D, experts);
      m_.linear(x + "w2", D, I, experts);
    }
    if (cfg_.n_shared_experts > 0) {
      const int64_t Is = I * cfg_.n_shared_experts;
      m_.linear(p + "ffn.shared_experts.w1", Is, D, fp8);
      m_.linear(p + "ffn.shared_experts.w3", Is, D, fp8);
      m_.linear(p + "ffn.shared_experts.w2", D, Is, fp8);
    }
  }

  void compressor(const std::string& p, int ratio, int64_t width) {
    const int64_t c = ratio == 4 ? 2 : 1;
    m_.plain(p + "ape", DType::kF32, {ratio, c * width}, 0.0f, 0.5f);
    m_.linear(p + "wkv", c * width, cfg_.d_model, WeightFormat::kBF16);
    m_.linear(p + "wgate", c * width, cfg_.d_model, WeightFormat::kBF16);
    m_.plain(p + "norm.weight", DType::kBF16, {width}, 1.0f, 0.1f);
  }

  const ModelConfig& cfg_;
  const SyntheticOptions& opt_;
  TensorMaker& m_;
};

// config.json, and for the NVFP4 layout ModelOpt's hf_quant_config.json (newer schema: quant_algo
// MIXED_PRECISION, one entry per layer's experts).
Status write_config_files(const ModelConfig& cfg, const SyntheticOptions& opt, const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return Status::errorf("{}: cannot create: {}", dir, ec.message());
  {
    std::ofstream out(std::filesystem::path(dir) / "config.json");
    out << cfg.to_json();
    if (!out) return Status::errorf("{}: cannot write config.json", dir);
  }
  if (opt.layout != CheckpointLayout::kNvfp4) return {};
  std::string layers;
  for (int64_t i = 0; i < cfg.n_layers; ++i)
    layers +=
        fmt::format("{}\n      \"layers.{}.ffn.experts\": {{\"quant_algo\": \"NVFP4\", \"group_size\": 16}}",
                    i ? "," : "", i);
  std::ofstream out(std::filesystem::path(dir) / "hf_quant_config.json");
  out << fmt::format(
      "{{\n  \"producer\": {{\"name\": \"modelopt\", \"version\": \"dsv4-synthetic\"}},\n"
      "  \"quantization\": {{\n    \"quant_algo\": \"MIXED_PRECISION\",\n    \"kv_cache_quant_algo\": "
      "null,\n"
      "    \"quantized_layers\": {{{}\n    }},\n"
      "    \"exclude_modules\": [\"*.attn.*\", \"*.ffn.shared_experts.*\", \"head\", \"mtp.*\"]\n  "
      "}}\n}}\n",
      layers);
  if (!out) return Status::errorf("{}: cannot write hf_quant_config.json", dir);
  return {};
}

// ---- Quantized random floats (write_synthetic_checkpoint) ------------------------------------

class QuantizingMaker final : public TensorMaker {
 public:
  explicit QuantizingMaker(uint64_t seed) : rng_(seed) {}
  const SafetensorsWriter& writer() const { return writer_; }

  void plain(const std::string& name, DType dtype, std::vector<int64_t> shape, float mean,
             float stddev) override {
    const int64_t n = numel(shape);
    const std::vector<float> v = randn(n, mean, stddev);
    if (dtype == DType::kF32) {
      writer_.add_f32(name, std::move(shape), v);
    } else {
      writer_.add(name, DType::kBF16, std::move(shape), quantize_bf16(v.data(), 1, n).data);
    }
  }

  void linear(const std::string& base, int64_t rows, int64_t cols, WeightFormat format) override {
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
      case WeightFormat::kNVFP4:
        writer_.add(base + ".weight", DType::kU8, {rows, cols / 2}, q.data);
        writer_.add(base + ".weight_scale", DType::kF8_E4M3, {rows, cols / kNvfp4Block}, q.scales);
        writer_.add_f32(base + ".weight_scale_2", {}, {q.global_scale});
        writer_.add_f32(base + ".input_scale", {}, {1.0f / (kE2M1Max * kE4M3Max)});
        break;
    }
  }

  void tid2eid(const std::string& name, int64_t V, int64_t k, int64_t E) override {
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

 private:
  std::vector<float> randn(int64_t n, float mean, float stddev) {
    std::normal_distribution<float> dist(mean, stddev);
    std::vector<float> v(static_cast<size_t>(n));
    for (auto& x : v) x = dist(rng_);
    return v;
  }

  std::mt19937_64 rng_;
  SafetensorsWriter writer_;
};

// ---- Random bits (write_random_bits_checkpoint) ---------------------------------------------

// The code sets the stored bits are drawn from, uniformly (bit 7 of FP8 codes is a random sign).
constexpr uint8_t kNvfp4ScaleFirst = 0x38, kNvfp4ScaleCount = 16;  // E4M3 1.0 … 3.75
constexpr uint8_t kFp8CodeFirst = 0x28, kFp8CodeCount = 32;        // E4M3 0.25 … 3.75
constexpr int kMxfp4ScaleBinades = 3;                              // E8M0 2^b, 2^(b+1), 2^(b+2)

double e4m3_mean_square(uint8_t first, uint8_t count) {
  double s = 0;
  for (int i = 0; i < count; ++i) s += std::pow(double(e4m3_to_f32(uint8_t(first + i))), 2);
  return s / count;
}

double e2m1_mean_square() {
  double s = 0;
  for (float v : kE2M1Values) s += double(v) * v;
  return s / 16;
}

enum class Fill {
  kNormalF32,    // a = mean, b = stddev
  kNormalBF16,   // a = mean, b = stddev
  kRandomBytes,  // packed e2m1 codes: every nibble is a valid code
  kNvfp4Scale,   // E4M3 block scales from kNvfp4ScaleFirst…
  kFp8Code,      // E4M3 codes, random sign
  kE8M0,         // exponent bytes a … a + b − 1
  kConstF32,     // a
  kTid2eid,      // [vocab, k] distinct experts below n_experts per row
};

struct PlannedTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  Fill fill;
  double a = 0, b = 0;
  int64_t n_experts = 0;  // kTid2eid
  int64_t offset = 0;     // in the data section
  int64_t bytes() const { return numel(shape) * int64_t(dtype_size(dtype)); }
  int64_t row_elements() const { return fill == Fill::kTid2eid ? shape.at(1) : 1; }  // never split
};

// A fast, well-mixed generator (splitmix64); one per chunk, seeded from (seed, tensor, chunk).
struct SplitMix {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // ≈ N(0, 1): the sum of four 16-bit uniforms (Irwin–Hall), centred and scaled to unit variance.
  float normal() {
    const uint64_t x = next();
    float sum = 0;
    for (int i = 0; i < 4; ++i) sum += (float((x >> (16 * i)) & 0xFFFF) + 0.5f) * (1.0f / 65536.0f);
    return (sum - 2.0f) * 1.7320508f;
  }
};

class RandomBitsMaker final : public TensorMaker {
 public:
  const std::vector<PlannedTensor>& tensors() const { return tensors_; }
  int64_t data_bytes() const { return data_bytes_; }

  void plain(const std::string& name, DType dtype, std::vector<int64_t> shape, float mean,
             float stddev) override {
    add(name, dtype, std::move(shape), dtype == DType::kF32 ? Fill::kNormalF32 : Fill::kNormalBF16, mean,
        stddev);
  }

  void linear(const std::string& base, int64_t rows, int64_t cols, WeightFormat format) override {
    const double target_ms = 1.0 / double(cols);  // the mean square of N(0, 1/cols)
    switch (format) {
      case WeightFormat::kF32:
        add(base + ".weight", DType::kF32, {rows, cols}, Fill::kNormalF32, 0, std::sqrt(target_ms));
        break;
      case WeightFormat::kBF16:
        add(base + ".weight", DType::kBF16, {rows, cols}, Fill::kNormalBF16, 0, std::sqrt(target_ms));
        break;
      case WeightFormat::kFP8Block128: {
        // One power-of-two scale for every block: 2^e · RMS(codes) ≈ 1/sqrt(cols).
        const int e =
            int(std::lround(0.5 * std::log2(target_ms / e4m3_mean_square(kFp8CodeFirst, kFp8CodeCount))));
        add(base + ".weight", DType::kF8_E4M3, {rows, cols}, Fill::kFp8Code);
        add(base + ".scale", DType::kF8_E8M0, {(rows + 127) / 128, (cols + 127) / 128}, Fill::kE8M0, e + 127,
            1);
        break;
      }
      case WeightFormat::kMXFP4: {
        // Block scales 2^(b..b+2): mean square of the scales is 4^b · (1 + 4 + 16) / 3.
        const double scale_ms = (1 + 4 + 16) / 3.0;
        const int b = int(std::lround(0.5 * std::log2(target_ms / (e2m1_mean_square() * scale_ms))));
        add(base + ".weight", DType::kI8, {rows, cols / 2}, Fill::kRandomBytes);
        add(base + ".scale", DType::kF8_E8M0, {rows, cols / kMxfp4Block}, Fill::kE8M0, b + 127,
            kMxfp4ScaleBinades);
        break;
      }
      case WeightFormat::kNVFP4: {
        const double ms = e2m1_mean_square() * e4m3_mean_square(kNvfp4ScaleFirst, kNvfp4ScaleCount);
        add(base + ".weight", DType::kU8, {rows, cols / 2}, Fill::kRandomBytes);
        add(base + ".weight_scale", DType::kF8_E4M3, {rows, cols / kNvfp4Block}, Fill::kNvfp4Scale);
        add(base + ".weight_scale_2", DType::kF32, {}, Fill::kConstF32, std::sqrt(target_ms / ms));
        add(base + ".input_scale", DType::kF32, {}, Fill::kConstF32, 1.0 / (kE2M1Max * kE4M3Max));
        break;
      }
    }
  }

  void tid2eid(const std::string& name, int64_t V, int64_t k, int64_t E) override {
    add(name, DType::kI64, {V, k}, Fill::kTid2eid);
    tensors_.back().n_experts = E;
  }

 private:
  void add(std::string name, DType dtype, std::vector<int64_t> shape, Fill fill, double a = 0, double b = 0) {
    PlannedTensor t{std::move(name), dtype, std::move(shape), fill, a, b};
    t.offset = data_bytes_;
    data_bytes_ += t.bytes();
    tensors_.push_back(std::move(t));
  }

  std::vector<PlannedTensor> tensors_;
  int64_t data_bytes_ = 0;
};

// n elements of tensor t into out (n · dtype_size bytes); every fill is position-independent
// (tid2eid chunks hold whole rows).
void fill_elements(const PlannedTensor& t, int64_t n, SplitMix& rng, uint8_t* out) {
  switch (t.fill) {
    case Fill::kNormalF32:
      for (int64_t i = 0; i < n; ++i) {
        const float v = float(t.a) + float(t.b) * rng.normal();
        std::memcpy(out + 4 * i, &v, 4);
      }
      return;
    case Fill::kNormalBF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t v = f32_to_bf16(float(t.a) + float(t.b) * rng.normal());
        std::memcpy(out + 2 * i, &v, 2);
      }
      return;
    case Fill::kRandomBytes:
      for (int64_t i = 0; i < n; i += 8) {
        const uint64_t v = rng.next();
        std::memcpy(out + i, &v, size_t(std::min<int64_t>(8, n - i)));
      }
      return;
    case Fill::kNvfp4Scale:
      for (int64_t i = 0; i < n; ++i) out[i] = uint8_t(kNvfp4ScaleFirst + rng.next() % kNvfp4ScaleCount);
      return;
    case Fill::kFp8Code:
      for (int64_t i = 0; i < n; ++i) {
        const uint64_t r = rng.next();
        out[i] = uint8_t((r & 0x80) | (kFp8CodeFirst + (r >> 8) % kFp8CodeCount));
      }
      return;
    case Fill::kE8M0:
      for (int64_t i = 0; i < n; ++i) out[i] = uint8_t(int64_t(t.a) + int64_t(rng.next() % uint64_t(t.b)));
      return;
    case Fill::kConstF32: {
      const float v = float(t.a);
      for (int64_t i = 0; i < n; ++i) std::memcpy(out + 4 * i, &v, 4);
      return;
    }
    case Fill::kTid2eid: {
      const int64_t k = t.shape[1], E = t.n_experts;
      std::vector<int64_t> perm(static_cast<size_t>(E));
      std::iota(perm.begin(), perm.end(), 0);
      for (int64_t i = 0; i < n; i += k)
        for (int64_t j = 0; j < k; ++j) {  // partial Fisher–Yates: k distinct experts
          std::swap(perm[size_t(j)], perm[size_t(j + int64_t(rng.next() % uint64_t(E - j)))]);
          std::memcpy(out + 8 * (i + j), &perm[size_t(j)], 8);
        }
      return;
    }
  }
}

std::string safetensors_header(const std::vector<PlannedTensor>& tensors) {
  nlohmann::json header = nlohmann::json::object();
  for (const PlannedTensor& t : tensors)
    header[t.name] = {{"dtype", std::string(dtype_name(t.dtype))},
                      {"shape", t.shape},
                      {"data_offsets", {t.offset, t.offset + t.bytes()}}};
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // align the data section to 8 bytes
  return text;
}

Status pwrite_all(int fd, const uint8_t* p, int64_t n, int64_t at, const std::string& path) {
  while (n > 0) {
    const ssize_t w = ::pwrite(fd, p, size_t(n), off_t(at));
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return Status::errorf("{}: write failed: {}", path, std::strerror(errno));
    p += w, n -= w, at += w;
  }
  return {};
}

// Every tensor in chunks of ≤ kChunkBytes, each chunk with its own generator, written by
// cpu_threads() workers with pwrite.
Status write_random_bits(const std::vector<PlannedTensor>& tensors, uint64_t seed, const std::string& path) {
  constexpr int64_t kChunkBytes = int64_t(16) << 20;
  const std::string header = safetensors_header(tensors);
  const int64_t data_start = 8 + int64_t(header.size());
  struct Chunk {
    size_t tensor;
    int64_t first, n;  // elements
    uint64_t seed;
  };
  std::vector<Chunk> chunks;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const PlannedTensor& t = tensors[i];
    const int64_t elem = int64_t(dtype_size(t.dtype)), row = t.row_elements();
    const int64_t per_chunk = std::max<int64_t>(1, kChunkBytes / (elem * row)) * row;
    const int64_t total = numel(t.shape);
    for (int64_t first = 0, c = 0; first < total; first += per_chunk, ++c) {
      SplitMix mix{seed ^ (uint64_t(i) << 24) ^ uint64_t(c)};
      chunks.push_back({i, first, std::min(per_chunk, total - first), mix.next()});
    }
  }

  const int fd = ::open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
  if (fd < 0) return Status::errorf("{}: cannot open for writing: {}", path, std::strerror(errno));
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = uint8_t(uint64_t(header.size()) >> (8 * i));
  Status status = pwrite_all(fd, len, 8, 0, path);
  if (status.ok())
    status = pwrite_all(fd, reinterpret_cast<const uint8_t*>(header.data()), int64_t(header.size()), 8, path);
  std::atomic<size_t> next{0};
  std::mutex status_mutex;
  const auto worker = [&] {
    std::vector<uint8_t> buf;
    for (size_t c; (c = next.fetch_add(1)) < chunks.size();) {
      const Chunk& ch = chunks[c];
      const PlannedTensor& t = tensors[ch.tensor];
      const int64_t elem = int64_t(dtype_size(t.dtype));
      buf.resize(size_t(ch.n * elem));
      SplitMix rng{ch.seed};
      fill_elements(t, ch.n, rng, buf.data());
      const Status s = pwrite_all(fd, buf.data(), ch.n * elem, data_start + t.offset + ch.first * elem, path);
      if (!s.ok()) {
        std::lock_guard<std::mutex> lock(status_mutex);
        if (status.ok()) status = s;
        next = chunks.size();  // stop the others
      }
    }
  };
  if (status.ok()) {
    std::vector<std::thread> pool;
    for (int i = 1; i < cpu_threads(); ++i) pool.emplace_back(worker);
    worker();
    for (auto& th : pool) th.join();
  }
  if (::close(fd) != 0 && status.ok())
    status = Status::errorf("{}: close failed: {}", path, std::strerror(errno));
  if (!status.ok()) std::filesystem::remove(path);
  return status;
}

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

ModelConfig first_layers(const ModelConfig& cfg, int64_t n_layers) {
  ModelConfig c = cfg;
  c.n_layers = std::clamp<int64_t>(n_layers, 1, cfg.n_layers);
  c.compress_ratios.resize(size_t(c.n_layers));
  c.n_hash_layers = std::min(c.n_hash_layers, c.n_layers);
  c.n_mtp_layers = 0;
  return c;
}

Status write_synthetic_checkpoint(const ModelConfig& cfg, const SyntheticOptions& opt,
                                  const std::string& dir) {
  DSV4_RETURN_IF_ERROR(cfg.validate());
  QuantizingMaker maker(opt.seed);
  SchemaWalk(cfg, opt, maker).run();
  DSV4_RETURN_IF_ERROR(write_config_files(cfg, opt, dir));
  if (opt.shard_bytes > 0) return maker.writer().write_sharded(dir, opt.shard_bytes);
  return maker.writer().write_file((std::filesystem::path(dir) / "model.safetensors").string());
}

Status write_random_bits_checkpoint(const ModelConfig& cfg, const SyntheticOptions& opt,
                                    const std::string& dir) {
  DSV4_RETURN_IF_ERROR(cfg.validate());
  if (opt.shard_bytes > 0)
    return Status::error("random-bits checkpoint: shards requested; expected one file (shard_bytes 0)");
  RandomBitsMaker maker;
  SchemaWalk(cfg, opt, maker).run();
  DSV4_RETURN_IF_ERROR(write_config_files(cfg, opt, dir));
  return write_random_bits(maker.tensors(), opt.seed,
                           (std::filesystem::path(dir) / "model.safetensors").string());
}

int64_t random_bits_checkpoint_bytes(const ModelConfig& cfg, const SyntheticOptions& opt) {
  RandomBitsMaker maker;
  SchemaWalk(cfg, opt, maker).run();
  return 8 + int64_t(safetensors_header(maker.tensors()).size()) + maker.data_bytes();
}

Result<CheckpointLayout> parse_checkpoint_layout(const std::string& name) {
  if (name == "nvfp4") return CheckpointLayout::kNvfp4;
  if (name == "mxfp4") return CheckpointLayout::kMxfp4;
  return Status::errorf("layout '{}': expected nvfp4 or mxfp4", name);
}

}  // namespace dsv4
