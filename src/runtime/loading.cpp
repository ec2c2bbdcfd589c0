#include "runtime/loading.h"

#include "core/human_bytes.h"

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
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
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

MemoryPlan plan_memory(const ModelConfig& cfg, int64_t weight_bytes, int64_t context, int64_t chunk) {
  MemoryPlan p;
  p.weight_bytes = weight_bytes;
  const int64_t f32 = 4, hd = cfg.head_dim, ihd = cfg.index_head_dim, D = cfg.d_model;
  for (int64_t i = 0; i < cfg.n_layers; ++i) {
    p.cache_bytes += cfg.sliding_window * hd * f32;  // window ring
    const int64_t m = cfg.compress_ratio(i);
    if (m == 0) continue;
    const int64_t series = m == 4 ? 2 : 1;
    p.cache_bytes += (context / m) * hd * f32 + 2 * (m + (series - 1) * m) * series * hd * f32;
    if (m == 4)
      p.cache_bytes += (context / m) * ihd * f32 + 2 * 2 * m * 2 * ihd * f32;  // indexer keys + state
  }
  // Live activations of one forward: residual streams, q, attention output, MoE hidden, logits row.
  p.workspace_bytes = chunk * f32 *
                          (2 * cfg.hc_mult * D + 2 * cfg.n_heads * hd + cfg.q_lora_rank +
                           cfg.n_experts_per_token * 2 * cfg.moe_intermediate + 4 * D) +
                      cfg.vocab_size * f32;
  return p;
}

std::string MemoryPlan::describe() const {
  return fmt::format(
      "memory plan: weights {} (stored formats, mapped) | caches {} per sequence | workspace {}",
      human_bytes(weight_bytes), human_bytes(cache_bytes), human_bytes(workspace_bytes));
}

}  // namespace dsv4
