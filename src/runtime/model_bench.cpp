// run_model_bench (model_bench.h). The checkpoint goes to /dev/shm when it has room (the model maps
// it straight from memory), else the system's temporary directory. Steps are timed on the host
// around Model::forward, which returns once the logits are back: the step as a caller sees it,
// median of the timed steps, after one eager step and one that records the decode graph.
// Floor = max(bytes / copy bandwidth, FLOPs / BF16 GEMM rate), both measured by the caller in the
// same run. Bytes are what a forward must read in the checkpoint's formats: every weight of a
// layer except the routed experts, the routed experts its tokens hit (hash layers: counted from
// tid2eid and the tokens; dense layers: the expected count under uniform routing,
// E·(1 − (1 − k/E)^n)), the embedding rows, the LM head and the logits written; decode also counts
// the cache rows each query attends, in fp32 as the cache pool holds them (the window, HCA's
// entries or CSA's top-k, and all of the indexer's keys). FLOPs: 2 per weight MAC of each row's
// active weights, attention (QKᵀ and PV over the attended rows) and the indexer's scores.
#include "runtime/model_bench.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <random>
#include <set>
#include <span>

#include "core/human_bytes.h"
#include "core/numeric.h"
#include "core/parallel.h"
#include "core/seconds_since.h"
#include "model/backend_array.h"
#include "model/model.h"
#include "model/weight_map.h"
#include "runtime/loading.h"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Bytes of the backend's memory in use (device memory on CUDA, RAM on the CPU); -1 unknown.
int64_t bytes_in_use(const Backend& b) {
  const Result<BackendMemoryInfo> m = b.memory_info();
  return m.ok() ? m->total_bytes - m->free_bytes : -1;
}

// What one layer costs a row, from the checkpoint's weight map.
struct LayerCost {
  AttentionType type = AttentionType::kSliding;
  int64_t ratio = 0;
  bool hash = false;
  double shared_bytes = 0;       // every weight a row reads except the routed experts and tid2eid
  double expert_bytes = 0;       // one routed expert: w1, w3, w2 and their scales
  double shared_macs = 0;        // weight MACs per row outside the routed experts
  double expert_macs = 0;        // per routed expert
  std::vector<int64_t> tid2eid;  // [vocab, k] hash layers
};

struct ModelCost {
  std::vector<LayerCost> layers;
  double head_bytes = 0, head_macs = 0;  // LM head [vocab, d_model]
  double other_bytes = 0;                // hyper-head, final norm
};

ModelCost model_cost(const ModelConfig& cfg, const Checkpoint& ckpt) {
  const WeightMap map = WeightMap::build(cfg, ckpt);
  ModelCost m;
  m.layers.resize(size_t(cfg.n_layers));
  for (int64_t i = 0; i < cfg.n_layers; ++i)
    m.layers[size_t(i)] = {cfg.attention_type(i), cfg.compress_ratio(i), cfg.is_hash_layer(i)};
  const auto layer_of = [&](const std::string& name) -> LayerCost* {
    if (name.rfind("layers.", 0) != 0) return nullptr;
    return &m.layers.at(size_t(std::stoll(name.substr(7))));
  };
  for (const auto& [name, w] : map.linears()) {
    if (w.group == WeightGroup::kMtp) continue;
    const double macs = double(w.view.rows) * double(w.view.cols);
    LayerCost* l = layer_of(name);
    if (!l) {
      m.other_bytes += double(w.bytes);
    } else if (w.group != WeightGroup::kRoutedExperts) {
      l->shared_bytes += double(w.bytes);
      l->shared_macs += macs;
    } else if (name.find(".experts.0.") != std::string::npos) {
      l->expert_bytes += double(w.bytes);
      l->expert_macs += macs;
    }
  }
  for (const auto& [name, p] : map.plains()) {
    if (p.group == WeightGroup::kMtp || p.group == WeightGroup::kEmbedding) continue;  // embedding: rows only
    const double bytes = double(p.tensor->nbytes());
    LayerCost* l = layer_of(name);
    if (p.group == WeightGroup::kHead) {
      m.head_bytes += bytes;
      m.head_macs += double(p.tensor->numel());
    } else if (l && name.size() > 8 && name.substr(name.size() - 8) == ".tid2eid") {
      l->tid2eid = plain_to_i64(*p.tensor);
    } else {
      (l ? l->shared_bytes : m.other_bytes) += bytes;
    }
  }
  return m;
}

double experts_hit(const LayerCost& l, const ModelConfig& c, std::span<const int32_t> tokens) {
  const int64_t k = c.n_experts_per_token;
  if (!l.hash) {
    const double E = double(c.n_routed_experts);
    return E * (1.0 - std::pow(1.0 - double(k) / E, double(tokens.size())));
  }
  std::set<int64_t> hit;
  for (int32_t t : tokens)
    for (int64_t j = 0; j < k; ++j) hit.insert(l.tid2eid[size_t(t * k + j)]);
  return double(hit.size());
}

struct Cost {
  double bytes = 0, flops = 0, experts = 0;  // experts: hit per layer, mean over layers
  Cost& operator+=(const Cost& o) {
    bytes += o.bytes, flops += o.flops, experts += o.experts;
    return *this;
  }
  Cost& operator/=(double n) {
    bytes /= n, flops /= n, experts /= n;
    return *this;
  }
};

// One forward over rows with these tokens at these positions, n_out logits rows; decode counts
// the attended cache rows as bytes (prefill reads them from on-chip tiles, many queries per row).
Cost forward_cost(const ModelCost& m, const ModelConfig& c, std::span<const int32_t> tokens,
                  std::span<const int64_t> positions, int64_t n_out, bool decode) {
  Cost s;
  const double n = double(tokens.size()), f32 = 4, k = double(c.n_experts_per_token);
  s.bytes += n * double(c.d_model) * 2;  // embedding rows (BF16)
  for (const LayerCost& l : m.layers) {
    const double hit = experts_hit(l, c, tokens);
    s.experts += hit / double(m.layers.size());
    s.bytes += l.shared_bytes + hit * l.expert_bytes + (l.hash ? n * k * 8 : 0);
    s.flops += 2 * n * (l.shared_macs + k * l.expert_macs);
    for (const int64_t p : positions) {
      const int64_t entries = l.ratio ? (p + 1) / l.ratio : 0;
      double rows = double(std::min(p + 1, c.sliding_window));
      if (l.type == AttentionType::kHCA) rows += double(entries);
      if (l.type == AttentionType::kCSA) {
        rows += double(std::min(entries, c.index_topk));
        if (decode) s.bytes += double(entries * c.index_head_dim) * f32;
        s.flops += 2.0 * double(c.index_n_heads * entries * c.index_head_dim);
      }
      if (decode) s.bytes += rows * double(c.head_dim) * f32;
      s.flops += 4.0 * double(c.n_heads) * rows * double(c.head_dim);
    }
  }
  s.bytes += m.other_bytes + m.head_bytes + double(n_out * c.vocab_size) * f32;
  s.flops += 2 * double(n_out) * m.head_macs;
  return s;
}

// Where a temporary checkpoint of `bytes` goes: /dev/shm when it has room (an eighth to spare),
// else the system's temporary directory.
Result<std::string> temporary_checkpoint_dir(int64_t bytes) {
  std::error_code ec;
  const std::string name = "dsv4_bench_model_" + std::to_string(::getpid());
  for (const fs::path& base : {fs::path("/dev/shm"), fs::temp_directory_path(ec)}) {
    const fs::space_info space = fs::space(base, ec);
    if (!ec && int64_t(space.available) > bytes + bytes / 8 + (int64_t(16) << 20))
      return (base / name).string();
  }
  return Status::errorf(
      "bench model: the checkpoint takes {}; expected that much free in /dev/shm or {} (or --keep DIR)",
      human_bytes(bytes), fs::temp_directory_path(ec).string());
}

struct RemoveDir {
  std::string path;
  ~RemoveDir() {
    std::error_code ec;
    if (!path.empty()) fs::remove_all(path, ec);
  }
};

std::string schedule(const ModelConfig& c) {
  std::string s;
  for (int64_t i = 0; i < c.n_layers; ++i)
    s += fmt::format("{}{} {}+{}", i ? ", " : "", i, attention_type_name(c.attention_type(i)),
                     c.is_hash_layer(i) ? "hash" : "dense");
  return s;
}

// A stand-in for the model's LM head (a BF16 [vocab, d_model] weight made resident the same way),
// to time it alone: median of 5 calls after one, each synchronised.
class LmHeadTimer {
 public:
  Status init(Backend& b, const ModelConfig& c, int64_t max_batch) {
    weight_.resize(size_t(c.vocab_size * c.d_model));
    parallel_for(int64_t(weight_.size()), [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) weight_[size_t(i)] = f32_to_bf16(float(i % 61 - 30) * 1e-3f);
    });
    DSV4_ASSIGN_OR_RETURN(view_, b.upload_linear_weight({WeightFormat::kBF16, c.vocab_size, c.d_model,
                                                         weight_.data(), nullptr, 1.0f}));
    DSV4_RETURN_IF_ERROR(x_.assign(b, std::vector<float>(size_t(max_batch * c.d_model), 0.5f)));
    return y_.resize(b, max_batch * c.vocab_size);
  }
  Result<double> ms(Backend& b, int64_t n) {
    std::vector<double> t;
    for (int i = 0; i < 6; ++i) {
      const auto t0 = Clock::now();
      DSV4_RETURN_IF_ERROR(b.linear({x_.data(), view_, y_.data(), n}));
      DSV4_RETURN_IF_ERROR(b.synchronize());
      if (i > 0) t.push_back(1e3 * seconds_since(t0));
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
  }

 private:
  std::vector<uint16_t> weight_;  // the CPU backend reads it in place
  WeightView view_;
  BackendArray<float> x_, y_;
};

struct Row {
  std::string params;
  double ms = 0, ms_per_layer = -1, tokens_per_s = 0;
  Cost cost;  // per step / forward
};

}  // namespace

Status run_model_bench(const ModelBenchOptions& opt,
                       const std::function<std::unique_ptr<Backend>()>& make_backend,
                       const BenchCeilings& ceilings) {
  const ModelConfig& cfg = opt.model;
  DSV4_RETURN_IF_ERROR(cfg.validate().with_context("bench model"));
  if (opt.batches.empty()) return Status::error("bench model: --batch is empty; expected batch sizes");
  const int64_t max_batch = *std::max_element(opt.batches.begin(), opt.batches.end());
  // Sequence 0 takes part in every batch size: 2 untimed and decode_steps timed steps each.
  const int64_t max_context = opt.context + int64_t(opt.batches.size()) * (2 + opt.decode_steps);
  if (max_context > cfg.max_position)
    return Status::errorf("bench model: --context {} plus decode steps reaches {}; expected at most {}",
                          opt.context, max_context, cfg.max_position);
  const SyntheticOptions so{opt.layout, opt.seed, /*with_mtp=*/false, 0};
  fmt::print("model: V4-{} widths, {} layers: {}; experts {}, vocab {}\n", opt.shape, cfg.n_layers,
             schedule(cfg), opt.layout == CheckpointLayout::kNvfp4 ? "NVFP4" : "MXFP4", cfg.vocab_size);

  // Refuse before writing anything: a backend that holds the weights needs about the
  // checkpoint's size of free memory (the plan below is exact once the headers exist).
  std::unique_ptr<Backend> backend = make_backend();
  const int64_t ckpt_bytes = random_bits_checkpoint_bytes(cfg, so);
  DSV4_ASSIGN_OR_RETURN(const BackendMemoryInfo memory, backend->memory_info());
  if (memory.holds_weights && ckpt_bytes > memory.free_bytes)
    return Status::errorf(
        "bench model: {} layers of V4-{} hold {} of weights; expected at most the {} free on "
        "the {} device (use fewer --layers)",
        cfg.n_layers, opt.shape, human_bytes(ckpt_bytes), human_bytes(memory.free_bytes), backend->name());
  std::string dir = opt.keep_dir;
  if (dir.empty()) {
    DSV4_ASSIGN_OR_RETURN(dir, temporary_checkpoint_dir(ckpt_bytes));
  }
  const RemoveDir remove{opt.keep_dir.empty() ? dir : std::string()};
  auto t0 = Clock::now();
  DSV4_RETURN_IF_ERROR(write_random_bits_checkpoint(cfg, so, dir));
  fmt::print("checkpoint: random bits, {} written to {} in {:.1f} s on {} CPU threads ({})\n",
             human_bytes(ckpt_bytes), dir, seconds_since(t0), cpu_threads(),
             opt.keep_dir.empty() ? "removed at exit" : "kept");

  DSV4_ASSIGN_OR_RETURN(const MemoryPlan plan,
                        plan_model_memory(dir, *backend, max_context, max_batch, opt.prefill_rows));
  fmt::print("{}\n", plan.describe());
  DSV4_RETURN_IF_ERROR(plan.check());
  t0 = Clock::now();
  const int64_t used_before = bytes_in_use(*backend);
  DSV4_ASSIGN_OR_RETURN(std::unique_ptr<Model> model, Model::load(dir, std::move(backend)));
  DSV4_RETURN_IF_ERROR(model->reserve(max_batch, max_context));
  Backend& b = model->backend();
  fmt::print("load: {:.1f} s", seconds_since(t0));
  if (memory.holds_weights)
    fmt::print("; {} memory taken by the weights and caches {} (plan: weights {} + caches {})", b.name(),
               human_bytes(bytes_in_use(b) - used_before), human_bytes(plan.weight_bytes),
               human_bytes(max_batch * plan.cache_bytes));
  fmt::print("\n");
  const ModelCost cost = model_cost(cfg, model->checkpoint());

  std::mt19937 rng(uint32_t(opt.seed));
  std::uniform_int_distribution<int32_t> token(0, int32_t(cfg.vocab_size - 1));
  std::vector<Row> rows;

  // Prefill: every sequence to `context` tokens, forwards of at most prefill_rows rows (whole
  // sequences when they fit, chunks of one sequence otherwise), one logits row per chunk.
  std::vector<SequenceState> states;
  std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(max_batch));
  for (int64_t s = 0; s < max_batch; ++s) {
    states.push_back(model->new_state());
    for (int64_t i = 0; i < opt.context; ++i) prompts[size_t(s)].push_back(token(rng));
  }
  {
    Row prefill;
    int64_t seq = 0, done = 0, n_forwards = 0, n_timed = 0, timed_tokens = 0, forward_rows = 0;
    double timed_s = 0, total_s = 0;
    while (seq < max_batch) {
      std::vector<SequenceChunk> chunks;
      std::vector<int32_t> tokens;
      std::vector<int64_t> positions;
      int64_t n = 0;
      while (seq < max_batch && n < opt.prefill_rows) {
        const int64_t len = std::min(opt.context - done, opt.prefill_rows - n);
        const std::span<const int32_t> part(prompts[size_t(seq)].data() + done, size_t(len));
        chunks.push_back({&states[size_t(seq)], part, /*last_logits_only=*/true});
        tokens.insert(tokens.end(), part.begin(), part.end());
        for (int64_t i = 0; i < len; ++i) positions.push_back(done + i);
        n += len, done += len;
        if (done == opt.context) ++seq, done = 0;
      }
      t0 = Clock::now();
      DSV4_RETURN_IF_ERROR(model->forward(chunks).status().with_context("bench model: prefill"));
      const double s = seconds_since(t0);
      total_s += s;
      // The first forward allocates the activations: timed only when it is the only one.
      if (n_forwards++ > 0 || seq == max_batch) {
        timed_s += s, timed_tokens += n, ++n_timed;
        prefill.cost += forward_cost(cost, cfg, tokens, positions, int64_t(chunks.size()), false);
      }
      forward_rows = std::max(forward_rows, n);
    }
    prefill.params =
        fmt::format("model shape={} layers={} engine=dsv4 phase=prefill batch={} context={} rows={}",
                    opt.shape, cfg.n_layers, max_batch, opt.context, forward_rows);
    prefill.ms = 1e3 * timed_s / double(n_timed);
    prefill.tokens_per_s = double(timed_tokens) / timed_s;
    prefill.cost /= double(n_timed);
    rows.push_back(prefill);
    fmt::print(
        "prefill: {} sequences × {} tokens in {} forwards of ≤ {} rows: {:.1f} s (the first forward, "
        "which allocates, untimed)\n",
        max_batch, opt.context, n_forwards, opt.prefill_rows, total_s);
  }

  // Decode: batch B = the first B sequences, one random token each per step.
  LmHeadTimer head;
  DSV4_RETURN_IF_ERROR(head.init(b, cfg, max_batch));
  bool logits_finite = true, graphs = opt.decode_graphs && b.supports_graphs();
  model->set_decode_graphs(graphs);
  for (const int64_t B : opt.batches) {
    std::vector<int32_t> tokens(static_cast<size_t>(B));
    std::vector<int64_t> positions(static_cast<size_t>(B));
    std::vector<SequenceChunk> chunks(static_cast<size_t>(B));
    Row row;
    std::vector<double> ms;
    int64_t recording_bytes = 0;
    for (int64_t step = 0; step < 2 + opt.decode_steps; ++step) {
      for (int64_t s = 0; s < B; ++s) {
        tokens[size_t(s)] = token(rng);
        positions[size_t(s)] = states[size_t(s)].n_past();
        chunks[size_t(s)] = {&states[size_t(s)], std::span<const int32_t>(&tokens[size_t(s)], 1), true};
      }
      const int64_t used = bytes_in_use(b);
      t0 = Clock::now();
      Result<std::vector<float>> logits = model->forward(chunks);
      if (!logits.ok() && graphs && step == 1) {
        // A step that fails while being recorded has run nothing: report it, go on eagerly.
        fmt::print("decode batch {}: recording the decode graph failed ({}); timing eager steps from here\n",
                   B, logits.status().message());
        graphs = false;
        model->set_decode_graphs(false);
        t0 = Clock::now();
        logits = model->forward(chunks);
      }
      DSV4_RETURN_IF_ERROR(logits.status().with_context(fmt::format("bench model: decode batch {}", B)));
      const double step_ms = 1e3 * seconds_since(t0);
      if (step == 1) recording_bytes = bytes_in_use(b) - used;
      if (step < 2) continue;
      ms.push_back(step_ms);
      row.cost += forward_cost(cost, cfg, tokens, positions, B, true);
      if (step == 1 + opt.decode_steps)
        for (float v : *logits) logits_finite &= std::isfinite(v);
    }
    std::sort(ms.begin(), ms.end());
    row.ms = ms[ms.size() / 2];
    row.cost /= double(ms.size());
    row.tokens_per_s = 1e3 * double(B) / row.ms;
    row.params = fmt::format("model shape={} layers={} engine=dsv4 phase=decode batch={} context={} steps={}",
                             opt.shape, cfg.n_layers, B, opt.context, graphs ? "graph" : "eager");
    // Per layer: the step less the LM head timed alone.
    DSV4_ASSIGN_OR_RETURN(const double head_ms, head.ms(b, B));
    row.ms_per_layer = (row.ms - head_ms) / double(cfg.n_layers);
    rows.push_back(row);
    fmt::print(
        "decode batch {}: sequence 0 at positions {}…{}, LM head alone {:.3f} ms, experts hit per layer "
        "{:.1f}",
        B, positions[0] - opt.decode_steps + 1, positions[0], head_ms, row.cost.experts);
    if (graphs)
      fmt::print(", decode graphs recorded {} (recording took {} of memory)", model->decode_graphs_recorded(),
                 human_bytes(recording_bytes));
    fmt::print("\n");
  }
  fmt::print("logits of the last decode step finite: {}\n", logits_finite ? "yes" : "NO");

  fmt::print("model params | ms | ms/layer | tok/s | GB/s | TFLOP/s | floor ms | % of floor\n");
  for (const Row& r : rows) {
    const double floor_ms = 1e3 * std::max(r.cost.bytes / (ceilings.copy_gbs * 1e9),
                                           r.cost.flops / (ceilings.gemm_tflops * 1e12));
    const bool known = std::isfinite(floor_ms);
    fmt::print("{} | {:.2f} | {} | {:.0f} | {:.0f} | {:.1f} | {} | {}\n", r.params, r.ms,
               r.ms_per_layer >= 0 ? fmt::format("{:.3f}", r.ms_per_layer) : std::string("-"), r.tokens_per_s,
               r.cost.bytes / (r.ms * 1e6), r.cost.flops / (r.ms * 1e9),
               known ? fmt::format("{:.3f}", floor_ms) : std::string("-"),
               known ? fmt::format("{:.0f}%", 100.0 * floor_ms / r.ms) : std::string("-"));
  }
  return logits_finite ? Status() : Status::error("bench model: non-finite logits; expected finite");
}

}  // namespace dsv4
