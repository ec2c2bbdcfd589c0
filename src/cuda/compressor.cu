// Launcher of compressor (see compressor.cuh). The last-window state is written by a second
// launch on the same stream, after every entry has read prev_*, so last_* may alias prev_*.
#include "cuda/check.h"
#include "cuda/compressor.cuh"
#include "cuda/compressor.h"

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

}  // namespace dsv4::cuda
