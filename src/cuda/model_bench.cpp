// bench_model (model_bench.h). The model is written by write_random_bits_checkpoint to a
// temporary directory (/dev/shm when it has room, so the loader maps it from memory), loaded
// through Model::load, and driven only through the public API: prefill chunks, then decode steps
// of one token per sequence (last_logits_only), timed on the host around Model::forward, which
// returns once the logits are back (the step as a caller sees it: median of the timed steps,
// after one eager step and one that records the decode graph).
// Floor = max(bytes / copy bandwidth, FLOPs / cuBLAS BF16 rate), both measured in this run.
// Bytes are what a step must read in the checkpoint's formats: every weight of a layer except the
// routed experts, the routed experts the step's tokens hit (hash layers: counted from tid2eid and
// the tokens; dense layers: the expected count under uniform routing, E·(1 − (1 − k/E)^n)), the
// embedding rows, the LM head and the logits written; decode also counts the cache rows each
// query attends, in fp32 as the cache pool holds them (the window, HCA's entries or CSA's top-k,
// and all of the indexer's keys). FLOPs: 2 per weight MAC of each row's active weights, attention
// (QKᵀ and PV over the attended rows) and the indexer's scores.
#include "cuda/model_bench.h"

#include <cublas_v2.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <random>
#include <set>
#include <span>

#include "core/human_bytes.h"
#include "core/parallel.h"
#include "cuda/bench_util.h"
#include "cuda/check.h"
#include "cuda/cuda_backend.h"
#include "cuda/device_buffer.h"
#include "cuda/linear_sm90.h"
#include "model/model.h"
#include "model/weight_map.h"
#include "runtime/loading.h"

namespace dsv4::cuda {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

int64_t device_bytes_in_use() {
  size_t free = 0, total = 0;
  return cudaMemGetInfo(&free, &total) == cudaSuccess ? int64_t(total - free) : -1;
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
    } else if (name.size() > 8 && name.substr(name.size() - 8) == ".tid2eid") {
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

// Where a temporary checkpoint of `bytes` goes: /dev/shm when it has room (the model maps it
// straight from memory), else the system's temporary directory.
Result<std::string> temporary_checkpoint_dir(int64_t bytes) {
  std::error_code ec;
  const std::string name = "dsv4_bench_model_" + std::to_string(::getpid());
  for (const fs::path base : {fs::path("/dev/shm"), fs::temp_directory_path(ec)}) {
    const fs::space_info space = fs::space(base, ec);
    if (!ec && int64_t(space.available) > bytes + (int64_t(1) << 30)) return (base / name).string();
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

struct Row {
  std::string params;
  double ms = 0, ms_per_layer = -1, tokens_per_s = 0;
  Cost cost;  // per step / forward
};

}  // namespace

Status bench_model(const ModelBenchOptions& opt) {
  if (device_count() == 0) return Status::error("bench model: no CUDA device; expected a Hopper GPU");
  const ModelConfig full = opt.shape == "pro" ? ModelConfig::pro() : ModelConfig::flash();
  if (opt.n_layers < 1 || opt.n_layers > full.n_layers)
    return Status::errorf("bench model: --layers {}; expected 1..{} (V4-{} has {} layers)", opt.n_layers,
                          full.n_layers, opt.shape, full.n_layers);
  if (opt.batches.empty()) return Status::error("bench model: --batch is empty; expected batch sizes");
  const ModelConfig cfg = first_layers(full, opt.n_layers);
  const int64_t max_batch = *std::max_element(opt.batches.begin(), opt.batches.end());
  // Sequence 0 takes part in every batch size: 2 untimed and decode_steps timed steps each.
  const int64_t max_context = opt.context + int64_t(opt.batches.size()) * (2 + opt.decode_steps);
  if (max_context > cfg.max_position)
    return Status::errorf("bench model: --context {} plus decode steps reaches {}; expected below {}",
                          opt.context, max_context, cfg.max_position);

  cudaDeviceProp prop{};
  DSV4_CUDA_TRY(cudaGetDeviceProperties(&prop, 0));
  cublasHandle_t h;
  if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) return Status::error("bench model: cublasCreate failed");
  struct HandleGuard {
    cublasHandle_t h;
    ~HandleGuard() { cublasDestroy(h); }
  } guard{h};
  DSV4_ASSIGN_OR_RETURN(const DeviceCeilings ceil, measure_ceilings(h));
  fmt::print("device: {} ({} SMs, L2 {} MB, {} memory)\n", prop.name, prop.multiProcessorCount,
             prop.l2CacheSize >> 20, human_bytes(int64_t(prop.totalGlobalMem)));
  fmt::print("measured: copy {:.0f} GB/s (1 GiB D2D, read+write); cuBLAS BF16 GEMM 8192^3 {:.0f} TFLOP/s\n",
             ceil.copy_gbs, ceil.gemm_tflops);
  const SyntheticOptions so{opt.layout, opt.seed, /*with_mtp=*/false, 0};
  fmt::print("model: V4-{} widths, first {} of {} layers: {}; experts {}, vocab {}\n", opt.shape,
             cfg.n_layers, full.n_layers, schedule(cfg),
             opt.layout == CheckpointLayout::kNvfp4 ? "NVFP4" : "MXFP4", cfg.vocab_size);

  // Refuse before writing anything: the device copies are about the checkpoint's size.
  const int64_t ckpt_bytes = random_bits_checkpoint_bytes(cfg, so);
  {
    size_t free = 0, total = 0;
    DSV4_CUDA_TRY(cudaMemGetInfo(&free, &total));
    if (ckpt_bytes > int64_t(free))
      return Status::errorf(
          "bench model: {} layers of V4-{} hold {} of weights; expected at most the {} free "
          "on the device (use fewer --layers)",
          cfg.n_layers, opt.shape, human_bytes(ckpt_bytes), human_bytes(int64_t(free)));
  }
  std::string dir = opt.keep_dir;
  if (dir.empty()) {
    DSV4_ASSIGN_OR_RETURN(dir, temporary_checkpoint_dir(ckpt_bytes));
  }
  RemoveDir remove{opt.keep_dir.empty() ? dir : std::string()};
  auto t0 = Clock::now();
  DSV4_RETURN_IF_ERROR(write_random_bits_checkpoint(cfg, so, dir));
  fmt::print("checkpoint: random bits, {} written to {} in {:.1f} s ({}){}\n", human_bytes(ckpt_bytes), dir,
             seconds_since(t0), opt.keep_dir.empty() ? "removed at exit" : "kept",
             fmt::format(", {} CPU threads", cpu_threads()));

  std::unique_ptr<Backend> backend = make_cuda_backend();
  DSV4_ASSIGN_OR_RETURN(const MemoryPlan plan,
                        plan_model_memory(dir, *backend, max_context, max_batch, opt.prefill_rows));
  fmt::print("{}\n", plan.describe());
  DSV4_RETURN_IF_ERROR(plan.check());
  t0 = Clock::now();
  const int64_t used_before = device_bytes_in_use();
  DSV4_ASSIGN_OR_RETURN(std::unique_ptr<Model> model, Model::load(dir, std::move(backend)));
  DSV4_RETURN_IF_ERROR(model->reserve(max_batch, max_context));
  fmt::print("load: {:.1f} s; device memory for weights and caches {} (plan: weights {} + caches {})\n",
             seconds_since(t0), human_bytes(device_bytes_in_use() - used_before),
             human_bytes(plan.weight_bytes), human_bytes(max_batch * plan.cache_bytes));
  const ModelCost cost = model_cost(cfg, model->checkpoint());

  std::mt19937 rng(uint32_t(opt.seed));
  std::uniform_int_distribution<int32_t> token(0, int32_t(cfg.vocab_size - 1));
  std::vector<Row> rows;

  // Prefill: every sequence to `context` tokens, forwards of at most prefill_rows rows (whole
  // sequences when they fit, chunks of one sequence otherwise), one logits row per chunk.
  std::vector<SequenceState> states;
  std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(max_batch));
  for (int64_t b = 0; b < max_batch; ++b) {
    states.push_back(model->new_state());
    for (int64_t i = 0; i < opt.context; ++i) prompts[size_t(b)].push_back(token(rng));
  }
  {
    Row prefill;
    int64_t seq = 0, done = 0, n_forwards = 0, timed_tokens = 0, forward_rows = 0;
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
      DSV4_RETURN_IF_ERROR(model->forward(chunks).status().with_context("prefill"));
      const double s = seconds_since(t0);
      total_s += s;
      // The first forward allocates the activations: timed only when it is the only one.
      if (n_forwards++ > 0 || seq == max_batch) {
        timed_s += s, timed_tokens += n;
        prefill.cost += forward_cost(cost, cfg, tokens, positions, int64_t(chunks.size()), false);
      }
      forward_rows = std::max(forward_rows, n);
    }
    const int64_t timed_forwards = n_forwards > 1 ? n_forwards - 1 : 1;
    prefill.params =
        fmt::format("model shape={} layers={} engine=dsv4 phase=prefill batch={} context={} rows={}",
                    opt.shape, cfg.n_layers, max_batch, opt.context, forward_rows);
    prefill.ms = 1e3 * timed_s / double(timed_forwards);
    prefill.tokens_per_s = double(timed_tokens) / timed_s;
    prefill.cost.bytes /= double(timed_forwards);
    prefill.cost.flops /= double(timed_forwards);
    prefill.cost.experts /= double(timed_forwards);
    rows.push_back(prefill);
    fmt::print(
        "prefill: {} sequences × {} tokens in {} forwards of ≤ {} rows: {:.1f} s (first forward "
        "untimed: it allocates)\n",
        max_batch, opt.context, n_forwards, opt.prefill_rows, total_s);
  }

  // Decode: batch B = the first B sequences, one random token each per step.
  struct LmHead {  // a stand-in for the model's LM head, to time it alone
    DeviceBuffer<__nv_bfloat16> w;
    DeviceBuffer<float> x, y;
    PackedWeightView view;
  } head;
  DSV4_ASSIGN_OR_RETURN(head.w, DeviceBuffer<__nv_bfloat16>::create(size_t(cfg.vocab_size * cfg.d_model)));
  DSV4_ASSIGN_OR_RETURN(head.x, DeviceBuffer<float>::create(size_t(max_batch * cfg.d_model)));
  DSV4_ASSIGN_OR_RETURN(head.y, DeviceBuffer<float>::create(size_t(max_batch * cfg.vocab_size)));
  fill_random(head.w.get(), head.w.size(), 11);
  fill_random(head.x.get(), head.x.size(), 12);
  DSV4_CUDA_LAUNCH_CHECK();
  head.view = {WeightFormat::kBF16,
               cfg.vocab_size,
               cfg.d_model,
               cfg.vocab_size,
               cfg.d_model,
               reinterpret_cast<const uint8_t*>(head.w.get()),
               nullptr,
               1.0f};
  bool logits_finite = true;
  for (const int64_t B : opt.batches) {
    std::vector<int32_t> tokens(static_cast<size_t>(B));
    std::vector<int64_t> positions(static_cast<size_t>(B));
    std::vector<SequenceChunk> chunks(static_cast<size_t>(B));
    Row row;
    std::vector<double> ms;
    int64_t graph_bytes = 0;
    for (int64_t step = 0; step < 2 + opt.decode_steps; ++step) {
      for (int64_t b = 0; b < B; ++b) {
        tokens[size_t(b)] = token(rng);
        positions[size_t(b)] = states[size_t(b)].n_past();
        chunks[size_t(b)] = {&states[size_t(b)], std::span<const int32_t>(&tokens[size_t(b)], 1), true};
      }
      const int64_t used = device_bytes_in_use();
      t0 = Clock::now();
      Result<std::vector<float>> logits = model->forward(chunks);
      DSV4_RETURN_IF_ERROR(logits.status().with_context(fmt::format("decode batch {}", B)));
      const double step_ms = 1e3 * seconds_since(t0);
      if (step == 1) graph_bytes = device_bytes_in_use() - used;  // the step that records the graph
      if (step < 2) continue;
      ms.push_back(step_ms);
      row.cost += forward_cost(cost, cfg, tokens, positions, B, true);
      if (step == 1 + opt.decode_steps)
        for (float v : *logits) logits_finite &= std::isfinite(v);
    }
    std::sort(ms.begin(), ms.end());
    row.ms = ms[ms.size() / 2];
    row.cost.bytes /= double(ms.size());
    row.cost.flops /= double(ms.size());
    row.cost.experts /= double(ms.size());
    row.tokens_per_s = 1e3 * double(B) / row.ms;
    row.params = fmt::format("model shape={} layers={} engine=dsv4 phase=decode batch={} context={}",
                             opt.shape, cfg.n_layers, B, opt.context);
    // Per layer: the step less the LM head timed alone (the same BF16 linear the model runs).
    const size_t ws_bytes = linear_sm90_workspace_bytes(head.view, B);
    DSV4_ASSIGN_OR_RETURN(auto ws, DeviceBuffer<uint8_t>::create(ws_bytes));
    DSV4_ASSIGN_OR_RETURN(
        const double head_us, time_graph_us(1, [&](int, cudaStream_t st) {
          return linear_sm90({head.x.get(), head.view, head.y.get(), B, ws.get(), ws_bytes, h}, st);
        }));
    row.ms_per_layer = (row.ms - head_us / 1e3) / double(cfg.n_layers);
    rows.push_back(row);
    fmt::print(
        "decode batch {}: positions {}…{}, decode graphs recorded {}, recording took {} of device memory, "
        "LM head alone {:.3f} ms, experts hit per layer {:.1f}\n",
        B, opt.context, states[0].n_past(), model->decode_graphs_recorded(), human_bytes(graph_bytes),
        head_us / 1e3, row.cost.experts);
  }
  fmt::print("logits of the last decode step finite: {}\n", logits_finite ? "yes" : "NO");

  fmt::print("model params | ms | ms/layer | tok/s | GB/s | TFLOP/s | floor ms | % of floor\n");
  for (const Row& r : rows) {
    const double floor_ms =
        1e3 * std::max(r.cost.bytes / (ceil.copy_gbs * 1e9), r.cost.flops / (ceil.gemm_tflops * 1e12));
    fmt::print("{} | {:.2f} | {} | {:.0f} | {:.0f} | {:.1f} | {:.3f} | {:.0f}%\n", r.params, r.ms,
               r.ms_per_layer >= 0 ? fmt::format("{:.3f}", r.ms_per_layer) : std::string("-"), r.tokens_per_s,
               r.cost.bytes / (r.ms * 1e6), r.cost.flops / (r.ms * 1e9), floor_ms, 100.0 * floor_ms / r.ms);
  }
  return logits_finite ? Status() : Status::error("bench model: non-finite logits; expected finite");
}

}  // namespace dsv4::cuda
