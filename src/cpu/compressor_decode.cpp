// CPU reference of `compressor_decode`: each closing window goes through the same cpu::compressor,
// cpu::rms_norm and cpu::rope calls as in prefill, so decode and prefill agree bit for bit.
#include "ops/compressor_decode.h"

#include <algorithm>
#include <vector>

#include "ops/compressor.h"
#include "ops/rms_norm.h"
#include "ops/rope.h"

namespace dsv4 {

Status check_compressor_decode(const CompressorDecodeParams& p) {
  if (!p.kv || !p.gate || !p.ape || !p.norm || !p.inv_freq || !p.slots || !p.positions || !p.tail_kv ||
      !p.tail_gate || (!p.entries && p.max_entries > 0))
    return Status::error("compressor_decode: null input, output or cache");
  if (p.n_series != 1 && p.n_series != 2)
    return Status::errorf("compressor_decode: n_series {}; expected 1 (HCA) or 2 (CSA)", p.n_series);
  if (p.n_series == 2 && (!p.prev_kv || !p.prev_gate))
    return Status::error("compressor_decode: CSA needs prev_kv and prev_gate");
  if (p.ratio <= 0 || p.width <= 0 || p.n_tokens < 0 || p.n_slots <= 0 || p.max_entries < 0)
    return Status::errorf(
        "compressor_decode: ratio {}, width {}, n_tokens {}, n_slots {}, max_entries {}; expected positive "
        "sizes",
        p.ratio, p.width, p.n_tokens, p.n_slots, p.max_entries);
  if (p.rope_dim <= 0 || p.rope_dim % 2 || p.rope_dim > p.width)
    return Status::errorf("compressor_decode: rope_dim {} with width {}; expected an even rope_dim <= width",
                          p.rope_dim, p.width);
  if (p.entry_offset < 0 || p.entry_offset + p.max_entries > p.entry_stride)
    return Status::errorf(
        "compressor_decode: entries at row {} + {} of {} rows per slot; expected them to fit in the slot",
        p.entry_offset, p.max_entries, p.entry_stride);
  return {};
}

namespace cpu {

void compressor_decode(const CompressorDecodeParams& p) {
  const int64_t row = p.n_series * p.width, w = p.width, m = p.ratio;
  const bool csa = p.n_series == 2;
  std::vector<float> last_kv(size_t(m * w)), last_gate(size_t(m * w));
  for (int64_t t = 0; t < p.n_tokens; ++t) {
    const int64_t s = p.slots[t], pos = p.positions[t], b = pos / m;
    float* tail_kv = p.tail_kv + s * m * row;
    float* tail_gate = p.tail_gate + s * m * row;
    std::copy_n(p.kv + t * row, row, tail_kv + (pos % m) * row);
    std::copy_n(p.gate + t * row, row, tail_gate + (pos % m) * row);
    if ((pos + 1) % m != 0 || b >= p.max_entries) continue;
    float* prev_kv = csa ? p.prev_kv + s * m * w : nullptr;
    float* prev_gate = csa ? p.prev_gate + s * m * w : nullptr;
    float* entry = p.entries + (s * p.entry_stride + p.entry_offset + b) * w;
    compressor({tail_kv, tail_gate, p.ape, b > 0 ? prev_kv : nullptr, b > 0 ? prev_gate : nullptr, entry,
                csa ? last_kv.data() : nullptr, csa ? last_gate.data() : nullptr, 1, m, w, p.n_series});
    rms_norm({entry, p.norm, entry, 1, w, p.eps});
    const int64_t entry_position = b * m;
    rope({entry, &entry_position, p.inv_freq, 1, 1, w, p.rope_dim, false});
    if (csa) {
      std::copy(last_kv.begin(), last_kv.end(), prev_kv);
      std::copy(last_gate.begin(), last_gate.end(), prev_gate);
    }
  }
}

}  // namespace cpu
}  // namespace dsv4
