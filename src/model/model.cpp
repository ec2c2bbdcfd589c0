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

// The activations of one forward call, in backend memory; rows are the batch's tokens in chunk
// order. Kept by the model between calls so that a step of the same shape reuses every buffer.
struct Model::Rows {
  int64_t n = 0;                    // rows in the batch
  BackendArray<int64_t> positions;  // [n]
  BackendArray<int32_t> tokens;     // [n]
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
  // Per sequence (reused sequence after sequence, in stream order).
  BackendArray<float> pool;                // [n_kv, head_dim] keys one sequence's queries may see
  BackendArray<int32_t> kv_idx;            // [n_rows, n_sel]
  BackendArray<int32_t> selected;          // [n_rows, index_topk]
  BackendArray<float> new_entries;         // [n_windows, width] a compressor's emissions
  BackendArray<float> last_kv, last_gate;  // [ratio, width] CSA's newest closed window
  BackendArray<int64_t> entry_positions;   // [n_windows]
  // MoE.
  BackendArray<float> router_logits;   // [n, E]
  BackendArray<int32_t> expert_ids;    // [n, k]
  BackendArray<float> expert_weights;  // [n, k]
  BackendArray<int32_t> shared_ids;    // [n] all 0
  BackendArray<float> shared_weights;  // [n] all 1
  BackendArray<float> shared_out;      // [n, D]
  // Head.
  BackendArray<float> z, z_out;  // [n, D], [n_out, D]
  BackendArray<float> logits;    // [n_out, vocab]
};

Model::Model() : rows_(std::make_unique<Rows>()) {}
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
  const auto lin = [&](WeightView& dst, const std::string& base, bool exact = false) -> Status {
    DSV4_ASSIGN_OR_RETURN(dst, b.upload_linear_weight(weights_.linear(base)->view, exact));
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
  DSV4_ASSIGN_OR_RETURN(head_,
                        b.upload_linear_weight(plain_view(*weights_.plain("head.weight")->tensor), false));
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
    // wo_a feeds grouped_linear, which reads the canonical layout.
    DSV4_ASSIGN_OR_RETURN(L.wo_a, b.upload_weight(weights_.linear(p + "attn.wo_a")->view));
    DSV4_RETURN_IF_ERROR(lin(L.wo_b, p + "attn.wo_b"));
    if (L.type != AttentionType::kSliding)
      DSV4_RETURN_IF_ERROR(compressor(L.compressor, p + "attn.compressor."));
    if (L.type == AttentionType::kCSA) {
      DSV4_RETURN_IF_ERROR(compressor(L.indexer_compressor, p + "attn.indexer.compressor."));
      DSV4_RETURN_IF_ERROR(lin(L.indexer_wq_b, p + "attn.indexer.wq_b"));
      DSV4_RETURN_IF_ERROR(lin(L.indexer_weights_proj, p + "attn.indexer.weights_proj"));
    }
    DSV4_RETURN_IF_ERROR(lin(L.gate, p + "ffn.gate", /*exact=*/true));
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
  s.layers_.resize(size_t(cfg_.n_layers));
  for (int64_t i = 0; i < cfg_.n_layers; ++i) {
    LayerState& l = s.layers_[size_t(i)];
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
  const int64_t D = cfg_.d_model, n_hc = cfg_.hc_mult, V = cfg_.vocab_size;
  const float eps = float(cfg_.rms_norm_eps);
  Rows& a = *rows_;
  std::vector<int64_t> positions;
  std::vector<int32_t> tokens;
  for (const SequenceChunk& c : batch) {
    for (size_t i = 0; i < c.tokens.size(); ++i) {
      positions.push_back(c.state->n_past() + int64_t(i));
      tokens.push_back(c.tokens[i]);
    }
    // A state's window ring is allocated by its first forward (new_state cannot fail).
    for (LayerState& l : c.state->layers_)
      if (l.window.empty()) DSV4_RETURN_IF_ERROR(l.window.resize(b, cfg_.sliding_window * cfg_.head_dim));
  }
  a.n = int64_t(tokens.size());
  DSV4_RETURN_IF_ERROR(a.positions.assign(b, positions));
  DSV4_RETURN_IF_ERROR(a.tokens.assign(b, tokens));

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
  DSV4_RETURN_IF_ERROR(b.linear({z_rows, head_, a.logits.data(), n_out}));
  DSV4_ASSIGN_OR_RETURN(std::vector<float> logits, a.logits.download(b));

  for (const SequenceChunk& c : batch) c.state->n_past_ += int64_t(c.tokens.size());
  return logits;
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

  // Query path: qr = q_norm(x·W_qaᵀ); q = per-head rms(qr·W_qbᵀ); RoPE.
  DSV4_RETURN_IF_ERROR(a.qr.resize(b, n * cfg_.q_lora_rank));
  DSV4_RETURN_IF_ERROR(b.linear({a.x.data(), L.wq_a, a.qr.data(), n}));
  DSV4_RETURN_IF_ERROR(b.rms_norm({a.qr.data(), L.q_norm.data(), a.qr.data(), n, cfg_.q_lora_rank, eps}));
  DSV4_RETURN_IF_ERROR(a.q.resize(b, n * H * hd));
  DSV4_RETURN_IF_ERROR(b.linear({a.qr.data(), L.wq_b, a.q.data(), n}));
  DSV4_RETURN_IF_ERROR(b.rms_norm({a.q.data(), nullptr, a.q.data(), n * H, hd, eps}));
  DSV4_RETURN_IF_ERROR(b.rope({a.q.data(), a.positions.data(), inv_freq, n, H, hd, r, false}));

  // Shared K=V: kv = kv_norm(x·W_kvᵀ); RoPE.
  DSV4_RETURN_IF_ERROR(a.kv.resize(b, n * hd));
  DSV4_RETURN_IF_ERROR(b.linear({a.x.data(), L.wkv, a.kv.data(), n}));
  DSV4_RETURN_IF_ERROR(b.rms_norm({a.kv.data(), L.kv_norm.data(), a.kv.data(), n, hd, eps}));
  DSV4_RETURN_IF_ERROR(b.rope({a.kv.data(), a.positions.data(), inv_freq, n, 1, hd, r, false}));

  // Compressor projections (all rows); the pooling itself is per sequence.
  if (L.type != AttentionType::kSliding) {
    DSV4_RETURN_IF_ERROR(a.comp_kv.resize(b, n * L.compressor.wkv.rows));
    DSV4_RETURN_IF_ERROR(a.comp_gate.resize(b, n * L.compressor.wgate.rows));
    DSV4_RETURN_IF_ERROR(b.linear({a.x.data(), L.compressor.wkv, a.comp_kv.data(), n}));
    DSV4_RETURN_IF_ERROR(b.linear({a.x.data(), L.compressor.wgate, a.comp_gate.data(), n}));
  }
  // Indexer projections: its compressor, queries from qr (RoPE'd), head weights from x.
  if (L.type == AttentionType::kCSA) {
    const int64_t nh = cfg_.index_n_heads, ihd = cfg_.index_head_dim;
    DSV4_RETURN_IF_ERROR(a.idx_kv.resize(b, n * 2 * ihd));
    DSV4_RETURN_IF_ERROR(a.idx_gate.resize(b, n * 2 * ihd));
    DSV4_RETURN_IF_ERROR(a.idx_q.resize(b, n * nh * ihd));
    DSV4_RETURN_IF_ERROR(a.idx_w.resize(b, n * nh));
    DSV4_RETURN_IF_ERROR(b.linear({a.x.data(), L.indexer_compressor.wkv, a.idx_kv.data(), n}));
    DSV4_RETURN_IF_ERROR(b.linear({a.x.data(), L.indexer_compressor.wgate, a.idx_gate.data(), n}));
    DSV4_RETURN_IF_ERROR(b.linear({a.qr.data(), L.indexer_wq_b, a.idx_q.data(), n}));
    DSV4_RETURN_IF_ERROR(
        b.rope({a.idx_q.data(), a.positions.data(), compress_inv_freq_.data(), n, nh, ihd, r, false}));
    DSV4_RETURN_IF_ERROR(b.linear({a.x.data(), L.indexer_weights_proj, a.idx_w.data(), n}));
  }

  DSV4_RETURN_IF_ERROR(a.o.resize(b, n * H * hd));
  int64_t row0 = 0;
  for (const SequenceChunk& c : batch) {
    const int64_t rows = int64_t(c.tokens.size());
    DSV4_RETURN_IF_ERROR(
        attend_sequence(layer, c.state->layers_[size_t(layer)], row0, rows, c.state->n_past(), a));
    row0 += rows;
  }

  // De-rotate, grouped output projection: u = W_oa[g]·o_g, y = W_ob·u.
  DSV4_RETURN_IF_ERROR(b.rope({a.o.data(), a.positions.data(), inv_freq, n, H, hd, r, true}));
  DSV4_RETURN_IF_ERROR(a.u.resize(b, n * cfg_.o_groups * cfg_.o_lora_rank));
  DSV4_RETURN_IF_ERROR(b.grouped_linear({a.o.data(), L.wo_a, a.u.data(), n, cfg_.o_groups}));
  return b.linear({a.u.data(), L.wo_b, a.y.data(), n});
}

// Appends n_rows source tokens to a compressor, emits every window they complete (pooled,
// normed, RoPE at the window's first position) and keeps the unfinished tail.
Status Model::compress(const CompressorWeights& w, CompressorState& s, const float* kv, const float* gate,
                       int64_t n_rows, Rows& a) {
  Backend& b = *backend_;
  const int64_t row = s.n_series * s.width;
  DSV4_RETURN_IF_ERROR(s.tail_kv.append(b, kv, n_rows * row));
  DSV4_RETURN_IF_ERROR(s.tail_gate.append(b, gate, n_rows * row));
  const int64_t n_windows = s.n_tail() / s.ratio;
  if (n_windows == 0) return {};
  const int64_t first = s.n_entries();
  DSV4_RETURN_IF_ERROR(a.new_entries.resize(b, n_windows * s.width));  // [n_windows, width]
  const bool csa = s.n_series == 2;
  DSV4_RETURN_IF_ERROR(a.last_kv.resize(b, csa ? s.ratio * s.width : 0));  // [ratio, width] CSA
  DSV4_RETURN_IF_ERROR(a.last_gate.resize(b, csa ? s.ratio * s.width : 0));
  const bool has_prev = !s.prev_kv.empty();
  DSV4_RETURN_IF_ERROR(b.compressor(
      {s.tail_kv.data(), s.tail_gate.data(), w.ape.data(), has_prev ? s.prev_kv.data() : nullptr,
       has_prev ? s.prev_gate.data() : nullptr, a.new_entries.data(), csa ? a.last_kv.data() : nullptr,
       csa ? a.last_gate.data() : nullptr, n_windows, s.ratio, s.width, s.n_series}));
  DSV4_RETURN_IF_ERROR(b.rms_norm({a.new_entries.data(), w.norm.data(), a.new_entries.data(), n_windows,
                                   s.width, float(cfg_.rms_norm_eps)}));
  std::vector<int64_t> positions(static_cast<size_t>(n_windows));  // first source position of each window
  for (int64_t i = 0; i < n_windows; ++i) positions[size_t(i)] = (first + i) * s.ratio;
  DSV4_RETURN_IF_ERROR(a.entry_positions.assign(b, positions));
  DSV4_RETURN_IF_ERROR(b.rope({a.new_entries.data(), a.entry_positions.data(), compress_inv_freq_.data(),
                               n_windows, 1, s.width, cfg_.rope_dim, false}));
  DSV4_RETURN_IF_ERROR(s.entries.append(b, a.new_entries.data(), a.new_entries.size()));
  const int64_t used = n_windows * s.ratio * row;
  DSV4_RETURN_IF_ERROR(s.tail_kv.erase_front(b, used));
  DSV4_RETURN_IF_ERROR(s.tail_gate.erase_front(b, used));
  if (csa) {
    s.prev_kv.swap(a.last_kv);
    s.prev_gate.swap(a.last_gate);
  }
  return {};
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

// The sequence-dependent part of attention for rows [row0, row0 + n_rows) at positions
// start…: update compressors, choose each query's keys, attend, then store the window keys.
// The key index lists are built on the host; for CSA layers that reads the indexer's choice back
// (one synchronisation per CSA layer and sequence).
Status Model::attend_sequence(int64_t layer, LayerState& ls, int64_t row0, int64_t n_rows, int64_t start,
                              Rows& a) {
  Backend& b = *backend_;
  const LayerWeights& L = layers_[size_t(layer)];
  const int64_t H = cfg_.n_heads, hd = cfg_.head_dim, W = cfg_.sliding_window;

  if (L.type != AttentionType::kSliding) {
    const int64_t row = ls.compressor.n_series * hd;
    DSV4_RETURN_IF_ERROR(compress(L.compressor, ls.compressor, a.comp_kv.data() + row0 * row,
                                  a.comp_gate.data() + row0 * row, n_rows, a));
  }
  const int64_t topk = cfg_.index_topk;
  std::vector<int32_t> selected;  // [n_rows, topk] CSA entries chosen by the indexer
  if (L.type == AttentionType::kCSA) {
    const int64_t nh = cfg_.index_n_heads, ihd = cfg_.index_head_dim;
    DSV4_RETURN_IF_ERROR(compress(L.indexer_compressor, ls.indexer, a.idx_kv.data() + row0 * 2 * ihd,
                                  a.idx_gate.data() + row0 * 2 * ihd, n_rows, a));
    DSV4_RETURN_IF_ERROR(a.selected.resize(b, n_rows * topk));
    DSV4_RETURN_IF_ERROR(b.indexer({a.idx_q.data() + row0 * nh * ihd, a.idx_w.data() + row0 * nh,
                                    ls.indexer.entries.data(), a.positions.data() + row0, a.selected.data(),
                                    n_rows, nh, ihd, ls.indexer.n_entries(), L.ratio, topk}));
    DSV4_ASSIGN_OR_RETURN(selected, a.selected.download(b));
  }

  // kv pool: cached window rows (positions win_start…start−1), this chunk's rows, compressed entries.
  const int64_t win_start = std::max<int64_t>(0, start - (W - 1));
  const int64_t n_cached = start - win_start;
  const int64_t n_entries = ls.compressor.n_entries();
  const int64_t entries_at = n_cached + n_rows;
  DSV4_RETURN_IF_ERROR(a.pool.resize(b, (entries_at + n_entries) * hd));  // [n_kv, hd]
  DSV4_RETURN_IF_ERROR(ring_copy(b, ls.window.data(), a.pool.data(), win_start, n_cached, W, hd, false));
  DSV4_RETURN_IF_ERROR(
      b.copy(a.pool.data() + n_cached * hd, a.kv.data() + row0 * hd, size_t(n_rows * hd) * sizeof(float)));
  if (n_entries)
    DSV4_RETURN_IF_ERROR(b.copy(a.pool.data() + entries_at * hd, ls.compressor.entries.data(),
                                size_t(n_entries * hd) * sizeof(float)));

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
      for (int64_t s = 0; s < std::min(admissible, n_entries); ++s) idx[W + s] = int32_t(entries_at + s);
    } else if (L.type == AttentionType::kCSA) {
      for (int64_t j = 0; j < topk; ++j) {
        const int32_t s = selected[size_t(i * topk + j)];
        if (s >= 0) idx[W + j] = int32_t(entries_at + s);
      }
    }
  }
  DSV4_RETURN_IF_ERROR(a.kv_idx.assign(b, kv_idx));
  DSV4_RETURN_IF_ERROR(b.attention({a.q.data() + row0 * H * hd, a.pool.data(), a.kv_idx.data(),
                                    L.attn_sink.data(), a.o.data() + row0 * H * hd, n_rows, H, hd,
                                    entries_at + n_entries, n_sel, 1.0f / std::sqrt(float(hd))}));

  // Store this chunk's keys in the ring; only its last W rows survive there.
  const int64_t kept = std::min(n_rows, W);
  return ring_copy(b, ls.window.data(), a.kv.data() + (row0 + n_rows - kept) * hd, start + n_rows - kept,
                   kept, W, hd, true);
}

// MoE (spec §4.4): router, routed experts, shared expert; out = routed + shared.
Status Model::moe(int64_t layer, Rows& a, const float* x, float* out) {
  Backend& b = *backend_;
  const LayerWeights& L = layers_[size_t(layer)];
  const int64_t n = a.n, D = cfg_.d_model, E = cfg_.n_routed_experts, k = cfg_.n_experts_per_token;
  DSV4_RETURN_IF_ERROR(a.router_logits.resize(b, n * E));  // [n, E]
  DSV4_RETURN_IF_ERROR(b.linear({x, L.gate, a.router_logits.data(), n}));
  DSV4_RETURN_IF_ERROR(a.expert_ids.resize(b, n * k));      // [n, k]
  DSV4_RETURN_IF_ERROR(a.expert_weights.resize(b, n * k));  // [n, k]
  MoeRouterParams rp;
  rp.logits = a.router_logits.data();
  rp.bias = L.hash ? nullptr : L.gate_bias.data();
  rp.tid2eid = L.hash ? L.tid2eid.data() : nullptr;
  rp.token_ids = a.tokens.data();
  rp.expert_ids = a.expert_ids.data();
  rp.weights = a.expert_weights.data();
  rp.n_tokens = n;
  rp.n_experts = E;
  rp.top_k = k;
  rp.vocab_size = cfg_.vocab_size;
  rp.routed_scaling_factor = float(cfg_.routed_scaling_factor);
  DSV4_RETURN_IF_ERROR(b.moe_router(rp));

  DSV4_RETURN_IF_ERROR(b.moe_experts({x, a.expert_ids.data(), a.expert_weights.data(), L.experts.data(), out,
                                      n, D, cfg_.moe_intermediate, E, k, float(cfg_.swiglu_limit)}));
  if (L.shared.empty()) return {};
  if (a.shared_ids.size() != n) {
    DSV4_RETURN_IF_ERROR(a.shared_ids.assign(b, std::vector<int32_t>(size_t(n), 0)));
    DSV4_RETURN_IF_ERROR(a.shared_weights.assign(b, std::vector<float>(size_t(n), 1.0f)));
  }
  DSV4_RETURN_IF_ERROR(a.shared_out.resize(b, n * D));  // [n, D]
  DSV4_RETURN_IF_ERROR(
      b.moe_experts({x, a.shared_ids.data(), a.shared_weights.data(), L.shared.data(), a.shared_out.data(), n,
                     D, cfg_.moe_intermediate * cfg_.n_shared_experts, 1, 1, float(cfg_.swiglu_limit)}));
  return b.add(out, a.shared_out.data(), n * D);
}

}  // namespace dsv4
