// compressor: gated pooling of complete windows of `ratio` source tokens into one entry each
// (spec §4.2.4, HF DeepseekV4{CSA,HCA}Compressor). Per channel c of window b:
//   entry[b, c] = Σ_slots softmax_slots(gate + ape)[slot, c] · kv[slot, c]
// HCA (n_series 1): the slots are the window's own ratio tokens.
// CSA (n_series 2): each token's projection is [Ca | Cb]; window b mixes 2·ratio slots =
// Ca of window b−1 (the previous call's last window for b = 0, from prev_*; none on the first
// window of a sequence: weight 0) and Cb of window b.
// The model applies rms_norm and rope (at position b·ratio) to the entries afterwards.
// GPU contract (cuda::compressor): fp32, the same three serial passes over the slots as the reference.
#pragma once

#include <cstdint>

#include "core/status.h"

namespace dsv4 {

struct CompressorParams {
  const float* kv = nullptr;         // [n_windows·ratio, n_series·width] x·W_kvᵀ
  const float* gate = nullptr;       // [n_windows·ratio, n_series·width] x·W_gateᵀ (ape not added)
  const float* ape = nullptr;        // [ratio, n_series·width] position bias of each slot
  const float* prev_kv = nullptr;    // [ratio, width] Ca of the window before window 0; CSA only, may be null
  const float* prev_gate = nullptr;  // [ratio, width] its gate, ape included
  float* entries = nullptr;          // [n_windows, width]
  float* last_kv = nullptr;          // [ratio, width] CSA: Ca of the last window (for the next call)
  float* last_gate = nullptr;        // [ratio, width] CSA: its gate, ape included
  int64_t n_windows = 0;
  int64_t ratio = 0;
  int64_t width = 0;
  int64_t n_series = 1;  // 1 HCA, 2 CSA (overlapping)
};

Status check_compressor(const CompressorParams& p);

namespace cpu {
void compressor(const CompressorParams& p);
}  // namespace cpu

}  // namespace dsv4
