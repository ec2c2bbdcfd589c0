// The DeepSeek-V4 forward over a batch of sequence chunks. Token-wise work (projections, norms,
// mHC, MoE) runs once over all rows of the batch; the sequence-dependent part of attention
// (window, compressors, indexer, key selection) runs per sequence against its state.
#include "model/model.h"

#include <algorithm>
#include <cmath>
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

}  // namespace

// The activations of one forward call; rows are the batch's tokens in chunk order.
struct Model::Rows {
  int64_t n = 0;                 // rows in the batch
  std::vector<int64_t> positions;  // [n]
  std::vector<int32_t> tokens;     // [n]
  std::vector<float> h;            // [n, hc_mult, D] residual streams
  // Per-layer attention intermediates (named as in spec §4.2).
  std::vector<float> x;            // [n, D] collapsed + attn_norm
  std::vector<float> qr;           // [n, q_lora_rank]
  std::vector<float> q;            // [n, H, head_dim]
  std::vector<float> kv;           // [n, head_dim]
  std::vector<float> comp_kv, comp_gate;  // [n, n_series·head_dim]
  std::vector<float> idx_kv, idx_gate;    // [n, 2·index_head_dim]
  std::vector<float> idx_q;               // [n, index_n_heads, index_head_dim]
  std::vector<float> idx_w;               // [n, index_n_heads]
  std::vector<float> o;                   // [n, H, head_dim] attention output
};

Result<std::unique_ptr<Model>> Model::load(const std::string& dir, std::unique_ptr<Backend> backend) {
  std::unique_ptr<Model> m(new Model());
  DSV4_ASSIGN_OR_RETURN(m->cfg_, load_config(dir));
  DSV4_RETURN_IF_ERROR(m->cfg_.validate().with_context(dir + "/config.json"));
  if (m->cfg_.n_heads % m->cfg_.o_groups)
    return Status::errorf("{}/config.json: num_attention_heads {} not divisible by o_groups {}", dir, m->cfg_.n_heads,
                          m->cfg_.o_groups);
  DSV4_ASSIGN_OR_RETURN(Checkpoint ckpt, Checkpoint::open(dir));
  m->ckpt_ = std::make_unique<Checkpoint>(std::move(ckpt));
  m->weights_ = WeightMap::build(m->cfg_, *m->ckpt_);
  DSV4_RETURN_IF_ERROR(m->weights_.status().with_context(dir + ": weights disagree with config.json"));
  m->backend_ = std::move(backend);
  DSV4_RETURN_IF_ERROR(m->load_weights());
  return m;
}

Status Model::load_weights() {
  const auto plain = [&](const std::string& name) { return plain_to_f32(*weights_.plain(name)->tensor); };
  const auto lin = [&](const std::string& base) { return weights_.linear(base)->view; };
  const auto hc = [&](const std::string& p, bool head) {
    const std::string s = head ? "" : "_";
    return HcWeights{plain(p + s + "fn"), plain(p + s + "base"), plain(p + s + "scale")};
  };
  const auto compressor = [&](const std::string& p) {
    return CompressorWeights{lin(p + "wkv"), lin(p + "wgate"), plain(p + "ape"), plain(p + "norm.weight")};
  };
  embed_ = plain_view(*weights_.plain("embed.weight")->tensor);
  head_ = plain_view(*weights_.plain("head.weight")->tensor);
  final_norm_ = plain("norm.weight");
  hc_head_ = hc("hc_head_", true);
  main_inv_freq_ = rope_inv_freq(cfg_, false);
  compress_inv_freq_ = rope_inv_freq(cfg_, true);
  layers_.resize(size_t(cfg_.n_layers));
  for (int64_t i = 0; i < cfg_.n_layers; ++i) {
    LayerWeights& L = layers_[size_t(i)];
    const std::string p = "layers." + std::to_string(i) + ".";
    L.type = cfg_.attention_type(i);
    L.ratio = cfg_.compress_ratio(i);
    L.hash = cfg_.is_hash_layer(i);
    L.attn_norm = plain(p + "attn_norm.weight");
    L.ffn_norm = plain(p + "ffn_norm.weight");
    L.hc_attn = hc(p + "hc_attn", false);
    L.hc_ffn = hc(p + "hc_ffn", false);
    L.attn_sink = plain(p + "attn.attn_sink");
    L.q_norm = plain(p + "attn.q_norm.weight");
    L.kv_norm = plain(p + "attn.kv_norm.weight");
    L.wq_a = lin(p + "attn.wq_a");
    L.wq_b = lin(p + "attn.wq_b");
    L.wkv = lin(p + "attn.wkv");
    L.wo_a = lin(p + "attn.wo_a");
    L.wo_b = lin(p + "attn.wo_b");
    if (L.type != AttentionType::kSliding) L.compressor = compressor(p + "attn.compressor.");
    if (L.type == AttentionType::kCSA) {
      L.indexer_compressor = compressor(p + "attn.indexer.compressor.");
      L.indexer_wq_b = lin(p + "attn.indexer.wq_b");
      L.indexer_weights_proj = lin(p + "attn.indexer.weights_proj");
    }
    L.gate = lin(p + "ffn.gate");
    if (L.hash)
      L.tid2eid = plain_to_i64(*weights_.plain(p + "ffn.gate.tid2eid")->tensor);
    else
      L.gate_bias = plain(p + "ffn.gate.bias");
    for (int64_t e = 0; e < cfg_.n_routed_experts; ++e) {
      const std::string x = p + "ffn.experts." + std::to_string(e) + ".";
      L.experts.push_back({lin(x + "w1"), lin(x + "w3"), lin(x + "w2")});
    }
    if (cfg_.n_shared_experts > 0)
      L.shared.push_back(
          {lin(p + "ffn.shared_experts.w1"), lin(p + "ffn.shared_experts.w3"), lin(p + "ffn.shared_experts.w2")});
  }
  return {};
}

SequenceState Model::new_state() const {
  SequenceState s;
  s.layers_.resize(size_t(cfg_.n_layers));
  for (int64_t i = 0; i < cfg_.n_layers; ++i) {
    LayerState& l = s.layers_[size_t(i)];
    l.window.assign(size_t(cfg_.sliding_window * cfg_.head_dim), 0.0f);
    const AttentionType type = cfg_.attention_type(i);
    if (type == AttentionType::kSliding) continue;
    l.compressor.ratio = cfg_.compress_ratio(i);
    l.compressor.width = cfg_.head_dim;
    l.compressor.n_series = type == AttentionType::kCSA ? 2 : 1;
    if (type == AttentionType::kCSA) {
      l.indexer.ratio = cfg_.compress_ratio(i);
      l.indexer.width = cfg_.index_head_dim;
      l.indexer.n_series = 2;
    }
  }
  return s;
}

Status Model::check_batch(std::span<const SequenceChunk> batch) const {
  if (batch.empty()) return Status::error("forward: empty batch; expected at least one sequence chunk");
  std::set<const SequenceState*> seen;
  for (size_t b = 0; b < batch.size(); ++b) {
    const SequenceChunk& c = batch[b];
    if (!c.state) return Status::errorf("forward: chunk {} has no sequence state", b);
    if (c.state->layers_.size() != size_t(cfg_.n_layers))
      return Status::errorf("forward: chunk {}: state has {} layers; expected {} (use Model::new_state)", b,
                            c.state->layers_.size(), cfg_.n_layers);
    if (!seen.insert(c.state).second)
      return Status::errorf("forward: chunk {}: its sequence state appears twice in one batch", b);
    if (c.tokens.empty()) return Status::errorf("forward: chunk {} is empty; expected at least one token", b);
    for (size_t i = 0; i < c.tokens.size(); ++i)
      if (c.tokens[i] < 0 || c.tokens[i] >= cfg_.vocab_size)
        return Status::errorf("forward: chunk {}: token {} has id {}; expected 0 <= id < {}", b, i, c.tokens[i],
                              cfg_.vocab_size);
    if (c.state->n_past() + int64_t(c.tokens.size()) > cfg_.max_position)
      return Status::errorf("forward: chunk {}: positions up to {}; expected below max_position_embeddings {}", b,
                            c.state->n_past() + int64_t(c.tokens.size()) - 1, cfg_.max_position);
  }
  return {};
}

Result<std::vector<float>> Model::forward(std::span<const SequenceChunk> batch) {
  DSV4_RETURN_IF_ERROR(check_batch(batch));
  const int64_t D = cfg_.d_model, n_hc = cfg_.hc_mult, V = cfg_.vocab_size;
  const float eps = float(cfg_.rms_norm_eps);
  Rows a;
  for (const SequenceChunk& c : batch) {
    for (size_t i = 0; i < c.tokens.size(); ++i) {
      a.positions.push_back(c.state->n_past() + int64_t(i));
      a.tokens.push_back(c.tokens[i]);
    }
  }
  a.n = int64_t(a.tokens.size());

  // Embedding, then four identical streams.
  std::vector<float> embedded(size_t(a.n * D));  // [n, D]
  DSV4_RETURN_IF_ERROR(backend_->embedding({a.tokens.data(), embed_, embedded.data(), a.n}));
  a.h.resize(size_t(a.n * n_hc * D));
  for (int64_t t = 0; t < a.n; ++t)
    for (int64_t j = 0; j < n_hc; ++j) std::copy_n(embedded.data() + t * D, D, a.h.data() + (t * n_hc + j) * D);

  for (int64_t layer = 0; layer < cfg_.n_layers; ++layer) DSV4_RETURN_IF_ERROR(block(layer, batch, a));

  // Hyper-head, final norm, LM head.
  std::vector<float> z(size_t(a.n * D));  // [n, D]
  DSV4_RETURN_IF_ERROR(backend_->hyper_head({a.h.data(), hc_head_.fn.data(), hc_head_.base.data(),
                                             hc_head_.scale.data(), z.data(), a.n, n_hc, D, eps,
                                             float(cfg_.hc_eps)}));
  DSV4_RETURN_IF_ERROR(backend_->rms_norm({z.data(), final_norm_.data(), z.data(), a.n, D, eps}));
  // Rows that need logits: every token, or a chunk's last with last_logits_only.
  std::vector<float> z_out;  // [n_out, D]
  int64_t row = 0;
  for (const SequenceChunk& c : batch) {
    const int64_t len = int64_t(c.tokens.size());
    const int64_t first = c.last_logits_only ? row + len - 1 : row;
    z_out.insert(z_out.end(), z.begin() + first * D, z.begin() + (row + len) * D);
    row += len;
  }
  const int64_t n_out = int64_t(z_out.size()) / D;
  std::vector<float> logits(size_t(n_out * V));  // [n_out, vocab]
  DSV4_RETURN_IF_ERROR(backend_->linear({z_out.data(), head_, logits.data(), n_out}));

  for (const SequenceChunk& c : batch) c.state->n_past_ += int64_t(c.tokens.size());
  return logits;
}

// One decoder block (spec §4): mHC pre → attn_norm → attention → mHC post, then the same around
// the MoE.
Status Model::block(int64_t layer, std::span<const SequenceChunk> batch, Rows& a) {
  const LayerWeights& L = layers_[size_t(layer)];
  const int64_t D = cfg_.d_model, n_hc = cfg_.hc_mult;
  const float eps = float(cfg_.rms_norm_eps), hc_eps = float(cfg_.hc_eps);
  std::vector<float> post(size_t(a.n * n_hc)), comb(size_t(a.n * n_hc * n_hc));  // [n, n_hc], [n, n_hc, n_hc]
  std::vector<float> h_next(a.h.size());                                        // [n, n_hc, D]
  a.x.resize(size_t(a.n * D));

  const auto hc_pre = [&](const HcWeights& w, const std::vector<float>& norm) -> Status {
    DSV4_RETURN_IF_ERROR(backend_->mhc_pre({a.h.data(), w.fn.data(), w.base.data(), w.scale.data(), a.x.data(),
                                            post.data(), comb.data(), a.n, n_hc, D, cfg_.hc_sinkhorn_iters, eps,
                                            hc_eps}));
    return backend_->rms_norm({a.x.data(), norm.data(), a.x.data(), a.n, D, eps});
  };
  const auto hc_post = [&](const std::vector<float>& y) -> Status {
    DSV4_RETURN_IF_ERROR(
        backend_->mhc_post({y.data(), a.h.data(), post.data(), comb.data(), h_next.data(), a.n, n_hc, D}));
    a.h.swap(h_next);
    return {};
  };

  DSV4_RETURN_IF_ERROR(hc_pre(L.hc_attn, L.attn_norm));
  std::vector<float> attn_out;  // [n, D]
  DSV4_RETURN_IF_ERROR(attention_block(layer, batch, a, attn_out));
  DSV4_RETURN_IF_ERROR(hc_post(attn_out));

  DSV4_RETURN_IF_ERROR(hc_pre(L.hc_ffn, L.ffn_norm));
  std::vector<float> ffn_out;  // [n, D]
  DSV4_RETURN_IF_ERROR(moe(layer, a, a.x, ffn_out));
  return hc_post(ffn_out);
}

// Attention of one layer (spec §4.2) for every row of the batch; a.x is the normed input.
Status Model::attention_block(int64_t layer, std::span<const SequenceChunk> batch, Rows& a, std::vector<float>& out) {
  const LayerWeights& L = layers_[size_t(layer)];
  const int64_t n = a.n, D = cfg_.d_model, H = cfg_.n_heads, hd = cfg_.head_dim, r = cfg_.rope_dim;
  const float eps = float(cfg_.rms_norm_eps);
  const std::vector<float>& inv_freq = L.type == AttentionType::kSliding ? main_inv_freq_ : compress_inv_freq_;

  // Query path: qr = q_norm(x·W_qaᵀ); q = per-head rms(qr·W_qbᵀ); RoPE.
  a.qr.resize(size_t(n * cfg_.q_lora_rank));
  DSV4_RETURN_IF_ERROR(backend_->linear({a.x.data(), L.wq_a, a.qr.data(), n}));
  DSV4_RETURN_IF_ERROR(backend_->rms_norm({a.qr.data(), L.q_norm.data(), a.qr.data(), n, cfg_.q_lora_rank, eps}));
  a.q.resize(size_t(n * H * hd));
  DSV4_RETURN_IF_ERROR(backend_->linear({a.qr.data(), L.wq_b, a.q.data(), n}));
  DSV4_RETURN_IF_ERROR(backend_->rms_norm({a.q.data(), nullptr, a.q.data(), n * H, hd, eps}));
  DSV4_RETURN_IF_ERROR(backend_->rope({a.q.data(), a.positions.data(), inv_freq.data(), n, H, hd, r, false}));

  // Shared K=V: kv = kv_norm(x·W_kvᵀ); RoPE.
  a.kv.resize(size_t(n * hd));
  DSV4_RETURN_IF_ERROR(backend_->linear({a.x.data(), L.wkv, a.kv.data(), n}));
  DSV4_RETURN_IF_ERROR(backend_->rms_norm({a.kv.data(), L.kv_norm.data(), a.kv.data(), n, hd, eps}));
  DSV4_RETURN_IF_ERROR(backend_->rope({a.kv.data(), a.positions.data(), inv_freq.data(), n, 1, hd, r, false}));

  // Compressor projections (all rows); the pooling itself is per sequence.
  if (L.type != AttentionType::kSliding) {
    a.comp_kv.resize(size_t(n * L.compressor.wkv.rows));
    a.comp_gate.resize(size_t(n * L.compressor.wgate.rows));
    DSV4_RETURN_IF_ERROR(backend_->linear({a.x.data(), L.compressor.wkv, a.comp_kv.data(), n}));
    DSV4_RETURN_IF_ERROR(backend_->linear({a.x.data(), L.compressor.wgate, a.comp_gate.data(), n}));
  }
  // Indexer projections: its compressor, queries from qr (RoPE'd), head weights from x.
  if (L.type == AttentionType::kCSA) {
    const int64_t nh = cfg_.index_n_heads, ihd = cfg_.index_head_dim;
    a.idx_kv.resize(size_t(n * 2 * ihd));
    a.idx_gate.resize(size_t(n * 2 * ihd));
    a.idx_q.resize(size_t(n * nh * ihd));
    a.idx_w.resize(size_t(n * nh));
    DSV4_RETURN_IF_ERROR(backend_->linear({a.x.data(), L.indexer_compressor.wkv, a.idx_kv.data(), n}));
    DSV4_RETURN_IF_ERROR(backend_->linear({a.x.data(), L.indexer_compressor.wgate, a.idx_gate.data(), n}));
    DSV4_RETURN_IF_ERROR(backend_->linear({a.qr.data(), L.indexer_wq_b, a.idx_q.data(), n}));
    DSV4_RETURN_IF_ERROR(
        backend_->rope({a.idx_q.data(), a.positions.data(), compress_inv_freq_.data(), n, nh, ihd, r, false}));
    DSV4_RETURN_IF_ERROR(backend_->linear({a.x.data(), L.indexer_weights_proj, a.idx_w.data(), n}));
  }

  a.o.resize(size_t(n * H * hd));
  int64_t row0 = 0;
  for (const SequenceChunk& c : batch) {
    const int64_t rows = int64_t(c.tokens.size());
    DSV4_RETURN_IF_ERROR(attend_sequence(layer, c.state->layers_[size_t(layer)], row0, rows, c.state->n_past(), a));
    row0 += rows;
  }

  // De-rotate, grouped output projection: u = W_oa[g]·o_g, out = W_ob·u.
  DSV4_RETURN_IF_ERROR(backend_->rope({a.o.data(), a.positions.data(), inv_freq.data(), n, H, hd, r, true}));
  std::vector<float> u(size_t(n * cfg_.o_groups * cfg_.o_lora_rank));  // [n, G, o_lora_rank]
  DSV4_RETURN_IF_ERROR(backend_->grouped_linear({a.o.data(), L.wo_a, u.data(), n, cfg_.o_groups}));
  out.resize(size_t(n * D));
  return backend_->linear({u.data(), L.wo_b, out.data(), n});
}

// Appends n_rows source tokens to a compressor, emits every window they complete (pooled,
// normed, RoPE at the window's first position) and keeps the unfinished tail.
Status Model::compress(const CompressorWeights& w, CompressorState& s, const float* kv, const float* gate,
                       int64_t n_rows) {
  const int64_t row = s.n_series * s.width;
  s.tail_kv.insert(s.tail_kv.end(), kv, kv + n_rows * row);
  s.tail_gate.insert(s.tail_gate.end(), gate, gate + n_rows * row);
  const int64_t n_windows = s.n_tail() / s.ratio;
  if (n_windows == 0) return {};
  const int64_t first = s.n_entries();
  std::vector<float> entries(size_t(n_windows * s.width));  // [n_windows, width]
  std::vector<float> last_kv, last_gate;                    // [ratio, width] CSA
  if (s.n_series == 2) {
    last_kv.resize(size_t(s.ratio * s.width));
    last_gate.resize(size_t(s.ratio * s.width));
  }
  const bool has_prev = !s.prev_kv.empty();
  DSV4_RETURN_IF_ERROR(backend_->compressor({s.tail_kv.data(), s.tail_gate.data(), w.ape.data(),
                                             has_prev ? s.prev_kv.data() : nullptr,
                                             has_prev ? s.prev_gate.data() : nullptr, entries.data(),
                                             last_kv.empty() ? nullptr : last_kv.data(),
                                             last_gate.empty() ? nullptr : last_gate.data(), n_windows, s.ratio,
                                             s.width, s.n_series}));
  DSV4_RETURN_IF_ERROR(
      backend_->rms_norm({entries.data(), w.norm.data(), entries.data(), n_windows, s.width, float(cfg_.rms_norm_eps)}));
  std::vector<int64_t> positions(static_cast<size_t>(n_windows));  // first source position of each window
  for (int64_t b = 0; b < n_windows; ++b) positions[size_t(b)] = (first + b) * s.ratio;
  DSV4_RETURN_IF_ERROR(backend_->rope({entries.data(), positions.data(), compress_inv_freq_.data(), n_windows, 1,
                                       s.width, cfg_.rope_dim, false}));
  s.entries.insert(s.entries.end(), entries.begin(), entries.end());
  const int64_t used = n_windows * s.ratio * row;
  s.tail_kv.erase(s.tail_kv.begin(), s.tail_kv.begin() + used);
  s.tail_gate.erase(s.tail_gate.begin(), s.tail_gate.begin() + used);
  if (s.n_series == 2) {
    s.prev_kv = std::move(last_kv);
    s.prev_gate = std::move(last_gate);
  }
  return {};
}

// The sequence-dependent part of attention for rows [row0, row0 + n_rows) at positions
// start…: update compressors, choose each query's keys, attend, then store the window keys.
Status Model::attend_sequence(int64_t layer, LayerState& ls, int64_t row0, int64_t n_rows, int64_t start, Rows& a) {
  const LayerWeights& L = layers_[size_t(layer)];
  const int64_t H = cfg_.n_heads, hd = cfg_.head_dim, W = cfg_.sliding_window;

  if (L.type != AttentionType::kSliding) {
    const int64_t row = ls.compressor.n_series * hd;
    DSV4_RETURN_IF_ERROR(compress(L.compressor, ls.compressor, a.comp_kv.data() + row0 * row,
                                  a.comp_gate.data() + row0 * row, n_rows));
  }
  const int64_t topk = cfg_.index_topk;
  std::vector<int32_t> selected;  // [n_rows, topk] CSA entries chosen by the indexer
  if (L.type == AttentionType::kCSA) {
    const int64_t nh = cfg_.index_n_heads, ihd = cfg_.index_head_dim;
    DSV4_RETURN_IF_ERROR(compress(L.indexer_compressor, ls.indexer, a.idx_kv.data() + row0 * 2 * ihd,
                                  a.idx_gate.data() + row0 * 2 * ihd, n_rows));
    selected.resize(size_t(n_rows * topk));
    DSV4_RETURN_IF_ERROR(backend_->indexer({a.idx_q.data() + row0 * nh * ihd, a.idx_w.data() + row0 * nh,
                                            ls.indexer.entries.data(), a.positions.data() + row0, selected.data(),
                                            n_rows, nh, ihd, ls.indexer.n_entries(), L.ratio, topk}));
  }

  // kv pool: cached window rows (positions win_start…start−1), this chunk's rows, compressed entries.
  const int64_t win_start = std::max<int64_t>(0, start - (W - 1));
  const int64_t n_cached = start - win_start;
  const int64_t n_entries = ls.compressor.n_entries();
  const int64_t entries_at = n_cached + n_rows;
  std::vector<float> pool(size_t((entries_at + n_entries) * hd));  // [n_kv, hd]
  for (int64_t p = win_start; p < start; ++p)
    std::copy_n(ls.window.data() + (p % W) * hd, hd, pool.data() + (p - win_start) * hd);
  std::copy_n(a.kv.data() + row0 * hd, n_rows * hd, pool.data() + n_cached * hd);
  if (n_entries) std::copy(ls.compressor.entries.begin(), ls.compressor.entries.end(), pool.begin() + entries_at * hd);

  // Each query's key rows: its window, then (HCA) all admissible entries or (CSA) the selection.
  const int64_t n_extra = L.type == AttentionType::kHCA ? n_entries : L.type == AttentionType::kCSA ? topk : 0;
  const int64_t n_sel = W + n_extra;
  std::vector<int32_t> kv_idx(size_t(n_rows * n_sel), -1);  // [n_rows, n_sel]
  for (int64_t i = 0; i < n_rows; ++i) {
    const int64_t p = start + i;
    int32_t* idx = kv_idx.data() + i * n_sel;
    for (int64_t k = std::max<int64_t>(0, p - (W - 1)), j = 0; k <= p; ++k, ++j) idx[j] = int32_t(k - win_start);
    if (L.type == AttentionType::kHCA) {
      const int64_t admissible = (p + 1) / L.ratio;
      for (int64_t s = 0; s < std::min(admissible, n_entries); ++s) idx[W + s] = int32_t(entries_at + s);
    } else if (L.type == AttentionType::kCSA) {
      for (int64_t j = 0; j < topk; ++j) {
        const int32_t s = selected[size_t(i * topk + j)];
        if (s >= 0) idx[W + j] = int32_t(entries_at + s);
      }
    }
  }
  DSV4_RETURN_IF_ERROR(backend_->attention({a.q.data() + row0 * H * hd, pool.data(), kv_idx.data(),
                                            L.attn_sink.data(), a.o.data() + row0 * H * hd, n_rows, H, hd,
                                            entries_at + n_entries, n_sel, 1.0f / std::sqrt(float(hd))}));

  for (int64_t i = 0; i < n_rows; ++i)
    std::copy_n(a.kv.data() + (row0 + i) * hd, hd, ls.window.data() + ((start + i) % W) * hd);
  return {};
}

// MoE (spec §4.4): router, routed experts, shared expert; out = routed + shared.
Status Model::moe(int64_t layer, Rows& a, const std::vector<float>& x, std::vector<float>& out) {
  const LayerWeights& L = layers_[size_t(layer)];
  const int64_t n = a.n, D = cfg_.d_model, E = cfg_.n_routed_experts, k = cfg_.n_experts_per_token;
  std::vector<float> router_logits(size_t(n * E));  // [n, E]
  DSV4_RETURN_IF_ERROR(backend_->linear({x.data(), L.gate, router_logits.data(), n}));
  std::vector<int32_t> expert_ids(size_t(n * k));  // [n, k]
  std::vector<float> expert_weights(size_t(n * k));  // [n, k]
  MoeRouterParams rp;
  rp.logits = router_logits.data();
  rp.bias = L.hash ? nullptr : L.gate_bias.data();
  rp.tid2eid = L.hash ? L.tid2eid.data() : nullptr;
  rp.token_ids = a.tokens.data();
  rp.expert_ids = expert_ids.data();
  rp.weights = expert_weights.data();
  rp.n_tokens = n;
  rp.n_experts = E;
  rp.top_k = k;
  rp.vocab_size = cfg_.vocab_size;
  rp.routed_scaling_factor = float(cfg_.routed_scaling_factor);
  DSV4_RETURN_IF_ERROR(backend_->moe_router(rp));

  out.resize(size_t(n * D));
  DSV4_RETURN_IF_ERROR(backend_->moe_experts({x.data(), expert_ids.data(), expert_weights.data(), L.experts.data(),
                                              out.data(), n, D, cfg_.moe_intermediate, E, k,
                                              float(cfg_.swiglu_limit)}));
  if (L.shared.empty()) return {};
  std::vector<int32_t> shared_ids(size_t(n), 0);
  std::vector<float> shared_weights(size_t(n), 1.0f);
  std::vector<float> shared_out(size_t(n * D));  // [n, D]
  DSV4_RETURN_IF_ERROR(backend_->moe_experts({x.data(), shared_ids.data(), shared_weights.data(), L.shared.data(),
                                              shared_out.data(), n, D, cfg_.moe_intermediate * cfg_.n_shared_experts,
                                              1, 1, float(cfg_.swiglu_limit)}));
  for (int64_t i = 0; i < n * D; ++i) out[size_t(i)] += shared_out[size_t(i)];
  return {};
}

}  // namespace dsv4
