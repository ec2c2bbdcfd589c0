// CPU reference of `compressor`: per-channel softmax over each window's slots (HF layout: CSA
// slots are [Ca of the previous window (ratio) | Cb of this window (ratio)]).
#include "ops/compressor.h"

#include <cmath>
#include <limits>
#include <vector>

#include "core/parallel.h"

namespace dsv4 {

Status check_compressor(const CompressorParams& p) {
  if (!p.kv || !p.gate || !p.ape || !p.entries) return Status::error("compressor: null input or output");
  if (p.n_series != 1 && p.n_series != 2)
    return Status::errorf("compressor: n_series {}; expected 1 (HCA) or 2 (CSA)", p.n_series);
  if (p.ratio <= 0 || p.width <= 0 || p.n_windows < 0)
    return Status::errorf("compressor: ratio {}, width {}, n_windows {}; expected positive sizes", p.ratio,
                          p.width, p.n_windows);
  if (p.n_series == 2 && (!p.prev_kv != !p.prev_gate))
    return Status::error("compressor: prev_kv and prev_gate must both be given or both be null");
  return {};
}

namespace cpu {

void compressor(const CompressorParams& p) {
  const int64_t m = p.ratio, w = p.width, row = p.n_series * w;
  const bool overlap = p.n_series == 2;
  const int64_t n_slots = overlap ? 2 * m : m;
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  parallel_for(p.n_windows, [&](int64_t b0, int64_t b1) {
    std::vector<float> slot_kv(static_cast<size_t>(n_slots)), slot_gate(static_cast<size_t>(n_slots));
    for (int64_t b = b0; b < b1; ++b) {
      for (int64_t c = 0; c < w; ++c) {
        // Gather the slots of channel c: (kv, gate + ape).
        for (int64_t s = 0; s < m; ++s) {
          const int64_t tok = b * m + s;
          if (!overlap) {
            slot_kv[size_t(s)] = p.kv[tok * row + c];
            slot_gate[size_t(s)] = p.gate[tok * row + c] + p.ape[s * row + c];
            continue;
          }
          // Cb of this window: second half of the row.
          slot_kv[size_t(m + s)] = p.kv[tok * row + w + c];
          slot_gate[size_t(m + s)] = p.gate[tok * row + w + c] + p.ape[s * row + w + c];
          // Ca of the previous window: first half of its rows, or the carried state, or nothing.
          if (b > 0) {
            const int64_t prev = (b - 1) * m + s;
            slot_kv[size_t(s)] = p.kv[prev * row + c];
            slot_gate[size_t(s)] = p.gate[prev * row + c] + p.ape[s * row + c];
          } else if (p.prev_kv) {
            slot_kv[size_t(s)] = p.prev_kv[s * w + c];
            slot_gate[size_t(s)] = p.prev_gate[s * w + c];
          } else {
            slot_kv[size_t(s)] = 0.0f;
            slot_gate[size_t(s)] = kNegInf;
          }
        }
        float mx = kNegInf;
        for (int64_t s = 0; s < n_slots; ++s) mx = std::max(mx, slot_gate[size_t(s)]);
        float den = 0.0f;
        for (int64_t s = 0; s < n_slots; ++s) den += std::exp(slot_gate[size_t(s)] - mx);
        float acc = 0.0f;
        for (int64_t s = 0; s < n_slots; ++s)
          acc += slot_kv[size_t(s)] * (std::exp(slot_gate[size_t(s)] - mx) / den);
        p.entries[b * w + c] = acc;
      }
    }
  });
  if (overlap && p.n_windows > 0 && p.last_kv && p.last_gate) {
    const int64_t b = p.n_windows - 1;
    for (int64_t s = 0; s < m; ++s)
      for (int64_t c = 0; c < w; ++c) {
        const int64_t tok = b * m + s;
        p.last_kv[s * w + c] = p.kv[tok * row + c];
        p.last_gate[s * w + c] = p.gate[tok * row + c] + p.ape[s * row + c];
      }
  }
}

}  // namespace cpu
}  // namespace dsv4
