// Gated pooling: entry[b, c] = Σ_slots softmax_slots(gate + ape)[slot, c] · kv[slot, c] per window b.
// kv/gate: [n_windows·ratio, n_series·width], ape: [ratio, n_series·width], entries: [n_windows, width].
// HCA (n_series 1): the window's ratio tokens. CSA (2): Ca (first half) of window b−1 — prev_*
// for b = 0, or weight 0 without it — then Cb (second half) of window b: 2·ratio slots.
// One block per window, one thread per channel (coalesced across the row); three serial passes
// over the slots (max, denominator, weighted sum) as the CPU reference does them.
// compressor_last_kernel copies the last window's Ca (gate with ape) for the next call.
#pragma once

#include <cstdint>

namespace dsv4::cuda {

constexpr int kCompressorThreads = 128;

struct CompressorSlot {
  float kv, gate;
};

__device__ __forceinline__ CompressorSlot compressor_slot(const float* kv, const float* gate,
                                                          const float* ape, const float* prev_kv,
                                                          const float* prev_gate, int64_t b, int64_t slot,
                                                          int64_t c, int64_t ratio, int64_t width,
                                                          int64_t n_series) {
  const int64_t row = n_series * width;
  if (n_series == 1) {
    const int64_t tok = b * ratio + slot;
    return {kv[tok * row + c], gate[tok * row + c] + ape[slot * row + c]};
  }
  if (slot >= ratio) {  // Cb of this window
    const int64_t s = slot - ratio, tok = b * ratio + s;
    return {kv[tok * row + width + c], gate[tok * row + width + c] + ape[s * row + width + c]};
  }
  if (b > 0) {  // Ca of the previous window
    const int64_t tok = (b - 1) * ratio + slot;
    return {kv[tok * row + c], gate[tok * row + c] + ape[slot * row + c]};
  }
  if (prev_kv) return {prev_kv[slot * width + c], prev_gate[slot * width + c]};
  return {0.0f, -INFINITY};
}

__global__ void compressor_kernel(const float* kv, const float* gate, const float* ape, const float* prev_kv,
                                  const float* prev_gate, float* entries, int64_t ratio, int64_t width,
                                  int64_t n_series) {
  const int64_t b = blockIdx.x;
  const int64_t n_slots = n_series * ratio;
  for (int64_t c = threadIdx.x; c < width; c += blockDim.x) {
    float mx = -INFINITY;
    for (int64_t s = 0; s < n_slots; ++s)
      mx =
          fmaxf(mx, compressor_slot(kv, gate, ape, prev_kv, prev_gate, b, s, c, ratio, width, n_series).gate);
    float den = 0.0f;
    for (int64_t s = 0; s < n_slots; ++s)
      den +=
          expf(compressor_slot(kv, gate, ape, prev_kv, prev_gate, b, s, c, ratio, width, n_series).gate - mx);
    float acc = 0.0f;
    for (int64_t s = 0; s < n_slots; ++s) {
      const CompressorSlot v =
          compressor_slot(kv, gate, ape, prev_kv, prev_gate, b, s, c, ratio, width, n_series);
      acc += v.kv * (expf(v.gate - mx) / den);
    }
    entries[b * width + c] = acc;
  }
}

// One block per slot of the last window: last_kv/last_gate[slot, c] = its Ca and gate + ape.
__global__ void compressor_last_kernel(const float* kv, const float* gate, const float* ape, float* last_kv,
                                       float* last_gate, int64_t last_window, int64_t ratio, int64_t width) {
  const int64_t slot = blockIdx.x, tok = last_window * ratio + slot, row = 2 * width;
  for (int64_t c = threadIdx.x; c < width; c += blockDim.x) {
    last_kv[slot * width + c] = kv[tok * row + c];
    last_gate[slot * width + c] = gate[tok * row + c] + ape[slot * row + c];
  }
}

}  // namespace dsv4::cuda
