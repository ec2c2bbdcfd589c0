// The DeepSeek-V4 forward over a batch of sequence chunks. Token-wise work (projections, norms,
// mHC, MoE) runs once over all rows of the batch; the sequence-dependent part of attention
// (window, compressors, indexer, key selection) runs per sequence against its state.
#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <set>

#include "core/numeric.h"

namespace dsv4 {
namespace {

WeightView plain_view(const TensorInfo& t) {
  WeightView v;
  v.format = t.dtype == DType::kBF16 ? WeightFormat::kBF16 : WeightFormat::kF32;
  v.rows = t.shape.at(0);
  v.cols = t.shape.size() > 1 ? t.shape[1] : 1;
  v.data = t.data;
  return v;
}

// Runs `beside` in a branch next to `main` and joins them (Backend::begin_branch): at a few tokens
// each op is a short launch that leaves most of the GPU idle, so two independent chains take about
// the time of the longer one. The branch is joined whatever fails, so the backend stays usable.
template <typename Beside, typename Main>
Status run_beside(Backend& b, Beside&& beside, Main&& main) {
  DSV4_RETURN_IF_ERROR(b.begin_branch());
  const Status in_branch = beside();
  DSV4_RETURN_IF_ERROR(b.end_branch());
  const Status in_main = in_branch.ok() ? main() : Status{};
  DSV4_RETURN_IF_ERROR(b.join_branch());
  return in_branch.ok() ? in_main : in_branch;
}

}  // namespace

// The activations of one forward call, in backend memory; rows are the batch's tokens in chunk
// order. Kept by the model between calls so that a step of the same shape reuses every buffer.
struct Model::Rows {
  int64_t n = 0;                    // rows in the batch
  bool decode = false;              // every chunk is one token: attention runs attend_decode
  BackendArray<int64_t> positions;  // [n]
  BackendArray<int32_t> tokens;     // [n]
  BackendArray<int32_t> slots;      // [n] each row's cache slot (decode)
  BackendArray<float> embedded;     // [n, D]
  BackendArray<float> h, h_next;    // [n, hc_mult, D] residual streams
  BackendArray<float> post, comb;   // [n, hc_mult], [n, hc_mult, hc_mult] mHC mixing
  // Per-layer attention intermediates (named as in spec §4.2).
  BackendArray<float> x;                   // [n, D] collapsed + attn_norm
  BackendArray<float> qr;                  // [n, q_lora_rank]
  BackendArray<float> q;                   // [n, H, head_dim]
  BackendArray<float> kv;                  // [n, head_dim]
  BackendArray<float> comp_kv, comp_gate;  // [n, n_series·head_dim]
  BackendArray<float> idx_kv, idx_gate;    // [n, 2·index_head_dim]
  BackendArray<float> idx_q;               // [n, index_n_heads, index_head_dim]
  BackendArray<float> idx_w;               // [n, index_n_heads]
  BackendArray<float> o;                   // [n, H, head_dim] attention output
  BackendArray<float> u;                   // [n, o_groups, o_lora_rank]
  BackendArray<float> y;                   // [n, D] attention / MoE output of a block
  BackendArray<int32_t> kv_idx;            // [n_rows, n_sel] the kv rows each query attends
  BackendArray<int32_t> selected;          // [n_rows, index_topk] the CSA indexer's picks
  // Prefill, per sequence (reused sequence after sequence, in stream order).
  BackendArray<float> pool;                    // [n_kv, head_dim] keys one sequence's queries may see
  BackendArray<float> window_kv, window_gate;  // [n_tail + n_rows, n_series·width] a compressor's input
  BackendArray<float> last_kv, last_gate;      // [ratio, width] CSA's newest closed window
  BackendArray<int64_t> entry_positions;       // [n_windows]
  // MoE.
  BackendArray<int32_t> expert_ids;     // [n, k]
  BackendArray<int32_t> expert_counts;  // [E] slots per expert
  BackendArray<float> expert_weights;   // [n, k]
  BackendArray<int32_t> shared_ids;     // [≥ n] all 0
  BackendArray<float> shared_weights;   // [≥ n] all 1
  BackendArray<float> shared_out;       // [n, D]
  // Head.
  BackendArray<float> z, z_out;  // [n, D], [n_out, D]
  BackendArray<float> logits;    // [n_out, vocab]
};

// A compressor's per-sequence state in the cache pool (the entries live with their consumer).
struct Model::CompressorCache {
  int64_t ratio = 0, width = 0, n_series = 1;
  BackendArray<float> tail_kv, tail_gate;  // [n_slots, ratio, n_series·width] the unfinished window
  BackendArray<float> prev_kv, prev_gate;  // [n_slots, ratio, width] CSA: Ca of the last closed window
  int64_t row() const { return n_series * width; }
};

// One layer's caches for every slot. kv holds, per slot, the sliding-window ring (rows
// 0…window−1, row = position mod window) then the compressor's entries, so attention reads both
// from one pool; index_keys holds the CSA indexer's entries.
struct Model::LayerCache {
  int64_t entries = 0;     // compressed entries per slot (0 for sliding layers)
  BackendArray<float> kv;  // [n_slots, window + entries, head_dim]
  CompressorCache compressor;
  BackendArray<float> index_keys;  // [n_slots, entries, index_head_dim] CSA
  CompressorCache indexer;         // CSA
};

Model::Model()
    : rows_(std::make_unique<Rows>()),
      decode_rows_(std::make_unique<Rows>()),
      cache_slots_(std::make_shared<CacheSlots>()) {}
Model::~Model() = default;

Result<std::unique_ptr<Model>> Model::load(const std::string& dir, std::unique_ptr<Backend> backend) {
  std::unique_ptr<Model> m(new Model());
  DSV4_ASSIGN_OR_RETURN(m->cfg_, load_config(dir));
  DSV4_RETURN_IF_ERROR(m->cfg_.validate().with_context(dir + "/config.json"));
  if (m->cfg_.n_heads % m->cfg_.o_groups)
    return Status::errorf("{}/config.json: num_attention_heads {} not divisible by o_groups {}", dir,
                          m->cfg_.n_heads, m->cfg_.o_groups);
  DSV4_ASSIGN_OR_RETURN(Checkpoint ckpt, Checkpoint::open(dir));
  m->ckpt_ = std::make_unique<Checkpoint>(std::move(ckpt));
  m->weights_ = WeightMap::build(m->cfg_, *m->ckpt_);
  DSV4_RETURN_IF_ERROR(m->weights_.status().with_context(dir + ": weights disagree with config.json"));
  m->backend_ = std::move(backend);
  DSV4_RETURN_IF_ERROR(
      m->load_weights().with_context(dir + ": loading weights to the " + m->backend_->name() + " backend"));
  return m;
}

Status Model::upload(BackendArray<float>& dst, const std::vector<float>& host) {
  return dst.assign(*backend_, host);
}

Status Model::load_weights() {
  Backend& b = *backend_;
  const auto plain = [&](BackendArray<float>& dst, const std::string& name) {
    return upload(dst, plain_to_f32(*weights_.plain(name)->tensor));
  };
  const auto lin = [&](WeightView& dst, const std::string& base) -> Status {
    DSV4_ASSIGN_OR_RETURN(dst, b.upload_linear_weight(weights_.linear(base)->view));
    return {};
  };
  const auto hc = [&](HcWeights& dst, const std::string& p, bool head) -> Status {
    const std::string s = head ? "" : "_";
    DSV4_RETURN_IF_ERROR(plain(dst.fn, p + s + "fn"));
    DSV4_RETURN_IF_ERROR(plain(dst.base, p + s + "base"));
    return plain(dst.scale, p + s + "scale");
  };
  const auto compressor = [&](CompressorWeights& dst, const std::string& p) -> Status {
    DSV4_RETURN_IF_ERROR(lin(dst.wkv, p + "wkv"));
    DSV4_RETURN_IF_ERROR(lin(dst.wgate, p + "wgate"));
    DSV4_RETURN_IF_ERROR(plain(dst.ape, p + "ape"));
    return plain(dst.norm, p + "norm.weight");
  };
  const auto expert = [&](const std::string& p) -> Result<ExpertWeights> {
    ExpertWeights e;
    DSV4_RETURN_IF_ERROR(lin(e.w1, p + "w1"));
    DSV4_RETURN_IF_ERROR(lin(e.w3, p + "w3"));
    DSV4_RETURN_IF_ERROR(lin(e.w2, p + "w2"));
    return e;
  };
  DSV4_ASSIGN_OR_RETURN(embed_, b.upload_weight(plain_view(*weights_.plain("embed.weight")->tensor)));
  DSV4_ASSIGN_OR_RETURN(head_, b.upload_linear_weight(plain_view(*weights_.plain("head.weight")->tensor)));
  DSV4_RETURN_IF_ERROR(plain(final_norm_, "norm.weight"));
  DSV4_RETURN_IF_ERROR(hc(hc_head_, "hc_head_", true));
  DSV4_RETURN_IF_ERROR(upload(main_inv_freq_, rope_inv_freq(cfg_, false)));
  DSV4_RETURN_IF_ERROR(upload(compress_inv_freq_, rope_inv_freq(cfg_, true)));
  layers_.resize(size_t(cfg_.n_layers));
  for (int64_t i = 0; i < cfg_.n_layers; ++i) {
    LayerWeights& L = layers_[size_t(i)];
    const std::string p = "layers." + std::to_string(i) + ".";
    L.type = cfg_.attention_type(i);
    L.ratio = cfg_.compress_ratio(i);
    L.hash = cfg_.is_hash_layer(i);
    DSV4_RETURN_IF_ERROR(plain(L.attn_norm, p + "attn_norm.weight"));
    DSV4_RETURN_IF_ERROR(plain(L.ffn_norm, p + "ffn_norm.weight"));
    DSV4_RETURN_IF_ERROR(hc(L.hc_attn, p + "hc_attn", false));
    DSV4_RETURN_IF_ERROR(hc(L.hc_ffn, p + "hc_ffn", false));
    DSV4_RETURN_IF_ERROR(plain(L.attn_sink, p + "attn.attn_sink"));
    DSV4_RETURN_IF_ERROR(plain(L.q_norm, p + "attn.q_norm.weight"));
    DSV4_RETURN_IF_ERROR(plain(L.kv_norm, p + "attn.kv_norm.weight"));
    DSV4_RETURN_IF_ERROR(lin(L.wq_a, p + "attn.wq_a"));
    DSV4_RETURN_IF_ERROR(lin(L.wq_b, p + "attn.wq_b"));
    DSV4_RETURN_IF_ERROR(lin(L.wkv, p + "attn.wkv"));
    DSV4_RETURN_IF_ERROR(lin(L.wo_a, p + "attn.wo_a"));  // read by grouped_linear
    DSV4_RETURN_IF_ERROR(lin(L.wo_b, p + "attn.wo_b"));
    if (L.type != AttentionType::kSliding)
      DSV4_RETURN_IF_ERROR(compressor(L.compressor, p + "attn.compressor."));
    if (L.type == AttentionType::kCSA) {
      DSV4_RETURN_IF_ERROR(compressor(L.indexer_compressor, p + "attn.indexer.compressor."));
      DSV4_RETURN_IF_ERROR(lin(L.indexer_wq_b, p + "attn.indexer.wq_b"));
      DSV4_RETURN_IF_ERROR(lin(L.indexer_weights_proj, p + "attn.indexer.weights_proj"));
    }
    const WeightView gate = weights_.linear(p + "ffn.gate")->view;  // moe_router reads it as it is stored
    if (gate.format != WeightFormat::kBF16 && gate.format != WeightFormat::kF32)
      return Status::errorf(
          "tensor '{}ffn.gate.weight': {}; expected BF16 or F32 (the router runs unquantized)", p,
          weight_format_name(gate.format));
    DSV4_ASSIGN_OR_RETURN(L.gate, b.upload_weight(gate));
    if (L.hash) {
      DSV4_RETURN_IF_ERROR(
          L.tid2eid.assign(b, plain_to_i64(*weights_.plain(p + "ffn.gate.tid2eid")->tensor)));
    } else {
      DSV4_RETURN_IF_ERROR(plain(L.gate_bias, p + "ffn.gate.bias"));
    }
    for (int64_t e = 0; e < cfg_.n_routed_experts; ++e) {
      DSV4_ASSIGN_OR_RETURN(ExpertWeights w, expert(p + "ffn.experts." + std::to_string(e) + "."));
      L.experts.push_back(w);
    }
    if (cfg_.n_shared_experts > 0) {
      DSV4_ASSIGN_OR_RETURN(ExpertWeights w, expert(p + "ffn.shared_experts."));
      L.shared.push_back(w);
    }
  }
  return {};
}

SequenceState Model::new_state() const {
  SequenceState s;
  s.slots_ = cache_slots_;
  return s;
}

// Compressed entries a slot of layer `layer` holds for up to `context` tokens.
static int64_t cache_entries(const ModelConfig& cfg, int64_t layer, int64_t context) {
  const int64_t ratio = cfg.compress_ratio(layer);
  return ratio > 0 ? context / ratio : 0;  // entry b closes at position (b + 1)·ratio − 1 < context
}

int64_t cache_bytes_per_sequence(const ModelConfig& cfg, int64_t context) {
  int64_t floats = 0;
  const int64_t hd = cfg.head_dim, ihd = cfg.index_head_dim;
  for (int64_t i = 0; i < cfg.n_layers; ++i) {
    const int64_t ratio = cfg.compress_ratio(i), entries = cache_entries(cfg, i, context);
    floats += (cfg.sliding_window + entries) * hd;  // window ring, then the compressed entries
    if (cfg.attention_type(i) == AttentionType::kHCA) floats += 2 * ratio * hd;  // tail: kv, gate
    if (cfg.attention_type(i) == AttentionType::kCSA) {
      floats += 2 * ratio * 2 * hd + 2 * ratio * hd;                    // two series' tails, previous Ca
      floats += entries * ihd + 2 * ratio * 2 * ihd + 2 * ratio * ihd;  // indexer keys, tails, previous
    }
  }
  return floats * int64_t(sizeof(float));
}

// Reallocates every layer's caches for max(n_sequences, slots in use) slots of max(context,
// current) tokens, copying each slot's contents to its new place; recorded graphs become stale
// (the backend's memory epoch moves).
Status Model::reserve(int64_t n_sequences, int64_t context) {
  Backend& b = *backend_;
  const int64_t n_slots = std::max({n_sequences, int64_t(cache_slots_->n_slots()), cache_n_slots_});
  context = std::min(std::max(context, cache_context_), cfg_.max_position);
  if (n_slots <= cache_n_slots_ && context <= cache_context_) return {};
  const int64_t W = cfg_.sliding_window, hd = cfg_.head_dim;
  // Slot blocks of `per_slot` floats (grown to new_per_slot) copied to their new places.
  const auto regrow = [&](BackendArray<float>& a, int64_t per_slot, int64_t new_per_slot) -> Status {
    if (new_per_slot == 0) return {};
    BackendArray<float> grown;
    DSV4_RETURN_IF_ERROR(grown.resize(b, n_slots * new_per_slot));
    if (cache_n_slots_ > 0 && per_slot > 0)
      DSV4_RETURN_IF_ERROR(b.copy_2d(grown.data(), size_t(new_per_slot) * sizeof(float), a.data(),
                                     size_t(per_slot) * sizeof(float), size_t(per_slot) * sizeof(float),
                                     size_t(cache_n_slots_)));
    a.swap(grown);
    return {};
  };
  const auto regrow_compressor = [&](CompressorCache& c) -> Status {
    const int64_t tail = c.ratio * c.row(), prev = c.n_series == 2 ? c.ratio * c.width : 0;
    DSV4_RETURN_IF_ERROR(regrow(c.tail_kv, tail, tail));
    DSV4_RETURN_IF_ERROR(regrow(c.tail_gate, tail, tail));
    DSV4_RETURN_IF_ERROR(regrow(c.prev_kv, prev, prev));
    return regrow(c.prev_gate, prev, prev);
  };
  int64_t max_rows = 0;  // attention's row numbers into a layer's pool are int32
  for (int64_t i = 0; i < cfg_.n_layers; ++i)
    max_rows = std::max(max_rows, n_slots * (W + cache_entries(cfg_, i, context)));
  if (max_rows > int64_t(INT32_MAX))
    return Status::errorf("cache pool: {} sequences of {} tokens; expected fewer than 2^31 rows per layer",
                          n_slots, context);
  caches_.resize(size_t(cfg_.n_layers));
  for (int64_t i = 0; i < cfg_.n_layers; ++i) {
    LayerCache& c = caches_[size_t(i)];
    const AttentionType type = cfg_.attention_type(i);
    const int64_t E = cache_entries(cfg_, i, context);
    if (type != AttentionType::kSliding && c.compressor.ratio == 0) {
      c.compressor = {cfg_.compress_ratio(i), hd, type == AttentionType::kCSA ? 2 : 1, {}, {}, {}, {}};
      if (type == AttentionType::kCSA)
        c.indexer = {cfg_.compress_ratio(i), cfg_.index_head_dim, 2, {}, {}, {}, {}};
    }
    DSV4_RETURN_IF_ERROR(regrow(c.kv, (W + c.entries) * hd, (W + E) * hd));
    if (type != AttentionType::kSliding) DSV4_RETURN_IF_ERROR(regrow_compressor(c.compressor));
    if (type == AttentionType::kCSA) {
      DSV4_RETURN_IF_ERROR(regrow(c.index_keys, c.entries * cfg_.index_head_dim, E * cfg_.index_head_dim));
      DSV4_RETURN_IF_ERROR(regrow_compressor(c.indexer));
    }
    c.entries = E;
  }
  cache_n_slots_ = n_slots;
  cache_context_ = context;
  return {};
}

Status Model::check_batch(std::span<const SequenceChunk> batch) const {
  if (batch.empty()) return Status::error("forward: empty batch; expected at least one sequence chunk");
  std::set<const SequenceState*> seen;
  for (size_t b = 0; b < batch.size(); ++b) {
    const SequenceChunk& c = batch[b];
    if (!c.state) return Status::errorf("forward: chunk {} has no sequence state", b);
    if (c.state->slots_ != cache_slots_)
      return Status::errorf("forward: chunk {}: its sequence state was not made by this model's new_state",
                            b);
    if (!seen.insert(c.state).second)
      return Status::errorf("forward: chunk {}: its sequence state appears twice in one batch", b);
    if (c.tokens.empty()) return Status::errorf("forward: chunk {} is empty; expected at least one token", b);
    for (size_t i = 0; i < c.tokens.size(); ++i)
      if (c.tokens[i] < 0 || c.tokens[i] >= cfg_.vocab_size)
        return Status::errorf("forward: chunk {}: token {} has id {}; expected 0 <= id < {}", b, i,
                              c.tokens[i], cfg_.vocab_size);
    if (c.state->n_past() + int64_t(c.tokens.size()) > cfg_.max_position)
      return Status::errorf(
          "forward: chunk {}: positions up to {}; expected below max_position_embeddings {}", b,
          c.state->n_past() + int64_t(c.tokens.size()) - 1, cfg_.max_position);
  }
  return {};
}

Result<std::vector<float>> Model::forward(std::span<const SequenceChunk> batch) {
  DSV4_RETURN_IF_ERROR(check_batch(batch));
  Backend& b = *backend_;
  int64_t context = 0;
  bool decode = true;
  for (const SequenceChunk& c : batch) {
    if (c.state->slot_ < 0) c.state->slot_ = cache_slots_->acquire();
    context = std::max(context, c.state->n_past() + int64_t(c.tokens.size()));
    decode = decode && c.tokens.size() == 1;
  }
  // Grow by doubling, so that a long generation reallocates (and re-records its graphs) rarely.
  constexpr int64_t kMinCacheContext = 1024;
  if (cache_slots_->n_slots() > cache_n_slots_ || context > cache_context_)
    DSV4_RETURN_IF_ERROR(reserve(std::max<int64_t>(cache_slots_->n_slots(), 2 * cache_n_slots_),
                                 std::max({context, 2 * cache_context_, kMinCacheContext})));

  Rows& a = decode ? *decode_rows_ : *rows_;
  std::vector<int64_t> positions;
  std::vector<int32_t> tokens, slots;
  for (const SequenceChunk& c : batch)
    for (size_t i = 0; i < c.tokens.size(); ++i) {
      positions.push_back(c.state->n_past() + int64_t(i));
      tokens.push_back(c.tokens[i]);
      slots.push_back(c.state->slot_);
    }
  a.n = int64_t(tokens.size());
  a.decode = decode;
  DSV4_RETURN_IF_ERROR(a.positions.assign(b, positions));
  DSV4_RETURN_IF_ERROR(a.tokens.assign(b, tokens));
  if (decode) DSV4_RETURN_IF_ERROR(a.slots.assign(b, slots));  // prefill reads each state's slot
  DSV4_RETURN_IF_ERROR(decode && decode_graphs_ && b.supports_graphs() ? run_decode_graph(batch, a)
                                                                       : run(batch, a));
  DSV4_ASSIGN_OR_RETURN(std::vector<float> logits, a.logits.download(b));
  for (const SequenceChunk& c : batch) c.state->n_past_ += int64_t(c.tokens.size());
  return logits;
}

int64_t Model::decode_graphs_recorded() const {
  int64_t n = 0;
  for (const auto& [batch, g] : decode_graphs_by_batch_) n += g.graph && g.epoch == backend_->memory_epoch();
  return n;
}

// A decode step of this batch size: replayed when recorded at the current memory epoch, recorded
// when an eager step of this size has run since the epoch last moved, else run eagerly.
Status Model::run_decode_graph(std::span<const SequenceChunk> batch, Rows& a) {
  Backend& b = *backend_;
  DecodeGraph& g = decode_graphs_by_batch_[a.n];
  const uint64_t epoch = b.memory_epoch();
  if (g.graph && g.epoch == epoch) return b.replay(*g.graph);
  g.graph.reset();
  if (g.warm_epoch != epoch) {
    DSV4_RETURN_IF_ERROR(run(batch, a));
    g.warm_epoch = b.memory_epoch();
    return {};
  }
  DSV4_RETURN_IF_ERROR(b.begin_capture());
  const Status recorded = run(batch, a);
  Result<std::unique_ptr<BackendGraph>> graph = b.end_capture();
  DSV4_RETURN_IF_ERROR(recorded.with_context("recording the decode step of batch " + std::to_string(a.n)));
  DSV4_RETURN_IF_ERROR(graph.status());
  if (b.memory_epoch() != epoch)
    return Status::errorf("recording the decode step of batch {}: it allocated memory; expected none", a.n);
  g.graph = std::move(graph.value());
  g.epoch = epoch;
  return b.replay(*g.graph);
}

// Embedding → blocks → hyper-head → final norm → LM head into a.logits, all enqueued on the
// backend. In a decode step every argument is fixed for the batch size (graph-safe).
Status Model::run(std::span<const SequenceChunk> batch, Rows& a) {
  Backend& b = *backend_;
  const int64_t D = cfg_.d_model, n_hc = cfg_.hc_mult, V = cfg_.vocab_size;
  const float eps = float(cfg_.rms_norm_eps);

  // Embedding, then four identical streams.
  DSV4_RETURN_IF_ERROR(a.embedded.resize(b, a.n * D));
  DSV4_RETURN_IF_ERROR(b.embedding({a.tokens.data(), embed_, a.embedded.data(), a.n}));
  DSV4_RETURN_IF_ERROR(a.h.resize(b, a.n * n_hc * D));
  for (int64_t j = 0; j < n_hc; ++j)
    DSV4_RETURN_IF_ERROR(b.copy_2d(a.h.data() + j * D, size_t(n_hc * D) * sizeof(float), a.embedded.data(),
                                   size_t(D) * sizeof(float), size_t(D) * sizeof(float), size_t(a.n)));

  for (int64_t layer = 0; layer < cfg_.n_layers; ++layer) DSV4_RETURN_IF_ERROR(block(layer, batch, a));

  // Hyper-head, final norm, LM head.
  DSV4_RETURN_IF_ERROR(a.z.resize(b, a.n * D));
  DSV4_RETURN_IF_ERROR(
      b.hyper_head({a.h.data(), hc_head_.fn.data(), hc_head_.base.data(), hc_head_.scale.data(), a.z.data(),
                    a.n, n_hc, D, eps, float(cfg_.hc_eps)}));
  DSV4_RETURN_IF_ERROR(b.rms_norm({a.z.data(), final_norm_.data(), a.z.data(), a.n, D, eps}));
  // Rows that need logits: every token, or a chunk's last with last_logits_only.
  int64_t n_out = 0;
  for (const SequenceChunk& c : batch) n_out += c.last_logits_only ? 1 : int64_t(c.tokens.size());
  const float* z_rows = a.z.data();  // [n_out, D]
  if (n_out != a.n) {                // gather only when some chunk wants just its last row
    DSV4_RETURN_IF_ERROR(a.z_out.resize(b, n_out * D));
    int64_t row = 0, out_row = 0;
    for (const SequenceChunk& c : batch) {
      const int64_t len = int64_t(c.tokens.size());
      const int64_t first = c.last_logits_only ? row + len - 1 : row;
      DSV4_RETURN_IF_ERROR(b.copy(a.z_out.data() + out_row * D, a.z.data() + first * D,
                                  size_t((row + len - first) * D) * sizeof(float)));
      out_row += row + len - first;
      row += len;
    }
    z_rows = a.z_out.data();
  }
  DSV4_RETURN_IF_ERROR(a.logits.resize(b, n_out * V));  // [n_out, vocab]
  return b.linear({z_rows, head_, a.logits.data(), n_out});
}

// One decoder block (spec §4): mHC pre → attn_norm → attention → mHC post, then the same around
// the MoE.
Status Model::block(int64_t layer, std::span<const SequenceChunk> batch, Rows& a) {
  Backend& b = *backend_;
  const LayerWeights& L = layers_[size_t(layer)];
  const int64_t D = cfg_.d_model, n_hc = cfg_.hc_mult;
  const float eps = float(cfg_.rms_norm_eps), hc_eps = float(cfg_.hc_eps);
  DSV4_RETURN_IF_ERROR(a.post.resize(b, a.n * n_hc));         // [n, n_hc]
  DSV4_RETURN_IF_ERROR(a.comb.resize(b, a.n * n_hc * n_hc));  // [n, n_hc, n_hc]
  DSV4_RETURN_IF_ERROR(a.h_next.resize(b, a.h.size()));       // [n, n_hc, D]
  DSV4_RETURN_IF_ERROR(a.x.resize(b, a.n * D));
  DSV4_RETURN_IF_ERROR(a.y.resize(b, a.n * D));

  const auto hc_pre = [&](const HcWeights& w, const BackendArray<float>& norm) -> Status {
    DSV4_RETURN_IF_ERROR(
        b.mhc_pre({a.h.data(), w.fn.data(), w.base.data(), w.scale.data(), a.x.data(), a.post.data(),
                   a.comb.data(), a.n, n_hc, D, cfg_.hc_sinkhorn_iters, eps, hc_eps}));
    return b.rms_norm({a.x.data(), norm.data(), a.x.data(), a.n, D, eps});
  };
  const auto hc_post = [&]() -> Status {
    DSV4_RETURN_IF_ERROR(
        b.mhc_post({a.y.data(), a.h.data(), a.post.data(), a.comb.data(), a.h_next.data(), a.n, n_hc, D}));
    a.h.swap(a.h_next);
    return {};
  };

  DSV4_RETURN_IF_ERROR(hc_pre(L.hc_attn, L.attn_norm));
  DSV4_RETURN_IF_ERROR(attention_block(layer, batch, a));  // a.y = attention(a.x)
  DSV4_RETURN_IF_ERROR(hc_post());

  DSV4_RETURN_IF_ERROR(hc_pre(L.hc_ffn, L.ffn_norm));
  DSV4_RETURN_IF_ERROR(moe(layer, a, a.x.data(), a.y.data()));
  return hc_post();
}

// Attention of one layer (spec §4.2) for every row of the batch; a.x is the normed input, a.y
// [n, D] receives the output.
Status Model::attention_block(int64_t layer, std::span<const SequenceChunk> batch, Rows& a) {
  Backend& b = *backend_;
  const LayerWeights& L = layers_[size_t(layer)];
  const int64_t n = a.n, H = cfg_.n_heads, hd = cfg_.head_dim, r = cfg_.rope_dim;
  const float eps = float(cfg_.rms_norm_eps);
  const float* inv_freq =
      L.type == AttentionType::kSliding ? main_inv_freq_.data() : compress_inv_freq_.data();

  const bool compressed = L.type != AttentionType::kSliding, indexed = L.type == AttentionType::kCSA;
  const int64_t nh = cfg_.index_n_heads, ihd = cfg_.index_head_dim;
  DSV4_RETURN_IF_ERROR(a.qr.resize(b, n * cfg_.q_lora_rank));
  DSV4_RETURN_IF_ERROR(a.q.resize(b, n * H * hd));
  DSV4_RETURN_IF_ERROR(a.kv.resize(b, n * hd));
  if (compressed) {
    DSV4_RETURN_IF_ERROR(a.comp_kv.resize(b, n * L.compressor.wkv.rows));
    DSV4_RETURN_IF_ERROR(a.comp_gate.resize(b, n * L.compressor.wgate.rows));
  }
  if (indexed) {
    DSV4_RETURN_IF_ERROR(a.idx_kv.resize(b, n * 2 * ihd));
    DSV4_RETURN_IF_ERROR(a.idx_gate.resize(b, n * 2 * ihd));
    DSV4_RETURN_IF_ERROR(a.idx_q.resize(b, n * nh * ihd));
    DSV4_RETURN_IF_ERROR(a.idx_w.resize(b, n * nh));
  }

  // The key side, beside the query side: shared K=V, kv = kv_norm(x·W_kvᵀ), RoPE; the compressor
  // projections (all rows; the pooling itself is per sequence).
  const auto key_side = [&]() -> Status {
    DSV4_RETURN_IF_ERROR(b.linear({a.x.data(), L.wkv, a.kv.data(), n}));
    DSV4_RETURN_IF_ERROR(b.rms_norm({a.kv.data(), L.kv_norm.data(), a.kv.data(), n, hd, eps}));
    DSV4_RETURN_IF_ERROR(b.rope({a.kv.data(), a.positions.data(), inv_freq, n, 1, hd, r, false}));
    if (!compressed) return {};
    DSV4_RETURN_IF_ERROR(b.linear({a.x.data(), L.compressor.wkv, a.comp_kv.data(), n}));
    return b.linear({a.x.data(), L.compressor.wgate, a.comp_gate.data(), n});
  };
  // Query path: qr = q_norm(x·W_qaᵀ); q = per-head rms(qr·W_qbᵀ); RoPE. Indexer projections: its
  // compressor, queries from qr (RoPE'd), head weights from x.
  const auto query_side = [&]() -> Status {
    DSV4_RETURN_IF_ERROR(b.linear({a.x.data(), L.wq_a, a.qr.data(), n}));
    DSV4_RETURN_IF_ERROR(b.rms_norm({a.qr.data(), L.q_norm.data(), a.qr.data(), n, cfg_.q_lora_rank, eps}));
    DSV4_RETURN_IF_ERROR(b.linear({a.qr.data(), L.wq_b, a.q.data(), n}));
    DSV4_RETURN_IF_ERROR(b.rms_norm({a.q.data(), nullptr, a.q.data(), n * H, hd, eps}));
    DSV4_RETURN_IF_ERROR(b.rope({a.q.data(), a.positions.data(), inv_freq, n, H, hd, r, false}));
    if (!indexed) return {};
    DSV4_RETURN_IF_ERROR(b.linear({a.x.data(), L.indexer_compressor.wkv, a.idx_kv.data(), n}));
    DSV4_RETURN_IF_ERROR(b.linear({a.x.data(), L.indexer_compressor.wgate, a.idx_gate.data(), n}));
    DSV4_RETURN_IF_ERROR(b.linear({a.qr.data(), L.indexer_wq_b, a.idx_q.data(), n}));
    DSV4_RETURN_IF_ERROR(
        b.rope({a.idx_q.data(), a.positions.data(), compress_inv_freq_.data(), n, nh, ihd, r, false}));
    return b.linear({a.x.data(), L.indexer_weights_proj, a.idx_w.data(), n});
  };
  DSV4_RETURN_IF_ERROR(run_beside(b, key_side, query_side));

  DSV4_RETURN_IF_ERROR(a.o.resize(b, n * H * hd));
  if (a.decode) {
    DSV4_RETURN_IF_ERROR(attend_decode(layer, a));
  } else {
    int64_t row0 = 0;
    for (const SequenceChunk& c : batch) {
      const int64_t rows = int64_t(c.tokens.size());
      DSV4_RETURN_IF_ERROR(attend_sequence(layer, *c.state, row0, rows, a));
      row0 += rows;
    }
  }

  // De-rotate, grouped output projection: u = W_oa[g]·o_g, y = W_ob·u.
  DSV4_RETURN_IF_ERROR(b.rope({a.o.data(), a.positions.data(), inv_freq, n, H, hd, r, true}));
  DSV4_RETURN_IF_ERROR(a.u.resize(b, n * cfg_.o_groups * cfg_.o_lora_rank));
  DSV4_RETURN_IF_ERROR(b.grouped_linear({a.o.data(), L.wo_a, a.u.data(), n, cfg_.o_groups}));
  return b.linear({a.u.data(), L.wo_b, a.y.data(), n});
}

// Feeds n_rows source tokens of the sequence in `slot`, the first at position start, to a
// compressor: the windows they complete are pooled into entries (entry e of the slot at row e),
// normed and rotated to the window's first position; the unfinished window stays in the tail.
Status Model::compress(const CompressorWeights& w, CompressorCache& c, int32_t slot, int64_t start,
                       const float* kv, const float* gate, int64_t n_rows, float* entries, Rows& a) {
  Backend& b = *backend_;
  const int64_t m = c.ratio, row = c.row(), width = c.width;
  const int64_t n_tail = start % m, total = n_tail + n_rows, n_windows = total / m, first = start / m;
  float* tail_kv = c.tail_kv.data() + slot * m * row;
  float* tail_gate = c.tail_gate.data() + slot * m * row;
  // The compressor's input: the tail's rows, then this chunk's (the chunk alone when no tail).
  if (n_tail > 0) {
    DSV4_RETURN_IF_ERROR(a.window_kv.resize(b, total * row));
    DSV4_RETURN_IF_ERROR(a.window_gate.resize(b, total * row));
    DSV4_RETURN_IF_ERROR(b.copy(a.window_kv.data(), tail_kv, size_t(n_tail * row) * sizeof(float)));
    DSV4_RETURN_IF_ERROR(b.copy(a.window_gate.data(), tail_gate, size_t(n_tail * row) * sizeof(float)));
    DSV4_RETURN_IF_ERROR(b.copy(a.window_kv.data() + n_tail * row, kv, size_t(n_rows * row) * sizeof(float)));
    DSV4_RETURN_IF_ERROR(
        b.copy(a.window_gate.data() + n_tail * row, gate, size_t(n_rows * row) * sizeof(float)));
    kv = a.window_kv.data();
    gate = a.window_gate.data();
  }
  if (n_windows > 0) {
    const bool csa = c.n_series == 2;
    float* prev_kv = csa ? c.prev_kv.data() + slot * m * width : nullptr;
    float* prev_gate = csa ? c.prev_gate.data() + slot * m * width : nullptr;
    DSV4_RETURN_IF_ERROR(a.last_kv.resize(b, csa ? m * width : 0));  // [ratio, width] CSA
    DSV4_RETURN_IF_ERROR(a.last_gate.resize(b, csa ? m * width : 0));
    float* out = entries + first * width;  // [n_windows, width]
    DSV4_RETURN_IF_ERROR(b.compressor({kv, gate, w.ape.data(), first > 0 ? prev_kv : nullptr,
                                       first > 0 ? prev_gate : nullptr, out, csa ? a.last_kv.data() : nullptr,
                                       csa ? a.last_gate.data() : nullptr, n_windows, m, width, c.n_series}));
    DSV4_RETURN_IF_ERROR(b.rms_norm({out, w.norm.data(), out, n_windows, width, float(cfg_.rms_norm_eps)}));
    std::vector<int64_t> positions(static_cast<size_t>(n_windows));  // first source position of each window
    for (int64_t i = 0; i < n_windows; ++i) positions[size_t(i)] = (first + i) * m;
    DSV4_RETURN_IF_ERROR(a.entry_positions.assign(b, positions));
    DSV4_RETURN_IF_ERROR(b.rope({out, a.entry_positions.data(), compress_inv_freq_.data(), n_windows, 1,
                                 width, cfg_.rope_dim, false}));
    if (csa) {
      DSV4_RETURN_IF_ERROR(b.copy(prev_kv, a.last_kv.data(), size_t(m * width) * sizeof(float)));
      DSV4_RETURN_IF_ERROR(b.copy(prev_gate, a.last_gate.data(), size_t(m * width) * sizeof(float)));
    }
  }
  const int64_t used = n_windows * m, rest = total - used;
  DSV4_RETURN_IF_ERROR(b.copy(tail_kv, kv + used * row, size_t(rest * row) * sizeof(float)));
  return b.copy(tail_gate, gate + used * row, size_t(rest * row) * sizeof(float));
}

// Copies rows [first, first + n) of the sliding-window ring (slot = position mod W) to or from
// contiguous rows: at most two runs, as the ring wraps.
static Status ring_copy(Backend& b, float* ring, float* rows, int64_t first, int64_t n, int64_t W, int64_t hd,
                        bool to_ring) {
  for (int64_t p = first; p < first + n;) {
    const int64_t slot = p % W, run = std::min(first + n - p, W - slot);
    float* r = ring + slot * hd;
    float* x = rows + (p - first) * hd;
    DSV4_RETURN_IF_ERROR(to_ring ? b.copy(r, x, size_t(run * hd) * sizeof(float))
                                 : b.copy(x, r, size_t(run * hd) * sizeof(float)));
    p += run;
  }
  return {};
}

// The sequence-dependent part of attention for a prefill chunk, rows [row0, row0 + n_rows) of
// sequence s: update the compressors, choose each query's keys, attend, then store the window
// keys. The key lists are built on the host; for CSA layers that reads the indexer's choice back
// (one synchronisation per CSA layer and sequence).
Status Model::attend_sequence(int64_t layer, const SequenceState& s, int64_t row0, int64_t n_rows, Rows& a) {
  Backend& b = *backend_;
  const LayerWeights& L = layers_[size_t(layer)];
  LayerCache& cache = caches_[size_t(layer)];
  const int64_t H = cfg_.n_heads, hd = cfg_.head_dim, W = cfg_.sliding_window, start = s.n_past();
  const int32_t slot = s.slot_;
  float* ring = cache.kv.data() + slot * (W + cache.entries) * hd;  // the slot's rows: ring, then entries
  float* entries = ring + W * hd;

  if (L.type != AttentionType::kSliding) {
    const int64_t row = cache.compressor.row();
    DSV4_RETURN_IF_ERROR(compress(L.compressor, cache.compressor, slot, start, a.comp_kv.data() + row0 * row,
                                  a.comp_gate.data() + row0 * row, n_rows, entries, a));
  }
  const int64_t n_entries = L.type == AttentionType::kSliding ? 0 : (start + n_rows) / L.ratio;
  const int64_t topk = cfg_.index_topk;
  std::vector<int32_t> selected;  // [n_rows, topk] CSA entries chosen by the indexer
  if (L.type == AttentionType::kCSA) {
    const int64_t nh = cfg_.index_n_heads, ihd = cfg_.index_head_dim;
    float* keys = cache.index_keys.data() + slot * cache.entries * ihd;
    DSV4_RETURN_IF_ERROR(compress(L.indexer_compressor, cache.indexer, slot, start,
                                  a.idx_kv.data() + row0 * 2 * ihd, a.idx_gate.data() + row0 * 2 * ihd,
                                  n_rows, keys, a));
    DSV4_RETURN_IF_ERROR(a.selected.resize(b, n_rows * topk));
    DSV4_RETURN_IF_ERROR(
        b.indexer({a.idx_q.data() + row0 * nh * ihd, a.idx_w.data() + row0 * nh, keys,
                   a.positions.data() + row0, a.selected.data(), n_rows, nh, ihd, n_entries, L.ratio, topk}));
    DSV4_ASSIGN_OR_RETURN(selected, a.selected.download(b));
  }

  // kv pool: cached window rows (positions win_start…start−1), this chunk's rows, compressed entries.
  const int64_t win_start = std::max<int64_t>(0, start - (W - 1));
  const int64_t n_cached = start - win_start;
  const int64_t entries_at = n_cached + n_rows;
  DSV4_RETURN_IF_ERROR(a.pool.resize(b, (entries_at + n_entries) * hd));  // [n_kv, hd]
  DSV4_RETURN_IF_ERROR(ring_copy(b, ring, a.pool.data(), win_start, n_cached, W, hd, false));
  DSV4_RETURN_IF_ERROR(
      b.copy(a.pool.data() + n_cached * hd, a.kv.data() + row0 * hd, size_t(n_rows * hd) * sizeof(float)));
  DSV4_RETURN_IF_ERROR(
      b.copy(a.pool.data() + entries_at * hd, entries, size_t(n_entries * hd) * sizeof(float)));

  // Each query's key rows: its window, then (HCA) all admissible entries or (CSA) the selection.
  const int64_t n_extra = L.type == AttentionType::kHCA   ? n_entries
                          : L.type == AttentionType::kCSA ? topk
                                                          : 0;
  const int64_t n_sel = W + n_extra;
  std::vector<int32_t> kv_idx(size_t(n_rows * n_sel), -1);  // [n_rows, n_sel]
  for (int64_t i = 0; i < n_rows; ++i) {
    const int64_t p = start + i;
    int32_t* idx = kv_idx.data() + i * n_sel;
    for (int64_t k = std::max<int64_t>(0, p - (W - 1)), j = 0; k <= p; ++k, ++j)
      idx[j] = int32_t(k - win_start);
    if (L.type == AttentionType::kHCA) {
      const int64_t admissible = (p + 1) / L.ratio;
      for (int64_t e = 0; e < std::min(admissible, n_entries); ++e) idx[W + e] = int32_t(entries_at + e);
    } else if (L.type == AttentionType::kCSA) {
      for (int64_t j = 0; j < topk; ++j) {
        const int32_t e = selected[size_t(i * topk + j)];
        if (e >= 0) idx[W + j] = int32_t(entries_at + e);
      }
    }
  }
  DSV4_RETURN_IF_ERROR(a.kv_idx.assign(b, kv_idx));
  DSV4_RETURN_IF_ERROR(b.attention({a.q.data() + row0 * H * hd, a.pool.data(), a.kv_idx.data(),
                                    L.attn_sink.data(), a.o.data() + row0 * H * hd, n_rows, H, hd,
                                    entries_at + n_entries, n_sel, 1.0f / std::sqrt(float(hd))}));

  // Store this chunk's keys in the ring; only its last W rows survive there.
  const int64_t kept = std::min(n_rows, W);
  return ring_copy(b, ring, a.kv.data() + (row0 + n_rows - kept) * hd, start + n_rows - kept, kept, W, hd,
                   true);
}

// The sequence-dependent part of attention for a decode step (every row a sequence's next token),
// all of it from device data: compressors and indexer step in the cache pool, then each query
// attends the pool rows kv_cache_decode lists.
Status Model::attend_decode(int64_t layer, Rows& a) {
  Backend& b = *backend_;
  const LayerWeights& L = layers_[size_t(layer)];
  LayerCache& cache = caches_[size_t(layer)];
  const int64_t n = a.n, H = cfg_.n_heads, hd = cfg_.head_dim, W = cfg_.sliding_window;
  const int64_t rows_per_slot = W + cache.entries;
  const auto compress_step = [&](const CompressorWeights& w, CompressorCache& c, const float* kv,
                                 const float* gate, float* entries, int64_t entry_stride,
                                 int64_t entry_offset) {
    return b.compressor_decode({kv,
                                gate,
                                w.ape.data(),
                                w.norm.data(),
                                compress_inv_freq_.data(),
                                a.slots.data(),
                                a.positions.data(),
                                c.tail_kv.data(),
                                c.tail_gate.data(),
                                c.prev_kv.data(),
                                c.prev_gate.data(),
                                entries,
                                entry_stride,
                                entry_offset,
                                cache.entries,
                                n,
                                cache_n_slots_,
                                c.ratio,
                                c.width,
                                c.n_series,
                                cfg_.rope_dim,
                                float(cfg_.rms_norm_eps)});
  };
  if (L.type != AttentionType::kSliding)
    DSV4_RETURN_IF_ERROR(compress_step(L.compressor, cache.compressor, a.comp_kv.data(), a.comp_gate.data(),
                                       cache.kv.data(), rows_per_slot, W));
  const int64_t topk = cfg_.index_topk;
  if (L.type == AttentionType::kCSA) {
    const int64_t nh = cfg_.index_n_heads, ihd = cfg_.index_head_dim;
    DSV4_RETURN_IF_ERROR(compress_step(L.indexer_compressor, cache.indexer, a.idx_kv.data(),
                                       a.idx_gate.data(), cache.index_keys.data(), cache.entries, 0));
    DSV4_RETURN_IF_ERROR(a.selected.resize(b, n * topk));
    IndexerParams ip{a.idx_q.data(),
                     a.idx_w.data(),
                     cache.index_keys.data(),
                     a.positions.data(),
                     a.selected.data(),
                     n,
                     nh,
                     ihd,
                     cache.entries,
                     L.ratio,
                     topk};
    ip.slots = a.slots.data();
    DSV4_RETURN_IF_ERROR(b.indexer(ip));
  }
  const int64_t n_listed = L.type == AttentionType::kHCA   ? cache.entries
                           : L.type == AttentionType::kCSA ? topk
                                                           : 0;
  DSV4_RETURN_IF_ERROR(a.kv_idx.resize(b, n * (W + n_listed)));
  DSV4_RETURN_IF_ERROR(b.kv_cache_decode({a.kv.data(), a.slots.data(), a.positions.data(),
                                          L.type == AttentionType::kCSA ? a.selected.data() : nullptr,
                                          cache.kv.data(), a.kv_idx.data(), n, cache_n_slots_, rows_per_slot,
                                          hd, W, L.type == AttentionType::kHCA ? L.ratio : 0, n_listed}));
  return b.attention({a.q.data(), cache.kv.data(), a.kv_idx.data(), L.attn_sink.data(), a.o.data(), n, H, hd,
                      cache_n_slots_ * rows_per_slot, W + n_listed, 1.0f / std::sqrt(float(hd))});
}

// MoE (spec §4.4): router, routed experts, shared expert; out = routed + shared. The shared
// expert needs no routing, so it runs beside the router and the routed experts, whose combine adds
// its output (MoeExpertsParams::addend waits for the branch).
Status Model::moe(int64_t layer, Rows& a, const float* x, float* out) {
  Backend& b = *backend_;
  const LayerWeights& L = layers_[size_t(layer)];
  const int64_t n = a.n, D = cfg_.d_model, E = cfg_.n_routed_experts, k = cfg_.n_experts_per_token;
  DSV4_RETURN_IF_ERROR(a.expert_ids.resize(b, n * k));      // [n, k]
  DSV4_RETURN_IF_ERROR(a.expert_weights.resize(b, n * k));  // [n, k]
  DSV4_RETURN_IF_ERROR(a.expert_counts.resize(b, E));       // [E]
  const auto routed = [&](const float* shared_out) -> Status {
    MoeRouterParams rp;
    rp.x = x;
    rp.gate = L.gate;
    rp.bias = L.hash ? nullptr : L.gate_bias.data();
    rp.tid2eid = L.hash ? L.tid2eid.data() : nullptr;
    rp.token_ids = a.tokens.data();
    rp.expert_ids = a.expert_ids.data();
    rp.weights = a.expert_weights.data();
    rp.counts = a.expert_counts.data();
    rp.n_tokens = n;
    rp.d_model = D;
    rp.n_experts = E;
    rp.top_k = k;
    rp.vocab_size = cfg_.vocab_size;
    rp.routed_scaling_factor = float(cfg_.routed_scaling_factor);
    DSV4_RETURN_IF_ERROR(b.moe_router(rp));
    return b.moe_experts({x, a.expert_ids.data(), a.expert_weights.data(), L.experts.data(), out, n, D,
                          cfg_.moe_intermediate, E, k, float(cfg_.swiglu_limit), a.expert_counts.data(),
                          shared_out});
  };
  if (L.shared.empty()) return routed(nullptr);

  if (a.shared_ids.size() < n) {  // only grows: a recorded decode step must not upload
    DSV4_RETURN_IF_ERROR(a.shared_ids.assign(b, std::vector<int32_t>(size_t(n), 0)));
    DSV4_RETURN_IF_ERROR(a.shared_weights.assign(b, std::vector<float>(size_t(n), 1.0f)));
  }
  DSV4_RETURN_IF_ERROR(a.shared_out.resize(b, n * D));  // [n, D]
  const auto shared = [&]() -> Status {
    return b.moe_experts({x, a.shared_ids.data(), a.shared_weights.data(), L.shared.data(),
                          a.shared_out.data(), n, D, cfg_.moe_intermediate * cfg_.n_shared_experts, 1, 1,
                          float(cfg_.swiglu_limit)});
  };
  return run_beside(b, shared, [&] { return routed(a.shared_out.data()); });
}

}  // namespace dsv4
