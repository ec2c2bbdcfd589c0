// compressor_decode, one block per token, one thread per channel (strided when width > 512): store the
// token's rows in its slot's tail; if its position closes a window, pool the window per channel
// (compressor_slot's reads, compressor_kernel's serial max / denominator / weighted-sum passes: the same
// fp32 operations, so the same bits as prefill's pooling), rms_norm the entry (its own reduction:
// kCompressorDecodeNormThreads threads summing strided squares, then block_sum; rms_norm_kernel's team
// layout differs, so an entry may differ from prefill's in the last bits of its norm), rotate
// the last rope_dim channels at the window's first position (rope_kernel's rounding) and write it; CSA
// then replaces prev with this window's Ca.
// Every tail and prev element is written and read back by the thread of its channel only, so the
// pooling needs no barrier. With at most kCompressorDecodeCachedSlots slots (CSA at ratio ≤ 4) a
// channel's slots are loaded into registers at once (one memory round trip); longer windows (HCA) stream
// through the passes, unrolled so that several loads are in flight.
#pragma once

#include <cstdint>

#include "cuda/compressor.cuh"
#include "cuda/reduce.cuh"

namespace dsv4::cuda {

constexpr int kCompressorDecodeMaxThreads = 512;
constexpr int kCompressorDecodeNormThreads = 256;
constexpr int kCompressorDecodeCachedSlots = 8;

struct CompressorDecodeArgs {
  const float *kv, *gate, *ape, *norm, *inv_freq;
  const int32_t* slots;
  const int64_t* positions;
  float *tail_kv, *tail_gate, *prev_kv, *prev_gate, *entries;
  int64_t entry_stride, entry_offset, max_entries, ratio, width, n_series, rope_dim;
  float eps;
};

// f(k) for every slot k < n_slots: fully unrolled when kCached > 0 (then n_slots ≤ kCached).
template <int kCached, class F>
__device__ __forceinline__ void compressor_decode_for_slots(int64_t n_slots, F f) {
  if constexpr (kCached > 0) {
#pragma unroll
    for (int k = 0; k < kCached; ++k)
      if (k < n_slots) f(k);
  } else {
#pragma unroll 16
    for (int64_t k = 0; k < n_slots; ++k) f(k);
  }
}

// One channel's pooled value from its slots (value(k): CompressorSlot): compressor_kernel's passes.
template <int kCached, class Value>
__device__ __forceinline__ float compressor_decode_pool(int64_t n_slots, Value value) {
  float mx = -INFINITY;
  compressor_decode_for_slots<kCached>(n_slots, [&](auto k) { mx = fmaxf(mx, value(k).gate); });
  float den = 0.0f;
  compressor_decode_for_slots<kCached>(n_slots, [&](auto k) { den += expf(value(k).gate - mx); });
  float acc = 0.0f;
  compressor_decode_for_slots<kCached>(n_slots, [&](auto k) {
    const CompressorSlot v = value(k);
    acc += v.kv * (expf(v.gate - mx) / den);
  });
  return acc;
}

// Dynamic shared memory: width floats (the entry being built). Block: a multiple of 32 threads, at
// least kCompressorDecodeNormThreads.
template <int kCached>
__global__ void __launch_bounds__(kCompressorDecodeMaxThreads, 1)
    compressor_decode_kernel(CompressorDecodeArgs a) {
  extern __shared__ float s_entry[];
  __shared__ float scratch[32];
  const int64_t t = blockIdx.x, s = a.slots[t], pos = a.positions[t];
  const int64_t m = a.ratio, w = a.width, row = a.n_series * w, b = pos / m;
  float* tail_kv = a.tail_kv + s * m * row;
  float* tail_gate = a.tail_gate + s * m * row;
  const bool closes = (pos + 1) % m == 0 && b < a.max_entries;  // uniform across the block
  const bool csa = a.n_series == 2;
  const float* prev_kv = csa && b > 0 ? a.prev_kv + s * m * w : nullptr;
  const float* prev_gate = csa && b > 0 ? a.prev_gate + s * m * w : nullptr;
  const int64_t n_slots = a.n_series * m;
  for (int64_t c = threadIdx.x; c < w; c += blockDim.x) {
    for (int64_t i = c; i < row; i += w) {
      tail_kv[(pos % m) * row + i] = a.kv[t * row + i];
      tail_gate[(pos % m) * row + i] = a.gate[t * row + i];
    }
    if (!closes) continue;
    float acc;
    float* next_kv = csa ? a.prev_kv + s * m * w : nullptr;
    float* next_gate = csa ? a.prev_gate + s * m * w : nullptr;
    if constexpr (kCached > 0) {
      // Every load first (one round trip): the slots (compressor_slot's values; the Cb / HCA rows and
      // the previous Ca without its per-slot branches) and, for CSA, this window's Ca for prev.
      CompressorSlot cached[kCached], next[kCached];
      compressor_decode_for_slots<kCached>(n_slots, [&](int k) {
        const bool own_window = !csa || k >= m;
        const int64_t at = (csa ? (k - m) * row + w : k * row) + c;
        cached[k] = own_window ? CompressorSlot{tail_kv[at], tail_gate[at] + a.ape[at]}
                    : prev_kv  ? CompressorSlot{prev_kv[k * w + c], prev_gate[k * w + c]}
                               : CompressorSlot{0.0f, -INFINITY};
      });
      if (csa)
        compressor_decode_for_slots<kCached>(m, [&](int k) {
          next[k] = {tail_kv[k * row + c], tail_gate[k * row + c] + a.ape[k * row + c]};
        });
      acc = compressor_decode_pool<kCached>(n_slots, [&](int k) { return cached[k]; });
      if (csa)  // prev[., c] was read above by this thread only
        compressor_decode_for_slots<kCached>(m, [&](int k) {
          next_kv[k * w + c] = next[k].kv;
          next_gate[k * w + c] = next[k].gate;
        });
    } else {
      if (a.n_series == 1)  // compressor_slot's HCA case, without its branches: loads pipeline
        acc = compressor_decode_pool<0>(n_slots, [&](int64_t k) {
          return CompressorSlot{tail_kv[k * row + c], tail_gate[k * row + c] + a.ape[k * row + c]};
        });
      else
        acc = compressor_decode_pool<0>(n_slots, [&](int64_t k) {
          return compressor_slot(tail_kv, tail_gate, a.ape, prev_kv, prev_gate, 0, k, c, m, w, a.n_series);
        });
      if (csa)  // prev[., c] was read above by this thread only
        for (int64_t k = 0; k < m; ++k) {
          next_kv[k * w + c] = tail_kv[k * row + c];
          next_gate[k * w + c] = tail_gate[k * row + c] + a.ape[k * row + c];
        }
    }
    s_entry[c] = acc;
  }
  if (!closes) return;
  __syncthreads();
  float sum_sq = 0.0f;
  if (threadIdx.x < kCompressorDecodeNormThreads)
    for (int64_t c = threadIdx.x; c < w; c += kCompressorDecodeNormThreads) sum_sq += s_entry[c] * s_entry[c];
  sum_sq = block_sum(sum_sq, scratch);  // the other threads add zeros: the same sum as 256 threads
  const float inv_rms = 1.0f / sqrtf(sum_sq / float(w) + a.eps);
  // Each thread writes its channels; a rotated channel also normalises its pair's partner itself.
  const int64_t half = a.rope_dim / 2, offset = w - a.rope_dim;
  const float entry_position = float(b * m);
  float* entry = a.entries + (s * a.entry_stride + a.entry_offset + b) * w;
  for (int64_t c = threadIdx.x; c < w; c += blockDim.x) {
    const float x = a.norm[c] * (s_entry[c] * inv_rms);
    const int64_t j = c - offset;  // channel within the rotated part
    if (j < 0 || j >= 2 * half) {
      entry[c] = x;
      continue;
    }
    const int64_t partner = offset + (j ^ 1);
    const float y = a.norm[partner] * (s_entry[partner] * inv_rms);
    const float angle = __fmul_rn(a.inv_freq[j / 2], entry_position);
    const float cos_a = cosf(angle), sin_a = sinf(angle);
    entry[c] = j % 2 == 0 ? __fsub_rn(__fmul_rn(x, cos_a), __fmul_rn(y, sin_a))   // pair[0] = x
                          : __fadd_rn(__fmul_rn(x, cos_a), __fmul_rn(y, sin_a));  // pair[1] = x
  }
}

}  // namespace dsv4::cuda
