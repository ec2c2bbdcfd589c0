// compressor_decode: a decode step's compressor work for a batch of sequences, one token each
// (spec §4.2.4, §7.1), in the fixed per-sequence caches that CUDA-graph decode needs. For token t
// of sequence slot s at position p:
//   tail[s, p mod ratio] = (kv[t], gate[t])                      the unfinished window's rows
// and, when p closes a window (p + 1 ≡ 0 mod ratio, window b = p div ratio):
//   e = compressor(window b from tail[s], CSA: prev[s] as Ca of window b − 1 when b > 0)
//   entries[s·entry_stride + entry_offset + b] = rope(rms_norm(e, norm), position b·ratio)
//   CSA: prev[s] = (Ca of window b, its gate + ape)               for window b + 1
// i.e. exactly what `compressor`, `rms_norm` and `rope` do to the same window in prefill. The
// tail holds a window's rows at slots 0… because windows start at multiples of ratio, so the
// prefill path (which knows the counts on the host) shares the layout. Every count here comes
// from positions on the device: no host synchronisation, fixed pointers.
// GPU contract (cuda::compressor_decode): fp32, as the reference (compressor's serial slot passes,
// a tree sum for the rms_norm, rope's rounding order).
#pragma once

#include <cstdint>

#include "core/status.h"

namespace dsv4 {

struct CompressorDecodeParams {
  const float* kv = nullptr;           // [n_tokens, n_series·width] x·W_kvᵀ of this step's tokens
  const float* gate = nullptr;         // [n_tokens, n_series·width] x·W_gateᵀ (ape not added)
  const float* ape = nullptr;          // [ratio, n_series·width]
  const float* norm = nullptr;         // [width] rms_norm weight of the entries
  const float* inv_freq = nullptr;     // [rope_dim / 2] (compress_rope_theta)
  const int32_t* slots = nullptr;      // [n_tokens] each token's sequence slot; distinct
  const int64_t* positions = nullptr;  // [n_tokens]
  float* tail_kv = nullptr;            // [n_slots, ratio, n_series·width]
  float* tail_gate = nullptr;          // [n_slots, ratio, n_series·width]
  float* prev_kv = nullptr;            // [n_slots, ratio, width] CSA only
  float* prev_gate = nullptr;          // [n_slots, ratio, width] CSA only (ape included)
  float* entries = nullptr;  // rows of width; entry b of slot s at s·entry_stride + entry_offset + b
  int64_t entry_stride = 0;  // rows per slot
  int64_t entry_offset = 0;  // row of entry 0 within a slot
  int64_t max_entries = 0;   // entries a slot holds (p div ratio must stay below)
  int64_t n_tokens = 0;
  int64_t n_slots = 0;
  int64_t ratio = 0;
  int64_t width = 0;
  int64_t n_series = 1;  // 1 HCA, 2 CSA
  int64_t rope_dim = 0;
  float eps = 1e-6f;
};

// Checks what the host can see (pointers, sizes); slots and positions are device data and are
// trusted to be in range (the model writes them).
Status check_compressor_decode(const CompressorDecodeParams& p);

namespace cpu {
void compressor_decode(const CompressorDecodeParams& p);
}  // namespace cpu

}  // namespace dsv4
