// Per-sequence inference state (spec §7.1): for every layer the sliding-window K=V ring, and for
// CSA/HCA layers the compressor state (unfinished window's raw projections, CSA's previous window
// Ca slice) plus the emitted entries; CSA layers also hold the indexer's own compressor state and
// keys. A state belongs to one sequence and lives in its model's backend memory (device memory
// for CUDA); reset() starts a new one.
#pragma once

#include <cstdint>
#include <vector>

#include "model/backend_array.h"

namespace dsv4 {

struct CompressorState {
  int64_t ratio = 0;              // source tokens per entry (4 CSA, 128 HCA)
  int64_t width = 0;              // entry width (head_dim, or index_head_dim for the indexer)
  int64_t n_series = 1;           // 2 for CSA's overlapping windows
  BackendArray<float> tail_kv;    // [n_tail, n_series·width] projections of the unfinished window
  BackendArray<float> tail_gate;  // [n_tail, n_series·width] (ape not added)
  BackendArray<float> prev_kv;    // [ratio, width] CSA: Ca of the last closed window; empty before the first
  BackendArray<float> prev_gate;  // [ratio, width] its gate, ape included
  BackendArray<float> entries;    // [n_entries, width] normed, RoPE at position entry·ratio

  int64_t n_tail() const { return width ? tail_kv.size() / (n_series * width) : 0; }
  int64_t n_entries() const { return width ? entries.size() / width : 0; }
  void reset() {
    tail_kv.clear();
    tail_gate.clear();
    prev_kv.clear();
    prev_gate.clear();
    entries.clear();
  }
};

struct LayerState {
  BackendArray<float>
      window;  // [sliding_window, head_dim] ring of K=V rows, slot = position mod sliding_window
  CompressorState compressor;  // CSA/HCA layers
  CompressorState indexer;     // CSA layers: the indexer's compressor and its keys
};

class SequenceState {
 public:
  int64_t n_past() const { return n_past_; }  // tokens already consumed = position of the next token
  void reset() {
    n_past_ = 0;
    for (LayerState& l : layers_) {
      l.compressor.reset();
      l.indexer.reset();
    }
  }

 private:
  friend class Model;
  int64_t n_past_ = 0;
  std::vector<LayerState> layers_;
};

}  // namespace dsv4
