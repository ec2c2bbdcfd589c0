// Launchers of compressor (see compressor.cuh) and compressor_decode (compressor_decode.cuh), in
// one translation unit as they share compressor.cuh's kernels. compressor writes the last-window
// state by a second launch on the same stream, after every entry has read prev_*, so last_* may
// alias prev_*.
#include <algorithm>

#include "cuda/check.h"
#include "cuda/compressor.cuh"
#include "cuda/compressor.h"
#include "cuda/compressor_decode.cuh"
#include "cuda/compressor_decode.h"

namespace dsv4::cuda {

Status compressor(const CompressorParams& p, cudaStream_t stream) {
  DSV4_RETURN_IF_ERROR(check_compressor(p));
  if (p.n_windows == 0) return {};
  compressor_kernel<<<unsigned(p.n_windows), kCompressorThreads, 0, stream>>>(
      p.kv, p.gate, p.ape, p.n_series == 2 ? p.prev_kv : nullptr, p.prev_gate, p.entries, p.ratio, p.width,
      p.n_series);
  DSV4_CUDA_LAUNCH_CHECK();
  if (p.n_series == 2 && p.last_kv && p.last_gate) {
    compressor_last_kernel<<<unsigned(p.ratio), kCompressorThreads, 0, stream>>>(
        p.kv, p.gate, p.ape, p.last_kv, p.last_gate, p.n_windows - 1, p.ratio, p.width);
    DSV4_CUDA_LAUNCH_CHECK();
  }
  return {};
}

Status compressor_decode(const CompressorDecodeParams& p, cudaStream_t stream) {
  DSV4_RETURN_IF_ERROR(check_compressor_decode(p));
  if (p.width > 12 * 1024)
    return Status::errorf("compressor_decode: width {}; expected at most 12288 (one entry in shared memory)",
                          p.width);
  if (p.n_tokens == 0) return {};
  const CompressorDecodeArgs a{p.kv,        p.gate,      p.ape,          p.norm,         p.inv_freq,
                               p.slots,     p.positions, p.tail_kv,      p.tail_gate,    p.prev_kv,
                               p.prev_gate, p.entries,   p.entry_stride, p.entry_offset, p.max_entries,
                               p.ratio,     p.width,     p.n_series,     p.rope_dim,     p.eps};
  // One thread per channel, at least the rms_norm reduction's block.
  const int64_t threads = std::clamp<int64_t>((p.width + 31) / 32 * 32, kCompressorDecodeNormThreads,
                                              kCompressorDecodeMaxThreads);
  const size_t smem = size_t(p.width) * sizeof(float);
  if (p.n_series * p.ratio <= kCompressorDecodeCachedSlots)
    compressor_decode_kernel<kCompressorDecodeCachedSlots>
        <<<unsigned(p.n_tokens), unsigned(threads), smem, stream>>>(a);
  else
    compressor_decode_kernel<0><<<unsigned(p.n_tokens), unsigned(threads), smem, stream>>>(a);
  DSV4_CUDA_LAUNCH_CHECK();
  return {};
}

}  // namespace dsv4::cuda
