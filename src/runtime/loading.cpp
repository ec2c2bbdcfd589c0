#include "runtime/loading.h"

#include "core/human_bytes.h"
#include "core/round_up.h"
#include "core/safetensors.h"
#include "core/seconds_since.h"
#include "model/model.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <vector>

namespace dsv4 {
namespace fs = std::filesystem;

Status read_checkpoint_with_progress(const std::string& model_dir, bool terminal) {
  std::vector<fs::path> files;
  int64_t total = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(model_dir, ec))
    if (e.is_regular_file() && e.path().extension() == ".safetensors") {
      files.push_back(e.path());
      total += int64_t(e.file_size());
    }
  if (ec) return Status::errorf("{}: cannot list: {}", model_dir, ec.message());
  std::sort(files.begin(), files.end());
  constexpr size_t kChunk = 16 << 20;
  std::vector<char> buf(kChunk);
  const auto t0 = std::chrono::steady_clock::now();
  int64_t done = 0;
  int last_decile = -1;
  for (const fs::path& f : files) {
    const int fd = ::open(f.c_str(), O_RDONLY);
    if (fd < 0) return Status::errorf("{}: cannot open", f.string());
    ssize_t n;
    while ((n = ::read(fd, buf.data(), kChunk)) > 0) {
      done += n;
      const double secs = seconds_since(t0);
      const double rate = secs > 0 ? double(done) / secs : 0;
      if (terminal) {
        const double eta = rate > 0 ? double(total - done) / rate : 0;
        fmt::print(stderr, "\rloading {} / {}  {:.0f} MB/s  ETA {:.0f} s   ", human_bytes(done),
                   human_bytes(total), rate / 1e6, eta);
      } else if (total > 0 && int(10 * done / total) != last_decile) {
        last_decile = int(10 * done / total);
        fmt::print(stderr, "loading: {}% ({} of {}, {:.0f} MB/s)\n", 10 * last_decile, human_bytes(done),
                   human_bytes(total), rate / 1e6);
      }
    }
    ::close(fd);
    if (n < 0) return Status::errorf("{}: read failed", f.string());
  }
  if (terminal)
    fmt::print(stderr, "\rloaded {} in {} file(s)                              \n", human_bytes(total),
               files.size());
  return {};
}

namespace {

// Bytes a weight takes once the CUDA backend holds it: linear_sm90's packed layout (rows padded
// to 16, columns to 128; re-encoded scales), the router gate as stored (moe_router reads BF16 or
// F32), fp32 for the small plain tensors (norms, mHC, sinks, ape, bias), int64 for tid2eid, BF16
// as stored for the embedding and the LM head.
int64_t device_linear_bytes(const LinearWeight& w) {
  const int64_t r = w.view.rows, c = w.view.cols, rp = round_up(r, 16), cp = round_up(c, 128);
  switch (w.view.format) {
    case WeightFormat::kNVFP4:
      return rp * cp / 2 + rp * cp / 16;
    case WeightFormat::kMXFP4:
      return rp * cp / 2 + rp * cp / 32;
    case WeightFormat::kFP8Block128:
      return rp * cp + ((r + 127) / 128) * (cp / 128) * 2;
    case WeightFormat::kBF16:
      return r * c * 2;
    case WeightFormat::kF32:
      return r * c * 4;
  }
  return 0;
}

int64_t device_plain_bytes(const PlainWeight& p) {
  if (p.group == WeightGroup::kEmbedding || p.group == WeightGroup::kHead) return p.tensor->nbytes();
  const bool index = p.tensor->dtype == DType::kI64 || p.tensor->dtype == DType::kI32;
  return p.tensor->numel() * (index ? 8 : 4);
}

// fp32 activations of one forward of n rows (Model::Rows, named as there; the router's scores
// [n, E] in its workspace), the MoE's routed copies and the logits of n_out rows; an estimate
// that leaves out per-sequence scratch smaller than a row's worth.
int64_t activation_bytes(const ModelConfig& c, int64_t n, int64_t n_out) {
  const int64_t D = c.d_model, hd = c.head_dim, ihd = c.index_head_dim;
  const int64_t per_row = D + 2 * c.hc_mult * D + 2 * D + c.q_lora_rank + 2 * c.n_heads * hd + hd +
                          2 * 2 * hd + 2 * 2 * ihd + c.index_n_heads * ihd + c.index_n_heads +
                          c.o_groups * c.o_lora_rank + c.n_routed_experts + 2 * c.n_experts_per_token +
                          2 * D + c.sliding_window + 2 * c.index_topk +
                          c.n_experts_per_token * (D + 3 * c.moe_intermediate);
  return (n * per_row + n_out * c.vocab_size) * 4;
}

}  // namespace

MemoryPlan plan_memory(const ModelConfig& cfg, const WeightMap& weights, const BackendMemoryInfo& memory,
                       const std::string& backend, int64_t context, int64_t n_sequences, int64_t chunk) {
  MemoryPlan p;
  p.backend = backend;
  p.holds_weights = memory.holds_weights;
  p.free_bytes = memory.free_bytes;
  p.total_bytes = memory.total_bytes;
  p.context = context;
  p.n_sequences = n_sequences;
  int64_t largest_quantized = 0;  // the many-token linear dequantizes one weight to BF16 at a time
  for (const auto& [_, w] : weights.linears()) {
    if (w.group == WeightGroup::kMtp) continue;
    p.weight_bytes += memory.holds_weights ? device_linear_bytes(w) : w.bytes;
    if (w.view.format != WeightFormat::kBF16 && w.view.format != WeightFormat::kF32)
      largest_quantized = std::max(largest_quantized, w.view.rows * w.view.cols * 2);
  }
  for (const auto& [_, t] : weights.plains())
    if (t.group != WeightGroup::kMtp)
      p.weight_bytes += memory.holds_weights ? device_plain_bytes(t) : t.tensor->nbytes();
  p.cache_bytes = cache_bytes_per_sequence(cfg, context);
  p.max_position = cfg.max_position;
  p.max_position_cache_bytes = cache_bytes_per_sequence(cfg, cfg.max_position);
  // A prefill forward of `chunk` rows (one logits row per sequence), its attention pool, and the
  // decode step of n_sequences rows, which keeps its own buffers.
  const int64_t pool = (cfg.sliding_window + chunk + context / 4) * cfg.head_dim * 4;
  p.workspace_bytes = activation_bytes(cfg, chunk, n_sequences) + pool + largest_quantized +
                      activation_bytes(cfg, n_sequences, n_sequences);
  if (memory.holds_weights) {
    // One recorded decode step per batch size, up to n_sequences of them: ~64 nodes per layer,
    // ~4 KiB of device memory per node (kernel parameters and launch state).
    const int64_t nodes = 64 * cfg.n_layers + 32;
    p.graph_bytes = n_sequences * nodes * 4096;
  }
  return p;
}

Result<MemoryPlan> plan_model_memory(const std::string& model_dir, const Backend& backend, int64_t context,
                                     int64_t n_sequences, int64_t chunk) {
  DSV4_ASSIGN_OR_RETURN(const ModelConfig cfg, load_config(model_dir));
  DSV4_ASSIGN_OR_RETURN(const Checkpoint ckpt, Checkpoint::open(model_dir));
  const WeightMap weights = WeightMap::build(cfg, ckpt);
  DSV4_RETURN_IF_ERROR(weights.status().with_context(model_dir + ": weights disagree with config.json"));
  DSV4_ASSIGN_OR_RETURN(const BackendMemoryInfo memory, backend.memory_info());
  return plan_memory(cfg, weights, memory, backend.name(), std::min(context, cfg.max_position), n_sequences,
                     chunk);
}

int64_t MemoryPlan::required_bytes() const {
  return (holds_weights ? weight_bytes : 0) + n_sequences * cache_bytes + workspace_bytes + graph_bytes;
}

std::string MemoryPlan::describe() const {
  std::string s = fmt::format("memory plan ({}): weights {} ({})", backend, human_bytes(weight_bytes),
                              holds_weights ? "device copies" : "mapped checkpoint, paged in");
  s += fmt::format(" + caches {} per sequence × {} at {} tokens", human_bytes(cache_bytes), n_sequences,
                   context);
  s += fmt::format(" + workspace {} (estimate)", human_bytes(workspace_bytes));
  if (holds_weights) s += fmt::format(" + decode graphs {} (estimate)", human_bytes(graph_bytes));
  s += fmt::format(" = {}", human_bytes(required_bytes()));
  if (free_bytes >= 0)
    s += fmt::format(" of {} {}", human_bytes(free_bytes),
                     holds_weights ? "free on the device" : "RAM available");
  s += fmt::format(" | one sequence at max_position {}: caches {}", max_position,
                   human_bytes(max_position_cache_bytes));
  return s;
}

Status MemoryPlan::check() const {
  if (free_bytes < 0 || required_bytes() <= free_bytes) return {};
  return Status::errorf(
      "memory plan ({}): needs {} (weights {}, caches {} × {} sequences of {} tokens, workspace {}, graphs "
      "{}); "
      "expected at most the {} {}",
      backend, human_bytes(required_bytes()), human_bytes(holds_weights ? weight_bytes : 0),
      human_bytes(cache_bytes), n_sequences, context, human_bytes(workspace_bytes), human_bytes(graph_bytes),
      human_bytes(free_bytes), holds_weights ? "free on the device" : "of RAM available");
}

}  // namespace dsv4
