// The DeepSeek-V4 forward (spec §3–§5, §7), written once against the Backend interface.
// Model::load validates the checkpoint against its config and makes the stored weight bits
// resident in the backend (experts are dequantized on the fly by the ops, never copied to fp32);
// activations and sequence caches live in the backend's memory too.
// forward() runs a batch of independent sequences, each with its own chunk of tokens at its own
// position (a prefill chunk of any size or a one-token decode step), and returns logits for every
// token. A batch of one-token chunks is a decode step: every count it needs is computed on the
// device from the positions, so on a backend with graphs (CUDA) the step is recorded once per
// batch size and then replayed, with no host synchronisation inside it. Prefill chunks plan their
// attention on the host (and read the CSA indexer's choices back once per layer and sequence).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/safetensors.h"
#include "model/backend.h"
#include "model/backend_array.h"
#include "model/state.h"
#include "model/weight_map.h"

namespace dsv4 {

struct SequenceChunk {
  SequenceState* state = nullptr;
  std::span<const int32_t> tokens;  // token ids, fed at positions state->n_past() …
  // Only the last token's logits (generation needs no others; the LM head is the widest GEMM).
  bool last_logits_only = false;
};

// Small weights are kept in fp32 in backend memory; matrices as views of backend-resident copies.
struct HcWeights {
  BackendArray<float> fn;     // [(2+n)·n, n·D] (hyper head: [n, n·D])
  BackendArray<float> base;   // [(2+n)·n] (hyper head: [n])
  BackendArray<float> scale;  // [3] (hyper head: [1])
};

struct CompressorWeights {
  WeightView wkv;            // [n_series·width, D]
  WeightView wgate;          // [n_series·width, D]
  BackendArray<float> ape;   // [ratio, n_series·width]
  BackendArray<float> norm;  // [width]
};

struct LayerWeights {
  AttentionType type = AttentionType::kSliding;
  int64_t ratio = 0;
  bool hash = false;
  BackendArray<float> attn_norm, ffn_norm;  // [D]
  HcWeights hc_attn, hc_ffn;
  BackendArray<float> attn_sink;  // [H]
  BackendArray<float> q_norm;     // [q_lora_rank]
  BackendArray<float> kv_norm;    // [head_dim]
  WeightView wq_a, wq_b, wkv, wo_a, wo_b;
  CompressorWeights compressor;          // CSA/HCA
  CompressorWeights indexer_compressor;  // CSA
  WeightView indexer_wq_b;               // [index_n_heads·index_head_dim, q_lora_rank]
  WeightView indexer_weights_proj;       // [index_n_heads, D]
  WeightView gate;                       // [E, D]
  BackendArray<float> gate_bias;         // [E] dense layers
  BackendArray<int64_t> tid2eid;         // [vocab, k] hash layers
  std::vector<ExpertWeights> experts;    // [E] host array of views into backend memory
  std::vector<ExpertWeights> shared;     // [1] or empty
};

// Bytes of cache one sequence of up to `context` tokens takes in a model's cache pool.
int64_t cache_bytes_per_sequence(const ModelConfig& cfg, int64_t context);

class Model {
 public:
  static Result<std::unique_ptr<Model>> load(const std::string& dir, std::unique_ptr<Backend> backend);
  ~Model();

  const ModelConfig& config() const { return cfg_; }
  Backend& backend() const { return *backend_; }
  const Checkpoint& checkpoint() const { return *ckpt_; }
  SequenceState new_state() const;

  // Grows the cache pool to hold n_sequences sequences of up to `context` tokens each (it also
  // grows on demand; growing invalidates recorded decode graphs).
  Status reserve(int64_t n_sequences, int64_t context);
  // Decode steps run as recorded graphs where the backend has them (default); off: always eager.
  void set_decode_graphs(bool enabled) { decode_graphs_ = enabled; }
  // Decode steps recorded and still valid, one per batch size.
  int64_t decode_graphs_recorded() const;
  // Logits [Σ rows, vocab], chunks in batch order, each chunk contributing all its tokens' rows
  // (or only its last with last_logits_only). Advances every state. Each state may
  // appear at most once per call.
  Result<std::vector<float>> forward(std::span<const SequenceChunk> batch);

 private:
  struct Rows;  // activations of one forward call
  struct CompressorCache;
  struct LayerCache;
  // A decode step recorded for one batch size, valid while the backend's memory epoch stays at
  // `epoch`; warm_epoch is the epoch after the last eager step of that size (recording needs one
  // that allocated nothing since, so that the recording allocates nothing).
  struct DecodeGraph {
    std::unique_ptr<BackendGraph> graph;
    uint64_t epoch = 0;
    uint64_t warm_epoch = ~uint64_t(0);
  };
  Model();
  Status load_weights();
  Status upload(BackendArray<float>& dst, const std::vector<float>& host);
  Status check_batch(std::span<const SequenceChunk> batch) const;
  Status run(std::span<const SequenceChunk> batch, Rows& a);
  Status run_decode_graph(std::span<const SequenceChunk> batch, Rows& a);
  Status block(int64_t layer, std::span<const SequenceChunk> batch, Rows& a);
  Status attention_block(int64_t layer, std::span<const SequenceChunk> batch, Rows& a);
  Status attend_sequence(int64_t layer, const SequenceState& s, int64_t row0, int64_t n_rows, Rows& a);
  Status attend_decode(int64_t layer, Rows& a);
  Status compress(const CompressorWeights& w, CompressorCache& c, int32_t slot, int64_t start,
                  const float* kv, const float* gate, int64_t n_rows, float* entries, Rows& a);
  Status moe(int64_t layer, Rows& a, const float* x, float* out);

  ModelConfig cfg_;
  std::unique_ptr<Checkpoint> ckpt_;
  WeightMap weights_;
  std::unique_ptr<Backend> backend_;
  WeightView embed_, head_;
  BackendArray<float> final_norm_;
  HcWeights hc_head_;
  std::vector<LayerWeights> layers_;
  BackendArray<float> main_inv_freq_, compress_inv_freq_;  // [rope_dim/2]
  std::unique_ptr<Rows> rows_;                             // prefill activations, kept between calls
  std::unique_ptr<Rows> decode_rows_;  // decode-step activations: recorded graphs point into them
  // The cache pool: per layer, n_slots sequences of up to cache_context_ tokens.
  std::shared_ptr<CacheSlots> cache_slots_;
  std::vector<LayerCache> caches_;
  int64_t cache_n_slots_ = 0, cache_context_ = 0;
  bool decode_graphs_ = true;
  std::map<int64_t, DecodeGraph> decode_graphs_by_batch_;
};

}  // namespace dsv4
